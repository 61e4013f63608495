//! Calls to PrivX: the bearer token (resent once after a 401), error bodies, paging.

use runbook_core::http::{HttpClient, HttpRequest, HttpResponse};
use runbook_core::{ActionError, CallContext};
use serde::de::DeserializeOwned;

use crate::auth::TokenCache;
use crate::models::{ErrorBody, Page};

/// PrivX for one deployment.
#[derive(Debug)]
pub struct Api {
    pub(crate) http: HttpClient,
    pub(crate) tokens: TokenCache,
}

/// What a request was about, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// One user.
    User(&'a str),
    /// Anything else.
    Other,
}

impl Api {
    /// Sends a request with the bearer token; after a 401 the token is renewed and the request
    /// resent once. Returns the answer when it is 2xx, else the error it describes.
    pub async fn send(
        &self,
        ctx: &CallContext,
        request: HttpRequest,
        subject: Subject<'_>,
    ) -> Result<HttpResponse, ActionError> {
        let token = self.tokens.token(&self.http, ctx).await?;
        let response = self.http.send(ctx, request.clone().bearer(&token)?).await?;
        let response = if response.status == 401 {
            self.tokens.invalidate(&token).await;
            let renewed = self.tokens.token(&self.http, ctx).await?;
            self.http.send(ctx, request.bearer(&renewed)?).await?
        } else {
            response
        };
        if response.is_success() {
            Ok(response)
        } else {
            Err(error(&response, subject))
        }
    }

    /// Sends a request and parses the JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        request: HttpRequest,
        subject: Subject<'_>,
    ) -> Result<T, ActionError> {
        let response = self.send(ctx, request, subject).await?;
        parse(&response)
    }
}

impl Api {
    /// Every item of a list PrivX pages with `offset` and `limit`: asks for `limit` at a time
    /// and follows the offset until `count` (the total) items came or a page is empty — never
    /// until a page is merely shorter than asked, because a server may cap the page size below
    /// what was asked (the maximum of several lists is undocumented).
    pub async fn all_pages<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        request: impl Fn() -> Result<HttpRequest, ActionError>,
        limit: u64,
        subject: Subject<'_>,
    ) -> Result<Vec<T>, ActionError> {
        let mut all = Vec::new();
        let mut offset = 0_u64;
        loop {
            let page_request = request()?.query("offset", offset).query("limit", limit);
            let page: Page<T> = self.json(ctx, page_request, subject).await?;
            let items = page.items.unwrap_or_default();
            let received = items.len() as u64;
            all.extend(items);
            offset += received;
            let done = match page.count {
                Some(total) => received == 0 || offset >= total,
                None => received < limit,
            };
            if done {
                return Ok(all);
            }
        }
    }
}

/// Parses a 2xx answer's JSON body.
pub fn parse<T: DeserializeOwned>(response: &HttpResponse) -> Result<T, ActionError> {
    if response.is_html() {
        return Err(ActionError::invalid_response(format!(
            "PrivX answered {} with an HTML page instead of JSON: {}",
            response.status,
            response.excerpt(120)
        ))
        .with_status(response.status));
    }
    serde_json::from_slice(&response.body).map_err(|e| {
        ActionError::invalid_response(format!(
            "PrivX answered {} with a body that is not the documented JSON ({e}): {}",
            response.status,
            response.excerpt(120)
        ))
        .with_status(response.status)
    })
}

/// The error an unsuccessful answer describes: PrivX's `error_code`, `error_message` and
/// `property` when the body has them.
fn error(response: &HttpResponse, subject: Subject<'_>) -> ActionError {
    let status = response.status;
    let body: Option<ErrorBody> = serde_json::from_slice(&response.body).ok();
    let Some(body) = body else {
        let detail = if response.body.iter().all(u8::is_ascii_whitespace) {
            "an empty body".to_owned()
        } else if response.is_html() {
            format!("an HTML page: {}", response.excerpt(120))
        } else {
            response.excerpt(120)
        };
        return ActionError::api(status, format!("PrivX answered {status} with {detail}"));
    };
    let mut text = format!("PrivX answered {status} {}", body.error_code);
    if let Some(m) = &body.error_message {
        text.push_str(&format!(": {m}"));
    }
    if let Some(p) = &body.property {
        text.push_str(&format!(" (property `{p}`)"));
    }
    let message = match (status, subject) {
        (404, Subject::User(id)) => format!("no user {id} in PrivX ({text})"),
        (401, _) => format!(
            "{text}; the token was renewed and the request resent once — check that the API client may use the role store"
        ),
        (403, _) => format!("{text}; the API client lacks the permission for this call"),
        _ => text,
    };
    let mut e = ActionError::api(status, message).with_code(body.error_code.clone());
    e = e.with_field("error_code", body.error_code);
    if let Some(m) = body.error_message {
        e = e.with_field("error_message", m);
    }
    if let Some(p) = body.property {
        e = e.with_field("property", p);
    }
    if let Some(d) = body.details {
        e = e.with_field("details", d);
    }
    e
}

/// Whether a string looks like a UUID (8-4-4-4-12 hex digits).
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_recognised() {
        assert!(is_uuid("eef4aefc-d64e-4c2c-aba4-4914c86ce059"));
        assert!(!is_uuid("ann@example.com"));
        assert!(!is_uuid("eef4aefc-d64e-4c2c-aba4-4914c86ce05"));
    }
}
