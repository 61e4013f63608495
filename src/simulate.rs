//! The simulators, for `--simulate` and `runbook sim`: start them from a fixture (or the demo
//! tenant) and tell the providers, or the user, where they are.

use std::net::SocketAddr;
use std::path::Path;

use runbook_sim::{Fixture, SimOptions, Simulators};
use serde_json::{Map, Value, json};

use crate::commands::Overrides;
use crate::error::CliError;

/// The demo tenant: `scripts/fixtures/demo-tenant.json`, built in.
pub const DEMO_TENANT: &str = include_str!("../scripts/fixtures/demo-tenant.json");

/// Running simulators and how to reach them.
pub struct Simulation {
    /// The servers.
    pub sims: Simulators,
}

impl Simulation {
    /// Starts both simulators on loopback, seeded from `fixture` or the demo tenant.
    pub async fn start(
        fixture: Option<&Path>,
        options: SimOptions,
        cloudflare_addr: Option<SocketAddr>,
        privx_addr: Option<SocketAddr>,
    ) -> Result<Simulation, CliError> {
        let fixture = load_fixture(fixture)?;
        let failed = |e: std::io::Error| CliError::usage(format!("cannot start the simulators: {e}"));
        let sims = match (cloudflare_addr, privx_addr) {
            (None, None) => Simulators::start(fixture, options).await.map_err(failed)?,
            (cf, px) => {
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                let (cf, px) = (cf.unwrap_or(any), px.unwrap_or(any));
                let cloudflare = runbook_sim::CloudflareSim::start_on(cf, fixture.cloudflare, options.clone())
                    .await
                    .map_err(|e| not_started("Cloudflare", "--cloudflare-addr", e))?;
                let privx = runbook_sim::PrivxSim::start_on(px, fixture.privx, options)
                    .await
                    .map_err(|e| not_started("PrivX", "--privx-addr", e))?;
                Simulators { cloudflare, privx }
            }
        };
        Ok(Simulation { sims })
    }

    /// Provider settings pointing at the simulators.
    pub fn overrides(&self) -> Overrides {
        let cf = &self.sims.cloudflare;
        let px = &self.sims.privx;
        let mut privx = json!({
            "base_url": px.base_url(),
            "api_client_id": px.api_client_id(),
            "api_client_secret": px.api_client_secret(),
            "oauth_client_id": px.oauth_client_id(),
            "oauth_client_secret": px.oauth_client_secret(),
        });
        if let Some(ca) = px.ca_cert_pem() {
            privx["ca_cert"] = Value::String(ca);
        }
        vec![
            (
                "cloudflare".to_owned(),
                as_map(json!({"base_url": cf.base_url(), "account_id": cf.account_id(), "api_token": cf.api_token()})),
            ),
            ("privx".to_owned(), as_map(privx)),
        ]
    }

    /// The environment variables the providers read, with the simulators' values.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let cf = &self.sims.cloudflare;
        let px = &self.sims.privx;
        let mut vars = vec![
            ("CLOUDFLARE_BASE_URL", cf.base_url()),
            ("CLOUDFLARE_API_TOKEN", cf.api_token()),
            ("CLOUDFLARE_ACCOUNT_ID", cf.account_id()),
            ("PRIVX_API_BASE_URL", px.base_url()),
            ("PRIVX_API_CLIENT_ID", px.api_client_id()),
            ("PRIVX_API_CLIENT_SECRET", px.api_client_secret()),
            ("PRIVX_API_OAUTH_CLIENT_ID", px.oauth_client_id()),
            ("PRIVX_API_OAUTH_CLIENT_SECRET", px.oauth_client_secret()),
        ];
        if let Some(ca) = px.ca_cert_pem() {
            vars.push(("PRIVX_API_CA_CERT", ca));
        }
        vars
    }

    /// Stops both servers.
    pub async fn shutdown(self) {
        self.sims.shutdown().await;
    }
}

/// Why a simulator could not listen, and what to do about a busy address.
fn not_started(which: &str, flag: &str, e: std::io::Error) -> CliError {
    let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            ": another program (perhaps another runbook sim) listens there; stop it, or choose a free address \
             with {flag} 127.0.0.1:PORT ({flag} 127.0.0.1:0 picks one)"
        )
    } else {
        String::new()
    };
    // The simulator's error names the address.
    CliError::usage(format!("cannot start the {which} simulator: {e}{hint}"))
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Reads a fixture (or the demo tenant). A top-level `reference_time` moves every time in the
/// fixture so that `reference_time` becomes now: "an hour ago" in the fixture stays an hour ago.
pub fn load_fixture(path: Option<&Path>) -> Result<Fixture, CliError> {
    let (name, text) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::usage(format!("cannot read the fixture {}: {e}", p.display())))?;
            (p.display().to_string(), text)
        }
        None => ("the demo tenant".to_owned(), DEMO_TENANT.to_owned()),
    };
    let mut value: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("{name}: line {}, column {}: {e}", e.line(), e.column())))?;
    if let Some(obj) = value.as_object_mut()
        && let Some(reference) = obj.remove("reference_time")
    {
        let reference = reference
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .ok_or_else(|| CliError::usage(format!("{name}: reference_time must be an RFC 3339 time")))?;
        let shift = jiff::Timestamp::now().as_second() - reference.as_second();
        shift_times(&mut value, shift, None);
    }
    serde_json::from_value::<Fixture>(value)
        .map_err(|e| CliError::usage(format!("{name}: not a fixture: {e}")))
        .and_then(|f| {
            f.validate().map_err(|e| CliError::usage(format!("{name}: {e}")))?;
            Ok(f)
        })
}

/// Unix-seconds fields that move with the RFC 3339 strings.
const UNIX_TIME_KEYS: &[&str] = &["expiration", "expires", "iat"];

fn shift_times(value: &mut Value, shift: i64, key: Option<&str>) {
    match value {
        Value::String(s) => {
            if s.len() >= 20
                && s.as_bytes().get(4) == Some(&b'-')
                && let Ok(t) = s.parse::<jiff::Timestamp>()
                && let Ok(moved) = jiff::Timestamp::from_second(t.as_second() + shift)
            {
                *s = moved.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            }
        }
        Value::Number(n) if key.is_some_and(|k| UNIX_TIME_KEYS.contains(&k)) => {
            if let Some(secs) = n.as_i64() {
                *n = (secs + shift).into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shift_times(v, shift, key)),
        Value::Object(map) => map.iter_mut().for_each(|(k, v)| shift_times(v, shift, Some(k))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_move_with_the_reference() {
        let mut v = json!({"a": "2026-11-23T10:00:00Z", "iat": 100, "other": 100, "list": [{"expiration": 5}]});
        shift_times(&mut v, 3600, None);
        assert_eq!(
            v,
            json!({"a": "2026-11-23T11:00:00Z", "iat": 3700, "other": 100, "list": [{"expiration": 3605}]})
        );
    }

    #[test]
    fn the_demo_tenant_loads() {
        let f = load_fixture(None).unwrap();
        assert!(f.cloudflare.users.len() >= 400);
        assert!(!f.privx.users.is_empty());
    }
}
