//! `[policy]` in serve: a run's protected targets, and the daily budgets (across automations,
//! and the automation's own) less what the store's journals show was changed in the last 24
//! hours.
//!
//! A run the budget refuses ends `refused` with the error kind `budget`: an automation with
//! approvers may route such runs to a person instead (see [`is_budget_refusal`]).

use std::sync::Arc;

use runbook_core::{Budget, ChangeCount, RunErrorKind, RunOptions};

use crate::config::{Automation, ServeConfig};
use crate::store::Store;

/// How far back the daily budgets count.
pub(crate) const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// `options` under the policy: protected targets, and each budget with what the runs recorded in
/// the store used of it. `Err`: the store could not count (the run must not go on without it).
pub(crate) async fn governed(
    options: RunOptions,
    config: &ServeConfig,
    automation: &Automation,
    store: &Arc<dyn Store>,
) -> Result<RunOptions, String> {
    let mut options = options;
    let policy = &config.policy;
    if !policy.protect.is_empty() {
        options = options.policy(policy.protect.clone());
    }
    let counter = |scope: Option<String>| {
        Arc::new(StoreCount {
            store: store.clone(),
            automation: scope,
        })
    };
    if let Some(cap) = policy.max_changes_per_day {
        let counter = counter(None);
        let used = counter.count().await.map_err(|e| format!("{e}; nothing was sent"))?;
        options = options.budget(
            Budget::new(
                cap,
                used,
                "today's budget across every automation",
                format!("max_changes_per_day in [policy] of {}", config.file.display()),
            )
            .recounted(counter),
        );
    }
    if let Some(cap) = automation.max_changes_per_day {
        let counter = counter(Some(automation.name.clone()));
        let used = counter.count().await.map_err(|e| format!("{e}; nothing was sent"))?;
        options = options.budget(
            Budget::new(
                cap,
                used,
                format!("today's budget of automation \"{}\"", automation.name),
                format!(
                    "max_changes_per_day of automation \"{}\" in runbook.toml",
                    automation.name
                ),
            )
            .recounted(counter),
        );
    }
    Ok(options)
}

/// The changes the store's journals hold for the last 24 hours, counted again before each change:
/// runs going at the same time, on this instance or another, see each other's changes.
struct StoreCount {
    store: Arc<dyn Store>,
    automation: Option<String>,
}

#[async_trait::async_trait]
impl ChangeCount for StoreCount {
    async fn count(&self) -> Result<u64, String> {
        let since = jiff::Timestamp::now().as_millisecond().saturating_sub(WINDOW_MS);
        self.store
            .changes_since(self.automation.as_deref(), since)
            .await
            .map_err(|e| format!("cannot count the changes of the last 24 hours for the daily budget ({e})"))
    }
}

/// Whether a run ended refused by a daily budget: the hook where a run could wait for a person
/// instead.
#[allow(dead_code)] // the approvals' hook
pub(crate) fn is_budget_refusal(kind: RunErrorKind) -> bool {
    kind == RunErrorKind::Budget
}
