//! The audit trail: one record per action call.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::action::Effect;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The call succeeded.
    Ok,
    /// The call failed.
    Error,
    /// Plan mode recorded the call instead of sending it.
    Planned,
    /// The guard refused the call before it was sent.
    Refused,
    /// The run was cancelled while the call was in flight.
    Cancelled,
    /// A resumed run took the answer its journal recorded: nothing was sent.
    Replayed,
}

/// One action call, as the audit trail keeps it. Arguments have secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// The run.
    pub run_id: String,
    /// Order of the call within the run, from 1.
    pub seq: u64,
    /// When the call started (RFC 3339).
    pub at: String,
    /// `namespace.action`.
    pub action: String,
    /// The action's effect.
    pub effect: Effect,
    /// The arguments.
    pub args: Value,
    /// Targets counted by the guard.
    pub targets: u64,
    /// How it ended.
    pub outcome: CallOutcome,
    /// The service's HTTP status on failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The error message on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// HTTP attempts (retries included).
    pub attempts: u32,
    /// How long the call took, in milliseconds.
    pub duration_ms: f64,
}

/// Receives audit records as calls complete.
pub trait AuditSink: Send + Sync {
    /// Records one call. Must not block for long: it runs on the call's way back to the script.
    /// An error stops the run: nothing more may change that the trail cannot show.
    fn record(&self, record: &AuditRecord) -> Result<(), AuditError>;
}

/// An audit record could not be kept.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct AuditError {
    /// What failed, where.
    pub message: String,
}

impl AuditError {
    /// An error saying what failed.
    pub fn new(message: impl Into<String>) -> Self {
        AuditError {
            message: message.into(),
        }
    }
}

/// Appends one JSON object per line to a file, flushed after each record so that nothing is
/// lost when the process is killed. Earlier runs' records stay: the file is a trail, not a report.
#[derive(Debug)]
pub struct JsonlAuditSink {
    path: String,
    file: Mutex<BufWriter<File>>,
}

impl JsonlAuditSink {
    /// Opens the file for appending, creating it when it does not exist.
    pub fn append(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonlAuditSink {
            path: path.display().to_string(),
            file: Mutex::new(BufWriter::new(file)),
        })
    }
}

impl AuditSink for JsonlAuditSink {
    fn record(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let line = serde_json::to_string(record)
            .map_err(|e| AuditError::new(format!("cannot write a record for {}: {e}", self.path)))?;
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(file, "{line}")
            .and_then(|()| file.flush())
            .map_err(|e| AuditError::new(format!("cannot write to {}: {e}", self.path)))
    }
}
