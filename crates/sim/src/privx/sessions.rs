//! The auth service's session storage and the connection manager: per user, the sessions
//! `GET /auth/api/v1/sessionstorage/users/{id}/sessions` lists and the terminate endpoints end,
//! and the live connections `POST /connection-manager/api/v1/terminate/user/{id}` ends.
//!
//! A terminated session is removed: the listing shows only sessions still open. Ending what is
//! already ended answers 200, as PrivX's terminate endpoints are documented to.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::errors::PrivxError;
use super::paging::Paging;
use crate::PrivxFixture;

/// The session list's documented default sort key.
pub(crate) const SESSION_SORT_KEY: Option<&str> = Some("expires");

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// `user_id` → open sessions.
    sessions: BTreeMap<String, Vec<Map<String, Value>>>,
    /// `user_id` → live connections.
    connections: BTreeMap<String, Vec<Value>>,
}

impl Sessions {
    pub(crate) fn new(fixture: &PrivxFixture) -> Sessions {
        let sessions = fixture
            .sessions
            .iter()
            .map(|(user, list)| {
                (
                    user.clone(),
                    list.iter().filter_map(Value::as_object).cloned().collect(),
                )
            })
            .collect();
        Sessions {
            sessions,
            connections: fixture.connections.clone(),
        }
    }

    /// A page of the user's open sessions, `{count, items}`.
    pub(crate) fn list(&self, user_id: &str, paging: &Paging) -> Value {
        let sessions = self.sessions.get(user_id).map(Vec::as_slice).unwrap_or_default();
        paging.answer(sessions.iter().collect())
    }

    /// Ends every session of the user.
    pub(crate) fn terminate_user(&mut self, user_id: &str) {
        self.sessions.remove(user_id);
    }

    /// Ends one session, whoever's it is.
    pub(crate) fn terminate(&mut self, session_id: &str) -> Result<(), PrivxError> {
        for sessions in self.sessions.values_mut() {
            if let Some(at) = sessions
                .iter()
                .position(|s| s.get("id").and_then(Value::as_str) == Some(session_id))
            {
                sessions.remove(at);
                return Ok(());
            }
        }
        Err(PrivxError::not_found(format!("session {session_id} not found")))
    }

    /// The user's open sessions.
    pub(crate) fn of(&self, user_id: &str) -> Vec<Value> {
        let sessions = self.sessions.get(user_id).map(Vec::as_slice).unwrap_or_default();
        sessions.iter().cloned().map(Value::Object).collect()
    }

    /// Ends every live connection of the user.
    pub(crate) fn terminate_connections(&mut self, user_id: &str) {
        self.connections.remove(user_id);
    }

    /// The user's live connections.
    pub(crate) fn connections(&self, user_id: &str) -> Vec<Value> {
        self.connections.get(user_id).cloned().unwrap_or_default()
    }
}
