//! The journal as the pipeline uses it: what earlier attempts recorded, which of it this attempt
//! has reached, and writing a step's record — waiting a while for a store that does not answer,
//! never past the run's lease.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::Abort;
use crate::action::Effect;
use crate::journal::{
    Fence, JOURNAL_VERSION, Journal, JournalEntry, JournalError, JournalLimits, StepKind, StepStatus, sort_by_key,
};

/// How long a step waits for a journal store that does not answer before the run stops.
const STORE_PATIENCE: Duration = Duration::from_secs(20);

/// What the journal says about a step about to be taken.
pub(crate) enum Replay {
    /// Nothing recorded at its key: a new step.
    Fresh,
    /// The same step was recorded.
    Recorded(Box<JournalEntry>),
    /// Another step was recorded at its key: the message names both.
    Diverged(String),
}

pub(crate) struct Durable {
    writer: Arc<Writer>,
    limits: JournalLimits,
    recorded: HashMap<String, JournalEntry>,
    visited: Mutex<HashSet<String>>,
    /// Keys the journal holds (recorded ones and new ones).
    entries: AtomicUsize,
    attempt: u32,
    epoch: u64,
    /// Records of reads (and `now()`, `state::get`, `parallel`) not committed yet: they go with
    /// the next commit — at the latest a change's intent — so a change never leaves before the
    /// reads it may depend on are kept, and a run of reads pays no commit per read.
    pending: Mutex<Vec<JournalEntry>>,
}

/// Held-back records past this many are committed in the background, without waiting for a change.
const PENDING_CAP: usize = 256;

/// Commits a run's records, one commit at a time and in the order they were taken, so that a
/// change's intent is never committed (and the change never sent) before the reads held back
/// ahead of it.
struct Writer {
    journal: Arc<dyn Journal>,
    fence: Option<Arc<Fence>>,
    order: Arc<tokio::sync::Mutex<()>>,
    /// Why a background commit failed: the next commit reports it.
    failed: Mutex<Option<Abort>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Durable {
    /// Reads what earlier attempts recorded.
    pub async fn open(
        journal: Arc<dyn Journal>,
        limits: JournalLimits,
        fence: Option<Arc<Fence>>,
    ) -> Result<Durable, JournalError> {
        let entries = journal.load().await?;
        let mut recorded = HashMap::with_capacity(entries.len());
        for entry in entries {
            if entry.version > JOURNAL_VERSION {
                return Err(JournalError::NewerVersion { found: entry.version });
            }
            if entry.key.is_empty() || entry.key.split('/').any(|p| p.parse::<u64>().is_err()) {
                return Err(JournalError::Corrupt(format!("\"{}\" is not a step key", entry.key)));
            }
            recorded.insert(entry.key.clone(), entry);
        }
        Ok(Durable {
            attempt: journal.attempt(),
            epoch: journal.epoch(),
            entries: AtomicUsize::new(recorded.len()),
            writer: Arc::new(Writer {
                journal,
                fence,
                order: Arc::new(tokio::sync::Mutex::new(())),
                failed: Mutex::new(None),
            }),
            limits,
            recorded,
            visited: Mutex::new(HashSet::new()),
            pending: Mutex::new(Vec::new()),
        })
    }

    pub fn limits(&self) -> JournalLimits {
        self.limits
    }

    /// Targets that earlier attempts changed or may have changed: the guard starts from them.
    pub fn targets_used(&self) -> u64 {
        self.recorded
            .values()
            .filter(|e| e.may_have_changed())
            .map(|e| e.targets)
            .sum()
    }

    /// Looks a step up, and marks its key reached.
    pub fn lookup(&self, key: &str, kind: StepKind, action: &str, args_digest: &str, shown: &Value) -> Replay {
        lock(&self.visited).insert(key.to_owned());
        let Some(entry) = self.recorded.get(key) else {
            return Replay::Fresh;
        };
        if entry.kind == kind && entry.action == action && entry.args_digest == args_digest {
            return Replay::Recorded(Box::new(entry.clone()));
        }
        let mut now = JournalEntry::new(key, kind, action, Effect::Read);
        now.args = shown.clone();
        let same_call = entry.kind == kind && entry.action == action;
        Replay::Diverged(format!(
            "the run diverged from its journal at step {key}: it recorded {}, and this attempt took {}{}; \
             nothing was sent from that step on",
            entry.describe(),
            now.describe(),
            if same_call { " (same call, other arguments)" } else { "" }
        ))
    }

    /// Recorded steps this attempt never reached, in key order.
    pub fn unreached(&self) -> Vec<JournalEntry> {
        let visited = lock(&self.visited);
        let mut missing: Vec<JournalEntry> = self
            .recorded
            .values()
            .filter(|e| !visited.contains(&e.key))
            .cloned()
            .collect();
        sort_by_key(&mut missing);
        missing
    }

    /// A new entry for this attempt.
    pub fn entry(&self, key: &str, kind: StepKind, action: &str, effect: Effect) -> JournalEntry {
        let mut entry = JournalEntry::new(key, kind, action, effect);
        entry.attempt = self.attempt;
        entry.epoch = self.epoch;
        entry
    }

    /// Makes room for a step at `key`: a named error past the cap.
    pub fn admit(&self, key: &str) -> Result<(), Abort> {
        if self.recorded.contains_key(key) {
            return Ok(());
        }
        let n = self.entries.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.limits.max_entries {
            return Err(Abort::Journal(format!(
                "journal_full: the run reached its cap of {} journaled steps at step {key}; nothing was sent for it. \
                 Split the work over several runs",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Holds back the record of a step nothing depends on yet. When enough are held back, they
    /// are committed in the background (unless a commit is under way: the next one takes them).
    pub fn defer(&self, entry: JournalEntry) {
        let mut pending = lock(&self.pending);
        pending.push(entry);
        if pending.len() < PENDING_CAP {
            return;
        }
        let Ok(turn) = self.writer.order.clone().try_lock_owned() else {
            return;
        };
        let batch = std::mem::take(&mut *pending);
        drop(pending);
        let writer = self.writer.clone();
        tokio::spawn(async move {
            if let Err(abort) = writer.commit(batch, None).await {
                *lock(&writer.failed) = Some(abort);
            }
            drop(turn);
        });
    }

    /// Commits the held-back records (at the end of the run).
    pub async fn flush(&self) -> Result<(), Abort> {
        let _turn = self.writer.order.lock().await;
        if let Some(abort) = lock(&self.writer.failed).take() {
            return Err(abort);
        }
        let batch = std::mem::take(&mut *lock(&self.pending));
        self.writer.commit(batch, None).await
    }

    /// Commits the held-back records, then `entry` (and, for `state::set`, the value): returns
    /// once the store has them. A store that does not answer is tried again for a while, never
    /// past the run's lease.
    pub async fn write(&self, entry: &JournalEntry, state: Option<(&str, &Value)>) -> Result<(), Abort> {
        let _turn = self.writer.order.lock().await;
        if let Some(abort) = lock(&self.writer.failed).take() {
            return Err(abort);
        }
        let mut batch = std::mem::take(&mut *lock(&self.pending));
        batch.push(entry.clone());
        self.writer.commit(batch, state).await
    }
}

impl Writer {
    async fn commit(&self, batch: Vec<JournalEntry>, state: Option<(&str, &Value)>) -> Result<(), Abort> {
        let Some(entry) = batch.last() else {
            return Ok(());
        };
        let mut delay = Duration::from_millis(50);
        let started = std::time::Instant::now();
        loop {
            match self.journal.write_batch(&batch, state).await {
                Ok(()) => {
                    for held in &batch[..batch.len() - 1] {
                        crate::fault::point("after-record", &held.key);
                    }
                    return Ok(());
                }
                Err(JournalError::Fenced(reason)) => {
                    return Err(Abort::Fenced(format!(
                        "the run's lease passed to another attempt ({reason}); this attempt stopped at step {} and \
                         sends nothing more",
                        entry.key
                    )));
                }
                Err(JournalError::Unavailable(reason))
                    if started.elapsed() + delay < STORE_PATIENCE
                        && self.fence.as_ref().is_none_or(|f| f.may_send()) =>
                {
                    tracing::warn!(step = %entry.key, error = %reason, "the journal cannot be written; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(error) => {
                    let message = format!(
                        "{error}; the run stopped at {} without sending anything whose record is not kept",
                        entry.describe()
                    );
                    return Err(match error {
                        JournalError::Unavailable(_) => Abort::StoreUnavailable(message),
                        _ => Abort::Journal(message),
                    });
                }
            }
        }
    }
}

/// Whether a failed call left its change in doubt: sent, and no answer says it was not applied.
pub(crate) fn leaves_doubt(error: &crate::error::ActionError) -> bool {
    use crate::error::ActionErrorKind as K;
    match error.kind {
        K::Transport | K::Cancelled | K::InvalidResponse => true,
        _ => error.status.is_some_and(|s| s >= 500),
    }
}

/// The record of a finished step: its result (a read's over the cap kept as a digest only). The
/// digest is kept where it is needed — a result not kept whole, or `()`, which some stores cannot
/// tell from none — so that a read's record costs no hashing.
pub(crate) fn settle(entry: &mut JournalEntry, result: &Value, cap: usize) {
    entry.status = StepStatus::Ok;
    let keep = entry.effect.is_mutating() || cap == usize::MAX || json_len(result) <= cap;
    entry.result_digest = (!keep || result.is_null()).then(|| crate::journal::digest(result));
    entry.result = keep.then(|| result.clone());
    entry.finished_at = Some(jiff::Timestamp::now().as_millisecond());
}

/// How many bytes `value` takes as JSON, counted without keeping them.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
