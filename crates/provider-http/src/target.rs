//! The allow-list: a script's `path` stays under its profile's `base_url`.
//!
//! Every check runs before anything is sent, so a refused path never opens a connection. A
//! string path is taken as written — the script's author chose every character — but must not
//! name another place: a scheme (`https://...`, `mailto:`), a `//host`, a backslash (which URL
//! parsers read as a slash), a fragment, or `..` segments (`%2e%2e` too) that climb above the
//! base. An array path is made of values: each element is percent-encoded as exactly one
//! segment, so an id holding `/`, `?` or `..` stays an id. Whatever the path, the URL it makes is
//! parsed the way the HTTP client parses it and must keep the base's scheme, host and port and
//! lie under its path.

use percent_encoding::percent_decode_str;
use runbook_core::http::path as encode_segments;
use serde_json::Value;
use url::Url;

/// The path to send (relative to the base, `""` or starting with `/` or `?`), or why not.
pub fn relative_path(path: &Value) -> Result<String, String> {
    match path {
        Value::String(text) => checked_string(text),
        Value::Array(items) => segments(items),
        other => Err(format!(
            "`path` must be a string or an array of segments, not {}",
            kind(other)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "()",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

fn segments(items: &[Value]) -> Result<String, String> {
    let mut texts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let text = match item {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            other => {
                return Err(format!(
                    "`path` element {i} is {}; segments are strings or integers",
                    kind(other)
                ));
            }
        };
        if text.is_empty() || dot_segment(&text).is_some() {
            return Err(format!(
                "`path` element {i} is \"{text}\": a segment cannot be empty, \".\" or \"..\" (nor \"..;x\", which \
                 Java servers read as \"..\")"
            ));
        }
        texts.push(text);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Ok(encode_segments(&refs))
}

fn checked_string(text: &str) -> Result<String, String> {
    let hint = "pass the path as an array of segments to have each one encoded";
    if text.contains("://") || first_segment_has_scheme(text) {
        return Err(format!(
            "`path` \"{text}\" looks like an absolute URL: paths are relative to the profile's base_url, \
             which alone says where requests go ({hint})"
        ));
    }
    if text.starts_with("//") {
        return Err(format!(
            "`path` \"{text}\" starts with //, which names another host: give a path under the profile's base_url"
        ));
    }
    if text.contains('\\') || text.to_ascii_lowercase().contains("%5c") {
        return Err(format!(
            "`path` \"{text}\" holds a backslash, which URL parsers read as a slash; {hint}"
        ));
    }
    if text.to_ascii_lowercase().contains("%2f") {
        return Err(format!(
            "`path` \"{text}\" holds %2F, an encoded slash, which some servers read as a slash; {hint}"
        ));
    }
    if text.contains('#') {
        return Err(format!(
            "`path` \"{text}\" holds a # (a fragment is never sent); {hint}"
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "`path` \"{}\" holds the character {c:?}; {hint}",
            text.escape_debug()
        ));
    }
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    let mut depth: i64 = 0;
    for segment in path.split('/') {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        match dot_segment(&decoded).unwrap_or(&decoded) {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "`path` \"{text}\" climbs out of the profile's base_url with .. segments"
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    let mut out = String::new();
    if !path.is_empty() {
        out.push('/');
        out.push_str(path);
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// Whether a (decoded) segment is a dot segment: `.` or `..`, also with a path parameter after
/// it (`..;x`), which Tomcat, Jetty and Spring read as `..`.
fn dot_segment(segment: &str) -> Option<&'static str> {
    match segment.split(';').next().unwrap_or_default() {
        "." => Some("."),
        ".." => Some(".."),
        _ => None,
    }
}

/// `scheme:` at the start (a letter, then letters, digits, `+`, `-`, `.`, then a colon before
/// any slash): `mailto:x`, `javascript:`; `users:batch` too — write it `/users:batch`.
fn first_segment_has_scheme(text: &str) -> bool {
    let first = text.split(['/', '?']).next().unwrap_or_default();
    let Some((scheme, _)) = first.split_once(':') else {
        return false;
    };
    !text.starts_with('/')
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Whether `url` (the base joined with a relative path, as the client will send it) stays under
/// `base`: same scheme, host and port, a path equal to the base's or below it, no credentials.
pub fn within(base: &Url, url: &str) -> Result<Url, String> {
    let url = Url::parse(url).map_err(|e| format!("the path does not make a URL ({e})"))?;
    let same_origin = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    if !same_origin {
        return Err("the path leads to another host".to_owned());
    }
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    let under = base_path.is_empty() || path == base_path || path.starts_with(&format!("{base_path}/"));
    if !under {
        return Err(format!(
            "the path leads to {path}, outside the profile's base path {base_path}"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn joined(base: &str, path: Value) -> Result<Url, String> {
        let base_url = Url::parse(base).unwrap();
        let rel = relative_path(&path)?;
        within(&base_url, &format!("{}{rel}", base.trim_end_matches('/')))
    }

    #[test]
    fn plain_paths_and_segments_stay_under_the_base() {
        let base = "https://api.example.com/v1";
        assert_eq!(
            joined(base, json!("users/42?x=1")).unwrap().as_str(),
            "https://api.example.com/v1/users/42?x=1"
        );
        assert_eq!(
            joined(base, json!("/users/42")).unwrap().as_str(),
            "https://api.example.com/v1/users/42"
        );
        assert_eq!(joined(base, json!("")).unwrap().as_str(), "https://api.example.com/v1");
        assert_eq!(
            joined(base, json!(["users", "a/../b?c#d", 7, "mfa"])).unwrap().as_str(),
            "https://api.example.com/v1/users/a%2F..%2Fb%3Fc%23d/7/mfa"
        );
        assert_eq!(
            joined(base, json!("a/../b")).unwrap().as_str(),
            "https://api.example.com/v1/b",
            "a .. that stays inside is fine"
        );
        assert_eq!(
            joined(base, json!("/users:batch")).unwrap().as_str(),
            "https://api.example.com/v1/users:batch"
        );
        assert_eq!(
            joined(base, json!(["users", "a;b", "..x"])).unwrap().as_str(),
            "https://api.example.com/v1/users/a%3Bb/..x",
            "a ; in a segment is encoded, so no server reads a path parameter"
        );
    }

    #[test]
    fn paths_that_leave_the_base_are_refused() {
        let base = "https://api.example.com/v1";
        for bad in [
            json!("https://evil.example/x"),
            json!("HTTP://evil.example"),
            json!("mailto:ops@example.com"),
            json!("//evil.example/x"),
            json!("../admin"),
            json!("/users/../../admin"),
            json!("%2e%2e/admin"),
            json!(".%2E/admin"),
            json!("users\\..\\..\\admin"),
            json!("users%5c..%5cadmin"),
            json!("users#frag"),
            json!("users\n/x"),
            json!(["users", ".."]),
            json!(["users", "..;x"]),
            json!(["users", ".;"]),
            json!("..;/admin"),
            json!("/users/..;x/..;y/admin"),
            json!("%2e%2e%3b/admin"),
            json!("users%2F..%2F..%2Fadmin"),
            json!("users%2f..%2f..%2fadmin"),
            json!(["users", ""]),
            json!(["users", 1.5]),
            json!(42),
        ] {
            assert!(joined(base, bad.clone()).is_err(), "{bad} was let through");
        }
    }

    #[test]
    fn the_final_url_is_checked_whatever_the_path_says() {
        let base = Url::parse("https://api.example.com/v1").unwrap();
        assert!(within(&base, "https://api.example.com/v1/x").is_ok());
        assert!(within(&base, "https://api.example.com/v10").is_err());
        assert!(within(&base, "https://api.example.com:8443/v1/x").is_err());
        assert!(within(&base, "http://api.example.com/v1/x").is_err());
        assert!(within(&base, "https://u:p@api.example.com/v1/x").is_err());
        assert!(within(&base, "https://api.example.com@evil.example/v1").is_err());
    }
}
