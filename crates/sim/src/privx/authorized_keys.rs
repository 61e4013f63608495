//! The role store's per-user SSH authorized keys: list, get and delete.
//!
//! PrivX documents no paging for `GET .../users/{id}/authorizedkeys` (its SDKs pass `offset` and
//! `limit` anyway): the simulator answers every key unless the client asks for a page.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::errors::PrivxError;
use super::paging::Paging;
use crate::PrivxFixture;

#[derive(Debug, Default)]
pub(crate) struct AuthorizedKeys {
    /// `user_id` → keys.
    keys: BTreeMap<String, Vec<Map<String, Value>>>,
}

impl AuthorizedKeys {
    pub(crate) fn new(fixture: &PrivxFixture) -> AuthorizedKeys {
        let keys = fixture
            .authorized_keys
            .iter()
            .map(|(user, list)| {
                (
                    user.clone(),
                    list.iter().filter_map(Value::as_object).cloned().collect(),
                )
            })
            .collect();
        AuthorizedKeys { keys }
    }

    fn of_user(&self, user_id: &str) -> &[Map<String, Value>] {
        self.keys.get(user_id).map(Vec::as_slice).unwrap_or_default()
    }

    /// The user's keys, `{count, items}`: all of them, or the page asked for.
    pub(crate) fn list(&self, user_id: &str, paging: Option<&Paging>) -> Value {
        let keys: Vec<&Map<String, Value>> = self.of_user(user_id).iter().collect();
        match paging {
            Some(paging) => paging.answer(keys),
            None => {
                let items: Vec<Value> = keys.into_iter().cloned().map(Value::Object).collect();
                serde_json::json!({"count": items.len(), "items": items})
            }
        }
    }

    /// One key of the user.
    pub(crate) fn get(&self, user_id: &str, key_id: &str) -> Result<Value, PrivxError> {
        self.of_user(user_id)
            .iter()
            .find(|k| k.get("id").and_then(Value::as_str) == Some(key_id))
            .cloned()
            .map(Value::Object)
            .ok_or_else(|| not_found(user_id, key_id))
    }

    /// Deletes one key of the user.
    pub(crate) fn delete(&mut self, user_id: &str, key_id: &str) -> Result<(), PrivxError> {
        let keys = self.keys.get_mut(user_id).ok_or_else(|| not_found(user_id, key_id))?;
        let at = keys
            .iter()
            .position(|k| k.get("id").and_then(Value::as_str) == Some(key_id))
            .ok_or_else(|| not_found(user_id, key_id))?;
        keys.remove(at);
        Ok(())
    }

    /// The user's keys.
    pub(crate) fn keys(&self, user_id: &str) -> Vec<Value> {
        self.of_user(user_id).iter().cloned().map(Value::Object).collect()
    }
}

fn not_found(user_id: &str, key_id: &str) -> PrivxError {
    PrivxError::not_found(format!("authorized key {key_id} of user {user_id} not found"))
}
