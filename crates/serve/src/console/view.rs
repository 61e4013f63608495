//! A run as the console shows it: its timeline from the journal with the targets' labels, its
//! plan grouped by action, its result as tables, its log and the people who acted on it. Built
//! from a run already redacted for readers.

use runbook_core::plan::{Identities, printable};
use runbook_core::{Effect, Engine, JournalEntry, PlannedChange, StepKind, StepStatus};
use serde::Serialize;
use serde_json::Value;

use crate::store::{RunRecord, RunStatus, RunSummary};

/// Rows of a result table shown at most.
const MAX_ROWS: usize = 200;
/// Columns of a result table shown at most.
const MAX_COLUMNS: usize = 8;
/// Characters of one cell shown at most.
const MAX_CELL: usize = 200;

/// `ms` as `2026-12-03 07:45:12 UTC`.
pub(super) fn time(ms: Option<i64>) -> Option<String> {
    let t = jiff::Timestamp::from_millisecond(ms?).ok()?;
    Some(t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// A span in a few characters: `340 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`.
pub(super) fn span(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

fn cut(text: &str, max: usize) -> String {
    let text = printable(text);
    if text.chars().count() <= max {
        return text;
    }
    let mut short: String = text.chars().take(max).collect();
    short.push('…');
    short
}

fn compact(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A run in a listing.
#[derive(Serialize)]
pub(super) struct RunRow {
    id: String,
    short_id: String,
    automation: String,
    status: &'static str,
    trigger: String,
    started_by: String,
    created: Option<String>,
    took: Option<String>,
    error: Option<String>,
}

/// The end of a run id: the start of a time-ordered id is the same for runs a minute apart.
fn short_id(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

impl RunRow {
    pub(super) fn of(r: &RunSummary) -> RunRow {
        let error = r
            .error
            .as_ref()
            .map(|e| compact(&crate::redact::redact_value(Value::String(e.clone()))))
            .map(|e| cut(&e, 140));
        RunRow {
            id: r.id.clone(),
            short_id: short_id(&r.id),
            automation: r.automation.clone(),
            status: r.status.as_str(),
            trigger: r.trigger.clone(),
            started_by: r.started_by.clone(),
            created: time(Some(r.created_at)),
            took: r.started_at.zip(r.finished_at).map(|(s, f)| span(f - s)),
            error,
        }
    }
}

/// One step of the timeline.
#[derive(Serialize)]
pub(super) struct StepRow {
    key: String,
    what: String,
    effect: &'static str,
    status: &'static str,
    targets: Vec<String>,
    args: String,
    started: Option<String>,
    took: Option<String>,
    attempt: u32,
    error: Option<String>,
    resolution: Option<String>,
    in_doubt: bool,
    gap_before: usize,
}

/// The namespace of `ns.action`.
fn namespace(action: &str) -> &str {
    action.split_once('.').map_or(action, |(ns, _)| ns)
}

/// Steps a timeline shows from its start, and from its end, when it has more than both.
const HEAD_STEPS: usize = 100;
const TAIL_STEPS: usize = 400;

/// The timeline: each journal step with the targets it named, labelled with what the run's own
/// reads said about them (as a plan labels them). A long one shows its first and last steps and
/// every step in doubt; `gap_before` counts the steps left out before a row.
pub(super) fn timeline(engine: &Engine, steps: &[JournalEntry], in_doubt_possible: bool) -> Vec<StepRow> {
    let identities = Identities::default();
    for step in steps {
        if step.kind == StepKind::Call
            && step.effect == Effect::Read
            && let Some(result) = &step.result
        {
            identities.learn(namespace(&step.action), result);
        }
    }
    let shown = |i: usize, step: &JournalEntry| {
        i < HEAD_STEPS || i + TAIL_STEPS >= steps.len() || step.status == StepStatus::Intent
    };
    let mut left_out = 0;
    steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| {
            if !shown(i, step) {
                left_out += 1;
                return None;
            }
            let gap_before = std::mem::take(&mut left_out);
            let what = match step.kind {
                StepKind::Call => step.action.clone(),
                StepKind::Now => "now()".to_owned(),
                StepKind::StateGet => format!("state::get {}", step.action),
                StepKind::StateSet => format!("state::set {}", step.action),
                StepKind::Parallel => "parallel".to_owned(),
            };
            let targets = if step.kind == StepKind::Call && step.effect != Effect::Read {
                let ids = engine
                    .registry()
                    .lookup(&step.action)
                    .map(|(_, spec)| spec.target_ids(&step.args))
                    .unwrap_or_default();
                identities
                    .label(namespace(&step.action), ids)
                    .iter()
                    .map(|t| cut(&t.display(), 120))
                    .collect()
            } else {
                Vec::new()
            };
            Some(StepRow {
                key: step.key.clone(),
                what,
                effect: step.effect.as_str(),
                status: step.status.as_str(),
                targets,
                args: cut(&compact(&step.args), 300),
                started: time(Some(step.started_at)),
                took: step.finished_at.map(|f| span(f - step.started_at)),
                attempt: step.attempt,
                error: step.error.as_ref().map(|e| cut(&e.message, 400)),
                resolution: step
                    .resolution
                    .map(|r| format!("{} by {}", r.as_str(), step.resolved_by.as_deref().unwrap_or("?"))),
                in_doubt: in_doubt_possible && step.status == StepStatus::Intent,
                gap_before,
            })
        })
        .collect()
}

/// The changes of one action in a plan.
#[derive(Serialize)]
pub(super) struct PlanGroup {
    action: String,
    effect: &'static str,
    changes: Vec<PlanChange>,
    /// Changes of this action past the ones shown.
    more: usize,
}

#[derive(Serialize)]
pub(super) struct PlanChange {
    step: String,
    targets: Vec<String>,
    args: String,
}

/// A plan's changes grouped by action, in the order each action first appears; a group shows
/// at most [`MAX_ROWS`] of them.
pub(super) fn plan_groups(effects: &[PlannedChange]) -> Vec<PlanGroup> {
    let mut groups: Vec<PlanGroup> = Vec::new();
    for change in effects {
        let row = PlanChange {
            step: change.step.clone(),
            targets: change.labels.iter().map(|t| cut(&t.display(), 120)).collect(),
            args: cut(&compact(&change.args), 300),
        };
        match groups.iter_mut().find(|g| g.action == change.action) {
            Some(group) if group.changes.len() >= MAX_ROWS => group.more += 1,
            Some(group) => group.changes.push(row),
            None => groups.push(PlanGroup {
                action: change.action.clone(),
                effect: change.effect.as_str(),
                changes: vec![row],
                more: 0,
            }),
        }
    }
    groups
}

/// A run's result (or any value) as people read it: a list of records as a table, one record
/// as fields, anything else as text.
#[derive(Serialize, Default)]
pub(super) struct Table {
    kind: &'static str,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    more: usize,
    text: String,
}

pub(super) fn table(value: Option<&Value>) -> Table {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Table {
            kind: "none",
            ..Table::default()
        };
    };
    match value {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let mut columns: Vec<String> = Vec::new();
            for item in items {
                for key in item.as_object().into_iter().flat_map(|o| o.keys()) {
                    if columns.len() < MAX_COLUMNS && !columns.contains(key) {
                        columns.push(key.clone());
                    }
                }
            }
            let rows = items
                .iter()
                .take(MAX_ROWS)
                .map(|item| {
                    columns
                        .iter()
                        .map(|c| cut(&compact(item.get(c).unwrap_or(&Value::Null)), MAX_CELL))
                        .collect()
                })
                .collect();
            Table {
                kind: "table",
                columns,
                rows,
                more: items.len().saturating_sub(MAX_ROWS),
                text: String::new(),
            }
        }
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => Table {
            kind: "table",
            columns: vec!["value".to_owned()],
            rows: items
                .iter()
                .take(MAX_ROWS)
                .map(|v| vec![cut(&compact(v), MAX_CELL)])
                .collect(),
            more: items.len().saturating_sub(MAX_ROWS),
            text: String::new(),
        },
        Value::Object(map) => Table {
            kind: "fields",
            columns: vec!["field".to_owned(), "value".to_owned()],
            rows: map
                .iter()
                .take(MAX_ROWS)
                .map(|(k, v)| vec![cut(k, 80), cut(&compact(v), MAX_CELL * 2)])
                .collect(),
            more: map.len().saturating_sub(MAX_ROWS),
            text: String::new(),
        },
        other => Table {
            kind: "text",
            text: cut(&pretty(other), 20_000),
            ..Table::default()
        },
    }
}

/// A line of the run's log.
#[derive(Serialize)]
pub(super) struct LogRow {
    at: String,
    level: String,
    message: String,
}

pub(super) fn log(logs: &Value) -> Vec<LogRow> {
    logs.as_array()
        .into_iter()
        .flatten()
        .take(2000)
        .map(|line| LogRow {
            at: compact(line.get("at").unwrap_or(&Value::Null)),
            level: compact(line.get("level").unwrap_or(&Value::Null)),
            message: cut(&compact(line.get("message").unwrap_or(&Value::Null)), 2000),
        })
        .collect()
}

/// Who did what to the run.
#[derive(Serialize)]
pub(super) struct Act {
    who: String,
    what: String,
    when: Option<String>,
    comment: Option<String>,
}

/// A run's whole page.
#[derive(Serialize)]
pub(super) struct RunPage {
    id: String,
    automation: String,
    status: &'static str,
    is_final: bool,
    trigger: String,
    attempts: u32,
    max_retries: u32,
    created: Option<String>,
    started: Option<String>,
    finished: Option<String>,
    took: Option<String>,
    error: Option<String>,
    error_kind: Option<String>,
    retry_of: Option<String>,
    params: String,
    event: Option<String>,
    steps: Vec<StepRow>,
    plan: Option<PlanView>,
    result: Table,
    log: Vec<LogRow>,
    people: Vec<Act>,
}

/// A plan waiting for (or given) approval.
#[derive(Serialize)]
pub(super) struct PlanView {
    effects_sha256: String,
    total_targets: u64,
    changes: usize,
    groups: Vec<PlanGroup>,
    made: String,
    round: u32,
    expires: Option<String>,
    approvals_this_round: usize,
    diff: Option<String>,
}

impl RunPage {
    pub(super) fn of(engine: &Engine, run: &RunRecord) -> RunPage {
        let mut people = vec![Act {
            who: run.started_by.clone(),
            what: match &run.retry_of {
                Some(first) => format!("retried run {first}"),
                None => format!("started it ({})", run.trigger),
            },
            when: time(Some(run.created_at)),
            comment: None,
        }];
        let plan = run.approval.as_ref().map(|a| {
            for decision in &a.approvals {
                people.push(Act {
                    who: decision.approver.clone(),
                    what: format!(
                        "{} the plan (round {})",
                        match decision.decision {
                            crate::store::Decision::Approve => "approved",
                            crate::store::Decision::Reject => "rejected",
                        },
                        decision.round
                    ),
                    when: time(Some(decision.at)),
                    comment: Some(decision.comment.clone()).filter(|c| !c.is_empty()),
                });
            }
            PlanView {
                effects_sha256: a.plan.effects_sha256.clone(),
                total_targets: a.plan.total_targets,
                changes: a.plan.effects.len(),
                groups: plan_groups(&a.plan.effects),
                made: a
                    .plan
                    .created_at
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|t| time(Some(t.as_millisecond())))
                    .unwrap_or_else(|| a.plan.created_at.clone()),
                round: a.round,
                expires: time(a.expires_at),
                approvals_this_round: a
                    .approvals
                    .iter()
                    .filter(|d| d.round == a.round && d.decision == crate::store::Decision::Approve)
                    .count(),
                diff: a.diff.as_ref().map(pretty),
            }
        });
        for step in &run.steps {
            if let Some(by) = &step.resolved_by {
                people.push(Act {
                    who: by.clone(),
                    what: format!(
                        "said step {} ({}) was {}",
                        step.key,
                        step.action,
                        step.resolution.map_or("resolved", |r| r.as_str())
                    ),
                    when: None,
                    comment: None,
                });
            }
        }
        if let Some(by) = &run.cancelled_by {
            people.push(Act {
                who: by.clone(),
                what: "cancelled it".to_owned(),
                when: time(run.finished_at),
                comment: None,
            });
        }
        RunPage {
            id: run.id.clone(),
            automation: run.automation.clone(),
            status: run.status.as_str(),
            is_final: run.status.is_final(),
            trigger: run.trigger.clone(),
            attempts: run.attempts,
            max_retries: run.max_retries,
            created: time(Some(run.created_at)),
            started: time(run.started_at),
            finished: time(run.finished_at),
            took: run.started_at.zip(run.finished_at).map(|(s, f)| span(f - s)),
            error: run.error.as_ref().map(|e| cut(e, 4000)),
            error_kind: run.error_kind.clone(),
            retry_of: run.retry_of.clone(),
            params: pretty(&Value::Object(run.params.clone())),
            event: run.event.as_ref().map(|e| cut(&pretty(e), 20_000)),
            steps: timeline(engine, &run.steps, run.status == RunStatus::NeedsAttention),
            plan,
            result: table(run.result.as_ref()),
            log: log(&run.logs),
            people,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_list_of_records_is_a_table_and_one_record_is_its_fields() {
        let rows = table(Some(&json!([{"email": "a@x", "id": 1}, {"email": "b@x", "mfa": true}])));
        assert_eq!(rows.kind, "table");
        assert_eq!(rows.columns, ["email", "id", "mfa"]);
        assert_eq!(rows.rows[1], ["b@x", "", "true"]);
        let fields = table(Some(&json!({"flagged": 3, "users": ["a", "b"]})));
        assert_eq!(fields.kind, "fields");
        assert_eq!(fields.rows[1], ["users", r#"["a","b"]"#]);
        assert_eq!(table(Some(&json!(null))).kind, "none");
        assert_eq!(table(Some(&json!("done"))).kind, "text");
        let long: Vec<_> = (0..MAX_ROWS + 5).map(|i| json!({ "i": i })).collect();
        assert_eq!(table(Some(&Value::Array(long))).more, 5);
    }

    #[test]
    fn a_plan_is_grouped_by_action_and_a_big_group_is_cut() {
        let change = |step: usize, action: &str| PlannedChange {
            step: step.to_string(),
            action: action.to_owned(),
            effect: Effect::Destructive,
            targets: 1,
            labels: vec![runbook_core::TargetRef {
                id: format!("u{step}"),
                label: Some(format!("user{step}@x\u{202e}")),
            }],
            args: json!({ "user_id": format!("u{step}") }),
            args_sha256: String::new(),
        };
        let mut effects: Vec<_> = (0..MAX_ROWS + 2).map(|i| change(i, "cf.delete_user")).collect();
        effects.insert(1, change(999, "px.reset_mfa"));
        let groups = plan_groups(&effects);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].action.as_str(), groups[0].changes.len(), groups[0].more),
            ("cf.delete_user", MAX_ROWS, 2)
        );
        assert_eq!(groups[1].changes[0].step, "999");
        assert!(
            !groups[0].changes[0].targets[0].contains('\u{202e}'),
            "a label cannot reorder the text around it: {}",
            groups[0].changes[0].targets[0]
        );
    }
}
