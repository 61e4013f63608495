//! Secrets that never show themselves.
//!
//! A [`Secret`] prints, debugs and serializes as `***`; the value is reachable only through
//! [`Secret::expose`], at the one place that must send it. Every secret created in the process is
//! also remembered so that [`redact`] can scrub it from any text on its way to a log, an error
//! message or a file — a second line of defence for text that came from somewhere else (a
//! library's log line, a server's error body echoing a request).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{LazyLock, RwLock};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "***";

/// Secrets shorter than this are not scrubbed from text: they would match ordinary words.
const MIN_REDACTED_LEN: usize = 6;

/// How many secrets are remembered at once. A long-lived process meets an endless stream of
/// short-lived ones (every renewed access token); the oldest are forgotten first, and by then the
/// service no longer accepts them. Configured secrets are remembered when the program starts, so
/// this leaves room for a great many renewals before one of them could be forgotten.
const MAX_REMEMBERED: usize = 256;

#[derive(Default)]
struct Known {
    /// Longest first, so that a secret containing another is replaced whole.
    by_length: Vec<String>,
    /// Oldest first.
    by_age: VecDeque<String>,
}

static KNOWN: LazyLock<RwLock<Known>> = LazyLock::new(|| RwLock::new(Known::default()));

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
    if known.by_age.iter().any(|k| k == value) {
        return;
    }
    if known.by_age.len() >= MAX_REMEMBERED
        && let Some(oldest) = known.by_age.pop_front()
        && let Some(i) = known.by_length.iter().position(|k| *k == oldest)
    {
        known.by_length.remove(i);
    }
    let at = known.by_length.partition_point(|k| k.len() >= value.len());
    known.by_length.insert(at, value.to_owned());
    known.by_age.push_back(value.to_owned());
}

/// Replaces every remembered secret in `text` with `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(known) = KNOWN.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for secret in &known.by_length {
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

    #[test]
    fn renewed_tokens_do_not_pile_up() {
        // A week of `runbook serve` renewing a token every few minutes.
        for i in 0..5_000 {
            remember(&format!("access-token-{i:06}"));
        }
        let known = KNOWN.read().unwrap();
        assert_eq!(known.by_length.len(), MAX_REMEMBERED);
        assert_eq!(known.by_age.len(), MAX_REMEMBERED);
        drop(known);
        assert_eq!(
            redact("Bearer access-token-004999"),
            "Bearer ***",
            "the newest is scrubbed"
        );
        assert_eq!(
            redact("access-token-000000"),
            "access-token-000000",
            "the oldest was let go"
        );
    }

    #[test]
    fn a_secret_containing_another_is_replaced_whole() {
        remember("abcdefgh");
        remember("xx-abcdefgh-yy");
        assert_eq!(redact("[xx-abcdefgh-yy] [abcdefgh]"), "[***] [***]");
    }
}
