//! The middleware every request passes before it reaches an API handler: faults, rate limit,
//! latency, authentication and the request log, in that order.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, HeaderValue, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::control::Control;
use crate::rate_limit::{Admission, whole_seconds_up};
use crate::{AuthUsed, Fault, LoggedRequest};

/// The largest request body a simulator reads; neither API takes anything near this size.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What differs between the simulated APIs at the gate: their credentials and their error shapes.
pub(crate) trait Gatekeeper: Send + Sync + 'static {
    fn control(&self) -> &Control;

    /// The API's own refusal when the request's credentials do not let it reach the handler.
    fn refusal(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response>;

    /// The response an injected fault produces.
    fn fault_response(&self, fault: &Fault) -> Response;

    /// The API's 429. The gate adds `retry-after`.
    fn rate_limited(&self) -> Response;

    /// The API's answer to a body that could not be read or is too large.
    fn unreadable_body(&self, status: StatusCode) -> Response;

    /// Whether every response carries IETF `Ratelimit` / `Ratelimit-Policy` headers (Cloudflare
    /// documents them; PrivX does not).
    fn advertises_rate_limit(&self) -> bool;
}

/// The axum middleware; install with `from_fn_with_state(state, gate::<G>)`.
pub(crate) async fn gate<G: Gatekeeper>(State(api): State<Arc<G>>, request: Request, next: Next) -> Response {
    let control = api.control();
    let at = Instant::now();
    let (number, _in_flight) = control.arrive();
    // Faults and the rate limit are decided at arrival so that "the next k requests" and the
    // window count requests in the order they came, whatever their latency or body size.
    let fault = control.take_fault();
    let (admission, advertised) = match fault {
        Some(_) => (None, false),
        None => control
            .admit(at)
            .map_or((None, false), |(admission, advertised)| (Some(admission), advertised)),
    };
    let latency = control.latency();

    let (parts, body) = request.into_parts();
    let auth = AuthUsed::of(&parts.headers);
    let mut logged = LoggedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        status: 0,
        body: None,
        auth,
        at,
    };
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let bytes = body.ok();
    logged.body = bytes.as_ref().and_then(json_body);
    let mut response = if let Some(fault) = &fault {
        api.fault_response(fault)
    } else if let Some(Admission::Limited { resets_in, .. }) = admission {
        let mut response = api.rate_limited();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(whole_seconds_up(resets_in)));
        response
    } else if let Some(refusal) = api.refusal(&parts.method, parts.uri.path(), &parts.headers) {
        refusal
    } else if let Some(bytes) = bytes {
        next.run(Request::from_parts(parts, Body::from(bytes))).await
    } else {
        let declared_too_large = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_BODY_BYTES);
        api.unreadable_body(if declared_too_large {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        })
    };

    if let Some(admission) = admission.filter(|_| advertised && api.advertises_rate_limit()) {
        add_rate_limit_headers(response.headers_mut(), admission);
    }
    logged.status = response.status().as_u16();
    control.record(number, logged);
    response
}

fn json_body(bytes: &Bytes) -> Option<serde_json::Value> {
    if bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// `Ratelimit: "default";r=<remaining>;t=<seconds to reset>` and
/// `Ratelimit-Policy: "default";q=<requests>;w=<window seconds>`, as Cloudflare sends them.
fn add_rate_limit_headers(headers: &mut HeaderMap, admission: Admission) {
    let (limit, remaining, resets_in) = match admission {
        Admission::Allowed {
            limit,
            remaining,
            resets_in,
        } => (limit, remaining, resets_in),
        Admission::Limited { limit, resets_in } => (limit, 0, resets_in),
    };
    let state = format!("\"default\";r={remaining};t={}", whole_seconds_up(resets_in));
    let policy = format!("\"default\";q={};w={}", limit.requests, whole_seconds_up(limit.window));
    for (name, value) in [("ratelimit", state), ("ratelimit-policy", policy)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}
