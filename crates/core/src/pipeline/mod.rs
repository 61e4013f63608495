//! The call pipeline: every action call of a run passes through [`Pipeline::call`], in order —
//! the stop check, argument validation, the blast-radius guard, plan mode, the run-wide
//! concurrency permit, the provider, and the audit record. `state::` reads and writes pass
//! through [`Pipeline::state_get`] and [`Pipeline::state_set`] (plan mode keeps its writes to
//! itself). The journal of durable runs sits at the same two places: before the send (a write's
//! intent) and at the outcome.
//!
//! Nothing here knows about Rhai: the guard, plan mode and the audit trail are tested on their
//! own, and the script host is one caller among others.

mod durable;
pub(crate) mod guard;
pub(crate) mod validate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::action::ActionSpec;
use crate::audit::{AuditRecord, AuditSink, CallOutcome};
use crate::context::CallContext;
use crate::error::{ActionError, ActionErrorKind};
use crate::journal::{Fence, JournalEntry, StepError, StepKind, StepStatus, digest};
use crate::lane::LaneIo;
use crate::plan::{Expectation, Identities, PLACEHOLDER};
use crate::policy::{Budget, Policy, Verdict};
use crate::provider::{Probed, Provider};
use crate::run::{LogLine, PlannedChange, RunRecords, SettingNames};
use crate::secret::{REDACTED, redact};
use crate::state::StateStore;
pub(crate) use durable::Durable;
use durable::{Replay, leaves_doubt, settle};
use guard::Guard;
pub(crate) use validate::validate as validate_args;

/// Why a run stopped from inside the engine rather than by the script's own doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Abort {
    /// The blast-radius guard refused a call.
    Guard(String),
    /// The policy refused a call (a protected target, or one it cannot identify).
    Policy(String),
    /// The budget of changes across runs refused a call.
    Budget(String),
    /// A parameter the script needs is missing or of the wrong type.
    Params(String),
    /// An action was called with arguments it does not take.
    InvalidArgs(String),
    /// The run passed its time limit.
    Timeout(Duration),
    /// Cancelled from outside (Ctrl-C, shutdown, the caller dropped the run).
    Cancelled,
    /// Interrupted from outside (Ctrl-C): no new step; calls in flight finish.
    Interrupted,
    /// The script called a provider that is not configured.
    NotConfigured(String),
    /// The audit trail cannot be written: nothing more may change.
    Audit(String),
    /// A resumed run took another step than its journal recorded.
    Diverged(String),
    /// A change is in doubt and nothing can tell whether it took effect.
    NeedsAttention(String),
    /// The journal cannot be used (damaged, from a newer runbook, full).
    Journal(String),
    /// The journal's store did not answer: another attempt may do better.
    StoreUnavailable(String),
    /// The run's lease lapsed: nothing more may be sent, in flight included.
    Fenced(String),
    /// A change in doubt could not be probed: another attempt may.
    ProbeFailed(String),
    /// An apply was about to send a change outside its approved plan.
    Stale(String),
}

impl Abort {
    /// Whether calls already in flight are abandoned too. A refusal, a mistake in the script or
    /// a lost audit trail only stop new calls: a write already sent finishes and is reported as
    /// it ended, since the service may well have applied it.
    fn abandons_calls_in_flight(&self) -> bool {
        matches!(self, Abort::Timeout(_) | Abort::Cancelled | Abort::Fenced(_))
    }
}

/// Why a call produced no value.
#[derive(Debug)]
pub(crate) enum CallFailure {
    /// The run is stopping; the reason is the run's [`Pipeline::abort_reason`]. No script can
    /// catch this.
    Stopped,
    /// The action failed; the script may catch it.
    Action(ActionError),
}

/// How a run is stopped: `stop` ends the script and refuses new calls; `cancel` also abandons
/// the calls in flight. Cancelling implies stopping.
#[derive(Debug)]
struct Control {
    cancel: CancellationToken,
    stop: CancellationToken,
    /// Cancelled on an interrupt: reads in flight are abandoned (nothing changes by dropping
    /// them), changes in flight finish.
    reads: CancellationToken,
    reason: Mutex<Option<Abort>>,
}

/// What one run is doing and has done; one per run, shared by every thread of the run.
pub(crate) struct Pipeline {
    run_id: String,
    plan: bool,
    names: SettingNames,
    guard: Guard,
    control: Control,
    /// One permit per action call in flight, for the whole run: nested `parallel`s included.
    permits: Semaphore,
    seq: AtomicU64,
    records: Mutex<RunRecords>,
    sink: Option<Arc<dyn AuditSink>>,
    state: Arc<dyn StateStore>,
    /// What a plan wrote with `state::set`: visible to the plan's own reads, never stored.
    plan_state: Mutex<HashMap<String, Value>>,
    /// The run's journal, when it is durable.
    durable: Option<Durable>,
    /// The run's lease: no change is sent once it may have lapsed.
    fence: Option<Arc<Fence>>,
    /// An apply's approved effects.
    expect: Option<Arc<Expectation>>,
    /// What the run's reads told about ids: labels for plans, identities for the policy.
    identities: Identities,
    /// Targets a plan's changes would touch (a plan goes past the guard's cap to count them all).
    planned_targets: AtomicU64,
    /// Targets no change may touch.
    policy: Option<Arc<Policy>>,
    /// Budgets across runs, and what this run took from them.
    budgets: Vec<Budget>,
    budget_used: Mutex<u64>,
    /// Of `budget_used`, the targets whose intent is journaled (a recount sees them).
    budget_committed: AtomicU64,
}

/// What a [`Pipeline`] needs.
pub(crate) struct PipelineSetup {
    pub run_id: String,
    pub plan: bool,
    pub max_changes: u64,
    pub concurrency: usize,
    pub names: SettingNames,
    /// Cancelled from outside; the run's own token is a child of it.
    pub cancel: CancellationToken,
    pub sink: Option<Arc<dyn AuditSink>>,
    pub state: Arc<dyn StateStore>,
    pub durable: Option<Durable>,
    pub fence: Option<Arc<Fence>>,
    pub expect: Option<Arc<Expectation>>,
    pub policy: Option<Arc<Policy>>,
    pub budgets: Vec<Budget>,
}

/// Why a change that was waiting to be sent was not.
const NOT_SENT: &str = "not sent: the run stopped before this change left";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; the data is still what it was.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipeline {
    pub fn new(setup: PipelineSetup) -> Self {
        let cancel = setup.cancel.child_token();
        let stop = cancel.child_token();
        let guard = Guard::new(setup.max_changes);
        if let Some(durable) = &setup.durable {
            guard.preload(durable.targets_used());
        }
        Pipeline {
            run_id: setup.run_id,
            plan: setup.plan,
            names: setup.names,
            guard,
            control: Control {
                reads: cancel.child_token(),
                cancel,
                stop,
                reason: Mutex::new(None),
            },
            permits: Semaphore::new(setup.concurrency.max(1)),
            seq: AtomicU64::new(0),
            records: Mutex::new(RunRecords::default()),
            sink: setup.sink,
            state: setup.state,
            plan_state: Mutex::new(HashMap::new()),
            durable: setup.durable,
            fence: setup.fence,
            expect: setup.expect,
            identities: Identities::default(),
            planned_targets: AtomicU64::new(0),
            policy: setup.policy.filter(|p| !p.is_empty()),
            budgets: setup.budgets,
            budget_used: Mutex::new(0),
            budget_committed: AtomicU64::new(0),
        }
    }

    /// Recorded steps this attempt never reached (a resumed run that ended early diverged).
    pub fn unreached_steps(&self) -> Vec<JournalEntry> {
        self.durable.as_ref().map(Durable::unreached).unwrap_or_default()
    }

    /// The journal, when the run is durable. A plan's journal records its reads and `now()`,
    /// never a planned change.
    fn journal(&self) -> Option<&Durable> {
        self.durable.as_ref()
    }

    /// For a plan past the guard's cap or a budget: the refusal the real run would meet, with
    /// the full total.
    pub fn plan_refusal(&self) -> Option<(crate::run::RunErrorKind, String)> {
        use crate::run::RunErrorKind;
        let total = self.planned_targets.load(Ordering::Relaxed);
        if !self.plan {
            return None;
        }
        if total > self.guard.cap() {
            return Some((
                RunErrorKind::Guard,
                format!(
                    "the plan would touch {total} target(s); the cap is {} ({}): the real run would be refused",
                    self.guard.cap(),
                    self.names.max_changes
                ),
            ));
        }
        self.budgets
            .iter()
            .find(|b| b.used.saturating_add(total) > b.cap)
            .map(|b| {
                (
                    RunErrorKind::Budget,
                    format!(
                        "the plan would touch {total} target(s), and {}: {} changes, {} used in the last 24 h by \
                         earlier runs ({}): the real run would be refused",
                        b.label, b.cap, b.used, b.setting
                    ),
                )
            })
    }

    /// Takes `targets` from every budget, or refuses naming the first that would be passed.
    /// `Ok(true)`: something was taken.
    async fn reserve_budget(&self, action: &str, targets: u64) -> Result<bool, String> {
        if self.budgets.is_empty() || targets == 0 {
            return Ok(false);
        }
        // Fresh counts first: no lock is held across a wait.
        let mut fresh = Vec::with_capacity(self.budgets.len());
        for b in &self.budgets {
            fresh.push(match &b.recount {
                Some(counter) => Some(counter.count().await.map_err(|e| {
                    format!(
                        "the change budget refused {action}: {} cannot be counted ({e}); it was not sent",
                        b.label
                    )
                })?),
                None => None,
            });
        }
        let mut used = lock(&self.budget_used);
        let committed = self.budget_committed.load(Ordering::SeqCst);
        for (b, now) in self.budgets.iter().zip(fresh) {
            // A recount holds this run's journaled changes; what it took and has not journaled
            // yet is added.
            let taken = match now {
                Some(now) => now.saturating_add(used.saturating_sub(committed)),
                None => b.used.saturating_add(*used),
            };
            if taken.saturating_add(targets) > b.cap {
                return Err(format!(
                    "the change budget refused {action}: it would touch {targets} more target(s), and {}: {} \
                     changes, {} used in the last 24 h by earlier runs and {} by this run; it was not sent (raise \
                     {} if this is intended, or wait)",
                    b.label,
                    b.cap,
                    taken.saturating_sub(*used),
                    *used,
                    b.setting
                ));
            }
        }
        *used += targets;
        Ok(true)
    }

    /// What the policy says of a change to `args`' targets: `Err` is the refusal, naming the
    /// target and the rule. Targets no read showed are identified by the provider first.
    async fn check_policy(
        &self,
        provider: &Arc<dyn Provider>,
        spec: &ActionSpec,
        args: &Value,
        action: &str,
        key: &str,
    ) -> Result<(), String> {
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        let namespace = provider.namespace();
        let needs_identity = policy.needs_identity(namespace);
        for id in subjects(spec, args) {
            let mut identity = self.identities.get(namespace, &id).or_else(|| new_object(&id));
            if needs_identity && matches!(policy.judge(namespace, &id, identity.as_ref()), Verdict::Unknown { .. }) {
                match self.identify(provider, spec, action, key, &id).await {
                    Ok(()) => identity = self.identities.get(namespace, &id),
                    Err(why) => {
                        // The id alone may still tell.
                        if let Verdict::Protected { rule, how } = policy.judge(namespace, &id, identity.as_ref()) {
                            return Err(protected(action, &id, None, &rule, &how, policy.origin()));
                        }
                        return Err(unknown(action, &id, &why, policy, namespace, identity.as_ref()));
                    }
                }
            }
            match policy.judge(namespace, &id, identity.as_ref()) {
                Verdict::Allowed => {}
                Verdict::Protected { rule, how } => {
                    let label = identity.and_then(|i| i.label);
                    return Err(protected(action, &id, label.as_deref(), &rule, &how, policy.origin()));
                }
                Verdict::Unknown { .. } => {
                    let why = format!("{namespace} did not say enough about it");
                    return Err(unknown(action, &id, &why, policy, namespace, identity.as_ref()));
                }
            }
        }
        Ok(())
    }

    /// Asks the provider who `id` is, and learns the answer; `Err` says why nothing was learned.
    async fn identify(
        &self,
        provider: &Arc<dyn Provider>,
        spec: &ActionSpec,
        action: &str,
        key: &str,
        id: &str,
    ) -> Result<(), String> {
        let ctx = CallContext::new(
            self.run_id.clone(),
            action.to_owned(),
            self.plan,
            self.control.cancel.clone(),
        )
        .on_stop(self.control.stop.clone())
        .at_step(key);
        let answer = tokio::select! {
            biased;
            () = self.control.cancel.cancelled() => return Err("the run was cancelled".to_owned()),
            answer = provider.identify(&ctx, spec, id) => answer,
        };
        match answer {
            Ok(Some(value)) => {
                self.identities.learn_as(provider.namespace(), id, &value);
                Ok(())
            }
            Ok(None) => Err(format!("{} does not know it", provider.namespace())),
            Err(e) => Err(format!(
                "asking {} failed: {}",
                provider.namespace(),
                redact(&e.message)
            )),
        }
    }

    /// Whether a change may still be sent under the run's lease; stops the run when not.
    fn within_lease(&self, key: &str) -> bool {
        match &self.fence {
            Some(fence) if !fence.may_send() => {
                self.stop(Abort::Fenced(format!(
                    "the run's lease may have passed to another worker (its last renewal is too old): step {key} and everything after it were not sent"
                )));
                false
            }
            _ => true,
        }
    }

    /// Holds back the record of a read (committed with the next change, or when enough wait).
    async fn hold(&self, durable: &Durable, entry: JournalEntry) -> Result<(), CallFailure> {
        crate::fault::point("before-record", &entry.key);
        durable.defer(entry);
        Ok(())
    }

    /// Commits the records still held back (at the end of the run).
    pub async fn flush_journal(&self) {
        if let Some(durable) = self.journal()
            && let Err(abort) = durable.flush().await
        {
            tracing::warn!(run_id = %self.run_id, "the last reads of the run could not be journaled: {abort:?}");
        }
    }

    /// Commits a journal record, or stops the run.
    async fn commit(
        &self,
        durable: &Durable,
        entry: &JournalEntry,
        state: Option<(&str, &Value)>,
    ) -> Result<(), CallFailure> {
        let what = if entry.status == StepStatus::Intent {
            "intent"
        } else {
            "record"
        };
        crate::fault::point(&format!("before-{what}"), &entry.key);
        match durable.write(entry, state).await {
            Ok(()) => {
                crate::fault::point(&format!("after-{what}"), &entry.key);
                Ok(())
            }
            Err(abort) => {
                self.stop(abort);
                Err(CallFailure::Stopped)
            }
        }
    }

    /// How the caller names its settings, for messages.
    pub fn names(&self) -> &SettingNames {
        &self.names
    }

    /// Stops the run for `reason`; the first reason wins.
    pub fn stop(&self, reason: Abort) {
        let abandon = reason.abandons_calls_in_flight();
        let interrupt = reason == Abort::Interrupted;
        {
            let mut current = lock(&self.control.reason);
            if current.is_none() {
                *current = Some(reason);
            }
        }
        if abandon {
            self.control.cancel.cancel();
        } else {
            self.control.stop.cancel();
        }
        if interrupt {
            self.control.reads.cancel();
        }
    }

    /// Whether the run is stopping: the script must not go on.
    pub fn is_stopped(&self) -> bool {
        self.control.stop.is_cancelled()
    }

    /// Cancelled when calls in flight must be abandoned.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.control.cancel
    }

    /// Why the run stopped. A cancellation from outside the run has no recorded reason.
    pub fn abort_reason(&self) -> Option<Abort> {
        let recorded = lock(&self.control.reason).clone();
        recorded.or_else(|| self.control.cancel.is_cancelled().then_some(Abort::Cancelled))
    }

    /// Records a line the script printed, or a provider's warning about a call.
    pub fn log(&self, level: &'static str, message: &str) {
        let message = redact(message).into_owned();
        if level == "warn" {
            tracing::warn!(target: "runbook::script", run_id = %self.run_id, "{message}");
        } else {
            tracing::info!(target: "runbook::script", run_id = %self.run_id, "{message}");
        }
        lock(&self.records).logs.push(LogLine {
            at: jiff::Timestamp::now().to_string(),
            level,
            message,
        });
    }

    /// Takes everything the run recorded.
    pub fn take_records(&self) -> RunRecords {
        let mut records = std::mem::take(&mut *lock(&self.records));
        records.calls = self.seq.load(Ordering::Relaxed);
        records
    }

    /// One action call, on `lane` when the calling thread has one; `key` is its step's key.
    pub async fn call(
        &self,
        provider: &Arc<dyn Provider>,
        spec: &ActionSpec,
        args: Value,
        lane: Option<&Arc<LaneIo>>,
        key: &str,
    ) -> Result<Value, CallFailure> {
        if self.is_stopped() {
            return Err(CallFailure::Stopped);
        }
        let action = format!("{}.{}", provider.namespace(), spec.name);
        if let Err(message) = validate_args(provider.namespace(), spec, &args) {
            self.stop(Abort::InvalidArgs(message));
            return Err(CallFailure::Stopped);
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let targets = spec.count_targets(&args);
        let mut record = AuditRecord {
            run_id: self.run_id.clone(),
            seq,
            at: jiff::Timestamp::now().to_string(),
            action: action.clone(),
            effect: spec.effect,
            args: redact_args(spec, &args),
            targets,
            outcome: CallOutcome::Ok,
            status: None,
            error: None,
            attempts: 0,
            duration_ms: 0.0,
        };
        let mutating = spec.effect.is_mutating();

        // What an earlier attempt recorded at this step.
        let durable = self.journal();
        let args_digest = durable.map(|_| digest(&args)).unwrap_or_default();
        // A change recorded as sent and never answered: the guard counted it already. A person's
        // word on it applies to that attempt's send only: the new intent carries none, so a crash
        // after this send leaves it in doubt again.
        let mut in_doubt = false;
        // A read whose answer was too large to keep: it must answer the same again.
        let mut expect_digest = None;
        if let Some(durable) = durable {
            match durable.lookup(key, StepKind::Call, &action, &args_digest, &record.args) {
                Replay::Fresh => {}
                Replay::Diverged(message) => {
                    self.stop(Abort::Diverged(message));
                    return Err(CallFailure::Stopped);
                }
                Replay::Recorded(entry) => match entry.status {
                    StepStatus::Ok if entry.result.is_some() || mutating => {
                        if mutating && let Some(expect) = &self.expect {
                            expect.mark(key);
                        }
                        record.outcome = CallOutcome::Replayed;
                        self.audit(record)?;
                        let value = entry.result.unwrap_or(Value::Null);
                        self.learn(provider, spec, &args, &value);
                        return Ok(value);
                    }
                    StepStatus::Ok if is_null_result(&entry) => {
                        record.outcome = CallOutcome::Replayed;
                        self.audit(record)?;
                        return Ok(Value::Null);
                    }
                    StepStatus::Ok => expect_digest = entry.result_digest,
                    // The service said no: the step is taken again.
                    StepStatus::Err => {}
                    StepStatus::Intent => {
                        in_doubt = true;
                        if let Some(value) = self
                            .settle_doubt(provider, spec, &args, &entry, durable, &mut record)
                            .await?
                        {
                            self.learn(provider, spec, &args, &value);
                            return Ok(value);
                        }
                    }
                },
            }
            if let Err(abort) = durable.admit(key) {
                self.stop(abort);
                return Err(CallFailure::Stopped);
            }
        }

        if mutating && let Err(message) = self.check_policy(provider, spec, &args, &action, key).await {
            record.outcome = CallOutcome::Refused;
            record.error = Some(message.clone());
            self.stop(Abort::Policy(message));
            self.audit(record)?;
            return Err(CallFailure::Stopped);
        }
        // An apply sends only the approved effect at each step.
        if mutating
            && !self.plan
            && let Some(expect) = &self.expect
            && let Err(message) = expect.admit(key, &action, &digest(&args), &record.args)
        {
            let message = format!(
                "stale: {message}; it was not sent, and the run stopped. The services changed since the plan \
                 was made or approved: make the plan again"
            );
            record.outcome = CallOutcome::Refused;
            record.error = Some(message.clone());
            self.stop(Abort::Stale(message));
            self.audit(record)?;
            return Err(CallFailure::Stopped);
        }
        if mutating && self.plan {
            // A plan counts every change, past the guard's cap too: the refusal the real run
            // would meet is reported at the end, with the full total.
            self.planned_targets.fetch_add(targets, Ordering::Relaxed);
            let placeholder = provider.planned_result(spec, &args);
            let labels = self.identities.label(provider.namespace(), spec.target_ids(&args));
            lock(&self.records).planned_changes.push(PlannedChange {
                step: key.to_owned(),
                action,
                effect: spec.effect,
                targets,
                labels,
                args_sha256: digest(&args),
                args: record.args.clone(),
            });
            record.outcome = CallOutcome::Planned;
            return self.audit(record).map(|()| placeholder);
        }
        let mut budget_taken = false;
        if mutating {
            if !in_doubt && let Err(refusal) = self.guard.reserve(targets) {
                let message = format!(
                    "the blast-radius guard refused {action}: it would touch {} more target(s) after {} already \
                     changed, and the cap for this run is {} (raise {} if this is intended)",
                    refusal.targets, refusal.used, refusal.cap, self.names.max_changes
                );
                record.outcome = CallOutcome::Refused;
                record.error = Some(message.clone());
                self.stop(Abort::Guard(message));
                self.audit(record)?;
                return Err(CallFailure::Stopped);
            }
            if !in_doubt {
                match self.reserve_budget(&record.action, targets).await {
                    Ok(taken) => budget_taken = taken,
                    Err(message) => {
                        record.outcome = CallOutcome::Refused;
                        record.error = Some(message.clone());
                        self.stop(Abort::Budget(message));
                        self.audit(record)?;
                        return Err(CallFailure::Stopped);
                    }
                }
            }
        }

        // A change's intent is committed before it may leave.
        let mut entry = durable.map(|d| {
            let mut entry = d.entry(key, StepKind::Call, &action, spec.effect);
            entry.idempotent = spec.idempotent;
            entry.args_digest = args_digest.clone();
            entry.args = record.args.clone();
            entry.targets = targets;
            entry
        });
        if mutating {
            if let (Some(durable), Some(entry)) = (durable, &entry) {
                self.commit(durable, entry, None).await?;
                if budget_taken {
                    self.budget_committed.fetch_add(targets, Ordering::SeqCst);
                }
            }
            if !self.within_lease(key) {
                let error = ActionError::new(ActionErrorKind::Refused, NOT_SENT);
                record.outcome = CallOutcome::Refused;
                record.error = Some(error.message.clone());
                if let (Some(durable), Some(entry)) = (durable, &mut entry) {
                    // Certainly never sent: not in doubt on resume. Best effort: the store
                    // may refuse this attempt already, and then the intent stays.
                    self.fail_entry(entry, &error);
                    let _ = durable.write(entry, None).await;
                }
                self.audit(record)?;
                return Err(CallFailure::Stopped);
            }
        }

        let planned = self.placeholder(provider, spec, &args);
        let ctx = CallContext::new(self.run_id.clone(), action, self.plan, self.control.cancel.clone())
            .idempotent(spec.idempotent)
            .on_lane(lane.cloned())
            .on_stop(self.control.stop.clone())
            .on_fence(self.fence.clone())
            .at_step(key);
        let started = Instant::now();
        let result = tokio::select! {
            biased;
            () = self.control.cancel.cancelled() => Err(ActionError::cancelled()),
            () = self.control.reads.cancelled(), if !mutating => Err(ActionError::cancelled()),
            result = async {
                // Closed only if the run is torn down, which cancels it first.
                let _permit = self.permits.acquire().await;
                // The run may have stopped while this call waited for its turn.
                if mutating && self.is_stopped() {
                    return Err(ActionError::new(ActionErrorKind::Refused, NOT_SENT));
                }
                match lane {
                    Some(lane) => lane.call(provider.call(&ctx, spec, args)).await,
                    None => provider.call(&ctx, spec, args).await,
                }
            } => result,
        };
        if mutating {
            crate::fault::point("after-answer", key);
        }
        record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        record.attempts = ctx.attempts();
        for warning in ctx.take_warnings() {
            self.log("warn", &format!("{}: {warning}", record.action));
        }
        let result = match result {
            Ok(value) => {
                if let Some(expected) = expect_digest {
                    let now = crate::journal::digest(&value);
                    if now != expected {
                        self.stop(Abort::Diverged(format!(
                            "the run diverged from its journal at step {key}: {} answered differently than when this \
                             run first read it (its answer was too large to keep, so it was read again); nothing \
                             was sent from that step on",
                            record.action
                        )));
                        self.audit(record)?;
                        return Err(CallFailure::Stopped);
                    }
                }
                self.learn_planned(provider.namespace(), planned.as_ref(), &value);
                if let (Some(durable), Some(entry)) = (durable, &mut entry) {
                    settle(entry, &value, durable.limits().max_result_bytes);
                    if mutating {
                        // The change was made; if its record cannot be kept the run stops here,
                        // and the audit trail still shows the change.
                        if let Err(stopped) = self.commit(durable, entry, None).await {
                            self.audit(record)?;
                            return Err(stopped);
                        }
                    } else {
                        self.hold(durable, entry.clone()).await?;
                    }
                }
                Ok(value)
            }
            Err(error) if error.kind == ActionErrorKind::Cancelled || self.control.cancel.is_cancelled() => {
                // A change in flight stays recorded as an intent: in doubt on resume.
                record.outcome = CallOutcome::Cancelled;
                // A read dropped by an interrupt was dropped on purpose: the changes in flight
                // elsewhere still finish.
                let read_dropped =
                    !mutating && self.control.reads.is_cancelled() && !self.control.cancel.is_cancelled();
                if !read_dropped {
                    self.stop(Abort::Cancelled);
                }
                Err(CallFailure::Stopped)
            }
            Err(error) if error.kind == ActionErrorKind::Refused && (self.is_stopped() || !self.within_lease(key)) => {
                record.outcome = CallOutcome::Refused;
                record.error = Some(redact(&error.message).into_owned());
                if let (Some(durable), Some(entry)) = (durable, &mut entry) {
                    // Never sent: the step is taken again on resume.
                    self.fail_entry(entry, &error);
                    let _ = durable.write(entry, None).await;
                }
                Err(CallFailure::Stopped)
            }
            Err(error) => {
                record.outcome = CallOutcome::Error;
                record.status = error.status;
                record.error = Some(redact(&error.message).into_owned());
                if let (Some(durable), Some(entry)) = (durable, &mut entry) {
                    // A change that may have been applied stays in doubt; anything else failed.
                    if !(mutating && leaves_doubt(&error)) {
                        self.fail_entry(entry, &error);
                        if mutating {
                            self.commit(durable, entry, None).await?;
                        } else {
                            self.hold(durable, entry.clone()).await?;
                        }
                    }
                }
                Err(CallFailure::Action(error))
            }
        };
        self.audit(record)?;
        result
    }

    /// Learns what a call's answer tells about ids; an apply binds what a planned create's
    /// placeholder stood for.
    fn learn(&self, provider: &Arc<dyn Provider>, spec: &ActionSpec, args: &Value, value: &Value) {
        let planned = self.placeholder(provider, spec, args);
        self.learn_planned(provider.namespace(), planned.as_ref(), value);
    }

    /// What a change of an apply returned in its plan: the placeholders its answer binds.
    fn placeholder(&self, provider: &Arc<dyn Provider>, spec: &ActionSpec, args: &Value) -> Option<Value> {
        (spec.effect.is_mutating() && self.expect.is_some()).then(|| provider.planned_result(spec, args))
    }

    fn learn_planned(&self, namespace: &str, planned: Option<&Value>, value: &Value) {
        // Labels serve plans and the policy; a run straight through without a policy has no use
        // for them.
        if self.plan || self.expect.is_some() || self.policy.is_some() {
            self.identities.learn(namespace, value);
        }
        if let (Some(expect), Some(planned)) = (&self.expect, planned) {
            expect.bind(planned, value);
        }
    }

    fn fail_entry(&self, entry: &mut JournalEntry, error: &ActionError) {
        entry.status = StepStatus::Err;
        entry.error = Some(StepError {
            kind: error.kind.as_str().to_owned(),
            message: redact(&error.message).into_owned(),
            status: error.status,
        });
        entry.finished_at = Some(jiff::Timestamp::now().as_millisecond());
    }

    /// A change an earlier attempt sent and never heard back about. `Some(value)` settles the
    /// step (a person said it was sent, or the probe found it); `None` sends it (idempotent, a
    /// person said it was not sent, or the probe found nothing).
    async fn settle_doubt(
        &self,
        provider: &Arc<dyn Provider>,
        spec: &ActionSpec,
        args: &Value,
        recorded: &JournalEntry,
        durable: &Durable,
        record: &mut AuditRecord,
    ) -> Result<Option<Value>, CallFailure> {
        let key = recorded.key.as_str();
        let done = |value: Value| {
            let mut entry = recorded.clone();
            entry.attempt = durable.entry(key, StepKind::Call, "", spec.effect).attempt;
            entry.epoch = durable.entry(key, StepKind::Call, "", spec.effect).epoch;
            settle(&mut entry, &value, durable.limits().max_result_bytes);
            entry
        };
        match recorded.resolution {
            Some(crate::journal::Resolution::Sent) => {
                let entry = done(Value::Null);
                self.commit(durable, &entry, None).await?;
                record.outcome = CallOutcome::Replayed;
                self.log(
                    "info",
                    &format!(
                        "{}: a person said the change took effect; it was not sent again",
                        recorded.describe()
                    ),
                );
                self.audit(record.clone())?;
                return Ok(Some(Value::Null));
            }
            Some(crate::journal::Resolution::NotSent) => return Ok(None),
            None => {}
        }
        if spec.idempotent || !spec.effect.is_mutating() {
            return Ok(None);
        }
        if spec.probe.is_none() {
            self.stop(Abort::NeedsAttention(format!(
                "needs_attention: {} was sent by an earlier attempt and never answered, and nothing can tell whether it took effect; it was not sent again. Check the service, then say what happened: runbook runs resolve {} {key} --sent (or --not-sent)",
                recorded.describe(),
                self.run_id
            )));
            return Err(CallFailure::Stopped);
        }
        let action = format!("{}.{}", provider.namespace(), spec.name);
        let ctx = CallContext::new(self.run_id.clone(), action, false, self.control.cancel.clone())
            .on_stop(self.control.stop.clone())
            .at_step(key);
        let probed = tokio::select! {
            biased;
            () = self.control.cancel.cancelled() => return Err(CallFailure::Stopped),
            probed = provider.probe(&ctx, spec, args) => probed,
        };
        match probed {
            Ok(Probed::Found(value)) => {
                let entry = done(value.clone());
                self.commit(durable, &entry, None).await?;
                record.outcome = CallOutcome::Replayed;
                self.log(
                    "info",
                    &format!(
                        "{}: in doubt after an earlier attempt; its probe ({}) found it took effect, so it was not sent again",
                        recorded.describe(),
                        spec.probe.unwrap_or_default()
                    ),
                );
                self.audit(record.clone())?;
                Ok(Some(value))
            }
            Ok(Probed::NotFound) => {
                self.log(
                    "info",
                    &format!(
                        "{}: in doubt after an earlier attempt; its probe ({}) found it did not take effect, so it is sent once",
                        recorded.describe(),
                        spec.probe.unwrap_or_default()
                    ),
                );
                Ok(None)
            }
            Err(error) => {
                // No `catch` may hold this: the step would stay in doubt under a run that goes on.
                let message = format!(
                    "{}.{}: {} is in doubt and its probe failed ({}); it was not sent again. Another attempt \
                     probes once more",
                    provider.namespace(),
                    spec.name,
                    recorded.describe(),
                    redact(&error.message)
                );
                record.outcome = CallOutcome::Error;
                record.error = Some(message.clone());
                self.audit(record.clone())?;
                self.stop(Abort::ProbeFailed(message));
                Err(CallFailure::Stopped)
            }
        }
    }

    /// A step that is not an action call (`now()`, `state::get`, `parallel`): replays what the
    /// journal recorded at `key`, or takes it with `take` and records its result. `Err(None)`:
    /// the run stopped; `Err(Some(message))`: the step failed.
    pub async fn step<F>(
        &self,
        key: &str,
        kind: StepKind,
        name: &str,
        args: Value,
        take: F,
    ) -> Result<Value, Option<String>>
    where
        F: Future<Output = Result<Value, String>>,
    {
        if self.is_stopped() {
            return Err(None);
        }
        let Some(durable) = self.journal() else {
            return take.await.map_err(Some);
        };
        let args_digest = digest(&args);
        match durable.lookup(key, kind, name, &args_digest, &args) {
            Replay::Diverged(message) => {
                self.stop(Abort::Diverged(message));
                return Err(None);
            }
            Replay::Recorded(entry) if entry.status == StepStatus::Ok && entry.result.is_some() => {
                return Ok(entry.result.unwrap_or(Value::Null));
            }
            Replay::Recorded(entry) if entry.status == StepStatus::Ok && is_null_result(&entry) => {
                return Ok(Value::Null);
            }
            Replay::Recorded(_) | Replay::Fresh => {}
        }
        if let Err(abort) = durable.admit(key) {
            self.stop(abort);
            return Err(None);
        }
        let value = take.await.map_err(Some)?;
        let mut entry = durable.entry(key, kind, name, crate::action::Effect::Read);
        entry.args_digest = args_digest;
        entry.args = args;
        // `now()` and `state::` values are kept whole: a resume must see them again.
        settle(&mut entry, &value, usize::MAX);
        self.hold(durable, entry).await.map_err(|_| None)?;
        Ok(value)
    }

    /// Keeps the record and hands it to the sink. A sink that fails stops the run, since no
    /// change may be made that the trail cannot show, and the call's value is not handed on.
    fn audit(&self, record: AuditRecord) -> Result<(), CallFailure> {
        let written = match &self.sink {
            Some(sink) => sink.record(&record),
            None => Ok(()),
        };
        let (seq, action) = (record.seq, record.action.clone());
        lock(&self.records).audit.push(record);
        written.map_err(|e| {
            self.stop(Abort::Audit(format!(
                "the audit trail cannot be written ({e}); the run was stopped after call {seq} ({action}) so that \
                 nothing changes unrecorded"
            )));
            CallFailure::Stopped
        })
    }

    /// `state::get`: a plan sees its own writes.
    pub async fn state_get(&self, key: &str) -> Result<Option<Value>, String> {
        if self.plan
            && let Some(v) = lock(&self.plan_state).get(key)
        {
            return Ok(Some(v.clone()));
        }
        self.state
            .get(key)
            .await
            .map_err(|e| format!("state::get(\"{key}\"): {e}"))
    }

    /// `state::set` at step `step`: in plan mode the value is kept for this run only; in a
    /// durable run the value and the step's record are committed together. `Err(None)`: the run
    /// stopped.
    pub async fn state_set(&self, step: &str, key: &str, value: Value) -> Result<(), Option<String>> {
        if self.plan {
            lock(&self.plan_state).insert(key.to_owned(), value);
            return Ok(());
        }
        let Some(durable) = self.journal() else {
            return self
                .state
                .set(key, value)
                .await
                .map_err(|e| Some(format!("state::set(\"{key}\"): {e}")));
        };
        let args = serde_json::json!({ "key": key, "value": value });
        let args_digest = digest(&args);
        match durable.lookup(step, StepKind::StateSet, key, &args_digest, &args) {
            Replay::Diverged(message) => {
                self.stop(Abort::Diverged(message));
                return Err(None);
            }
            Replay::Recorded(entry) if entry.status == StepStatus::Ok => return Ok(()),
            Replay::Recorded(_) | Replay::Fresh => {}
        }
        if let Err(abort) = durable.admit(step) {
            self.stop(abort);
            return Err(None);
        }
        let mut entry = durable.entry(step, StepKind::StateSet, key, crate::action::Effect::Read);
        entry.args_digest = args_digest;
        entry.args = serde_json::json!({ "key": key });
        settle(&mut entry, &Value::Null, 0);
        self.commit(durable, &entry, Some((key, &value)))
            .await
            .map_err(|_| None)
    }
}

/// The targets a change names, for the policy: its targets, and the `email` and `user_id` it
/// names besides (a group's member is touched by a change of the group).
fn subjects(spec: &ActionSpec, args: &Value) -> Vec<String> {
    let mut ids = spec.target_ids(args);
    for param in ["email", "user_id"] {
        if let Some(Value::String(v)) = args.get(param)
            && !ids.contains(v)
        {
            ids.push(v.clone());
        }
    }
    ids
}

/// What is known of an object a plan would create: it does not exist yet, so it holds no role;
/// its names are checked where it is created.
fn new_object(id: &str) -> Option<crate::plan::Identity> {
    (id == PLACEHOLDER).then(|| crate::plan::Identity {
        label: None,
        names: vec![PLACEHOLDER.to_owned()],
        roles: Vec::new(),
        roles_known: true,
    })
}

fn shown_target(id: &str, label: Option<&str>) -> String {
    match label {
        Some(label) if !label.eq_ignore_ascii_case(id) => format!("{label} (id {id})"),
        _ => id.to_owned(),
    }
}

fn protected(
    action: &str,
    id: &str,
    label: Option<&str>,
    rule: &crate::policy::Rule,
    how: &str,
    origin: &str,
) -> String {
    let how = if how.is_empty() {
        String::new()
    } else {
        format!(" {how}, and")
    };
    format!(
        "policy refused {action}: target {}{how} is protected by rule {rule} ({origin}); nothing was sent",
        shown_target(id, label)
    )
}

fn unknown(
    action: &str,
    id: &str,
    why: &str,
    policy: &Policy,
    namespace: &str,
    identity: Option<&crate::plan::Identity>,
) -> String {
    let rules: Vec<String> = match policy.judge(namespace, id, identity) {
        Verdict::Unknown { rules } => rules.iter().map(ToString::to_string).collect(),
        _ => policy.rules().iter().map(ToString::to_string).collect(),
    };
    format!(
        "policy refused {action}: cannot tell who target {} is (no read of this run showed it, and {why}), and \
         rule {} could match: refused (fail closed; {}); nothing was sent. Read the target first (list or get it) \
         so that the run knows it",
        shown_target(id, identity.and_then(|i| i.label.as_deref())),
        rules.join(", "),
        policy.origin()
    )
}

/// Whether a recorded result is `()` (kept as its digest alone by stores that drop JSON nulls).
fn is_null_result(entry: &JournalEntry) -> bool {
    entry.result.is_none() && entry.result_digest.as_deref() == Some(digest(&Value::Null).as_str())
}

/// The arguments as audit records and plans show them: secret parameters replaced, remembered
/// secrets scrubbed from every string.
fn redact_args(spec: &ActionSpec, args: &Value) -> Value {
    let mut out = scrub(args);
    if let Value::Object(map) = &mut out {
        for param in spec.params.iter().filter(|p| p.secret) {
            if let Some(v) = map.get_mut(param.name) {
                *v = Value::String(REDACTED.to_owned());
            }
        }
    }
    out
}

fn scrub(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(scrub).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), scrub(v))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
