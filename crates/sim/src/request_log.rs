//! The record of every request a simulator answered.

use std::time::Instant;

/// One request as the simulator saw it, with the status it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    /// The HTTP method, e.g. `GET`.
    pub method: String,
    /// The path as received, e.g. `/client/v4/accounts/ACCOUNT/access/users`.
    pub path: String,
    /// The raw query string without `?`, when there was one.
    pub query: Option<String>,
    /// The status the client received.
    pub status: u16,
    /// The request body, when it was JSON.
    pub body: Option<serde_json::Value>,
    /// Which kind of credentials the request carried (whether or not they were valid).
    pub auth: AuthUsed,
    /// When the request arrived.
    pub at: Instant,
}

/// The kind of credentials a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthUsed {
    /// `Authorization: Bearer ...`.
    Bearer,
    /// Cloudflare's legacy `X-Auth-Email` / `X-Auth-Key` headers.
    LegacyKey,
    /// `Authorization: Basic ...` (PrivX's OAuth client on the token endpoint).
    Basic,
    /// None of the above.
    None,
}

impl AuthUsed {
    /// Classifies the credentials in `headers`; an `Authorization` header wins over legacy ones.
    pub(crate) fn of(headers: &axum::http::HeaderMap) -> AuthUsed {
        if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
            let scheme = value
                .to_str()
                .ok()
                .and_then(|v| v.split_whitespace().next())
                .map(str::to_ascii_lowercase);
            return match scheme.as_deref() {
                Some("bearer") => AuthUsed::Bearer,
                Some("basic") => AuthUsed::Basic,
                _ => AuthUsed::None,
            };
        }
        if headers.contains_key("x-auth-key") || headers.contains_key("x-auth-email") {
            return AuthUsed::LegacyKey;
        }
        AuthUsed::None
    }
}
