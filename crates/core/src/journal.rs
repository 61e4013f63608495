//! The journal of a durable run: one entry per step, written as the step happens, so that a run
//! that crashed, lost its lease or was interrupted can be resumed without sending a change twice.
//!
//! A **step** is an action call, `now()`, `state::get`, `state::set`, or a `parallel` (which items
//! it started); nothing else counts. Its **key** is structural, so it is the same whatever order
//! `parallel`'s items finish in: the n-th step of the script is `n`; inside the `parallel` at step
//! 9, item i's m-th step is `9/i/m` (i is the input index).
//!
//! The engine writes a read after it answers, and a write's `intent` — with every read before it —
//! before the request leaves the process, its outcome after. On resume the script runs again from
//! its pinned text: a step found at its key with the same kind, action and arguments returns its
//! recorded result without a request; any other step there, or recorded steps never reached, end
//! the run as `diverged`. A write recorded as `intent` and never answered is **in doubt**: an
//! idempotent one is sent again; a non-idempotent one runs its action's probe, or stops the run as
//! `needs_attention` until a person says whether it was sent ([`Resolution`]).
//!
//! A backend implements [`Journal`] for one attempt of one run; every write is conditional on the
//! attempt's lease epoch, so a stale attempt's writes are refused ([`JournalError::Fenced`]). A
//! [`Fence`] keeps the attempt itself from sending a change after its lease may have passed to
//! another worker.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::action::Effect;

/// The journal format this engine writes. A journal written by a newer engine is refused.
pub const JOURNAL_VERSION: u32 = 1;

/// What kind of step an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// An action call.
    Call,
    /// `now()`.
    Now,
    /// `state::get(key)`.
    StateGet,
    /// `state::set(key, value)`.
    StateSet,
    /// `parallel(items, f)`: how many items it was given and started.
    Parallel,
}

impl StepKind {
    /// The name used in messages and stores.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Call => "call",
            StepKind::Now => "now",
            StepKind::StateGet => "state_get",
            StepKind::StateSet => "state_set",
            StepKind::Parallel => "parallel",
        }
    }
}

impl std::str::FromStr for StepKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            StepKind::Call,
            StepKind::Now,
            StepKind::StateGet,
            StepKind::StateSet,
            StepKind::Parallel,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("\"{s}\" is not a step kind"))
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// A write about to be sent: if nothing follows, it is in doubt.
    Intent,
    /// Answered, with a result.
    Ok,
    /// Answered with an error (or never sent: see the error's kind).
    Err,
}

impl StepStatus {
    /// The name used in messages and stores.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Intent => "intent",
            StepStatus::Ok => "ok",
            StepStatus::Err => "err",
        }
    }
}

impl std::str::FromStr for StepStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "intent" => Ok(StepStatus::Intent),
            "ok" => Ok(StepStatus::Ok),
            "err" => Ok(StepStatus::Err),
            other => Err(format!("\"{other}\" is not a step status")),
        }
    }
}

/// How a failed step failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepError {
    /// The error's kind (`status`, `transport`, `timeout`, ...).
    pub kind: String,
    /// What went wrong (secrets redacted).
    pub message: String,
    /// The service's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// What a person said about a write in doubt (`runbook runs resolve RUN STEP --sent|--not-sent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The change took effect: the step counts as done (its result is `()`).
    Sent,
    /// The change did not take effect: it is sent once more on resume.
    NotSent,
}

impl Resolution {
    /// The name used in messages and stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Sent => "sent",
            Resolution::NotSent => "not_sent",
        }
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sent" => Ok(Resolution::Sent),
            "not_sent" | "not-sent" => Ok(Resolution::NotSent),
            other => Err(format!("\"{other}\" is not a resolution; write sent or not_sent")),
        }
    }
}

/// One step of a run, as its journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JournalEntry {
    /// The journal format that wrote it.
    #[serde(default = "version_one")]
    pub version: u32,
    /// The step's key (`3`, `9/0/1`).
    pub key: String,
    /// What kind of step.
    pub kind: StepKind,
    /// `namespace.action` for a call, the key for `state::`, empty otherwise.
    pub action: String,
    /// The call's effect (reads for everything but calls that change something).
    pub effect: Effect,
    /// Whether the action may be sent twice with the effect of once.
    pub idempotent: bool,
    /// SHA-256 of the arguments (as sent, before redaction): what a resumed step must match.
    pub args_digest: String,
    /// The arguments as shown (secrets redacted).
    pub args: Value,
    /// Where the step is.
    pub status: StepStatus,
    /// The result, when it fits the cap and the journal has not been compacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// SHA-256 of the result, where the result is not kept whole (over the cap) or is `()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_digest: Option<String>,
    /// How it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Targets the guard counted.
    pub targets: u64,
    /// The attempt that wrote it (from 1).
    pub attempt: u32,
    /// The lease epoch of that attempt.
    pub epoch: u64,
    /// When the step started (unix ms).
    pub started_at: i64,
    /// When its outcome was recorded (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// What a person said about it while it was in doubt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Who said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
}

fn version_one() -> u32 {
    1
}

impl JournalEntry {
    /// A new entry for a step at `key`.
    pub fn new(key: impl Into<String>, kind: StepKind, action: impl Into<String>, effect: Effect) -> Self {
        JournalEntry {
            version: JOURNAL_VERSION,
            key: key.into(),
            kind,
            action: action.into(),
            effect,
            idempotent: true,
            args_digest: digest(&Value::Null),
            args: Value::Null,
            status: StepStatus::Intent,
            result: None,
            result_digest: None,
            error: None,
            targets: 0,
            attempt: 1,
            epoch: 0,
            started_at: jiff::Timestamp::now().as_millisecond(),
            finished_at: None,
            resolution: None,
            resolved_by: None,
        }
    }

    /// Whether a change was, or may have been, made: counted by the guard across attempts.
    pub fn may_have_changed(&self) -> bool {
        self.effect.is_mutating() && self.kind == StepKind::Call && self.status != StepStatus::Err
    }

    /// The step in words, for messages: `3 cloudflare.create_user(#{email: "a@x"})`.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            StepKind::Call => format!("{}({})", self.action, compact(&self.args)),
            StepKind::Now => "now()".to_owned(),
            StepKind::StateGet => format!("state::get(\"{}\")", self.action),
            StepKind::StateSet => format!("state::set(\"{}\", …)", self.action),
            StepKind::Parallel => format!("parallel over {}", compact(&self.args)),
        };
        format!("step {} {what}", self.key)
    }
}

fn compact(value: &Value) -> String {
    compact_json(value)
}

/// A value's JSON on one line, cut at 120 characters.
pub(crate) fn compact_json(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 {
        let cut: String = text.chars().take(117).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The SHA-256 of a value's JSON text, in hex.
pub fn digest(value: &Value) -> String {
    let text = serde_json::to_vec(value).unwrap_or_default();
    hex_digest(&text)
}

/// The SHA-256 of bytes, in hex.
pub fn hex_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A journal could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// This attempt no longer holds the run (its lease passed to another): nothing it writes is
    /// kept, and it must stop.
    #[error("this attempt no longer holds the run: {0}")]
    Fenced(String),
    /// The store cannot be reached (or failed): the step's record is not committed.
    #[error("the journal cannot be written: {0}")]
    Unavailable(String),
    /// The journal is not one this run can use: damaged, or another run's.
    #[error("the journal is damaged or not this run's: {0}")]
    Corrupt(String),
    /// The journal was written by a newer engine.
    #[error(
        "the journal was written by a newer runbook (journal format {found}; this one reads up to {JOURNAL_VERSION}): \
         resume it with that version"
    )]
    NewerVersion {
        /// The format found.
        found: u32,
    },
}

/// Where one attempt of one run keeps its journal. Every write is committed when it returns, and
/// refused with [`JournalError::Fenced`] when the attempt's lease epoch is no longer the run's.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Everything earlier attempts recorded (any order).
    async fn load(&self) -> Result<Vec<JournalEntry>, JournalError>;

    /// Writes `entry`, replacing any entry at its key.
    async fn write(&self, entry: &JournalEntry) -> Result<(), JournalError>;

    /// Writes the entry of a `state::set` and stores the value, in one transaction: both or neither.
    async fn write_with_state(&self, entry: &JournalEntry, key: &str, value: &Value) -> Result<(), JournalError>;

    /// Writes several entries in order — records of reads held back since the last commit, then
    /// the step that needs them kept (a change's intent) — and, with `state`, stores that value
    /// together with the last entry. A backend that can should do it in one transaction; this
    /// default writes them one by one, which keeps the order that matters: every entry before
    /// the last is committed before the last is.
    async fn write_batch(&self, entries: &[JournalEntry], state: Option<(&str, &Value)>) -> Result<(), JournalError> {
        let Some((last, before)) = entries.split_last() else {
            return Ok(());
        };
        for entry in before {
            self.write(entry).await?;
        }
        match state {
            Some((key, value)) => self.write_with_state(last, key, value).await,
            None => self.write(last).await,
        }
    }

    /// This attempt's number, from 1.
    fn attempt(&self) -> u32;

    /// This attempt's lease epoch.
    fn epoch(&self) -> u64;
}

/// How big a journal may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalLimits {
    /// Entries per run: the step past it stops the run (`journal_full`).
    pub max_entries: usize,
    /// A read's result larger than this (JSON bytes) is recorded as its digest only, and read
    /// again on resume (a changed answer means `diverged`).
    pub max_result_bytes: usize,
}

impl Default for JournalLimits {
    fn default() -> Self {
        JournalLimits {
            max_entries: 100_000,
            max_result_bytes: 256 * 1024,
        }
    }
}

impl JournalLimits {
    /// Limits with these caps.
    pub fn new(max_entries: usize, max_result_bytes: usize) -> Self {
        JournalLimits {
            max_entries,
            max_result_bytes,
        }
    }
}

/// A journal kept in memory: for tests, and for embedders that resume within one process.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<HashMap<String, JournalEntry>>,
    state: Mutex<HashMap<String, Value>>,
    attempt: AtomicU64,
    epoch: AtomicU64,
}

impl MemoryJournal {
    /// An empty journal, first attempt, epoch 1.
    pub fn new() -> Self {
        let journal = MemoryJournal::default();
        journal.attempt.store(1, Ordering::Relaxed);
        journal.epoch.store(1, Ordering::Relaxed);
        journal
    }

    /// Starts the next attempt (a resume): a new epoch.
    pub fn next_attempt(&self) {
        self.attempt.fetch_add(1, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The entries, in key order.
    pub fn entries(&self) -> Vec<JournalEntry> {
        let mut all: Vec<JournalEntry> = lock(&self.entries).values().cloned().collect();
        sort_by_key(&mut all);
        all
    }

    /// Replaces or adds an entry, as a person's resolution or a test would.
    pub fn put(&self, entry: JournalEntry) {
        lock(&self.entries).insert(entry.key.clone(), entry);
    }

    /// What `state::set` stored through the journal.
    pub fn state(&self, key: &str) -> Option<Value> {
        lock(&self.state).get(key).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn load(&self) -> Result<Vec<JournalEntry>, JournalError> {
        Ok(self.entries())
    }

    async fn write(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        self.put(entry.clone());
        Ok(())
    }

    async fn write_with_state(&self, entry: &JournalEntry, key: &str, value: &Value) -> Result<(), JournalError> {
        lock(&self.state).insert(key.to_owned(), value.clone());
        self.put(entry.clone());
        Ok(())
    }

    fn attempt(&self) -> u32 {
        u32::try_from(self.attempt.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }
}

/// Sorts entries by their structural key (`2` < `9` < `9/0/1` < `9/1/1` < `10`).
pub fn sort_by_key(entries: &mut [JournalEntry]) {
    entries.sort_by_key(|e| key_order(&e.key));
}

fn key_order(key: &str) -> Vec<u64> {
    key.split('/').map(|part| part.parse().unwrap_or(u64::MAX)).collect()
}

/// Orders two step keys structurally.
pub fn compare_keys(a: &str, b: &str) -> std::cmp::Ordering {
    key_order(a).cmp(&key_order(b))
}

/// Keeps an attempt from sending a change after its lease may have passed to another worker:
/// a change may be sent only until the last successful heartbeat (the moment it was sent) plus
/// the lease, minus a margin for the request's own way to the service. Measured on the monotonic
/// clock, so a paused process (SIGSTOP, a long GC-like stall, a partition) wakes up fenced.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base` of the last heartbeat that renewed the lease (its send time).
    renewed: AtomicU64,
    window: Duration,
}

impl Fence {
    /// A fence for a lease of `lease` taken now, keeping `margin` in hand.
    pub fn new(lease: Duration, margin: Duration) -> Self {
        Fence::renewed_at(Instant::now(), lease, margin)
    }

    /// A fence for a lease taken (or last renewed by a request sent) at `at`.
    pub fn renewed_at(at: Instant, lease: Duration, margin: Duration) -> Self {
        let fence = Fence {
            base: at,
            renewed: AtomicU64::new(0),
            window: lease.saturating_sub(margin),
        };
        fence.renew(at);
        fence
    }

    /// A heartbeat sent at `sent` renewed the lease.
    pub fn renew(&self, sent: Instant) {
        let nanos = u64::try_from(sent.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        self.renewed.fetch_max(nanos, Ordering::AcqRel);
    }

    /// Until when a change may be sent.
    pub fn deadline(&self) -> Instant {
        self.base + Duration::from_nanos(self.renewed.load(Ordering::Acquire)) + self.window
    }

    /// Whether a change may be sent now.
    pub fn may_send(&self) -> bool {
        Instant::now() < self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_structurally() {
        let mut entries: Vec<JournalEntry> = ["10", "9/1/1", "2", "9", "9/0/2", "9/0/1"]
            .into_iter()
            .map(|k| JournalEntry::new(k, StepKind::Now, "", Effect::Read))
            .collect();
        sort_by_key(&mut entries);
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["2", "9", "9/0/1", "9/0/2", "9/1/1", "10"]);
    }

    #[test]
    fn a_fence_closes_a_lease_minus_its_margin_after_the_last_renewal() {
        let start = Instant::now();
        let fence = Fence::renewed_at(start, Duration::from_secs(30), Duration::from_secs(5));
        assert_eq!(fence.deadline(), start + Duration::from_secs(25));
        fence.renew(start + Duration::from_secs(10));
        assert_eq!(fence.deadline(), start + Duration::from_secs(35));
        // A late answer to an older heartbeat never moves the deadline back.
        fence.renew(start + Duration::from_secs(4));
        assert_eq!(fence.deadline(), start + Duration::from_secs(35));
        let closed = Fence::renewed_at(start, Duration::from_millis(1), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!closed.may_send());
    }

    #[test]
    fn entries_round_trip_and_an_old_entry_reads_as_version_one() {
        let mut entry = JournalEntry::new("3", StepKind::Call, "cloudflare.create_user", Effect::Write);
        entry.status = StepStatus::Ok;
        entry.result = Some(serde_json::json!({"id": "u1"}));
        let text = serde_json::to_string(&entry).expect("json");
        let back: JournalEntry = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, entry);
        let mut raw: Value = serde_json::from_str(&text).expect("value");
        raw.as_object_mut().expect("object").remove("version");
        let old: JournalEntry = serde_json::from_value(raw).expect("old entry");
        assert_eq!(old.version, 1);
    }
}
