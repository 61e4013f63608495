//! OAuth2 password grant, as PrivX's SDKs do it: the OAuth client authenticates with Basic auth,
//! the API client's id and secret go in the form body. The token is cached and renewed shortly
//! before it expires; concurrent calls share one renewal (only one task fetches a token at a
//! time, the others wait for it and reuse it).

use std::time::Duration;

use base64::Engine as _;
use runbook_core::http::{HttpClient, HttpRequest, header};
use runbook_core::{ActionError, ActionErrorKind, CallContext, Secret};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::models::{OAuthError, TokenResponse};

/// The token endpoint.
pub const TOKEN_PATH: &str = "/auth/api/v1/oauth/token";

/// Credentials, and the names the user knows them by (for error messages).
#[derive(Debug)]
pub struct Credentials {
    /// The OAuth client (usually `privx-external`).
    pub oauth_client_id: String,
    /// Its secret.
    pub oauth_client_secret: Secret<String>,
    /// The API client.
    pub api_client_id: String,
    /// Its secret.
    pub api_client_secret: Secret<String>,
    /// How the user sets the OAuth client settings (`PRIVX_API_OAUTH_CLIENT_ID and ...`).
    pub oauth_settings: String,
    /// How the user sets the API client settings.
    pub api_settings: String,
}

#[derive(Debug, Clone)]
struct Token {
    value: Secret<String>,
    renew_at: Instant,
}

/// The cached token and the lock that makes renewal single-flight.
#[derive(Debug)]
pub struct TokenCache {
    credentials: Credentials,
    basic: Secret<String>,
    current: RwLock<Option<Token>>,
    renewal: Mutex<()>,
}

impl TokenCache {
    /// A cache with no token yet.
    pub fn new(credentials: Credentials) -> Self {
        let pair = format!(
            "{}:{}",
            credentials.oauth_client_id,
            credentials.oauth_client_secret.expose()
        );
        let basic = Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ));
        TokenCache {
            credentials,
            basic,
            current: RwLock::new(None),
            renewal: Mutex::new(()),
        }
    }

    /// A valid token: the cached one, or a new one (fetched once for all waiting callers).
    pub async fn token(&self, http: &HttpClient, ctx: &CallContext) -> Result<Secret<String>, ActionError> {
        if let Some(token) = self.valid().await {
            return Ok(token);
        }
        let _renewing = self.renewal.lock().await;
        // Another task may have renewed it while this one waited.
        if let Some(token) = self.valid().await {
            return Ok(token);
        }
        let token = self.fetch(http, ctx).await?;
        let value = token.value.clone();
        *self.current.write().await = Some(token);
        Ok(value)
    }

    /// Drops `rejected` (PrivX answered 401 to it), unless it was already replaced.
    pub async fn invalidate(&self, rejected: &Secret<String>) {
        let mut current = self.current.write().await;
        if current.as_ref().is_some_and(|t| t.value.expose() == rejected.expose()) {
            *current = None;
        }
    }

    async fn valid(&self) -> Option<Secret<String>> {
        let current = self.current.read().await;
        current
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.value.clone())
    }

    async fn fetch(&self, http: &HttpClient, ctx: &CallContext) -> Result<Token, ActionError> {
        let c = &self.credentials;
        let request = HttpRequest::post(TOKEN_PATH)
            .secret_header(header::AUTHORIZATION, &self.basic)?
            .form(&[
                ("grant_type", "password"),
                ("username", c.api_client_id.as_str()),
                ("password", c.api_client_secret.expose().as_str()),
            ])
            .read_only();
        let started = Instant::now();
        let response = http.send(ctx, request).await?;
        if !response.is_success() {
            let oauth: Option<OAuthError> = serde_json::from_slice(&response.body).ok();
            let message = match oauth {
                Some(e) if e.error == "invalid_client" => format!(
                    "PrivX rejected the OAuth client \"{}\" (invalid_client): check {}",
                    c.oauth_client_id, c.oauth_settings
                ),
                Some(e) if e.error == "invalid_grant" => format!(
                    "PrivX rejected the API client \"{}\" (invalid_grant): check {}",
                    c.api_client_id, c.api_settings
                ),
                Some(e) => format!(
                    "PrivX refused a token ({}{})",
                    e.error,
                    e.error_description.map(|d| format!(": {d}")).unwrap_or_default()
                ),
                None => format!(
                    "PrivX answered {} to the token request: {}",
                    response.status,
                    response.excerpt(120)
                ),
            };
            return Err(ActionError::api(response.status, message).with_code("oauth"));
        }
        let answer: TokenResponse = serde_json::from_slice(&response.body).map_err(|e| {
            ActionError::new(
                ActionErrorKind::InvalidResponse,
                format!("PrivX's token answer is not the documented JSON: {e}"),
            )
        })?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(300));
        // Renew a little early: by a fifth of the lifetime, at most 30 s, so that a token is
        // never sent just as it expires.
        let margin = (lifetime / 5).min(Duration::from_secs(30));
        Ok(Token {
            value: Secret::new(answer.access_token),
            renew_at: started + lifetime.saturating_sub(margin),
        })
    }
}
