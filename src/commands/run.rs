//! `runbook run` and `runbook plan`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runbook_core::{JsonlAuditSink, RunErrorKind, RunObserver, RunOptions, SettingNames};
use serde_json::Map;

use crate::cli::{OutputFormat, RunArgs};
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
    let names = SettingNames::new("--max-changes", "--timeout", "--param {name}=VALUE");
    // What `check` finds, and params that do not fit the script's declarations, stop the run
    // before anything is sent, every problem listed.
    let problems = engine.check_run(&source, &params, &names);
    if !problems.is_empty() {
        super::check::print_problems(&args.script, &problems);
        return Ok(exit::USAGE);
    }

    let cancel = runbook_core::CancellationToken::new();
    let mut options = RunOptions::new()
        .params(params)
        .plan(plan)
        .max_changes(args.max_changes)
        .concurrency(args.concurrency)
        .timeout(args.timeout)
        .cancel(cancel.clone())
        .names(names);
    if let Some(path) = &args.audit_log {
        let sink = JsonlAuditSink::append(path)
            .map_err(|e| CliError::usage(format!("cannot write the audit log {}: {e}", path.display())))?;
        options = options.audit(Arc::new(sink));
    }
    let progress = std::io::stderr().is_terminal().then(Progress::start);
    if let Some(progress) = &progress {
        options = options.observer(progress.clone());
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
    if let Some(progress) = progress {
        progress.finish();
    }

    if plan && args.output == OutputFormat::Csv {
        // The CSV on stdout stays parseable; what the plan would change goes to stderr.
        let planned = match &outcome {
            Ok(o) => &o.records.planned_changes,
            Err(e) => &e.records.planned_changes,
        };
        eprint!("{}", output::plan_text(planned));
    }
    // A result that cannot be shown as asked is a usage error, after the run's own report.
    let (text, unprintable) = match output::render(outcome.as_ref(), plan, args.output, output::width()) {
        Ok(text) => (text, None),
        Err(message) => (String::new(), Some(message)),
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return Err(CliError::failed("cannot write the result to stdout"));
    }
    drop(stdout);
    if !plan && args.output != OutputFormat::Json {
        let (audit, finished) = match &outcome {
            Ok(o) => (&o.records.audit, true),
            Err(e) => (&e.records.audit, false),
        };
        if let Some(applied) = output::applied_text(audit, finished) {
            eprint!("{applied}");
        }
    }
    match outcome {
        Ok(_) => match unprintable {
            Some(message) => Err(CliError::usage(message)),
            None => Ok(exit::OK),
        },
        Err(e) => {
            let place = match e.position {
                Some((line, column)) => format!("{shown}:{line}:{column}: "),
                None => String::new(),
            };
            eprintln!("error: {place}{}", runbook_core::redact(&e.message));
            if e.kind == RunErrorKind::NotConfigured && !args.simulate {
                eprintln!(
                    "hint: to try the script without any tenant, run it against the built-in simulators: \
                     runbook run {shown} --simulate"
                );
            }
            Ok(exit::of_run(e.kind))
        }
    }
}

/// A run's progress on a terminal's stderr, from its second second on: a spinner with the number
/// of calls and the action called last; while a `parallel` runs, a bar with an ETA.
struct Progress {
    bar: ProgressBar,
    calls: AtomicU64,
    /// How deep in nested `parallel`s the run is: the outermost one drives the bar.
    depth: AtomicUsize,
    reveal: tokio::task::JoinHandle<()>,
}

/// How long a run goes before its progress is shown.
const QUIET_START: Duration = Duration::from_secs(1);

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn spinner_style() -> ProgressStyle {
    style("{spinner} [{elapsed}] {msg}")
}

impl Progress {
    /// A hidden spinner that shows itself after [`QUIET_START`].
    fn start() -> Arc<Progress> {
        let bar = ProgressBar::hidden();
        bar.set_style(spinner_style());
        bar.set_message("starting");
        crate::logging::set_progress(Some(bar.clone()));
        let shown = bar.clone();
        let reveal = tokio::spawn(async move {
            tokio::time::sleep(QUIET_START).await;
            shown.set_draw_target(ProgressDrawTarget::stderr());
            shown.enable_steady_tick(Duration::from_millis(120));
        });
        Arc::new(Progress {
            bar,
            calls: AtomicU64::new(0),
            depth: AtomicUsize::new(0),
            reveal,
        })
    }

    /// Clears the progress before the result and the applied changes are printed.
    fn finish(&self) {
        self.reveal.abort();
        self.bar.finish_and_clear();
        crate::logging::set_progress(None);
    }
}

impl RunObserver for Progress {
    fn call_started(&self, action: &str) {
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_message(format!("{calls} call(s), now {action}"));
    }

    fn parallel_started(&self, total: usize) {
        if self.depth.fetch_add(1, Ordering::Relaxed) == 0 {
            self.bar.set_length(total as u64);
            self.bar.set_position(0);
            self.bar.reset_eta();
            self.bar.set_style(style(
                "{spinner} [{elapsed}] parallel {pos}/{len} {wide_bar} ETA {eta} · {msg}",
            ));
        }
    }

    fn parallel_item_done(&self) {
        if self.depth.load(Ordering::Relaxed) == 1 {
            self.bar.inc(1);
        }
    }

    fn parallel_finished(&self) {
        if self.depth.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.bar.set_style(spinner_style());
        }
    }
}
