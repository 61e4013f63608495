//! The providers an engine knows, and lookup of `namespace.action`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::action::ActionSpec;
use crate::error::ConfigError;
use crate::provider::Provider;

/// Names scripts use for the engine's own modules: no provider may take them.
pub(crate) const RESERVED_NAMESPACES: &[&str] = &["state"];

/// Why an engine could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Two providers claim one namespace.
    #[error("two providers claim the namespace `{0}`; each namespace must be unique")]
    DuplicateNamespace(String),
    /// A namespace is not usable in scripts.
    #[error("`{0}` cannot be a provider namespace: {1}")]
    InvalidNamespace(String, &'static str),
    /// An action name is not usable in scripts, or appears twice.
    #[error("provider `{0}`: action `{1}` {2}")]
    InvalidAction(String, String, &'static str),
}

enum Slot {
    Ready(Arc<dyn Provider>),
    Unconfigured(ConfigError),
}

/// One namespace: its actions, and the provider (or why it is not configured).
pub struct RegisteredProvider {
    namespace: String,
    summary: String,
    actions: Vec<ActionSpec>,
    slot: Slot,
}

impl std::fmt::Debug for RegisteredProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredProvider")
            .field("namespace", &self.namespace)
            .field("configured", &self.is_configured())
            .finish_non_exhaustive()
    }
}

impl RegisteredProvider {
    pub(crate) fn ready(summary: &str, provider: Arc<dyn Provider>) -> Self {
        RegisteredProvider {
            namespace: provider.namespace().to_owned(),
            summary: summary.to_owned(),
            actions: provider.actions().to_vec(),
            slot: Slot::Ready(provider),
        }
    }

    pub(crate) fn unconfigured(namespace: &str, summary: &str, actions: &[ActionSpec], error: ConfigError) -> Self {
        RegisteredProvider {
            namespace: namespace.to_owned(),
            summary: summary.to_owned(),
            actions: actions.to_vec(),
            slot: Slot::Unconfigured(error),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// One line about the service.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The actions.
    pub fn actions(&self) -> &[ActionSpec] {
        &self.actions
    }

    /// One action by name.
    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// Whether the provider is ready to take calls.
    pub fn is_configured(&self) -> bool {
        matches!(self.slot, Slot::Ready(_))
    }

    /// The provider, or why it is not configured.
    pub fn provider(&self) -> Result<&Arc<dyn Provider>, &ConfigError> {
        match &self.slot {
            Slot::Ready(p) => Ok(p),
            Slot::Unconfigured(e) => Err(e),
        }
    }
}

/// Every namespace an engine serves.
#[derive(Debug, Default)]
pub struct Registry {
    providers: Vec<RegisteredProvider>,
    index: HashMap<String, usize>,
}

impl Registry {
    pub(crate) fn new(mut providers: Vec<RegisteredProvider>) -> Result<Self, EngineError> {
        providers.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        let mut index = HashMap::new();
        for (i, p) in providers.iter().enumerate() {
            validate_namespace(p)?;
            if index.insert(p.namespace.clone(), i).is_some() {
                return Err(EngineError::DuplicateNamespace(p.namespace.clone()));
            }
        }
        Ok(Registry { providers, index })
    }

    /// Every namespace, sorted.
    pub fn providers(&self) -> &[RegisteredProvider] {
        &self.providers
    }

    /// One namespace.
    pub fn get(&self, namespace: &str) -> Option<&RegisteredProvider> {
        self.index.get(namespace).map(|&i| &self.providers[i])
    }

    /// Looks up `namespace.action` (or `namespace::action`).
    pub fn lookup(&self, qualified: &str) -> Result<(&RegisteredProvider, &ActionSpec), String> {
        let (ns, name) = qualified
            .split_once("::")
            .or_else(|| qualified.split_once('.'))
            .ok_or_else(|| {
                format!("`{qualified}` is not an action name; write namespace.action, e.g. cloudflare.list_users")
            })?;
        let provider = self.get(ns).ok_or_else(|| {
            let known: Vec<&str> = self.providers.iter().map(|p| p.namespace()).collect();
            format!("unknown provider `{ns}`; known providers: {}", known.join(", "))
        })?;
        let spec = provider.action(name).ok_or_else(|| unknown_action(provider, name))?;
        Ok((provider, spec))
    }
}

pub(crate) fn unknown_action(provider: &RegisteredProvider, name: &str) -> String {
    let ns = provider.namespace();
    if let Some(candidate) = closest(name, provider.actions().iter().map(|a| a.name)) {
        return format!("unknown action {ns}::{name} (did you mean {ns}::{candidate}?)");
    }
    let names: Vec<&str> = provider.actions().iter().map(|a| a.name).collect();
    format!("unknown action {ns}::{name}; {ns} has: {}", names.join(", "))
}

/// The candidate closest to `name`, when it is close enough to be what was meant: for
/// "did you mean" suggestions.
pub(crate) fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 2).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(c, name), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_namespace(p: &RegisteredProvider) -> Result<(), EngineError> {
    if !is_identifier(&p.namespace) {
        return Err(EngineError::InvalidNamespace(
            p.namespace.clone(),
            "it must be an identifier (letters, digits, _)",
        ));
    }
    if RESERVED_NAMESPACES.contains(&p.namespace.as_str()) {
        return Err(EngineError::InvalidNamespace(
            p.namespace.clone(),
            "the engine uses that name",
        ));
    }
    for (i, action) in p.actions.iter().enumerate() {
        if !is_identifier(action.name) {
            return Err(EngineError::InvalidAction(
                p.namespace.clone(),
                action.name.to_owned(),
                "is not an identifier",
            ));
        }
        if p.actions[..i].iter().any(|a| a.name == action.name) {
            return Err(EngineError::InvalidAction(
                p.namespace.clone(),
                action.name.to_owned(),
                "is declared twice",
            ));
        }
        let mut seen_optional = false;
        for param in action.params {
            if param.required && seen_optional {
                return Err(EngineError::InvalidAction(
                    p.namespace.clone(),
                    action.name.to_owned(),
                    "declares a required parameter after an optional one",
                ));
            }
            seen_optional |= !param.required;
        }
    }
    Ok(())
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_names() {
        assert_eq!(edit_distance("list_users", "lst_users"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }
}
