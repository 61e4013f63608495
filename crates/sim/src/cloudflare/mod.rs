//! The Cloudflare Zero Trust (Access) API simulator: users, the authentication log, token
//! revocation, seats and groups.

mod access_log;
mod account_routes;
mod envelope;
mod groups;
mod routes;
mod tenant;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use self::envelope::CfError;
use self::tenant::Tenant;
use crate::control::Control;
use crate::fault::{html_page, truncated, with_content_type};
use crate::gate::Gatekeeper;
use crate::lock::lock;
use crate::server::Server;
use crate::{CloudflareFixture, Fault, LoggedRequest, RateLimit, RateLimitMode, SimOptions};

/// A running Cloudflare Zero Trust (Access) API simulator.
///
/// Serves `/client/v4/accounts/{account_id}/access/users...` as `shared/api/cloudflare.md`
/// describes, with the v4 envelope, `result_info` paging, both auth schemes (`Authorization:
/// Bearer` and `X-Auth-Email` + `X-Auth-Key`) and the documented rate-limit headers.
/// Credentials a request presents must all be valid; presenting none is a 403 like wrong ones.
///
/// Also, as `shared/api/new-endpoints.md` describes them: the authentication log
/// (`GET .../access/logs/access_requests`, no `result_info`), `POST
/// .../access/organizations/revoke_user`, `PATCH .../access/seats` and the Access groups
/// (`.../access/groups[/{id}]`). What the sheet leaves unconfirmed about the log is a knob:
/// its largest page ([`set_access_log_max_per_page`](Self::set_access_log_max_per_page)),
/// whether it honours `allowed` ([`set_access_log_ignores_allowed`](Self::set_access_log_ignores_allowed))
/// and whether it takes API tokens ([`set_access_log_refuses_tokens`](Self::set_access_log_refuses_tokens)).
///
/// Stops when [`shutdown`](Self::shutdown) is awaited or the handle is dropped.
#[derive(Debug)]
pub struct CloudflareSim {
    state: Arc<CloudflareState>,
    server: Server,
}

#[derive(Debug)]
pub(crate) struct CloudflareState {
    control: Control,
    account_id: String,
    api_token: String,
    api_email: String,
    api_key: String,
    tenant: Mutex<Tenant>,
    knobs: LogKnobs,
}

/// How the authentication log behaves where the fact sheet is unconfirmed.
#[derive(Debug)]
struct LogKnobs {
    max_per_page: AtomicU64,
    caps_silently: AtomicBool,
    ignores_allowed: AtomicBool,
    refuses_tokens: AtomicBool,
}

impl LogKnobs {
    fn max_per_page(&self) -> u64 {
        self.max_per_page.load(Ordering::SeqCst)
    }

    fn caps_silently(&self) -> bool {
        self.caps_silently.load(Ordering::SeqCst)
    }

    fn ignores_allowed(&self) -> bool {
        self.ignores_allowed.load(Ordering::SeqCst)
    }

    fn refuses_tokens(&self) -> bool {
        self.refuses_tokens.load(Ordering::SeqCst)
    }
}

impl CloudflareSim {
    /// Starts the simulator on `127.0.0.1` with an ephemeral port.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] when the fixture is inconsistent (see
    /// [`CloudflareFixture::validate`]).
    pub async fn start(fixture: CloudflareFixture, opts: SimOptions) -> io::Result<CloudflareSim> {
        CloudflareSim::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), fixture, opts).await
    }

    /// Starts the simulator on `addr` (port 0 picks a free one). `opts.tls` is ignored: see
    /// [`SimOptions::tls`].
    pub async fn start_on(addr: SocketAddr, fixture: CloudflareFixture, opts: SimOptions) -> io::Result<CloudflareSim> {
        fixture
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let state = Arc::new(CloudflareState {
            control: Control::new(&opts),
            account_id: fixture.account_id.clone(),
            api_token: fixture.api_token.clone(),
            api_email: fixture.api_email.clone(),
            api_key: fixture.api_key.clone(),
            tenant: Mutex::new(Tenant::new(&fixture)),
            knobs: LogKnobs {
                max_per_page: AtomicU64::new(1000),
                caps_silently: AtomicBool::new(false),
                ignores_allowed: AtomicBool::new(false),
                refuses_tokens: AtomicBool::new(false),
            },
        });
        let server = Server::start(addr, routes::router(state.clone()), None).await?;
        Ok(CloudflareSim { state, server })
    }

    /// The API root as the SDKs take it (`CLOUDFLARE_BASE_URL`):
    /// `http://127.0.0.1:PORT/client/v4`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.server.addr())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The only account id the simulator serves (`CLOUDFLARE_ACCOUNT_ID`).
    pub fn account_id(&self) -> String {
        self.state.account_id.clone()
    }

    /// The accepted API token (`CLOUDFLARE_API_TOKEN`).
    pub fn api_token(&self) -> String {
        self.state.api_token.clone()
    }

    /// The accepted legacy `X-Auth-Email` (`CLOUDFLARE_EMAIL`).
    pub fn api_email(&self) -> String {
        self.state.api_email.clone()
    }

    /// The accepted legacy `X-Auth-Key` (`CLOUDFLARE_API_KEY`).
    pub fn api_key(&self) -> String {
        self.state.api_key.clone()
    }

    /// Every request answered since start (or since [`clear_requests`](Self::clear_requests)),
    /// in arrival order, including faulted, rate-limited and refused ones.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.control.requests()
    }

    /// Empties the request log and restarts [`max_in_flight`](Self::max_in_flight).
    pub fn clear_requests(&self) {
        self.state.control.clear_requests();
    }

    /// The next `count` requests, whatever their endpoint, answer with `fault` and change nothing.
    /// Calls queue up: injecting twice answers the first batch, then the second.
    pub fn inject(&self, fault: Fault, count: usize) {
        self.state.control.inject(fault, count);
    }

    /// Sets the delay added before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.state.control.set_latency(latency);
    }

    /// Sets or removes the fixed-window limit; a new limit starts a fresh window.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.state.control.set_rate_limit(limit);
    }

    /// Sets how the limit is counted (a fresh window starts).
    pub fn set_rate_limit_mode(&self, mode: RateLimitMode) {
        self.state.control.set_rate_limit_mode(mode);
    }

    /// Connections clients opened since the simulator started (a client that reuses its
    /// connections opens few).
    pub fn accepted_connections(&self) -> usize {
        self.server.accepted_connections()
    }

    /// The most requests handled at once (latency included) since start or the last
    /// [`clear_requests`](Self::clear_requests).
    pub fn max_in_flight(&self) -> usize {
        self.state.control.max_in_flight()
    }

    /// The current users, as the API would return them.
    pub fn users(&self) -> Vec<Value> {
        lock(&self.state.tenant).users()
    }

    /// One current user, as the API would return it.
    pub fn user(&self, id: &str) -> Option<Value> {
        lock(&self.state.tenant).user(id).cloned().map(Value::Object)
    }

    /// Every `revoke_user` the simulator served, in order, as
    /// `{email, user_uid, devices, warp_session_reauth}` (`devices` true when the body or the
    /// query asked for it).
    pub fn revocations(&self) -> Vec<Value> {
        lock(&self.state.tenant).revocations()
    }

    /// The current Access groups, as the API would return them.
    pub fn groups(&self) -> Vec<Value> {
        lock(&self.state.tenant).groups.filtered(None, None)
    }

    /// Sets the largest `per_page` the authentication log accepts (default 1000; the real
    /// maximum is undocumented). A larger one is answered 400 naming `per_page`.
    pub fn set_access_log_max_per_page(&self, max: u64) {
        self.state.knobs.max_per_page.store(max.max(1), Ordering::SeqCst);
    }

    /// Makes the authentication log answer a `per_page` above its largest with pages of its
    /// largest, without a word, instead of a 400 (the real behaviour is undocumented).
    pub fn set_access_log_caps_silently(&self, caps: bool) {
        self.state.knobs.caps_silently.store(caps, Ordering::SeqCst);
    }

    /// Makes the authentication log ignore its `allowed` filter (only `allowedOp` is
    /// documented), answering allowed and refused logins alike.
    pub fn set_access_log_ignores_allowed(&self, ignores: bool) {
        self.state.knobs.ignores_allowed.store(ignores, Ordering::SeqCst);
    }

    /// Makes the authentication log refuse API tokens (403, code 10000) so that only the global
    /// API key reaches it, as the spec's security block lists.
    pub fn set_access_log_refuses_tokens(&self, refuses: bool) {
        self.state.knobs.refuses_tokens.store(refuses, Ordering::SeqCst);
    }

    /// Stops serving, closes open connections and releases the port.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl CloudflareState {
    /// The account in the path must be the tenant's. An id shaped like an account id (32 hex
    /// digits) that is not ours gets the 403 the real API gives for an account the credentials
    /// cannot reach; anything else cannot be routed at all.
    fn check_account(&self, account_id: &str) -> Result<(), CfError> {
        if account_id == self.account_id {
            Ok(())
        } else if account_id.len() == 32 && account_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            Err(CfError::authentication())
        } else {
            Err(CfError::no_route(&format!(
                "/client/v4/accounts/{account_id}/access/users"
            )))
        }
    }
}

impl Gatekeeper for CloudflareState {
    fn control(&self) -> &Control {
        &self.control
    }

    fn refusal(&self, _: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let mut presented = false;
        if headers.contains_key(AUTHORIZATION) {
            presented = true;
            let token = header(AUTHORIZATION.as_str())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            if token != Some(self.api_token.as_str())
                || (self.knobs.refuses_tokens() && path.ends_with(routes::ACCESS_REQUESTS_SUFFIX))
            {
                return Some(CfError::authentication().into_response());
            }
        }
        if headers.contains_key("x-auth-email") || headers.contains_key("x-auth-key") {
            presented = true;
            let email_ok = header("x-auth-email").is_some_and(|e| e.trim().eq_ignore_ascii_case(&self.api_email));
            let key_ok = header("x-auth-key").is_some_and(|k| k.trim() == self.api_key);
            if !(email_ok && key_ok) {
                return Some(CfError::authentication().into_response());
            }
        }
        if presented {
            None
        } else {
            Some(CfError::authentication().into_response())
        }
    }

    fn fault_response(&self, fault: &Fault) -> Response {
        let status = fault.status();
        match fault {
            Fault::Status(_) => CfError::for_status(status).into_response(),
            Fault::TruncatedJson => {
                let document = serde_json::json!({
                    "success": true,
                    "errors": [],
                    "messages": [],
                    "result": [{
                        "id": "00000000-0000-4000-8000-000000000000",
                        "email": "truncated@example.com",
                        "name": "Truncated Response",
                    }],
                    "result_info": {"page": 1, "per_page": 25, "count": 1, "total_count": 1, "total_pages": 1},
                })
                .to_string();
                with_content_type(status, truncated(&document), "application/json")
            }
            Fault::Html(_) => with_content_type(status, html_page(status, "cloudflare"), "text/html"),
            Fault::Empty(_) => status.into_response(),
        }
    }

    fn rate_limited(&self) -> Response {
        CfError::new(
            StatusCode::TOO_MANY_REQUESTS,
            envelope::RATE_LIMITED,
            "You are being rate limited",
        )
        .into_response()
    }

    fn unreadable_body(&self, status: StatusCode) -> Response {
        CfError::new(status, envelope::INVALID_REQUEST, "the request body could not be read").into_response()
    }

    fn advertises_rate_limit(&self) -> bool {
        true
    }
}
