//! The router, and the `/client/v4/accounts/{account_id}/access/users` endpoints.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Map, Value};

use super::CloudflareState;
use super::account_routes;
use super::envelope::{self, CfError, ResultInfo};
use super::tenant::Filters;
use crate::gate::gate;
use crate::lock::lock;

const USERS: &str = "/client/v4/accounts/{account_id}/access/users";
const ACCESS: &str = "/client/v4/accounts/{account_id}/access";
/// The path of the authentication log, which the token knob refuses.
pub(super) const ACCESS_REQUESTS_SUFFIX: &str = "/access/logs/access_requests";
/// The documented default (the fact sheet's section 5); also the largest page served.
const DEFAULT_PER_PAGE: u64 = 1000;
const MAX_PER_PAGE: u64 = 1000;

pub(super) type Reply = Result<Response, CfError>;

pub(crate) fn router(state: Arc<CloudflareState>) -> Router {
    Router::new()
        .route(USERS, get(list_users).post(create_user))
        .route(
            &format!("{USERS}/{{user_id}}"),
            get(get_user).put(update_user).delete(delete_user),
        )
        .route(&format!("{USERS}/{{user_id}}/active_sessions"), get(active_sessions))
        .route(
            &format!("{USERS}/{{user_id}}/active_sessions/{{nonce}}"),
            get(active_session),
        )
        .route(&format!("{USERS}/{{user_id}}/failed_logins"), get(failed_logins))
        .route(
            &format!("{USERS}/{{user_id}}/last_seen_identity"),
            get(last_seen_identity),
        )
        .route(
            &format!("{ACCESS}/logs/access_requests"),
            get(account_routes::access_requests),
        )
        .route(
            &format!("{ACCESS}/organizations/revoke_user"),
            post(account_routes::revoke_user),
        )
        .route(&format!("{ACCESS}/seats"), patch(account_routes::update_seats))
        .route(
            &format!("{ACCESS}/groups"),
            get(account_routes::list_groups).post(account_routes::create_group),
        )
        .route(
            &format!("{ACCESS}/groups/{{group_id}}"),
            get(account_routes::get_group)
                .put(account_routes::update_group)
                .delete(account_routes::delete_group),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), gate::<CloudflareState>))
        .with_state(state)
}

async fn no_route(uri: Uri) -> Response {
    CfError::no_route(uri.path()).into_response()
}

async fn method_not_allowed() -> Response {
    CfError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        envelope::METHOD_NOT_ALLOWED,
        "Method not allowed for this route",
    )
    .into_response()
}

async fn list_users(
    State(state): State<Arc<CloudflareState>>,
    Segments(account_id): Segments<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply {
    state.check_account(&account_id)?;
    let Query(pairs) = query.map_err(|e| CfError::invalid(format!("invalid query: {e}")))?;
    let mut page = 1;
    let mut per_page = DEFAULT_PER_PAGE;
    let mut filters = Filters::default();
    // The last occurrence of a repeated parameter wins, as with most form decoders.
    for (key, value) in pairs {
        match key.as_str() {
            "page" => page = positive(&key, &value, u64::MAX)?,
            "per_page" => per_page = positive(&key, &value, MAX_PER_PAGE)?,
            "email" => filters.email = non_empty(value),
            "name" => filters.name = non_empty(value),
            "search" => filters.search = non_empty(value),
            _ => {}
        }
    }
    let tenant = lock(&state.tenant);
    let matching = tenant.filtered(&filters);
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let items: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(take)
        .map(|u| Value::Object((*u).clone()))
        .collect();
    let info = ResultInfo {
        page,
        per_page,
        count: items.len(),
        total_count: matching.len(),
    };
    Ok(envelope::success_page(items, info))
}

async fn create_user(
    State(state): State<Arc<CloudflareState>>,
    Segments(account_id): Segments<String>,
    body: Bytes,
) -> Reply {
    state.check_account(&account_id)?;
    let body = json_object(&body)?;
    let email = match body.get("email") {
        Some(Value::String(email)) if plausible_email(email) => email.clone(),
        Some(Value::String(_)) => {
            return Err(CfError::invalid_field("email", "email is not a valid email address"));
        }
        Some(_) => return Err(CfError::invalid_field("email", "email must be a string")),
        None => return Err(CfError::invalid_field("email", "email is required")),
    };
    let name = match body.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(CfError::invalid_field("name", "name must be a string")),
    };
    let user = lock(&state.tenant).create(&email, &name, &now())?;
    Ok(envelope::success(StatusCode::CREATED, user))
}

async fn get_user(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, user_id)): Segments<(String, String)>,
) -> Reply {
    state.check_account(&account_id)?;
    let user = lock(&state.tenant)
        .user(&user_id)
        .cloned()
        .ok_or_else(|| CfError::not_found(format!("user {user_id} not found")))?;
    Ok(envelope::success(StatusCode::OK, Value::Object(user)))
}

async fn update_user(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, user_id)): Segments<(String, String)>,
    body: Bytes,
) -> Reply {
    state.check_account(&account_id)?;
    let body = json_object(&body)?;
    let email = required_string(&body, "email")?;
    let name = required_string(&body, "name")?;
    let user = lock(&state.tenant).update(&user_id, email, name, &now())?;
    Ok(envelope::success(StatusCode::OK, user))
}

async fn delete_user(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, user_id)): Segments<(String, String)>,
) -> Reply {
    state.check_account(&account_id)?;
    lock(&state.tenant).delete(&user_id)?;
    Ok(envelope::success(StatusCode::ACCEPTED, Value::Object(Map::new())))
}

async fn active_sessions(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, user_id)): Segments<(String, String)>,
) -> Reply {
    state.check_account(&account_id)?;
    let sessions = lock(&state.tenant).active_sessions(&user_id)?;
    Ok(envelope::success(StatusCode::OK, Value::Array(sessions)))
}

async fn active_session(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, user_id, nonce)): Segments<(String, String, String)>,
) -> Reply {
    state.check_account(&account_id)?;
    let identity = lock(&state.tenant).active_session(&user_id, &nonce)?;
    Ok(envelope::success(StatusCode::OK, identity))
}

async fn failed_logins(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, user_id)): Segments<(String, String)>,
) -> Reply {
    state.check_account(&account_id)?;
    let logins = lock(&state.tenant).failed_logins(&user_id)?;
    Ok(envelope::success(StatusCode::OK, Value::Array(logins)))
}

async fn last_seen_identity(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, user_id)): Segments<(String, String)>,
) -> Reply {
    state.check_account(&account_id)?;
    let identity = lock(&state.tenant).last_seen_identity(&user_id)?;
    Ok(envelope::success(StatusCode::OK, identity))
}

/// Path parameters; a path that cannot be decoded gets the API's "could not route" envelope
/// instead of axum's plain-text rejection.
pub(super) struct Segments<T>(pub(super) T);

impl<S, T> FromRequestParts<S> for Segments<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = CfError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, CfError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(segments)) => Ok(Segments(segments)),
            Err(_) => Err(CfError::no_route(parts.uri.path())),
        }
    }
}

/// A whole number in `1..=max`.
pub(super) fn positive(key: &str, value: &str, max: u64) -> Result<u64, CfError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ if max == u64::MAX => Err(CfError::invalid(format!(
            "{key} must be a positive whole number, got {value:?}"
        ))),
        _ => Err(CfError::invalid(format!(
            "{key} must be a whole number from 1 to {max}, got {value:?}"
        ))),
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, CfError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(CfError::invalid("the request body must be a JSON object")),
        Err(e) => Err(CfError::invalid(format!("the request body is not valid JSON: {e}"))),
    }
}

fn required_string<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, CfError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(CfError::invalid_field(field, format!("{field} must be a string"))),
        None => Err(CfError::invalid_field(field, format!("{field} is required"))),
    }
}

/// Enough of an address check to catch a client sending a name, an id or an empty string.
pub(super) fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

/// RFC 3339 in UTC with microseconds, the precision the API's timestamps have.
pub(super) fn now() -> String {
    format!("{:.6}", jiff::Timestamp::now())
}
