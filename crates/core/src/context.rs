//! What a provider knows about the call it is serving.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::journal::Fence;
use crate::lane::LaneIo;

/// One action call, as the provider sees it: which run, whether it is a plan, and the token that
/// is cancelled when the run times out or is interrupted. Pass it to [`crate::http::HttpClient::send`].
#[derive(Debug)]
pub struct CallContext {
    run_id: String,
    action: String,
    plan: bool,
    idempotent: bool,
    cancel: CancellationToken,
    attempts: AtomicU32,
    lane: Option<Arc<LaneIo>>,
    stop: Option<CancellationToken>,
    warnings: Mutex<Vec<String>>,
    fence: Option<Arc<Fence>>,
    step: Option<String>,
}

impl CallContext {
    /// A call of `action` (`"cloudflare.get_user"`) in run `run_id`.
    pub fn new(run_id: impl Into<String>, action: impl Into<String>, plan: bool, cancel: CancellationToken) -> Self {
        CallContext {
            run_id: run_id.into(),
            action: action.into(),
            plan,
            idempotent: false,
            cancel,
            attempts: AtomicU32::new(0),
            lane: None,
            stop: None,
            warnings: Mutex::new(Vec::new()),
            fence: None,
            step: None,
        }
    }

    /// The run's lease: once it may have lapsed, no change is sent.
    pub(crate) fn on_fence(mut self, fence: Option<Arc<Fence>>) -> Self {
        self.fence = fence;
        self
    }

    /// The call is the run's step `key`.
    pub(crate) fn at_step(mut self, key: &str) -> Self {
        self.step = Some(key.to_owned());
        self
    }

    /// The run's step this call is (`3`, `9/0/1`), when the engine made it.
    pub fn step(&self) -> Option<&str> {
        self.step.as_deref()
    }

    /// Cancelled when the run stops taking new changes (a guard refusal, a lost audit trail):
    /// a change not yet sent is then not sent.
    pub(crate) fn on_stop(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Whether the run has stopped taking new changes: a changing request not yet sent must not
    /// be sent. ([`crate::http::HttpClient`] checks this before every attempt.)
    pub fn is_stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(CancellationToken::is_cancelled)
            || self.fence.as_ref().is_some_and(|f| !f.may_send())
    }

    /// The call runs on this lane (its thread's runtime and connections).
    pub(crate) fn on_lane(mut self, lane: Option<Arc<LaneIo>>) -> Self {
        self.lane = lane;
        self
    }

    /// The lane the call runs on, if any.
    pub(crate) fn lane(&self) -> Option<&LaneIo> {
        self.lane.as_deref()
    }

    /// Declares whether the action may be sent twice with the same effect as once (its spec's
    /// `idempotent`): the HTTP layer resends a changing request after an ambiguous failure only
    /// then. Default: no.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Whether the action may be resent after an ambiguous failure.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// A call outside any run, never cancelled: for calling a provider directly.
    pub fn detached(action: impl Into<String>) -> Self {
        CallContext::new("detached", action, false, CancellationToken::new())
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The action, `namespace.name`.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Whether the run is a plan: nothing that changes the service may be sent.
    pub fn is_plan(&self) -> bool {
        self.plan
    }

    /// Cancelled when the run times out or is interrupted.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// HTTP attempts made for this call so far (retries included).
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Counts one HTTP attempt.
    pub fn note_attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// Tells the run's reader something about how this call was served that they should know
    /// (a fallback taken, a limit met): it goes into the run's log, after the call.
    pub fn warn(&self, message: impl Into<String>) {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.into());
    }

    /// The warnings given so far, emptied.
    pub(crate) fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
