//! Runs of automations with `approval`: the plan attempt that ends waiting for approvers, and
//! the attempt that applies exactly the approved plan (or, when the services changed since,
//! makes a fresh plan that waits again).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use runbook_core::plan::{clock_of, replayable};
use runbook_core::{Expectation, MemoryJournal, RunError, RunOptions, RunOutcome, SavedPlan};
use serde_json::Value;

use crate::config::{ApprovalRule, Automation};
use crate::store::{ClaimedRun, Completion, PendingPlan, RunStatus};
use crate::worker::{Attempt, Pool};

/// The first attempt of a run of an automation with `approval`: plans (reads for real, sends
/// nothing) and, when the plan changes something, ends the attempt waiting for approval
/// (`None`). A plan that changes nothing, or that failed, is the run's outcome.
#[allow(clippy::too_many_arguments)] // the attempt's pieces, as the worker holds them
pub(crate) async fn plan(
    pool: &Pool,
    run: &ClaimedRun,
    attempt: &Attempt,
    automation: &Automation,
    rule: &ApprovalRule,
    script: &str,
    options: RunOptions,
    started: Instant,
) -> Option<Result<RunOutcome, RunError>> {
    tracing::info!(run_id = %run.id, automation = %run.automation, attempt = run.attempt, "planning for approval");
    let memory = Arc::new(MemoryJournal::new());
    let planned = pool
        .engine
        .run(script, options.plan(true).journal(memory.clone()))
        .await;
    // A plan past the daily budget goes to the approvers rather than being refused: a person may
    // let it past (an approved plan is applied whatever the budget; protected targets stay so).
    let over_budget = match &planned {
        Err(e) if crate::policy::is_budget_refusal(e.kind) => Some(e.message.clone()),
        _ => None,
    };
    let records = match &planned {
        Ok(o) => Some(&o.records),
        Err(e) if over_budget.is_some() => Some(&e.records),
        Err(_) => None,
    };
    // Nothing to change (or a plan that failed): no one needs to approve it.
    let Some(records) = records.filter(|r| !r.planned_changes.is_empty()) else {
        return Some(planned);
    };
    let plan = SavedPlan::new(
        automation.script.display().to_string(),
        script,
        run.params.clone(),
        automation.max_changes,
        records.planned_changes.clone(),
        clock_of(&memory.entries()),
    );
    let mut logs = serde_json::to_value(&records.logs).unwrap_or_default();
    if let (Some(message), Value::Array(lines)) = (&over_budget, &mut logs) {
        lines.push(serde_json::json!({
            "at": jiff::Timestamp::now().to_string(),
            "level": "warn",
            "message": format!(
                "{message}: the plan waits for approval instead, and once approved it is applied past the budget"
            ),
        }));
    }
    let pending = PendingPlan {
        plan,
        expires_in: rule.expires,
        diff: None,
        logs,
        calls: serde_json::to_value(&records.audit).unwrap_or_default(),
    };
    wait(pool, run, attempt, automation, pending, started).await;
    None
}

/// What an attempt at an approved run came to.
pub(crate) enum Applied {
    /// It ran (the apply, or a plan that failed).
    Ran(Result<RunOutcome, RunError>),
    /// The services changed since the approval: a fresh plan waits for approval again.
    Waiting(Box<PendingPlan>),
    /// The store did not give what the apply needs; nothing was sent.
    Unavailable(String),
}

/// Applies a run's approved plan as `runbook apply` does: re-plans with the plan's `now()`
/// values and fresh reads, and when the effects are the approved ones, runs for real replaying
/// that re-plan's reads (written to the run's journal first, so that a resumed attempt replays
/// them too) and sending only the approved effects. An attempt that finds the journal already
/// written is a resume: it replays it under the same expectation.
pub(crate) async fn apply(
    pool: &Pool,
    run: &ClaimedRun,
    automation: &Automation,
    script: &str,
    options: RunOptions,
    journal: Arc<dyn runbook_core::Journal>,
) -> Applied {
    let record = match pool.store.get(&run.id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Applied::Unavailable(format!("run {} is no longer in the store", run.id)),
        Err(e) => return Applied::Unavailable(format!("could not read the run's approved plan: {e}")),
    };
    let Some(approved) = record.approval.map(|a| a.plan) else {
        return Applied::Unavailable("the run was approved, and its plan is missing from the store".to_owned());
    };
    let expect = Arc::new(Expectation::new(approved.effects.clone()));
    let recorded = match journal.load().await {
        Ok(entries) => entries,
        Err(e) => return Applied::Unavailable(format!("could not read the run's journal: {e}")),
    };
    if !recorded.is_empty() {
        return Applied::Ran(pool.engine.run(script, options.journal(journal).expect(expect)).await);
    }
    let memory = Arc::new(MemoryJournal::new());
    for entry in approved.clock_entries() {
        memory.put(entry);
    }
    let fresh = match pool
        .engine
        .run(script, options.clone().plan(true).journal(memory.clone()))
        .await
    {
        Ok(fresh) => fresh,
        Err(e) => return Applied::Ran(Err(e)),
    };
    let effects = fresh.records.planned_changes.clone();
    let diff = approved.diff(&effects);
    let changed = approved.verify(script, &run.params).err();
    if changed.is_none() && diff.is_empty() {
        let seeds = replayable(&memory.entries());
        if let Err(e) = journal.write_batch(&seeds, None).await {
            return Applied::Unavailable(format!("could not write the plan's reads to the run's journal: {e}"));
        }
        return Applied::Ran(pool.engine.run(script, options.journal(journal).expect(expect)).await);
    }
    tracing::warn!(
        run_id = %run.id,
        added = diff.added.len(),
        removed = diff.removed.len(),
        changed = diff.changed.len(),
        "the services changed since the plan was approved: nothing was sent; the fresh plan waits for approval"
    );
    let mut text = runbook_core::redact(&diff.text()).into_owned();
    if let Some(changed) = changed {
        // Another runbook (an upgrade between the plan and its approval): plans are compared by
        // the engine that made them.
        text.insert_str(0, &format!("  ({changed})\n"));
    }
    let plan = SavedPlan::new(
        automation.script.display().to_string(),
        script,
        run.params.clone(),
        automation.max_changes,
        effects,
        clock_of(&memory.entries()),
    );
    Applied::Waiting(Box::new(PendingPlan {
        plan,
        expires_in: automation
            .approval
            .as_ref()
            .map_or(crate::config::DEFAULT_APPROVAL_EXPIRY, |r| r.expires),
        diff: Some(serde_json::json!({
            "added": diff.added.len(),
            "removed": diff.removed.len(),
            "changed": diff.changed.len(),
            "text": text,
        })),
        logs: serde_json::to_value(&fresh.records.logs).unwrap_or_default(),
        calls: serde_json::to_value(&fresh.records.audit).unwrap_or_default(),
    }))
}

/// An attempt that could not read or write what the apply needs: retried like a store outage.
pub(crate) fn unavailable(
    run: &ClaimedRun,
    automation: &Automation,
    message: String,
    backoff: fn(Duration, u32) -> Duration,
) -> Completion {
    let retry_at = (run.attempt <= run.max_retries).then(|| {
        let delay = backoff(automation.retry_delay, run.attempt);
        jiff::Timestamp::now().as_millisecond() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)
    });
    Completion {
        status: RunStatus::Failed,
        result: None,
        error: Some(format!("{message}; nothing was sent")),
        error_kind: Some("store_unavailable".to_owned()),
        logs: Value::Array(Vec::new()),
        calls: Value::Array(Vec::new()),
        retry_at,
    }
}

/// Ends the attempt with its plan waiting for approval, holding no lease and no slot, and tells
/// the automation's `notify` URL.
pub(crate) async fn wait(
    pool: &Pool,
    run: &ClaimedRun,
    attempt: &Attempt,
    automation: &Automation,
    pending: PendingPlan,
    started: Instant,
) {
    let effects = pending.plan.effects.clone();
    let digest = pending.plan.effects_sha256.clone();
    let diff = pending.diff.clone();
    let mut delay = Duration::from_millis(100);
    let accepted = loop {
        match pool
            .store
            .await_approval(&pool.owner, &run.id, run.epoch, pending.clone())
            .await
        {
            Err(e) if attempt.fence.may_send() && !attempt.lost.load(Ordering::SeqCst) => {
                pool.metrics.store_error("await_approval");
                tracing::warn!(error = %e, run_id = %run.id, "could not record the plan for approval; trying again");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = attempt.cancel.cancelled() => break Err(e),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => break other,
        }
    };
    pool.ended(&run.id);
    match accepted {
        Ok(true) => {
            let targets: u64 = effects.iter().map(|e| e.targets).sum();
            pool.metrics.run_finished(
                &run.automation,
                RunStatus::AwaitingApproval.as_str(),
                started.elapsed().as_secs_f64(),
            );
            tracing::info!(run_id = %run.id, automation = %run.automation, changes = effects.len(), targets, effects_sha256 = %digest, "the plan waits for approval");
            if let Some(url) = &automation.notify {
                let rule = automation.approval.as_ref();
                let notice = serde_json::json!({
                    "event": if diff.is_some() { "plan_changed" } else { "awaiting_approval" },
                    "run_id": run.id,
                    "automation": run.automation,
                    "status": RunStatus::AwaitingApproval.as_str(),
                    "changes": effects.len(),
                    "targets": targets,
                    "effects_sha256": digest,
                    "effects": crate::notify::effects(&effects),
                    "diff": diff,
                    "approvers": rule.map(|r| r.approvers.clone()),
                    "required": rule.map(|r| r.required),
                    "expires_in": rule.map(|r| humantime::format_duration(r.expires).to_string()),
                    "approve": format!("runbook runs approve {}", run.id),
                });
                pool.notifier.send(&run.automation, url, notice);
            }
        }
        Ok(false) => {
            pool.metrics.lease_lost(&run.automation);
            tracing::warn!(run_id = %run.id, "the run's lease was lost before its plan was recorded; another attempt owns it")
        }
        Err(e) => {
            pool.metrics.store_error("await_approval");
            tracing::error!(error = %e, run_id = %run.id, "could not record the plan for approval; its lease will lapse and the run plan again");
        }
    }
}
