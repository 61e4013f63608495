//! Verifying a webhook delivery and turning it into the event a script sees.
//!
//! Three signature schemes (see [`Scheme`]), all HMAC-SHA256 compared in constant time:
//!
//! * `hmac-sha256` (the default): `"{timestamp}.{body}"` signed, `X-Signature-256: sha256=<hex>`
//!   (or bare hex), `X-Timestamp` in unix seconds, `X-Delivery-Id` optional. With
//!   `require_timestamp = false` only the body is signed and a captured delivery can be replayed.
//! * `github`: the body signed, `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Delivery` the id.
//! * `standard-webhooks`: `"{id}.{timestamp}.{body}"` signed, `webhook-signature` a
//!   space-separated list of `v1,<base64>`, `webhook-id`, `webhook-timestamp`.
//!
//! Checking happens in two steps so that nothing is read for a request that cannot be a
//! delivery: [`precheck`] looks at the headers only (the signature's presence and syntax, the
//! timestamp's window, the id); [`Pending::update`] then takes the body as it arrives and
//! [`Pending::finish`] compares the MAC.
//!
//! A verified delivery has dedup keys ([`Verified::keys`]): its id, and (except for
//! `standard-webhooks`, whose id is signed, and a waived timestamp) its signature, so that a
//! captured delivery re-sent under a new id is the same delivery.

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::config::{Scheme, WebhookTrigger};

/// Why a delivery was refused; each maps to a status and a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No signature header, or one that cannot be a signature of this scheme.
    Malformed,
    /// The signature does not match the body.
    Signature,
    /// The timestamp is missing, unreadable or outside the replay window.
    Replay,
    /// The scheme's id header is missing.
    Id,
}

impl Rejection {
    /// The metrics label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Malformed | Rejection::Signature => "signature",
            Rejection::Replay => "replay",
            Rejection::Id => "id",
        }
    }

    /// What the sender is told.
    pub fn message(self, trigger: &WebhookTrigger) -> String {
        match self {
            Rejection::Malformed => format!(
                "the {} header is missing or is not a {} signature ({})",
                trigger.signature_header,
                trigger.scheme.as_str(),
                signature_syntax(trigger.scheme)
            ),
            Rejection::Signature => "the signature does not match the delivery".to_owned(),
            Rejection::Replay => format!(
                "the {} header is missing, not unix seconds, or outside the replay window",
                trigger.timestamp_header.as_deref().unwrap_or("timestamp")
            ),
            Rejection::Id => format!(
                "the {} header (the delivery id) is missing",
                trigger.id_header.as_deref().unwrap_or("id")
            ),
        }
    }
}

fn signature_syntax(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::HmacSha256 => "sha256=<64 hex digits>",
        Scheme::Github => "sha256=<64 hex digits>",
        Scheme::StandardWebhooks => "space-separated v1,<base64>",
    }
}

/// The HMAC key of a trigger's secret: for `standard-webhooks`, a `whsec_` secret is decoded
/// from base64 (checked at start); otherwise the secret's bytes.
fn key(trigger: &WebhookTrigger) -> Vec<u8> {
    let secret = trigger.secret.expose();
    if trigger.scheme == Scheme::StandardWebhooks
        && let Some(encoded) = secret.strip_prefix("whsec_")
        && let Ok(key) = base64::engine::general_purpose::STANDARD.decode(encoded)
    {
        return key;
    }
    secret.as_bytes().to_vec()
}

/// A delivery whose headers passed: its MAC is computed as the body arrives.
pub struct Pending {
    mac: Hmac<Sha256>,
    given: Vec<Vec<u8>>,
    id: Option<String>,
    scheme: Scheme,
    timestamped: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A delivery whose signature matched.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The id the sender gave (the id header), if any.
    pub id: Option<String>,
    mac_hex: String,
    scheme: Scheme,
    timestamped: bool,
}

impl Verified {
    /// The key the run is stored under (`None`: the delivery cannot be told from another one,
    /// only a waived timestamp without an id) and every key that makes a later delivery a
    /// duplicate of this one: the id, and the signature except for `standard-webhooks` (whose
    /// id is signed) and a waived timestamp (whose signature repeats for equal bodies).
    pub fn keys(&self) -> (Option<String>, Vec<String>) {
        let mut keys = Vec::new();
        if let Some(id) = &self.id {
            keys.push(id.clone());
        }
        let signature_dedups =
            self.scheme != Scheme::StandardWebhooks && (self.timestamped || self.scheme == Scheme::Github);
        if signature_dedups {
            keys.push(format!("mac:{}", self.mac_hex));
        }
        (keys.first().cloned(), keys)
    }
}

impl Pending {
    /// Takes the next part of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.mac.update(chunk);
    }

    /// Compares the MAC of everything given to [`Pending::update`] with the signatures sent.
    pub fn finish(self) -> Result<Verified, Rejection> {
        let computed = self.mac.finalize().into_bytes();
        // Constant time per signature; the number of signatures sent is not a secret.
        let matched = self.given.iter().any(|g| {
            g.len() == computed.len() && bool::from(subtle::ConstantTimeEq::ct_eq(g.as_slice(), computed.as_slice()))
        });
        if !matched {
            return Err(Rejection::Signature);
        }
        Ok(Verified {
            id: self.id,
            mac_hex: hex::encode(computed),
            scheme: self.scheme,
            timestamped: self.timestamped,
        })
    }
}

/// Checks what the headers alone can tell (`now` is unix seconds): the signature header is
/// there and well formed, the timestamp (when the scheme signs one) is inside the replay window,
/// the id is there when the scheme signs it. The body is not needed and should not be read when
/// this fails.
pub fn precheck(trigger: &WebhookTrigger, headers: &HeaderMap, now: i64) -> Result<Pending, Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let raw = header(&trigger.signature_header).ok_or(Rejection::Malformed)?;
    let given = parse_signatures(trigger.scheme, raw).ok_or(Rejection::Malformed)?;
    let id = trigger
        .id_header
        .as_deref()
        .and_then(header)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    if trigger.scheme == Scheme::StandardWebhooks && id.is_none() {
        return Err(Rejection::Id);
    }
    let timestamp = match &trigger.timestamp_header {
        None => None,
        Some(h) => {
            let sent: i64 = header(h).and_then(|v| v.parse().ok()).ok_or(Rejection::Replay)?;
            let window = i64::try_from(trigger.replay_window.as_secs()).unwrap_or(i64::MAX);
            if now.saturating_sub(sent).saturating_abs() > window {
                return Err(Rejection::Replay);
            }
            Some(sent)
        }
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(trigger)).map_err(|_| Rejection::Signature)?;
    match trigger.scheme {
        Scheme::StandardWebhooks => {
            mac.update(id.as_deref().unwrap_or("").as_bytes());
            mac.update(b".");
            mac.update(timestamp.unwrap_or(0).to_string().as_bytes());
            mac.update(b".");
        }
        Scheme::HmacSha256 => {
            if let Some(ts) = timestamp {
                mac.update(ts.to_string().as_bytes());
                mac.update(b".");
            }
        }
        Scheme::Github => {}
    }
    Ok(Pending {
        mac,
        given,
        id,
        scheme: trigger.scheme,
        timestamped: timestamp.is_some(),
    })
}

/// The signatures a header carries, or `None` when it carries none this scheme could have made.
fn parse_signatures(scheme: Scheme, raw: &str) -> Option<Vec<Vec<u8>>> {
    let hex_mac = |text: &str| Some(text).filter(|t| t.len() == 64).and_then(|t| hex::decode(t).ok());
    match scheme {
        Scheme::Github => raw.strip_prefix("sha256=").and_then(hex_mac).map(|s| vec![s]),
        Scheme::HmacSha256 => hex_mac(raw.strip_prefix("sha256=").unwrap_or(raw)).map(|s| vec![s]),
        Scheme::StandardWebhooks => {
            // Other versions (v1a, asymmetric) are not this scheme's and are passed over.
            let v1: Vec<Vec<u8>> = raw
                .split(' ')
                .filter_map(|entry| entry.split_once(','))
                .filter(|(version, _)| *version == "v1")
                .filter_map(|(_, sig)| base64::engine::general_purpose::STANDARD.decode(sig).ok())
                .filter(|sig| sig.len() == 32)
                .collect();
            (!v1.is_empty()).then_some(v1)
        }
    }
}

/// Checks a whole delivery at once ([`precheck`], then the body).
pub fn verify(trigger: &WebhookTrigger, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, Rejection> {
    let mut pending = precheck(trigger, headers, now)?;
    pending.update(body);
    pending.finish()
}

/// Headers every event keeps (besides the scheme's id and timestamp headers).
const ALWAYS_KEPT: &[&str] = &["content-type", "user-agent"];

/// The event headers GitHub sends besides the id and signature.
const GITHUB_KEPT: &[&str] = &[
    "x-github-event",
    "x-github-hook-id",
    "x-github-hook-installation-target-id",
    "x-github-hook-installation-target-type",
];

/// Whether the event keeps header `name` (lower case): an allow-list of the scheme's headers
/// and `keep_headers`, never the signature or a credential.
pub fn keeps_header(trigger: &WebhookTrigger, name: &str) -> bool {
    if name == trigger.signature_header || crate::config::is_credential_header(name) {
        return false;
    }
    ALWAYS_KEPT.contains(&name)
        || trigger.id_header.as_deref() == Some(name)
        || trigger.timestamp_header.as_deref() == Some(name)
        || (trigger.scheme == Scheme::Github && GITHUB_KEPT.contains(&name))
        || trigger.keep_headers.iter().any(|h| h == name)
}

/// The event: `#{ body, headers, received_at, delivery_id }`. A JSON body is parsed; any other
/// body is kept as text. Only allowed headers are kept ([`keeps_header`]).
pub fn event(
    trigger: &WebhookTrigger,
    headers: &HeaderMap,
    body: &[u8],
    delivery_id: &str,
    received_at: &str,
) -> Value {
    let mut kept = Map::new();
    for (name, value) in headers {
        if !keeps_header(trigger, name.as_str()) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            kept.insert(name.as_str().to_owned(), Value::String(v.to_owned()));
        }
    }
    let body = serde_json::from_slice::<Value>(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    json!({"body": body, "headers": kept, "received_at": received_at, "delivery_id": delivery_id})
}

/// What serve prints at start for a webhook: the scheme and the headers a sender must send.
pub fn describe(trigger: &WebhookTrigger) -> String {
    match trigger.scheme {
        Scheme::HmacSha256 => match &trigger.timestamp_header {
            Some(ts) => format!(
                "scheme hmac-sha256: {}: sha256=<hex HMAC-SHA256 of \"<{ts}>.<body>\">, {ts}: <unix seconds> (window {}), {} optional (the delivery id)",
                trigger.signature_header,
                humantime::format_duration(trigger.replay_window),
                trigger.id_header.as_deref().unwrap_or("x-delivery-id"),
            ),
            None => format!(
                "scheme hmac-sha256 WITHOUT a timestamp (require_timestamp = false): {}: sha256=<hex HMAC-SHA256 of the body>, {} (the delivery id; the only dedup: a captured delivery re-sent under a new id starts a new run)",
                trigger.signature_header,
                trigger.id_header.as_deref().unwrap_or("x-delivery-id"),
            ),
        },
        Scheme::Github => {
            "scheme github: x-hub-signature-256: sha256=<hex HMAC-SHA256 of the body>, x-github-delivery (the id); deduplicated on the id and the signature".to_owned()
        }
        Scheme::StandardWebhooks => format!(
            "scheme standard-webhooks: webhook-id, webhook-timestamp (window {}), webhook-signature: v1,<base64 HMAC-SHA256 of \"<id>.<timestamp>.<body>\">",
            humantime::format_duration(trigger.replay_window)
        ),
    }
}

/// Signs `body` for the `hmac-sha256` scheme as a sender would (for tests, benchmarks and
/// `runbook` users' own tools): `sha256=<hex>` of `"{timestamp}.{body}"`, or of the body alone
/// without a timestamp (also GitHub's signature).
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

/// Signs a delivery for the `standard-webhooks` scheme: `v1,<base64>` of `"{id}.{timestamp}.{body}"`
/// with the key of `secret` (a `whsec_` secret is base64 of the key).
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default(),
        None => secret.as_bytes().to_vec(),
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_core::Secret;
    use std::time::Duration;

    const SECRET: &str = "webhook-secret-of-24-bytes-or-more";

    fn trigger(scheme: Scheme, timestamp: bool) -> WebhookTrigger {
        let (signature_header, id_header, timestamp_header) = match scheme {
            Scheme::HmacSha256 => (
                "x-signature-256",
                Some("x-delivery-id"),
                timestamp.then_some("x-timestamp"),
            ),
            Scheme::Github => ("x-hub-signature-256", Some("x-github-delivery"), None),
            Scheme::StandardWebhooks => ("webhook-signature", Some("webhook-id"), Some("webhook-timestamp")),
        };
        WebhookTrigger {
            path: "/hooks/t".into(),
            secret: Secret::new(SECRET.to_owned()),
            scheme,
            signature_header: signature_header.into(),
            id_header: id_header.map(str::to_owned),
            timestamp_header: timestamp_header.map(str::to_owned),
            replay_window: Duration::from_secs(300),
            keep_headers: vec!["x-request-source".into()],
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
    fn hmac_sha256_signs_the_timestamp_and_the_body() {
        let t = trigger(Scheme::HmacSha256, true);
        let body = br#"{"user":"ann"}"#;
        let at = 1_800_000_000;
        let good = sign(SECRET, Some(at), body);
        let ok = |sig: String, ts: i64, body: &[u8], now: i64| {
            verify(
                &t,
                &headers(&[("x-signature-256", sig), ("x-timestamp", ts.to_string())]),
                body,
                now,
            )
        };
        assert!(ok(good.clone(), at, body, at + 10).is_ok());
        let bare = good.trim_start_matches("sha256=").to_owned();
        assert!(ok(bare, at, body, at).is_ok());
        // Another timestamp without signing again: the signature no longer matches.
        assert_eq!(ok(good.clone(), at + 1, body, at).unwrap_err(), Rejection::Signature);
        assert_eq!(ok(good.clone(), at, b"tampered", at).unwrap_err(), Rejection::Signature);
        assert_eq!(
            ok(sign("another-secret-of-24-bytes!!", Some(at), body), at, body, at).unwrap_err(),
            Rejection::Signature
        );
        // Outside the window, either side.
        assert_eq!(ok(good.clone(), at, body, at + 301).unwrap_err(), Rejection::Replay);
        assert_eq!(ok(good.clone(), at, body, at - 301).unwrap_err(), Rejection::Replay);
        // No timestamp, no signature, a signature that is not one: refused on the headers alone.
        let h = headers(&[("x-signature-256", good.clone())]);
        assert_eq!(precheck(&t, &h, at).unwrap_err(), Rejection::Replay);
        let h = headers(&[("x-timestamp", at.to_string())]);
        assert_eq!(precheck(&t, &h, at).unwrap_err(), Rejection::Malformed);
        let h = headers(&[("x-signature-256", "sha256=zz".into()), ("x-timestamp", at.to_string())]);
        assert_eq!(precheck(&t, &h, at).unwrap_err(), Rejection::Malformed);
    }

    #[test]
    fn hmac_sha256_dedups_on_the_signature_and_the_id() {
        let t = trigger(Scheme::HmacSha256, true);
        let at = 1_800_000_000;
        let sig = sign(SECRET, Some(at), b"{}");
        let with_id = headers(&[
            ("x-signature-256", sig.clone()),
            ("x-timestamp", at.to_string()),
            ("x-delivery-id", "d1".into()),
        ]);
        let (key, keys) = verify(&t, &with_id, b"{}", at).unwrap().keys();
        assert_eq!(key.as_deref(), Some("d1"));
        assert_eq!(keys.len(), 2);
        assert!(keys[1].starts_with("mac:"));
        let relabelled = headers(&[
            ("x-signature-256", sig.clone()),
            ("x-timestamp", at.to_string()),
            ("x-delivery-id", "d2".into()),
        ]);
        let (_, keys2) = verify(&t, &relabelled, b"{}", at).unwrap().keys();
        assert_eq!(
            keys[1], keys2[1],
            "the same signature under another id is the same delivery"
        );
        // The same body at another time is another delivery.
        let later = headers(&[
            ("x-signature-256", sign(SECRET, Some(at + 1), b"{}")),
            ("x-timestamp", (at + 1).to_string()),
        ]);
        let (key3, keys3) = verify(&t, &later, b"{}", at).unwrap().keys();
        assert_eq!(key3.as_deref(), Some(keys3[0].as_str()));
        assert_ne!(keys3[0], keys[1]);
    }

    #[test]
    fn a_waived_timestamp_signs_the_body_and_dedups_on_the_id_only() {
        let t = trigger(Scheme::HmacSha256, false);
        let sig = sign(SECRET, None, b"{}");
        let h = headers(&[("x-signature-256", sig.clone()), ("x-delivery-id", "d1".into())]);
        let (key, keys) = verify(&t, &h, b"{}", 0).unwrap().keys();
        assert_eq!((key.as_deref(), keys.len()), (Some("d1"), 1));
        let (key, keys) = verify(&t, &headers(&[("x-signature-256", sig)]), b"{}", 0)
            .unwrap()
            .keys();
        assert_eq!((key, keys.len()), (None, 0));
    }

    #[test]
    fn github_signs_the_body_and_dedups_on_id_and_signature() {
        let t = trigger(Scheme::Github, false);
        let body = br#"{"action":"opened"}"#;
        let sig = sign(SECRET, None, body);
        let h = headers(&[("x-hub-signature-256", sig.clone()), ("x-github-delivery", "g1".into())]);
        let (key, keys) = verify(&t, &h, body, 0).unwrap().keys();
        assert_eq!(key.as_deref(), Some("g1"));
        assert_eq!(keys.len(), 2);
        // GitHub's signature always carries its prefix.
        let bare = headers(&[("x-hub-signature-256", sig.trim_start_matches("sha256=").to_owned())]);
        assert_eq!(precheck(&t, &bare, 0).unwrap_err(), Rejection::Malformed);
        let wrong = headers(&[("x-hub-signature-256", sign(SECRET, None, b"other"))]);
        assert_eq!(verify(&t, &wrong, body, 0).unwrap_err(), Rejection::Signature);
    }

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn standard_webhooks_matches_the_specifications_vector() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
        let at = 1_649_367_553;
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let expected = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        assert_eq!(sign_standard(secret, id, at, body), expected);
        let mut t = trigger(Scheme::StandardWebhooks, true);
        t.secret = Secret::new(secret.to_owned());
        let h = |sig: &str, id: &str, ts: i64| {
            headers(&[
                ("webhook-signature", sig.to_owned()),
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts.to_string()),
            ])
        };
        let verified = verify(&t, &h(expected, id, at), body, at + 60).unwrap();
        assert_eq!(verified.keys(), (Some(id.to_owned()), vec![id.to_owned()]));
        // Several signatures (a secret being rotated), other versions passed over.
        let several = format!("v1a,AAAA v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= {expected}");
        assert!(verify(&t, &h(&several, id, at), body, at).is_ok());
        // The id and the timestamp are signed.
        assert_eq!(
            verify(&t, &h(expected, "msg_other", at), body, at).unwrap_err(),
            Rejection::Signature
        );
        assert_eq!(
            verify(&t, &h(expected, id, at + 1), body, at).unwrap_err(),
            Rejection::Signature
        );
        assert_eq!(
            verify(&t, &h(expected, id, at), body, at + 301).unwrap_err(),
            Rejection::Replay
        );
        assert_eq!(
            precheck(&t, &h("v1a,AAAA", id, at), at).unwrap_err(),
            Rejection::Malformed
        );
        let no_id = headers(&[
            ("webhook-signature", expected.to_owned()),
            ("webhook-timestamp", at.to_string()),
        ]);
        assert_eq!(precheck(&t, &no_id, at).unwrap_err(), Rejection::Id);
    }

    #[test]
    fn the_event_keeps_allowed_headers_only() {
        let h = headers(&[
            ("authorization", "Bearer x".into()),
            ("x-gitlab-token", "glt".into()),
            ("x-signature-256", "sha256=00".into()),
            ("x-delivery-id", "d1".into()),
            ("x-request-source", "siem".into()),
            ("x-forwarded-for", "10.0.0.1".into()),
            ("content-type", "application/json".into()),
        ]);
        let e = event(
            &trigger(Scheme::HmacSha256, true),
            &h,
            br#"{"a":1}"#,
            "d1",
            "2026-11-23T10:00:00Z",
        );
        assert_eq!(e["body"]["a"], 1);
        assert_eq!(
            e["headers"],
            json!({"x-delivery-id": "d1", "content-type": "application/json", "x-request-source": "siem"})
        );
        let gh = headers(&[
            ("x-github-event", "push".into()),
            ("x-hub-signature-256", "sha256=00".into()),
        ]);
        let e = event(
            &trigger(Scheme::Github, false),
            &gh,
            b"{}",
            "g1",
            "2026-11-23T10:00:00Z",
        );
        assert_eq!(e["headers"], json!({"x-github-event": "push"}));
    }
}
