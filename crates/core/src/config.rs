//! The settings handed to a provider's `build` function.
//!
//! A provider is configured either by its table in `runbook.toml` (`[providers.cloudflare]`) or,
//! when there is no table, by the environment variables its vendor's official SDKs read. Each
//! lookup names both spellings, so that an error can tell the user exactly what to set where.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::http::{RateLimit, SharedBudget};
use crate::secret::Secret;

/// Where the environment variables come from.
#[derive(Debug, Clone)]
enum Env {
    Process,
    Vars(BTreeMap<String, String>),
}

/// The settings for one provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    namespace: String,
    table: Option<Map<String, Value>>,
    env: Env,
    shared_budget: Option<Arc<dyn SharedBudget>>,
}

impl ProviderConfig {
    /// Settings from the provider's table in the configuration file.
    pub fn from_table(namespace: &str, table: Map<String, Value>) -> Self {
        ProviderConfig {
            namespace: namespace.to_owned(),
            table: Some(table),
            env: Env::Process,
            shared_budget: None,
        }
    }

    /// Settings from the process environment.
    pub fn from_env(namespace: &str) -> Self {
        ProviderConfig {
            namespace: namespace.to_owned(),
            table: None,
            env: Env::Process,
            shared_budget: None,
        }
    }

    /// Settings from the given variables instead of the process environment (tests, embedders).
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        namespace: &str,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        ProviderConfig {
            namespace: namespace.to_owned(),
            table: None,
            env: Env::Vars(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect()),
            shared_budget: None,
        }
    }

    /// Draws rate budgets from `budget`, shared with other processes (several `runbook serve`
    /// instances on one store).
    pub fn with_shared_budget(mut self, budget: Option<Arc<dyn SharedBudget>>) -> Self {
        self.shared_budget = budget;
        self
    }

    /// The shared rate budget, if the provider runs beside other processes that use it; hand it
    /// to [`HttpClientBuilder::shared_budget`](crate::http::HttpClientBuilder::shared_budget).
    pub fn shared_budget(&self) -> Option<Arc<dyn SharedBudget>> {
        self.shared_budget.clone()
    }

    /// The provider's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether the settings come from a table in the configuration file.
    pub fn is_table(&self) -> bool {
        self.table.is_some()
    }

    /// A setting exactly as the table holds it (a nested table, an array), for settings no
    /// environment variable can express; `None` without a table.
    pub fn table_value(&self, key: &str) -> Option<&Value> {
        self.table.as_ref().and_then(|table| table.get(key))
    }

    /// How the user would set this setting: the table key, or the environment variable.
    pub fn setting_name(&self, key: &str, env_var: &str) -> String {
        if self.table.is_some() {
            format!("{key} in [providers.{}]", self.namespace)
        } else {
            env_var.to_owned()
        }
    }

    /// Where settings can be set, for error messages.
    pub fn hint(&self) -> String {
        if self.table.is_some() {
            "in the configuration file".to_owned()
        } else {
            format!(
                "in the environment, or under [providers.{}] in the configuration file",
                self.namespace
            )
        }
    }

    fn raw(&self, key: &str, env_var: &str) -> Option<Value> {
        match &self.table {
            Some(table) => table.get(key).cloned(),
            None => match &self.env {
                Env::Process => std::env::var(env_var).ok().map(Value::String),
                Env::Vars(vars) => vars.get(env_var).cloned().map(Value::String),
            },
        }
        .filter(|v| !matches!(v, Value::String(s) if s.trim().is_empty()))
    }

    /// A string setting.
    pub fn string(&self, key: &str, env_var: &str) -> Result<Option<String>, ConfigError> {
        match self.raw(key, env_var) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.invalid(key, env_var, format!("expected a string, found {other}"))),
        }
    }

    /// A secret setting: never shown again once read.
    pub fn secret(&self, key: &str, env_var: &str) -> Result<Option<Secret<String>>, ConfigError> {
        Ok(self.string(key, env_var)?.map(Secret::new))
    }

    /// A duration such as `"30s"` or `"10m"` (a bare number is seconds).
    pub fn duration(&self, key: &str, env_var: &str) -> Result<Option<Duration>, ConfigError> {
        match self.raw(key, env_var) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|s| Some(Duration::from_secs(s)))
                .ok_or_else(|| self.invalid(key, env_var, "expected a whole number of seconds".into())),
            Some(Value::String(s)) => parse_duration(&s)
                .map(Some)
                .map_err(|reason| self.invalid(key, env_var, reason)),
            Some(other) => Err(self.invalid(key, env_var, format!("expected a duration like \"30s\", found {other}"))),
        }
    }

    /// A rate budget such as `"1200/300s"`.
    pub fn rate_limit(&self, key: &str, env_var: &str) -> Result<Option<RateLimit>, ConfigError> {
        match self.string(key, env_var)? {
            None => Ok(None),
            Some(s) => s
                .parse::<RateLimit>()
                .map(Some)
                .map_err(|reason| self.invalid(key, env_var, reason)),
        }
    }

    /// Fails when the table holds a key the provider does not know (a typo would otherwise be
    /// silently ignored).
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), ConfigError> {
        let Some(table) = &self.table else {
            return Ok(());
        };
        match table.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(key) => Err(ConfigError::Invalid {
                provider: self.namespace.clone(),
                setting: format!("{key} in [providers.{}]", self.namespace),
                reason: format!("unknown setting; known settings are {}", known.join(", ")),
            }),
        }
    }

    /// An error for a setting whose value cannot be used.
    pub fn invalid(&self, key: &str, env_var: &str, reason: String) -> ConfigError {
        ConfigError::Invalid {
            provider: self.namespace.clone(),
            setting: self.setting_name(key, env_var),
            reason,
        }
    }

    /// An error naming every missing setting.
    pub fn missing(&self, missing: Vec<String>) -> ConfigError {
        ConfigError::Missing {
            provider: self.namespace.clone(),
            missing,
            hint: self.hint(),
        }
    }
}

/// Parses `"250ms"`, `"30s"`, `"10m"`, `"1h 30m"`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("\"{text}\" is not a duration ({e}); write e.g. \"30s\", \"10m\" or \"1h\""))
}

/// A size in bytes: `"4MiB"`, `"512KiB"`, `"1GiB"`, `"10MB"`, `"2kB"`, or a number of bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("\"{text}\" is not a size; write e.g. \"4MiB\"")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("\"{text}\" is not a size; write e.g. \"4MiB\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_settings_are_named_as_table_keys() {
        let mut table = Map::new();
        table.insert("timeout".into(), Value::String("ten".into()));
        let cfg = ProviderConfig::from_table("cloudflare", table);
        let err = cfg.duration("timeout", "CLOUDFLARE_TIMEOUT").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cloudflare: timeout in [providers.cloudflare] is invalid"),
            "{err}"
        );
    }

    #[test]
    fn env_settings_are_named_as_variables_and_blank_is_absent() {
        let cfg = ProviderConfig::from_vars("privx", [("PRIVX_API_BASE_URL", " "), ("X", "1")]);
        assert_eq!(cfg.string("base_url", "PRIVX_API_BASE_URL").unwrap(), None);
        assert_eq!(cfg.setting_name("base_url", "PRIVX_API_BASE_URL"), "PRIVX_API_BASE_URL");
    }

    #[test]
    fn durations_accept_the_usual_spellings() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
    }
}
