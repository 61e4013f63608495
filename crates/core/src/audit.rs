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
    /// Records one call. Must not block for long: it runs on the script's thread.
    fn record(&self, record: &AuditRecord);
}

/// Writes one JSON object per line to a file, flushed after each record so that nothing is lost
/// when the process is killed.
#[derive(Debug)]
pub struct JsonlAuditSink {
    file: Mutex<BufWriter<File>>,
}

impl JsonlAuditSink {
    /// Creates (or truncates) the file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(JsonlAuditSink {
            file: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }
}

impl AuditSink for JsonlAuditSink {
    fn record(&self, record: &AuditRecord) {
        let Ok(line) = serde_json::to_string(record) else {
            return;
        };
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if writeln!(file, "{line}").and_then(|()| file.flush()).is_err() {
            tracing::warn!("could not write to the audit log");
        }
    }
}
