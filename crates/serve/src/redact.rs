//! Redaction: what every reader of a run is shown — the API, `runbook runs show` and its
//! `--output json` — with remembered secrets scrubbed and fields named like secrets hidden.

use serde_json::Value;

use crate::store::RunRecord;

/// Parts of a name (a field's, a header's; lower case, `-` read as `_`) that say its value is
/// a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "private_key",
    "credential",
    "cookie",
    "signature",
];

/// Whether a name — a field's or a header's — says its value is a secret (`password`,
/// `X-Auth-Token`, `client_secret`, `authorization`, ...): it contains one of the secret words.
pub fn is_secret_field(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// `value` with every remembered secret scrubbed from its strings, and the values of fields
/// named like secrets (`password`, `token`, `authorization`, ...) replaced by `***` whatever
/// their type (a number, a list, a nested map); `null` and booleans say nothing and stay.
pub fn redact_value(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(runbook_core::redact(&s).into_owned()),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        v @ (Value::Null | Value::Bool(_)) => v,
                        _ if is_secret_field(&k) => Value::String("***".to_owned()),
                        other => redact_value(other),
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// A run as every reader is shown it — `GET /api/runs/ID`, `runbook runs show` and its
/// `--output json` — with [`redact_value`] applied to everything it holds.
pub fn redacted(mut run: RunRecord) -> RunRecord {
    let scrub = |v: Value| redact_value(v);
    run.params = match scrub(Value::Object(std::mem::take(&mut run.params))) {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    run.event = run.event.map(scrub);
    run.result = run.result.map(scrub);
    run.error = run.error.map(|e| runbook_core::redact(&e).into_owned());
    run.logs = scrub(std::mem::take(&mut run.logs));
    run.calls = scrub(std::mem::take(&mut run.calls));
    for step in &mut run.steps {
        step.args = scrub(std::mem::take(&mut step.args));
        step.result = step.result.take().map(scrub);
        step.error = step.error.take().and_then(|e| {
            let value = serde_json::to_value(&e).ok()?;
            serde_json::from_value(scrub(value)).ok()
        });
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_named_like_a_secret_is_hidden_whatever_its_value() {
        let shown = redact_value(json!({
            "password": "hunter2-hunter2",
            "api_keys": ["k-1", "k-2"],
            "token": 123_456,
            "secret": {"value": "s"},
            "client_secret": null,
            "has_token": true,
            "user": {"email": "ann@example.com", "auth": {"authorization": "Bearer x"}},
        }));
        assert_eq!(
            shown,
            json!({
                "password": "***",
                "api_keys": "***",
                "token": "***",
                "secret": "***",
                "client_secret": null,
                "has_token": true,
                "user": {"email": "ann@example.com", "auth": {"authorization": "***"}},
            })
        );
    }

    #[test]
    fn headers_and_fields_that_name_a_credential_are_known_as_secrets() {
        for name in [
            "X-Auth-Token",
            "x-api-key",
            "Authorization",
            "db_password",
            "webhook-signature",
        ] {
            assert!(is_secret_field(name), "{name}");
        }
        for name in [
            "author",
            "auth",
            "user-agent",
            "content-type",
            "email",
            "x-request-source",
        ] {
            assert!(!is_secret_field(name), "{name}");
        }
    }
}
