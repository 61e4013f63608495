//! `runbook run` and `runbook plan`.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use runbook_core::{JsonlAuditSink, RunObserver, RunOptions, SettingNames};
use serde_json::Map;

use crate::cli::RunArgs;
use crate::commands::{Overrides, build_engine};
use crate::config::Config;
use crate::error::{CliError, exit};
use crate::output;

/// The script's parameters: the params file, then each `--param` over it.
pub fn collect_params(args: &RunArgs) -> Result<Map<String, serde_json::Value>, CliError> {
    let mut params = Map::new();
    if let Some(path) = &args.params_file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read the params file {shown}: {e}")))?;
        params = crate::params::parse_params_file(&shown, &text).map_err(CliError::usage)?;
    }
    for raw in &args.params {
        let (key, value) = crate::params::parse_param(raw).map_err(CliError::usage)?;
        params.insert(key, value);
    }
    Ok(params)
}

/// Runs the script once and prints its result; returns the exit code.
pub async fn run(args: &RunArgs, plan: bool, config: &Config, overrides: &Overrides) -> Result<u8, CliError> {
    let shown = args.script.display().to_string();
    let source = std::fs::read_to_string(&args.script)
        .map_err(|e| CliError::usage(format!("cannot read the script {shown}: {e}")))?;
    let params = collect_params(args)?;
    let engine = build_engine(config, overrides)?;

    let cancel = runbook_core::CancellationToken::new();
    let mut options = RunOptions::new()
        .params(params)
        .plan(plan)
        .max_changes(args.max_changes)
        .concurrency(args.concurrency)
        .timeout(args.timeout)
        .cancel(cancel.clone())
        .names(SettingNames::new("--max-changes", "--timeout", "--param {name}=VALUE"));
    if let Some(path) = &args.audit_log {
        let sink = JsonlAuditSink::append(path)
            .map_err(|e| CliError::usage(format!("cannot write the audit log {}: {e}", path.display())))?;
        options = options.audit(Arc::new(sink));
    }
    if std::io::stderr().is_terminal() {
        options = options.observer(Arc::new(Progress::default()));
    }

    // Ctrl-C (or SIGTERM) cancels the run: the script loop and the call in flight stop; a second
    // one exits at once.
    let interrupt = tokio::spawn(async move {
        super::wait_for_signal().await;
        eprintln!("interrupted: stopping the run (press Ctrl-C again to exit at once)");
        cancel.cancel();
        super::wait_for_signal().await;
        std::process::exit(130);
    });
    let outcome = engine.run(&source, options).await;
    interrupt.abort();

    let text = output::render(outcome.as_ref(), plan, args.output);
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return Err(CliError::failed("cannot write the result to stdout"));
    }
    drop(stdout);
    if !plan && matches!(args.output, crate::cli::OutputFormat::Pretty) {
        let (audit, finished) = match &outcome {
            Ok(o) => (&o.records.audit, true),
            Err(e) => (&e.records.audit, false),
        };
        if let Some(applied) = output::applied_text(audit, finished) {
            eprint!("{applied}");
        }
    }
    match outcome {
        Ok(_) => Ok(exit::OK),
        Err(e) => {
            let place = match e.position {
                Some((line, column)) => format!("{shown}:{line}:{column}: "),
                None => String::new(),
            };
            eprintln!("error: {place}{}", runbook_core::redact(&e.message));
            Ok(exit::of_run(e.kind))
        }
    }
}

/// A progress bar for `parallel` on a terminal.
#[derive(Default)]
struct Progress {
    bar: Mutex<Option<ProgressBar>>,
}

impl RunObserver for Progress {
    fn parallel_started(&self, total: usize) {
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template("{spinner} parallel {pos}/{len} [{elapsed}] {wide_bar}") {
            bar.set_style(style);
        }
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn parallel_item_done(&self) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.inc(1);
        }
    }

    fn parallel_finished(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}
