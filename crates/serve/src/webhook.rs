//! Verifying a webhook delivery and turning it into the event a script sees.
//!
//! The signature is HMAC-SHA256 of the raw body with the shared secret — or, when the trigger
//! names a timestamp header, of `"{timestamp}.{body}"`, so that a captured delivery cannot be
//! replayed outside the window — sent as `sha256=<hex>` or bare hex, and compared in constant
//! time. The delivery id (the id header, else the body's SHA-256) is the idempotency key.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::WebhookTrigger;

/// Why a delivery was refused; each maps to a status and a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No signature, or a wrong one.
    Signature,
    /// The timestamp is missing, unreadable or outside the replay window.
    Replay,
}

impl Rejection {
    /// The metrics label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Signature => "signature",
            Rejection::Replay => "replay",
        }
    }

    /// What the sender is told.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Signature => "the signature is missing or does not match the body",
            Rejection::Replay => "the timestamp is missing or outside the replay window",
        }
    }
}

/// Checks a delivery's signature (and timestamp). `now` is unix seconds.
pub fn verify(trigger: &WebhookTrigger, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let mut mac =
        Hmac::<Sha256>::new_from_slice(trigger.secret.expose().as_bytes()).map_err(|_| Rejection::Signature)?;
    if let Some(ts_header) = &trigger.timestamp_header {
        let sent: i64 = header(ts_header)
            .and_then(|v| v.parse().ok())
            .ok_or(Rejection::Replay)?;
        let window = i64::try_from(trigger.replay_window.as_secs()).unwrap_or(i64::MAX);
        if (now - sent).abs() > window {
            return Err(Rejection::Replay);
        }
        mac.update(sent.to_string().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    let given = header(&trigger.signature_header).ok_or(Rejection::Signature)?;
    let hex_part = given.strip_prefix("sha256=").unwrap_or(given);
    let bytes = hex::decode(hex_part).map_err(|_| Rejection::Signature)?;
    // `verify_slice` compares in constant time.
    mac.verify_slice(&bytes).map_err(|_| Rejection::Signature)
}

/// The delivery's id: the id header when the trigger names one and it is present, else the
/// body's SHA-256 (so that the same body twice is the same delivery).
pub fn delivery_id(trigger: &WebhookTrigger, headers: &HeaderMap, body: &[u8]) -> String {
    trigger
        .id_header
        .as_deref()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(body))))
}

/// Headers a script never sees: credentials of any kind.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-api-key",
    "x-auth-key",
    "x-auth-token",
];

/// The event: `#{ body, headers, received_at, delivery_id }`. A JSON body is parsed; any other
/// body is kept as text. Headers lose their credentials and the signature.
pub fn event(
    trigger: &WebhookTrigger,
    headers: &HeaderMap,
    body: &[u8],
    delivery_id: &str,
    received_at: &str,
) -> Value {
    let mut kept = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        if SECRET_HEADERS.contains(&name) || name == trigger.signature_header {
            continue;
        }
        if let Ok(v) = value.to_str() {
            kept.insert(name.to_owned(), Value::String(v.to_owned()));
        }
    }
    let body = serde_json::from_slice::<Value>(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    json!({"body": body, "headers": kept, "received_at": received_at, "delivery_id": delivery_id})
}

/// Signs `body` as a sender would (for tests, benchmarks and `runbook` users' own tools).
pub fn sign(secret: &str, timestamp: Option<i64>, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    if let Some(ts) = timestamp {
        mac.update(ts.to_string().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_core::Secret;
    use std::time::Duration;

    fn trigger(timestamp: bool) -> WebhookTrigger {
        WebhookTrigger {
            path: "/hooks/t".into(),
            secret: Secret::new("webhook-secret-1".to_owned()),
            signature_header: "x-signature-256".into(),
            id_header: Some("x-delivery-id".into()),
            timestamp_header: timestamp.then(|| "x-timestamp".to_owned()),
            replay_window: Duration::from_secs(300),
        }
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn signatures_are_checked_with_or_without_prefix() {
        let body = br#"{"user":"ann"}"#;
        let good = sign("webhook-secret-1", None, body);
        assert_eq!(
            verify(&trigger(false), &headers(&[("x-signature-256", good.clone())]), body, 0),
            Ok(())
        );
        let bare = good.trim_start_matches("sha256=").to_owned();
        assert_eq!(
            verify(&trigger(false), &headers(&[("x-signature-256", bare)]), body, 0),
            Ok(())
        );
        let wrong = sign("another-secret", None, body);
        assert_eq!(
            verify(&trigger(false), &headers(&[("x-signature-256", wrong)]), body, 0),
            Err(Rejection::Signature)
        );
        assert_eq!(
            verify(&trigger(false), &headers(&[]), body, 0),
            Err(Rejection::Signature)
        );
        assert_eq!(
            verify(&trigger(false), &headers(&[("x-signature-256", good)]), b"tampered", 0),
            Err(Rejection::Signature)
        );
    }

    #[test]
    fn timestamps_bound_the_replay_window() {
        let body = b"{}";
        let at = 1_800_000_000;
        let sig = sign("webhook-secret-1", Some(at), body);
        let h = headers(&[("x-signature-256", sig), ("x-timestamp", at.to_string())]);
        assert_eq!(verify(&trigger(true), &h, body, at + 10), Ok(()));
        assert_eq!(verify(&trigger(true), &h, body, at + 301), Err(Rejection::Replay));
    }

    #[test]
    fn the_event_keeps_no_credentials() {
        let h = headers(&[
            ("authorization", "Bearer x".into()),
            ("x-signature-256", "sha256=00".into()),
            ("x-delivery-id", "d1".into()),
            ("content-type", "application/json".into()),
        ]);
        let e = event(&trigger(false), &h, br#"{"a":1}"#, "d1", "2026-11-23T10:00:00Z");
        assert_eq!(e["body"]["a"], 1);
        assert_eq!(
            e["headers"],
            json!({"x-delivery-id": "d1", "content-type": "application/json"})
        );
        assert_eq!(delivery_id(&trigger(false), &h, b"x"), "d1");
        assert!(delivery_id(&trigger(false), &HeaderMap::new(), b"x").starts_with("sha256:"));
    }
}
