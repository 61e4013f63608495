//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`, so that a run
//! answered to a webhook is on disk before the answer leaves.
//!
//! All writes go through one writer thread, in order (SQLite has one writer anyway). Intakes
//! that arrive together are committed in one transaction — a group commit — so durability does
//! not cost one disk flush per delivery. Reads use their own connection and never wait for the
//! writer. One server owns the file: an exclusive lock on `<file>.lock` makes a second
//! `runbook serve` on the same file fail at start, which is also why, at start, every run still
//! marked running belongs to a process that is gone.
//!
//! The file (and its lock) are readable by their owner only: runs and journals hold what the
//! scripts read and sent, personal data among it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use tokio::sync::oneshot;

use runbook_core::{Journal, JournalEntry, JournalError, Resolution};

use super::{
    APPROVAL_COLUMNS, Approval, AutomationSwitch, Backlog, CancelError, Cancelled, ClaimedRun, Completion,
    ConsoleSession, DecideError, Decided, Decision, ENTRY_COLUMNS, EXPIRED_TEXT, Enqueued, EntryRow, NewRun,
    PendingPlan, ResolveError, RunFilter, RunRecord, RunStatus, RunSummary, Stats, Store, StoreError, approval_of,
    approval_state, fenced, history_steps, journal_entries, json_text, rejection_text, script_digest,
};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    id            TEXT PRIMARY KEY,
    automation    TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    idem_key      TEXT,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_retries   INTEGER NOT NULL,
    params        TEXT NOT NULL,
    event         TEXT,
    scheduled_for INTEGER,
    result        TEXT,
    error         TEXT,
    error_kind    TEXT,
    logs          TEXT NOT NULL DEFAULT '[]',
    calls         TEXT NOT NULL DEFAULT '[]',
    retry_of      TEXT,
    created_at    INTEGER NOT NULL,
    not_before    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    lease_owner   TEXT,
    lease_until   INTEGER,
    UNIQUE (automation, idem_key)
);
CREATE INDEX IF NOT EXISTS runs_queue ON runs (status, not_before);
CREATE INDEX IF NOT EXISTS runs_by_automation ON runs (automation, id);
CREATE INDEX IF NOT EXISTS runs_backlog ON runs (automation, status);
CREATE TABLE IF NOT EXISTS state (
    automation TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (automation, key)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
"#;

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 5;

/// From version 1: runs pin their script and count lease epochs; the journal of their steps.
const MIGRATE_TO_2: &str = r#"
ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN script TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN script_digest TEXT NOT NULL DEFAULT '';
CREATE TABLE journal (
    run_id        TEXT NOT NULL,
    key           TEXT NOT NULL,
    version       INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    action        TEXT NOT NULL,
    effect        TEXT NOT NULL,
    idempotent    INTEGER NOT NULL,
    args_digest   TEXT NOT NULL,
    args          TEXT NOT NULL,
    status        TEXT NOT NULL,
    result        TEXT,
    result_digest TEXT,
    error         TEXT,
    targets       INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    epoch         INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    resolution    TEXT,
    resolved_by   TEXT,
    PRIMARY KEY (run_id, key)
);
UPDATE meta SET value = '2' WHERE key = 'schema_version';
"#;

/// From version 2: webhook dedup keys in their own table, kept longer than run history (the keys
/// of the webhook runs already stored are copied into it); who started and who cancelled each
/// run; automations a person paused.
const MIGRATE_TO_3: &str = r#"
CREATE TABLE deliveries (
    automation  TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (automation, key)
);
CREATE INDEX deliveries_received ON deliveries (received_at);
INSERT OR IGNORE INTO deliveries (automation, key, run_id, received_at)
    SELECT automation, idem_key, id, created_at FROM runs WHERE trigger = 'webhook' AND idem_key IS NOT NULL;
ALTER TABLE runs ADD COLUMN started_by TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN cancelled_by TEXT;
CREATE TABLE automations (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    changed_by TEXT NOT NULL,
    changed_at INTEGER NOT NULL
);
UPDATE meta SET value = '3' WHERE key = 'schema_version';
"#;

/// From version 3: approvals — a run's plan waiting for its approvers, and their decisions.
const MIGRATE_TO_4: &str = r#"
ALTER TABLE runs ADD COLUMN plan TEXT;
ALTER TABLE runs ADD COLUMN plan_sha256 TEXT;
ALTER TABLE runs ADD COLUMN plan_round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN plan_diff TEXT;
ALTER TABLE runs ADD COLUMN approval_expires_at INTEGER;
ALTER TABLE runs ADD COLUMN approved_at INTEGER;
CREATE TABLE approvals (
    run_id         TEXT NOT NULL,
    round          INTEGER NOT NULL,
    approver       TEXT NOT NULL,
    decision       TEXT NOT NULL,
    comment        TEXT NOT NULL,
    effects_sha256 TEXT NOT NULL,
    at             INTEGER NOT NULL,
    PRIMARY KEY (run_id, round, approver)
);
UPDATE meta SET value = '4' WHERE key = 'schema_version';
"#;

/// From version 4: the console's sessions, and indexes for listing runs by status.
const MIGRATE_TO_5: &str = r#"
CREATE TABLE console_sessions (
    id_sha256    TEXT PRIMARY KEY,
    token_name   TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);
CREATE INDEX runs_status_id ON runs (status, id);
DROP INDEX runs_backlog;
CREATE INDEX runs_backlog ON runs (automation, status, id);
UPDATE meta SET value = '5' WHERE key = 'schema_version';
"#;

/// Brings a store of an older schema up to [`SCHEMA_VERSION`], in one transaction, keeping its
/// runs; refuses one a newer runbook wrote.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let version: i64 = tx
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError(format!(
            "{} was written by a newer runbook (schema version {version}; this one knows up to {SCHEMA_VERSION}): upgrade runbook",
            path.display()
        )));
    }
    if version < 2 {
        tx.execute_batch(MIGRATE_TO_2).map_err(db_err)?;
        tracing::info!(file = %path.display(), "SQLite store upgraded to schema version 2");
    }
    if version < 3 {
        tx.execute_batch(MIGRATE_TO_3).map_err(db_err)?;
        tracing::info!(file = %path.display(), "SQLite store upgraded to schema version 3");
    }
    if version < 4 {
        tx.execute_batch(MIGRATE_TO_4).map_err(db_err)?;
        tracing::info!(file = %path.display(), "SQLite store upgraded to schema version 4");
    }
    if version < 5 {
        tx.execute_batch(MIGRATE_TO_5).map_err(db_err)?;
        tracing::info!(file = %path.display(), "SQLite store upgraded to schema version 5");
    }
    tx.commit().map_err(db_err)
}

/// Creates `path` readable by its owner only, or takes group and other access away from it.
fn make_private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let cannot =
            |e: std::io::Error| StoreError(format!("cannot make {} private to its owner: {e}", path.display()));
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(cannot)?;
                }
            }
            Err(_) => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(cannot)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Intakes committed together at most.
const MAX_BATCH: usize = 512;

/// Intakes waiting for the writer at most: while the file is locked or the disk stalls, an
/// intake beyond them is refused at once (its sender is told to send it again) instead of
/// holding its event in memory for as long as the stall lasts.
const MAX_WAITING_INTAKES: usize = 4096;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

type Reply = oneshot::Sender<Result<Enqueued, StoreError>>;

enum Msg {
    Enqueue(Box<NewRun>, Reply),
    Job(Job),
}

/// The SQLite store (cheap to clone: the clones share one writer, one reader and the lock).
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<mpsc::Sender<Msg>>>,
    reader: Arc<Mutex<Connection>>,
    /// Intakes sent to the writer and not yet taken by it.
    waiting_intakes: Arc<AtomicUsize>,
    path: PathBuf,
    // Held for the store's life: the exclusive claim on the file.
    _lock: Arc<File>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError(format!("SQLite: {e}"))
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and takes the file's lock.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || SqliteStore::open_blocking(path))
            .await
            .map_err(StoreError::new)?
    }

    /// Opens the store for reading and admin commands (`runbook runs`) without the server's lock.
    pub async fn open_shared(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || SqliteStore::open_inner(path, false))
            .await
            .map_err(StoreError::new)?
    }

    fn open_blocking(path: PathBuf) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_inner(path, true)
    }

    fn open_inner(path: PathBuf, exclusive: bool) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        make_private(&lock_path)?;
        make_private(&path)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", lock_path.display())))?;
        if exclusive {
            lock.try_lock().map_err(|_| {
                StoreError(format!(
                    "{} is in use by another runbook serve; one server owns an SQLite store (use PostgreSQL for several)",
                    path.display()
                ))
            })?;
        }
        let mut writer = open_connection(&path)?;
        writer.execute_batch(SCHEMA).map_err(db_err)?;
        migrate(&mut writer, &path)?;
        let reader = open_connection(&path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let waiting_intakes = Arc::new(AtomicUsize::new(0));
        let taken = waiting_intakes.clone();
        std::thread::Builder::new()
            .name("runbook-store".to_owned())
            .spawn(move || write_loop(&mut writer, &rx, &taken))
            .map_err(StoreError::new)?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(tx)),
            reader: Arc::new(Mutex::new(reader)),
            waiting_intakes,
            path,
            _lock: Arc::new(lock),
        })
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer
            .send(msg)
            .map_err(|_| StoreError("the store's writer has stopped".to_owned()))
    }

    /// Runs `f` on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Job(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        })))?;
        rx.await
            .map_err(|_| StoreError("the store's writer has stopped".to_owned()))?
    }

    /// `columns` of the runs a listing's `filter` selects, newest first, each read by `read`.
    async fn select_runs<T: Send + 'static>(
        &self,
        columns: &'static str,
        filter: &RunFilter,
        read: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| {
            use rusqlite::types::Value as Sql;
            let limit = if filter.limit == 0 { 50 } else { filter.limit } as i64;
            // Only the filters given, so that SQLite can use an index for each
            // (`?1 IS NULL OR status = ?1` would make it walk the whole history).
            let mut clauses: Vec<&str> = Vec::new();
            let mut values: Vec<Sql> = Vec::new();
            if let Some(automation) = filter.automation {
                clauses.push("automation = ?");
                values.push(Sql::Text(automation));
            }
            if let Some(status) = filter.status {
                clauses.push("status = ?");
                values.push(Sql::Text(status.as_str().to_owned()));
            }
            if let Some(since) = filter.since {
                clauses.push("created_at >= ?");
                values.push(Sql::Integer(since));
            }
            if let Some(until) = filter.until {
                clauses.push("created_at < ?");
                values.push(Sql::Integer(until));
            }
            if let Some(before) = filter.before {
                clauses.push("id < ?");
                values.push(Sql::Text(before));
            }
            let filters = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            values.push(Sql::Integer(limit));
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {columns} FROM runs {filters} ORDER BY id DESC LIMIT ?"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values), read)
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    /// Runs `f` on the reading connection.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(StoreError::new)?
    }
}

fn write_loop(conn: &mut Connection, rx: &mpsc::Receiver<Msg>, waiting_intakes: &AtomicUsize) {
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(job) => job(conn),
                Msg::Enqueue(run, reply) => {
                    let mut batch = vec![(run, reply)];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Msg::Enqueue(run, reply)) => batch.push((run, reply)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    waiting_intakes.fetch_sub(batch.len(), Ordering::SeqCst);
                    commit_batch(conn, batch);
                }
            }
        }
    }
}

/// One transaction for every intake of the batch; answers only after the commit. An intake
/// whose caller stopped waiting (it answered its sender 503, "send it again") is not stored.
fn commit_batch(conn: &mut Connection, mut batch: Vec<(Box<NewRun>, Reply)>) {
    batch.retain(|(_, reply)| !reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let outcome = (|| -> Result<Vec<Enqueued>, rusqlite::Error> {
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(batch.len());
        for (run, _) in &batch {
            results.push(insert_run(&tx, run)?);
        }
        tx.commit()?;
        Ok(results)
    })();
    match outcome {
        Ok(results) => {
            for ((_, reply), result) in batch.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(db_err(clone_error(&e))));
            }
        }
    }
}

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::InvalidParameterName(e.to_string())
}

/// Records `run`'s dedup keys for run `run_id` (keys already recorded keep their run). For a
/// duplicate, its `idem_key` is left out (see [`super::duplicate_keys`]).
fn record_keys(
    conn: &Connection,
    run: &NewRun,
    run_id: &str,
    now: i64,
    duplicate: bool,
) -> Result<(), rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO deliveries (automation, key, run_id, received_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let keys = if duplicate {
        super::duplicate_keys(run)
    } else {
        run.dedup.clone()
    };
    for key in &keys {
        stmt.execute(params![run.automation, key, run_id, now])?;
    }
    Ok(())
}

fn insert_run(conn: &Connection, run: &NewRun) -> Result<Enqueued, rusqlite::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    if !run.dedup.is_empty() {
        let mut seen = conn.prepare_cached("SELECT run_id FROM deliveries WHERE automation = ?1 AND key = ?2")?;
        for key in &run.dedup {
            let first: Option<String> = seen.query_row(params![run.automation, key], |r| r.get(0)).optional()?;
            if let Some(first) = first {
                record_keys(conn, run, &first, now, true)?;
                return Ok(Enqueued {
                    run_id: first,
                    automation: run.automation.clone(),
                    created: false,
                });
            }
        }
    }
    let changed = conn.execute(
        "INSERT INTO runs (id, automation, trigger, idem_key, status, max_retries, params, event, scheduled_for, retry_of, created_at, not_before,
                           script, script_digest, started_by)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13)
         ON CONFLICT (automation, idem_key) DO NOTHING",
        params![
            id,
            run.automation,
            run.trigger,
            run.idem_key,
            run.max_retries,
            json_text(&Value::Object(run.params.clone())),
            run.event.as_ref().map(json_text),
            run.scheduled_for,
            run.retry_of,
            now,
            run.script,
            script_digest(&run.script),
            run.started_by
        ],
    )?;
    if changed == 1 {
        record_keys(conn, run, &id, now, false)?;
        return Ok(Enqueued {
            run_id: id,
            automation: run.automation.clone(),
            created: true,
        });
    }
    let existing: String = conn.query_row(
        "SELECT id FROM runs WHERE automation = ?1 AND idem_key = ?2",
        params![run.automation, run.idem_key],
        |r| r.get(0),
    )?;
    record_keys(conn, run, &existing, now, true)?;
    Ok(Enqueued {
        run_id: existing,
        automation: run.automation.clone(),
        created: false,
    })
}

fn parse_json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

const RECORD_COLUMNS: &str = "id, automation, trigger, status, attempts, max_retries, params, event, scheduled_for, result, error, \
     error_kind, logs, calls, retry_of, created_at, not_before, started_at, finished_at, script_digest, started_by, cancelled_by, \
     plan, plan_round, plan_diff, approval_expires_at, approved_at";

const SUMMARY_COLUMNS: &str = "id, automation, trigger, status, attempts, created_at, started_at, finished_at, error, retry_of, started_by, cancelled_by";

fn summary(row: &Row<'_>) -> rusqlite::Result<RunSummary> {
    let status: String = row.get(3)?;
    Ok(RunSummary {
        id: row.get(0)?,
        automation: row.get(1)?,
        trigger: row.get(2)?,
        status: status.parse().unwrap_or(RunStatus::Failed),
        attempts: row.get(4)?,
        created_at: row.get(5)?,
        started_at: row.get(6)?,
        finished_at: row.get(7)?,
        error: row.get(8)?,
        retry_of: row.get(9)?,
        started_by: row.get(10)?,
        cancelled_by: row.get(11)?,
    })
}

fn record(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let status: String = row.get(3)?;
    Ok(RunRecord {
        id: row.get(0)?,
        automation: row.get(1)?,
        trigger: row.get(2)?,
        status: status.parse().unwrap_or(RunStatus::Failed),
        attempts: row.get(4)?,
        max_retries: row.get(5)?,
        params: match parse_json(row.get(6)?) {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        },
        event: parse_json(row.get(7)?),
        scheduled_for: row.get(8)?,
        result: parse_json(row.get(9)?),
        error: row.get(10)?,
        error_kind: row.get(11)?,
        logs: parse_json(row.get(12)?).unwrap_or(Value::Array(Vec::new())),
        calls: parse_json(row.get(13)?).unwrap_or(Value::Array(Vec::new())),
        retry_of: row.get(14)?,
        created_at: row.get(15)?,
        not_before: row.get(16)?,
        started_at: row.get(17)?,
        finished_at: row.get(18)?,
        script_digest: row.get(19)?,
        steps: Vec::new(),
        started_by: row.get(20)?,
        cancelled_by: row.get(21)?,
        approval: approval_state(row.get(22)?, row.get(23)?, row.get(24)?, row.get(25)?, row.get(26)?),
    })
}

fn approval_rows(conn: &Connection, run_id: &str) -> rusqlite::Result<Vec<Approval>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = ?1 ORDER BY at, round, approver"
    ))?;
    let rows = stmt.query_map(params![run_id], |r| {
        let decision: String = r.get(2)?;
        Ok(approval_of(
            r.get(0)?,
            r.get(1)?,
            &decision,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    rows.collect()
}

fn entry_row(row: &Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok(EntryRow {
        key: row.get(0)?,
        version: row.get(1)?,
        kind: row.get(2)?,
        action: row.get(3)?,
        effect: row.get(4)?,
        idempotent: row.get(5)?,
        args_digest: row.get(6)?,
        args: row.get(7)?,
        status: row.get(8)?,
        result: row.get(9)?,
        result_digest: row.get(10)?,
        error: row.get(11)?,
        targets: row.get(12)?,
        attempt: row.get(13)?,
        epoch: row.get(14)?,
        started_at: row.get(15)?,
        finished_at: row.get(16)?,
        resolution: row.get(17)?,
        resolved_by: row.get(18)?,
    })
}

fn journal_rows(conn: &Connection, run_id: &str) -> rusqlite::Result<Vec<EntryRow>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM journal WHERE run_id = ?1"))?;
    let rows = stmt.query_map(params![run_id], entry_row)?;
    rows.collect()
}

/// The run's status and epoch, if it exists.
fn run_lease(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<(String, i64)>> {
    conn.query_row("SELECT status, epoch FROM runs WHERE id = ?1", params![run_id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

fn upsert_entry(conn: &Connection, run_id: &str, e: &EntryRow) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO journal (run_id, {ENTRY_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
             ON CONFLICT (run_id, key) DO UPDATE SET
                 version = excluded.version, kind = excluded.kind, action = excluded.action, effect = excluded.effect,
                 idempotent = excluded.idempotent, args_digest = excluded.args_digest, args = excluded.args,
                 status = excluded.status, result = excluded.result, result_digest = excluded.result_digest,
                 error = excluded.error, targets = excluded.targets, attempt = excluded.attempt, epoch = excluded.epoch,
                 started_at = excluded.started_at, finished_at = excluded.finished_at,
                 resolution = excluded.resolution, resolved_by = excluded.resolved_by"
        ),
        params![
            run_id,
            e.key,
            e.version,
            e.kind,
            e.action,
            e.effect,
            e.idempotent,
            e.args_digest,
            e.args,
            e.status,
            e.result,
            e.result_digest,
            e.error,
            e.targets,
            e.attempt,
            e.epoch,
            e.started_at,
            e.finished_at,
            e.resolution,
            e.resolved_by
        ],
    )?;
    Ok(())
}

fn epoch_sql(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

/// The journal of one attempt of one run in the SQLite store.
struct SqliteJournal {
    store: SqliteStore,
    run_id: String,
    attempt: u32,
    epoch: u64,
}

impl SqliteJournal {
    /// Writes `entry` (and the automation's state value) if this attempt still holds the run,
    /// in one transaction on the writer thread.
    async fn write_entry(&self, entries: &[JournalEntry], state: Option<(String, String)>) -> Result<(), JournalError> {
        let rows: Vec<EntryRow> = entries.iter().map(EntryRow::from_entry).collect();
        let run_id = self.run_id.clone();
        let epoch = self.epoch;
        let outcome = self
            .store
            .write(move |conn| {
                let tx = conn.transaction().map_err(db_err)?;
                if let Some(refused) = fenced(&run_id, epoch, run_lease(&tx, &run_id).map_err(db_err)?) {
                    return Ok(Err(refused));
                }
                for row in &rows {
                    upsert_entry(&tx, &run_id, row).map_err(db_err)?;
                }
                if let Some((key, value)) = state {
                    tx.execute(
                        "INSERT INTO state (automation, key, value, updated_at)
                         SELECT automation, ?2, ?3, ?4 FROM runs WHERE id = ?1
                         ON CONFLICT (automation, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                        params![run_id, key, value, now_ms()],
                    )
                    .map_err(db_err)?;
                }
                tx.commit().map_err(db_err)?;
                Ok(Ok(()))
            })
            .await;
        match outcome {
            Ok(written) => written,
            Err(e) => Err(JournalError::Unavailable(e.0)),
        }
    }
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn load(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let run_id = self.run_id.clone();
        let rows = self
            .store
            .read(move |conn| journal_rows(conn, &run_id).map_err(db_err))
            .await
            .map_err(|e| JournalError::Unavailable(e.0))?;
        journal_entries(&self.run_id, rows)
    }

    async fn write(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        self.write_entry(std::slice::from_ref(entry), None).await
    }

    async fn write_with_state(&self, entry: &JournalEntry, key: &str, value: &Value) -> Result<(), JournalError> {
        self.write_entry(std::slice::from_ref(entry), Some((key.to_owned(), json_text(value))))
            .await
    }

    async fn write_batch(&self, entries: &[JournalEntry], state: Option<(&str, &Value)>) -> Result<(), JournalError> {
        self.write_entry(entries, state.map(|(k, v)| (k.to_owned(), json_text(v))))
            .await
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, run: NewRun) -> Result<Enqueued, StoreError> {
        if self.waiting_intakes.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING_INTAKES {
            self.waiting_intakes.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError(format!(
                "{MAX_WAITING_INTAKES} intakes are already waiting for the store (is the file locked?)"
            )));
        }
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.send(Msg::Enqueue(Box::new(run), tx)) {
            self.waiting_intakes.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        rx.await
            .map_err(|_| StoreError("the store's writer has stopped".to_owned()))?
    }

    async fn claim(
        &self,
        owner: &str,
        concurrency: &BTreeMap<String, usize>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        let concurrency = concurrency.clone();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let now = now_ms();
            let mut running: BTreeMap<String, usize> = BTreeMap::new();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT automation, COUNT(*) FROM runs WHERE status = 'running' GROUP BY automation",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(db_err)?;
                for row in rows {
                    let (automation, n) = row.map_err(db_err)?;
                    running.insert(automation, usize::try_from(n).unwrap_or(0));
                }
            }
            // At most `max` candidates per automation, oldest first: a busy automation cannot
            // hide the others' runs.
            type Candidate = (
                String,
                String,
                i64,
                i64,
                Option<String>,
                Option<String>,
                i64,
                i64,
                String,
                Option<i64>,
            );
            let candidates: Vec<Candidate> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, automation, attempts, max_retries, params, event, created_at, epoch, script, approved_at FROM (
                             SELECT *, ROW_NUMBER() OVER (PARTITION BY automation ORDER BY not_before, id) AS rank
                             FROM runs WHERE status = 'queued' AND not_before <= ?1
                               AND automation NOT IN (SELECT name FROM automations WHERE paused = 1))
                         WHERE rank <= ?2 ORDER BY not_before, id",
                    )
                    .map_err(db_err)?;
                stmt.query_map(params![now, max as i64], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?
            };
            let mut claimed = Vec::new();
            for (id, automation, attempts, max_retries, params_text, event, created_at, epoch, script, approved_at) in
                candidates
            {
                if claimed.len() >= max {
                    break;
                }
                // An automation this instance does not know stays queued for one that does.
                let Some(limit) = concurrency.get(&automation).copied() else {
                    continue;
                };
                let busy = running.entry(automation.clone()).or_insert(0);
                if *busy >= limit {
                    continue;
                }
                *busy += 1;
                tx.execute(
                    "UPDATE runs SET status = 'running', attempts = attempts + 1, epoch = epoch + 1, started_at = ?2,
                         lease_owner = ?3, lease_until = ?4
                     WHERE id = ?1",
                    params![id, now, owner, now + lease_ms(lease)],
                )
                .map_err(db_err)?;
                claimed.push(ClaimedRun {
                    id,
                    automation,
                    attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                    max_retries: u32::try_from(max_retries).unwrap_or(0),
                    params: match parse_json(params_text) {
                        Some(Value::Object(m)) => m,
                        _ => serde_json::Map::new(),
                    },
                    event: parse_json(event),
                    created_at,
                    epoch: u64::try_from(epoch + 1).unwrap_or(0),
                    script,
                    approved: approved_at.is_some(),
                });
            }
            tx.commit().map_err(db_err)?;
            Ok(claimed)
        })
        .await
    }

    async fn heartbeat(&self, owner: &str, runs: &[(String, u64)], lease: Duration) -> Result<Vec<String>, StoreError> {
        let owner = owner.to_owned();
        let runs = runs.to_vec();
        self.write(move |conn| {
            let until = now_ms() + lease_ms(lease);
            let tx = conn.transaction().map_err(db_err)?;
            let mut renewed = Vec::new();
            for (id, epoch) in runs {
                let changed = tx
                    .execute(
                        "UPDATE runs SET lease_until = ?3
                         WHERE id = ?1 AND lease_owner = ?2 AND epoch = ?4 AND status = 'running'",
                        params![id, owner, until, epoch_sql(epoch)],
                    )
                    .map_err(db_err)?;
                if changed == 1 {
                    renewed.push(id);
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(renewed)
        })
        .await
    }

    async fn complete(&self, owner: &str, id: &str, epoch: u64, c: Completion) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        let id = id.to_owned();
        self.write(move |conn| {
            let now = now_ms();
            let (status, not_before, finished) = match c.retry_at {
                Some(at) => ("queued", Some(at), None),
                None => (c.status.as_str(), None, Some(now)),
            };
            let changed = conn
                .execute(
                    "UPDATE runs SET
                         status = CASE WHEN cancelled_by IS NOT NULL AND ?3 = 'queued' THEN 'cancelled' ELSE ?3 END,
                         result = ?4, error = ?5, error_kind = ?6, logs = ?7, calls = ?8,
                         finished_at = CASE WHEN cancelled_by IS NOT NULL AND ?3 = 'queued' THEN ?12 ELSE ?9 END,
                         not_before = COALESCE(?10, not_before), lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 AND lease_owner = ?2 AND status = 'running' AND epoch = ?11",
                    params![
                        id,
                        owner,
                        status,
                        c.result.as_ref().map(json_text),
                        c.error,
                        c.error_kind,
                        json_text(&c.logs),
                        json_text(&c.calls),
                        finished,
                        not_before,
                        epoch_sql(epoch),
                        now
                    ],
                )
                .map_err(db_err)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release(&self, owner: &str, id: &str, epoch: u64) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        let id = id.to_owned();
        self.write(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE runs SET
                         status = CASE WHEN cancelled_by IS NULL THEN 'queued' ELSE 'cancelled' END,
                         finished_at = CASE WHEN cancelled_by IS NULL THEN finished_at ELSE ?4 END,
                         attempts = MAX(attempts - 1, 0), started_at = NULL, lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 AND lease_owner = ?2 AND status = 'running' AND epoch = ?3",
                    params![id, owner, epoch_sql(epoch), now_ms()],
                )
                .map_err(db_err)?;
            Ok(changed == 1)
        })
        .await
    }

    fn journal(&self, run_id: &str, attempt: u32, epoch: u64) -> Arc<dyn Journal> {
        Arc::new(SqliteJournal {
            store: self.clone(),
            run_id: run_id.to_owned(),
            attempt,
            epoch,
        })
    }

    async fn resolve(&self, run_id: &str, key: &str, resolution: Resolution, by: &str) -> Result<(), ResolveError> {
        let (run_id, key, by) = (run_id.to_owned(), key.to_owned(), by.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let Some((status, _)) = run_lease(&tx, &run_id).map_err(db_err)? else {
                return Ok(Err(ResolveError::NoRun(run_id)));
            };
            let step: Option<String> = tx
                .query_row(
                    "SELECT status FROM journal WHERE run_id = ?1 AND key = ?2",
                    params![run_id, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if status != RunStatus::NeedsAttention.as_str() {
                return Ok(Err(ResolveError::NotWaiting { run: run_id, status }));
            }
            let Some(step) = step else {
                return Ok(Err(ResolveError::NoStep { run: run_id, key }));
            };
            if step != "intent" {
                return Ok(Err(ResolveError::NotInDoubt {
                    run: run_id,
                    key,
                    status: step,
                }));
            }
            tx.execute(
                "UPDATE journal SET resolution = ?3, resolved_by = ?4 WHERE run_id = ?1 AND key = ?2",
                params![run_id, key, resolution.as_str(), by],
            )
            .map_err(db_err)?;
            tx.execute(
                "UPDATE runs SET status = 'queued', not_before = ?2, finished_at = NULL WHERE id = ?1",
                params![run_id, now_ms()],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(Ok(()))
        })
        .await?
    }

    async fn compact_journals(&self, before: i64) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    &format!(
                        "UPDATE journal SET result = NULL, args = 'null'
                         WHERE (result IS NOT NULL OR args != 'null') AND run_id IN (
                             SELECT id FROM runs WHERE status IN ({}) AND finished_at < ?1)",
                        RunStatus::FINAL_SQL
                    ),
                    params![before],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn recover(&self, all_running: bool) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            let tx = conn.transaction().map_err(db_err)?;
            // A run a person asked to cancel whose process died is cancelled, not queued again.
            tx.execute(
                "UPDATE runs SET status = 'cancelled', finished_at = ?1, lease_owner = NULL, lease_until = NULL
                 WHERE status = 'running' AND (?2 OR lease_until < ?1) AND cancelled_by IS NOT NULL",
                params![now, all_running],
            )
            .map_err(db_err)?;
            // A run whose process died on its last allowed attempt with a change in doubt that
            // only a person can settle waits for one: failed, it could only be retried as a new
            // run, which would send its changes again.
            tx.execute(
                "UPDATE runs SET status = 'needs_attention', lease_owner = NULL, lease_until = NULL,
                     error = 'the process running it stopped on its last allowed attempt with a change in doubt: check the service, then runbook runs resolve RUN STEP --sent or --not-sent (runs show names the step)',
                     error_kind = 'lost'
                 WHERE status = 'running' AND (?2 OR lease_until < ?1) AND attempts > max_retries
                   AND EXISTS (SELECT 1 FROM journal j WHERE j.run_id = runs.id AND j.status = 'intent'
                               AND j.idempotent = 0 AND j.resolution IS NULL)",
                params![now, all_running],
            )
            .map_err(db_err)?;
            // A run whose process died after its last allowed attempt would otherwise crash the
            // next process too: it fails instead.
            tx.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?1, lease_owner = NULL, lease_until = NULL,
                     error = 'the process running it stopped before it finished, on its last allowed attempt', error_kind = 'lost'
                 WHERE status = 'running' AND (?2 OR lease_until < ?1) AND attempts > max_retries",
                params![now, all_running],
            )
            .map_err(db_err)?;
            let requeued = tx
                .execute(
                    "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_until = NULL
                     WHERE status = 'running' AND (?2 OR lease_until < ?1)",
                    params![now, all_running],
                )
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(requeued as u64)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let Some(mut run) = conn
                .query_row(
                    &format!("SELECT {RECORD_COLUMNS} FROM runs WHERE id = ?1"),
                    params![id],
                    record,
                )
                .optional()
                .map_err(db_err)?
            else {
                return Ok(None);
            };
            run.steps = history_steps(&run.id, journal_rows(conn, &run.id).map_err(db_err)?)?;
            if let Some(approval) = &mut run.approval {
                approval.approvals = approval_rows(conn, &run.id).map_err(db_err)?;
            }
            Ok(Some(run))
        })
        .await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.select_runs(RECORD_COLUMNS, filter, record).await
    }

    async fn list_summaries(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        self.select_runs(SUMMARY_COLUMNS, filter, summary).await
    }

    async fn cancel(&self, id: &str, by: &str) -> Result<Cancelled, CancelError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let Some((status, _)) = run_lease(&tx, &id).map_err(db_err)? else {
                return Ok(Err(CancelError::NoRun(id)));
            };
            let outcome = match status.parse::<RunStatus>() {
                Ok(RunStatus::Queued | RunStatus::NeedsAttention | RunStatus::AwaitingApproval) => {
                    tx.execute(
                        "UPDATE runs SET status = 'cancelled', cancelled_by = ?2, finished_at = ?3,
                             lease_owner = NULL, lease_until = NULL
                         WHERE id = ?1",
                        params![id, by, now_ms()],
                    )
                    .map_err(db_err)?;
                    Ok(Cancelled::Now)
                }
                Ok(RunStatus::Running) => {
                    tx.execute(
                        "UPDATE runs SET cancelled_by = COALESCE(cancelled_by, ?2) WHERE id = ?1",
                        params![id, by],
                    )
                    .map_err(db_err)?;
                    Ok(Cancelled::Stopping)
                }
                _ => Err(CancelError::Finished { run: id, status }),
            };
            tx.commit().map_err(db_err)?;
            Ok(outcome)
        })
        .await?
    }

    async fn cancel_requested(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let owner = owner.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id FROM runs WHERE status = 'running' AND lease_owner = ?1 AND cancelled_by IS NOT NULL",
                )
                .map_err(db_err)?;
            let rows = stmt.query_map(params![owner], |r| r.get(0)).map_err(db_err)?;
            rows.collect::<Result<Vec<String>, _>>().map_err(db_err)
        })
        .await
    }

    async fn await_approval(
        &self,
        owner: &str,
        id: &str,
        epoch: u64,
        pending: PendingPlan,
    ) -> Result<bool, StoreError> {
        let (owner, id) = (owner.to_owned(), id.to_owned());
        let plan = serde_json::to_string(&pending.plan).map_err(StoreError::new)?;
        let digest = pending.plan.effects_sha256.clone();
        let diff = pending.diff.as_ref().map(json_text);
        let expires_in = lease_ms(pending.expires_in);
        self.write(move |conn| {
            let now = now_ms();
            let changed = conn
                .execute(
                    "UPDATE runs SET
                         status = CASE WHEN cancelled_by IS NOT NULL THEN 'cancelled' ELSE 'awaiting_approval' END,
                         finished_at = CASE WHEN cancelled_by IS NOT NULL THEN ?4 END,
                         plan = ?5, plan_sha256 = ?6, plan_round = plan_round + 1, plan_diff = ?7,
                         approval_expires_at = ?4 + ?8, approved_at = NULL,
                         result = NULL, error = NULL, error_kind = NULL, logs = ?9, calls = ?10,
                         lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 AND lease_owner = ?2 AND status = 'running' AND epoch = ?3",
                    params![
                        id,
                        owner,
                        epoch_sql(epoch),
                        now,
                        plan,
                        digest,
                        diff,
                        expires_in,
                        json_text(&pending.logs),
                        json_text(&pending.calls)
                    ],
                )
                .map_err(db_err)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn decide(
        &self,
        id: &str,
        by: &str,
        decision: Decision,
        comment: &str,
        seen: Option<&str>,
        required: u32,
    ) -> Result<Decided, DecideError> {
        let (id, by, comment, seen) = (
            id.to_owned(),
            by.to_owned(),
            comment.to_owned(),
            seen.map(str::to_owned),
        );
        self.write(move |conn| {
            let now = now_ms();
            let tx = conn.transaction().map_err(db_err)?;
            let found: Option<(String, Option<String>, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT status, plan_sha256, plan_round, approval_expires_at FROM runs WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db_err)?;
            let Some((status, digest, round, expires_at)) = found else {
                return Ok(Err(DecideError::NoRun(id)));
            };
            if status != RunStatus::AwaitingApproval.as_str() {
                return Ok(Err(DecideError::NotWaiting { run: id, status }));
            }
            if expires_at.is_some_and(|at| at <= now) {
                tx.execute(
                    "UPDATE runs SET status = 'expired', finished_at = ?2, error = ?3, error_kind = 'expired'
                     WHERE id = ?1 AND status = 'awaiting_approval'",
                    params![id, now, EXPIRED_TEXT],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                return Ok(Err(DecideError::Expired(id)));
            }
            let digest = digest.unwrap_or_default();
            if let Some(seen) = seen.filter(|s| *s != digest) {
                return Ok(Err(DecideError::PlanChanged {
                    run: id,
                    seen,
                    current: digest,
                }));
            }
            let inserted = tx
                .execute(
                    "INSERT INTO approvals (run_id, round, approver, decision, comment, effects_sha256, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                    params![id, round, by, decision.as_str(), comment, digest, now],
                )
                .map_err(db_err)?;
            if inserted == 0 {
                return Ok(Err(DecideError::AlreadyDecided { run: id, approver: by }));
            }
            let approvals: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM approvals WHERE run_id = ?1 AND round = ?2 AND decision = 'approve'",
                    params![id, round],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            let approvals = u32::try_from(approvals).unwrap_or(0);
            let status = match decision {
                Decision::Reject => {
                    tx.execute(
                        "UPDATE runs SET status = 'rejected', finished_at = ?2, error = ?3, error_kind = 'rejected'
                         WHERE id = ?1",
                        params![id, now, rejection_text(&by, &comment)],
                    )
                    .map_err(db_err)?;
                    RunStatus::Rejected
                }
                Decision::Approve if approvals >= required => {
                    tx.execute(
                        "UPDATE runs SET status = 'queued', approved_at = ?2, not_before = ?2,
                             max_retries = max_retries + attempts
                         WHERE id = ?1",
                        params![id, now],
                    )
                    .map_err(db_err)?;
                    RunStatus::Queued
                }
                Decision::Approve => RunStatus::AwaitingApproval,
            };
            tx.commit().map_err(db_err)?;
            Ok(Ok(Decided {
                status,
                approvals,
                effects_sha256: digest,
            }))
        })
        .await?
    }

    async fn expire_approvals(&self) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            let n = conn
                .execute(
                    "UPDATE runs SET status = 'expired', finished_at = ?1, error = ?2, error_kind = 'expired'
                     WHERE status = 'awaiting_approval' AND approval_expires_at <= ?1",
                    params![now, EXPIRED_TEXT],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn set_paused(&self, automation: &str, paused: bool, by: &str) -> Result<(), StoreError> {
        let (automation, by) = (automation.to_owned(), by.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO automations (name, paused, changed_by, changed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, changed_by = excluded.changed_by,
                     changed_at = excluded.changed_at",
                params![automation, paused, by, now_ms()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn session_create(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        let s = session.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO console_sessions (id_sha256, token_name, token_sha256, csrf, created_at, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.id_sha256,
                    s.token_name,
                    s.token_sha256,
                    s.csrf,
                    s.created_at,
                    s.last_seen
                ],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn session_get(&self, id_sha256: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let id = id_sha256.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id_sha256, token_name, token_sha256, csrf, created_at, last_seen
                 FROM console_sessions WHERE id_sha256 = ?1",
            )
            .map_err(db_err)?
            .query_row(params![id], |r| {
                Ok(ConsoleSession {
                    id_sha256: r.get(0)?,
                    token_name: r.get(1)?,
                    token_sha256: r.get(2)?,
                    csrf: r.get(3)?,
                    created_at: r.get(4)?,
                    last_seen: r.get(5)?,
                })
            })
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn session_touch(&self, id_sha256: &str, at: i64) -> Result<(), StoreError> {
        let id = id_sha256.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE console_sessions SET last_seen = MAX(last_seen, ?2) WHERE id_sha256 = ?1",
                params![id, at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn session_delete(&self, id_sha256: &str) -> Result<(), StoreError> {
        let id = id_sha256.to_owned();
        self.write(move |conn| {
            conn.execute("DELETE FROM console_sessions WHERE id_sha256 = ?1", params![id])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn session_prune(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let gone = conn
                .execute(
                    "DELETE FROM console_sessions WHERE last_seen < ?1 OR created_at < ?2",
                    params![idle_before, created_before],
                )
                .map_err(db_err)?;
            Ok(gone as u64)
        })
        .await
    }

    async fn automations(&self) -> Result<Vec<AutomationSwitch>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name, paused, changed_by, changed_at FROM automations ORDER BY name")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(AutomationSwitch {
                        name: r.get(0)?,
                        paused: r.get(1)?,
                        changed_by: r.get(2)?,
                        changed_at: r.get(3)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn last_tick(&self, automation: &str) -> Result<Option<i64>, StoreError> {
        let automation = automation.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT MAX(scheduled_for) FROM runs WHERE automation = ?1",
                params![automation],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(db_err)
        })
        .await
    }

    async fn state_get(&self, automation: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let (automation, key) = (automation.to_owned(), key.to_owned());
        self.read(move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT value FROM state WHERE automation = ?1 AND key = ?2",
                    params![automation, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            Ok(parse_json(text))
        })
        .await
    }

    async fn state_set(&self, automation: &str, key: &str, value: &Value) -> Result<(), StoreError> {
        let (automation, key, text) = (automation.to_owned(), key.to_owned(), json_text(value));
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO state (automation, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (automation, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![automation, key, text, now_ms()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let old = format!(
                "SELECT id FROM runs WHERE status IN ({}) AND finished_at < ?1",
                RunStatus::FINAL_SQL
            );
            tx.execute(&format!("DELETE FROM journal WHERE run_id IN ({old})"), params![before])
                .map_err(db_err)?;
            tx.execute(
                &format!("DELETE FROM approvals WHERE run_id IN ({old})"),
                params![before],
            )
            .map_err(db_err)?;
            let n = tx
                .execute(&format!("DELETE FROM runs WHERE id IN ({old})"), params![before])
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM deliveries WHERE received_at < ?1", params![before])
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT automation, status, COUNT(*) FROM runs GROUP BY automation, status")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(db_err)?;
            let mut stats = Stats::default();
            for row in rows {
                let (automation, status, n) = row.map_err(db_err)?;
                if let Ok(status) = status.parse() {
                    stats.runs.insert((automation, status), u64::try_from(n).unwrap_or(0));
                }
            }
            let now = now_ms();
            let oldest: Option<i64> = conn
                .query_row(
                    "SELECT MIN(not_before) FROM runs WHERE status = 'queued' AND not_before <= ?1",
                    params![now],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            stats.oldest_queued_ms = oldest.map(|at| (now - at).max(0));
            Ok(stats)
        })
        .await
    }

    async fn changes_since(&self, automation: Option<&str>, since_ms: i64) -> Result<u64, StoreError> {
        let automation = automation.map(str::to_owned);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(j.targets), 0) FROM journal j JOIN runs r ON r.id = j.run_id
                     WHERE (r.finished_at IS NULL OR r.finished_at >= ?1)
                       AND (?2 IS NULL OR r.automation = ?2)
                       AND j.kind = 'call' AND j.effect IN ('write', 'destructive') AND j.status != 'err'
                       AND j.started_at >= ?1",
                )
                .map_err(db_err)?;
            let n: i64 = stmt
                .query_row(params![since_ms, automation], |r| r.get(0))
                .map_err(db_err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn backlog(&self, automation: &str) -> Result<Backlog, StoreError> {
        let automation = automation.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT status, COUNT(*) FROM runs WHERE status IN ('queued', 'running') AND automation = ?1
                     GROUP BY status",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![automation], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(db_err)?;
            let mut backlog = Backlog::default();
            for row in rows {
                let (status, n) = row.map_err(db_err)?;
                let n = u64::try_from(n).unwrap_or(0);
                if status == "queued" {
                    backlog.queued = n;
                } else {
                    backlog.running = n;
                }
            }
            Ok(backlog)
        })
        .await
    }

    /// A write transaction begun and rolled back on the writer: a locked file does not answer.
    async fn known_delivery(&self, automation: &str, keys: &[String]) -> Result<Option<String>, StoreError> {
        let (automation, keys) = (automation.to_owned(), keys.to_vec());
        self.read(move |conn| {
            for key in &keys {
                let found: Option<String> = conn
                    .query_row(
                        "SELECT run_id FROM deliveries WHERE automation = ?1 AND key = ?2",
                        params![automation, key],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            Ok(None)
        })
        .await
    }

    /// A ping whose caller has stopped waiting is not run: pings queued behind a stalled write
    /// do not add to the stall.
    async fn ping(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel::<Result<(), StoreError>>();
        self.send(Msg::Job(Box::new(move |conn| {
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK").map_err(db_err));
        })))?;
        rx.await
            .map_err(|_| StoreError("the store's writer has stopped".to_owned()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_server_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let _store = SqliteStore::open(&dir.path().join("runs.db")).await.unwrap();
        let err = SqliteStore::open(&dir.path().join("runs.db")).await.unwrap_err();
        assert!(err.to_string().contains("is in use by another runbook serve"), "{err}");
        assert!(SqliteStore::open_shared(&dir.path().join("runs.db")).await.is_ok());
    }
}
