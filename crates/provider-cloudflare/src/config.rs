//! Building the provider from `[providers.cloudflare]` or the `CLOUDFLARE_*` variables.

use std::time::Duration;

use runbook_core::http::{HttpClient, RateLimit};
use runbook_core::{ConfigError, ProviderConfig};

use crate::api::{Api, Auth};

/// The API's documented address.
pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
/// The documented budget: 1200 requests per 5 minutes per token.
pub const DEFAULT_RATE_LIMIT: &str = "1200/300s";

const KNOWN: &[&str] = &[
    "account_id",
    "api_token",
    "api_email",
    "api_key",
    "base_url",
    "rate_limit",
    "timeout",
];

/// Reads the settings and builds the API client; names every missing setting.
pub fn api_from_config(config: &ProviderConfig) -> Result<Api, ConfigError> {
    config.deny_unknown(KNOWN)?;
    let account_id = config.string("account_id", "CLOUDFLARE_ACCOUNT_ID")?;
    let token = config.secret("api_token", "CLOUDFLARE_API_TOKEN")?;
    let email = config.string("api_email", "CLOUDFLARE_EMAIL")?;
    let key = config.secret("api_key", "CLOUDFLARE_API_KEY")?;

    let auth = match (token, email, key) {
        (Some(token), _, _) => Some(Auth::Token(token)),
        (None, Some(email), Some(key)) => Some(Auth::Key { email, key }),
        _ => None,
    };
    let mut missing = Vec::new();
    if account_id.is_none() {
        missing.push(config.setting_name("account_id", "CLOUDFLARE_ACCOUNT_ID"));
    }
    if auth.is_none() {
        missing.push(format!(
            "{} (or {} + {})",
            config.setting_name("api_token", "CLOUDFLARE_API_TOKEN"),
            config.setting_name("api_email", "CLOUDFLARE_EMAIL"),
            config.setting_name("api_key", "CLOUDFLARE_API_KEY"),
        ));
    }
    let (Some(account_id), Some(auth)) = (account_id, auth) else {
        return Err(config.missing(missing));
    };
    if account_id.len() > 32 || !account_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(config.invalid(
            "account_id",
            "CLOUDFLARE_ACCOUNT_ID",
            format!("\"{account_id}\" is not an account id (at most 32 letters and digits, as the dashboard shows it)"),
        ));
    }

    let base_url = config
        .string("base_url", "CLOUDFLARE_BASE_URL")?
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let rate_limit = match config.rate_limit("rate_limit", "CLOUDFLARE_RATE_LIMIT")? {
        Some(limit) => limit,
        None => DEFAULT_RATE_LIMIT
            .parse::<RateLimit>()
            .map_err(|reason| config.invalid("rate_limit", "CLOUDFLARE_RATE_LIMIT", reason))?,
    };
    let timeout = config
        .duration("timeout", "CLOUDFLARE_TIMEOUT")?
        .unwrap_or(Duration::from_secs(30));
    // Cloudflare counts the budget per user of the credential; the account is what the settings
    // name, and the key holds no secret.
    let budget_key = format!("cloudflare {} account {account_id}", base_url.trim_end_matches('/'));
    let http = HttpClient::builder("cloudflare", &base_url)
        .timeout(timeout)
        .rate_limit(Some(rate_limit))
        .shared_budget(config.shared_budget(), budget_key)
        .build()
        .map_err(|reason| config.invalid("base_url", "CLOUDFLARE_BASE_URL", reason))?;
    Ok(Api { http, account_id, auth })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_configured_names_every_variable() {
        let err = api_from_config(&ProviderConfig::from_vars("cloudflare", [("UNRELATED", "x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cloudflare is not configured: set CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN \
             (or CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY) (in the environment, or under [providers.cloudflare] in the configuration file)"
        );
    }

    #[test]
    fn a_table_names_its_keys_and_rejects_typos() {
        let mut table = serde_json::Map::new();
        table.insert("acount_id".into(), "x".into());
        let err = api_from_config(&ProviderConfig::from_table("cloudflare", table)).unwrap_err();
        assert!(
            err.to_string()
                .contains("acount_id in [providers.cloudflare] is invalid: unknown setting"),
            "{err}"
        );
    }

    #[test]
    fn the_legacy_key_is_enough() {
        let config = ProviderConfig::from_vars(
            "cloudflare",
            [
                ("CLOUDFLARE_ACCOUNT_ID", "0123456789abcdef0123456789abcdef"),
                ("CLOUDFLARE_EMAIL", "ops@example.com"),
                ("CLOUDFLARE_API_KEY", "global-key-123456"),
            ],
        );
        let api = api_from_config(&config).unwrap();
        assert!(matches!(api.auth, Auth::Key { .. }));
        assert_eq!(api.http.base_url(), DEFAULT_BASE_URL);
    }
}
