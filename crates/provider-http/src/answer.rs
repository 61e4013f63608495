//! What a script gets back: the answer as a record, or a catchable error.

use runbook_core::http::{HttpResponse, Method, header};
use runbook_core::{ActionError, ActionErrorKind, redact};
use serde_json::{Map, Value, json};

/// How much of an error body the error carries (characters).
pub const EXCERPT: usize = 500;

/// `#{status, headers, body}` for a 2xx answer; an error the script can catch for anything else.
/// Secrets the service echoes back are scrubbed from the record like from any other output.
pub fn read(profile: &str, method: &Method, path: &str, response: HttpResponse) -> Result<Value, ActionError> {
    let status = response.status;
    let shown_path = if path.is_empty() { "/" } else { path };
    if (300..400).contains(&status) {
        let location = response
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| redact(l).into_owned())
            .unwrap_or_default();
        return Err(ActionError::new(
            ActionErrorKind::Refused,
            format!(
                "profile \"{profile}\" answered {status} to {method} {shown_path}, redirecting to \"{location}\": \
                 redirects are not followed (one could lead outside the profile). Call the address the API \
                 answers at, or change the profile's base_url"
            ),
        )
        .with_status(status)
        .with_code("redirect")
        .with_field("location", location));
    }
    if !response.is_success() {
        let excerpt = response.excerpt(EXCERPT);
        return Err(ActionError::api(
            status,
            format!("profile \"{profile}\" answered {status} to {method} {shown_path}: {excerpt}"),
        )
        .with_field("body", excerpt));
    }
    let body = if response.body.is_empty() {
        Value::Null
    } else if is_json(&response) {
        serde_json::from_slice(&response.body).map_err(|e| {
            ActionError::invalid_response(format!(
                "profile \"{profile}\" answered {status} to {method} {shown_path} with a JSON content-type but a body \
                 that is not JSON ({e}): {}",
                response.excerpt(120)
            ))
            .with_status(status)
        })?
    } else {
        Value::String(String::from_utf8_lossy(&response.body).into_owned())
    };
    let mut headers = Map::new();
    for name in response.headers.keys() {
        let values: Vec<String> = response
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    let mut record = json!({"status": status, "headers": headers, "body": body});
    scrub(&mut record);
    Ok(record)
}

fn is_json(response: &HttpResponse) -> bool {
    response
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
}

fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(clean) = redact(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}
