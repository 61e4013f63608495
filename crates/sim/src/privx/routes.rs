//! The role-store endpoints and the token endpoint, mounted at the deployment root.

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
use super::role_store::MfaAction;
use super::search::{Criteria, Paging};
use crate::gate::gate;
use crate::lock::lock;

const USERS: &str = "/role-store/api/v1/users";

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
        .route("/role-store/api/v1/roles", get(list_roles))
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

async fn search_users(
    State(state): State<Arc<PrivxState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Bytes,
) -> Reply {
    let Query(pairs) = query.map_err(|e| PrivxError::bad_request(format!("invalid query: {e}")))?;
    let paging = Paging::parse(&pairs)?;
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

async fn list_roles(State(state): State<Arc<PrivxState>>) -> Reply {
    let roles = lock(&state.store).roles();
    Ok(Json(json!({"count": roles.len(), "items": roles})).into_response())
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
