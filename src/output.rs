//! What goes to stdout: the result, pretty or as one JSON document.

use std::fmt::Write as _;

use runbook_core::{AuditRecord, CallOutcome, PlannedChange, RunError, RunErrorKind, RunOutcome};
use serde_json::{Value, json};

use crate::cli::OutputFormat;

/// The status word of a finished run.
fn status_of(kind: Option<RunErrorKind>) -> &'static str {
    match kind {
        None => "succeeded",
        Some(RunErrorKind::Guard) => "refused",
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
            "calls": o.records.calls,
        }),
        Err(e) => json!({
            "run_id": e.run_id,
            "status": status_of(Some(e.kind)),
            "result": Value::Null,
            "planned_changes": e.records.planned_changes,
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

/// Renders a finished run for stdout.
pub fn render(outcome: Result<&RunOutcome, &RunError>, plan: bool, format: OutputFormat) -> String {
    let text = match format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&document(outcome)).unwrap_or_default();
            s.push('\n');
            s
        }
        OutputFormat::Pretty => pretty(outcome, plan),
    };
    runbook_core::redact(&text).into_owned()
}

fn pretty(outcome: Result<&RunOutcome, &RunError>, plan: bool) -> String {
    let mut out = String::new();
    let (planned, result) = match outcome {
        Ok(o) => (&o.records.planned_changes, Some(&o.result)),
        Err(e) => (&e.records.planned_changes, None),
    };
    if plan {
        if result.is_none() {
            out.push_str("The run failed before it finished (see stderr); what it planned until then:\n");
        }
        out.push_str(&plan_text(planned));
    }
    if let Some(result) = result
        && !result.is_null()
    {
        if plan {
            out.push_str("\nResult (with planned changes not applied):\n");
        }
        out.push_str(&value_text(result));
        out.push('\n');
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

/// The list of planned changes.
pub fn plan_text(planned: &[PlannedChange]) -> String {
    let mut out = String::new();
    if planned.is_empty() {
        out.push_str("Plan: no changes. Nothing was sent.\n");
        return out;
    }
    let targets: u64 = planned.iter().map(|c| c.targets).sum();
    let _ = writeln!(
        out,
        "Plan: {} change(s) touching {} target(s). Nothing was sent.",
        planned.len(),
        targets
    );
    for (i, change) in planned.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>3}. {:<28} {:<11} targets: {:<3} {}",
            i + 1,
            change.action,
            change.effect.as_str(),
            change.targets,
            compact(&change.args)
        );
    }
    out
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A value for people: a report (a map) as its scalars, then a table per list of records; a
/// list of records as one table; anything else as indented JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(map) => report_text(map, 0),
        Value::Array(items) if is_records(items) => table(items),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn is_records(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn report_text(map: &serde_json::Map<String, Value>, depth: usize) -> String {
    let indent = "  ".repeat(depth);
    let mut out = String::new();
    let width = map.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in map.iter().filter(|(_, v)| is_scalar(v)) {
        let _ = writeln!(out, "{indent}{key:<width$}  {}", cell(value));
    }
    for (key, value) in map.iter().filter(|(_, v)| !is_scalar(v)) {
        match value {
            Value::Array(items) if items.is_empty() => {
                let _ = writeln!(out, "{indent}{key:<width$}  none");
            }
            Value::Array(items) if is_records(items) => {
                let _ = writeln!(out, "\n{indent}{key} ({}):", items.len());
                for line in table(items).lines() {
                    let _ = writeln!(out, "{indent}{line}");
                }
            }
            Value::Array(items) if items.iter().all(is_scalar) => {
                let _ = writeln!(out, "\n{indent}{key} ({}):", items.len());
                for item in items {
                    let _ = writeln!(out, "{indent}  - {}", cell(item));
                }
            }
            Value::Object(inner) => {
                let _ = writeln!(out, "\n{indent}{key}:");
                out.push_str(&report_text(inner, depth + 1));
            }
            other => {
                let _ = writeln!(out, "{indent}{key:<width$}  {}", cell(other));
            }
        }
    }
    out.trim_end_matches('\n').to_owned() + "\n"
}

/// One table for a list of records; columns in the order keys first appear.
fn table(rows: &[Value]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        if let Value::Object(map) = row {
            for key in map.keys() {
                if !columns.contains(&key.as_str()) {
                    columns.push(key);
                }
            }
        }
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(columns.iter().copied());
    for row in rows {
        t.add_row(columns.iter().map(|c| row.get(*c).map(cell).unwrap_or_default()));
    }
    t.to_string()
}

/// One value in a cell: strings bare, `()` empty, short lists joined, the rest compact JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(is_scalar) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => compact(other),
    }
}
