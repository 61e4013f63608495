//! The role store's user and host directories: list, get, and refresh (sync from the directory).
//!
//! Whether a refresh is synchronous is undocumented; the simulator counts refresh requests per
//! source and changes nothing else.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::errors::PrivxError;
use crate::PrivxFixture;

#[derive(Debug, Default)]
pub(crate) struct Sources {
    sources: Vec<Map<String, Value>>,
    /// `source_id` → refresh requests accepted.
    refreshes: BTreeMap<String, usize>,
}

impl Sources {
    pub(crate) fn new(fixture: &PrivxFixture) -> Sources {
        Sources {
            sources: fixture.sources.iter().filter_map(Value::as_object).cloned().collect(),
            refreshes: BTreeMap::new(),
        }
    }

    fn find(&self, id: &str) -> Option<&Map<String, Value>> {
        self.sources
            .iter()
            .find(|s| s.get("id").and_then(Value::as_str) == Some(id))
    }

    /// Every source, `{count, items}` (the API documents no paging).
    pub(crate) fn list(&self) -> Value {
        json!({"count": self.sources.len(), "items": self.sources})
    }

    /// One source.
    pub(crate) fn get(&self, id: &str) -> Result<Value, PrivxError> {
        self.find(id)
            .cloned()
            .map(Value::Object)
            .ok_or_else(|| PrivxError::not_found(format!("source {id} not found")))
    }

    /// Refreshes the sources whose ids the body's JSON array lists, or none of them when any id
    /// is unknown.
    pub(crate) fn refresh(&mut self, body: &[u8]) -> Result<(), PrivxError> {
        let shape = || PrivxError::bad_request("the body must be a JSON array of source id strings");
        let ids: Vec<String> = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(ids)) => ids
                .iter()
                .map(|id| id.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(shape)?,
            _ => return Err(shape()),
        };
        if let Some((index, unknown)) = ids.iter().enumerate().find(|(_, id)| self.find(id).is_none()) {
            return Err(PrivxError::bad_property(
                format!("[{index}]"),
                format!("source {unknown} not found"),
            ));
        }
        for id in ids {
            *self.refreshes.entry(id).or_default() += 1;
        }
        Ok(())
    }

    /// How many refreshes of the source were accepted.
    pub(crate) fn refreshes(&self, id: &str) -> usize {
        self.refreshes.get(id).copied().unwrap_or_default()
    }
}
