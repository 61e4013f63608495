//! The console's pages (`GET`): each reads the store, and shows what its viewer may see and do.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::session::{Viewer, viewer};
use super::view::{RunPage, RunRow, time};
use super::{Page, page_error, redirect, render_part, store_down, viewer_error};
use crate::config::{Scope, Trigger};
use crate::redact::redacted;
use crate::server::{App, trigger_text};
use crate::store::{RunFilter, RunStatus};

/// Runs a listing shows at once.
const PAGE_SIZE: usize = 50;
/// Finished runs an automation's success rate is taken over.
const RATE_OVER: usize = 50;
/// Waiting runs of one automation "Waiting for me" reads at most.
const WAITING_MAX: usize = 500;
/// Waiting runs "Waiting for me" shows whole (with their plans) at most.
const WAITING_SHOWN: usize = 20;

/// The signed-in viewer, or the answer to give instead (the sign-in page; for the live part of
/// a page, 401 so that its script reloads the page and shows sign-in).
async fn signed_in(app: &App, headers: &HeaderMap) -> Result<Viewer, Response> {
    match viewer(app, headers).await? {
        Some(v) => Ok(v),
        None if fragment(headers) => Err(page_error(StatusCode::UNAUTHORIZED, "signed out")),
        None => Err(redirect("/sign-in")),
    }
}

/// Whether the request asks only for the live part of a page.
fn fragment(headers: &HeaderMap) -> bool {
    headers.get("x-console-fragment").is_some()
}

/// The short message a redirect after a form carries (`?notice=approved`): fixed texts, never
/// the query's own words.
fn notice_text(notice: Option<&str>) -> Option<&'static str> {
    Some(match notice? {
        "approved" => "Your approval is recorded.",
        "rejected" => "Your rejection is recorded; the run ends having sent nothing.",
        "retried" => "The run was queued again.",
        "cancelled" => "The run is cancelled (a running one stops at its next step).",
        "resolved" => "Your answer is recorded; the run is queued again.",
        "started" => "The run is queued.",
        _ => return None,
    })
}

/// The 403 page for a token without `scope`.
fn needs(viewer: &Viewer, scope: Scope, what: &str) -> Response {
    viewer_error(
        viewer,
        StatusCode::FORBIDDEN,
        &format!(
            "the token \"{}\" may not {what}: that needs a token with the {} scope",
            viewer.token.name,
            scope.as_str()
        ),
    )
}

/// The first page a token's scopes open: the runs, else what waits for its approval, else
/// the automations it may start.
pub(super) fn first_page(token: &crate::config::ApiToken) -> &'static str {
    if !token.allows(Scope::Read) && token.allows(Scope::Approve) {
        "/approvals"
    } else if !token.allows(Scope::Read) && token.allows(Scope::Run) {
        "/automations"
    } else {
        "/runs"
    }
}

/// `GET /`.
pub(super) async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match viewer(&app, &headers).await {
        Ok(Some(v)) => redirect(first_page(&v.token)),
        Ok(None) => redirect("/sign-in"),
        Err(page) => page,
    }
}

#[derive(Deserialize, Default)]
pub(super) struct RunsQuery {
    automation: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
}

/// A time a filter gives: RFC 3339, or what a `datetime-local` input sends (`2026-12-03T07:45`,
/// read as UTC).
fn filter_time(text: Option<&str>, name: &str) -> Result<Option<i64>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(Some(t.as_millisecond()));
    }
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| Some(z.timestamp().as_millisecond()))
        .ok_or_else(|| format!("{name} \"{text}\" is not a time; write e.g. 2026-12-03T07:45 (UTC)"))
}

#[derive(Serialize)]
struct Choice {
    value: String,
    selected: bool,
}

/// `GET /runs`: the runs, newest first, filtered by automation, status and time.
pub(super) async fn runs(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<RunsQuery>) -> Response {
    let viewer = match signed_in(&app, &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if !viewer.token.allows(Scope::Read) {
        return needs(&viewer, Scope::Read, "read run history");
    }
    let empty = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
    let automation = empty(&q.automation);
    let mut problems: Vec<String> = Vec::new();
    let status = match empty(&q.status).map(|s| s.parse::<RunStatus>()) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            problems.push(e.to_string());
            None
        }
    };
    let since = filter_time(q.since.as_deref(), "since").unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let until = filter_time(q.until.as_deref(), "until").unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let filter = RunFilter {
        automation: automation.clone(),
        status,
        limit: PAGE_SIZE,
        since,
        until,
        before: empty(&q.before),
    };
    let runs = match app.store.list_summaries(&filter).await {
        Ok(runs) => runs,
        Err(e) => return store_down(&e),
    };
    let rows: Vec<RunRow> = runs.iter().map(RunRow::of).collect();
    let older = (runs.len() == PAGE_SIZE).then(|| {
        let mut query = vec![("before", runs[runs.len() - 1].id.clone())];
        for (key, value) in [
            ("automation", &q.automation),
            ("status", &q.status),
            ("since", &q.since),
            ("until", &q.until),
        ] {
            if let Some(v) = empty(value) {
                query.push((key, v));
            }
        }
        format!("/runs?{}", serde_urlencoded::to_string(&query).unwrap_or_default())
    });
    let automations: Vec<Choice> = app
        .config
        .automations
        .iter()
        .map(|a| Choice {
            value: a.name.clone(),
            selected: automation.as_deref() == Some(a.name.as_str()),
        })
        .collect();
    let statuses: Vec<Choice> = RunStatus::ALL
        .iter()
        .map(|s| Choice {
            value: s.as_str().to_owned(),
            selected: status == Some(*s),
        })
        .collect();
    render_part(
        StatusCode::OK,
        "runs.html",
        minijinja::context! {
            page => Page::of("Runs", &viewer, "runs"),
            runs => rows,
            automations => automations,
            statuses => statuses,
            since => q.since.unwrap_or_default(),
            until => q.until.unwrap_or_default(),
            problems => problems,
            older => older,
            paged => filter.before.is_some(),
        },
        fragment(&headers),
    )
}

#[derive(Deserialize, Default)]
pub(super) struct NoticeQuery {
    notice: Option<String>,
}

/// What the viewer may do to a run in its state.
#[derive(Serialize, Default)]
struct Allowed {
    approve: bool,
    approve_why_not: Option<String>,
    retry: bool,
    cancel: bool,
    resolve: bool,
}

fn allowed(app: &App, viewer: &Viewer, run: &crate::store::RunRecord) -> Allowed {
    let token = &viewer.token;
    let mut allowed = Allowed {
        retry: token.allows(Scope::Run) && run.status.is_final() && run.status != RunStatus::AwaitingApproval,
        cancel: token.allows(Scope::Run)
            && matches!(
                run.status,
                RunStatus::Queued | RunStatus::Running | RunStatus::NeedsAttention | RunStatus::AwaitingApproval
            ),
        resolve: token.allows(Scope::Approve) && run.status == RunStatus::NeedsAttention,
        ..Allowed::default()
    };
    if run.status == RunStatus::AwaitingApproval && token.allows(Scope::Approve) {
        let rule = app.config.automation(&run.automation).and_then(|a| a.approval.as_ref());
        match rule {
            Some(rule) if !rule.approvers.contains(&token.name) => {
                allowed.approve_why_not = Some(format!(
                    "Only {} may approve runs of {}.",
                    rule.approvers.join(", "),
                    run.automation
                ));
            }
            Some(_) if run.started_by == token.name => {
                allowed.approve_why_not = Some("You started this run: another approver must decide.".to_owned());
            }
            Some(_) => allowed.approve = true,
            None => {}
        }
    }
    allowed
}

/// `GET /runs/ID`: the run's timeline, plan, result, log and people, and what the viewer may do.
pub(super) async fn run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let viewer = match signed_in(&app, &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let run = match app.store.get(&id).await {
        Ok(Some(run)) => redacted(run),
        Ok(None) => return viewer_error(&viewer, StatusCode::NOT_FOUND, &format!("there is no run {id}")),
        Err(e) => return store_down(&e),
    };
    // Without `read`, a token sees the runs it started and those it is asked to approve.
    let approver_of = || {
        viewer.token.allows(Scope::Approve)
            && app
                .config
                .automation(&run.automation)
                .and_then(|a| a.approval.as_ref())
                .is_some_and(|rule| rule.approvers.contains(&viewer.token.name))
    };
    if !viewer.token.allows(Scope::Read) && run.started_by != viewer.token.name && !approver_of() {
        return needs(&viewer, Scope::Read, "read run history");
    }
    let allowed = allowed(&app, &viewer, &run);
    let view = RunPage::of(&app.pool.engine, &run);
    render_part(
        StatusCode::OK,
        "run.html",
        minijinja::context! {
            page => Page::of(format!("Run of {}", run.automation), &viewer, "runs"),
            run => view,
            allowed => allowed,
            notice => notice_text(q.notice.as_deref()),
        },
        fragment(&headers),
    )
}

#[derive(Serialize)]
struct Waiting {
    run: RunPage,
    started_by: String,
}

/// `GET /approvals`: the runs waiting for an approval this viewer may give.
pub(super) async fn approvals(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let viewer = match signed_in(&app, &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if !viewer.token.allows(Scope::Approve) {
        return needs(&viewer, Scope::Approve, "approve runs");
    }
    // Per automation this viewer approves: another automation's waiting runs never crowd
    // theirs out of the page.
    let mut summaries = Vec::new();
    for automation in app.config.automations.iter().filter(|a| {
        a.approval
            .as_ref()
            .is_some_and(|rule| rule.approvers.contains(&viewer.token.name))
    }) {
        let filter = RunFilter {
            automation: Some(automation.name.clone()),
            status: Some(RunStatus::AwaitingApproval),
            limit: WAITING_MAX,
            ..RunFilter::default()
        };
        match app.store.list_summaries(&filter).await {
            Ok(runs) => summaries.extend(runs.into_iter().filter(|s| s.started_by != viewer.token.name)),
            Err(e) => return store_down(&e),
        }
    }
    // Oldest first: what has waited longest comes first, and a run that starts waiting is
    // added at the end instead of moving the others.
    summaries.sort_by(|a, b| a.id.cmp(&b.id));
    let more = summaries.len().saturating_sub(WAITING_SHOWN);
    let mut waiting = Vec::new();
    for summary in summaries.iter().take(WAITING_SHOWN) {
        match app.store.get(&summary.id).await {
            Ok(Some(run)) if run.status == RunStatus::AwaitingApproval => {
                let run = redacted(run);
                waiting.push(Waiting {
                    started_by: run.started_by.clone(),
                    run: RunPage::of(&app.pool.engine, &run),
                });
            }
            Ok(_) => {}
            Err(e) => return store_down(&e),
        }
    }
    render_part(
        StatusCode::OK,
        "approvals.html",
        minijinja::context! {
            page => Page::of("Waiting for me", &viewer, "approvals"),
            waiting => waiting,
            more => more,
            notice => notice_text(q.notice.as_deref()),
        },
        fragment(&headers),
    )
}

#[derive(Serialize)]
struct AutomationRow {
    name: String,
    trigger: String,
    next: Option<String>,
    paused: bool,
    last: Option<RunRow>,
    rate: Option<String>,
    approval: Option<String>,
}

/// `GET /automations`: each automation's trigger, next tick, last run and success rate.
pub(super) async fn automations(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let viewer = match signed_in(&app, &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if !viewer.token.allows(Scope::Read) && !viewer.token.allows(Scope::Run) {
        return needs(&viewer, Scope::Read, "list automations");
    }
    let switches = match app.store.automations().await {
        Ok(s) => s,
        Err(e) => return store_down(&e),
    };
    let now = jiff::Timestamp::now().as_millisecond();
    let mut rows = Vec::new();
    for automation in &app.config.automations {
        let recent = match app
            .store
            .list_summaries(&RunFilter {
                automation: Some(automation.name.clone()),
                limit: RATE_OVER,
                ..RunFilter::default()
            })
            .await
        {
            Ok(r) => r,
            Err(e) => return store_down(&e),
        };
        let finished: Vec<_> = recent.iter().filter(|r| r.status.is_final()).collect();
        let rate = (!finished.is_empty()).then(|| {
            let ok = finished.iter().filter(|r| r.status == RunStatus::Succeeded).count();
            format!("{}% of the last {}", ok * 100 / finished.len(), finished.len())
        });
        let paused = switches.iter().any(|s| s.name == automation.name && s.paused);
        let next = match &automation.trigger {
            Trigger::Schedule(cadence) if !paused => time(cadence.next_after(now)),
            _ => None,
        };
        rows.push(AutomationRow {
            name: automation.name.clone(),
            trigger: trigger_text(&automation.trigger),
            next,
            paused,
            last: recent.first().map(RunRow::of),
            rate,
            approval: automation
                .approval
                .as_ref()
                .map(|a| format!("{} of {}", a.required, a.approvers.join(", "))),
        });
    }
    render_part(
        StatusCode::OK,
        "automations.html",
        minijinja::context! {
            page => Page::of("Automations", &viewer, "automations"),
            automations => rows,
        },
        false,
    )
}

#[derive(Serialize)]
struct Field {
    name: String,
    kind: &'static str,
    configured: bool,
    required: bool,
    doc: String,
    value: String,
    checked: bool,
}

/// `GET /automations/NAME`: the "run now" form, one field per parameter the script declares.
pub(super) async fn run_now(State(app): State<Arc<App>>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let viewer = match signed_in(&app, &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if !viewer.token.allows(Scope::Run) {
        return viewer_error(
            &viewer,
            StatusCode::FORBIDDEN,
            &format!(
                "the token \"{}\" may not start runs: that needs the run scope",
                viewer.token.name
            ),
        );
    }
    let Some(automation) = app.config.automation(&name) else {
        return viewer_error(
            &viewer,
            StatusCode::NOT_FOUND,
            &format!("there is no automation \"{name}\""),
        );
    };
    let declared = match app.pool.engine.params(&automation.source) {
        Ok(p) => p,
        Err(problems) => {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return viewer_error(
                &viewer,
                StatusCode::CONFLICT,
                &format!("the script of \"{name}\" cannot be read: {}", text.join("; ")),
            );
        }
    };
    let fields: Vec<Field> = declared
        .iter()
        .map(|p| {
            // A value runbook.toml sets is not shown (it may be a secret from `${VAR}`): left
            // empty, the form keeps it. The script's own default is shown.
            let configured = automation.params.contains_key(&p.name);
            let preset = if configured { None } else { p.default.as_ref() };
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            Field {
                name: p.name.clone(),
                kind: p.ty.as_str(),
                configured,
                required: p.required && !configured,
                doc: p.doc.clone(),
                value: preset.map(text).unwrap_or_default(),
                checked: preset.and_then(serde_json::Value::as_bool).unwrap_or(false),
            }
        })
        .collect();
    let mut nonce = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
    render_part(
        StatusCode::OK,
        "run_now.html",
        minijinja::context! {
            page => Page::of(format!("Run {name} now"), &viewer, "automations"),
            name => name,
            fields => fields,
            approval => automation.approval.is_some(),
            request_id => hex::encode(nonce),
        },
        false,
    )
}
