//! Profiles: `[providers.http.profiles.NAME]`, each one API the scripts may reach.
//!
//! ```toml
//! [providers.http.profiles.tickets]
//! base_url = "https://tickets.example.com/api/v2"
//! bearer = "${TICKETS_TOKEN}"
//! headers = { "X-Team" = "secops" }
//! rate_limit = "10/1s"
//! timeout = "20s"
//! max_body = "8MiB"
//! idempotency_header = "Idempotency-Key"
//! ```
//!
//! Every credential becomes a [`Secret`] as it is read, so it is scrubbed from every log line,
//! error, audit record and journal entry from then on.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use runbook_core::http::header::{HeaderName, HeaderValue};
use runbook_core::http::{HttpClient, RateLimit};
use runbook_core::{ConfigError, ProviderConfig, Secret, parse_duration, remember};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::auth::Auth;

/// The largest answer a profile reads unless its `max_body` says.
pub const DEFAULT_MAX_BODY: usize = 8 << 20;

/// A size: a number of bytes, or `"8MiB"`, `"512KiB"`, `"1GiB"`, `"10MB"`, `"2kB"`.
fn parse_size(value: &Value) -> Result<usize, String> {
    let hint = "expected a size like \"8MiB\" or a number of bytes";
    let n = match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| hint.to_owned())?,
        Value::String(text) => runbook_core::parse_size(text).map_err(|_| format!("\"{}\": {hint}", text.trim()))?,
        other => return Err(format!("{hint}, found {other}")),
    };
    if n == 0 {
        return Err("must be more than 0 bytes".to_owned());
    }
    Ok(n)
}

/// How a profile is written in `runbook.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileToml {
    base_url: String,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    secret_url: bool,
    bearer: Option<String>,
    basic: Option<BasicToml>,
    header: Option<HeaderToml>,
    hmac: Option<HmacToml>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    rate_limit: Option<String>,
    timeout: Option<Value>,
    max_body: Option<Value>,
    ca_cert: Option<String>,
    idempotency_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicToml {
    user: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderToml {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HmacToml {
    header: String,
    secret: String,
}

/// One API the scripts may reach.
#[derive(Debug)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// The client: base URL, timeout, CA, rate budget; redirects are never followed.
    pub http: HttpClient,
    /// The base URL, parsed: what every request must stay under.
    pub base: Url,
    /// How requests are authenticated.
    pub auth: Option<Auth>,
    /// Headers sent on every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The header a POST carries its idempotency key in, when the API takes one.
    pub idempotency_header: Option<HeaderName>,
}

/// Reads every profile; fails on the first one that cannot be used, naming it and the setting.
pub fn profiles(config: &ProviderConfig) -> Result<BTreeMap<String, Profile>, ConfigError> {
    config.deny_unknown(&["profiles"])?;
    let Some(table) = config.table_value("profiles") else {
        return Err(not_configured(
            "[providers.http.profiles.NAME] with a base_url, one per API scripts may call",
        ));
    };
    let Value::Object(table) = table else {
        return Err(invalid(
            "profiles in [providers.http]",
            "expected tables: [providers.http.profiles.NAME]".to_owned(),
        ));
    };
    if table.is_empty() {
        return Err(not_configured(
            "[providers.http.profiles.NAME] with a base_url (the table has no profile)",
        ));
    }
    let mut out = BTreeMap::new();
    for (name, raw) in table {
        out.insert(name.clone(), profile(config, name, raw)?);
    }
    Ok(out)
}

/// Profiles live only in the configuration file: no environment variable can hold one.
fn not_configured(what: &str) -> ConfigError {
    ConfigError::Missing {
        provider: crate::NAMESPACE.to_owned(),
        missing: vec![what.to_owned()],
        hint: "in runbook.toml; the README's \"Calling any HTTP API\" shows one per auth kind".to_owned(),
    }
}

fn invalid(setting: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        provider: crate::NAMESPACE.to_owned(),
        setting: setting.to_owned(),
        reason,
    }
}

fn profile(config: &ProviderConfig, name: &str, raw: &Value) -> Result<Profile, ConfigError> {
    let at = |key: &str| format!("{key} in [providers.http.profiles.{name}]");
    let whole = format!("[providers.http.profiles.{name}]");
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || name.is_empty() {
        return Err(invalid(
            &whole,
            "a profile's name is letters, digits, _ and -".to_owned(),
        ));
    }
    let toml: ProfileToml = serde_json::from_value(raw.clone()).map_err(|e| {
        // serde's own words name the unknown or missing key and the known ones; the values it
        // could quote are never secrets' (it quotes keys and types only).
        invalid(&whole, e.to_string())
    })?;

    if toml.secret_url {
        // The URL is the credential (an incoming webhook): scrub it, and its path alone.
        remember(&toml.base_url);
        remember(toml.base_url.trim_end_matches('/'));
    }
    let shown_url = if toml.secret_url {
        "(secret_url)".to_owned()
    } else {
        format!("\"{}\"", toml.base_url)
    };
    let base =
        Url::parse(&toml.base_url).map_err(|e| invalid(&at("base_url"), format!("{shown_url} is not a URL ({e})")))?;
    if toml.secret_url && base.path().len() > 1 {
        remember(base.path());
        remember(base.path().trim_end_matches('/'));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(invalid(
            &at("base_url"),
            "credentials in the URL are not accepted: use basic = { user, password }".to_owned(),
        ));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(invalid(
            &at("base_url"),
            format!("{shown_url} has a query or fragment: give a base URL and pass query parameters per call"),
        ));
    }
    match base.scheme() {
        "https" => {}
        "http" if toml.allow_http || is_loopback(&base) => {}
        "http" => {
            return Err(invalid(
                &at("base_url"),
                format!(
                    "{shown_url} is plain http: credentials and data would cross the network unencrypted. \
                     Use https, or set allow_http = true if you mean it"
                ),
            ));
        }
        other => {
            return Err(invalid(
                &at("base_url"),
                format!("the scheme {other} is not http or https"),
            ));
        }
    }

    let auth = auth(&toml, &at)?;
    let mut headers = Vec::new();
    for (key, value) in &toml.headers {
        let header = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| invalid(&at("headers"), format!("\"{key}\" is not a header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid(&at("headers"), format!("the value of {key} cannot be sent in a header")))?;
        headers.push((header, value));
    }
    let idempotency_header = toml
        .idempotency_header
        .as_deref()
        .map(|h| {
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| invalid(&at("idempotency_header"), format!("\"{h}\" is not a header name")))
        })
        .transpose()?;

    let timeout = match &toml.timeout {
        None => Duration::from_secs(30),
        Some(Value::Number(n)) => Duration::from_secs(
            n.as_u64()
                .ok_or_else(|| invalid(&at("timeout"), "expected a whole number of seconds".to_owned()))?,
        ),
        Some(Value::String(s)) => parse_duration(s).map_err(|reason| invalid(&at("timeout"), reason))?,
        Some(other) => {
            return Err(invalid(
                &at("timeout"),
                format!("expected a duration like \"30s\", found {other}"),
            ));
        }
    };
    let max_body = match &toml.max_body {
        None => DEFAULT_MAX_BODY,
        Some(value) => parse_size(value).map_err(|reason| invalid(&at("max_body"), reason))?,
    };
    let rate_limit = toml
        .rate_limit
        .as_deref()
        .map(|s| s.parse::<RateLimit>())
        .transpose()
        .map_err(|reason| invalid(&at("rate_limit"), reason))?;

    // The budget is the API's, shared by every process using the profile: keyed by its name and
    // host, never by anything secret.
    let budget_key = format!("http profile {name} {}", base.host_str().unwrap_or_default());
    let mut builder = HttpClient::builder(&format!("http profile {name}"), base.as_str())
        .timeout(timeout)
        .max_body(max_body)
        .rate_limit(rate_limit)
        .shared_budget(config.shared_budget(), budget_key)
        .follow_redirects(false);
    if let Some(ca) = &toml.ca_cert {
        // A path, or the PEM text itself (from a variable).
        let (pem, shown) = if ca.contains("-----BEGIN") {
            (ca.as_bytes().to_vec(), "the PEM text given".to_owned())
        } else {
            let pem = std::fs::read(ca).map_err(|e| invalid(&at("ca_cert"), format!("cannot read \"{ca}\": {e}")))?;
            (pem, format!("\"{ca}\""))
        };
        builder = builder
            .add_ca_pem(&pem)
            .map_err(|reason| invalid(&at("ca_cert"), format!("{shown}: {reason}")))?;
        builder = builder.certificate_hint(format!(
            "the server's certificate chains neither to ca_cert of profile {name} ({shown}) nor to a public root"
        ));
    } else {
        builder = builder.certificate_hint(format!(
            "set ca_cert in [providers.http.profiles.{name}] to the PEM of the CA that signed it"
        ));
    }
    let http = builder.build().map_err(|reason| {
        let reason = if toml.secret_url {
            runbook_core::redact(&reason).into_owned()
        } else {
            reason
        };
        invalid(&at("base_url"), reason)
    })?;
    Ok(Profile {
        name: name.to_owned(),
        http,
        base,
        auth,
        headers,
        idempotency_header,
    })
}

fn auth(toml: &ProfileToml, at: &dyn Fn(&str) -> String) -> Result<Option<Auth>, ConfigError> {
    let given: Vec<&str> = [
        ("bearer", toml.bearer.is_some()),
        ("basic", toml.basic.is_some()),
        ("header", toml.header.is_some()),
        ("hmac", toml.hmac.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if given.len() > 1 {
        return Err(invalid(
            &at(&given.join(" and ")),
            "a profile takes one auth: bearer, basic, header or hmac".to_owned(),
        ));
    }
    let header_name = |key: &str, name: &str| {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(&at(key), format!("\"{name}\" is not a header name")))
    };
    let non_empty = |key: &str, value: &str| {
        if value.trim().is_empty() {
            Err(invalid(&at(key), "is empty (an unset variable?)".to_owned()))
        } else {
            Ok(())
        }
    };
    Ok(if let Some(token) = &toml.bearer {
        non_empty("bearer", token)?;
        Some(Auth::Bearer(Secret::new(token.clone())))
    } else if let Some(basic) = &toml.basic {
        non_empty("basic.password", &basic.password)?;
        let password = Secret::new(basic.password.clone());
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", basic.user, password.expose()));
        // The encoding alone would give the password away too.
        remember(&encoded);
        Some(Auth::Header {
            name: runbook_core::http::header::AUTHORIZATION,
            value: Secret::new(format!("Basic {encoded}")),
        })
    } else if let Some(header) = &toml.header {
        non_empty("header.value", &header.value)?;
        Some(Auth::Header {
            name: header_name("header.name", &header.name)?,
            value: Secret::new(header.value.clone()),
        })
    } else if let Some(hmac) = &toml.hmac {
        non_empty("hmac.secret", &hmac.secret)?;
        Some(Auth::Hmac {
            header: header_name("hmac.header", &hmac.header)?,
            secret: Secret::new(hmac.secret.clone()),
        })
    } else {
        None
    })
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(profiles: Value) -> ProviderConfig {
        let mut table = serde_json::Map::new();
        table.insert("profiles".into(), profiles);
        ProviderConfig::from_table("http", table)
    }

    fn error(profiles: Value) -> String {
        profiles_of(profiles).unwrap_err().to_string()
    }

    fn profiles_of(profiles: Value) -> Result<BTreeMap<String, Profile>, ConfigError> {
        super::profiles(&config(profiles))
    }

    #[test]
    fn every_auth_kind_reads_and_hides_its_secret() {
        let all = profiles_of(json!({
            "a": {"base_url": "https://a.example.com/v1", "bearer": "bearer-secret-1"},
            "b": {"base_url": "https://b.example.com", "basic": {"user": "ops", "password": "basic-secret-2"}},
            "c": {"base_url": "https://c.example.com", "header": {"name": "X-Api-Key", "value": "header-secret-3"}},
            "d": {"base_url": "https://d.example.com", "hmac": {"header": "X-Signature", "secret": "hmac-secret-4"}},
            "e": {"base_url": "http://127.0.0.1:9/hooks", "rate_limit": "10/1s", "timeout": "5s"},
        }))
        .unwrap();
        assert_eq!(all.len(), 5);
        let shown = format!("{all:?}");
        for secret in ["bearer-secret-1", "basic-secret-2", "header-secret-3", "hmac-secret-4"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
            assert_eq!(runbook_core::redact(secret), "***");
        }
        assert!(all["e"].auth.is_none());
    }

    #[test]
    fn mistakes_are_named() {
        let e = error(json!({"a": {"base_url": "https://a.example.com", "bearr": "x"}}));
        assert!(
            e.contains("[providers.http.profiles.a]") && e.contains("unknown field `bearr`"),
            "{e}"
        );
        let e = error(json!({"a": {"base_url": "http://a.example.com"}}));
        assert!(e.contains("plain http") && e.contains("allow_http"), "{e}");
        assert!(profiles_of(json!({"a": {"base_url": "http://a.example.com", "allow_http": true}})).is_ok());
        let e = error(
            json!({"a": {"base_url": "https://a.example.com", "bearer": "t1234567", "hmac": {"header": "X-S", "secret": "s1234567"}}}),
        );
        assert!(e.contains("one auth"), "{e}");
        let e = error(json!({"a": {"base_url": "https://u:pw@a.example.com"}}));
        assert!(e.contains("credentials in the URL"), "{e}");
        let e = error(json!({"a": {"base_url": "https://a.example.com", "rate_limit": "lots"}}));
        assert!(e.contains("rate_limit in [providers.http.profiles.a]"), "{e}");
        let e = super::profiles(&ProviderConfig::from_vars("http", [("X", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[providers.http.profiles.NAME]"), "{e}");
    }

    #[test]
    fn a_secret_url_is_never_shown() {
        let e = error(
            json!({"s": {"base_url": "ftp://hooks.example.com/services/T0/B0/secret-path-5", "secret_url": true}}),
        );
        assert!(!e.contains("secret-path-5"), "{e}");
        assert_eq!(
            runbook_core::redact("POST /services/T0/B0/secret-path-5 failed"),
            "POST *** failed"
        );
    }
}
