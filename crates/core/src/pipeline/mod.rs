//! The call pipeline: every action call of a run passes through [`Pipeline::call`], in order —
//! the stop check, argument validation, the blast-radius guard, plan mode, the run-wide
//! concurrency permit, the provider, and the audit record. `state::` reads and writes pass
//! through [`Pipeline::state_get`] and [`Pipeline::state_set`] (plan mode keeps its writes to
//! itself). The journal of durable runs sits at the same two places: before the send (a write's
//! intent) and at the outcome.
//!
//! Nothing here knows about Rhai: the guard, plan mode and the audit trail are tested on their
//! own, and the script host is one caller among others.

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
use crate::lane::LaneIo;
use crate::provider::Provider;
use crate::run::{LogLine, PlannedChange, RunRecords, SettingNames};
use crate::secret::{REDACTED, redact};
use crate::state::StateStore;
use guard::Guard;
pub(crate) use validate::validate as validate_args;

/// Why a run stopped from inside the engine rather than by the script's own doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Abort {
    /// The blast-radius guard refused a call.
    Guard(String),
    /// A parameter the script needs is missing or of the wrong type.
    Params(String),
    /// An action was called with arguments it does not take.
    InvalidArgs(String),
    /// The run passed its time limit.
    Timeout(Duration),
    /// Cancelled from outside (Ctrl-C, shutdown, the caller dropped the run).
    Cancelled,
    /// The script called a provider that is not configured.
    NotConfigured(String),
    /// The audit trail cannot be written: nothing more may change.
    Audit(String),
}

impl Abort {
    /// Whether calls already in flight are abandoned too. A refusal, a mistake in the script or
    /// a lost audit trail only stop new calls: a write already sent finishes and is reported as
    /// it ended, since the service may well have applied it.
    fn abandons_calls_in_flight(&self) -> bool {
        matches!(self, Abort::Timeout(_) | Abort::Cancelled)
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
        Pipeline {
            run_id: setup.run_id,
            plan: setup.plan,
            names: setup.names,
            guard: Guard::new(setup.max_changes),
            control: Control {
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
        }
    }

    /// How the caller names its settings, for messages.
    pub fn names(&self) -> &SettingNames {
        &self.names
    }

    /// Stops the run for `reason`; the first reason wins.
    pub fn stop(&self, reason: Abort) {
        let abandon = reason.abandons_calls_in_flight();
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

    /// One action call, on `lane` when the calling thread has one.
    pub async fn call(
        &self,
        provider: &Arc<dyn Provider>,
        spec: &ActionSpec,
        args: Value,
        lane: Option<&Arc<LaneIo>>,
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

        if spec.effect.is_mutating() {
            if let Err(refusal) = self.guard.reserve(targets) {
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
            if self.plan {
                let placeholder = provider.planned_result(spec, &args);
                lock(&self.records).planned_changes.push(PlannedChange {
                    action,
                    effect: spec.effect,
                    targets,
                    args: record.args.clone(),
                });
                record.outcome = CallOutcome::Planned;
                return self.audit(record).map(|()| placeholder);
            }
        }

        let ctx = CallContext::new(self.run_id.clone(), action, self.plan, self.control.cancel.clone())
            .idempotent(spec.idempotent)
            .on_lane(lane.cloned())
            .on_stop(self.control.stop.clone());
        let started = Instant::now();
        let result = tokio::select! {
            biased;
            () = self.control.cancel.cancelled() => Err(ActionError::cancelled()),
            result = async {
                // Closed only if the run is torn down, which cancels it first.
                let _permit = self.permits.acquire().await;
                // The run may have stopped while this call waited for its turn.
                if spec.effect.is_mutating() && self.is_stopped() {
                    return Err(ActionError::new(ActionErrorKind::Refused, NOT_SENT));
                }
                match lane {
                    Some(lane) => lane.call(provider.call(&ctx, spec, args)).await,
                    None => provider.call(&ctx, spec, args).await,
                }
            } => result,
        };
        record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        record.attempts = ctx.attempts();
        for warning in ctx.take_warnings() {
            self.log("warn", &format!("{}: {warning}", record.action));
        }
        let result = match result {
            Ok(value) => Ok(value),
            Err(error) if error.kind == ActionErrorKind::Cancelled || self.control.cancel.is_cancelled() => {
                record.outcome = CallOutcome::Cancelled;
                self.stop(Abort::Cancelled);
                Err(CallFailure::Stopped)
            }
            Err(error) if error.kind == ActionErrorKind::Refused && self.is_stopped() => {
                record.outcome = CallOutcome::Refused;
                record.error = Some(redact(&error.message).into_owned());
                Err(CallFailure::Stopped)
            }
            Err(error) => {
                record.outcome = CallOutcome::Error;
                record.status = error.status;
                record.error = Some(redact(&error.message).into_owned());
                Err(CallFailure::Action(error))
            }
        };
        self.audit(record)?;
        result
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

    /// `state::set`: in plan mode the value is kept for this run only.
    pub async fn state_set(&self, key: &str, value: Value) -> Result<(), String> {
        if self.plan {
            lock(&self.plan_state).insert(key.to_owned(), value);
            return Ok(());
        }
        self.state
            .set(key, value)
            .await
            .map_err(|e| format!("state::set(\"{key}\"): {e}"))
    }
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
