//! Secrets that never show themselves.
//!
//! A [`Secret`] prints, debugs and serializes as `***`; the value is reachable only through
//! [`Secret::expose`], at the one place that must send it. Every secret created in the process is
//! also remembered so that [`redact`] can scrub it from any text on its way to a log, an error
//! message or a file — a second line of defence for text that came from somewhere else (a
//! library's log line, a server's error body echoing a request).

use std::borrow::Cow;
use std::fmt;
use std::sync::{LazyLock, RwLock};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "***";

/// Secrets shorter than this are not scrubbed from text: they would match ordinary words.
const MIN_REDACTED_LEN: usize = 6;

static KNOWN: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// A value that must not appear in logs, errors, audit trails or output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T: AsRef<str>> Secret<T> {
    /// Wraps a secret and remembers it for [`redact`].
    pub fn new(value: T) -> Self {
        remember(value.as_ref());
        Secret(value)
    }
}

impl<T> Secret<T> {
    /// The value itself. Call this only where the secret is sent.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Remembers a value so that [`redact`] scrubs it. [`Secret::new`] calls this; call it directly
/// for a secret that arrives some other way (a token a service hands out, say).
pub fn remember(value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    let Ok(mut known) = KNOWN.write() else {
        return;
    };
    if !known.iter().any(|k| k == value) {
        known.push(value.to_owned());
        // Longest first, so that a secret containing another is replaced whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// Replaces every remembered secret in `text` with `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(known) = KNOWN.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_itself() {
        let s = Secret::new("hunter2-very-secret".to_owned());
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2-very-secret");
        assert_eq!(redact("token=hunter2-very-secret; done"), "token=***; done");
    }
}
