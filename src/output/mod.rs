//! What goes to stdout: the result, pretty, as one JSON document, or as CSV.

mod csv;
mod table;

use std::fmt::Write as _;

use runbook_core::{AuditRecord, CallOutcome, PlannedChange, RunError, RunErrorKind, RunOutcome};
use serde_json::{Value, json};

use crate::cli::OutputFormat;

pub use csv::csv;
pub use table::{EMPTY, cell, value_text, width};

/// The status word of a finished run.
fn status_of(kind: Option<RunErrorKind>) -> &'static str {
    match kind {
        None => "succeeded",
        Some(RunErrorKind::Guard | RunErrorKind::Policy | RunErrorKind::Budget) => "refused",
        Some(RunErrorKind::Stale) => "stale",
        Some(RunErrorKind::Timeout) => "timed_out",
        Some(RunErrorKind::Cancelled) => "cancelled",
        Some(_) => "failed",
    }
}

/// The JSON document `--output json` prints.
pub fn document(outcome: Result<&RunOutcome, &RunError>) -> Value {
    match outcome {
        Ok(o) => json!({
            "run_id": o.run_id,
            "status": status_of(None),
            "result": o.result,
            "planned_changes": o.records.planned_changes,
            "planned_targets": o.records.planned_changes.iter().map(|c| c.targets).sum::<u64>(),
            "calls": o.records.calls,
        }),
        Err(e) => json!({
            "run_id": e.run_id,
            "status": status_of(Some(e.kind)),
            "result": Value::Null,
            "planned_changes": e.records.planned_changes,
            "planned_targets": e.records.planned_changes.iter().map(|c| c.targets).sum::<u64>(),
            "calls": e.records.calls,
            "error": {
                "kind": e.kind,
                "message": e.message,
                "line": e.position.map(|p| p.0),
                "column": e.position.map(|p| p.1),
            },
        }),
    }
}

/// Renders a finished run for stdout, fitted to `width` columns; every output ends with a
/// newline. `Err` says why the result cannot be shown as asked (`--output csv` of a result that
/// is not a list of records).
pub fn render(
    outcome: Result<&RunOutcome, &RunError>,
    plan: bool,
    format: OutputFormat,
    width: usize,
) -> Result<String, String> {
    let text = match format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&document(outcome)).unwrap_or_default();
            s.push('\n');
            s
        }
        OutputFormat::Pretty => pretty(outcome, plan, width),
        // A failed run has no result: its error goes to stderr.
        OutputFormat::Csv => match outcome {
            Ok(o) => csv(&o.result)?,
            Err(_) => String::new(),
        },
    };
    Ok(runbook_core::redact(&text).into_owned())
}

fn pretty(outcome: Result<&RunOutcome, &RunError>, plan: bool, width: usize) -> String {
    let mut out = String::new();
    let (planned, result) = match outcome {
        Ok(o) => (&o.records.planned_changes, Some(&o.result)),
        Err(e) => (&e.records.planned_changes, None),
    };
    if plan {
        // A plan past the guard's cap or the budget is whole: only other failures cut it short.
        match outcome {
            Err(e) if e.kind == RunErrorKind::Policy => out.push_str(
                "The policy refused a change (see stderr): the real run would be refused there; what the plan held \
                 before it:\n",
            ),
            Err(e) if !matches!(e.kind, RunErrorKind::Guard | RunErrorKind::Budget) => {
                out.push_str("The run failed before it finished (see stderr); what it planned until then:\n");
            }
            _ => {}
        }
        out.push_str(&plan_text(planned));
        // The change the policy refused, as the plan would have held it.
        if let Err(e) = outcome
            && e.kind == RunErrorKind::Policy
            && let Some(refused) = e.records.audit.iter().rev().find(|r| r.outcome == CallOutcome::Refused)
        {
            let args = serde_json::to_string(&refused.args).unwrap_or_default();
            let _ = writeln!(out, "  refused by the policy: {} {args}", refused.action);
        }
    }
    match result {
        // A plan is the output; a result adds to it only when there is one.
        Some(result) if plan && !table::is_empty(result) => {
            out.push_str("\nResult (with planned changes not applied):\n");
            out.push_str(&value_text(result, width));
        }
        Some(result) if !plan => out.push_str(&value_text(result, width)),
        _ => {}
    }
    out
}

/// For stderr after a real run: the changes it made (every call that changes something and
/// succeeded), so that even a run that failed half-way says what it already did. `None` when it
/// changed nothing.
pub fn applied_text(audit: &[AuditRecord], finished: bool) -> Option<String> {
    let applied: Vec<&AuditRecord> = audit
        .iter()
        .filter(|r| r.effect.is_mutating() && r.outcome == CallOutcome::Ok)
        .collect();
    if applied.is_empty() {
        return None;
    }
    let targets: u64 = applied.iter().map(|r| r.targets).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} change(s) touching {} target(s):",
        if finished {
            "Applied"
        } else {
            "Before it failed, the run applied"
        },
        applied.len(),
        targets
    );
    for (i, record) in applied.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>3}. {:<28} {:<11} targets: {:<3} {}",
            i + 1,
            record.action,
            record.effect.as_str(),
            record.targets,
            compact(&record.args)
        );
    }
    Some(runbook_core::redact(&out).into_owned())
}

/// The planned changes for people: grouped by action, each target with its label, and the full
/// total.
pub fn plan_text(planned: &[PlannedChange]) -> String {
    let mut out = String::new();
    if planned.is_empty() {
        out.push_str("Plan: no changes. Nothing was sent.\n");
        return out;
    }
    let targets: u64 = planned.iter().map(|c| c.targets).sum();
    let _ = writeln!(
        out,
        "Plan: {} change{} to {} target{}. Nothing was sent.",
        planned.len(),
        plural(planned.len() as u64),
        targets,
        plural(targets)
    );
    // Groups in the order their actions first appear.
    let mut groups: Vec<(&str, Vec<&PlannedChange>)> = Vec::new();
    for change in planned {
        match groups.iter_mut().find(|(action, _)| *action == change.action) {
            Some((_, list)) => list.push(change),
            None => groups.push((&change.action, vec![change])),
        }
    }
    for (action, list) in groups {
        let targets: u64 = list.iter().map(|c| c.targets).sum();
        let effect = list[0].effect.as_str();
        let _ = writeln!(
            out,
            "  {action} × {targets} target{} ({effect}, {} call{})",
            plural(targets),
            list.len(),
            plural(list.len() as u64)
        );
        for change in list {
            let rest = compact(&other_args(change));
            if change.labels.is_empty() {
                let _ = writeln!(out, "      step {:<6} {rest}", change.step);
                continue;
            }
            let first = &change.labels[0];
            let more = change.labels.len() > 1;
            if more || rest != "{}" {
                let line = format!(
                    "      step {:<6} {}",
                    change.step,
                    if rest == "{}" { String::new() } else { rest }
                );
                let _ = writeln!(out, "{}", line.trim_end());
                for target in &change.labels {
                    let _ = writeln!(out, "        - {}", target.display());
                }
            } else {
                let _ = writeln!(out, "      step {:<6} {}", change.step, first.display());
            }
        }
    }
    out
}

/// A change's arguments without those naming its targets (they are listed with their labels).
fn other_args(change: &PlannedChange) -> Value {
    let ids: Vec<&str> = change.labels.iter().map(|t| t.id.as_str()).collect();
    let names_targets = |v: &Value| match v {
        Value::String(s) => ids.contains(&s.as_str()),
        Value::Array(items) => !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(|s| ids.contains(&s))),
        _ => false,
    };
    match &change.args {
        Value::Object(map) if !ids.is_empty() => Value::Object(
            map.iter()
                .filter(|(_, v)| !names_targets(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
