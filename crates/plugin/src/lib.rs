//! # runbook-plugin
//!
//! Providers that run as separate processes, written in any language: an executable declared in
//! `runbook.toml` (`[[plugins]]`) speaks JSON-RPC 2.0 over its stdin and stdout, one JSON object
//! per line (protocol 1, specified in `docs/plugins.md`). It describes its actions once
//! (`describe`); the engine turns them into [`runbook_core::ActionSpec`]s and applies plan mode,
//! the blast-radius guard, the audit trail, the journal and redaction itself, exactly as for a
//! built-in provider. A [`PluginProvider`] owns the process: many calls in flight on it, a
//! crashed or misbehaving process is stopped (its calls in flight fail as in doubt) and started
//! again, with backoff, on the next call.

mod conn;
mod describe;
mod provider;
mod settings;

pub use describe::{Described, PROTOCOL_VERSION};
pub use provider::{PluginProvider, describe_only, shutdown_all, start, start_checked};
pub use settings::PluginSettings;

/// A plugin could not be started, described or configured: the message names the plugin and
/// says what to do.
#[derive(Debug, Clone)]
pub struct PluginError(pub String);

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&runbook_core::redact(&self.0))
    }
}

impl std::error::Error for PluginError {}
