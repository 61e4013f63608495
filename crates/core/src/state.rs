//! Values a script keeps between runs (`state::get` / `state::set`), such as a polling cursor.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

/// Where `state::` values live. `runbook serve` keeps them per automation in its store; a plain
/// `runbook run` keeps them in memory for the one run.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Value>, StateError>;
    /// Stores `value` under `key`.
    async fn set(&self, key: &str, value: Value) -> Result<(), StateError>;
}

/// A state store could not read or write a value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
#[non_exhaustive]
pub struct StateError {
    /// What went wrong.
    pub reason: String,
}

impl StateError {
    /// An error saying why.
    pub fn new(reason: impl Into<String>) -> Self {
        StateError { reason: reason.into() }
    }
}

/// State kept in memory.
#[derive(Debug, Default)]
pub struct MemoryState {
    values: Mutex<HashMap<String, Value>>,
}

impl MemoryState {
    /// An empty store.
    pub fn new() -> Self {
        MemoryState::default()
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        Ok(self.values.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned())
    }

    async fn set(&self, key: &str, value: Value) -> Result<(), StateError> {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), value);
        Ok(())
    }
}
