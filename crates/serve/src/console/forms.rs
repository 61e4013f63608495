//! The console's forms (`POST`): each is checked for its origin and CSRF token, then goes through
//! the API's own handler — the same scopes, approvers, four eyes and store calls — and answers
//! with a redirect to the page that shows the outcome, or a page that says why not.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::session::{Viewer, check_form, viewer};
use super::{page_error, redirect, viewer_error};
use crate::server::{self, App, ResolveBody};
use crate::store::Decision;

/// Fields of a form, in order (a form may repeat none of them).
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The API handler's answer, as the outcome a page shows: its JSON on success, else its status
/// and message.
async fn outcome(viewer: &Viewer, response: Response) -> Result<Value, Response> {
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let message = value
        .get("error")
        .and_then(Value::as_str)
        .map_or_else(|| String::from_utf8_lossy(&body).into_owned(), str::to_owned);
    Err(viewer_error(viewer, status, &runbook_core::redact(&message)))
}

/// Who sent a form, once it passed its checks: a live session, this server's origin, and the
/// session's CSRF token.
async fn poster(app: &App, headers: &HeaderMap, fields: &Fields) -> Result<Viewer, Response> {
    let viewer = viewer(app, headers).await?.ok_or_else(|| {
        page_error(
            StatusCode::UNAUTHORIZED,
            "you are not signed in (or the session ended): sign in and send it again — nothing was changed",
        )
    })?;
    match check_form(app, &viewer, headers, field(fields, "_csrf")) {
        Some(refused) => Err(refused),
        None => Ok(viewer),
    }
}

/// `POST /runs/ID/ACTION`: approve, reject, retry, cancel, or resolve a step in doubt.
pub(super) async fn run_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(fields): axum::Form<Fields>,
) -> Response {
    let viewer = match poster(&app, &headers, &fields).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let actor = viewer.token.clone();
    let decision_body = || {
        let mut body = Map::new();
        body.insert("comment".into(), json!(field(&fields, "comment").unwrap_or("").trim()));
        if let Some(digest) = field(&fields, "effects_sha256").filter(|d| !d.is_empty()) {
            body.insert("effects_sha256".into(), json!(digest));
        }
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    };
    let (answer, notice) = match action.as_str() {
        "approve" => (
            server::decide(&app, &actor, &id, Decision::Approve, &decision_body()).await,
            "approved",
        ),
        "reject" => (
            server::decide(&app, &actor, &id, Decision::Reject, &decision_body()).await,
            "rejected",
        ),
        "retry" => {
            let answer = server::retry_run(State(app.clone()), Extension(actor), Path(id.clone())).await;
            return match outcome(&viewer, answer).await {
                Ok(value) => match value.get("run_id").and_then(Value::as_str) {
                    Some(new) => redirect(&format!("/runs/{new}?notice=retried")),
                    None => redirect(&format!("/runs/{id}")),
                },
                Err(page) => page,
            };
        }
        "cancel" => (
            server::cancel_run(State(app.clone()), Extension(actor), Path(id.clone())).await,
            "cancelled",
        ),
        "resolve" => {
            let step = field(&fields, "step").unwrap_or_default().to_owned();
            let sent = match field(&fields, "sent") {
                Some("true") => true,
                Some("false") => false,
                _ => {
                    return viewer_error(
                        &viewer,
                        StatusCode::BAD_REQUEST,
                        "say whether the change took effect: choose \"it was sent\" or \"it was not sent\"",
                    );
                }
            };
            (
                server::resolve_run(
                    State(app.clone()),
                    Extension(actor),
                    Path(id.clone()),
                    Ok(axum::Json(ResolveBody { step, sent })),
                )
                .await,
                "resolved",
            )
        }
        other => {
            return viewer_error(
                &viewer,
                StatusCode::NOT_FOUND,
                &format!("a run has no action \"{other}\": approve, reject, retry, cancel or resolve"),
            );
        }
    };
    match outcome(&viewer, answer).await {
        Ok(_) => redirect(&format!("/runs/{id}?notice={notice}")),
        Err(page) => page,
    }
}

/// A form field's text as the value of a parameter of type `kind`.
fn param_value(kind: runbook_core::ScriptParamType, name: &str, text: &str) -> Result<Value, String> {
    use runbook_core::ScriptParamType as T;
    let text = text.trim();
    match kind {
        T::String => Ok(Value::String(text.to_owned())),
        T::Int => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{name} must be a whole number, not \"{text}\"")),
        T::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{name} must be a number, not \"{text}\"")),
        T::Bool => match text {
            "true" | "on" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{name} must be true or false, not \"{text}\"")),
        },
        T::Array | T::Map | T::Any => serde_json::from_str(text).or_else(|e| {
            if kind == T::Any {
                Ok(Value::String(text.to_owned()))
            } else {
                Err(format!(
                    "{name} must be JSON ({}), e.g. {}: {e}",
                    kind.as_str(),
                    if kind == T::Array {
                        "[\"a\", \"b\"]"
                    } else {
                        "{\"key\": \"value\"}"
                    }
                ))
            }
        }),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// `POST /automations/NAME/run`: starts a run with the form's params, as `runs start` would. The
/// form's request id is its idempotency key: a form sent twice (a double click, a resend after a
/// lost answer) is one run.
pub(super) async fn run_now(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(fields): axum::Form<Fields>,
) -> Response {
    let viewer = match poster(&app, &headers, &fields).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let Some(automation) = app.config.automation(&name) else {
        return viewer_error(
            &viewer,
            StatusCode::NOT_FOUND,
            &format!("there is no automation \"{name}\""),
        );
    };
    let declared = app.pool.engine.params(&automation.source).unwrap_or_default();
    let mut params = Map::new();
    let mut problems = Vec::new();
    for p in &declared {
        let key = format!("param.{}", p.name);
        let given = field(&fields, &key);
        // A value runbook.toml sets is asked as text (the page does not show it): empty keeps it.
        let configured = automation.params.contains_key(&p.name);
        if p.ty == runbook_core::ScriptParamType::Bool && !configured {
            // An unticked checkbox sends nothing: that is `false`, not "not given".
            params.insert(p.name.clone(), Value::Bool(given.is_some()));
            continue;
        }
        match given.filter(|t| !t.trim().is_empty()) {
            None => {}
            Some(text) => match param_value(p.ty, &p.name, text) {
                Ok(v) => {
                    params.insert(p.name.clone(), v);
                }
                Err(e) => problems.push(e),
            },
        }
    }
    if !problems.is_empty() {
        return viewer_error(
            &viewer,
            StatusCode::BAD_REQUEST,
            &format!("nothing was started: {}", problems.join("; ")),
        );
    }
    let mut api_headers = HeaderMap::new();
    if let Some(request_id) = field(&fields, "request_id").and_then(|r| HeaderValue::from_str(r).ok()) {
        api_headers.insert("idempotency-key", request_id);
    }
    let body = serde_json::to_vec(&json!({ "params": params })).unwrap_or_default();
    let answer = server::start_run(
        State(app.clone()),
        Extension(viewer.token.clone()),
        Path(name.clone()),
        api_headers,
        body.into(),
    )
    .await;
    match outcome(&viewer, answer).await {
        Ok(value) => match value.get("run_id").and_then(Value::as_str) {
            Some(id) => redirect(&format!("/runs/{id}?notice=started")),
            None => redirect("/runs"),
        },
        Err(page) => page,
    }
}
