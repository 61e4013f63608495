//! `runbook.toml`: provider settings (and, for `serve`, automations), with `${VAR}` expansion.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::CliError;

/// The configuration file, read and expanded.
#[derive(Debug, Default)]
pub struct Config {
    /// Where it was read from (`None`: no file, providers read their environment).
    pub path: Option<PathBuf>,
    /// `[providers.NAME]` tables.
    pub providers: BTreeMap<String, Map<String, Value>>,
    /// The file's text after `${VAR}` expansion (for `runbook serve`, which reads its own
    /// sections with their line numbers).
    pub expanded: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    providers: BTreeMap<String, toml::Table>,
    // `[serve]` and `[[automation]]` are read by `runbook serve` (with line numbers).
    #[serde(default)]
    #[allow(dead_code)]
    serve: Option<toml::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    automation: Option<toml::Value>,
}

impl Config {
    /// Reads `explicit`, or `./runbook.toml` when it exists, or nothing.
    pub fn load(explicit: Option<&Path>) -> Result<Config, CliError> {
        Config::load_with(explicit, |name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], but an unset `${VAR}` becomes empty: for commands that read only the
    /// store's location (`runbook runs`), which should not need every secret the file names.
    pub fn load_lenient(explicit: Option<&Path>) -> Result<Config, CliError> {
        Config::load_with(explicit, |name| Some(std::env::var(name).unwrap_or_default()))
    }

    fn load_with(explicit: Option<&Path>, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, CliError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let default = PathBuf::from("runbook.toml");
                if !default.exists() {
                    return Ok(Config::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::usage(format!("cannot read the configuration {}: {e}", path.display())))?;
        Config::parse(&path, &text, lookup)
    }

    /// Parses configuration text, expanding `${VAR}` with `lookup`.
    pub fn parse(path: &Path, text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, CliError> {
        let shown = path.display();
        let expanded = expand(text, &lookup).map_err(|e| CliError::usage(format!("{shown}:{e}")))?;
        let raw: RawConfig =
            toml::from_str(&expanded).map_err(|e| CliError::usage(format!("{shown}: {}", e.to_string().trim_end())))?;
        let known: Vec<&str> = runbook_core::registered_providers()
            .iter()
            .map(|d| d.namespace)
            .collect();
        let mut providers = BTreeMap::new();
        for (name, table) in raw.providers {
            if !known.contains(&name.as_str()) {
                return Err(CliError::usage(format!(
                    "{shown}: unknown provider [providers.{name}]; known providers: {}",
                    known.join(", ")
                )));
            }
            let json = serde_json::to_value(&table)
                .map_err(|e| CliError::usage(format!("{shown}: [providers.{name}]: {e}")))?;
            if let Value::Object(map) = json {
                providers.insert(name, map);
            }
        }
        Ok(Config {
            path: Some(path.to_path_buf()),
            providers,
            expanded,
        })
    }
}

/// Replaces `${NAME}` with the variable's value, escaped for a TOML string. Comment lines are
/// left alone. An undefined variable is an error naming it and its line.
fn expand(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("{}: `${{` without a closing `}}`", index + 1));
            };
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{}: `${{{name}}}` is not a variable name", index + 1));
            }
            let value = lookup(name).ok_or_else(|| {
                format!(
                    "{}: ${{{name}}} is not set in the environment; set {name} or remove the reference",
                    index + 1
                )
            })?;
            out.push_str(&toml_escape(&value));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Escapes a value for a TOML basic string (and keeps the line count: newlines become `\n`).
fn toml_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr\"et".to_owned())
    }

    #[test]
    fn variables_expand_inside_strings() {
        let out = expand("a = \"${TOKEN}\"\n# ${UNSET} in a comment\n", &env).unwrap();
        assert_eq!(out, "a = \"s3cr\\\"et\"\n# ${UNSET} in a comment\n");
    }

    #[test]
    fn an_undefined_variable_names_itself_and_its_line() {
        let err = expand("a = 1\nb = \"${NOPE}\"\n", &env).unwrap_err();
        assert_eq!(
            err,
            "2: ${NOPE} is not set in the environment; set NOPE or remove the reference"
        );
    }

    #[test]
    fn unknown_top_level_keys_are_errors_with_their_line() {
        let err = Config::parse(Path::new("runbook.toml"), "\n[prviders.cloudflare]\n", env).unwrap_err();
        assert!(err.message.contains("line 2"), "{}", err.message);
        assert!(err.message.contains("prviders"), "{}", err.message);
    }
}
