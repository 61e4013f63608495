//! The OAuth2 password grant PrivX's SDKs use, and the bearer tokens it issues.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::sync::Arc;

use super::PrivxState;
use super::errors::OAuthError;
use crate::lock::lock;

pub(crate) const TOKEN_PATH: &str = "/auth/api/v1/oauth/token";

/// Issued access tokens and when each expires.
#[derive(Debug)]
pub(crate) struct Tokens {
    expiries: Mutex<HashMap<String, Instant>>,
    lifetime: Mutex<Duration>,
    granted: AtomicUsize,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unknown,
    Expired,
}

impl Tokens {
    pub(crate) fn new(lifetime: Duration) -> Tokens {
        Tokens {
            expiries: Mutex::new(HashMap::new()),
            lifetime: Mutex::new(lifetime),
            granted: AtomicUsize::new(0),
        }
    }

    /// A new access token and its lifetime.
    fn issue(&self) -> (String, Duration) {
        let lifetime = *lock(&self.lifetime);
        let token = random_token();
        let now = Instant::now();
        let mut expiries = lock(&self.expiries);
        // Dropping expired tokens keeps a long benchmark from growing the map without bound.
        expiries.retain(|_, expiry| *expiry > now);
        expiries.insert(token.clone(), now + lifetime);
        self.granted.fetch_add(1, Ordering::SeqCst);
        (token, lifetime)
    }

    pub(crate) fn check(&self, token: &str) -> Result<(), Refusal> {
        match lock(&self.expiries).get(token) {
            None => Err(Refusal::Unknown),
            Some(expiry) if Instant::now() >= *expiry => Err(Refusal::Expired),
            Some(_) => Ok(()),
        }
    }

    pub(crate) fn revoke_all(&self) {
        lock(&self.expiries).clear();
    }

    /// Applies to tokens issued from now on.
    pub(crate) fn set_lifetime(&self, lifetime: Duration) {
        *lock(&self.lifetime) = lifetime;
    }

    pub(crate) fn granted(&self) -> usize {
        self.granted.load(Ordering::SeqCst)
    }
}

fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// `POST /auth/api/v1/oauth/token`: Basic auth of the OAuth client, then the password grant of
/// the API client.
pub(crate) async fn token(
    State(state): State<Arc<PrivxState>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    match grant(&state, &headers, form) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn grant(
    state: &PrivxState,
    headers: &HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, OAuthError> {
    let (client_id, client_secret) = basic_credentials(headers)
        .ok_or_else(|| OAuthError::invalid_client("the OAuth client must authenticate with HTTP Basic"))?;
    if client_id != state.oauth_client_id || client_secret != state.oauth_client_secret {
        return Err(OAuthError::invalid_client(format!(
            "unknown OAuth client {client_id:?} or wrong secret"
        )));
    }
    let Form(fields) =
        form.map_err(|_| OAuthError::invalid_request("expected an application/x-www-form-urlencoded body"))?;
    let field = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    match field("grant_type") {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some("password") => {}
        Some(other) => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant type {other:?} is not supported; use \"password\""
            )));
        }
    }
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return Err(OAuthError::invalid_request("username and password are required"));
    };
    if username != state.api_client_id || password != state.api_client_secret {
        return Err(OAuthError::invalid_grant("invalid API client credentials"));
    }
    let (access_token, lifetime) = state.tokens.issue();
    let body = serde_json::json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": lifetime.as_secs(),
        "refresh_token": random_token(),
        "scope": "privx-api",
    });
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The bearer token in `headers`, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
