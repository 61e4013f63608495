//! `runbook.toml`: provider settings (and, for `serve`, automations), with `${VAR}` expansion.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// `[[plugins]]`: external providers, in the order the file lists them.
    pub plugins: Vec<runbook_plugin::PluginSettings>,
    /// The file's text after `${VAR}` expansion (for `runbook serve`, which reads its own
    /// sections with their line numbers).
    pub expanded: String,
    /// `[policy]`.
    pub policy: PolicyConfig,
}

/// `[policy]`: targets no run may touch, and a budget of changes across runs.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// `protect`: the rules.
    pub protect: Arc<runbook_core::Policy>,
    /// `max_changes_per_day`: targets all runs together may change in 24 hours.
    pub max_changes_per_day: Option<u64>,
    /// The setting that raises the budget, for messages.
    pub budget_setting: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRaw {
    #[serde(default)]
    protect: Vec<String>,
    max_changes_per_day: Option<u64>,
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
    #[serde(default)]
    plugins: Vec<toml::Table>,
    policy: Option<PolicyRaw>,
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
        // A plugin's command runs in the configuration file's directory.
        let dir = path
            .parent()
            .map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d })
            .and_then(|d| std::path::absolute(d).ok());
        let mut plugins = Vec::with_capacity(raw.plugins.len());
        for (i, table) in raw.plugins.into_iter().enumerate() {
            let json = serde_json::to_value(&table)
                .map_err(|e| CliError::usage(format!("{shown}: [[plugins]] #{}: {e}", i + 1)))?;
            let Value::Object(map) = json else { continue };
            let settings = runbook_plugin::PluginSettings::from_table(&shown.to_string(), i + 1, &map, dir.clone())
                .map_err(|e| CliError::usage(e.to_string()))?;
            plugins.push(settings);
        }
        let policy = match raw.policy {
            None => PolicyConfig::default(),
            Some(p) => policy_config(&shown.to_string(), p, &known)?,
        };
        Ok(Config {
            path: Some(path.to_path_buf()),
            providers,
            plugins,
            expanded,
            policy,
        })
    }
}

/// Checks `[policy]`: every rule's syntax, and that a `NS-role:` rule names a known provider.
fn policy_config(shown: &str, raw: PolicyRaw, known: &[&str]) -> Result<PolicyConfig, CliError> {
    let origin = format!("[policy] protect in {shown}");
    let policy = runbook_core::Policy::new(&raw.protect, origin)
        .map_err(|e| CliError::usage(format!("{shown}: [policy] {e}")))?;
    for rule in policy.rules() {
        if let Some(ns) = rule.namespace()
            && !known.contains(&ns)
        {
            return Err(CliError::usage(format!(
                "{shown}: [policy] protect rule {rule} names provider \"{ns}\", which is not known (known: {}); \
                 write role:NAME for a role at any provider",
                known.join(", ")
            )));
        }
    }
    Ok(PolicyConfig {
        protect: Arc::new(policy),
        max_changes_per_day: raw.max_changes_per_day,
        budget_setting: format!("max_changes_per_day in [policy] of {shown}"),
    })
}

/// Where in a TOML document a `${NAME}` stands, which decides how its value is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside any string: a bare value such as a number.
    Bare,
    /// `"..."` or `"""..."""`: the value is escaped.
    Basic { multiline: bool },
    /// `'...'` or `'''...'''`: nothing can be escaped, so the value must fit as it is.
    Literal { multiline: bool },
    /// After `#`: left alone.
    Comment,
}

/// Replaces `${NAME}` with the variable's value, written as its place in the TOML document
/// needs: escaped inside a basic string, as it is inside a literal string (refused when it
/// cannot be written there), as it is outside strings only when it is a plain word or number.
/// Comments are left alone, a trailing one too. An undefined variable is an error naming it and
/// its line.
fn expand(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut context = Context::Bare;
    let mut line = 1;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let starts = |p: &str| rest.starts_with(p);
        // What this position opens, closes or escapes, and how many bytes to copy as they are.
        let (next, copy) = match context {
            Context::Comment if c == '\n' => (Context::Bare, 1),
            Context::Comment => (Context::Comment, c.len_utf8()),
            Context::Bare if c == '#' => (Context::Comment, 1),
            Context::Bare if starts("\"\"\"") => (Context::Basic { multiline: true }, 3),
            Context::Bare if c == '"' => (Context::Basic { multiline: false }, 1),
            Context::Bare if starts("'''") => (Context::Literal { multiline: true }, 3),
            Context::Bare if c == '\'' => (Context::Literal { multiline: false }, 1),
            Context::Basic { .. } if c == '\\' => {
                let escaped = rest[1..].chars().next().map_or(0, char::len_utf8);
                (context, 1 + escaped)
            }
            Context::Basic { multiline: true } if starts("\"\"\"") => (Context::Bare, 3),
            Context::Basic { multiline: false } if c == '"' => (Context::Bare, 1),
            Context::Literal { multiline: true } if starts("'''") => (Context::Bare, 3),
            Context::Literal { multiline: false } if c == '\'' => (Context::Bare, 1),
            Context::Bare | Context::Basic { .. } | Context::Literal { .. } if starts("${") => {
                let after = &rest[2..];
                let Some(end) = after.find('}') else {
                    return Err(format!("{line}: `${{` without a closing `}}`"));
                };
                let name = &after[..end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("{line}: `${{{name}}}` is not a variable name"));
                }
                let value = lookup(name).ok_or_else(|| {
                    format!("{line}: ${{{name}}} is not set in the environment; set {name} or remove the reference")
                })?;
                out.push_str(&written(&value, context).map_err(|why| format!("{line}: ${{{name}}} {why}"))?);
                rest = &after[end + 1..];
                continue;
            }
            _ => (context, c.len_utf8()),
        };
        let (copied, tail) = rest.split_at(copy.min(rest.len()));
        line += copied.matches('\n').count();
        out.push_str(copied);
        rest = tail;
        context = next;
    }
    Ok(out)
}

/// A variable's value as it must be written at its place.
fn written(value: &str, context: Context) -> Result<String, &'static str> {
    match context {
        Context::Basic { .. } => Ok(toml_escape(value)),
        Context::Literal { multiline: false } if value.contains(['\'', '\n', '\r']) => {
            Err("holds a quote or a line break, which a 'literal' string cannot; use a \"basic\" string")
        }
        Context::Literal { multiline: true } if value.contains("'''") => {
            Err("holds ''', which a '''literal''' string cannot; use a \"basic\" string")
        }
        Context::Literal { .. } => Ok(value.to_owned()),
        Context::Bare
            if !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.' | ':')) =>
        {
            Ok(value.to_owned())
        }
        Context::Bare => Err("stands outside quotes, where only a plain number or word can go; put it in quotes"),
        Context::Comment => Ok(String::new()),
    }
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
    fn literal_strings_get_the_value_as_it_is() {
        let lookup = |name: &str| match name {
            "CA_PATH" => Some(r"C:\certs\ca.pem".to_owned()),
            "QUOTED" => Some("it's".to_owned()),
            _ => None,
        };
        let out = expand("ca = '${CA_PATH}'\n", &lookup).unwrap();
        assert_eq!(out, "ca = 'C:\\certs\\ca.pem'\n");
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["ca"].as_str(), Some(r"C:\certs\ca.pem"));
        let err = expand("a = 'x'\nb = '${QUOTED}'\n", &lookup).unwrap_err();
        assert!(err.starts_with("2: ${QUOTED} holds a quote"), "{err}");
    }

    #[test]
    fn trailing_comments_and_quoted_hashes_are_told_apart() {
        let out = expand("a = \"v\" # ${UNSET}\nb = \"#${TOKEN}\" # done\n", &env).unwrap();
        assert_eq!(out, "a = \"v\" # ${UNSET}\nb = \"#s3cr\\\"et\" # done\n");
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["b"].as_str(), Some("#s3cr\"et"));
    }

    #[test]
    fn bare_values_must_be_plain() {
        let lookup = |name: &str| match name {
            "PORT" => Some("8080".to_owned()),
            _ => Some("x\"\n[evil]".to_owned()),
        };
        assert_eq!(expand("port = ${PORT}\n", &lookup).unwrap(), "port = 8080\n");
        let err = expand("a = ${OTHER}\n", &lookup).unwrap_err();
        assert!(err.contains("put it in quotes"), "{err}");
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
    fn the_policy_is_read_and_its_mistakes_named() {
        let text =
            "[policy]\nprotect = [\"breakglass@corp.example\", \"privx-role:privx-admin\"]\nmax_changes_per_day = 5\n";
        let config = Config::parse(Path::new("runbook.toml"), text, env).unwrap();
        assert_eq!(config.policy.protect.rules().len(), 2);
        assert_eq!(config.policy.max_changes_per_day, Some(5));
        let err = Config::parse(Path::new("runbook.toml"), "[policy]\nprotekt = []\n", env).unwrap_err();
        assert!(err.message.contains("protekt"), "{}", err.message);
        let err = Config::parse(
            Path::new("runbook.toml"),
            "[policy]\nprotect = [\"okta-role:x\"]\n",
            env,
        )
        .unwrap_err();
        assert!(err.message.contains("\"okta\", which is not known"), "{}", err.message);
        let err = Config::parse(Path::new("runbook.toml"), "[policy]\nprotect = [\"role:\"]\n", env).unwrap_err();
        assert!(err.message.contains("names no role"), "{}", err.message);
        let err = Config::parse(Path::new("runbook.toml"), "[policy]\nmax_changes_per_day = -1\n", env).unwrap_err();
        assert!(err.message.contains("max_changes_per_day"), "{}", err.message);
    }

    #[test]
    fn unknown_top_level_keys_are_errors_with_their_line() {
        let err = Config::parse(Path::new("runbook.toml"), "\n[prviders.cloudflare]\n", env).unwrap_err();
        assert!(err.message.contains("line 2"), "{}", err.message);
        assert!(err.message.contains("prviders"), "{}", err.message);
    }
}
