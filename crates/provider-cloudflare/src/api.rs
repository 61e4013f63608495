//! Talking to the Cloudflare API: auth headers, the envelope, errors, pagination.

use futures::StreamExt;
use runbook_core::http::{HttpClient, HttpRequest, HttpResponse, header, path};
use runbook_core::{ActionError, CallContext, Secret};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::models::{ApiMessage, Envelope, ResultInfo};

/// The page size the `result_info` collections (users, groups) are read in: the documented
/// default of both.
pub const PAGE_SIZE: u64 = 1000;

/// A stop for a service that ignores `page` and keeps answering full pages.
const MAX_PAGES: u64 = 100_000;

/// Pages fetched at once once their number is known: enough to hide latency, few enough to
/// leave the rate budget to the rest of the run.
const PAGES_IN_FLIGHT: usize = 4;

/// How requests are authenticated.
#[derive(Debug)]
pub enum Auth {
    /// `Authorization: Bearer <API token>`.
    Token(Secret<String>),
    /// The legacy global API key: `X-Auth-Email` + `X-Auth-Key`.
    Key {
        /// The account's email.
        email: String,
        /// The global API key.
        key: Secret<String>,
    },
}

/// The Cloudflare API for one account.
#[derive(Debug)]
pub struct Api {
    pub(crate) http: HttpClient,
    pub(crate) account_id: String,
    pub(crate) auth: Auth,
}

/// What a request was about, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// The account's user list.
    Users,
    /// One user.
    User(&'a str),
    /// One session of a user.
    Session(&'a str, &'a str),
    /// The Access authentication log.
    AccessLog,
    /// The account's Access organization (revoking a user's tokens).
    Organization,
    /// The account's seats.
    Seats,
    /// The account's Access groups.
    Groups,
    /// One Access group.
    Group(&'a str),
}

/// A collection with `result_info` paging.
#[derive(Debug, Clone, Copy)]
pub enum Collection {
    /// `/access/users`.
    Users,
    /// `/access/groups`.
    Groups,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    errors: Vec<ApiMessage>,
}

impl Api {
    /// `/accounts/{account_id}/access/users` followed by `rest`, every segment escaped.
    pub fn users_path(&self, rest: &[&str]) -> String {
        let mut segments = vec!["users"];
        segments.extend_from_slice(rest);
        self.access_path(&segments)
    }

    /// `/accounts/{account_id}/access` followed by `rest`, every segment escaped.
    pub fn access_path(&self, rest: &[&str]) -> String {
        let mut segments = vec!["accounts", self.account_id.as_str(), "access"];
        segments.extend_from_slice(rest);
        path(&segments)
    }

    fn authorize(&self, request: HttpRequest) -> Result<HttpRequest, ActionError> {
        match &self.auth {
            Auth::Token(token) => request.bearer(token),
            Auth::Key { email, key } => {
                let email_value = header::HeaderValue::from_str(email).map_err(|_| {
                    ActionError::invalid_args("the configured Cloudflare email cannot be sent in a header")
                })?;
                request
                    .header(header::HeaderName::from_static("x-auth-email"), email_value)
                    .secret_header(header::HeaderName::from_static("x-auth-key"), key)
            }
        }
    }

    /// Sends a request and returns the envelope's `result` (and `result_info`), or the error the
    /// answer describes.
    pub async fn call<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        request: HttpRequest,
        subject: Subject<'_>,
    ) -> Result<(Option<T>, Option<ResultInfo>), ActionError> {
        let response = self.http.send(ctx, self.authorize(request)?).await?;
        if !response.is_success() {
            return Err(self.error(&response, subject));
        }
        if response.body.is_empty() {
            return Ok((None, None));
        }
        if response.is_html() {
            return Err(ActionError::invalid_response(format!(
                "Cloudflare answered {} with an HTML page instead of JSON: {}",
                response.status,
                response.excerpt(120)
            ))
            .with_status(response.status));
        }
        let envelope: Envelope<T> = serde_json::from_slice(&response.body).map_err(|e| {
            ActionError::invalid_response(format!(
                "Cloudflare answered {} with a body that is not the documented JSON ({e}): {}",
                response.status,
                response.excerpt(120)
            ))
            .with_status(response.status)
        })?;
        if envelope.success == Some(false) {
            return Err(described(response.status, &envelope.errors, None));
        }
        Ok((envelope.result, envelope.result_info))
    }

    /// Every page of the collection at `path`. The first page says how many there are
    /// (`total_pages`, or `total_count` / `per_page`); the rest are then fetched a few at a
    /// time, in order. Without those figures, pages are followed one by one until a short or
    /// empty one.
    pub async fn all_pages<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        collection: Collection,
        filters: &[(&str, String)],
    ) -> Result<Vec<T>, ActionError> {
        let (first, info) = self.page::<T>(ctx, collection, filters, 1).await?;
        let received = first.len() as u64;
        let mut all = first;
        let total_pages = info.and_then(|i| {
            i.total_pages.or_else(|| {
                let per_page = i.per_page.filter(|p| *p > 0).unwrap_or(PAGE_SIZE);
                i.total_count.map(|t| t.div_ceil(per_page))
            })
        });
        if let Some(total) = total_pages {
            let mut pages = futures::stream::iter(2..=total.min(MAX_PAGES))
                .map(|page| self.page::<T>(ctx, collection, filters, page))
                .buffered(PAGES_IN_FLIGHT);
            while let Some(page) = pages.next().await {
                all.extend(page?.0);
            }
            return Ok(all);
        }
        let per_page = info.and_then(|i| i.per_page).unwrap_or(PAGE_SIZE);
        let mut last_received = received;
        let mut page = 1;
        while last_received > 0 && last_received >= per_page && page < MAX_PAGES {
            page += 1;
            let (items, _) = self.page::<T>(ctx, collection, filters, page).await?;
            last_received = items.len() as u64;
            all.extend(items);
        }
        Ok(all)
    }

    async fn page<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        collection: Collection,
        filters: &[(&str, String)],
        page: u64,
    ) -> Result<(Vec<T>, Option<ResultInfo>), ActionError> {
        let (path, subject) = match collection {
            Collection::Users => (self.users_path(&[]), Subject::Users),
            Collection::Groups => (self.access_path(&["groups"]), Subject::Groups),
        };
        let mut request = HttpRequest::get(path).query("page", page).query("per_page", PAGE_SIZE);
        for (key, value) in filters {
            request = request.query(key, value);
        }
        let (items, info): (Option<Vec<T>>, _) = self.call(ctx, request, subject).await?;
        Ok((items.unwrap_or_default(), info))
    }

    /// The error an unsuccessful answer describes.
    fn error(&self, response: &HttpResponse, subject: Subject<'_>) -> ActionError {
        let status = response.status;
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return ActionError::api(status, format!("Cloudflare answered {status} with an empty body"));
        }
        if response.is_html() {
            return ActionError::api(
                status,
                format!(
                    "Cloudflare answered {status} with an HTML page instead of JSON: {}",
                    response.excerpt(120)
                ),
            );
        }
        let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(&response.body) else {
            return ActionError::api(
                status,
                format!("Cloudflare answered {status}: {}", response.excerpt(120)),
            );
        };
        let context = match (status, subject) {
            (404, Subject::User(id)) => Some(format!(
                "no user {id} in Cloudflare account {}",
                self.account_id
            )),
            (404, Subject::Session(id, nonce)) => Some(format!(
                "no active session {nonce} for user {id} in Cloudflare account {}",
                self.account_id
            )),
            (404, Subject::Group(id)) => Some(format!(
                "no Access group {id} in Cloudflare account {}",
                self.account_id
            )),
            (403, Subject::AccessLog) if matches!(self.auth, Auth::Token(_)) => Some(
                "Cloudflare refused the API token for the Access authentication log, whose API documents only the \
                 global API key: set CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY (or api_email / api_key), or give the token \
                 Access: Audit Logs Read"
                    .to_owned(),
            ),
            (403, _) if envelope.errors.iter().any(|e| e.code.as_ref().and_then(Value::as_i64) == Some(10000)) => {
                Some(match &self.auth {
                    Auth::Token(_) => "Cloudflare refused the API token: check CLOUDFLARE_API_TOKEN (or api_token), and that it may read and edit Access users (and, for groups, seats and revoking, Access organizations and Zero Trust seats) of this account".to_owned(),
                    Auth::Key { .. } => "Cloudflare refused the email and global API key: check CLOUDFLARE_EMAIL and CLOUDFLARE_API_KEY (or api_email / api_key)".to_owned(),
                })
            }
            _ => None,
        };
        described(status, &envelope.errors, context)
    }
}

fn described(status: u16, errors: &[ApiMessage], context: Option<String>) -> ActionError {
    let details: Vec<String> = errors
        .iter()
        .map(|e| {
            let message = e.message.as_deref().unwrap_or("no message");
            match &e.code {
                Some(code) => format!("{message} (code {code})"),
                None => message.to_owned(),
            }
        })
        .collect();
    let answered = if details.is_empty() {
        format!("Cloudflare answered {status}")
    } else {
        format!("Cloudflare answered {status}: {}", details.join("; "))
    };
    let message = match context {
        Some(context) => format!("{context} ({answered})"),
        None => answered,
    };
    let mut error = ActionError::api(status, message);
    if let Some(code) = errors.first().and_then(|e| e.code.clone()) {
        error = error.with_code(code);
    }
    error
}
