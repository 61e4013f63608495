//! One module per command.

pub mod actions;
pub mod apply;
pub mod check;
pub mod init;
pub mod run;
pub mod serve;
pub mod sim;

use runbook_core::{Engine, ProviderConfig};

use crate::config::Config;
use crate::error::CliError;

/// Settings that replace a provider's configuration (the simulators under `--simulate`).
pub type Overrides = Vec<(String, serde_json::Map<String, serde_json::Value>)>;

/// Builds the engine with every linked provider: from `overrides` first, then from its
/// `[providers.NAME]` table when the configuration has one (a broken table is an error), else
/// from its environment variables (a provider with nothing set is simply absent: calls to it
/// fail naming what to set).
pub async fn build_engine(config: &Config, overrides: &Overrides) -> Result<Engine, CliError> {
    build_engine_sharing(config, overrides, None).await
}

/// [`build_engine`], with providers drawing their rate budgets from `budget` when there is one
/// (the store shared by several `runbook serve` instances).
pub async fn build_engine_sharing(
    config: &Config,
    overrides: &Overrides,
    budget: Option<std::sync::Arc<dyn runbook_core::http::SharedBudget>>,
) -> Result<Engine, CliError> {
    let mut builder = Engine::builder();
    for descriptor in runbook_core::registered_providers() {
        let ns = descriptor.namespace;
        let table = overrides
            .iter()
            .find(|(name, _)| name == ns)
            .map(|(_, table)| (table, "--simulate".to_owned()))
            .or_else(|| {
                config.providers.get(ns).map(|table| {
                    let file = config
                        .path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    (table, file)
                })
            });
        builder = match table {
            Some((table, origin)) => builder
                .try_descriptor(
                    descriptor,
                    &ProviderConfig::from_table(ns, table.clone()).with_shared_budget(budget.clone()),
                )
                .map_err(|e| CliError::usage(format!("{origin}: {e}")))?,
            None => builder.descriptor(
                descriptor,
                &ProviderConfig::from_env(ns).with_shared_budget(budget.clone()),
            ),
        };
    }
    // `[[plugins]]`: each process started, described and configured now; a plugin that cannot
    // start or describes itself wrongly stops the command here, naming it.
    let mut taken: Vec<String> = runbook_core::registered_providers()
        .iter()
        .map(|d| d.namespace.to_owned())
        .collect();
    for settings in &config.plugins {
        // The namespace is claimed before `configure`: a plugin refused here gets no secret.
        let plugin = runbook_plugin::start_checked(settings.clone(), |described| {
            claim(&mut taken, described.namespace, &settings.label).map_err(|e| runbook_plugin::PluginError(e.message))
        })
        .await
        .map_err(|e| CliError::usage(e.to_string()))?;
        builder = builder.provider_with_summary(plugin.described().summary, plugin);
    }
    builder.build().map_err(|e| CliError::usage(e.to_string()))
}

/// Takes a plugin's namespace, refusing one a built-in provider or an earlier plugin has.
fn claim(taken: &mut Vec<String>, namespace: &str, label: &str) -> Result<(), CliError> {
    if taken.iter().any(|t| t == namespace) {
        let owner = if runbook_core::registered_providers()
            .iter()
            .any(|d| d.namespace == namespace)
        {
            "a built-in provider"
        } else {
            "another plugin"
        };
        return Err(CliError::usage(format!(
            "{label}: its describe claims the namespace `{namespace}`, which {owner} already has; each namespace must \
             be unique"
        )));
    }
    taken.push(namespace.to_owned());
    Ok(())
}

/// An engine that knows every linked provider by its specs alone: for commands that send
/// nothing (`check`, `actions`, checking `runbook serve`'s scripts), which so need no secrets.
/// Each `[[plugins]]` process is started for its `describe` only (no `configure`, so no secret
/// is needed) and shut down.
pub async fn build_checker(config: &Config) -> Result<Engine, CliError> {
    let mut builder = Engine::builder();
    let mut taken = Vec::new();
    for descriptor in runbook_core::registered_providers() {
        builder = builder.described(descriptor);
        taken.push(descriptor.namespace.to_owned());
    }
    for settings in &config.plugins {
        let described = runbook_plugin::describe_only(settings)
            .await
            .map_err(|e| CliError::usage(e.to_string()))?;
        claim(&mut taken, described.namespace, &settings.label)?;
        // Leaked once per plugin and command, like the specs themselves.
        let descriptor: &'static runbook_core::ProviderDescriptor =
            Box::leak(Box::new(runbook_core::ProviderDescriptor {
                namespace: described.namespace,
                summary: described.summary,
                actions: described.actions,
                settings: "[[plugins]] in runbook.toml",
                build: |_| {
                    Err(runbook_core::ConfigError::NotBuilt {
                        provider: "plugin".to_owned(),
                    })
                },
            }));
        builder = builder.described(descriptor);
    }
    builder.build().map_err(|e| CliError::usage(e.to_string()))
}

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// Ctrl-C (SIGINT).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP: a graceful stop too (`runbook serve` does not reload its configuration; its
    /// supervisor restarts it to load a changed one).
    Hangup,
}

impl StopSignal {
    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Hangup => "SIGHUP",
        }
    }
}

/// Waits for Ctrl-C, SIGTERM or SIGHUP, and says which came.
pub async fn wait_for_signal() -> StopSignal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
            let _ = tokio::signal::ctrl_c().await;
            return StopSignal::Interrupt;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => StopSignal::Interrupt,
            _ = term.recv() => StopSignal::Terminate,
            _ = hup.recv() => StopSignal::Hangup,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        StopSignal::Interrupt
    }
}
