//! Where runs live: the durable queue and the run history, behind a trait so that backends can
//! be swapped (SQLite embedded, for one instance; PostgreSQL, for several).
//!
//! The contract every backend keeps:
//! * `enqueue` commits the run (with its event) before it returns, and is idempotent on
//!   `(automation, idem_key)`: the same delivery or tick again returns the first run's id;
//! * `claim` moves queued runs whose time has come to `running` under a lease owned by the
//!   caller, never more per automation than its concurrency allows;
//! * a run whose lease is not renewed (`heartbeat`) goes back to the queue (`recover`);
//! * `complete` is accepted only from the lease's owner, so a run is finished once.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub(crate) fn new(e: impl std::fmt::Display) -> Self {
        StoreError(e.to_string())
    }
}

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a worker (or for its retry time).
    Queued,
    /// A worker holds its lease.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error and no retry left.
    Failed,
    /// Stopped by the blast-radius guard.
    Refused,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Refused,
    ];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Refused => "refused",
        }
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Refused)
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a run status; write queued, running, succeeded, failed or refused"))
    }
}

/// A run to queue.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The automation.
    pub automation: String,
    /// What started it: `webhook`, `schedule`, `retry`.
    pub trigger: String,
    /// Idempotency key within the automation (delivery id, tick); `None` for none.
    pub idem_key: Option<String>,
    /// For ticks: the tick's time (unix ms).
    pub scheduled_for: Option<i64>,
    /// The script's `params` for this run.
    pub params: Params,
    /// The event the script sees.
    pub event: Option<Value>,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// The run this one retries.
    pub retry_of: Option<String>,
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The run (the existing one for a duplicate).
    pub run_id: String,
    /// Its automation.
    pub automation: String,
    /// `false` when the key was already queued: nothing new was stored.
    pub created: bool,
}

/// A run a worker now holds.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    /// The run.
    pub id: String,
    /// Its automation.
    pub automation: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// The script's `params`.
    pub params: Params,
    /// The event.
    pub event: Option<Value>,
    /// When it was queued (unix ms).
    pub created_at: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The final status; ignored when `retry_at` is set.
    pub status: RunStatus,
    /// The script's result.
    pub result: Option<Value>,
    /// The error, if it failed.
    pub error: Option<String>,
    /// The error's kind (`action`, `timeout`, ...).
    pub error_kind: Option<String>,
    /// What the script printed.
    pub logs: Value,
    /// The audit records of its action calls.
    pub calls: Value,
    /// Queue the run again for another attempt at this time (unix ms).
    pub retry_at: Option<i64>,
}

/// A run, as the history keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Id (time-ordered).
    pub id: String,
    /// The automation.
    pub automation: String,
    /// What started it.
    pub trigger: String,
    /// State.
    pub status: RunStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Retries allowed.
    pub max_retries: u32,
    /// The params it was given.
    pub params: Params,
    /// The event it was given.
    pub event: Option<Value>,
    /// For ticks, the tick's time (unix ms).
    pub scheduled_for: Option<i64>,
    /// The script's result.
    pub result: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// The last error's kind.
    pub error_kind: Option<String>,
    /// What the script printed (last attempt).
    pub logs: Value,
    /// The audit records of its calls (last attempt).
    pub calls: Value,
    /// The run this one retries.
    pub retry_of: Option<String>,
    /// Queued (unix ms).
    pub created_at: i64,
    /// Not before (unix ms).
    pub not_before: i64,
    /// Last attempt started (unix ms).
    pub started_at: Option<i64>,
    /// Finished (unix ms).
    pub finished_at: Option<i64>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this automation.
    pub automation: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// Counts for metrics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Runs by (automation, status).
    pub runs: BTreeMap<(String, RunStatus), u64>,
}

impl Stats {
    /// Queued runs of every automation.
    pub fn queued(&self) -> u64 {
        self.runs
            .iter()
            .filter(|((_, s), _)| *s == RunStatus::Queued)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The durable queue and history.
#[async_trait]
pub trait Store: Send + Sync {
    /// Queues a run and its event in one transaction, unless `(automation, idem_key)` exists.
    async fn enqueue(&self, run: NewRun) -> Result<Enqueued, StoreError>;

    /// Claims up to `max` runs that may start now, respecting each automation's
    /// `concurrency` (an automation not listed may run one at a time), under a lease of `lease`.
    async fn claim(
        &self,
        owner: &str,
        concurrency: &BTreeMap<String, usize>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedRun>, StoreError>;

    /// Extends the leases of runs `owner` holds.
    async fn heartbeat(&self, owner: &str, ids: &[String], lease: Duration) -> Result<(), StoreError>;

    /// Finishes (or re-queues, with `retry_at`) a run `owner` holds. `false` when the lease was
    /// lost (the run had been re-queued): the completion is discarded.
    async fn complete(&self, owner: &str, id: &str, completion: Completion) -> Result<bool, StoreError>;

    /// Puts a held run back in the queue without counting the attempt (shutdown).
    async fn release(&self, owner: &str, id: &str) -> Result<(), StoreError>;

    /// Re-queues runs whose lease expired (or, with `all_running`, every running run: the
    /// caller knows no other process holds any — a shared backend, where other instances may
    /// hold runs, ignores it). Runs out of attempts become `failed`.
    async fn recover(&self, all_running: bool) -> Result<u64, StoreError>;

    /// One run, whole.
    async fn get(&self, id: &str) -> Result<Option<RunRecord>, StoreError>;

    /// Runs, newest first.
    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;

    /// Queues a new run repeating a finished one (same automation, params and event).
    async fn retry(&self, id: &str) -> Result<Enqueued, StoreError> {
        let Some(original) = self.get(id).await? else {
            return Err(StoreError(format!("no run {id}")));
        };
        if !original.status.is_final() {
            return Err(StoreError(format!(
                "run {id} is {}: only a finished run can be retried",
                original.status.as_str()
            )));
        }
        self.enqueue(NewRun {
            automation: original.automation,
            trigger: "retry".to_owned(),
            idem_key: None,
            scheduled_for: None,
            params: original.params,
            event: original.event,
            max_retries: original.max_retries,
            retry_of: Some(original.id),
        })
        .await
    }

    /// The latest tick an automation was queued for (unix ms).
    async fn last_tick(&self, automation: &str) -> Result<Option<i64>, StoreError>;

    /// A value the automation's script stored.
    async fn state_get(&self, automation: &str, key: &str) -> Result<Option<Value>, StoreError>;

    /// Stores a value for the automation's script.
    async fn state_set(&self, automation: &str, key: &str, value: &Value) -> Result<(), StoreError>;

    /// Deletes finished runs older than `before` (unix ms); returns how many.
    async fn prune(&self, before: i64) -> Result<u64, StoreError>;

    /// Counts for metrics.
    async fn stats(&self) -> Result<Stats, StoreError>;

    /// The rate budget every instance on this store shares, for a store several instances use.
    fn shared_budget(&self) -> Option<std::sync::Arc<dyn runbook_core::http::SharedBudget>> {
        None
    }
}

/// Opens the store a URL names: `sqlite://PATH` or `postgres://…` (`postgresql://…`).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = SqliteStore::open(std::path::Path::new(path)).await?;
        return Ok(std::sync::Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(PgStore::open(url).await?));
    }
    Err(StoreError(format!(
        "store = \"{}\" is not a store this build knows; write sqlite://PATH or postgres://USER@HOST:PORT/DATABASE",
        redact_url(url)
    )))
}

/// `url` without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The store's `state::` values for one automation, as the engine wants them.
pub struct AutomationState {
    store: std::sync::Arc<dyn Store>,
    automation: String,
}

impl AutomationState {
    /// The state of `automation` in `store`.
    pub fn new(store: std::sync::Arc<dyn Store>, automation: &str) -> Self {
        AutomationState {
            store,
            automation: automation.to_owned(),
        }
    }
}

#[async_trait]
impl runbook_core::StateStore for AutomationState {
    async fn get(&self, key: &str) -> Result<Option<Value>, runbook_core::StateError> {
        self.store
            .state_get(&self.automation, key)
            .await
            .map_err(|e| runbook_core::StateError::new(e.to_string()))
    }

    async fn set(&self, key: &str, value: Value) -> Result<(), runbook_core::StateError> {
        self.store
            .state_set(&self.automation, key, &value)
            .await
            .map_err(|e| runbook_core::StateError::new(e.to_string()))
    }
}

/// Parameters from configuration, as a JSON object.
pub type Params = Map<String, Value>;
