//! `runbook run` and `runbook plan`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runbook_core::{Engine, JsonlAuditSink, RunErrorKind, RunObserver, RunOptions, SettingNames};
use serde_json::Map;

use crate::cli::{OutputFormat, RunArgs};
use crate::commands::{Overrides, build_engine};
use crate::config::{Config, PolicyConfig};
use crate::error::{CliError, exit};
use crate::local_runs::{LocalRun, NewRun, Store, describe_steps};
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

/// Runs the script once and prints its result; returns the exit code. A real run (not a plan)
/// keeps a journal in the local state directory, so that it can be resumed.
pub async fn run(args: &RunArgs, plan: bool, config: &Config, overrides: &Overrides) -> Result<u8, CliError> {
    let Some(script) = &args.script else {
        return Err(CliError::usage(
            "give the script to run (runbook run SCRIPT), or the run to resume (runbook run --resume RUN_ID)",
        ));
    };
    let shown = script.display().to_string();
    let source =
        std::fs::read_to_string(script).map_err(|e| CliError::usage(format!("cannot read the script {shown}: {e}")))?;
    let params = collect_params(args)?;
    let engine = build_engine(config, overrides).await?;
    // What `check` finds, and params that do not fit the script's declarations, stop the run
    // before anything is sent, every problem listed.
    let problems = engine.check_run(&source, &params, &names());
    if !problems.is_empty() {
        super::check::print_problems(script, &problems);
        return Ok(exit::USAGE);
    }
    let max_changes = args.max_changes.unwrap_or(runbook_core::DEFAULT_MAX_CHANGES);
    let concurrency = args.concurrency.unwrap_or(runbook_core::DEFAULT_CONCURRENCY);
    if args.out.is_some() && !plan {
        return Err(CliError::usage(
            "--out saves a plan: use it with `runbook plan` (or `runbook run --plan`)",
        ));
    }
    // A run that would change something shows its plan and asks first (or needs --yes); the
    // simulators of --simulate are nobody's services, so a simulated run never asks.
    if !plan && !args.yes && !args.simulate {
        let apply = super::apply::Apply {
            args,
            shown: shown.clone(),
            source,
            params,
            max_changes,
            concurrency,
            saved: None,
            policy: &config.policy,
        };
        return super::apply::plan_confirm_apply(&engine, apply).await;
    }
    let local = if plan {
        None
    } else {
        let new = NewRun {
            script: shown.clone(),
            params: params.clone(),
            max_changes,
            concurrency,
            timeout: args.timeout,
            simulate: args.simulate,
            fixture: args.fixture.as_ref().map(|f| f.display().to_string()),
            apply: false,
        };
        Some(LocalRun::create(&Store::from_env()?, new, &source)?)
    };
    let attempt = Attempt {
        args,
        plan,
        shown,
        source,
        params,
        max_changes,
        concurrency,
        timeout: args.timeout,
        local,
        resumed: false,
        expect: None,
        policy: &config.policy,
    };
    execute(&engine, attempt).await
}

/// `runbook run --resume RUN_ID`: the next attempt of a local run, from its pinned script, params
/// and options, replaying its journal.
pub async fn resume(args: &RunArgs, run_id: &str, plan: bool, config: &Config) -> Result<u8, CliError> {
    if plan {
        return Err(CliError::usage(
            "a plan is not resumed: --resume goes with `runbook run`, without --plan",
        ));
    }
    if args.simulate {
        return Err(CliError::usage(
            "--resume does not go with --simulate: a run keeps the services it was started against \
             (a --simulate run cannot be resumed at all: its simulators lived only in its process)",
        ));
    }
    let store = Store::from_env()?;
    if !args.params.is_empty() || args.params_file.is_some() {
        return Err(CliError::usage(format!(
            "run {run_id} keeps the params it was started with (recorded in {}): leave out --param and \
             --params-file, or start a new run with other params",
            store.run_dir(run_id).join("run.json").display()
        )));
    }
    let mut local = LocalRun::open(&store, run_id)?;
    let record = local.record();
    // A resumed apply is held to the plan it was approved with.
    let expect = local
        .approved()?
        .map(|effects| Arc::new(runbook_core::Expectation::new(effects)));
    if record.simulate {
        return Err(CliError::usage(format!(
            "run {run_id} ran against the simulators of --simulate, which lived only in its process: it \
             cannot be resumed; run the script again: runbook run {} --simulate",
            record.script
        )));
    }
    if record.status.is_finished() {
        return Err(CliError::usage(format!(
            "run {run_id} has already finished ({}): there is nothing to resume; to run the script again, \
             start a new run: runbook run {}",
            record.status.as_str(),
            record.script
        )));
    }
    if let Some(max_changes) = args.max_changes
        && max_changes != record.max_changes
    {
        return Err(CliError::usage(format!(
            "run {run_id} keeps the --max-changes it was started with ({}): leave out --max-changes, or \
             start a new run",
            record.max_changes
        )));
    }
    let pinned = local.script_path();
    if let Some(script) = &args.script {
        let given = std::fs::read_to_string(script);
        if given.as_deref().ok() != Some(local.script()) {
            eprintln!(
                "warning: {} is not the text run {run_id} was started with; the run continues with its pinned \
                 copy {}",
                script.display(),
                pinned.display()
            );
        }
    }
    let source = local.script().to_owned();
    let engine = build_engine(config, &Overrides::new()).await?;
    let problems = engine.check_run(&source, &record.params, &names());
    if !problems.is_empty() {
        super::check::print_problems(&pinned, &problems);
        return Ok(exit::USAGE);
    }
    local.begin_attempt()?;
    let recorded_timeout = record.timeout();
    let attempt = Attempt {
        args,
        plan: false,
        shown: pinned.display().to_string(),
        source,
        params: record.params,
        max_changes: record.max_changes,
        concurrency: args.concurrency.unwrap_or(record.concurrency),
        timeout: args.timeout.or(recorded_timeout),
        local: Some(local),
        resumed: true,
        expect,
        policy: &config.policy,
    };
    execute(&engine, attempt).await
}

pub(crate) fn names() -> SettingNames {
    SettingNames::new("--max-changes", "--timeout", "--param {name}=VALUE")
}

/// One attempt of a run, ready to go.
pub(crate) struct Attempt<'a> {
    pub args: &'a RunArgs,
    pub plan: bool,
    /// The script's path, for messages.
    pub shown: String,
    pub source: String,
    pub params: Map<String, serde_json::Value>,
    pub max_changes: u64,
    pub concurrency: usize,
    pub timeout: Option<Duration>,
    /// Where the run is journaled (not in plan mode).
    pub local: Option<LocalRun>,
    /// Whether this is a resume.
    pub resumed: bool,
    /// An apply: the approved effects, the only changes it may send.
    pub expect: Option<Arc<runbook_core::Expectation>>,
    /// `[policy]`.
    pub policy: &'a PolicyConfig,
}

/// How far back the daily budget counts.
const BUDGET_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The run under `[policy]`: its protected targets, and the daily budget less what local runs
/// changed in the last 24 hours. The simulators of `--simulate` are nobody's services: a
/// simulated run has no budget (and counts toward none).
pub(crate) fn governed(mut options: RunOptions, policy: &PolicyConfig, simulate: bool) -> Result<RunOptions, CliError> {
    if !policy.protect.is_empty() {
        options = options.policy(policy.protect.clone());
    }
    if let Some(cap) = policy.max_changes_per_day
        && !simulate
    {
        let window = i64::try_from(BUDGET_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let since = jiff::Timestamp::now().as_millisecond().saturating_sub(window);
        let used = Store::from_env()?.changes_since(since)?;
        options = options.budget(runbook_core::Budget::new(
            cap,
            used,
            "today's budget",
            policy.budget_setting.clone(),
        ));
    }
    Ok(options)
}

/// Runs an attempt and prints its result; returns the exit code.
pub(crate) async fn execute(engine: &Engine, attempt: Attempt<'_>) -> Result<u8, CliError> {
    let Attempt {
        args,
        plan,
        shown,
        source,
        params,
        max_changes,
        concurrency,
        timeout,
        local,
        resumed,
        expect,
        policy,
    } = attempt;
    let cancel = runbook_core::CancellationToken::new();
    let params_kept = params.clone();
    let mut options = RunOptions::new()
        .params(params)
        .plan(plan)
        .max_changes(max_changes)
        .concurrency(concurrency)
        .timeout(timeout)
        .interrupt(cancel.clone())
        .names(names());
    if let Some(expect) = &expect {
        options = options.expect(expect.clone());
    }
    let simulated = local.as_ref().map_or(args.simulate, |l| l.record().simulate);
    options = governed(options, policy, simulated)?;
    // A plan keeps its reads and `now()` in memory: `--out` saves the values `now()` returned.
    let plan_journal = plan.then(|| Arc::new(runbook_core::MemoryJournal::new()));
    if let Some(journal) = &plan_journal {
        options = options.journal(journal.clone());
    }
    // How to go on after an interruption: a --simulate run's simulators go with its process.
    let mut resume_hint = None;
    if let Some(local) = &local {
        let id = local.id();
        eprintln!("run {id} (journal: {})", local.dir().display());
        if resumed {
            eprintln!(
                "resuming run {id}: attempt {}, {} step(s) recorded by earlier attempts",
                local.record().attempt,
                local.recorded_steps()
            );
        }
        if !local.record().simulate {
            resume_hint = Some(format!("resume with: runbook run --resume {id}"));
        }
        options = options.run_id(id).journal(local.journal()).state(local.state());
    }
    if let Some(path) = &args.audit_log {
        let sink = JsonlAuditSink::append(path)
            .map_err(|e| CliError::usage(format!("cannot write the audit log {}: {e}", path.display())))?;
        options = options.audit(Arc::new(sink));
    }
    let progress = std::io::stderr().is_terminal().then(Progress::start);
    if let Some(progress) = &progress {
        options = options.observer(progress.clone());
    }

    // Ctrl-C (or SIGTERM) stops the run gently: no new step, and the calls in flight finish and
    // are journaled, so a resume knows how each ended; a second one exits at once.
    let second_hint = resume_hint.clone();
    let interrupt = tokio::spawn(async move {
        super::wait_for_signal().await;
        eprintln!(
            "interrupted: stopping the run once the calls in flight are answered (press Ctrl-C again to exit at once)"
        );
        cancel.cancel();
        super::wait_for_signal().await;
        if let Some(hint) = second_hint {
            eprintln!("{hint}");
        }
        std::process::exit(130);
    });
    let outcome = engine.run(&source, options).await;
    interrupt.abort();
    if let Some(progress) = progress {
        progress.finish();
    }
    if let Some(local) = &local
        && let Err(e) = local.finish(outcome.as_ref().err().map(|e| e.kind))
    {
        eprintln!("warning: {}", e.message);
    }
    if let (Some(out), Some(journal)) = (&args.out, &plan_journal) {
        super::apply::save_plan(
            out,
            &shown,
            &source,
            &params_kept,
            max_changes,
            outcome.as_ref(),
            journal,
        )?;
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
    if outcome.is_ok()
        && let Some(expect) = &expect
    {
        let unsent = expect.unreached();
        if !unsent.is_empty() {
            eprintln!(
                "warning: the run finished without making {} approved change(s) (the script took another way than \
                 the plan):",
                unsent.len()
            );
            for change in &unsent {
                eprintln!("  {}", runbook_core::redact(&runbook_core::plan::effect_line(change)));
            }
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
            let message = runbook_core::redact(&e.message);
            match e.kind {
                RunErrorKind::Diverged => eprintln!("error: run {} diverged: {place}{message}", e.run_id),
                RunErrorKind::Stale => {
                    eprintln!("error: run {} stopped as stale: {place}{message}", e.run_id);
                    if let Some(expect) = &expect {
                        let unsent = expect.unreached();
                        if !unsent.is_empty() {
                            eprintln!("{} approved change(s) were not sent", unsent.len());
                        }
                    }
                }
                RunErrorKind::NeedsAttention => {
                    eprintln!("error: run {} needs_attention: {place}{message}", e.run_id);
                    if let Some(local) = &local {
                        let in_doubt = local.in_doubt();
                        eprintln!("in doubt: {}", runbook_core::redact(&describe_steps(&in_doubt)));
                        let step = in_doubt.first().map_or("STEP", |s| s.key.as_str());
                        eprintln!(
                            "once you know whether it took effect: runbook runs resolve {} {step} --sent|--not-sent, \
                             then: runbook run --resume {}",
                            e.run_id, e.run_id
                        );
                    }
                }
                _ => eprintln!("error: {place}{message}"),
            }
            let interrupted = matches!(
                e.kind,
                RunErrorKind::Cancelled | RunErrorKind::Timeout | RunErrorKind::Journal | RunErrorKind::Fenced
            );
            if interrupted && let Some(hint) = &resume_hint {
                eprintln!("{hint}");
            }
            if e.kind == RunErrorKind::NotConfigured && !args.simulate && !resumed {
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
