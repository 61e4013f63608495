//! A run's shared state, reached from every native function through the Rhai engine's tag.
//!
//! All action calls of a run go through [`RunHandle::invoke`]: it counts the call, applies the
//! blast-radius guard and plan mode, sends the call to the provider on the async runtime (the
//! script itself runs on a blocking thread), and writes the audit record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, Map as RhaiMap, NativeCallContext, Position};
use serde_json::Value;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::convert::json_to_dynamic;
use crate::action::ActionSpec;
use crate::audit::{AuditRecord, AuditSink, CallOutcome};
use crate::context::CallContext;
use crate::error::{ActionError, ActionErrorKind};
use crate::provider::Provider;
use crate::registry::Registry;
use crate::run::{LogLine, PlannedChange, RunObserver};
use crate::secret::{REDACTED, redact};
use crate::state::StateStore;

/// Why a run was stopped from inside the engine (not by the script).
#[derive(Debug, Clone)]
pub(crate) enum Abort {
    Guard(String),
    Params(String),
    Timeout(Duration),
    Cancelled,
    NotConfigured(String),
}

pub(crate) struct RunState {
    pub run_id: String,
    pub plan: bool,
    pub max_changes: u64,
    pub concurrency: usize,
    pub cancel: CancellationToken,
    pub registry: Arc<Registry>,
    pub ast: Arc<rhai::AST>,
    pub observer: Option<Arc<dyn RunObserver>>,
    pub params: Value,
    handle: Handle,
    used_targets: Mutex<u64>,
    calls: AtomicU64,
    planned: Mutex<Vec<PlannedChange>>,
    audit: Mutex<Vec<AuditRecord>>,
    logs: Mutex<Vec<LogLine>>,
    sink: Option<Arc<dyn AuditSink>>,
    state: Arc<dyn StateStore>,
    plan_state: Mutex<HashMap<String, Value>>,
    abort: Mutex<Option<Abort>>,
}

/// What a run produced, taken out of its state at the end.
pub(crate) struct RunRecords {
    pub planned: Vec<PlannedChange>,
    pub calls: u64,
    pub audit: Vec<AuditRecord>,
    pub logs: Vec<LogLine>,
}

pub(crate) struct RunSetup {
    pub run_id: String,
    pub plan: bool,
    pub max_changes: u64,
    pub concurrency: usize,
    pub cancel: CancellationToken,
    pub registry: Arc<Registry>,
    pub ast: Arc<rhai::AST>,
    pub observer: Option<Arc<dyn RunObserver>>,
    pub params: Value,
    pub sink: Option<Arc<dyn AuditSink>>,
    pub state: Arc<dyn StateStore>,
    pub handle: Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; the data is still what it was.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cheap, clonable reference to the run, stored as the Rhai engine's tag.
#[derive(Clone)]
pub(crate) struct RunHandle(pub Arc<RunState>);

impl RunHandle {
    pub fn new(setup: RunSetup) -> Self {
        RunHandle(Arc::new(RunState {
            run_id: setup.run_id,
            plan: setup.plan,
            max_changes: setup.max_changes,
            concurrency: setup.concurrency.max(1),
            cancel: setup.cancel,
            registry: setup.registry,
            ast: setup.ast,
            observer: setup.observer,
            params: setup.params,
            handle: setup.handle,
            used_targets: Mutex::new(0),
            calls: AtomicU64::new(0),
            planned: Mutex::new(Vec::new()),
            audit: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            sink: setup.sink,
            state: setup.state,
            plan_state: Mutex::new(HashMap::new()),
            abort: Mutex::new(None),
        }))
    }

    /// The run behind a native call.
    pub fn from_ctx(ctx: &NativeCallContext) -> Result<RunHandle, Box<EvalAltResult>> {
        ctx.tag()
            .and_then(|tag| tag.read_lock::<RunHandle>().map(|h| h.clone()))
            .ok_or_else(|| {
                EvalAltResult::ErrorRuntime(
                    "this function is only available while a script runs".into(),
                    ctx.call_position(),
                )
                .into()
            })
    }

    /// Stops the run for `reason` (the first reason wins): the script loop and every call in
    /// flight end.
    pub fn stop(&self, reason: Abort) {
        {
            let mut abort = lock(&self.0.abort);
            if abort.is_none() {
                *abort = Some(reason);
            }
        }
        self.0.cancel.cancel();
    }

    /// Stops the run for `reason` and returns the error no `catch` can hold.
    pub fn abort(&self, reason: Abort, pos: Position) -> Box<EvalAltResult> {
        self.stop(reason);
        EvalAltResult::ErrorTerminated(Dynamic::UNIT, pos).into()
    }

    /// Why the run was stopped, if it was.
    pub fn abort_reason(&self) -> Option<Abort> {
        lock(&self.0.abort).clone()
    }

    /// Records a line the script printed.
    pub fn log(&self, level: &'static str, message: &str) {
        let message = redact(message).into_owned();
        tracing::info!(target: "runbook::script", run_id = %self.0.run_id, "{message}");
        lock(&self.0.logs).push(LogLine {
            at: jiff::Timestamp::now().to_string(),
            level,
            message,
        });
    }

    /// Takes everything the run recorded.
    pub fn take_records(&self) -> RunRecords {
        RunRecords {
            planned: std::mem::take(&mut *lock(&self.0.planned)),
            calls: self.0.calls.load(Ordering::Relaxed),
            audit: std::mem::take(&mut *lock(&self.0.audit)),
            logs: std::mem::take(&mut *lock(&self.0.logs)),
        }
    }

    /// Runs a future on the engine's runtime from the script's thread, abandoning it if the run
    /// is cancelled.
    pub fn block_on<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        self.0.handle.block_on(self.cancellable(fut))
    }

    /// Like [`block_on`](Self::block_on), on the script thread's own runtime when it has one.
    fn block_on_here<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        match super::local_io::block_on(self.cancellable(fut)) {
            Ok(value) => value,
            Err(fut) => self.0.handle.block_on(fut),
        }
    }

    fn cancellable<T>(&self, fut: impl Future<Output = T>) -> impl Future<Output = Option<T>> {
        let cancel = self.0.cancel.clone();
        async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                value = fut => Some(value),
            }
        }
    }

    /// Takes targets from the guard's budget; false when the call would pass the cap.
    fn reserve(&self, targets: u64) -> Result<(), u64> {
        let mut used = lock(&self.0.used_targets);
        if *used + targets > self.0.max_changes {
            return Err(*used);
        }
        *used += targets;
        Ok(())
    }

    /// One action call from the script.
    pub fn invoke(
        &self,
        provider: &Arc<dyn Provider>,
        spec: &ActionSpec,
        args: Value,
        pos: Position,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let run = &self.0;
        if run.cancel.is_cancelled() {
            return Err(self.abort(Abort::Cancelled, pos));
        }
        let action = format!("{}.{}", provider.namespace(), spec.name);
        let seq = run.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let targets = spec.count_targets(&args);
        let mut record = AuditRecord {
            run_id: run.run_id.clone(),
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
            if let Err(used) = self.reserve(targets) {
                let message = format!(
                    "the blast-radius guard refused {action}: it would touch {targets} more target(s) after {used} \
                     already changed, and the cap for this run is {} (raise it with --max-changes if this is intended)",
                    run.max_changes
                );
                record.outcome = CallOutcome::Refused;
                record.error = Some(message.clone());
                self.write_audit(record);
                return Err(self.abort(Abort::Guard(message), pos));
            }
            if run.plan {
                lock(&run.planned).push(PlannedChange {
                    action: action.clone(),
                    effect: spec.effect,
                    targets,
                    args: record.args.clone(),
                });
                let placeholder = provider.planned_result(spec, &args);
                record.outcome = CallOutcome::Planned;
                self.write_audit(record);
                return Ok(json_to_dynamic(placeholder));
            }
        }

        let ctx = CallContext::new(run.run_id.clone(), action.clone(), run.plan, run.cancel.clone());
        let started = Instant::now();
        let call = provider.call(&ctx, spec, args);
        let result = if provider.thread_local_calls() {
            self.block_on_here(call)
        } else {
            self.block_on(call)
        };
        record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        record.attempts = ctx.attempts();
        match result {
            Some(Ok(value)) => {
                self.write_audit(record);
                Ok(json_to_dynamic(value))
            }
            None => {
                record.outcome = CallOutcome::Cancelled;
                self.write_audit(record);
                Err(self.abort(Abort::Cancelled, pos))
            }
            Some(Err(error)) if error.kind == ActionErrorKind::Cancelled => {
                record.outcome = CallOutcome::Cancelled;
                self.write_audit(record);
                Err(self.abort(Abort::Cancelled, pos))
            }
            Some(Err(error)) => {
                record.outcome = CallOutcome::Error;
                record.status = error.status;
                record.error = Some(redact(&error.message).into_owned());
                self.write_audit(record);
                Err(action_error(&action, &error, pos))
            }
        }
    }

    fn write_audit(&self, record: AuditRecord) {
        if let Some(sink) = &self.0.sink {
            sink.record(&record);
        }
        lock(&self.0.audit).push(record);
    }

    /// `state::get`: plan mode sees its own writes without storing them.
    pub fn state_get(&self, key: &str, pos: Position) -> Result<Dynamic, Box<EvalAltResult>> {
        if self.0.plan
            && let Some(v) = lock(&self.0.plan_state).get(key)
        {
            return Ok(json_to_dynamic(v.clone()));
        }
        let state = self.0.state.clone();
        let key_owned = key.to_owned();
        match self.block_on(async move { state.get(&key_owned).await }) {
            None => Err(self.abort(Abort::Cancelled, pos)),
            Some(Ok(v)) => Ok(v.map(json_to_dynamic).unwrap_or(Dynamic::UNIT)),
            Some(Err(e)) => Err(EvalAltResult::ErrorRuntime(format!("state::get(\"{key}\"): {e}").into(), pos).into()),
        }
    }

    /// `state::set`: in plan mode the value is kept for this run only.
    pub fn state_set(&self, key: &str, value: Value, pos: Position) -> Result<(), Box<EvalAltResult>> {
        if self.0.plan {
            lock(&self.0.plan_state).insert(key.to_owned(), value);
            return Ok(());
        }
        let state = self.0.state.clone();
        let key_owned = key.to_owned();
        match self.block_on(async move { state.set(&key_owned, value).await }) {
            None => Err(self.abort(Abort::Cancelled, pos)),
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(EvalAltResult::ErrorRuntime(format!("state::set(\"{key}\"): {e}").into(), pos).into()),
        }
    }
}

/// The catchable error map a failed action raises in the script.
pub(crate) fn action_error(action: &str, error: &ActionError, pos: Position) -> Box<EvalAltResult> {
    let mut map = RhaiMap::new();
    for (k, v) in error.extra.iter() {
        map.insert(k.as_str().into(), json_to_dynamic(v.clone()));
    }
    map.insert("action".into(), Dynamic::from(action.to_owned()));
    map.insert("message".into(), Dynamic::from(redact(&error.message).into_owned()));
    map.insert("kind".into(), Dynamic::from(error.kind.as_str().to_owned()));
    map.insert(
        "status".into(),
        error
            .status
            .map(|s| Dynamic::from_int(i64::from(s)))
            .unwrap_or(Dynamic::UNIT),
    );
    map.insert(
        "code".into(),
        error.code.clone().map(json_to_dynamic).unwrap_or(Dynamic::UNIT),
    );
    EvalAltResult::ErrorRuntime(Dynamic::from_map(map), pos).into()
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
