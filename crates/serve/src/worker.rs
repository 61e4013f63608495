//! Workers: claim queued runs under a lease, run them, keep their leases alive, record how
//! they ended, and schedule retries.
//!
//! Each attempt runs its run's pinned script with the run's journal (so an attempt after a
//! crash resumes instead of repeating changes) under a [`Fence`]: the attempt sends no change
//! once its lease may have lapsed, and an attempt whose heartbeat was not renewed (the run was
//! re-queued or claimed again) is cancelled at once.
//!
//! A run of an automation with `approval` goes through [`crate::approval`]: its first attempt
//! plans and waits for approvers; the attempt after their approval applies exactly that plan.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use runbook_core::{Engine, Fence, RunErrorKind, RunOptions, SettingNames};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::approval::{self, Applied};
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::{AutomationState, ClaimedRun, Completion, RunStatus, Store};

/// What every worker shares.
pub(crate) struct Pool {
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    pub config: Arc<ServeConfig>,
    pub metrics: Arc<Metrics>,
    /// This instance's lease owner id.
    pub owner: String,
    /// Told when a run is queued locally, so an idle worker starts it at once.
    pub wake: Arc<Notify>,
    /// Cancelled when shutdown begins: no new claims.
    pub stop_claiming: CancellationToken,
    /// Cancelled when the grace period is over: running runs are stopped and re-queued.
    pub abort_runs: CancellationToken,
    /// Tells automations' `notify` URLs.
    pub notifier: Notifier,
    in_flight: Mutex<BTreeMap<String, Held>>,
}

/// An attempt this instance holds.
struct Held {
    epoch: u64,
    automation: String,
    fence: Arc<Fence>,
    /// Cancels the attempt alone (a child of `abort_runs`).
    cancel: CancellationToken,
    /// Set when a heartbeat found the lease gone: the attempt records nothing.
    lost: Arc<AtomicBool>,
    /// Stops the attempt gently (no new step; calls in flight finish and are journaled) when a
    /// person cancels the run.
    interrupt: CancellationToken,
    /// Set when a heartbeat learned that a person cancelled the run.
    cancelling: Arc<AtomicBool>,
}

impl Pool {
    pub fn new(
        store: Arc<dyn Store>,
        engine: Engine,
        config: Arc<ServeConfig>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            store,
            engine,
            config,
            metrics,
            owner: format!("runbook-{}", uuid::Uuid::new_v4()),
            wake,
            stop_claiming: CancellationToken::new(),
            abort_runs: CancellationToken::new(),
            notifier: Notifier::new(),
            in_flight: Mutex::new(BTreeMap::new()),
        })
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the attempt of run `id`: it has ended (its heartbeats stop).
    pub(crate) fn ended(&self, id: &str) {
        self.in_flight().remove(id);
    }
}

/// The claim loop: runs until shutdown begins, then waits for the runs it started (which the
/// grace period bounds through `abort_runs`).
pub(crate) async fn run(pool: Arc<Pool>) {
    let settings = &pool.config.settings;
    let permits = Arc::new(Semaphore::new(settings.workers));
    let concurrency: BTreeMap<String, usize> = pool.config.concurrency();
    let mut tasks = JoinSet::new();
    let heartbeat = tokio::spawn(heartbeats(pool.clone()));
    loop {
        if pool.stop_claiming.is_cancelled() {
            break;
        }
        let free = permits.available_permits();
        let mut claimed_any = false;
        if free > 0 {
            // A lease runs from the claim's commit, which is after this: its fence counts from here.
            let claim_sent = Instant::now();
            match pool.store.claim(&pool.owner, &concurrency, free, settings.lease).await {
                Ok(runs) => {
                    claimed_any = !runs.is_empty();
                    for run in runs {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let lease = settings.lease;
                        let held = Held {
                            epoch: run.epoch,
                            automation: run.automation.clone(),
                            fence: Arc::new(Fence::renewed_at(claim_sent, lease, lease / 4)),
                            cancel: pool.abort_runs.child_token(),
                            lost: Arc::new(AtomicBool::new(false)),
                            interrupt: CancellationToken::new(),
                            cancelling: Arc::new(AtomicBool::new(false)),
                        };
                        let attempt = Attempt {
                            fence: held.fence.clone(),
                            cancel: held.cancel.clone(),
                            lost: held.lost.clone(),
                            interrupt: held.interrupt.clone(),
                            cancelling: held.cancelling.clone(),
                        };
                        pool.in_flight().insert(run.id.clone(), held);
                        let pool = pool.clone();
                        tasks.spawn(async move {
                            execute(&pool, run, attempt).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    pool.metrics.store_error("claim");
                    tracing::error!(error = %e, "could not claim runs");
                }
            }
        }
        if claimed_any && permits.available_permits() > 0 {
            continue;
        }
        tokio::select! {
            () = pool.stop_claiming.cancelled() => break,
            () = pool.wake.notified() => {}
            () = tokio::time::sleep(settings.poll_interval) => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    heartbeat.abort();
}

/// What one attempt's task shares with the heartbeat loop.
pub(crate) struct Attempt {
    pub fence: Arc<Fence>,
    pub cancel: CancellationToken,
    pub lost: Arc<AtomicBool>,
    interrupt: CancellationToken,
    cancelling: Arc<AtomicBool>,
}

/// Renews the leases of every run this instance holds, a few times per lease. A renewal moves
/// the attempt's fence to the moment the heartbeat was sent; an attempt whose lease was not
/// renewed has lost its run and is cancelled at once. A heartbeat that fails renews nothing:
/// the fences close on their own when the lease may have lapsed.
async fn heartbeats(pool: Arc<Pool>) {
    let lease = pool.config.settings.lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        let held: Vec<(String, u64, String)> = pool
            .in_flight()
            .iter()
            .map(|(id, h)| (id.clone(), h.epoch, h.automation.clone()))
            .collect();
        if held.is_empty() {
            continue;
        }
        let sent = Instant::now();
        let runs: Vec<(String, u64)> = held.iter().map(|(id, epoch, _)| (id.clone(), *epoch)).collect();
        match pool.store.heartbeat(&pool.owner, &runs, lease).await {
            Ok(renewed) => {
                let in_flight = pool.in_flight();
                for (id, epoch, automation) in &held {
                    let Some(h) = in_flight.get(id).filter(|h| h.epoch == *epoch) else {
                        continue;
                    };
                    if renewed.contains(id) {
                        h.fence.renew(sent);
                    } else {
                        tracing::warn!(run_id = %id, "the run's lease was lost (it was queued again or claimed by another attempt); stopping this attempt");
                        pool.metrics.lease_lost(automation);
                        h.lost.store(true, Ordering::SeqCst);
                        h.cancel.cancel();
                    }
                }
            }
            Err(e) => {
                pool.metrics.store_error("heartbeat");
                tracing::error!(error = %e, "could not renew leases");
            }
        }
        // The same beat tells the attempts a person cancelled to stop.
        match pool.store.cancel_requested(&pool.owner).await {
            Ok(cancelled) => {
                let in_flight = pool.in_flight();
                for id in cancelled {
                    if let Some(h) = in_flight.get(&id)
                        && !h.cancelling.swap(true, Ordering::SeqCst)
                    {
                        tracing::info!(run_id = %id, "the run was cancelled; stopping it (calls in flight finish)");
                        h.interrupt.cancel();
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "could not read which runs were cancelled"),
        }
    }
}

/// Whether another attempt might succeed: not for mistakes in the script or its configuration,
/// not for the guard, not for a divergence or a change in doubt, not for a journal that is damaged
/// or full. A journal whose store did not answer is: the next attempt resumes from it.
fn retryable(kind: RunErrorKind) -> bool {
    matches!(
        kind,
        RunErrorKind::Action | RunErrorKind::Script | RunErrorKind::Timeout | RunErrorKind::StoreUnavailable
    )
}

/// The status of a run whose attempt ended with `kind` and is not retried.
fn final_status(kind: RunErrorKind) -> RunStatus {
    match kind {
        RunErrorKind::Guard | RunErrorKind::Policy | RunErrorKind::Budget => RunStatus::Refused,
        RunErrorKind::Diverged => RunStatus::Diverged,
        RunErrorKind::NeedsAttention => RunStatus::NeedsAttention,
        RunErrorKind::Stale => RunStatus::Stale,
        _ => RunStatus::Failed,
    }
}

/// The delay before retry `attempt` (1-based): `base`, doubling, at most an hour, ±20 %.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let doubled = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let capped = doubled.min(Duration::from_secs(3600));
    capped.mul_f64(rand::rng().random_range(0.8..1.2))
}

fn kind_name(kind: RunErrorKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "error".to_owned())
}

async fn execute(pool: &Pool, run: ClaimedRun, attempt: Attempt) {
    let started = Instant::now();
    let owner = pool.owner.clone();
    let Some(automation) = pool.config.automation(&run.automation) else {
        let completion = Completion {
            status: RunStatus::Failed,
            result: None,
            error: Some(format!("automation \"{}\" is no longer configured", run.automation)),
            error_kind: Some("config".to_owned()),
            logs: Value::Array(Vec::new()),
            calls: Value::Array(Vec::new()),
            retry_at: None,
        };
        finish(pool, &run, &attempt, completion, started).await;
        return;
    };
    // A run queued by a runbook older than the journal has no pinned script: it runs the
    // automation's script as it is now, as it would have then.
    let script = if run.script.is_empty() {
        &automation.source
    } else {
        &run.script
    };
    let mut options = RunOptions::new()
        .run_id(run.id.clone())
        .params(run.params.clone())
        .max_changes(automation.max_changes)
        .timeout(Some(automation.timeout))
        .cancel(attempt.cancel.clone())
        .interrupt(attempt.interrupt.clone())
        .fence(attempt.fence.clone())
        .names(SettingNames::new(
            format!("max_changes of automation \"{}\" in runbook.toml", automation.name),
            format!("timeout of automation \"{}\" in runbook.toml", automation.name),
            format!("params.{{name}} of automation \"{}\" in runbook.toml", automation.name),
        ))
        .state(Arc::new(AutomationState::new(pool.store.clone(), &automation.name)));
    if let Some(event) = run.event.clone() {
        options = options.event(event);
    }
    let options = match crate::policy::governed(options, &pool.config, automation, &pool.store).await {
        Ok(options) => options,
        Err(error) => {
            // Without the count the budget cannot be kept: the run waits for another attempt.
            let retry_at = (run.attempt <= run.max_retries).then(|| {
                let delay = backoff(automation.retry_delay, run.attempt);
                jiff::Timestamp::now().as_millisecond() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)
            });
            let completion = Completion {
                status: RunStatus::Failed,
                result: None,
                error: Some(error),
                error_kind: Some("store_unavailable".to_owned()),
                logs: Value::Array(Vec::new()),
                calls: Value::Array(Vec::new()),
                retry_at,
            };
            finish(pool, &run, &attempt, completion, started).await;
            return;
        }
    };
    let journal = pool.store.journal(&run.id, run.attempt, run.epoch);
    let outcome = if run.approved {
        tracing::info!(run_id = %run.id, automation = %run.automation, attempt = run.attempt, "applying the approved plan");
        // A person approved exactly these changes: the daily budget, which bounds what runs
        // unattended, does not hold them back (protected targets still do).
        let mut options = options;
        options.budgets.clear();
        match approval::apply(pool, &run, automation, script, options, journal).await {
            Applied::Ran(outcome) => outcome,
            Applied::Waiting(pending) => {
                approval::wait(pool, &run, &attempt, automation, *pending, started).await;
                return;
            }
            Applied::Unavailable(message) => {
                let completion = approval::unavailable(&run, automation, message, backoff);
                finish(pool, &run, &attempt, completion, started).await;
                return;
            }
        }
    } else if let Some(rule) = &automation.approval {
        match approval::plan(pool, &run, &attempt, automation, rule, script, options, started).await {
            Some(outcome) => outcome,
            None => return,
        }
    } else {
        tracing::info!(run_id = %run.id, automation = %run.automation, attempt = run.attempt, "run started");
        pool.engine.run(script, options.journal(journal)).await
    };

    let completion = match outcome {
        Ok(o) => {
            for call in &o.records.audit {
                record_call(pool, &call.action, &format!("{:?}", call.outcome).to_lowercase());
            }
            Completion {
                status: RunStatus::Succeeded,
                result: Some(o.result),
                error: None,
                error_kind: None,
                logs: serde_json::to_value(&o.records.logs).unwrap_or_default(),
                calls: serde_json::to_value(&o.records.audit).unwrap_or_default(),
                retry_at: None,
            }
        }
        Err(e) if e.kind == RunErrorKind::Fenced || attempt.lost.load(Ordering::SeqCst) => {
            // The lease is someone else's now (or may be): whatever this attempt says is not
            // to be recorded; the attempt that holds the run resumes from the journal.
            pool.in_flight().remove(&run.id);
            if !attempt.lost.load(Ordering::SeqCst) {
                // Its fence closed (heartbeats went unanswered): counted here, once.
                pool.metrics.lease_lost(&run.automation);
            }
            tracing::warn!(run_id = %run.id, error = %e.describe(), "this attempt lost the run's lease; it recorded nothing more");
            return;
        }
        Err(e)
            if attempt.cancelling.load(Ordering::SeqCst)
                && !pool.abort_runs.is_cancelled()
                && e.kind != RunErrorKind::NeedsAttention =>
        {
            // A person cancelled it: it stopped at a step's edge, its calls in flight journaled.
            Completion {
                status: RunStatus::Cancelled,
                result: None,
                error: Some(format!("cancelled while it ran ({})", e.describe())),
                error_kind: Some("cancelled".to_owned()),
                logs: serde_json::to_value(&e.records.logs).unwrap_or_default(),
                calls: serde_json::to_value(&e.records.audit).unwrap_or_default(),
                retry_at: None,
            }
        }
        Err(e) if e.kind == RunErrorKind::Cancelled && pool.abort_runs.is_cancelled() => {
            // Stopped by shutdown, not by its own doing: it runs again after the restart.
            pool.in_flight().remove(&run.id);
            match pool.store.release(&owner, &run.id, run.epoch).await {
                Ok(true) => tracing::warn!(run_id = %run.id, "run interrupted by shutdown; queued again"),
                Ok(false) => {
                    tracing::warn!(run_id = %run.id, "run interrupted by shutdown; its lease had already passed on")
                }
                Err(err) => {
                    tracing::error!(error = %err, run_id = %run.id, "could not put an interrupted run back in the queue")
                }
            }
            return;
        }
        Err(e) => {
            for call in &e.records.audit {
                record_call(pool, &call.action, &format!("{:?}", call.outcome).to_lowercase());
            }
            let status = final_status(e.kind);
            let retry_at = (retryable(e.kind) && run.attempt <= run.max_retries).then(|| {
                let delay = backoff(automation.retry_delay, run.attempt);
                jiff::Timestamp::now().as_millisecond() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)
            });
            Completion {
                status,
                result: None,
                error: Some(e.describe()),
                error_kind: Some(kind_name(e.kind)),
                logs: serde_json::to_value(&e.records.logs).unwrap_or_default(),
                calls: serde_json::to_value(&e.records.audit).unwrap_or_default(),
                retry_at,
            }
        }
    };
    finish(pool, &run, &attempt, completion, started).await;
}

/// Tells the automation's `notify` URL about a run that needs a person or stopped outside its
/// plan.
fn notify_ended(pool: &Pool, run: &ClaimedRun, status: RunStatus, error: Option<&str>) {
    if !matches!(
        status,
        RunStatus::NeedsAttention | RunStatus::Diverged | RunStatus::Stale
    ) {
        return;
    }
    let Some(url) = pool.config.automation(&run.automation).and_then(|a| a.notify.as_ref()) else {
        return;
    };
    let notice = serde_json::json!({
        "event": status.as_str(),
        "run_id": run.id,
        "automation": run.automation,
        "status": status.as_str(),
        "error": error,
        "show": format!("runbook runs show {}", run.id),
    });
    pool.notifier.send(&run.automation, url, notice);
}

fn record_call(pool: &Pool, action: &str, outcome: &str) {
    let provider = action.split('.').next().unwrap_or(action);
    pool.metrics.action_call(provider, outcome);
}

/// Records how the attempt ended. A store that fails is tried again with backoff while the
/// attempt's fence is open (the lease is surely still its own); once it closes, the run is left
/// to lease recovery, which queues it again.
async fn finish(pool: &Pool, run: &ClaimedRun, attempt: &Attempt, completion: Completion, started: Instant) {
    let retrying = completion.retry_at.is_some();
    let status = completion.status;
    let error = completion.error.clone();
    let mut delay = Duration::from_millis(100);
    let accepted = loop {
        match pool
            .store
            .complete(&pool.owner, &run.id, run.epoch, completion.clone())
            .await
        {
            Err(e) if attempt.fence.may_send() && !attempt.lost.load(Ordering::SeqCst) => {
                pool.metrics.store_error("complete");
                tracing::warn!(error = %e, run_id = %run.id, "could not record how the run ended; trying again");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = attempt.cancel.cancelled() => break Err(e),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => break other,
        }
    };
    pool.in_flight().remove(&run.id);
    match accepted {
        Ok(true) => {
            if retrying {
                tracing::warn!(run_id = %run.id, automation = %run.automation, attempt = run.attempt, error = ?error, "run failed; it will be retried");
            } else {
                pool.metrics
                    .run_finished(&run.automation, status.as_str(), started.elapsed().as_secs_f64());
                tracing::info!(run_id = %run.id, automation = %run.automation, status = status.as_str(), "run finished");
                notify_ended(pool, run, status, error.as_deref());
            }
        }
        Ok(false) => {
            pool.metrics.lease_lost(&run.automation);
            tracing::warn!(run_id = %run.id, "the run's lease was lost before it finished; another attempt owns it")
        }
        Err(e) => {
            pool.metrics.store_error("complete");
            pool.metrics.completion_failed(&run.automation);
            tracing::error!(
                error = %e,
                run_id = %run.id,
                "could not record how the run ended; its lease will lapse and the run be queued again, to resume from its journal"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(10);
        for (attempt, nominal) in [(1, 10.0), (2, 20.0), (3, 40.0)] {
            let d = backoff(base, attempt).as_secs_f64();
            assert!(d >= nominal * 0.8 && d <= nominal * 1.2, "attempt {attempt}: {d}");
        }
        assert!(backoff(base, 30) <= Duration::from_secs(4320));
    }

    #[test]
    fn divergence_and_doubt_stop_the_run_and_a_lost_journal_tries_again() {
        assert_eq!(final_status(RunErrorKind::Diverged), RunStatus::Diverged);
        assert_eq!(final_status(RunErrorKind::NeedsAttention), RunStatus::NeedsAttention);
        assert_eq!(final_status(RunErrorKind::Guard), RunStatus::Refused);
        assert!(!retryable(RunErrorKind::Diverged) && !retryable(RunErrorKind::NeedsAttention));
        assert!(!retryable(RunErrorKind::Fenced) && !retryable(RunErrorKind::Guard));
        assert!(retryable(RunErrorKind::StoreUnavailable));
        assert!(!retryable(RunErrorKind::Journal), "a damaged or full journal stays so");
    }
}
