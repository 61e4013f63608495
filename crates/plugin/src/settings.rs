//! One `[[plugins]]` entry of `runbook.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::PluginError;

/// How long a call (and the handshake) may wait for the plugin's answer unless `timeout` says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest line a plugin may write unless `max_message` says.
pub const DEFAULT_MAX_MESSAGE: usize = 4 << 20;

/// How to start one plugin and what to hand it.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// How the plugin is named in messages until it has told its namespace: `plugins[1] (python3 tickets.py)`.
    pub label: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Variables set for the process (beside `PATH`, `HOME`, `LANG`, `TMPDIR` and the like; the
    /// rest of runbook's environment, its credentials included, is not passed on).
    pub env: BTreeMap<String, String>,
    /// The table handed over in `configure`.
    pub config: Map<String, Value>,
    /// How long one call may wait for its answer.
    pub timeout: Duration,
    /// The largest message the plugin may send, in bytes.
    pub max_message: usize,
    /// The directory the plugin runs in (the configuration file's).
    pub dir: Option<PathBuf>,
}

impl PluginSettings {
    /// A plugin running `command` with the defaults.
    pub fn new(command: Vec<String>) -> Self {
        PluginSettings {
            label: format!("plugin ({})", command.join(" ")),
            command,
            env: BTreeMap::new(),
            config: Map::new(),
            timeout: DEFAULT_TIMEOUT,
            max_message: DEFAULT_MAX_MESSAGE,
            dir: None,
        }
    }

    /// Reads the `index`-th (from 1) `[[plugins]]` table of `file`.
    pub fn from_table(
        file: &str,
        index: usize,
        table: &Map<String, Value>,
        dir: Option<PathBuf>,
    ) -> Result<Self, PluginError> {
        let at = format!("{file}: [[plugins]] #{index}");
        let err = |what: String| PluginError(format!("{at}: {what}"));
        for key in table.keys() {
            if !["command", "env", "config", "timeout", "max_message"].contains(&key.as_str()) {
                return Err(err(format!(
                    "unknown key `{key}`; a plugin takes command, env, config, timeout and max_message"
                )));
            }
        }
        let command: Vec<String> = match table.get("command") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| err("`command` must be a list of strings".into()))?,
            Some(_) => {
                return Err(err(
                    "`command` must be a non-empty list of strings, e.g. command = [\"python3\", \"tickets.py\"]"
                        .into(),
                ));
            }
            None => {
                return Err(err(
                    "`command` is missing: the program to start, e.g. command = [\"python3\", \"tickets.py\"]".into(),
                ));
            }
        };
        if command[0].trim().is_empty() {
            return Err(err("`command` starts with an empty program name".into()));
        }
        let mut settings = PluginSettings::new(command);
        settings.label = format!("plugins[{index}] ({})", settings.command.join(" "));
        settings.dir = dir;
        if let Some(env) = table.get("env") {
            let Value::Object(env) = env else {
                return Err(err(
                    "`env` must be a table of strings, e.g. env = { TOKEN = \"${TOKEN}\" }".into(),
                ));
            };
            for (k, v) in env {
                let Some(v) = v.as_str() else {
                    return Err(err(format!("env.{k} must be a string")));
                };
                settings.env.insert(k.clone(), v.to_owned());
            }
        }
        if let Some(config) = table.get("config") {
            let Value::Object(config) = config else {
                return Err(err("`config` must be a table".into()));
            };
            settings.config = config.clone();
        }
        if let Some(timeout) = table.get("timeout") {
            let text = timeout
                .as_str()
                .ok_or_else(|| err("`timeout` must be a duration in quotes, e.g. \"30s\"".into()))?;
            settings.timeout = runbook_core::parse_duration(text).map_err(|e| err(format!("timeout: {e}")))?;
            if settings.timeout.is_zero() {
                return Err(err("timeout must be more than 0s".into()));
            }
        }
        if let Some(max) = table.get("max_message") {
            settings.max_message = match max {
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| err("max_message must be a positive size".into()))?,
                Value::String(s) => parse_size(s).map_err(|e| err(format!("max_message: {e}")))?,
                _ => return Err(err("max_message must be a size, e.g. \"4MiB\"".into())),
            };
            if settings.max_message < 1024 {
                return Err(err("max_message must be at least 1KiB".into()));
            }
        }
        Ok(settings)
    }
}

pub use runbook_core::parse_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_are_read() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("4 parsecs").is_err());
        let table: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "command": ["python3", "t.py"], "timeout": "5s", "max_message": "1MiB",
            "env": {"A": "b"}, "config": {"base_url": "http://x"}
        }))
        .unwrap();
        let s = PluginSettings::from_table("runbook.toml", 1, &table, None).unwrap();
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.max_message, 1 << 20);
        assert_eq!(s.label, "plugins[1] (python3 t.py)");
    }

    #[test]
    fn a_broken_entry_names_itself() {
        let table: Map<String, Value> = serde_json::from_value(serde_json::json!({"comand": ["x"]})).unwrap();
        let e = PluginSettings::from_table("runbook.toml", 2, &table, None).unwrap_err();
        assert!(
            e.0.starts_with("runbook.toml: [[plugins]] #2: unknown key `comand`"),
            "{}",
            e.0
        );
    }
}
