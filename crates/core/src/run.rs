//! One execution of one script: its options, its outcome, and how it failed.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::action::Effect;
use crate::audit::{AuditRecord, AuditSink};
use crate::journal::{Fence, Journal, JournalLimits};
use crate::state::StateStore;

/// The guard's default: at most this many targets changed by one run.
pub const DEFAULT_MAX_CHANGES: u64 = 100;
/// `parallel`'s default concurrency.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// How to run a script.
#[derive(Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// What the script sees as `params`.
    pub params: Map<String, Value>,
    /// What the script sees as `event` (`()` when `None`).
    pub event: Option<Value>,
    /// Plan mode: reads run, changes are recorded and not sent.
    pub plan: bool,
    /// The blast-radius guard: the most targets all mutating calls of the run may touch.
    pub max_changes: u64,
    /// How many action calls may be in flight at once, for the whole run.
    pub concurrency: usize,
    /// Wall-clock limit for the whole run.
    pub timeout: Option<Duration>,
    /// Cancelled from outside (shutdown) to stop the run, in-flight calls included.
    pub cancel: CancellationToken,
    /// Cancelled from outside (Ctrl-C) to stop the run gently: no new step is taken, and calls
    /// in flight finish and are recorded, so that a resumed run knows how each ended.
    pub interrupt: Option<CancellationToken>,
    /// The run's id; a new time-ordered id (UUIDv7) when `None`.
    pub run_id: Option<String>,
    /// Receives each call's audit record as it completes.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Told about progress (for a progress bar).
    pub observer: Option<Arc<dyn RunObserver>>,
    /// Where `state::get`/`state::set` keep values; a fresh in-memory store when `None`.
    pub state: Option<Arc<dyn StateStore>>,
    /// How the caller names its settings, so that messages point at what the user can change.
    pub names: SettingNames,
    /// Where the run's steps are journaled, so that it can be resumed without repeating a
    /// change; an earlier attempt's entries are replayed. `None`: the run is not durable.
    /// In plan mode the journal records reads and `now()` (a saved plan keeps their values),
    /// never a planned change; entries already there are replayed (a re-plan's `now()`).
    pub journal: Option<Arc<dyn Journal>>,
    /// How big the journal may grow.
    pub journal_limits: JournalLimits,
    /// The lease the run is held under: no change is sent once it may have lapsed.
    pub fence: Option<Arc<Fence>>,
    /// An apply: the approved effects, the only changes the run may send.
    pub expect: Option<Arc<crate::plan::Expectation>>,
    /// Targets no change may touch (`[policy] protect`), in every mode.
    pub policy: Option<Arc<crate::policy::Policy>>,
    /// Caps on the targets changed across runs over a window (`max_changes_per_day`), each with
    /// what earlier runs used.
    pub budgets: Vec<crate::policy::Budget>,
}

/// How the program running the engine names the settings a message may point the user at:
/// the CLI says `--max-changes`, `runbook serve` says `max_changes` in the automation's table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettingNames {
    /// The blast-radius guard's cap (`--max-changes`).
    pub max_changes: String,
    /// The run's time limit (`--timeout`).
    pub timeout: String,
    /// How to pass parameter `{name}` (`--param {name}=VALUE`); `{name}` is replaced.
    pub param: String,
}

impl Default for SettingNames {
    fn default() -> Self {
        SettingNames {
            max_changes: "the run's max_changes".to_owned(),
            timeout: "the run's timeout".to_owned(),
            param: "params.{name}".to_owned(),
        }
    }
}

impl SettingNames {
    /// Names for the three settings; `param` may hold `{name}`, replaced by the parameter's name.
    pub fn new(max_changes: impl Into<String>, timeout: impl Into<String>, param: impl Into<String>) -> Self {
        SettingNames {
            max_changes: max_changes.into(),
            timeout: timeout.into(),
            param: param.into(),
        }
    }

    /// How to pass the parameter `name`.
    pub fn param(&self, name: &str) -> String {
        self.param.replace("{name}", name)
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            params: Map::new(),
            event: None,
            plan: false,
            max_changes: DEFAULT_MAX_CHANGES,
            concurrency: DEFAULT_CONCURRENCY,
            timeout: None,
            cancel: CancellationToken::new(),
            interrupt: None,
            run_id: None,
            audit: None,
            observer: None,
            state: None,
            names: SettingNames::default(),
            journal: None,
            journal_limits: JournalLimits::default(),
            fence: None,
            expect: None,
            policy: None,
            budgets: Vec::new(),
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("plan", &self.plan)
            .field("max_changes", &self.max_changes)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Default options: a real run, guard at 100, concurrency 16, no timeout.
    pub fn new() -> Self {
        RunOptions::default()
    }

    /// Sets the script's `params`.
    pub fn params(mut self, params: Map<String, Value>) -> Self {
        self.params = params;
        self
    }

    /// Sets the script's `event`.
    pub fn event(mut self, event: Value) -> Self {
        self.event = Some(event);
        self
    }

    /// Plan mode on or off.
    pub fn plan(mut self, plan: bool) -> Self {
        self.plan = plan;
        self
    }

    /// Sets the blast-radius guard.
    pub fn max_changes(mut self, max_changes: u64) -> Self {
        self.max_changes = max_changes;
        self
    }

    /// Sets how many action calls may be in flight at once for the whole run, `parallel`s
    /// (nested ones included) together (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets the wall-clock limit.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the token that stops the run from outside.
    pub fn cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Sets the token that stops the run gently: no new step, calls in flight finish.
    pub fn interrupt(mut self, interrupt: CancellationToken) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// Sets the run id.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Streams audit records to this sink.
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Reports progress to this observer.
    pub fn observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Names the settings messages point at.
    pub fn names(mut self, names: SettingNames) -> Self {
        self.names = names;
        self
    }

    /// Keeps `state::` values in this store.
    pub fn state(mut self, state: Arc<dyn StateStore>) -> Self {
        self.state = Some(state);
        self
    }

    /// Journals every step here (and replays what an earlier attempt recorded). With a journal,
    /// `state::set` stores its value through [`Journal::write_with_state`], together with the
    /// step's entry; `state::get` still reads the state store.
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Caps the journal.
    pub fn journal_limits(mut self, limits: JournalLimits) -> Self {
        self.journal_limits = limits;
        self
    }

    /// An apply: only these approved effects may be sent; any other change stops the run as
    /// `stale` before it leaves.
    pub fn expect(mut self, expect: Arc<crate::plan::Expectation>) -> Self {
        self.expect = Some(expect);
        self
    }

    /// Refuses any change touching a target the policy protects, before it is sent (or planned).
    pub fn policy(mut self, policy: Arc<crate::policy::Policy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Adds a budget of changes across runs: a change that would pass it is refused before it
    /// is sent; a plan that would pass it ends refused.
    pub fn budget(mut self, budget: crate::policy::Budget) -> Self {
        self.budgets.push(budget);
        self
    }

    /// Sends no change once this fence closes (the run's lease may have passed to another worker).
    pub fn fence(mut self, fence: Arc<Fence>) -> Self {
        self.fence = Some(fence);
        self
    }
}

/// Told about a run's progress. Every method has an empty default.
pub trait RunObserver: Send + Sync {
    /// `parallel` started on `total` items.
    fn parallel_started(&self, total: usize) {
        let _ = total;
    }
    /// One more `parallel` item finished.
    fn parallel_item_done(&self) {}
    /// `parallel` finished (or failed).
    fn parallel_finished(&self) {}
    /// The script called `action` (`namespace.action`); it may be sent, planned or refused.
    fn call_started(&self, action: &str) {
        let _ = action;
    }
}

/// A change plan mode recorded instead of sending.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedChange {
    /// The step key of the call (`3`, `9/0/1`).
    pub step: String,
    /// `namespace.action`.
    pub action: String,
    /// `write` or `destructive`.
    pub effect: Effect,
    /// How many targets it touches.
    pub targets: u64,
    /// The targets it names, with the labels the run's reads showed for them.
    #[serde(default)]
    pub labels: Vec<crate::plan::TargetRef>,
    /// The arguments (secrets redacted).
    pub args: Value,
    /// SHA-256 of the arguments as they would be sent (before redaction).
    pub args_sha256: String,
}

/// A line the script printed (`print`/`debug`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// RFC 3339 time.
    pub at: String,
    /// `print` or `debug` (the script's own lines), or `warn` (a provider's word on a call).
    pub level: &'static str,
    /// The text (secrets redacted).
    pub message: String,
}

/// What a run did, whether it completed or failed.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct RunRecords {
    /// What plan mode recorded (empty for a real run).
    pub planned_changes: Vec<PlannedChange>,
    /// Action calls made (planned ones included).
    pub calls: u64,
    /// Every call's audit record.
    pub audit: Vec<AuditRecord>,
    /// What the script printed.
    pub logs: Vec<LogLine>,
}

/// A run that completed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunOutcome {
    /// The run's id.
    pub run_id: String,
    /// The script's final value.
    pub result: Value,
    /// What the run did.
    #[serde(flatten)]
    pub records: RunRecords,
}

/// How a run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunErrorKind {
    /// The script does not compile.
    Compile,
    /// The script failed (a `throw`, a type error, a limit).
    Script,
    /// An action failed and the script did not catch it.
    Action,
    /// An action was called with arguments it does not take (an unknown option, a wrong type,
    /// a missing argument); it was not sent.
    InvalidArgs,
    /// The blast-radius guard refused a call.
    Guard,
    /// The policy refused a call: a target is protected (`[policy] protect`), or cannot be
    /// identified while a rule could match it. Nothing was sent to it.
    Policy,
    /// The budget of changes across runs (`max_changes_per_day`) refused a call; it was not sent.
    Budget,
    /// The run exceeded its timeout.
    Timeout,
    /// The run was cancelled from outside (Ctrl-C, shutdown).
    Cancelled,
    /// The script called a provider that is not configured.
    NotConfigured,
    /// A parameter the script requires (`param("name")`) is missing or has the wrong type.
    Params,
    /// The audit trail could not be written, so the run stopped.
    Audit,
    /// A resumed run took a different step than its journal recorded (both are named); nothing
    /// was sent after the point where they differ.
    Diverged,
    /// A change was sent and never answered, and nothing can tell whether it took effect: a
    /// person decides (`runbook runs resolve RUN STEP --sent|--not-sent`).
    NeedsAttention,
    /// The journal could not be used (damaged, from a newer runbook, or full): the run stopped
    /// with no change sent whose intent was not recorded. Another attempt would meet the same.
    Journal,
    /// The journal's store did not answer for a while: the run stopped with no change sent
    /// whose intent was not recorded. Another attempt resumes from the journal.
    StoreUnavailable,
    /// The run's lease lapsed or passed to another worker: it stopped sending.
    Fenced,
    /// An apply was about to send a change that is not the approved plan's effect at its step:
    /// it was not sent, and the run stopped.
    Stale,
}

impl RunErrorKind {
    /// Whether the run was refused before a change was sent: by the guard, the policy or the
    /// budget (exit 3, status `refused`).
    pub fn is_refusal(self) -> bool {
        matches!(self, RunErrorKind::Guard | RunErrorKind::Policy | RunErrorKind::Budget)
    }
}

/// A run that failed, with what it did before it failed.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct RunError {
    /// The run's id.
    pub run_id: String,
    /// What kind of failure.
    pub kind: RunErrorKind,
    /// What went wrong, for a person (secrets redacted).
    pub message: String,
    /// Where in the script: line and column, 1-based.
    pub position: Option<(usize, usize)>,
    /// What the run did before it failed.
    #[serde(flatten)]
    pub records: RunRecords,
}

impl RunError {
    /// The message with its position: `... (line 3, column 9)`.
    pub fn describe(&self) -> String {
        match self.position {
            Some((line, column)) => format!("{} (line {line}, column {column})", self.message),
            None => self.message.clone(),
        }
    }
}
