//! The PrivX role-store users API simulator, with its OAuth2 token endpoint.

mod authorized_keys;
mod errors;
mod grants;
mod oauth;
mod paging;
mod role_store;
mod routes;
mod search;
mod sessions;
mod sources;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use self::authorized_keys::AuthorizedKeys;
use self::errors::PrivxError;
use self::oauth::{Refusal, TOKEN_PATH, Tokens};
use self::role_store::RoleStore;
use self::sessions::Sessions;
use self::sources::Sources;
use crate::control::Control;
use crate::fault::{html_page, truncated, with_content_type};
use crate::gate::Gatekeeper;
use crate::lock::lock;
use crate::server::Server;
use crate::{Fault, LoggedRequest, PrivxFixture, RateLimit, RateLimitMode, SimOptions};

/// A running PrivX role-store users API simulator.
///
/// Serves the token endpoint (`POST /auth/api/v1/oauth/token`, OAuth2 password grant with the
/// OAuth client in HTTP Basic), the role-store user endpoints of `shared/api/privx.md`, and the
/// roles (list, get, resolve, members), user sessions, live connections, authorized keys and
/// sources endpoints of `shared/api/new-endpoints.md`; all but the token endpoint need
/// `Authorization: Bearer <access_token>`. In TLS mode it serves HTTPS with a certificate
/// for `localhost` and `127.0.0.1` signed by a CA made at start ([`ca_cert_pem`](Self::ca_cert_pem)).
///
/// Stops when [`shutdown`](Self::shutdown) is awaited or the handle is dropped.
#[derive(Debug)]
pub struct PrivxSim {
    state: Arc<PrivxState>,
    server: Server,
    ca_cert_pem: Option<String>,
}

#[derive(Debug)]
pub(crate) struct PrivxState {
    control: Control,
    oauth_client_id: String,
    oauth_client_secret: String,
    api_client_id: String,
    api_client_secret: String,
    tokens: Tokens,
    store: Mutex<RoleStore>,
    sessions: Mutex<Sessions>,
    authorized_keys: Mutex<AuthorizedKeys>,
    sources: Mutex<Sources>,
}

impl PrivxSim {
    /// Starts the simulator on `127.0.0.1` with an ephemeral port.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] when the fixture is inconsistent (see
    /// [`PrivxFixture::validate`]).
    pub async fn start(fixture: PrivxFixture, opts: SimOptions) -> io::Result<PrivxSim> {
        PrivxSim::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), fixture, opts).await
    }

    /// Starts the simulator on `addr` (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr, fixture: PrivxFixture, opts: SimOptions) -> io::Result<PrivxSim> {
        fixture
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let state = Arc::new(PrivxState {
            control: Control::new(&opts),
            oauth_client_id: fixture.oauth_client_id.clone(),
            oauth_client_secret: fixture.oauth_client_secret.clone(),
            api_client_id: fixture.api_client_id.clone(),
            api_client_secret: fixture.api_client_secret.clone(),
            tokens: Tokens::new(Duration::from_secs(fixture.token_lifetime_secs)),
            store: Mutex::new(RoleStore::new(&fixture)),
            sessions: Mutex::new(Sessions::new(&fixture)),
            authorized_keys: Mutex::new(AuthorizedKeys::new(&fixture)),
            sources: Mutex::new(Sources::new(&fixture)),
        });
        let tls = if opts.tls { Some(crate::tls::generate()?) } else { None };
        let (server_config, ca_cert_pem) = match tls {
            Some(tls) => (Some(tls.server_config), Some(tls.ca_cert_pem)),
            None => (None, None),
        };
        let server = Server::start(addr, routes::router(state.clone()), server_config).await?;
        Ok(PrivxSim {
            state,
            server,
            ca_cert_pem,
        })
    }

    /// The deployment's base URL (`PRIVX_API_BASE_URL`): `http://127.0.0.1:PORT`, or
    /// `https://localhost:PORT` in TLS mode, the name the certificate is for.
    pub fn base_url(&self) -> String {
        let addr = self.server.addr();
        match self.ca_cert_pem {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// In TLS mode, the PEM of the CA that signed the server certificate (`PRIVX_API_CA_CERT`).
    pub fn ca_cert_pem(&self) -> Option<String> {
        self.ca_cert_pem.clone()
    }

    /// The OAuth client id accepted in HTTP Basic (`PRIVX_API_OAUTH_CLIENT_ID`).
    pub fn oauth_client_id(&self) -> String {
        self.state.oauth_client_id.clone()
    }

    /// The OAuth client secret (`PRIVX_API_OAUTH_CLIENT_SECRET`).
    pub fn oauth_client_secret(&self) -> String {
        self.state.oauth_client_secret.clone()
    }

    /// The API client id, the password grant's `username` (`PRIVX_API_CLIENT_ID`).
    pub fn api_client_id(&self) -> String {
        self.state.api_client_id.clone()
    }

    /// The API client secret, the password grant's `password` (`PRIVX_API_CLIENT_SECRET`).
    pub fn api_client_secret(&self) -> String {
        self.state.api_client_secret.clone()
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

    /// The next `count` requests, whatever their endpoint (the token endpoint included), answer
    /// with `fault` and change nothing. Calls queue up.
    pub fn inject(&self, fault: Fault, count: usize) {
        self.state.control.inject(fault, count);
    }

    /// Sets the delay added before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.state.control.set_latency(latency);
    }

    /// Sets or removes the fixed-window limit; a new limit starts a fresh window. PrivX documents
    /// no rate limit, so its 429s carry `retry-after` but no `Ratelimit` headers.
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

    /// The lifetime of tokens issued from now on (`expires_in`, in whole seconds).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.tokens.set_lifetime(lifetime);
    }

    /// Forgets every issued token: the next API call with one of them answers 401.
    pub fn revoke_all_tokens(&self) {
        self.state.tokens.revoke_all();
    }

    /// How many token requests were answered 200.
    pub fn token_requests(&self) -> usize {
        self.state.tokens.granted()
    }

    /// The current users, as `GET /role-store/api/v1/users/{id}` would return them.
    pub fn users(&self) -> Vec<Value> {
        lock(&self.state.store).users()
    }

    /// One current user, as `GET /role-store/api/v1/users/{id}` would return it.
    pub fn user(&self, id: &str) -> Option<Value> {
        lock(&self.state.store).get_user(id).ok()
    }

    /// Makes `PUT .../users/{id}/roles` store each role without the grant a client sent
    /// (`grant_type`, its window, `floating_length`), as a PrivX that does not know those
    /// fields would: the role store's own values stand. Off by default.
    pub fn set_ignore_grant_fields(&self, ignore: bool) {
        lock(&self.state.store).set_ignore_grant_fields(ignore);
    }

    /// The user's open sessions, as the session storage lists them.
    pub fn sessions(&self, user_id: &str) -> Vec<Value> {
        lock(&self.state.sessions).of(user_id)
    }

    /// The user's live connections.
    pub fn connections(&self, user_id: &str) -> Vec<Value> {
        lock(&self.state.sessions).connections(user_id)
    }

    /// The user's SSH authorized keys.
    pub fn authorized_keys(&self, user_id: &str) -> Vec<Value> {
        lock(&self.state.authorized_keys).keys(user_id)
    }

    /// How many refreshes of the source `POST /role-store/api/v1/sources/refresh` accepted.
    pub fn source_refreshes(&self, source_id: &str) -> usize {
        lock(&self.state.sources).refreshes(source_id)
    }

    /// Stops serving, closes open connections and releases the port.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl Gatekeeper for PrivxState {
    fn control(&self) -> &Control {
        &self.control
    }

    fn refusal(&self, _: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
        // The token endpoint authenticates the OAuth client itself (HTTP Basic).
        if path == TOKEN_PATH {
            return None;
        }
        let Some(token) = oauth::bearer(headers) else {
            return Some(
                PrivxError::unauthorized("missing bearer token: log in at /auth/api/v1/oauth/token").into_response(),
            );
        };
        match self.tokens.check(token) {
            Ok(()) => None,
            Err(Refusal::Unknown) => Some(PrivxError::unauthorized("invalid or revoked access token").into_response()),
            Err(Refusal::Expired) => Some(PrivxError::unauthorized("access token expired").into_response()),
        }
    }

    fn fault_response(&self, fault: &Fault) -> Response {
        let status = fault.status();
        match fault {
            Fault::Status(_) => PrivxError::for_status(status).into_response(),
            Fault::TruncatedJson => {
                let document = serde_json::json!({
                    "count": 1,
                    "items": [{
                        "id": "00000000-0000-4000-8000-000000000000",
                        "principal": "truncated",
                        "email": "truncated@example.com",
                    }],
                })
                .to_string();
                with_content_type(status, truncated(&document), "application/json")
            }
            Fault::Html(_) => with_content_type(status, html_page(status, "nginx"), "text/html"),
            Fault::Empty(_) => status.into_response(),
        }
    }

    fn rate_limited(&self) -> Response {
        PrivxError::new(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", "too many requests").into_response()
    }

    fn unreadable_body(&self, status: StatusCode) -> Response {
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "REQUEST_TOO_LARGE"
        } else {
            "BAD_REQUEST"
        };
        PrivxError::new(status, code, "the request body could not be read").into_response()
    }

    fn advertises_rate_limit(&self) -> bool {
        false
    }
}
