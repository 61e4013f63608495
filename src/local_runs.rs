//! Durable `runbook run`s on this machine: each real run keeps a directory
//! `<state dir>/runs/<RUN_ID>/` so that an interrupted or crashed run can go on with
//! `runbook run --resume RUN_ID` without sending a change twice.
//!
//! The state dir is `$RUNBOOK_STATE_DIR`, else `$XDG_STATE_HOME/runbook`, else
//! `$HOME/.local/state/runbook` (directories 0700, files 0600: a run's params and results may be
//! personal data, or secrets). A run's directory holds:
//! - `run.json`: what the run is (format, id, the script's path as given and its SHA-256, params,
//!   options, whether it ran against `--simulate`'s simulators, its attempt and lease epoch, and its
//!   status), replaced atomically;
//! - `script.rhai`: the pinned copy of the script every attempt runs;
//! - `journal.jsonl`: one [`JournalEntry`] as JSON per line, appended and fsync'd before
//!   [`Journal::write`] returns; the last line for a key wins. A `state::set` line also carries the
//!   value it stored (`"state": {"key", "value"}`), so the entry and the value are committed by one
//!   append. A last line without its newline is a write a crash cut short: it was never committed
//!   (its fsync had not returned), so it is ignored and cut off before the next append;
//! - `state.json`: the `state::` values, as a snapshot rebuilt from the journal;
//! - `lock`: held (`flock`) by the one process running the run.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use runbook_core::journal::{JOURNAL_VERSION, hex_digest, sort_by_key};
use runbook_core::{
    Journal, JournalEntry, JournalError, Resolution, RunErrorKind, StateError, StateStore, StepStatus, async_trait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CliError;

/// The `run.json` format this runbook writes; a newer one is refused.
pub const RUN_FORMAT: u32 = 1;

const RUN_FILE: &str = "run.json";
const SCRIPT_FILE: &str = "script.rhai";
const JOURNAL_FILE: &str = "journal.jsonl";
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// An apply's approved effects: the only changes its attempts may send.
const APPROVED_FILE: &str = "approved.json";

/// Where a run stands, as `run.json` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// An attempt is running, or its process died (a crash): resumable once no process holds it.
    Running,
    /// Stopped before its end: Ctrl-C, SIGTERM, its timeout, its journal failing. Resumable.
    Interrupted,
    /// A change in doubt waits for a person (`runbook runs resolve`), then a resume.
    NeedsAttention,
    /// Finished: the script completed.
    Succeeded,
    /// Finished: the script or an action failed.
    Failed,
    /// Finished: refused by the guard or the policy.
    Refused,
    /// Finished: a resume took a different step than the journal recorded.
    Diverged,
    /// Finished: an apply stopped before a change outside its approved plan.
    Stale,
}

impl RunStatus {
    /// The name used in messages and in `run.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
            RunStatus::NeedsAttention => "needs_attention",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Refused => "refused",
            RunStatus::Diverged => "diverged",
            RunStatus::Stale => "stale",
        }
    }

    /// Whether the run is over: nothing to resume.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Refused | RunStatus::Diverged | RunStatus::Stale
        )
    }

    /// The status a run that ended with `error` (`None`: it completed) has.
    pub fn after(error: Option<RunErrorKind>) -> RunStatus {
        match error {
            None => RunStatus::Succeeded,
            Some(RunErrorKind::Cancelled | RunErrorKind::Timeout | RunErrorKind::Journal | RunErrorKind::Fenced) => {
                RunStatus::Interrupted
            }
            Some(RunErrorKind::NeedsAttention) => RunStatus::NeedsAttention,
            Some(RunErrorKind::Diverged) => RunStatus::Diverged,
            Some(RunErrorKind::Guard | RunErrorKind::Policy | RunErrorKind::Budget) => RunStatus::Refused,
            Some(RunErrorKind::Stale) => RunStatus::Stale,
            Some(_) => RunStatus::Failed,
        }
    }
}

/// `run.json`: what a local run is and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The format of this file ([`RUN_FORMAT`]).
    pub format: u32,
    /// The run's id (its directory's name).
    pub run_id: String,
    /// The script's path as it was given.
    pub script: String,
    /// The SHA-256 of the pinned script text, in hex.
    pub script_sha256: String,
    /// The script's params.
    pub params: Map<String, Value>,
    /// `--max-changes`.
    pub max_changes: u64,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--timeout`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Whether it ran against `--simulate`'s simulators (which lived only in its process).
    pub simulate: bool,
    /// `--fixture`, with `--simulate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<String>,
    /// An apply of a plan: every attempt is held to its approved effects (`approved.json`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply: bool,
    /// When the run was created (RFC 3339).
    pub created_at: String,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// The current attempt's lease epoch.
    pub epoch: u64,
    /// Where it stands.
    pub status: RunStatus,
    /// How the last attempt ended, when it failed (`cancelled`, `timeout`, `action`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// When the last attempt ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl RunRecord {
    /// The run's time limit.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

/// What a new run is started with.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The script's path as given.
    pub script: String,
    /// Its params.
    pub params: Map<String, Value>,
    /// `--max-changes`.
    pub max_changes: u64,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--simulate`.
    pub simulate: bool,
    /// `--fixture`.
    pub fixture: Option<String>,
    /// An apply of a plan.
    pub apply: bool,
}

/// Where local runs live.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// How the root was found, for messages (`$RUNBOOK_STATE_DIR`, ...).
    origin: String,
}

impl Store {
    /// The state dir from the environment: `$RUNBOOK_STATE_DIR`, else `$XDG_STATE_HOME/runbook`,
    /// else `$HOME/.local/state/runbook`.
    pub fn from_env() -> Result<Store, CliError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = var("RUNBOOK_STATE_DIR") {
            return Ok(Store::at(dir, "$RUNBOOK_STATE_DIR"));
        }
        // The XDG spec: a relative XDG_STATE_HOME is invalid and is ignored.
        if let Some(dir) = var("XDG_STATE_HOME").filter(|d| d.is_absolute()) {
            return Ok(Store::at(dir.join("runbook"), "$XDG_STATE_HOME/runbook"));
        }
        if let Some(home) = var("HOME") {
            return Ok(Store::at(
                home.join(".local").join("state").join("runbook"),
                "$HOME/.local/state/runbook",
            ));
        }
        Err(CliError::usage(
            "runbook keeps each run's journal in a state directory, and none is known: \
             set RUNBOOK_STATE_DIR (or XDG_STATE_HOME, or HOME)",
        ))
    }

    /// A store rooted at `root`.
    pub fn at(root: impl Into<PathBuf>, origin: impl Into<String>) -> Store {
        Store {
            root: root.into(),
            origin: origin.into(),
        }
    }

    fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The directory of run `run_id`.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.runs().join(run_id)
    }

    /// Targets the local runs changed, or may have, from `since_ms` (unix ms) on: every journaled
    /// change that was not refused by its service, counted in targets as the guard counts them.
    /// Runs against the simulators of `--simulate` changed nothing real and are left out. A
    /// journal that cannot be read is an error: the count would be too low.
    pub fn changes_since(&self, since_ms: i64) -> Result<u64, CliError> {
        let runs = self.runs();
        let listing = match std::fs::read_dir(&runs) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(CliError::usage(format!(
                    "cannot read the directory of runs {} to count today's changes: {e}",
                    runs.display()
                )));
            }
        };
        let since = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(since_ms).unwrap_or(0));
        let mut total = 0u64;
        for dir in listing.flatten() {
            let dir = dir.path();
            let journal = dir.join(JOURNAL_FILE);
            // A journal last written before the window holds nothing in it.
            match std::fs::metadata(&journal).and_then(|m| m.modified()) {
                Ok(modified) if modified < since => continue,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => {}
            }
            let simulated = std::fs::read(dir.join(RUN_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("simulate").and_then(Value::as_bool))
                .unwrap_or(false);
            if simulated {
                continue;
            }
            let loaded = read_journal(&journal).map_err(|e| {
                CliError::usage(format!(
                    "cannot count the changes of earlier runs for the daily budget: {}: {e}; nothing was sent",
                    journal.display()
                ))
            })?;
            total += loaded
                .entries
                .iter()
                .filter(|e| e.may_have_changed() && e.started_at >= since_ms)
                .map(|e| e.targets)
                .sum::<u64>();
        }
        Ok(total)
    }
}

/// One local run, held by this process (its `lock` is taken) until dropped.
pub struct LocalRun {
    dir: PathBuf,
    record: Mutex<RunRecord>,
    /// The script every attempt runs.
    script: String,
    journal: Arc<FileJournal>,
    /// Held for the run's lifetime: the lock goes with it.
    _lock: File,
}

impl std::fmt::Debug for LocalRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRun")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalRun {
    /// Creates a new run with a new id: its directory, `run.json`, the pinned script and an
    /// empty journal; the run is locked by this process.
    pub fn create(store: &Store, new: NewRun, source: &str) -> Result<LocalRun, CliError> {
        let run_id = uuid::Uuid::now_v7().to_string();
        let runs = store.runs();
        create_private_dir(&runs).map_err(|e| {
            CliError::usage(format!(
                "cannot create the directory of runs {} ({}): {e}; set RUNBOOK_STATE_DIR to a writable directory",
                runs.display(),
                store.origin
            ))
        })?;
        let dir = runs.join(&run_id);
        let fail = |what: &str, e: std::io::Error| {
            CliError::usage(format!("cannot create the run's {what} in {}: {e}", dir.display()))
        };
        make_private_dir(&dir).map_err(|e| fail("directory", e))?;
        let lock = take_lock(&dir, &run_id)?;
        write_atomically(&dir.join(SCRIPT_FILE), source.as_bytes()).map_err(|e| fail("script copy", e))?;
        let record = RunRecord {
            format: RUN_FORMAT,
            run_id,
            script: new.script,
            script_sha256: hex_digest(source.as_bytes()),
            params: new.params,
            max_changes: new.max_changes,
            concurrency: new.concurrency,
            timeout_ms: new.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            simulate: new.simulate,
            fixture: new.fixture,
            apply: new.apply,
            created_at: jiff::Timestamp::now().to_string(),
            attempt: 1,
            epoch: 1,
            status: RunStatus::Running,
            error_kind: None,
            finished_at: None,
        };
        write_record(&dir, &record).map_err(|e| fail("run.json", e))?;
        let journal = FileJournal::open(&dir, record.attempt, record.epoch)?;
        sync_dir(&runs).map_err(|e| fail("directory", e))?;
        Ok(LocalRun {
            dir,
            record: Mutex::new(record),
            script: source.to_owned(),
            journal: Arc::new(journal),
            _lock: lock,
        })
    }

    /// Opens run `run_id` to resume it: takes its lock, reads and checks `run.json`, the pinned
    /// script and the journal. The attempt is not started yet: see [`LocalRun::begin_attempt`].
    pub fn open(store: &Store, run_id: &str) -> Result<LocalRun, CliError> {
        check_run_id(run_id)?;
        let dir = store.run_dir(run_id);
        if !dir.join(RUN_FILE).exists() {
            return Err(CliError::usage(format!(
                "no run {run_id} on this machine: looked for {} (the state directory is {}, from {}); \
                 `ls {}` lists the runs kept here",
                dir.join(RUN_FILE).display(),
                store.root.display(),
                store.origin,
                store.runs().display()
            )));
        }
        let lock = take_lock(&dir, run_id)?;
        let record = read_record(&dir, run_id)?;
        let script_path = dir.join(SCRIPT_FILE);
        let script = std::fs::read_to_string(&script_path).map_err(|e| {
            CliError::usage(format!(
                "cannot read the run's pinned script {}: {e}",
                script_path.display()
            ))
        })?;
        if hex_digest(script.as_bytes()) != record.script_sha256 {
            return Err(CliError::usage(format!(
                "{}: the pinned script is not the one run {run_id} was started with (its SHA-256 differs \
                 from run.json's script_sha256): the run cannot be resumed safely; start a new run",
                script_path.display()
            )));
        }
        let journal = FileJournal::open(&dir, record.attempt, record.epoch)?;
        Ok(LocalRun {
            dir,
            record: Mutex::new(record),
            script,
            journal: Arc::new(journal),
            _lock: lock,
        })
    }

    /// Starts the next attempt: a new attempt number and lease epoch, status `running`, recorded
    /// in `run.json` before anything runs.
    pub fn begin_attempt(&mut self) -> Result<(), CliError> {
        let mut record = lock(&self.record).clone();
        record.attempt = record.attempt.saturating_add(1);
        record.epoch = record.epoch.saturating_add(1);
        record.status = RunStatus::Running;
        record.error_kind = None;
        record.finished_at = None;
        write_record(&self.dir, &record)
            .map_err(|e| CliError::usage(format!("cannot write {}: {e}", self.dir.join(RUN_FILE).display())))?;
        let journal = FileJournal::open(&self.dir, record.attempt, record.epoch)?;
        self.journal = Arc::new(journal);
        *lock(&self.record) = record;
        Ok(())
    }

    /// Records how the attempt ended.
    pub fn finish(&self, error: Option<RunErrorKind>) -> Result<RunStatus, CliError> {
        let mut record = lock(&self.record).clone();
        record.status = RunStatus::after(error);
        record.error_kind = error.map(kind_name);
        record.finished_at = Some(jiff::Timestamp::now().to_string());
        write_record(&self.dir, &record)
            .map_err(|e| CliError::failed(format!("cannot write {}: {e}", self.dir.join(RUN_FILE).display())))?;
        let status = record.status;
        *lock(&self.record) = record;
        Ok(status)
    }

    /// Makes the run an apply of `approved`: records the approved effects, then the re-plan's
    /// reads (`seeds`) as steps the run replays instead of reading again. Both are kept before
    /// anything is sent, so a resumed attempt is held to the same plan and sees the same reads.
    pub fn seed(&mut self, approved: &[runbook_core::PlannedChange], seeds: &[JournalEntry]) -> Result<(), CliError> {
        let path = self.dir.join(APPROVED_FILE);
        let text = serde_json::to_vec_pretty(approved).unwrap_or_default();
        write_atomically(&path, &text)
            .map_err(|e| CliError::usage(format!("cannot write the approved plan {}: {e}", path.display())))?;
        let lines: Vec<u8> = seeds.iter().flat_map(|e| line_of(e, None)).collect();
        if !lines.is_empty() {
            self.journal.file.append(&lines).map_err(|e| {
                CliError::usage(format!(
                    "cannot write the journal {}: {e}",
                    self.dir.join(JOURNAL_FILE).display()
                ))
            })?;
        }
        let record = self.record();
        self.journal = Arc::new(FileJournal::open(&self.dir, record.attempt, record.epoch)?);
        Ok(())
    }

    /// The approved effects, when the run is an apply. An apply whose approved plan is missing
    /// (killed before it was kept) is not resumed: it sent nothing yet.
    pub fn approved(&self) -> Result<Option<Vec<runbook_core::PlannedChange>>, CliError> {
        let path = self.dir.join(APPROVED_FILE);
        if self.record().apply && !path.exists() {
            return Err(CliError::usage(format!(
                "run {} is an apply whose approved plan {} was never kept (the process stopped before it was \
                 written; nothing was sent): apply the plan again",
                self.id(),
                path.display()
            )));
        }
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CliError::usage(format!(
                    "{}: the run's approved plan cannot be read ({e}); it is not resumed",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::usage(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// The run's id.
    pub fn id(&self) -> String {
        lock(&self.record).run_id.clone()
    }

    /// The run's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `run.json` as it stands.
    pub fn record(&self) -> RunRecord {
        lock(&self.record).clone()
    }

    /// The pinned script.
    pub fn script(&self) -> &str {
        &self.script
    }

    /// The pinned script's path.
    pub fn script_path(&self) -> PathBuf {
        self.dir.join(SCRIPT_FILE)
    }

    /// The journal of the current attempt, for the engine.
    pub fn journal(&self) -> Arc<dyn Journal> {
        self.journal.clone()
    }

    /// The `state::` values: those earlier attempts stored, and those this one stores.
    pub fn state(&self) -> Arc<dyn StateStore> {
        self.journal.clone()
    }

    /// How many steps earlier attempts recorded.
    pub fn recorded_steps(&self) -> usize {
        self.journal.earlier.len()
    }

    /// The changes in doubt (sent, never answered, not resolved by a person), as the journal
    /// holds them now.
    pub fn in_doubt(&self) -> Vec<JournalEntry> {
        match read_journal(&self.dir.join(JOURNAL_FILE)) {
            Ok(loaded) => loaded
                .entries
                .into_iter()
                .filter(|e| e.status == StepStatus::Intent && e.resolution.is_none())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Records a person's word on a change in doubt of local run `run_id`: whether it was sent.
/// `Ok(false)`: there is no such run on this machine.
pub fn resolve_local(run_id: &str, step: &str, resolution: Resolution) -> Result<bool, CliError> {
    resolve_in(&Store::from_env()?, run_id, step, resolution)
}

fn resolve_in(store: &Store, run_id: &str, step: &str, resolution: Resolution) -> Result<bool, CliError> {
    if check_run_id(run_id).is_err() || !store.run_dir(run_id).join(RUN_FILE).exists() {
        return Ok(false);
    }
    let run = LocalRun::open(store, run_id)?;
    let record = run.record();
    if record.status.is_finished() {
        return Err(CliError::usage(format!(
            "run {run_id} has already finished ({}): there is nothing to resolve",
            record.status.as_str()
        )));
    }
    let path = run.dir.join(JOURNAL_FILE);
    let loaded = read_journal(&path).map_err(|e| journal_cli_error(&path, &e))?;
    let Some(entry) = loaded.entries.into_iter().find(|e| e.key == step) else {
        return Err(CliError::usage(format!(
            "run {run_id} has no step {step}; the changes in doubt are: {}",
            describe_steps(&run.in_doubt())
        )));
    };
    if entry.status != StepStatus::Intent {
        return Err(CliError::usage(format!(
            "step {step} of run {run_id} is not in doubt: it was answered ({}); only a change sent \
             and never answered is resolved",
            entry.status.as_str()
        )));
    }
    let mut entry = entry;
    entry.resolution = Some(resolution);
    entry.resolved_by = Some(
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".to_owned()),
    );
    run.journal
        .file
        .append(&line_of(&entry, None))
        .map_err(|e| journal_cli_error(&path, &e))?;
    Ok(true)
}

/// A run error kind's name (`cancelled`, `needs_attention`).
pub fn kind_name(kind: RunErrorKind) -> String {
    match serde_json::to_value(kind) {
        Ok(Value::String(name)) => name,
        _ => format!("{kind:?}"),
    }
}

/// `3 cloudflare.create_user(...)`, `4 ...`, or `none`.
pub fn describe_steps(entries: &[JournalEntry]) -> String {
    if entries.is_empty() {
        return "none".to_owned();
    }
    entries
        .iter()
        .map(JournalEntry::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

fn journal_cli_error(path: &Path, e: &JournalError) -> CliError {
    match e {
        JournalError::Corrupt(_) | JournalError::NewerVersion { .. } => {
            CliError::usage(format!("{}: {e}", path.display()))
        }
        _ => CliError::failed(format!("{}: {e}", path.display())),
    }
}

/// A run id names a directory: only letters, digits, `-` and `_`.
fn check_run_id(run_id: &str) -> Result<(), CliError> {
    let fine = !run_id.is_empty()
        && run_id.len() <= 128
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fine {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "\"{run_id}\" is not a run id (a run id is what `runbook run` printed: `run <ID> (journal: ...)`)"
        )))
    }
}

fn take_lock(dir: &Path, run_id: &str) -> Result<File, CliError> {
    let path = dir.join(LOCK_FILE);
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| CliError::usage(format!("cannot open the run's lock {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::usage(format!(
            "run {run_id} is being run by another process (it holds {}): wait for it to end, \
             or stop it (Ctrl-C), then resume",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(CliError::usage(format!("cannot lock the run {}: {e}", path.display())))
        }
    }
}

fn read_record(dir: &Path, run_id: &str) -> Result<RunRecord, CliError> {
    let path = dir.join(RUN_FILE);
    let shown = path.display();
    let text = std::fs::read_to_string(&path).map_err(|e| CliError::usage(format!("cannot read {shown}: {e}")))?;
    let raw: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("{shown}: {}", JournalError::Corrupt(format!("not JSON ({e})")))))?;
    let format = raw.get("format").and_then(Value::as_u64).unwrap_or(0);
    if format > u64::from(RUN_FORMAT) {
        return Err(CliError::usage(format!(
            "{shown}: the run was written by a newer runbook (run format {format}; this one reads up to \
             {RUN_FORMAT}): resume it with that version"
        )));
    }
    let record: RunRecord = serde_json::from_value(raw).map_err(|e| {
        CliError::usage(format!(
            "{shown}: {}",
            JournalError::Corrupt(format!("not a run record ({e})"))
        ))
    })?;
    if record.run_id != run_id {
        return Err(CliError::usage(format!(
            "{shown}: {}",
            JournalError::Corrupt(format!(
                "it records run {}, but it is in the directory of run {run_id}",
                record.run_id
            ))
        )));
    }
    Ok(record)
}

fn write_record(dir: &Path, record: &RunRecord) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    text.push(b'\n');
    write_atomically(&dir.join(RUN_FILE), &text)
}

/// Writes `path` whole or not at all: a temporary file, fsync'd, renamed over it, the directory
/// fsync'd.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = private_options().write(true).create(true).truncate(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates `dir` and its missing parents, private to the user.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[allow(unused_mut)]
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates `dir`, which must not exist yet, private to the user.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    #[allow(unused_mut)]
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `journal.jsonl` holds.
#[derive(Debug, Default)]
struct Loaded {
    /// The last entry of each key, in key order.
    entries: Vec<JournalEntry>,
    /// The `state::` values, the last stored of each key.
    state: Map<String, Value>,
    /// The length of the committed lines (the file's length, less a torn last line).
    committed: u64,
    /// Whether a torn last line was ignored.
    torn: bool,
}

/// One line of the journal: the entry, and for a `state::set` the value it stored.
fn line_of(entry: &JournalEntry, state: Option<(&str, &Value)>) -> Vec<u8> {
    let mut value = serde_json::to_value(entry).unwrap_or(Value::Null);
    if let (Some((key, stored)), Some(object)) = (state, value.as_object_mut()) {
        object.insert("state".to_owned(), serde_json::json!({"key": key, "value": stored}));
    }
    let mut line = serde_json::to_vec(&value).unwrap_or_default();
    line.push(b'\n');
    line
}

fn read_journal(path: &Path) -> Result<Loaded, JournalError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(JournalError::Unavailable(format!("cannot read it: {e}"))),
    };
    // Only lines ending in a newline were committed; what follows the last newline is a write a
    // crash cut short.
    let committed = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut entries: HashMap<String, JournalEntry> = HashMap::new();
    let mut state = Map::new();
    for (n, line) in bytes[..committed].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let number = n + 1;
        let damaged = |why: String| JournalError::Corrupt(format!("line {number} is damaged: {why}"));
        let mut value: Value = serde_json::from_slice(line).map_err(|e| damaged(format!("not JSON ({e})")))?;
        let version = value.get("version").map_or(Some(1), Value::as_u64);
        match version {
            Some(v) if v > u64::from(JOURNAL_VERSION) => {
                return Err(JournalError::NewerVersion {
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                });
            }
            Some(_) => {}
            None => return Err(damaged("its version is not a number".to_owned())),
        }
        let stored = value.as_object_mut().and_then(|o| o.remove("state"));
        let entry: JournalEntry =
            serde_json::from_value(value).map_err(|e| damaged(format!("not a journal entry ({e})")))?;
        if let Some(stored) = stored {
            let key = stored.get("key").and_then(Value::as_str);
            let Some(key) = key else {
                return Err(damaged("its state value has no key".to_owned()));
            };
            state.insert(key.to_owned(), stored.get("value").cloned().unwrap_or(Value::Null));
        }
        entries.insert(entry.key.clone(), entry);
    }
    let mut entries: Vec<JournalEntry> = entries.into_values().collect();
    sort_by_key(&mut entries);
    Ok(Loaded {
        entries,
        state,
        committed: committed as u64,
        torn: committed < bytes.len(),
    })
}

/// `journal.jsonl`, open for appending.
#[derive(Debug)]
struct JournalFile {
    path: PathBuf,
    inner: Mutex<Appender>,
}

#[derive(Debug)]
struct Appender {
    file: File,
    /// The committed length: where the next line goes.
    len: u64,
    /// A failed append could not be taken back: nothing more is written.
    broken: bool,
}

impl JournalFile {
    /// Appends one line and fsyncs it: committed when this returns `Ok`.
    fn append(&self, line: &[u8]) -> Result<(), JournalError> {
        let mut appender = lock(&self.inner);
        if appender.broken {
            return Err(JournalError::Unavailable(format!(
                "{}: an earlier write failed and could not be taken back",
                self.path.display()
            )));
        }
        let written = appender.file.write_all(line).and_then(|()| appender.file.sync_data());
        match written {
            Ok(()) => {
                appender.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Take back a partial line, so that the next one does not glue onto it.
                let len = appender.len;
                if appender
                    .file
                    .set_len(len)
                    .and_then(|()| appender.file.sync_data())
                    .is_err()
                {
                    appender.broken = true;
                }
                Err(JournalError::Unavailable(format!("{}: {e}", self.path.display())))
            }
        }
    }
}

/// The journal (and state store) of one attempt of a local run.
#[derive(Debug)]
struct FileJournal {
    file: Arc<JournalFile>,
    /// What earlier attempts recorded.
    earlier: Vec<JournalEntry>,
    state: Mutex<Map<String, Value>>,
    state_path: PathBuf,
    attempt: u32,
    epoch: u64,
}

impl FileJournal {
    /// Reads the journal (refusing a damaged one), cuts off a torn last line, and opens it for
    /// appending.
    fn open(dir: &Path, attempt: u32, epoch: u64) -> Result<FileJournal, CliError> {
        let path = dir.join(JOURNAL_FILE);
        let loaded = read_journal(&path).map_err(|e| journal_cli_error(&path, &e))?;
        let cannot = |e: std::io::Error| CliError::usage(format!("cannot open the journal {}: {e}", path.display()));
        let file = private_options()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(cannot)?;
        if loaded.torn {
            eprintln!(
                "warning: {}: ignored an incomplete last line (a write cut short by a crash; it was never committed)",
                path.display()
            );
            file.set_len(loaded.committed)
                .and_then(|()| file.sync_data())
                .map_err(cannot)?;
        }
        sync_dir(dir).map_err(cannot)?;
        let journal = FileJournal {
            file: Arc::new(JournalFile {
                path: path.clone(),
                inner: Mutex::new(Appender {
                    file,
                    len: loaded.committed,
                    broken: false,
                }),
            }),
            earlier: loaded.entries,
            state: Mutex::new(loaded.state),
            state_path: dir.join(STATE_FILE),
            attempt,
            epoch,
        };
        journal.save_state();
        Ok(journal)
    }

    async fn append(&self, line: Vec<u8>) -> Result<(), JournalError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.append(&line))
            .await
            .map_err(|e| JournalError::Unavailable(format!("the journal's writer stopped: {e}")))?
    }

    /// Rewrites `state.json` from the values: a snapshot (the journal is the record), so a
    /// failure is only a warning.
    fn save_state(&self) {
        let snapshot = Value::Object(lock(&self.state).clone());
        let mut text = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
        text.push(b'\n');
        if let Err(e) = write_atomically(&self.state_path, &text) {
            tracing::warn!(
                "cannot write {}: {e} (the values are kept in the journal)",
                self.state_path.display()
            );
        }
    }
}

#[async_trait]
impl Journal for FileJournal {
    async fn load(&self) -> Result<Vec<JournalEntry>, JournalError> {
        Ok(self.earlier.clone())
    }

    async fn write(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        self.append(line_of(entry, None)).await
    }

    async fn write_batch(&self, entries: &[JournalEntry], state: Option<(&str, &Value)>) -> Result<(), JournalError> {
        // One append, one fsync: the lines land in order, and a crash mid-write leaves complete
        // lines (earlier steps, committed) and a cut last one (never committed, never sent).
        let Some((last, before)) = entries.split_last() else {
            return Ok(());
        };
        let mut lines: Vec<u8> = before.iter().flat_map(|e| line_of(e, None)).collect();
        lines.extend(line_of(last, state));
        self.append(lines).await?;
        if let Some((key, value)) = state {
            lock(&self.state).insert(key.to_owned(), value.clone());
            self.save_state();
        }
        Ok(())
    }

    async fn write_with_state(&self, entry: &JournalEntry, key: &str, value: &Value) -> Result<(), JournalError> {
        // One line holds both: committed together, or neither.
        self.append(line_of(entry, Some((key, value)))).await?;
        lock(&self.state).insert(key.to_owned(), value.clone());
        self.save_state();
        Ok(())
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }
}

#[async_trait]
impl StateStore for FileJournal {
    async fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        Ok(lock(&self.state).get(key).cloned())
    }

    async fn set(&self, key: &str, value: Value) -> Result<(), StateError> {
        // With a journal the engine stores values through `write_with_state`; this is only
        // reached without one, and keeps the snapshot current.
        lock(&self.state).insert(key.to_owned(), value);
        self.save_state();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_core::{Effect, StepKind};

    use super::*;

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::at(dir.path().join("state"), "a test")
    }

    fn new_run() -> NewRun {
        NewRun {
            script: "five.rhai".to_owned(),
            params: serde_json::json!({"who": "ann"}).as_object().unwrap().clone(),
            max_changes: 7,
            concurrency: 3,
            timeout: Some(Duration::from_secs(90)),
            simulate: false,
            fixture: None,
            apply: false,
        }
    }

    fn entry(key: &str, status: StepStatus) -> JournalEntry {
        let mut entry = JournalEntry::new(key, StepKind::Call, "cloudflare.update_user", Effect::Write);
        entry.status = status;
        entry.args = serde_json::json!(["u1", {"name": "Ann"}]);
        entry
    }

    /// Creates a run, closes it, and returns its id.
    fn created(store: &Store) -> String {
        let run = LocalRun::create(store, new_run(), "40 + 2").unwrap();
        run.id()
    }

    fn journal_path(store: &Store, id: &str) -> PathBuf {
        store.run_dir(id).join(JOURNAL_FILE)
    }

    #[test]
    fn an_apply_is_resumed_only_with_its_approved_plan() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let id = {
            let run = LocalRun::create(
                &store,
                NewRun {
                    apply: true,
                    ..new_run()
                },
                "40 + 2",
            )
            .unwrap();
            run.id()
        };
        // Killed between its creation and keeping the approved plan: not resumed as a plain run.
        let run = LocalRun::open(&store, &id).unwrap();
        let err = run.approved().unwrap_err();
        assert!(err.message.contains("never kept"), "{}", err.message);
        drop(run);
        let mut run = LocalRun::open(&store, &id).unwrap();
        run.seed(&[], &[entry("1", StepStatus::Ok)]).unwrap();
        assert_eq!(run.approved().unwrap(), Some(vec![]));
        assert_eq!(run.recorded_steps(), 1, "the seeded reads are the journal's");
        // A plain run has no approved plan, and needs none.
        let plain = LocalRun::create(&store, new_run(), "40 + 2").unwrap();
        assert_eq!(plain.approved().unwrap(), None);
    }

    #[tokio::test]
    async fn a_run_keeps_its_record_its_pinned_script_and_its_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let run = LocalRun::create(&store, new_run(), "40 + 2").unwrap();
        let id = run.id();
        run.journal().write(&entry("1", StepStatus::Intent)).await.unwrap();
        run.journal().write(&entry("1", StepStatus::Ok)).await.unwrap();
        run.journal().write(&entry("2", StepStatus::Intent)).await.unwrap();
        drop(run);

        let mut again = LocalRun::open(&store, &id).unwrap();
        assert_eq!(again.script(), "40 + 2");
        let record = again.record();
        assert_eq!(
            (record.max_changes, record.concurrency, record.timeout()),
            (7, 3, Some(Duration::from_secs(90)))
        );
        assert_eq!(record.params["who"], "ann");
        assert_eq!(
            (record.attempt, record.epoch, record.status),
            (1, 1, RunStatus::Running)
        );
        let earlier = again.journal().load().await.unwrap();
        let statuses: Vec<(&str, StepStatus)> = earlier.iter().map(|e| (e.key.as_str(), e.status)).collect();
        assert_eq!(
            statuses,
            [("1", StepStatus::Ok), ("2", StepStatus::Intent)],
            "the last line of a key wins"
        );
        assert_eq!(again.in_doubt().len(), 1);
        again.begin_attempt().unwrap();
        assert_eq!((again.journal().attempt(), again.journal().epoch()), (2, 2));
        assert_eq!(again.finish(None).unwrap(), RunStatus::Succeeded);
        drop(again);
        let record = LocalRun::open(&store, &id).unwrap().record();
        assert_eq!((record.attempt, record.status), (2, RunStatus::Succeeded));
    }

    #[cfg(unix)]
    #[test]
    fn the_run_directory_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let id = created(&store);
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.runs()), 0o700);
        assert_eq!(mode(store.run_dir(&id)), 0o700);
        for file in [RUN_FILE, SCRIPT_FILE, JOURNAL_FILE, STATE_FILE, LOCK_FILE] {
            assert_eq!(mode(store.run_dir(&id).join(file)), 0o600, "{file}");
        }
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ignored_and_cut_off_before_the_next_append() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let run = LocalRun::create(&store, new_run(), "40 + 2").unwrap();
        let id = run.id();
        run.journal().write(&entry("1", StepStatus::Ok)).await.unwrap();
        drop(run);
        let path = journal_path(&store, &id);
        let mut torn = std::fs::read(&path).unwrap();
        let whole = line_of(&entry("2", StepStatus::Intent), None);
        torn.extend_from_slice(&whole[..whole.len() / 2]);
        std::fs::write(&path, &torn).unwrap();

        let run = LocalRun::open(&store, &id).unwrap();
        let keys: Vec<String> = run.journal().load().await.unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["1"]);
        run.journal().write(&entry("3", StepStatus::Ok)).await.unwrap();
        drop(run);
        let run = LocalRun::open(&store, &id).unwrap();
        let keys: Vec<String> = run.journal().load().await.unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["1", "3"], "the next line did not glue onto the torn one");
    }

    #[tokio::test]
    async fn a_damaged_line_before_the_last_is_refused_naming_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let run = LocalRun::create(&store, new_run(), "40 + 2").unwrap();
        let id = run.id();
        run.journal().write(&entry("1", StepStatus::Ok)).await.unwrap();
        drop(run);
        let path = journal_path(&store, &id);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.insert_str(0, "{\"key\": \"0\", \"kind\":\n");
        std::fs::write(&path, text).unwrap();
        let err = LocalRun::open(&store, &id).unwrap_err();
        assert_eq!(err.code, crate::error::exit::USAGE);
        assert!(err.message.contains(&path.display().to_string()), "{}", err.message);
        assert!(err.message.contains("line 1 is damaged"), "{}", err.message);
    }

    #[tokio::test]
    async fn an_entry_of_a_newer_journal_format_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let id = created(&store);
        let mut newer = entry("1", StepStatus::Ok);
        newer.version = JOURNAL_VERSION + 1;
        std::fs::write(journal_path(&store, &id), line_of(&newer, None)).unwrap();
        let err = LocalRun::open(&store, &id).unwrap_err();
        assert_eq!(err.code, crate::error::exit::USAGE);
        assert!(err.message.contains("written by a newer runbook"), "{}", err.message);
        assert!(err.message.contains(JOURNAL_FILE), "{}", err.message);
    }

    #[test]
    fn a_run_record_of_another_run_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let id = created(&store);
        let other = created(&store);
        std::fs::copy(store.run_dir(&other).join(RUN_FILE), store.run_dir(&id).join(RUN_FILE)).unwrap();
        let err = LocalRun::open(&store, &id).unwrap_err();
        assert!(err.message.contains(RUN_FILE), "{}", err.message);
        assert!(
            err.message.contains(&format!("it records run {other}")),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_changed_pinned_script_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let id = created(&store);
        std::fs::write(store.run_dir(&id).join(SCRIPT_FILE), "41 + 2").unwrap();
        let err = LocalRun::open(&store, &id).unwrap_err();
        assert!(
            err.message.contains("the pinned script is not the one"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_run_held_by_another_process_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let run = LocalRun::create(&store, new_run(), "40 + 2").unwrap();
        let err = LocalRun::open(&store, &run.id()).unwrap_err();
        assert_eq!(err.code, crate::error::exit::USAGE);
        assert!(
            err.message.contains("is being run by another process"),
            "{}",
            err.message
        );
        let id = run.id();
        drop(run);
        assert!(LocalRun::open(&store, &id).is_ok(), "the lock goes with the run");
    }

    #[test]
    fn an_unknown_or_malformed_run_id_says_where_it_looked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let err = LocalRun::open(&store, "0190aaaa-0000-7000-8000-000000000000").unwrap_err();
        assert_eq!(err.code, crate::error::exit::USAGE);
        assert!(
            err.message.contains(&store.runs().display().to_string()),
            "{}",
            err.message
        );
        let err = LocalRun::open(&store, "../etc").unwrap_err();
        assert!(err.message.contains("is not a run id"), "{}", err.message);
    }

    #[tokio::test]
    async fn state_values_come_back_from_the_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let run = LocalRun::create(&store, new_run(), "40 + 2").unwrap();
        let id = run.id();
        let set = JournalEntry::new("1", StepKind::StateSet, "cursor", Effect::Read);
        run.journal()
            .write_with_state(&set, "cursor", &serde_json::json!({"at": 5}))
            .await
            .unwrap();
        assert_eq!(
            run.state().get("cursor").await.unwrap(),
            Some(serde_json::json!({"at": 5}))
        );
        drop(run);
        let snapshot: Value =
            serde_json::from_str(&std::fs::read_to_string(store.run_dir(&id).join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(snapshot, serde_json::json!({"cursor": {"at": 5}}));
        // The journal is the record: without the snapshot, the value is still there.
        std::fs::remove_file(store.run_dir(&id).join(STATE_FILE)).unwrap();
        let run = LocalRun::open(&store, &id).unwrap();
        assert_eq!(
            run.state().get("cursor").await.unwrap(),
            Some(serde_json::json!({"at": 5}))
        );
        assert_eq!(run.journal().load().await.unwrap()[0].kind, StepKind::StateSet);
    }

    #[tokio::test]
    async fn a_change_in_doubt_is_resolved_by_a_person() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(&tmp);
        let run = LocalRun::create(&store, new_run(), "40 + 2").unwrap();
        let id = run.id();
        run.journal().write(&entry("1", StepStatus::Ok)).await.unwrap();
        run.journal().write(&entry("2", StepStatus::Intent)).await.unwrap();
        run.finish(Some(RunErrorKind::NeedsAttention)).unwrap();
        // Not while the run is held.
        assert!(resolve_in(&store, &id, "2", Resolution::NotSent).is_err());
        drop(run);
        assert!(!resolve_in(&store, "0190aaaa-0000-7000-8000-000000000000", "2", Resolution::Sent).unwrap());
        let err = resolve_in(&store, &id, "1", Resolution::Sent).unwrap_err();
        assert!(err.message.contains("not in doubt"), "{}", err.message);
        let err = resolve_in(&store, &id, "9", Resolution::Sent).unwrap_err();
        assert!(err.message.contains("step 2 cloudflare.update_user"), "{}", err.message);
        assert!(resolve_in(&store, &id, "2", Resolution::NotSent).unwrap());
        let run = LocalRun::open(&store, &id).unwrap();
        let resolved = run
            .journal()
            .load()
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.key == "2")
            .unwrap();
        assert_eq!(resolved.resolution, Some(Resolution::NotSent));
        assert!(resolved.resolved_by.is_some());
        assert!(run.in_doubt().is_empty());
    }

    #[test]
    fn statuses_after_each_ending() {
        assert_eq!(RunStatus::after(None), RunStatus::Succeeded);
        for kind in [
            RunErrorKind::Cancelled,
            RunErrorKind::Timeout,
            RunErrorKind::Journal,
            RunErrorKind::Fenced,
        ] {
            assert_eq!(RunStatus::after(Some(kind)), RunStatus::Interrupted);
        }
        assert_eq!(
            RunStatus::after(Some(RunErrorKind::NeedsAttention)),
            RunStatus::NeedsAttention
        );
        assert!(!RunStatus::NeedsAttention.is_finished());
        assert!(RunStatus::after(Some(RunErrorKind::Diverged)).is_finished());
        assert!(RunStatus::after(Some(RunErrorKind::Action)).is_finished());
        assert_eq!(RunStatus::after(Some(RunErrorKind::Guard)), RunStatus::Refused);
    }
}
