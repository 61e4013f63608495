//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`, so that a run
//! answered to a webhook is on disk before the answer leaves.
//!
//! All writes go through one writer thread, in order (SQLite has one writer anyway). Intakes
//! that arrive together are committed in one transaction — a group commit — so durability does
//! not cost one disk flush per delivery. Reads use their own connection and never wait for the
//! writer. One server owns the file: an exclusive lock on `<file>.lock` makes a second
//! `runbook serve` on the same file fail at start, which is also why, at start, every run still
//! marked running belongs to a process that is gone.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{ClaimedRun, Completion, Enqueued, NewRun, RunFilter, RunRecord, RunStatus, Stats, Store, StoreError};

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

/// Intakes committed together at most.
const MAX_BATCH: usize = 512;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

type Reply = oneshot::Sender<Result<Enqueued, StoreError>>;

enum Msg {
    Enqueue(Box<NewRun>, Reply),
    Job(Job),
}

/// The SQLite store.
pub struct SqliteStore {
    writer: Mutex<mpsc::Sender<Msg>>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    // Held for the store's life: the exclusive claim on the file.
    _lock: File,
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
        let reader = open_connection(&path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name("runbook-store".to_owned())
            .spawn(move || write_loop(&mut writer, &rx))
            .map_err(StoreError::new)?;
        Ok(SqliteStore {
            writer: Mutex::new(tx),
            reader: Arc::new(Mutex::new(reader)),
            path,
            _lock: lock,
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

fn write_loop(conn: &mut Connection, rx: &mpsc::Receiver<Msg>) {
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
                    commit_batch(conn, batch);
                }
            }
        }
    }
}

/// One transaction for every intake of the batch; answers only after the commit.
fn commit_batch(conn: &mut Connection, batch: Vec<(Box<NewRun>, Reply)>) {
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

fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn insert_run(conn: &Connection, run: &NewRun) -> Result<Enqueued, rusqlite::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let changed = conn.execute(
        "INSERT INTO runs (id, automation, trigger, idem_key, status, max_retries, params, event, scheduled_for, retry_of, created_at, not_before)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9, ?10, ?10)
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
            now
        ],
    )?;
    if changed == 1 {
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
     error_kind, logs, calls, retry_of, created_at, not_before, started_at, finished_at";

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
    })
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, run: NewRun) -> Result<Enqueued, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Enqueue(Box::new(run), tx))?;
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
                    .prepare_cached("SELECT automation, COUNT(*) FROM runs WHERE status = 'running' GROUP BY automation")
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
            let candidates: Vec<(String, String, i64, i64, Option<String>, Option<String>, i64)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, automation, attempts, max_retries, params, event, created_at FROM (
                             SELECT *, ROW_NUMBER() OVER (PARTITION BY automation ORDER BY not_before, id) AS rank
                             FROM runs WHERE status = 'queued' AND not_before <= ?1)
                         WHERE rank <= ?2 ORDER BY not_before, id",
                    )
                    .map_err(db_err)?;
                stmt.query_map(params![now, max as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?
            };
            let mut claimed = Vec::new();
            for (id, automation, attempts, max_retries, params_text, event, created_at) in candidates {
                if claimed.len() >= max {
                    break;
                }
                let limit = concurrency.get(&automation).copied().unwrap_or(1);
                let busy = running.entry(automation.clone()).or_insert(0);
                if *busy >= limit {
                    continue;
                }
                *busy += 1;
                tx.execute(
                    "UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ?2, lease_owner = ?3, lease_until = ?4
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
                });
            }
            tx.commit().map_err(db_err)?;
            Ok(claimed)
        })
        .await
    }

    async fn heartbeat(&self, owner: &str, ids: &[String], lease: Duration) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        let ids = ids.to_vec();
        self.write(move |conn| {
            let until = now_ms() + lease_ms(lease);
            for id in ids {
                conn.execute(
                    "UPDATE runs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
                    params![id, owner, until],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn complete(&self, owner: &str, id: &str, c: Completion) -> Result<bool, StoreError> {
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
                    "UPDATE runs SET status = ?3, result = ?4, error = ?5, error_kind = ?6, logs = ?7, calls = ?8,
                         finished_at = ?9, not_before = COALESCE(?10, not_before), lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
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
                        not_before
                    ],
                )
                .map_err(db_err)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release(&self, owner: &str, id: &str) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        let id = id.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE runs SET status = 'queued', attempts = MAX(attempts - 1, 0), started_at = NULL, lease_owner = NULL, lease_until = NULL
                 WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
                params![id, owner],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn recover(&self, all_running: bool) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            let tx = conn.transaction().map_err(db_err)?;
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
            conn.query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM runs WHERE id = ?1"),
                params![id],
                record,
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| {
            let limit = if filter.limit == 0 { 50 } else { filter.limit } as i64;
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {RECORD_COLUMNS} FROM runs
                     WHERE (?1 IS NULL OR automation = ?1) AND (?2 IS NULL OR status = ?2)
                     ORDER BY id DESC LIMIT ?3"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(
                    params![filter.automation, filter.status.map(RunStatus::as_str), limit],
                    record,
                )
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
            let n = conn
                .execute(
                    "DELETE FROM runs WHERE status IN ('succeeded', 'failed', 'refused') AND finished_at < ?1",
                    params![before],
                )
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
            Ok(stats)
        })
        .await
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
