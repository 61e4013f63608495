//! `runbook apply F.plan`, saving plans (`runbook plan --out`), and the confirmation of
//! `runbook run`: plan, show, ask, then apply exactly what was shown.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use runbook_core::plan::{clock_of, replayable};
use runbook_core::{
    Engine, Expectation, JournalEntry, JournalLimits, MemoryJournal, PlanMismatch, PlannedChange, RunError,
    RunErrorKind, RunOptions, RunOutcome, SavedPlan,
};
use serde_json::{Map, Value};

use super::run::{Attempt, execute, names};
use crate::cli::{ApplyArgs, RunArgs};
use crate::config::{Config, PolicyConfig};
use crate::error::{CliError, exit};
use crate::local_runs::{LocalRun, NewRun, Store};
use crate::output;

/// What a plan-then-apply needs.
pub(crate) struct Apply<'a> {
    pub args: &'a RunArgs,
    /// The script's path, for messages.
    pub shown: String,
    pub source: String,
    pub params: Map<String, Value>,
    pub max_changes: u64,
    pub concurrency: usize,
    /// The saved plan being applied (`runbook apply`), or `None` for `runbook run`.
    pub saved: Option<SavedPlan>,
    /// `[policy]`.
    pub policy: &'a PolicyConfig,
}

/// Writes the plan of a finished plan run to `out`; a plan that failed (its guard included) is
/// not saved, since it cannot be applied as it is.
pub(crate) fn save_plan(
    out: &Path,
    shown: &str,
    source: &str,
    params: &Map<String, Value>,
    max_changes: u64,
    outcome: Result<&RunOutcome, &RunError>,
    journal: &MemoryJournal,
) -> Result<(), CliError> {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!(
                "the plan was not saved to {}: it {} (see above)",
                out.display(),
                if e.kind == RunErrorKind::Guard {
                    "passes the guard's cap, so the real run would be refused"
                } else if e.kind == RunErrorKind::Budget {
                    "passes the change budget, so the real run would be refused"
                } else if e.kind == RunErrorKind::Policy {
                    "touches a protected target, so the real run would be refused"
                } else {
                    "did not finish"
                }
            );
            return Ok(());
        }
    };
    let plan = SavedPlan::new(
        shown,
        source,
        params.clone(),
        max_changes,
        outcome.records.planned_changes.clone(),
        clock_of(&journal.entries()),
    );
    let mut text = serde_json::to_string_pretty(&plan).unwrap_or_default();
    text.push('\n');
    write_private(out, text.as_bytes())
        .map_err(|e| CliError::usage(format!("cannot write the plan {}: {e}", out.display())))?;
    eprintln!(
        "plan saved to {} ({} change(s), effects digest {}); apply exactly it with: runbook apply {}",
        out.display(),
        plan.effects.len(),
        &plan.effects_sha256[..12],
        out.display()
    );
    Ok(())
}

/// A plan file holds the script's params: readable by its owner only. Written to a new file
/// beside it and renamed over it, so an existing file's permissions, or a symbolic link at the
/// path, are not reused.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// `runbook apply F.plan`.
pub async fn apply(args: &ApplyArgs, config: &Config) -> Result<u8, CliError> {
    let shown_plan = args.plan.display().to_string();
    let text = std::fs::read_to_string(&args.plan)
        .map_err(|e| CliError::usage(format!("cannot read the plan {shown_plan}: {e}")))?;
    let saved = SavedPlan::parse(&text)
        .map_err(|e| CliError::usage(format!("the plan {shown_plan} is refused: {e}; nothing was sent")))?;
    let source = std::fs::read_to_string(&saved.script).map_err(|e| {
        CliError::usage(format!(
            "cannot read the plan's script {} ({e}): run `runbook apply` from the directory the plan was made in",
            saved.script
        ))
    })?;
    if let Err(mismatch) = saved.verify(&source, &saved.params) {
        let code = match mismatch {
            PlanMismatch::Invalid(_) => exit::USAGE,
            PlanMismatch::Changed(_) => exit::STALE,
        };
        eprintln!("error: the plan {shown_plan} is refused: {mismatch}; nothing was sent");
        return Ok(code);
    }
    eprintln!(
        "plan {shown_plan}: {} change(s) to {} target(s), made {}, effects digest {}",
        saved.effects.len(),
        saved.total_targets,
        saved.created_at,
        saved.effects_sha256
    );
    let engine = super::build_engine(config, &super::Overrides::new()).await?;
    let problems = engine.check_run(&source, &saved.params, &names());
    if !problems.is_empty() {
        super::check::print_problems(Path::new(&saved.script), &problems);
        return Ok(exit::USAGE);
    }
    let run_args = args.as_run();
    let apply = Apply {
        args: &run_args,
        shown: saved.script.clone(),
        source,
        params: saved.params.clone(),
        max_changes: saved.max_changes,
        concurrency: args.concurrency.unwrap_or(runbook_core::DEFAULT_CONCURRENCY),
        saved: Some(saved),
        policy: &config.policy,
    };
    plan_confirm_apply(&engine, apply).await
}

/// One plan, made now: its outcome and the journal of its reads and `now()` values. `clock`
/// makes `now()` return a saved plan's values. Results are kept whole, however large: an apply
/// replays them rather than reading again.
async fn plan_now(
    engine: &Engine,
    source: &str,
    params: &Map<String, Value>,
    settings: (u64, usize, Option<std::time::Duration>),
    clock: Vec<JournalEntry>,
    policy: &PolicyConfig,
    simulate: bool,
) -> Result<(Result<RunOutcome, RunError>, Arc<MemoryJournal>), CliError> {
    let (max_changes, concurrency, timeout) = settings;
    let journal = Arc::new(MemoryJournal::new());
    for entry in clock {
        journal.put(entry);
    }
    let options = RunOptions::new()
        .params(params.clone())
        .plan(true)
        .max_changes(max_changes)
        .concurrency(concurrency)
        .timeout(timeout)
        .names(names())
        .journal(journal.clone())
        .journal_limits(JournalLimits::new(JournalLimits::default().max_entries, usize::MAX));
    let options = super::run::governed(options, policy, simulate)?;
    Ok((engine.run(source, options).await, journal))
}

/// Says why a fresh plan's effects are not those of `approved` (what was saved, or shown), on
/// stderr; `true` when they differ.
fn stale(approved: &[PlannedChange], fresh: &[PlannedChange], since: &str) -> bool {
    let diff = runbook_core::plan::diff(approved, fresh);
    if diff.is_empty() {
        return false;
    }
    eprintln!(
        "error: the plan is stale: the services changed since {since} ({} added, {} removed, {} changed); \
         nothing was sent. Make the plan again and review it:",
        diff.added.len(),
        diff.removed.len(),
        diff.changed.len()
    );
    eprint!("{}", runbook_core::redact(&diff.text()));
    true
}

/// Plans (with fresh reads), checks the plan against a saved one, shows it and asks (or needs
/// --yes), then applies exactly it: the run replays the plan's reads and may send only its
/// effects.
pub(crate) async fn plan_confirm_apply(engine: &Engine, apply: Apply<'_>) -> Result<u8, CliError> {
    let Apply {
        args,
        shown,
        source,
        params,
        max_changes,
        concurrency,
        saved,
        policy,
    } = apply;
    let settings = (max_changes, concurrency, args.timeout);
    let clock = saved.as_ref().map(SavedPlan::clock_entries).unwrap_or_default();
    let (fresh, mut journal) = plan_now(engine, &source, &params, settings, clock, policy, args.simulate).await?;
    let fresh = match fresh {
        Ok(outcome) => outcome,
        Err(e) => return Ok(plan_failed(&shown, &e, saved.is_some())),
    };
    let mut effects = fresh.records.planned_changes.clone();
    if let Some(saved) = &saved
        && stale(&saved.effects, &effects, "the plan was made")
    {
        return Ok(exit::STALE);
    }
    if !effects.is_empty() && !args.yes {
        let targets: u64 = effects.iter().map(|c| c.targets).sum();
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(runbook_core::redact(&output::plan_text(&effects)).as_bytes());
        let question = format!(
            "Apply {} change{} to {} target{}? [y/N] ",
            effects.len(),
            if effects.len() == 1 { "" } else { "s" },
            targets,
            if targets == 1 { "" } else { "s" }
        );
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            let _ = writeln!(
                stderr,
                "error: this run would make the changes above ({} change{} to {} target{}), and there is no terminal \
                 to ask on; nothing was sent. To make them, run again with --yes",
                effects.len(),
                if effects.len() == 1 { "" } else { "s" },
                targets,
                if targets == 1 { "" } else { "s" }
            );
            return Ok(exit::USAGE);
        }
        let _ = stderr.write_all(question.as_bytes());
        let _ = stderr.flush();
        drop(stderr);
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            eprintln!("declined: nothing was sent");
            return Ok(exit::FAILED);
        }
        // The answer may come long after the plan: plan once more, with the same `now()`, and
        // apply only if the services still give the plan that was shown.
        let shown_clock = SavedPlan::clock_entries_of(&clock_of(&journal.entries()));
        let (again, journal_again) =
            plan_now(engine, &source, &params, settings, shown_clock, policy, args.simulate).await?;
        let again = match again {
            Ok(outcome) => outcome,
            Err(e) => return Ok(plan_failed(&shown, &e, true)),
        };
        if stale(&effects, &again.records.planned_changes, "the plan was shown") {
            return Ok(exit::STALE);
        }
        effects = again.records.planned_changes;
        journal = journal_again;
    }
    let new = NewRun {
        script: shown.clone(),
        params: params.clone(),
        max_changes,
        concurrency,
        timeout: args.timeout,
        simulate: args.simulate,
        fixture: args.fixture.as_ref().map(|f| f.display().to_string()),
        apply: true,
    };
    let mut local = LocalRun::create(&Store::from_env()?, new, &source)?;
    let seeds: Vec<JournalEntry> = replayable(&journal.entries());
    local.seed(&effects, &seeds)?;
    let attempt = Attempt {
        args,
        plan: false,
        shown,
        source,
        params,
        max_changes,
        concurrency,
        timeout: args.timeout,
        local: Some(local),
        resumed: false,
        expect: Some(Arc::new(Expectation::new(effects))),
        policy,
    };
    execute(engine, attempt).await
}

/// A plan that did not finish: nothing was sent. A re-plan that took another way than the saved
/// plan (its `now()` steps elsewhere) is a stale plan.
fn plan_failed(shown: &str, e: &RunError, applying: bool) -> u8 {
    let place = match e.position {
        Some((line, column)) => format!("{shown}:{line}:{column}: "),
        None => String::new(),
    };
    let message = runbook_core::redact(&e.message);
    if applying && e.kind == RunErrorKind::Diverged {
        eprintln!(
            "error: the plan is stale: the script took another way than when the plan was made ({message}); nothing \
             was sent. Make the plan again and review it"
        );
        return exit::STALE;
    }
    if e.kind.is_refusal() {
        eprint!(
            "{}",
            runbook_core::redact(&output::plan_text(&e.records.planned_changes))
        );
    }
    eprintln!("error: {place}{message}");
    eprintln!("(the plan made before any change failed, so nothing was sent)");
    exit::of_run(e.kind)
}
