//! Where runs live: the durable queue and the run history, behind a trait so that backends can
//! be swapped (SQLite embedded, for one instance; PostgreSQL, for several).
//!
//! The contract every backend keeps:
//! * `enqueue` commits the run (with its event) before it returns, and is idempotent on
//!   `(automation, idem_key)` and on every dedup key a webhook delivery carries (kept in their own
//!   table, longer than run history): the same delivery or tick again returns the first run's id;
//! * `claim` moves queued runs whose time has come to `running` under a lease owned by the
//!   caller, never more per automation than its concurrency allows;
//! * a run whose lease is not renewed (`heartbeat`) goes back to the queue (`recover`);
//! * every claim starts a new attempt with a new lease **epoch**; `heartbeat`, `complete`,
//!   `release` and every journal write are accepted only for the run's current epoch while it is
//!   running, so an attempt that lost its lease (even to the same process) changes nothing;
//! * a run's journal ([`Store::journal`]) keeps one entry per step, for resuming it and for its
//!   history; a person decides about a step in doubt with [`Store::resolve`].

mod pg_tls;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;
mod timed;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use runbook_core::journal::{JOURNAL_VERSION, StepError};
use runbook_core::{Effect, JournalEntry, JournalError, Resolution, SavedPlan, StepKind, StepStatus};
use serde::Serialize;
use serde_json::{Map, Value};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub(crate) use timed::{TIMED_OUT, TimedStore};

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
#[serde(rename_all = "snake_case")]
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
    /// A resumed attempt took a different step than the journal recorded: stopped for good,
    /// nothing sent after the point where they differ.
    Diverged,
    /// A change in doubt (sent, never answered, nothing to tell whether it took effect) waits for
    /// a person: `runbook runs resolve RUN STEP --sent|--not-sent`.
    NeedsAttention,
    /// Stopped by a person (`runbook runs cancel`): final.
    Cancelled,
    /// Planned, and waiting for its automation's approvers (`runbook runs approve|reject`). It
    /// holds no lease and no concurrency slot.
    AwaitingApproval,
    /// Nobody approved it before its approval expired: nothing was sent. Final.
    Expired,
    /// An approver rejected it: nothing was sent. Final.
    Rejected,
    /// Its apply was about to send a change outside the approved plan: that change was not
    /// sent, and the run stopped. Final.
    Stale,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 12] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Refused,
        RunStatus::Diverged,
        RunStatus::NeedsAttention,
        RunStatus::Cancelled,
        RunStatus::AwaitingApproval,
        RunStatus::Expired,
        RunStatus::Rejected,
        RunStatus::Stale,
    ];

    /// The statuses of finished runs, as SQL text: `'succeeded', 'failed', ...`.
    pub(crate) const FINAL_SQL: &'static str =
        "'succeeded', 'failed', 'refused', 'diverged', 'cancelled', 'expired', 'rejected', 'stale'";

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Refused => "refused",
            RunStatus::Diverged => "diverged",
            RunStatus::NeedsAttention => "needs_attention",
            RunStatus::Cancelled => "cancelled",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Expired => "expired",
            RunStatus::Rejected => "rejected",
            RunStatus::Stale => "stale",
        }
    }

    /// Whether the run is over (`needs_attention` and `awaiting_approval` are not: they wait
    /// for a person).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded
                | RunStatus::Failed
                | RunStatus::Refused
                | RunStatus::Diverged
                | RunStatus::Cancelled
                | RunStatus::Expired
                | RunStatus::Rejected
                | RunStatus::Stale
        )
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            format!(
                "\"{s}\" is not a run status; write queued, running, succeeded, failed, refused, diverged, \
                     needs_attention, cancelled, awaiting_approval, expired, rejected or stale"
            )
        })
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
    /// A webhook delivery's dedup keys (its id, its signature): the run is a duplicate when any
    /// of them was recorded before, and all of them are recorded with the run, in the
    /// `deliveries` table, which outlives run history (see [`Store::prune_deliveries`]).
    pub dedup: Vec<String>,
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
    /// The automation's script text at enqueue time: every attempt runs this text, so that a
    /// resumed attempt replays the journal against the script that wrote it.
    pub script: String,
    /// Who started it: `webhook`, `schedule`, or the name of the API token that asked.
    pub started_by: String,
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
    /// This attempt's lease epoch: what its heartbeats, completion and journal writes carry.
    pub epoch: u64,
    /// The script text pinned when the run was queued (empty for a run queued by a runbook
    /// older than the journal: it runs the automation's current script).
    pub script: String,
    /// Its plan was approved: this attempt applies exactly that plan.
    pub approved: bool,
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
    /// The SHA-256 of the pinned script (empty for a run queued before scripts were pinned).
    pub script_digest: String,
    /// The steps its journal holds, in key order (filled by `get`; `list` leaves it empty).
    pub steps: Vec<JournalEntry>,
    /// Who started it: `webhook`, `schedule`, or an API token's name (empty for a run queued
    /// before runbook recorded it).
    pub started_by: String,
    /// Who cancelled it (or asked to, while it runs).
    pub cancelled_by: Option<String>,
    /// Its plan and the approvers' decisions, for a run of an automation with `approval`
    /// (`None` until it planned).
    pub approval: Option<ApprovalState>,
}

/// A run's plan waiting for (or given) approval, and the decisions on it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalState {
    /// The plan the approvers decide on: its effects, their digest, and what `now()` returned.
    pub plan: SavedPlan,
    /// How many plans the run has made (a stale plan at apply time makes a new one): only the
    /// decisions of the current round count.
    pub round: u32,
    /// When the plan expires unless approved (unix ms).
    pub expires_at: Option<i64>,
    /// When the last approval needed came in (unix ms); `None` while it waits.
    pub approved_at: Option<i64>,
    /// How the current plan differs from the one approved before it, when the services changed
    /// between that approval and its apply: `{"added", "removed", "changed", "text"}`.
    pub diff: Option<Value>,
    /// Every decision on the run, oldest first, every round.
    pub approvals: Vec<Approval>,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The plan round it was made on.
    pub round: u32,
    /// The approver's token name.
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: Decision,
    /// What they wrote.
    pub comment: String,
    /// The digest of the effects they decided on.
    pub effects_sha256: String,
    /// When (unix ms).
    pub at: i64,
}

/// An approver's word on a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Apply it.
    Approve,
    /// Do not: the run ends `rejected`.
    Reject,
}

impl Decision {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approve" => Ok(Decision::Approve),
            "reject" => Ok(Decision::Reject),
            other => Err(format!("\"{other}\" is not a decision")),
        }
    }
}

/// A plan an attempt made, to wait for approval.
#[derive(Debug, Clone)]
pub struct PendingPlan {
    /// The plan.
    pub plan: SavedPlan,
    /// How long the approvers have, from now (by the store's clock).
    pub expires_in: Duration,
    /// How it differs from the plan approved before it (a stale plan), as [`ApprovalState::diff`].
    pub diff: Option<Value>,
    /// What the plan's script printed.
    pub logs: Value,
    /// The audit records of its (read and planned) calls.
    pub calls: Value,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The run's status after it: `queued` (approved: it applies now), `awaiting_approval`
    /// (more approvals needed) or `rejected`.
    pub status: RunStatus,
    /// Distinct approvals of the current plan so far.
    pub approvals: u32,
    /// The digest of the effects decided on.
    pub effects_sha256: String,
}

/// Why a decision was not recorded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecideError {
    /// No run has that id.
    #[error("no run {0}")]
    NoRun(String),
    /// The run does not wait for approval (it was applied, rejected, expired, cancelled...).
    #[error(
        "run {run} is {status}, not awaiting_approval: only a run waiting for approval can be approved or rejected"
    )]
    NotWaiting {
        /// The run.
        run: String,
        /// Its status.
        status: String,
    },
    /// Its approval expired (the run is `expired` now).
    #[error("run {0}'s approval expired: it is expired now and nothing was sent; start it again to make a new plan")]
    Expired(String),
    /// This approver already decided on this plan.
    #[error("{approver} already decided on run {run}'s current plan: an approval counts once")]
    AlreadyDecided {
        /// The run.
        run: String,
        /// The approver.
        approver: String,
    },
    /// The approver saw other effects than the run's current plan.
    #[error(
        "run {run}'s plan is not the one you reviewed (its effects digest is {current}, you sent {seen}): review it again with `runbook runs show {run}`"
    )]
    PlanChanged {
        /// The run.
        run: String,
        /// The digest sent.
        seen: String,
        /// The current plan's digest.
        current: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RunRecord {
    /// What a listing shows of it.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            id: self.id.clone(),
            automation: self.automation.clone(),
            trigger: self.trigger.clone(),
            status: self.status,
            attempts: self.attempts,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error: self.error.clone(),
            retry_of: self.retry_of.clone(),
            started_by: self.started_by.clone(),
            cancelled_by: self.cancelled_by.clone(),
        }
    }
}

/// A run without its params, event, result, logs, calls or steps: what a listing shows, read
/// from the store without loading the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
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
    /// Queued (unix ms).
    pub created_at: i64,
    /// Last attempt started (unix ms).
    pub started_at: Option<i64>,
    /// Finished (unix ms).
    pub finished_at: Option<i64>,
    /// The last error.
    pub error: Option<String>,
    /// The run this one retries.
    pub retry_of: Option<String>,
    /// Who started it.
    pub started_by: String,
    /// Who cancelled it.
    pub cancelled_by: Option<String>,
}

/// What [`Store::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The run was queued or waiting for a person: it is `cancelled` now and will not start.
    Now,
    /// The run is running: its worker learns at its next heartbeat, stops it gently (calls in
    /// flight finish and are journaled) and records it `cancelled`.
    Stopping,
}

/// Why a run was not cancelled.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CancelError {
    /// No run has that id.
    #[error("no run {0}")]
    NoRun(String),
    /// The run is over.
    #[error("run {run} is {status}: a finished run cannot be cancelled")]
    Finished {
        /// The run.
        run: String,
        /// Its final status.
        status: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An automation's switch as the store keeps it (an automation never paused has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutomationSwitch {
    /// The automation.
    pub name: String,
    /// Whether its runs are held: deliveries and ticks are stored, nothing starts.
    pub paused: bool,
    /// Who paused or resumed it last.
    pub changed_by: String,
    /// When (unix ms).
    pub changed_at: i64,
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
    /// Only runs created at or after this time (unix ms).
    pub since: Option<i64>,
    /// Only runs created before this time (unix ms).
    pub until: Option<i64>,
    /// Only runs older than this run (its id): the next page of a listing.
    pub before: Option<String>,
}

/// A signed-in console session as the store keeps it. The cookie's value is kept only as its
/// SHA-256, so whoever reads the store cannot sign in with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 (hex) of the session cookie's value.
    pub id_sha256: String,
    /// The name of the token that signed in.
    pub token_name: String,
    /// SHA-256 (hex) of that token: a session ends with its token's rotation.
    pub token_sha256: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// When it signed in (unix ms).
    pub created_at: i64,
    /// When it was last used (unix ms; recorded at most once a minute).
    pub last_seen: i64,
}

/// Counts for metrics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Runs by (automation, status).
    pub runs: BTreeMap<(String, RunStatus), u64>,
    /// How long the oldest queued run whose time has come has waited (ms), if any waits.
    pub oldest_queued_ms: Option<i64>,
}

/// One automation's runs that are not over yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Queued (including those waiting for a retry's time).
    pub queued: u64,
    /// Running.
    pub running: u64,
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
    /// Queues a run and its event in one transaction, unless `(automation, idem_key)` exists or
    /// any of its `dedup` keys was recorded for the automation (then the answer names the run
    /// that key was recorded with, which may have been pruned since). A new run's `dedup` keys
    /// are recorded in the same transaction; a duplicate's other keys are recorded too, all but
    /// its `idem_key` (see [`duplicate_keys`]).
    async fn enqueue(&self, run: NewRun) -> Result<Enqueued, StoreError>;

    /// Claims up to `max` runs that may start now, respecting each automation's
    /// `concurrency`, under a lease of `lease`. Only automations listed in `concurrency` are
    /// claimed: a run of an automation this instance does not know (another instance's newer
    /// configuration, during a rolling deploy) stays queued for an instance that knows it.
    async fn claim(
        &self,
        owner: &str,
        concurrency: &BTreeMap<String, usize>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedRun>, StoreError>;

    /// Extends the leases of the attempts `owner` holds, each named by its run and epoch;
    /// returns the runs whose lease it renewed. A run missing from the answer is no longer this
    /// attempt's (re-queued, claimed again, or finished): its attempt must stop.
    async fn heartbeat(&self, owner: &str, runs: &[(String, u64)], lease: Duration) -> Result<Vec<String>, StoreError>;

    /// Finishes (or re-queues, with `retry_at`) the attempt of `id` at `epoch`. `false` when the
    /// attempt no longer holds the run (its lease was lost, or it was claimed again, even by the
    /// same owner): the completion is discarded.
    async fn complete(&self, owner: &str, id: &str, epoch: u64, completion: Completion) -> Result<bool, StoreError>;

    /// Puts a held run back in the queue without counting the attempt (shutdown). `false` when
    /// the attempt at `epoch` no longer holds it.
    async fn release(&self, owner: &str, id: &str, epoch: u64) -> Result<bool, StoreError>;

    /// The journal of attempt `attempt` of run `run_id`, at lease `epoch`: it loads every entry
    /// of the run, and writes only while the run is running at that epoch.
    fn journal(&self, run_id: &str, attempt: u32, epoch: u64) -> std::sync::Arc<dyn runbook_core::Journal>;

    /// Records a person's word on the step at `key` of a run waiting as `needs_attention` (the
    /// step must be an `intent` in doubt), and queues the run again: its next attempt replays
    /// the journal with that answer.
    async fn resolve(&self, run_id: &str, key: &str, resolution: Resolution, by: &str) -> Result<(), ResolveError>;

    /// Drops the results and arguments of the journals of runs finished before `before` (unix
    /// ms), keeping their step lists; returns how many steps it compacted.
    async fn compact_journals(&self, before: i64) -> Result<u64, StoreError>;

    /// Re-queues runs whose lease expired (or, with `all_running`, every running run: the
    /// caller knows no other process holds any — a shared backend, where other instances may
    /// hold runs, ignores it). Runs out of attempts become `failed`.
    async fn recover(&self, all_running: bool) -> Result<u64, StoreError>;

    /// One run, whole.
    async fn get(&self, id: &str) -> Result<Option<RunRecord>, StoreError>;

    /// Runs, newest first.
    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;

    /// Runs, newest first, as summaries: reads only the columns a listing shows.
    async fn list_summaries(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError>;

    /// Cancels a run for `by`: a queued run (or one waiting for a person) at once; a running one
    /// through its worker, which the next heartbeat tells ([`Store::cancel_requested`]).
    async fn cancel(&self, id: &str, by: &str) -> Result<Cancelled, CancelError>;

    /// The runs `owner` holds that a person asked to cancel.
    async fn cancel_requested(&self, owner: &str) -> Result<Vec<String>, StoreError>;

    /// Ends the plan attempt of `id` at `epoch`: the run waits as `awaiting_approval` with
    /// `pending`'s plan (a new round: earlier approvals no longer count), holding no lease. A
    /// run a person asked to cancel meanwhile is `cancelled` instead. `false` when the attempt
    /// no longer holds the run.
    async fn await_approval(&self, owner: &str, id: &str, epoch: u64, pending: PendingPlan)
    -> Result<bool, StoreError>;

    /// Records `by`'s decision on the current plan of a run waiting for approval, in one
    /// transaction: a rejection ends the run `rejected`; the `required`-th distinct approval
    /// queues it to apply (once: the run is no longer waiting), its retries counted from the
    /// apply's first attempt (the plan's attempts do not use them up). `seen`, when given, is the
    /// effects digest the approver reviewed: another plan is refused. A run past its expiry is
    /// made `expired` and refused.
    async fn decide(
        &self,
        id: &str,
        by: &str,
        decision: Decision,
        comment: &str,
        seen: Option<&str>,
        required: u32,
    ) -> Result<Decided, DecideError>;

    /// Ends as `expired` every run whose approval expired; returns how many.
    async fn expire_approvals(&self) -> Result<u64, StoreError>;

    /// Pauses (or resumes) an automation for `by`: a paused automation's queued runs are not
    /// claimed; its deliveries and ticks are still stored.
    async fn set_paused(&self, automation: &str, paused: bool, by: &str) -> Result<(), StoreError>;

    /// The automations' switches the store keeps, by name.
    async fn automations(&self) -> Result<Vec<AutomationSwitch>, StoreError>;

    /// Queues a new run repeating a finished one (same automation, params and event), running
    /// `script`: the automation's script as it is now; `by` asked for it.
    async fn retry(&self, id: &str, script: String, by: &str) -> Result<Enqueued, StoreError> {
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
            dedup: Vec::new(),
            scheduled_for: None,
            params: original.params,
            event: original.event,
            max_retries: original.max_retries,
            retry_of: Some(original.id),
            script,
            started_by: by.to_owned(),
        })
        .await
    }

    /// The latest tick an automation was queued for (unix ms).
    async fn last_tick(&self, automation: &str) -> Result<Option<i64>, StoreError>;

    /// A value the automation's script stored.
    async fn state_get(&self, automation: &str, key: &str) -> Result<Option<Value>, StoreError>;

    /// Stores a value for the automation's script.
    async fn state_set(&self, automation: &str, key: &str, value: &Value) -> Result<(), StoreError>;

    /// Deletes finished runs older than `before` (unix ms); returns how many. Dedup keys stay.
    async fn prune(&self, before: i64) -> Result<u64, StoreError>;

    /// Deletes webhook dedup keys recorded before `before` (unix ms); returns how many.
    async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError>;

    /// Counts for metrics.
    async fn stats(&self) -> Result<Stats, StoreError>;

    /// Keeps a new console session.
    async fn session_create(&self, session: &ConsoleSession) -> Result<(), StoreError>;

    /// The console session whose cookie digests to `id_sha256`.
    async fn session_get(&self, id_sha256: &str) -> Result<Option<ConsoleSession>, StoreError>;

    /// Records that a console session was used at `at` (unix ms).
    async fn session_touch(&self, id_sha256: &str, at: i64) -> Result<(), StoreError>;

    /// Ends a console session (sign-out).
    async fn session_delete(&self, id_sha256: &str) -> Result<(), StoreError>;

    /// Forgets the console sessions last used before `idle_before` or created before
    /// `created_before` (unix ms); returns how many.
    async fn session_prune(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError>;

    /// How many runs of `automation` are queued and running (one indexed count each).
    async fn backlog(&self, automation: &str) -> Result<Backlog, StoreError>;

    /// The run of the delivery already stored under any of `keys` (its id, its signature) for
    /// `automation`, if any — found in the dedup keys, which outlive run history: a delivery sent
    /// again is recognised even when the queue is full.
    async fn known_delivery(&self, automation: &str, keys: &[String]) -> Result<Option<String>, StoreError>;

    /// Whether the store answers and would take a write (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Targets changed, or that may have been, by the journaled calls started at or after
    /// `since_ms` (unix ms) — of `automation`'s runs, or of every run: the daily budget's count.
    /// A call its service refused changed nothing and is not counted.
    async fn changes_since(&self, automation: Option<&str>, since_ms: i64) -> Result<u64, StoreError>;

    /// The rate budget every instance on this store shares, for a store several instances use.
    fn shared_budget(&self) -> Option<std::sync::Arc<dyn runbook_core::http::SharedBudget>> {
        None
    }
}

/// The keys of a duplicate delivery that are recorded for the first run: its `dedup` keys but
/// its `idem_key`. A sender's retry signed again (same id, new signature) thus records its new
/// signature, so that a capture of the retry re-sent under yet another id is a duplicate too; but
/// a captured delivery re-sent under a new id (a duplicate by its signature) does not claim that
/// id, which the signature may not cover: a real delivery sent later under it is not lost.
pub fn duplicate_keys(run: &NewRun) -> Vec<String> {
    run.dedup
        .iter()
        .filter(|k| Some(k.as_str()) != run.idem_key.as_deref())
        .cloned()
        .collect()
}

/// Why a resolution was not recorded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No run has that id.
    #[error("no run {0}")]
    NoRun(String),
    /// The run has no step at that key.
    #[error("run {run} has no step {key}; `runbook runs show {run}` lists its steps")]
    NoStep {
        /// The run.
        run: String,
        /// The key asked for.
        key: String,
    },
    /// The step is not in doubt.
    #[error("step {key} of run {run} is not in doubt (it is {status}): only a step recorded as intent can be resolved")]
    NotInDoubt {
        /// The run.
        run: String,
        /// The step.
        key: String,
        /// Its status.
        status: String,
    },
    /// The run is not waiting for a person.
    #[error("run {run} is {status}, not needs_attention: only a run waiting for a person can be resolved")]
    NotWaiting {
        /// The run.
        run: String,
        /// Its status.
        status: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    // libpq also takes the password (and a client key's passphrase) as query parameters.
    let tail = match tail.split_once('?') {
        None => tail.to_owned(),
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if matches!(key.to_ascii_lowercase().as_str(), "password" | "sslpassword") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
    };
    format!("{scheme}://{authority}{tail}")
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

/// A journal entry as the stores keep it: one column per field, JSON as text.
#[derive(Debug, Clone)]
pub(crate) struct EntryRow {
    pub key: String,
    pub version: i64,
    pub kind: String,
    pub action: String,
    pub effect: String,
    pub idempotent: bool,
    pub args_digest: String,
    pub args: String,
    pub status: String,
    pub result: Option<String>,
    pub result_digest: Option<String>,
    pub error: Option<String>,
    pub targets: i64,
    pub attempt: i64,
    pub epoch: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
}

/// The columns of the journal table, in [`EntryRow`]'s order after `run_id`.
pub(crate) const ENTRY_COLUMNS: &str = "key, version, kind, action, effect, idempotent, args_digest, args, status, result, \
     result_digest, error, targets, attempt, epoch, started_at, finished_at, resolution, resolved_by";

fn to_i64<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl EntryRow {
    pub(crate) fn from_entry(entry: &JournalEntry) -> EntryRow {
        EntryRow {
            key: entry.key.clone(),
            version: i64::from(entry.version),
            kind: entry.kind.as_str().to_owned(),
            action: entry.action.clone(),
            effect: entry.effect.as_str().to_owned(),
            idempotent: entry.idempotent,
            args_digest: entry.args_digest.clone(),
            args: json_text(&entry.args),
            status: entry.status.as_str().to_owned(),
            result: entry.result.as_ref().map(json_text),
            result_digest: entry.result_digest.clone(),
            error: entry
                .error
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok())
                .map(|v| json_text(&v)),
            targets: to_i64(entry.targets),
            attempt: i64::from(entry.attempt),
            epoch: to_i64(entry.epoch),
            started_at: entry.started_at,
            finished_at: entry.finished_at,
            resolution: entry.resolution.map(|r| r.as_str().to_owned()),
            resolved_by: entry.resolved_by.clone(),
        }
    }

    /// The entry, or what is wrong with the row. A newer journal format is refused unless
    /// `any_version` (the history shows what it can).
    pub(crate) fn decode(self, run_id: &str, any_version: bool) -> Result<JournalEntry, JournalError> {
        let key = self.key.clone();
        let corrupt = |what: String| JournalError::Corrupt(format!("run {run_id}, step {key}: {what}"));
        let version = u32::try_from(self.version).map_err(|_| corrupt(format!("version {}", self.version)))?;
        if version > JOURNAL_VERSION && !any_version {
            return Err(JournalError::NewerVersion { found: version });
        }
        let kind: StepKind = self.kind.parse().map_err(corrupt)?;
        let effect: Effect = serde_json::from_value(Value::String(self.effect.clone()))
            .map_err(|_| corrupt(format!("\"{}\" is not an effect", self.effect)))?;
        let status: StepStatus = self.status.parse().map_err(corrupt)?;
        let json = |text: &str, field: &str| -> Result<Value, JournalError> {
            serde_json::from_str(text).map_err(|e| corrupt(format!("its {field} is not JSON: {e}")))
        };
        let mut entry = JournalEntry::new(self.key.clone(), kind, self.action.clone(), effect);
        entry.version = version;
        entry.idempotent = self.idempotent;
        entry.args_digest = self.args_digest.clone();
        entry.args = json(&self.args, "args")?;
        entry.status = status;
        entry.result = self.result.as_deref().map(|t| json(t, "result")).transpose()?;
        entry.result_digest = self.result_digest.clone();
        entry.error = match self.error.as_deref() {
            None => None,
            Some(text) => Some(
                serde_json::from_str::<StepError>(text)
                    .map_err(|e| corrupt(format!("its error is unreadable: {e}")))?,
            ),
        };
        entry.targets = u64::try_from(self.targets).map_err(|_| corrupt(format!("targets {}", self.targets)))?;
        entry.attempt = u32::try_from(self.attempt).map_err(|_| corrupt(format!("attempt {}", self.attempt)))?;
        entry.epoch = u64::try_from(self.epoch).map_err(|_| corrupt(format!("epoch {}", self.epoch)))?;
        entry.started_at = self.started_at;
        entry.finished_at = self.finished_at;
        entry.resolution = self
            .resolution
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(corrupt)?;
        entry.resolved_by = self.resolved_by;
        Ok(entry)
    }
}

/// Decodes a run's rows for its history, in key order.
pub(crate) fn history_steps(run_id: &str, rows: Vec<EntryRow>) -> Result<Vec<JournalEntry>, StoreError> {
    let mut steps = rows
        .into_iter()
        .map(|row| row.decode(run_id, true))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::new)?;
    runbook_core::journal::sort_by_key(&mut steps);
    Ok(steps)
}

/// Decodes a run's rows for a resuming attempt.
pub(crate) fn journal_entries(run_id: &str, rows: Vec<EntryRow>) -> Result<Vec<JournalEntry>, JournalError> {
    rows.into_iter().map(|row| row.decode(run_id, false)).collect()
}

/// Why a journal write of attempt `epoch` is refused, given the run's status and epoch (`None`:
/// no such run).
pub(crate) fn fenced(run_id: &str, epoch: u64, found: Option<(String, i64)>) -> Option<JournalError> {
    match found {
        None => Some(JournalError::Fenced(format!("run {run_id} no longer exists"))),
        Some((_, current)) if u64::try_from(current).ok() != Some(epoch) => Some(JournalError::Fenced(format!(
            "run {run_id} was claimed again (lease epoch {current}; this attempt holds {epoch})"
        ))),
        Some((status, _)) if status != "running" => Some(JournalError::Fenced(format!(
            "run {run_id} is {status}: this attempt's lease has ended"
        ))),
        Some(_) => None,
    }
}

/// JSON text of a value.
pub(crate) fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// The SHA-256 of a pinned script, in hex (empty for no script).
pub(crate) fn script_digest(script: &str) -> String {
    if script.is_empty() {
        String::new()
    } else {
        runbook_core::journal::hex_digest(script.as_bytes())
    }
}

/// A run's approval columns as the stores keep them (JSON as text), made into its
/// [`ApprovalState`] (without its decisions): `None` for a run that never planned for approval.
pub(crate) fn approval_state(
    plan: Option<String>,
    round: i64,
    diff: Option<String>,
    expires_at: Option<i64>,
    approved_at: Option<i64>,
) -> Option<ApprovalState> {
    let plan: SavedPlan = serde_json::from_str(&plan?).ok()?;
    Some(ApprovalState {
        plan,
        round: u32::try_from(round).unwrap_or(0),
        expires_at,
        approved_at,
        diff: diff.and_then(|d| serde_json::from_str(&d).ok()),
        approvals: Vec::new(),
    })
}

/// The columns of the approvals table, in [`Approval`]'s order after `run_id`.
pub(crate) const APPROVAL_COLUMNS: &str = "round, approver, decision, comment, effects_sha256, at";

/// One decision as the stores keep it.
pub(crate) fn approval_of(
    round: i64,
    approver: String,
    decision: &str,
    comment: String,
    digest: String,
    at: i64,
) -> Approval {
    Approval {
        round: u32::try_from(round).unwrap_or(0),
        approver,
        decision: decision.parse().unwrap_or(Decision::Reject),
        comment,
        effects_sha256: digest,
        at,
    }
}

/// The error a rejected run records.
pub(crate) fn rejection_text(by: &str, comment: &str) -> String {
    if comment.trim().is_empty() {
        format!("rejected by {by}: nothing was sent")
    } else {
        format!("rejected by {by} (\"{}\"): nothing was sent", comment.trim())
    }
}

/// The error an expired run records.
pub(crate) const EXPIRED_TEXT: &str =
    "its plan was not approved before the approval expired (approval.expires): nothing was sent";
