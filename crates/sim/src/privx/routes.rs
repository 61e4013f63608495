//! The role-store, session storage and connection manager endpoints and the token endpoint,
//! mounted at the deployment root.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, http::Uri};
use serde_json::json;

use super::PrivxState;
use super::errors::PrivxError;
use super::oauth::{self, TOKEN_PATH};
use super::paging::Paging;
use super::role_store::MfaAction;
use super::search::{Criteria, USER_SORT_KEY};
use super::sessions::SESSION_SORT_KEY;
use crate::gate::gate;
use crate::lock::lock;

const USERS: &str = "/role-store/api/v1/users";
const ROLES: &str = "/role-store/api/v1/roles";
const SOURCES: &str = "/role-store/api/v1/sources";
const SESSION_STORAGE: &str = "/auth/api/v1/sessionstorage";

type Reply = Result<Response, PrivxError>;

pub(crate) fn router(state: Arc<PrivxState>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(oauth::token))
        .route(&format!("{USERS}/search"), post(search_users))
        .route(&format!("{USERS}/mfa/{{action}}"), post(mfa))
        .route(&format!("{USERS}/{{user_id}}"), get(get_user))
        .route(&format!("{USERS}/{{user_id}}/resolve"), get(resolve_user))
        .route(
            &format!("{USERS}/{{user_id}}/settings"),
            get(get_settings).put(put_settings),
        )
        .route(&format!("{USERS}/{{user_id}}/roles"), get(get_roles).put(put_roles))
        .route(
            &format!("{USERS}/{{user_id}}/authorizedkeys"),
            get(list_authorized_keys),
        )
        .route(
            &format!("{USERS}/{{user_id}}/authorizedkeys/{{key_id}}"),
            get(get_authorized_key).delete(delete_authorized_key),
        )
        .route(ROLES, get(list_roles))
        .route(&format!("{ROLES}/resolve"), post(resolve_roles))
        .route(&format!("{ROLES}/{{role_id}}"), get(get_role))
        .route(&format!("{ROLES}/{{role_id}}/members"), get(role_members))
        .route(SOURCES, get(list_sources))
        .route(&format!("{SOURCES}/refresh"), post(refresh_sources))
        .route(&format!("{SOURCES}/{{source_id}}"), get(get_source))
        .route(
            &format!("{SESSION_STORAGE}/users/{{user_id}}/sessions"),
            get(user_sessions),
        )
        .route(
            &format!("{SESSION_STORAGE}/users/{{user_id}}/sessions/terminate"),
            post(terminate_user_sessions),
        )
        .route(
            &format!("{SESSION_STORAGE}/sessions/{{session_id}}/terminate"),
            post(terminate_session),
        )
        .route(
            "/connection-manager/api/v1/terminate/user/{user_id}",
            post(terminate_user_connections),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), gate::<PrivxState>))
        .with_state(state)
}

async fn no_route(uri: Uri) -> Response {
    PrivxError::not_found(format!("no such endpoint: {}", uri.path())).into_response()
}

async fn method_not_allowed() -> Response {
    PrivxError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed for this endpoint",
    )
    .into_response()
}

async fn get_user(State(state): State<Arc<PrivxState>>, Segment(id): Segment) -> Reply {
    let user = lock(&state.store).get_user(&id)?;
    Ok(Json(user).into_response())
}

async fn search_users(State(state): State<Arc<PrivxState>>, query: PairsQuery, body: Bytes) -> Reply {
    let paging = paging(query, USER_SORT_KEY)?;
    let criteria = Criteria::parse(&body)?;
    let (count, items) = lock(&state.store).search(&criteria, &paging);
    Ok(Json(json!({"count": count, "items": items})).into_response())
}

async fn resolve_user(State(state): State<Arc<PrivxState>>, Segment(id): Segment) -> Reply {
    let user = lock(&state.store).resolve(&id)?;
    Ok(Json(user).into_response())
}

async fn get_settings(State(state): State<Arc<PrivxState>>, Segment(id): Segment) -> Reply {
    let settings = lock(&state.store).settings(&id)?;
    Ok(Json(settings).into_response())
}

async fn put_settings(State(state): State<Arc<PrivxState>>, Segment(id): Segment, body: Bytes) -> Reply {
    let user = lock(&state.store).set_settings(&id, &body)?;
    Ok(Json(user).into_response())
}

async fn get_roles(State(state): State<Arc<PrivxState>>, Segment(id): Segment) -> Reply {
    let roles = lock(&state.store).user_roles(&id)?;
    Ok(Json(json!({"count": roles.len(), "items": roles})).into_response())
}

async fn put_roles(State(state): State<Arc<PrivxState>>, Segment(id): Segment, body: Bytes) -> Reply {
    lock(&state.store).set_roles(&id, &body)?;
    Ok(StatusCode::OK.into_response())
}

async fn mfa(State(state): State<Arc<PrivxState>>, Segment(action): Segment, body: Bytes) -> Reply {
    let action = MfaAction::parse(&action).ok_or_else(|| {
        PrivxError::not_found(format!(
            "no such MFA operation {action:?}: use enable, disable or reset"
        ))
    })?;
    lock(&state.store).mfa(action, &body)?;
    Ok(StatusCode::OK.into_response())
}

type PairsQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The paging parameters of a list endpoint.
fn paging(query: PairsQuery, default_sort_key: Option<&str>) -> Result<Paging, PrivxError> {
    let Query(pairs) = query.map_err(|e| PrivxError::bad_request(format!("invalid query: {e}")))?;
    Paging::parse(&pairs, default_sort_key)
}

async fn list_roles(State(state): State<Arc<PrivxState>>, query: PairsQuery) -> Reply {
    let paging = paging(query, None)?;
    Ok(Json(lock(&state.store).roles_page(&paging)).into_response())
}

async fn get_role(State(state): State<Arc<PrivxState>>, Segment(id): Segment) -> Reply {
    Ok(Json(lock(&state.store).get_role(&id)?).into_response())
}

async fn resolve_roles(State(state): State<Arc<PrivxState>>, body: Bytes) -> Reply {
    Ok(Json(lock(&state.store).resolve_roles(&body)?).into_response())
}

async fn role_members(State(state): State<Arc<PrivxState>>, Segment(id): Segment, query: PairsQuery) -> Reply {
    let paging = paging(query, None)?;
    Ok(Json(lock(&state.store).role_members(&id, &paging)?).into_response())
}

async fn list_authorized_keys(
    State(state): State<Arc<PrivxState>>,
    Segment(user): Segment,
    query: PairsQuery,
) -> Reply {
    lock(&state.store).check_user(&user)?;
    let Query(pairs) = query.map_err(|e| PrivxError::bad_request(format!("invalid query: {e}")))?;
    let asks_for_page = pairs.iter().any(|(key, _)| key == "offset" || key == "limit");
    let paging = if asks_for_page {
        Some(Paging::parse(&pairs, None)?)
    } else {
        None
    };
    Ok(Json(lock(&state.authorized_keys).list(&user, paging.as_ref())).into_response())
}

async fn get_authorized_key(State(state): State<Arc<PrivxState>>, Segments(user, key): Segments) -> Reply {
    lock(&state.store).check_user(&user)?;
    Ok(Json(lock(&state.authorized_keys).get(&user, &key)?).into_response())
}

async fn delete_authorized_key(State(state): State<Arc<PrivxState>>, Segments(user, key): Segments) -> Reply {
    lock(&state.store).check_user(&user)?;
    lock(&state.authorized_keys).delete(&user, &key)?;
    Ok(StatusCode::OK.into_response())
}

async fn list_sources(State(state): State<Arc<PrivxState>>) -> Reply {
    Ok(Json(lock(&state.sources).list()).into_response())
}

async fn get_source(State(state): State<Arc<PrivxState>>, Segment(id): Segment) -> Reply {
    Ok(Json(lock(&state.sources).get(&id)?).into_response())
}

async fn refresh_sources(State(state): State<Arc<PrivxState>>, body: Bytes) -> Reply {
    lock(&state.sources).refresh(&body)?;
    Ok(StatusCode::OK.into_response())
}

async fn user_sessions(State(state): State<Arc<PrivxState>>, Segment(user): Segment, query: PairsQuery) -> Reply {
    let paging = paging(query, SESSION_SORT_KEY)?;
    lock(&state.store).check_user(&user)?;
    Ok(Json(lock(&state.sessions).list(&user, &paging)).into_response())
}

async fn terminate_user_sessions(State(state): State<Arc<PrivxState>>, Segment(user): Segment) -> Reply {
    lock(&state.store).check_user(&user)?;
    lock(&state.sessions).terminate_user(&user);
    Ok(StatusCode::OK.into_response())
}

async fn terminate_session(State(state): State<Arc<PrivxState>>, Segment(session): Segment) -> Reply {
    lock(&state.sessions).terminate(&session)?;
    Ok(StatusCode::OK.into_response())
}

async fn terminate_user_connections(State(state): State<Arc<PrivxState>>, Segment(user): Segment) -> Reply {
    lock(&state.store).check_user(&user)?;
    lock(&state.sessions).terminate_connections(&user);
    Ok(StatusCode::OK.into_response())
}

/// The one path parameter of a route; a path that cannot be decoded is answered 404 in PrivX's
/// error shape instead of axum's plain-text rejection.
struct Segment(String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = PrivxError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PrivxError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(Segment(segment)),
            Err(_) => Err(PrivxError::not_found(format!("no such endpoint: {}", parts.uri.path()))),
        }
    }
}

/// The two path parameters of a route (a user and one of its objects), decoded like [`Segment`].
struct Segments(String, String);

impl<S: Send + Sync> FromRequestParts<S> for Segments {
    type Rejection = PrivxError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PrivxError> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((first, second))) => Ok(Segments(first, second)),
            Err(_) => Err(PrivxError::not_found(format!("no such endpoint: {}", parts.uri.path()))),
        }
    }
}
