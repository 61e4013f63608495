//! Faults a test can inject to see how a client copes with a misbehaving service or proxy.

/// What the next requests answer instead of their normal response. See
/// [`CloudflareSim::inject`](crate::CloudflareSim::inject).
///
/// A faulted request never reaches the API logic: it changes no state, is not counted by the
/// rate limiter and carries no rate-limit headers. A status outside 200..=599 is served as 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with the API's own error body (Cloudflare's envelope, PrivX's `error_code`).
    Status(u16),
    /// 200 with a `Content-Type: application/json` body cut in half, as a dropped connection
    /// behind a buffering proxy would deliver it.
    TruncatedJson,
    /// An HTML error page like a reverse proxy's, with this status.
    Html(u16),
    /// This status with an empty body.
    Empty(u16),
}

impl Fault {
    /// The status to answer with, clamped to one an HTTP client can receive as a final answer.
    pub(crate) fn status(&self) -> axum::http::StatusCode {
        let code = match self {
            Fault::Status(code) | Fault::Html(code) | Fault::Empty(code) => *code,
            Fault::TruncatedJson => 200,
        };
        if (200..=599).contains(&code) {
            axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// A reverse proxy's error page, as clients meet it when the API's own server is not answering.
pub(crate) fn html_page(status: axum::http::StatusCode, server: &str) -> String {
    let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("Error"));
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    )
}

/// The first half of `document`, cut on a character boundary.
pub(crate) fn truncated(document: &str) -> String {
    let mut cut = document.len() / 2;
    while !document.is_char_boundary(cut) {
        cut -= 1;
    }
    document[..cut].to_owned()
}

/// A response with a body of the given media type.
pub(crate) fn with_content_type(
    status: axum::http::StatusCode,
    body: String,
    content_type: &'static str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(content_type),
        )],
        body,
    )
        .into_response()
}
