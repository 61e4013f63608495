//! Errors a provider returns from an action call, and errors of configuration.
//!
//! An [`ActionError`] becomes a catchable map in the script (`e.status`, `e.message`,
//! `e.action`, `e.code`, plus any provider-specific fields such as PrivX's `property`).

use serde_json::{Map, Value};

/// What kind of failure an [`ActionError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionErrorKind {
    /// The service answered with an error status.
    Api,
    /// The request did not complete: connection refused, reset, timed out, TLS failure.
    Transport,
    /// The service answered something that is not what its API documents (HTML, truncated JSON).
    InvalidResponse,
    /// The script passed arguments the action does not accept.
    InvalidArgs,
    /// The provider is not configured (missing settings).
    NotConfigured,
    /// The run was cancelled (timeout or interrupt) while the call was in flight.
    Cancelled,
    /// The call was refused before it was sent (e.g. a mutating request in plan mode).
    Refused,
}

impl ActionErrorKind {
    /// The lower-case name scripts see as `e.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionErrorKind::Api => "api",
            ActionErrorKind::Transport => "transport",
            ActionErrorKind::InvalidResponse => "invalid_response",
            ActionErrorKind::InvalidArgs => "invalid_args",
            ActionErrorKind::NotConfigured => "not_configured",
            ActionErrorKind::Cancelled => "cancelled",
            ActionErrorKind::Refused => "refused",
        }
    }
}

/// An action call failed. The message says what failed and, where it can, what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ActionError {
    /// What kind of failure this is.
    pub kind: ActionErrorKind,
    /// The HTTP status the service answered, if it answered.
    pub status: Option<u16>,
    /// The service's own error code (an integer for Cloudflare, a string for PrivX).
    pub code: Option<Value>,
    /// What went wrong, for a person.
    pub message: String,
    /// Further fields the script sees on the error map (e.g. `property`). Boxed so that an
    /// error stays small: it travels in every action's `Result`.
    pub extra: Box<Map<String, Value>>,
}

impl ActionError {
    /// A new error of this kind.
    pub fn new(kind: ActionErrorKind, message: impl Into<String>) -> Self {
        ActionError {
            kind,
            status: None,
            code: None,
            message: message.into(),
            extra: Box::default(),
        }
    }

    /// The service answered `status` with an error.
    pub fn api(status: u16, message: impl Into<String>) -> Self {
        ActionError::new(ActionErrorKind::Api, message).with_status(status)
    }

    /// The arguments were not acceptable.
    pub fn invalid_args(message: impl Into<String>) -> Self {
        ActionError::new(ActionErrorKind::InvalidArgs, message)
    }

    /// The service's answer could not be understood.
    pub fn invalid_response(message: impl Into<String>) -> Self {
        ActionError::new(ActionErrorKind::InvalidResponse, message)
    }

    /// The request did not complete.
    pub fn transport(message: impl Into<String>) -> Self {
        ActionError::new(ActionErrorKind::Transport, message)
    }

    /// The run was cancelled while the call was in flight.
    pub fn cancelled() -> Self {
        ActionError::new(ActionErrorKind::Cancelled, "cancelled while the call was in flight")
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the service's error code.
    pub fn with_code(mut self, code: impl Into<Value>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Adds a field the script sees on the error map.
    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// A provider could not be configured.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Required settings are missing.
    #[error("{provider} is not configured: {}", missing_text(missing, hint))]
    Missing {
        /// The provider's namespace.
        provider: String,
        /// The missing settings, as the user would set them (`CLOUDFLARE_ACCOUNT_ID`, or
        /// `account_id in [providers.cloudflare]`).
        missing: Vec<String>,
        /// Where they can be set.
        hint: String,
    },
    /// The provider was registered by its specs alone, to check scripts: it sends nothing.
    #[error("{provider} was not built: this engine only checks scripts and sends nothing")]
    NotBuilt {
        /// The provider's namespace.
        provider: String,
    },
    /// A setting has a value that cannot be used.
    #[error("{provider}: {setting} is invalid: {reason}")]
    Invalid {
        /// The provider's namespace.
        provider: String,
        /// The setting, as the user would set it.
        setting: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

fn missing_text(missing: &[String], hint: &str) -> String {
    let list = match missing {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {}", rest.join(", "), last),
    };
    if hint.is_empty() {
        format!("set {list}")
    } else {
        format!("set {list} ({hint})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_settings_are_all_named() {
        let e = ConfigError::Missing {
            provider: "cloudflare".into(),
            missing: vec!["CLOUDFLARE_ACCOUNT_ID".into(), "CLOUDFLARE_API_TOKEN".into()],
            hint: "in the environment or under [providers.cloudflare] in runbook.toml".into(),
        };
        assert_eq!(
            e.to_string(),
            "cloudflare is not configured: set CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN \
             (in the environment or under [providers.cloudflare] in runbook.toml)"
        );
    }
}
