//! PrivX's error bodies: `{"error_code", "error_message", "property"?}` for the API and
//! `{"error", "error_description"}` for the OAuth token endpoint.
//!
//! API error codes (PrivX documents only the shape; `GENERAL_ERROR` appears in its examples):
//! `BAD_REQUEST` 400 (with `property` naming the offending parameter or field), `UNAUTHORIZED`
//! 401, `NOT_FOUND` 404, `METHOD_NOT_ALLOWED` 405, `REQUEST_TOO_LARGE` 413, `TOO_MANY_REQUESTS`
//! 429, `SERVICE_UNAVAILABLE` 503 and `GENERAL_ERROR` for other injected statuses.

use axum::Json;
use axum::http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// A failed API call.
#[derive(Debug, Clone)]
pub(crate) struct PrivxError {
    status: StatusCode,
    code: &'static str,
    message: String,
    property: Option<String>,
}

impl PrivxError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        PrivxError {
            status,
            code,
            message: message.into(),
            property: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        PrivxError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// A 400 about one parameter or field, named in `property`.
    pub(crate) fn bad_property(property: impl Into<String>, message: impl Into<String>) -> Self {
        PrivxError {
            property: Some(property.into()),
            ..PrivxError::bad_request(message)
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        PrivxError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        PrivxError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// The body for an arbitrary status, used by injected faults.
    pub(crate) fn for_status(status: StatusCode) -> Self {
        let code = match status.as_u16() {
            400 => "BAD_REQUEST",
            401 => "UNAUTHORIZED",
            403 => "FORBIDDEN",
            404 => "NOT_FOUND",
            405 => "METHOD_NOT_ALLOWED",
            409 => "CONFLICT",
            413 => "REQUEST_TOO_LARGE",
            429 => "TOO_MANY_REQUESTS",
            503 => "SERVICE_UNAVAILABLE",
            _ => "GENERAL_ERROR",
        };
        PrivxError::new(status, code, status.canonical_reason().unwrap_or("Error"))
    }
}

impl IntoResponse for PrivxError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error_code".to_owned(), Value::from(self.code));
        body.insert("error_message".to_owned(), Value::from(self.message));
        if let Some(property) = self.property {
            body.insert("property".to_owned(), Value::from(property));
        }
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"privx\", error=\"invalid_token\""),
            );
        }
        response
    }
}

/// A refused token request (RFC 6749 §5.2).
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    /// The OAuth client's Basic credentials are missing or wrong.
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
        }
    }

    /// The API client's username or password is wrong.
    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            description: description.into(),
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
        }
    }

    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "unsupported_grant_type",
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"privx\""));
        }
        response
    }
}
