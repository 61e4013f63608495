//! The store as the HTTP endpoints see it: every call answers within `store_timeout`, so that a
//! stalled store (a locked SQLite file, an unreachable PostgreSQL) is answered 503 at once
//! instead of holding the request for as long as the store takes. Each failure is counted in
//! `runbook_store_errors_total{operation}`.
//!
//! A call that timed out may still complete in the store afterwards (an intake waiting behind a
//! lock, for one); everything on the request path is idempotent — a delivery sent again is
//! deduplicated by its id — so the caller is told to send it again.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runbook_core::Resolution;
use serde_json::Value;

use super::{
    AutomationSwitch, Backlog, CancelError, Cancelled, ClaimedRun, Completion, ConsoleSession, DecideError, Decided,
    Decision, Enqueued, NewRun, PendingPlan, ResolveError, RunFilter, RunRecord, RunSummary, Stats, Store, StoreError,
};
use crate::metrics::Metrics;

/// The beginning of the message of a call that did not answer in time.
pub const TIMED_OUT: &str = "the store did not answer within";

/// `inner` with a deadline on every call.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, timeout: Duration, metrics: Arc<Metrics>) -> TimedStore {
        TimedStore {
            inner,
            timeout,
            metrics,
        }
    }

    async fn call<T, E: From<StoreError>>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.metrics.store_error(operation);
                Err(e)
            }
            Err(_) => {
                self.metrics.store_error(operation);
                Err(E::from(StoreError(format!(
                    "{TIMED_OUT} {} (store_timeout)",
                    humantime::format_duration(self.timeout)
                ))))
            }
        }
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn enqueue(&self, run: NewRun) -> Result<Enqueued, StoreError> {
        self.call("enqueue", self.inner.enqueue(run)).await
    }

    async fn claim(
        &self,
        owner: &str,
        concurrency: &BTreeMap<String, usize>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        self.call("claim", self.inner.claim(owner, concurrency, max, lease))
            .await
    }

    async fn heartbeat(&self, owner: &str, runs: &[(String, u64)], lease: Duration) -> Result<Vec<String>, StoreError> {
        self.call("heartbeat", self.inner.heartbeat(owner, runs, lease)).await
    }

    async fn complete(&self, owner: &str, id: &str, epoch: u64, completion: Completion) -> Result<bool, StoreError> {
        self.call("complete", self.inner.complete(owner, id, epoch, completion))
            .await
    }

    async fn release(&self, owner: &str, id: &str, epoch: u64) -> Result<bool, StoreError> {
        self.call("release", self.inner.release(owner, id, epoch)).await
    }

    fn journal(&self, run_id: &str, attempt: u32, epoch: u64) -> Arc<dyn runbook_core::Journal> {
        self.inner.journal(run_id, attempt, epoch)
    }

    async fn resolve(&self, run_id: &str, key: &str, resolution: Resolution, by: &str) -> Result<(), ResolveError> {
        self.call("resolve", self.inner.resolve(run_id, key, resolution, by))
            .await
    }

    async fn compact_journals(&self, before: i64) -> Result<u64, StoreError> {
        self.call("compact_journals", self.inner.compact_journals(before)).await
    }

    async fn recover(&self, all_running: bool) -> Result<u64, StoreError> {
        self.call("recover", self.inner.recover(all_running)).await
    }

    async fn get(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.call("get", self.inner.get(id)).await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.call("list", self.inner.list(filter)).await
    }

    async fn list_summaries(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        self.call("list_summaries", self.inner.list_summaries(filter)).await
    }

    async fn cancel(&self, id: &str, by: &str) -> Result<Cancelled, CancelError> {
        self.call("cancel", self.inner.cancel(id, by)).await
    }

    async fn cancel_requested(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        self.call("cancel_requested", self.inner.cancel_requested(owner)).await
    }

    async fn await_approval(
        &self,
        owner: &str,
        id: &str,
        epoch: u64,
        pending: PendingPlan,
    ) -> Result<bool, StoreError> {
        self.call("await_approval", self.inner.await_approval(owner, id, epoch, pending))
            .await
    }

    async fn decide(
        &self,
        id: &str,
        by: &str,
        decision: Decision,
        comment: &str,
        seen: Option<&str>,
        required: u32,
    ) -> Result<Decided, DecideError> {
        self.call("decide", self.inner.decide(id, by, decision, comment, seen, required))
            .await
    }

    async fn expire_approvals(&self) -> Result<u64, StoreError> {
        self.call("expire_approvals", self.inner.expire_approvals()).await
    }

    async fn set_paused(&self, automation: &str, paused: bool, by: &str) -> Result<(), StoreError> {
        self.call("set_paused", self.inner.set_paused(automation, paused, by))
            .await
    }

    async fn automations(&self) -> Result<Vec<AutomationSwitch>, StoreError> {
        self.call("automations", self.inner.automations()).await
    }

    async fn retry(&self, id: &str, script: String, by: &str) -> Result<Enqueued, StoreError> {
        self.call("retry", self.inner.retry(id, script, by)).await
    }

    async fn last_tick(&self, automation: &str) -> Result<Option<i64>, StoreError> {
        self.call("last_tick", self.inner.last_tick(automation)).await
    }

    async fn state_get(&self, automation: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.call("state_get", self.inner.state_get(automation, key)).await
    }

    async fn state_set(&self, automation: &str, key: &str, value: &Value) -> Result<(), StoreError> {
        self.call("state_set", self.inner.state_set(automation, key, value))
            .await
    }

    async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        self.call("prune", self.inner.prune(before)).await
    }

    async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        self.call("prune_deliveries", self.inner.prune_deliveries(before)).await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.call("stats", self.inner.stats()).await
    }

    async fn session_create(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        self.call("session_create", self.inner.session_create(session)).await
    }

    async fn session_get(&self, id_sha256: &str) -> Result<Option<ConsoleSession>, StoreError> {
        self.call("session_get", self.inner.session_get(id_sha256)).await
    }

    async fn session_touch(&self, id_sha256: &str, at: i64) -> Result<(), StoreError> {
        self.call("session_touch", self.inner.session_touch(id_sha256, at))
            .await
    }

    async fn session_delete(&self, id_sha256: &str) -> Result<(), StoreError> {
        self.call("session_delete", self.inner.session_delete(id_sha256)).await
    }

    async fn session_prune(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        self.call("session_prune", self.inner.session_prune(idle_before, created_before))
            .await
    }

    async fn changes_since(&self, automation: Option<&str>, since_ms: i64) -> Result<u64, StoreError> {
        self.call("changes_since", self.inner.changes_since(automation, since_ms))
            .await
    }

    async fn backlog(&self, automation: &str) -> Result<Backlog, StoreError> {
        self.call("backlog", self.inner.backlog(automation)).await
    }

    async fn known_delivery(&self, automation: &str, keys: &[String]) -> Result<Option<String>, StoreError> {
        self.call("known_delivery", self.inner.known_delivery(automation, keys))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call("ping", self.inner.ping()).await
    }

    fn shared_budget(&self) -> Option<Arc<dyn runbook_core::http::SharedBudget>> {
        self.inner.shared_budget()
    }
}
