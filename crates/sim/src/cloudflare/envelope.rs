//! Cloudflare's v4 response envelope and the error codes the simulator answers with.
//!
//! Codes (the API documents only that they are integers ≥ 1000):
//! - 1001 not found (unknown user, nonce, or no last-seen identity) — 404
//! - 1002 invalid request (query, body, JSON) — 400 / 413
//! - 1003 conflict (a user with that email exists) — 409
//! - 1015 rate limited, Cloudflare's well-known rate-limiting error number — 429
//! - 7001 method not allowed — 405
//! - 7003 + 7000 "Could not route to ..., perhaps your object identifier is invalid?" / "No route
//!   for that URI", the pair the real API sends for a path it cannot route (e.g. an account id
//!   that is not 32 hex digits) — 404
//! - 10000 "Authentication error": missing or wrong credentials, or an account the credentials
//!   cannot reach — 403, as the real API answers both
//! - 10001 for injected 5xx faults

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(crate) const NOT_FOUND: u32 = 1001;
pub(crate) const INVALID_REQUEST: u32 = 1002;
pub(crate) const CONFLICT: u32 = 1003;
pub(crate) const RATE_LIMITED: u32 = 1015;
pub(crate) const METHOD_NOT_ALLOWED: u32 = 7001;
pub(crate) const NO_ROUTE: u32 = 7000;
pub(crate) const COULD_NOT_ROUTE: u32 = 7003;
pub(crate) const AUTHENTICATION_ERROR: u32 = 10000;
pub(crate) const SERVER_ERROR: u32 = 10001;

/// A failed request, rendered as the error envelope.
#[derive(Debug, Clone)]
pub(crate) struct CfError {
    status: StatusCode,
    errors: Vec<Value>,
}

impl CfError {
    pub(crate) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> CfError {
        CfError {
            status,
            errors: vec![json!({"code": code, "message": message.into()})],
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> CfError {
        CfError::new(StatusCode::NOT_FOUND, NOT_FOUND, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> CfError {
        CfError::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, message)
    }

    /// A 400 about one field of the JSON body, pointed at with a JSON pointer as the API does.
    pub(crate) fn invalid_field(field: &str, message: impl Into<String>) -> CfError {
        CfError {
            status: StatusCode::BAD_REQUEST,
            errors: vec![json!({
                "code": INVALID_REQUEST,
                "message": message.into(),
                "source": {"pointer": format!("/{field}")},
            })],
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> CfError {
        CfError::new(StatusCode::CONFLICT, CONFLICT, message)
    }

    pub(crate) fn authentication() -> CfError {
        CfError::new(StatusCode::FORBIDDEN, AUTHENTICATION_ERROR, "Authentication error")
    }

    pub(crate) fn no_route(path: &str) -> CfError {
        CfError {
            status: StatusCode::NOT_FOUND,
            errors: vec![
                json!({
                    "code": COULD_NOT_ROUTE,
                    "message": format!("Could not route to {path}, perhaps your object identifier is invalid?"),
                }),
                json!({"code": NO_ROUTE, "message": "No route for that URI"}),
            ],
        }
    }

    /// The envelope for an arbitrary status, used by injected faults.
    pub(crate) fn for_status(status: StatusCode) -> CfError {
        let reason = status.canonical_reason().unwrap_or("Error");
        let code = match status.as_u16() {
            400 => INVALID_REQUEST,
            401 | 403 => AUTHENTICATION_ERROR,
            404 => NOT_FOUND,
            405 => METHOD_NOT_ALLOWED,
            409 => CONFLICT,
            429 => RATE_LIMITED,
            _ => SERVER_ERROR,
        };
        CfError::new(status, code, reason)
    }
}

impl IntoResponse for CfError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "errors": self.errors,
            "messages": [],
            "result": null,
        });
        (self.status, Json(body)).into_response()
    }
}

/// `{"success": true, "errors": [], "messages": [], "result": ...}`.
pub(crate) fn success(status: StatusCode, result: Value) -> Response {
    let body = json!({
        "success": true,
        "errors": [],
        "messages": [],
        "result": result,
    });
    (status, Json(body)).into_response()
}

/// Paging facts of one page of a collection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResultInfo {
    pub(crate) page: u64,
    pub(crate) per_page: u64,
    pub(crate) count: usize,
    pub(crate) total_count: usize,
}

/// A page of a collection: the success envelope plus `result_info`.
pub(crate) fn success_page(items: Vec<Value>, info: ResultInfo) -> Response {
    let total_pages = (info.total_count as u64).div_ceil(info.per_page.max(1));
    let body = json!({
        "success": true,
        "errors": [],
        "messages": [],
        "result": items,
        "result_info": {
            "page": info.page,
            "per_page": info.per_page,
            "count": info.count,
            "total_count": info.total_count,
            "total_pages": total_pages,
        },
    });
    (StatusCode::OK, Json(body)).into_response()
}
