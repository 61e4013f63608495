//! A run as the script host sees it: the call pipeline, plus what only scripts need (the
//! compiled script, its params, `parallel`'s thread budget), and the lane of the thread at hand.
//! Each script thread has its own Rhai engine whose tag is its [`RunHandle`]: the run, shared,
//! and the thread's lane, its own — handed to every call explicitly.

use std::sync::{Arc, Mutex};

use rhai::{Dynamic, EvalAltResult, Map as RhaiMap, NativeCallContext, Position};
use serde_json::Value;

use super::ScriptHost;
use super::convert::{json_to_dynamic, result_to_dynamic};
use super::parallel::Slots;
use crate::action::ActionSpec;
use crate::error::ActionError;
use crate::journal::StepKind;
use crate::lane::{LaneGuard, Lanes};
use crate::pipeline::{Abort, CallFailure, Pipeline};
use crate::provider::Provider;
use crate::registry::Registry;
use crate::run::RunObserver;
use crate::secret::redact;

pub(crate) struct RunState {
    pub pipeline: Pipeline,
    pub registry: Arc<Registry>,
    pub ast: Arc<rhai::AST>,
    pub observer: Option<Arc<dyn RunObserver>>,
    pub params: Value,
    /// Threads `parallel` may add to the run's own.
    pub slots: Slots,
    /// Where script threads' calls run.
    pub lanes: Arc<Lanes>,
    /// The runtime the run was started on: provider code, `state::` and the rate budget run there.
    pub engine: tokio::runtime::Handle,
    /// Makes each script thread's Rhai engine.
    pub host: Arc<ScriptHost>,
}

impl RunState {
    /// The run on the calling script thread, with a lane of its own.
    pub fn on_this_thread(self: &Arc<Self>) -> RunHandle {
        RunHandle {
            run: self.clone(),
            lane: Arc::new(self.lanes.take(self.engine.clone())),
            cursor: Arc::new(Mutex::new(Cursor::default())),
        }
    }
}

/// Where a script thread is in the run's steps: the n-th step of the script is `n`; inside the
/// `parallel` at step 9, item i's m-th step is `9/i/m`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Cursor {
    prefix: String,
    taken: u64,
}

impl Cursor {
    /// The cursor of item `index` of the `parallel` at step `key`.
    pub fn item(key: &str, index: usize) -> Cursor {
        Cursor {
            prefix: format!("{key}/{index}/"),
            taken: 0,
        }
    }
}

/// The run as one script thread sees it, stored as that thread's Rhai engine's tag.
#[derive(Clone)]
pub(crate) struct RunHandle {
    pub run: Arc<RunState>,
    lane: Arc<LaneGuard>,
    cursor: Arc<Mutex<Cursor>>,
}

impl RunHandle {
    /// The run's pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.run.pipeline
    }

    /// The key of this thread's next step.
    pub fn next_step(&self) -> String {
        let mut cursor = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        cursor.taken += 1;
        format!("{}{}", cursor.prefix, cursor.taken)
    }

    /// Runs `f` with this thread's steps counted under `cursor`, then restores the thread's own.
    pub fn within<T>(&self, cursor: Cursor, f: impl FnOnce() -> T) -> T {
        let saved = std::mem::replace(&mut *self.cursor.lock().unwrap_or_else(|p| p.into_inner()), cursor);
        let out = f();
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = saved;
        out
    }

    /// A step that is not an action call, on the engine's runtime.
    pub fn step(
        &self,
        kind: StepKind,
        name: &str,
        args: Value,
        take: impl Future<Output = Result<Value, String>>,
        pos: Position,
    ) -> Result<Value, Box<EvalAltResult>> {
        let key = self.next_step();
        self.step_at(&key, kind, name, args, take, pos)
    }

    /// A step that is not an action call at `key`, on the engine's runtime.
    pub fn step_at(
        &self,
        key: &str,
        kind: StepKind,
        name: &str,
        args: Value,
        take: impl Future<Output = Result<Value, String>>,
        pos: Position,
    ) -> Result<Value, Box<EvalAltResult>> {
        match self.on_engine(self.run.pipeline.step(key, kind, name, args, take)) {
            None | Some(Err(None)) => Err(terminated(pos)),
            Some(Err(Some(message))) => Err(EvalAltResult::ErrorRuntime(message.into(), pos).into()),
            Some(Ok(value)) => Ok(value),
        }
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

    /// Stops the run for `reason` and returns the error no `catch` can hold.
    pub fn abort(&self, reason: Abort, pos: Position) -> Box<EvalAltResult> {
        self.run.pipeline.stop(reason);
        terminated(pos)
    }

    /// One action call from the script.
    pub fn invoke(
        &self,
        provider: &Arc<dyn Provider>,
        spec: &ActionSpec,
        args: Value,
        pos: Position,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        if let Some(observer) = &self.run.observer {
            observer.call_started(&format!("{}.{}", provider.namespace(), spec.name));
        }
        let key = self.next_step();
        let call = Box::pin(self.run.pipeline.call(provider, spec, args, self.lane.io(), &key));
        // The call's own work — its journal writes, a probe, the provider — runs in the engine
        // runtime's context: connections it opens (a store's pool) must outlive this lane's
        // turn. Only the HTTP exchange enters the lane's context.
        let outcome = match self.lane.io() {
            Some(io) => self.lane.block_on(io.call(call)),
            None => self.lane.block_on(call),
        };
        match outcome {
            Ok(value) => Ok(result_to_dynamic(spec.records, value)),
            Err(CallFailure::Stopped) => Err(terminated(pos)),
            Err(CallFailure::Action(error)) => Err(action_error(
                &format!("{}.{}", provider.namespace(), spec.name),
                &error,
                pos,
            )),
        }
    }

    /// `state::get`, on the engine's runtime: the store's connections are shared by every thread.
    pub fn state_get(&self, key: &str, pos: Position) -> Result<Dynamic, Box<EvalAltResult>> {
        if self.run.pipeline.is_stopped() {
            return Err(terminated(pos));
        }
        let pipeline = &self.run.pipeline;
        let read = async move { pipeline.state_get(key).await.map(|v| v.unwrap_or(Value::Null)) };
        let value = self.step(StepKind::StateGet, key, serde_json::json!({ "key": key }), read, pos)?;
        Ok(if value.is_null() {
            Dynamic::UNIT
        } else {
            json_to_dynamic(value)
        })
    }

    /// `now()`: the recorded time on resume.
    pub fn now(&self, pos: Position) -> Result<Dynamic, Box<EvalAltResult>> {
        if self.run.pipeline.is_stopped() {
            return Err(terminated(pos));
        }
        let read = async { Ok(Value::from(jiff::Timestamp::now().as_second())) };
        let value = self.step(StepKind::Now, "", Value::Null, read, pos)?;
        Ok(Dynamic::from_int(value.as_i64().unwrap_or_default()))
    }

    /// `state::set`, on the engine's runtime.
    pub fn state_set(&self, key: &str, value: Value, pos: Position) -> Result<(), Box<EvalAltResult>> {
        if self.run.pipeline.is_stopped() {
            return Err(terminated(pos));
        }
        let step = self.next_step();
        match self.on_engine(self.run.pipeline.state_set(&step, key, value)) {
            None | Some(Err(None)) => Err(terminated(pos)),
            Some(Ok(())) => Ok(()),
            Some(Err(Some(message))) => Err(EvalAltResult::ErrorRuntime(message.into(), pos).into()),
        }
    }

    /// Waits for `fut` on the run's runtime; `None` when the run is cancelled meanwhile (its
    /// timeout, Ctrl-C, a dropped run), so that a store that stalls cannot hold the script.
    fn on_engine<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let cancel = self.run.pipeline.cancel_token().clone();
        self.lane.engine().block_on(async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                value = fut => Some(value),
            }
        })
    }
}

/// The error that ends a stopped run's script: no `catch` can hold it.
fn terminated(pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(Dynamic::UNIT, pos).into()
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
