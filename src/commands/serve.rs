//! `runbook serve` and `runbook runs`.

use std::sync::Arc;

use runbook_serve::store::{RunFilter, Store, redact_url};
use runbook_serve::{ServeConfig, StartOptions};
use serde_json::Value;

use crate::cli::{OutputFormat, RunsCommand, ServeArgs};
use crate::commands::{build_checker, build_engine_sharing};
use crate::config::Config;
use crate::error::{CliError, exit};
use crate::simulate::Simulation;

/// Reads `[serve]` and `[[automation]]`, checking every script against the engine.
fn serve_config(config: &Config, engine: &runbook_core::Engine) -> Result<ServeConfig, CliError> {
    let Some(path) = &config.path else {
        return Err(CliError::usage(
            "runbook serve needs a runbook.toml with [[automation]] entries (in this directory, or --config FILE)",
        ));
    };
    let names = runbook_core::SettingNames::new("max_changes", "timeout", "params = { {name} = ... }");
    let parsed = ServeConfig::parse(path, &config.expanded, |source, params| {
        engine
            .check_run(source, params, &names)
            .iter()
            .map(ToString::to_string)
            .collect()
    })
    .map_err(|e| CliError::usage(e.to_string()))?;
    if parsed.automations.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no [[automation]] to serve; add one (see the README's runbook serve section)",
            path.display()
        )));
    }
    Ok(parsed)
}

/// Serves until SIGTERM or Ctrl-C, then shuts down in order; exit 0.
pub async fn serve(args: &ServeArgs, config: &Config) -> Result<u8, CliError> {
    let simulation = if args.simulate {
        Some(Simulation::start(args.fixture.as_deref(), runbook_sim::SimOptions::default(), None, None).await?)
    } else {
        None
    };
    let overrides = simulation.as_ref().map(Simulation::overrides).unwrap_or_default();
    let serve_config = serve_config(config, &build_checker()?)?;
    let url = serve_config.store_url();
    let store: Arc<dyn Store> = runbook_serve::store::open(&url)
        .await
        .map_err(|e| CliError::failed(format!("{}: {e}", redact_url(&url))))?;
    // A store several instances share also holds the providers' rate budgets, so that the
    // instances together stay inside them.
    let engine = build_engine_sharing(config, &overrides, store.shared_budget())?;
    let handle = runbook_serve::start(
        serve_config,
        engine,
        store,
        StartOptions::default().recovering_all_running(),
    )
    .await
    .map_err(|e| CliError::usage(e.to_string()))?;
    eprintln!("runbook serve: listening on http://{}", handle.local_addr());
    super::wait_for_signal().await;
    eprintln!("runbook serve: stopping (running runs get the grace period; queued runs stay queued)");
    handle.shutdown().await;
    if let Some(sim) = simulation {
        sim.shutdown().await;
    }
    Ok(exit::OK)
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, CliError> {
    let Some(path) = &config.path else {
        return Err(CliError::usage(
            "runbook runs reads the store named in runbook.toml's [serve] store (default sqlite://runbook.db): no runbook.toml here; pass --config FILE",
        ));
    };
    let store = toml::from_str::<toml::Table>(&config.expanded)
        .ok()
        .and_then(|t| t.get("serve")?.get("store")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "sqlite://runbook.db".to_owned());
    let url = runbook_serve::resolve_store(&store, path.parent());
    let opened: Result<Arc<dyn Store>, _> = match url.strip_prefix("sqlite://") {
        Some(file) => {
            if !std::path::Path::new(file).exists() {
                return Err(CliError::usage(format!(
                    "{file} does not exist yet: runbook serve creates it"
                )));
            }
            runbook_serve::store::SqliteStore::open_shared(std::path::Path::new(file))
                .await
                .map(|s| Arc::new(s) as Arc<dyn Store>)
        }
        None => runbook_serve::store::open(&url).await,
    };
    opened.map_err(|e| CliError::failed(format!("{}: {e}", redact_url(&url))))
}

/// `runbook runs list|show|retry`.
pub async fn runs(command: &RunsCommand, config: &Config) -> Result<u8, CliError> {
    let store = open_store(config).await?;
    match command {
        RunsCommand::List {
            automation,
            status,
            limit,
            output,
        } => {
            let status = match status.as_deref().map(str::parse) {
                None => None,
                Some(Ok(s)) => Some(s),
                Some(Err(e)) => return Err(CliError::usage(e)),
            };
            let filter = RunFilter {
                automation: automation.clone(),
                status,
                limit: *limit,
            };
            let runs = store.list(&filter).await.map_err(|e| CliError::failed(e.to_string()))?;
            let rows: Vec<Value> = runs.iter().map(runbook_serve::summary).collect();
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default()),
                OutputFormat::Csv => print!("{}", crate::output::csv(&Value::Array(rows)).map_err(CliError::usage)?),
                OutputFormat::Pretty if rows.is_empty() => println!("no runs"),
                OutputFormat::Pretty => print!(
                    "{}",
                    crate::output::value_text(&Value::Array(rows), crate::output::width())
                ),
            }
            Ok(exit::OK)
        }
        RunsCommand::Show { id, output } => {
            let Some(run) = store.get(id).await.map_err(|e| CliError::failed(e.to_string()))? else {
                return Err(CliError::failed(format!("no run {id}")));
            };
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default()),
                OutputFormat::Csv => {
                    return Err(CliError::usage(
                        "runs show prints one run, which is not a list of records: use --output pretty or json",
                    ));
                }
                OutputFormat::Pretty => print!("{}", show_text(&run, crate::output::width())),
            }
            Ok(exit::OK)
        }
        RunsCommand::Retry { id } => {
            let queued = store.retry(id).await.map_err(|e| CliError::failed(e.to_string()))?;
            println!("{}", queued.run_id);
            eprintln!(
                "queued {} (a retry of {id}); a running runbook serve starts it",
                queued.run_id
            );
            Ok(exit::OK)
        }
    }
}

/// One run for people; every empty value shows as [`crate::output::EMPTY`].
fn show_text(run: &runbook_serve::store::RunRecord, width: usize) -> String {
    use std::fmt::Write as _;

    use crate::output::{EMPTY, cell, value_text};
    let mut out = String::new();
    let t = |ms: Option<i64>| cell(&runbook_serve::ms_time(ms));
    let _ = writeln!(out, "run         {}", run.id);
    let _ = writeln!(out, "automation  {} ({})", run.automation, run.trigger);
    let _ = writeln!(
        out,
        "status      {} after {} attempt(s)",
        run.status.as_str(),
        run.attempts
    );
    let _ = writeln!(out, "queued      {}", t(Some(run.created_at)));
    let _ = writeln!(out, "started     {}", t(run.started_at));
    let _ = writeln!(out, "finished    {}", t(run.finished_at));
    if let Some(retry_of) = &run.retry_of {
        let _ = writeln!(out, "retry of    {retry_of}");
    }
    if let Some(error) = &run.error {
        let _ = writeln!(out, "error       {error}");
    }
    if !run.params.is_empty() {
        let _ = writeln!(out, "params      {}", Value::Object(run.params.clone()));
    }
    if let Some(event) = &run.event {
        let _ = writeln!(out, "event       {}", serde_json::to_string(event).unwrap_or_default());
    }
    if let Some(result) = &run.result {
        let _ = write!(out, "\nresult:\n{}", value_text(result, width));
    }
    if let Some(lines) = run.logs.as_array().filter(|l| !l.is_empty()) {
        let _ = writeln!(out, "\nlog:");
        for line in lines {
            let _ = writeln!(
                out,
                "  {} {}",
                line["at"].as_str().unwrap_or(EMPTY),
                cell(&line["message"])
            );
        }
    }
    if let Some(calls) = run.calls.as_array().filter(|c| !c.is_empty()) {
        let rows: Vec<Value> = calls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "seq": c["seq"], "action": c["action"], "outcome": c["outcome"], "http": c["status"],
                    "targets": c["targets"], "attempts": c["attempts"], "ms": c["duration_ms"].as_f64().map(|m| (m * 10.0).round() / 10.0),
                    "args": c["args"],
                })
            })
            .collect();
        let _ = write!(
            out,
            "\ncalls ({}):\n{}",
            rows.len(),
            value_text(&Value::Array(rows), width)
        );
    }
    runbook_core::redact(&out).into_owned()
}
