//! Building the provider from `[providers.privx]` or the `PRIVX_API_*` variables.

use std::time::Duration;

use runbook_core::http::HttpClient;
use runbook_core::{ConfigError, ProviderConfig};

use crate::api::Api;
use crate::auth::{Credentials, TokenCache};

/// The OAuth client PrivX deployments ship for API clients.
pub const DEFAULT_OAUTH_CLIENT_ID: &str = "privx-external";

const KNOWN: &[&str] = &[
    "base_url",
    "api_client_id",
    "api_client_secret",
    "oauth_client_id",
    "oauth_client_secret",
    "ca_cert",
    "rate_limit",
    "timeout",
];

/// Reads the settings and builds the API client; names every missing setting.
pub fn api_from_config(config: &ProviderConfig) -> Result<Api, ConfigError> {
    config.deny_unknown(KNOWN)?;
    let base_url = config.string("base_url", "PRIVX_API_BASE_URL")?;
    let api_client_id = config.string("api_client_id", "PRIVX_API_CLIENT_ID")?;
    let api_client_secret = config.secret("api_client_secret", "PRIVX_API_CLIENT_SECRET")?;
    let oauth_client_id = config
        .string("oauth_client_id", "PRIVX_API_OAUTH_CLIENT_ID")?
        .unwrap_or_else(|| DEFAULT_OAUTH_CLIENT_ID.to_owned());
    let oauth_client_secret = config.secret("oauth_client_secret", "PRIVX_API_OAUTH_CLIENT_SECRET")?;

    let mut missing = Vec::new();
    if base_url.is_none() {
        missing.push(config.setting_name("base_url", "PRIVX_API_BASE_URL"));
    }
    if api_client_id.is_none() {
        missing.push(config.setting_name("api_client_id", "PRIVX_API_CLIENT_ID"));
    }
    if api_client_secret.is_none() {
        missing.push(config.setting_name("api_client_secret", "PRIVX_API_CLIENT_SECRET"));
    }
    if oauth_client_secret.is_none() {
        missing.push(config.setting_name("oauth_client_secret", "PRIVX_API_OAUTH_CLIENT_SECRET"));
    }
    let (Some(base_url), Some(api_client_id), Some(api_client_secret), Some(oauth_client_secret)) =
        (base_url, api_client_id, api_client_secret, oauth_client_secret)
    else {
        return Err(config.missing(missing));
    };

    let ca_name = config.setting_name("ca_cert", "PRIVX_API_CA_CERT");
    let mut http = HttpClient::builder("privx", &base_url)
        .cookie_store(true)
        .rate_limit(config.rate_limit("rate_limit", "PRIVX_API_RATE_LIMIT")?)
        .shared_budget(
            config.shared_budget(),
            format!("privx {} client {api_client_id}", base_url.trim_end_matches('/')),
        )
        .timeout(
            config
                .duration("timeout", "PRIVX_API_TIMEOUT")?
                .unwrap_or(Duration::from_secs(30)),
        )
        .certificate_hint(format!(
            "set {ca_name} to the PEM (a file path or the PEM text) of the CA that signed PrivX's certificate"
        ));
    if let Some(ca) = config.string("ca_cert", "PRIVX_API_CA_CERT")? {
        let pem = if ca.contains("-----BEGIN") {
            ca.into_bytes()
        } else {
            std::fs::read(&ca).map_err(|e| {
                config.invalid(
                    "ca_cert",
                    "PRIVX_API_CA_CERT",
                    format!("cannot read the CA file {ca}: {e}"),
                )
            })?
        };
        http = http
            .add_ca_pem(&pem)
            .map_err(|reason| config.invalid("ca_cert", "PRIVX_API_CA_CERT", reason))?;
    }
    let http = http
        .build()
        .map_err(|reason| config.invalid("base_url", "PRIVX_API_BASE_URL", reason))?;

    let credentials = Credentials {
        oauth_settings: format!(
            "{} and {}",
            config.setting_name("oauth_client_id", "PRIVX_API_OAUTH_CLIENT_ID"),
            config.setting_name("oauth_client_secret", "PRIVX_API_OAUTH_CLIENT_SECRET")
        ),
        api_settings: format!(
            "{} and {}",
            config.setting_name("api_client_id", "PRIVX_API_CLIENT_ID"),
            config.setting_name("api_client_secret", "PRIVX_API_CLIENT_SECRET")
        ),
        oauth_client_id,
        oauth_client_secret,
        api_client_id,
        api_client_secret,
    };
    Ok(Api {
        http,
        tokens: TokenCache::new(credentials),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_variable_is_named() {
        let err = api_from_config(&ProviderConfig::from_vars("privx", [("PRIVX_API_CLIENT_ID", "bot")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "privx is not configured: set PRIVX_API_BASE_URL, PRIVX_API_CLIENT_SECRET and PRIVX_API_OAUTH_CLIENT_SECRET \
             (in the environment, or under [providers.privx] in the configuration file)"
        );
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused_naming_the_setting() {
        let config = ProviderConfig::from_vars(
            "privx",
            [
                ("PRIVX_API_BASE_URL", "https://privx.example.com"),
                ("PRIVX_API_CLIENT_ID", "bot"),
                ("PRIVX_API_CLIENT_SECRET", "secret-1234567"),
                ("PRIVX_API_OAUTH_CLIENT_SECRET", "secret-7654321"),
                (
                    "PRIVX_API_CA_CERT",
                    "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
                ),
            ],
        );
        let err = api_from_config(&config).unwrap_err();
        assert!(
            err.to_string().starts_with("privx: PRIVX_API_CA_CERT is invalid"),
            "{err}"
        );
    }
}
