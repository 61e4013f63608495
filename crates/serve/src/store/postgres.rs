//! The shared store: PostgreSQL, for several `runbook serve` instances (or one that should
//! survive its machine).
//!
//! Every instance is equal: any of them accepts webhooks, fires schedules, claims runs and
//! answers `/api/runs`. What keeps them from stepping on each other lives in the database:
//!
//! * an intake is one `INSERT … ON CONFLICT (automation, idem_key) DO NOTHING`: the event and its
//!   run commit together, and a delivery (or a schedule's tick, keyed by its time) offered by
//!   several instances is stored once;
//! * claims take queued runs with `FOR UPDATE SKIP LOCKED` in small batches, so instances never
//!   wait on each other's rows; an automation's `concurrency` is counted under a transaction-scoped
//!   advisory lock per automation, so the count and the claim are one step across the cluster;
//! * leases use the database's clock (`clock_timestamp()`), so clock skew between machines
//!   cannot expire a live lease; any instance re-queues runs whose lease expired;
//! * rate budgets shared by every instance are kept in `runbook_budgets` (see [`PgStore`]'s
//!   [`SharedBudget`] implementation).
//!
//! Tables are prefixed `runbook_` and created by numbered migrations, applied at start under an
//! advisory lock so that instances starting together migrate once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use runbook_core::http::{BudgetError, RateLimit, SharedBudget};
use serde_json::Value;
use tokio_postgres::Row;

use runbook_core::{Journal, JournalEntry, JournalError, Resolution};

use super::{
    APPROVAL_COLUMNS, Approval, AutomationSwitch, Backlog, CancelError, Cancelled, ClaimedRun, Completion,
    ConsoleSession, DecideError, Decided, Decision, ENTRY_COLUMNS, EXPIRED_TEXT, Enqueued, EntryRow, NewRun,
    PendingPlan, ResolveError, RunFilter, RunRecord, RunStatus, RunSummary, Stats, Store, StoreError, approval_of,
    approval_state, fenced, history_steps, journal_entries, json_text, rejection_text, script_digest,
};

/// The database's clock in unix milliseconds: one clock for every instance's leases.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Schema changes, in order; each runs once, in one transaction.
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE runbook_runs (
    id            TEXT PRIMARY KEY,
    automation    TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    idem_key      TEXT,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_retries   INTEGER NOT NULL,
    params        TEXT NOT NULL,
    event         TEXT,
    scheduled_for BIGINT,
    result        TEXT,
    error         TEXT,
    error_kind    TEXT,
    logs          TEXT NOT NULL DEFAULT '[]',
    calls         TEXT NOT NULL DEFAULT '[]',
    retry_of      TEXT,
    created_at    BIGINT NOT NULL,
    not_before    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    lease_owner   TEXT,
    lease_until   BIGINT,
    UNIQUE (automation, idem_key)
);
CREATE INDEX runbook_runs_queue ON runbook_runs (automation, not_before, id) WHERE status = 'queued';
CREATE INDEX runbook_runs_running ON runbook_runs (automation, lease_until) WHERE status = 'running';
CREATE INDEX runbook_runs_by_automation ON runbook_runs (automation, id);
CREATE INDEX runbook_runs_finished ON runbook_runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runbook_runs_ticks ON runbook_runs (automation, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE TABLE runbook_state (
    automation TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (automation, key)
);
CREATE TABLE runbook_budgets (
    key        TEXT PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_us BIGINT NOT NULL
);
"#,
    ),
    (
        2,
        r#"
ALTER TABLE runbook_runs ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runbook_runs ADD COLUMN script TEXT NOT NULL DEFAULT '';
ALTER TABLE runbook_runs ADD COLUMN script_digest TEXT NOT NULL DEFAULT '';
CREATE TABLE runbook_journal (
    run_id        TEXT NOT NULL REFERENCES runbook_runs (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    version       INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    action        TEXT NOT NULL,
    effect        TEXT NOT NULL,
    idempotent    BOOLEAN NOT NULL,
    args_digest   TEXT NOT NULL,
    args          TEXT NOT NULL,
    status        TEXT NOT NULL,
    result        TEXT,
    result_digest TEXT,
    error         TEXT,
    targets       BIGINT NOT NULL,
    attempt       BIGINT NOT NULL,
    epoch         BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    resolution    TEXT,
    resolved_by   TEXT,
    PRIMARY KEY (run_id, key)
);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE runbook_deliveries (
    automation  TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (automation, key)
);
CREATE INDEX runbook_deliveries_received ON runbook_deliveries (received_at);
INSERT INTO runbook_deliveries (automation, key, run_id, received_at)
    SELECT automation, idem_key, id, created_at FROM runbook_runs WHERE trigger = 'webhook' AND idem_key IS NOT NULL
    ON CONFLICT DO NOTHING;
ALTER TABLE runbook_runs ADD COLUMN started_by TEXT NOT NULL DEFAULT '';
ALTER TABLE runbook_runs ADD COLUMN cancelled_by TEXT;
CREATE TABLE runbook_automations (
    name       TEXT PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    changed_by TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
"#,
    ),
    (
        4,
        r#"
ALTER TABLE runbook_runs ADD COLUMN plan TEXT;
ALTER TABLE runbook_runs ADD COLUMN plan_sha256 TEXT;
ALTER TABLE runbook_runs ADD COLUMN plan_round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runbook_runs ADD COLUMN plan_diff TEXT;
ALTER TABLE runbook_runs ADD COLUMN approval_expires_at BIGINT;
ALTER TABLE runbook_runs ADD COLUMN approved_at BIGINT;
CREATE INDEX runbook_runs_awaiting ON runbook_runs (approval_expires_at) WHERE status = 'awaiting_approval';
CREATE TABLE runbook_approvals (
    run_id         TEXT NOT NULL REFERENCES runbook_runs (id) ON DELETE CASCADE,
    round          INTEGER NOT NULL,
    approver       TEXT NOT NULL,
    decision       TEXT NOT NULL,
    comment        TEXT NOT NULL,
    effects_sha256 TEXT NOT NULL,
    at             BIGINT NOT NULL,
    PRIMARY KEY (run_id, round, approver)
);
"#,
    ),
    (
        5,
        r#"
CREATE TABLE runbook_console_sessions (
    id_sha256    TEXT PRIMARY KEY,
    token_name   TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL
);
"#,
    ),
];

/// Runs one claim takes at most: small batches keep a busy instance from taking the whole queue
/// while others sit idle.
const CLAIM_BATCH: usize = 16;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

fn pg_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("PostgreSQL: {e}"))
}

/// A tokio-postgres error with its cause (the server's message, or why the connection failed).
fn db_err(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError(format!("PostgreSQL: {}", db.message())),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            StoreError(format!("PostgreSQL: {text}"))
        }
    }
}

fn parse_json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn params_of(text: Option<String>) -> super::Params {
    match parse_json(text) {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

const RECORD_COLUMNS: &str = "id, automation, trigger, status, attempts, max_retries, params, event, scheduled_for, result, error, \
     error_kind, logs, calls, retry_of, created_at, not_before, started_at, finished_at, script_digest, started_by, cancelled_by, \
     plan, plan_round, plan_diff, approval_expires_at, approved_at";

const SUMMARY_COLUMNS: &str = "id, automation, trigger, status, attempts, created_at, started_at, finished_at, error, retry_of, started_by, cancelled_by";

fn summary(row: &Row) -> RunSummary {
    let status: String = row.get(3);
    RunSummary {
        id: row.get(0),
        automation: row.get(1),
        trigger: row.get(2),
        status: status.parse().unwrap_or(RunStatus::Failed),
        attempts: count(row.get(4)),
        created_at: row.get(5),
        started_at: row.get(6),
        finished_at: row.get(7),
        error: row.get(8),
        retry_of: row.get(9),
        started_by: row.get(10),
        cancelled_by: row.get(11),
    }
}

fn record(row: &Row) -> RunRecord {
    let status: String = row.get(3);
    RunRecord {
        id: row.get(0),
        automation: row.get(1),
        trigger: row.get(2),
        status: status.parse().unwrap_or(RunStatus::Failed),
        attempts: count(row.get(4)),
        max_retries: count(row.get(5)),
        params: params_of(row.get(6)),
        event: parse_json(row.get(7)),
        scheduled_for: row.get(8),
        result: parse_json(row.get(9)),
        error: row.get(10),
        error_kind: row.get(11),
        logs: parse_json(row.get(12)).unwrap_or(Value::Array(Vec::new())),
        calls: parse_json(row.get(13)).unwrap_or(Value::Array(Vec::new())),
        retry_of: row.get(14),
        created_at: row.get(15),
        not_before: row.get(16),
        started_at: row.get(17),
        finished_at: row.get(18),
        script_digest: row.get(19),
        steps: Vec::new(),
        started_by: row.get(20),
        cancelled_by: row.get(21),
        approval: approval_state(
            row.get(22),
            i64::from(row.get::<_, i32>(23)),
            row.get(24),
            row.get(25),
            row.get(26),
        ),
    }
}

async fn approval_rows(client: &deadpool_postgres::Client, run_id: &str) -> Result<Vec<Approval>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM runbook_approvals WHERE run_id = $1 ORDER BY at, round, approver"
        ))
        .await
        .map_err(|e| db_err(&e))?;
    let rows = client.query(&statement, &[&run_id]).await.map_err(|e| db_err(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let decision: String = r.get(2);
            approval_of(
                i64::from(r.get::<_, i32>(0)),
                r.get(1),
                &decision,
                r.get(3),
                r.get(4),
                r.get(5),
            )
        })
        .collect())
}

fn entry_row(row: &Row) -> Result<EntryRow, tokio_postgres::Error> {
    Ok(EntryRow {
        key: row.try_get(0)?,
        version: i64::from(row.try_get::<_, i32>(1)?),
        kind: row.try_get(2)?,
        action: row.try_get(3)?,
        effect: row.try_get(4)?,
        idempotent: row.try_get(5)?,
        args_digest: row.try_get(6)?,
        args: row.try_get(7)?,
        status: row.try_get(8)?,
        result: row.try_get(9)?,
        result_digest: row.try_get(10)?,
        error: row.try_get(11)?,
        targets: row.try_get(12)?,
        attempt: row.try_get(13)?,
        epoch: row.try_get(14)?,
        started_at: row.try_get(15)?,
        finished_at: row.try_get(16)?,
        resolution: row.try_get(17)?,
        resolved_by: row.try_get(18)?,
    })
}

/// A run's journal rows, through a statement prepared once per pooled connection.
async fn journal_rows(client: &deadpool_postgres::Client, run_id: &str) -> Result<Vec<EntryRow>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM runbook_journal WHERE run_id = $1"
        ))
        .await
        .map_err(|e| db_err(&e))?;
    let rows = client.query(&statement, &[&run_id]).await.map_err(|e| db_err(&e))?;
    rows.iter()
        .map(entry_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError(format!("PostgreSQL: run {run_id}'s journal is unreadable: {e}")))
}

fn epoch_sql(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

/// The journal of one attempt of one run in PostgreSQL.
struct PgJournal {
    store: PgStore,
    run_id: String,
    attempt: u32,
    epoch: u64,
}

impl PgJournal {
    /// Writes `entry` (and the automation's state value) if this attempt still holds the run,
    /// in one transaction: the run's row is share-locked first, so no claim, recovery or
    /// completion can change its epoch or status until the write commits.
    async fn write_entry(
        &self,
        entries: &[JournalEntry],
        state: Option<(&str, String)>,
    ) -> Result<Result<(), JournalError>, StoreError> {
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(|e| db_err(&e))?;
        let lease = tx
            .query_opt(
                "SELECT status, epoch, automation FROM runbook_runs WHERE id = $1 FOR SHARE",
                &[&self.run_id],
            )
            .await
            .map_err(|e| db_err(&e))?;
        let found = lease.as_ref().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)));
        if let Some(refused) = fenced(&self.run_id, self.epoch, found) {
            return Ok(Err(refused));
        }
        for entry in entries {
            let e = EntryRow::from_entry(entry);
            let version = i32::try_from(e.version).unwrap_or(i32::MAX);
            tx.execute(
            &format!(
                "INSERT INTO runbook_journal (run_id, {ENTRY_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
                 ON CONFLICT (run_id, key) DO UPDATE SET
                     version = excluded.version, kind = excluded.kind, action = excluded.action, effect = excluded.effect,
                     idempotent = excluded.idempotent, args_digest = excluded.args_digest, args = excluded.args,
                     status = excluded.status, result = excluded.result, result_digest = excluded.result_digest,
                     error = excluded.error, targets = excluded.targets, attempt = excluded.attempt, epoch = excluded.epoch,
                     started_at = excluded.started_at, finished_at = excluded.finished_at,
                     resolution = excluded.resolution, resolved_by = excluded.resolved_by"
            ),
            &[
                &self.run_id,
                &e.key,
                &version,
                &e.kind,
                &e.action,
                &e.effect,
                &e.idempotent,
                &e.args_digest,
                &e.args,
                &e.status,
                &e.result,
                &e.result_digest,
                &e.error,
                &e.targets,
                &e.attempt,
                &e.epoch,
                &e.started_at,
                &e.finished_at,
                &e.resolution,
                &e.resolved_by,
            ],
        )
        .await
        .map_err(|e| db_err(&e))?;
        }
        if let (Some((key, value)), Some(row)) = (state, lease) {
            let automation: String = row.get(2);
            tx.execute(
                &format!(
                    "INSERT INTO runbook_state (automation, key, value, updated_at) VALUES ($1, $2, $3, {NOW_MS})
                     ON CONFLICT (automation, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
                ),
                &[&automation, &key, &value],
            )
            .await
            .map_err(|e| db_err(&e))?;
        }
        tx.commit().await.map_err(|e| db_err(&e))?;
        Ok(Ok(()))
    }
}

#[async_trait]
impl Journal for PgJournal {
    async fn load(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let client = self.store.client().await.map_err(|e| JournalError::Unavailable(e.0))?;
        let rows = journal_rows(&client, &self.run_id)
            .await
            .map_err(|e| JournalError::Unavailable(e.0))?;
        journal_entries(&self.run_id, rows)
    }

    async fn write_batch(&self, entries: &[JournalEntry], state: Option<(&str, &Value)>) -> Result<(), JournalError> {
        self.write_entry(entries, state.map(|(k, v)| (k, json_text(v))))
            .await
            .unwrap_or_else(|e| Err(JournalError::Unavailable(e.0)))
    }

    async fn write(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        self.write_entry(std::slice::from_ref(entry), None)
            .await
            .unwrap_or_else(|e| Err(JournalError::Unavailable(e.0)))
    }

    async fn write_with_state(&self, entry: &JournalEntry, key: &str, value: &Value) -> Result<(), JournalError> {
        self.write_entry(std::slice::from_ref(entry), Some((key, json_text(value))))
            .await
            .unwrap_or_else(|e| Err(JournalError::Unavailable(e.0)))
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl PgStore {
    /// `columns` of the runs a listing's `filter` selects, newest first, each read by `read`.
    async fn select_runs<T>(
        &self,
        columns: &str,
        filter: &RunFilter,
        read: fn(&Row) -> T,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client().await?;
        let limit = if filter.limit == 0 { 50 } else { filter.limit };
        let rows = client
            .query(
                &format!(
                    "SELECT {columns} FROM runbook_runs
                     WHERE ($1::text IS NULL OR automation = $1) AND ($2::text IS NULL OR status = $2)
                       AND ($4::bigint IS NULL OR created_at >= $4) AND ($5::bigint IS NULL OR created_at < $5)
                       AND ($6::text IS NULL OR id < $6)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[
                    &filter.automation,
                    &filter.status.map(RunStatus::as_str),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                    &filter.since,
                    &filter.until,
                    &filter.before,
                ],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows.iter().map(read).collect())
    }

    /// Connects to `url` (`postgres://user@host:port/db`, libpq's URL form; `options=-csearch_path=…`
    /// picks a schema; `sslmode`, `sslrootcert`, `connect_timeout` and `statement_timeout` as
    /// [`pg_tls`](super::pg_tls) says) and applies the migrations this build knows.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let super::pg_tls::PgConnectSettings { config, tls } = super::pg_tls::settings(url)?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(pg_err)?;
        let store = PgStore { pool };
        store.migrate().await.map_err(|e| {
            if e.0.contains("certificate") || e.0.contains("TLS") || e.0.contains("tls") {
                StoreError(format!(
                    "{}; with sslmode=verify-full, sslrootcert must name the CA that signed the server's certificate and the URL's host must be one the certificate names",
                    e.0
                ))
            } else {
                e
            }
        })?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        pooled(&self.pool).await
    }

    /// Records a duplicate delivery's keys for the run its first delivery started (keys already
    /// recorded keep their run), on the caller's connection (taking a second one from the pool
    /// while holding one could wait forever).
    async fn record_keys(
        client: &deadpool_postgres::Client,
        automation: &str,
        keys: &[String],
        run_id: &str,
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        client
            .execute(
                &format!(
                    "INSERT INTO runbook_deliveries (automation, key, run_id, received_at)
                     SELECT $1, k, $3, {NOW_MS} FROM unnest($2::text[]) AS k
                     ON CONFLICT (automation, key) DO NOTHING"
                ),
                &[&automation, &keys, &run_id],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    /// Applies the migrations not applied yet, one instance at a time.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_err(&e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':runbook:migrate', 0))",
            &[],
        )
        .await
        .map_err(|e| db_err(&e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS runbook_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(|e| db_err(&e))?;
        let applied: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM runbook_migrations", &[])
            .await
            .map_err(|e| db_err(&e))?
            .get(0);
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if applied > known {
            return Err(StoreError(format!(
                "the database's runbook schema is version {applied}, newer than this build's {known}: upgrade runbook"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
            tx.batch_execute(sql).await.map_err(|e| db_err(&e))?;
            tx.execute("INSERT INTO runbook_migrations (version) VALUES ($1)", &[version])
                .await
                .map_err(|e| db_err(&e))?;
            tracing::info!(version, "PostgreSQL store migrated");
        }
        tx.commit().await.map_err(|e| db_err(&e))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn enqueue(&self, run: NewRun) -> Result<Enqueued, StoreError> {
        let mut client = self.client().await?;
        let id = uuid::Uuid::now_v7().to_string();
        let max_retries = i32::try_from(run.max_retries).unwrap_or(i32::MAX);
        let params = json_text(&Value::Object(run.params.clone()));
        let event = run.event.as_ref().map(json_text);
        // Keys in one order everywhere, so that two instances taking overlapping keys wait for
        // each other instead of deadlocking.
        let mut keys = run.dedup.clone();
        keys.sort();
        keys.dedup();
        let tx = client.transaction().await.map_err(|e| db_err(&e))?;
        // The keys first: an insert that meets a key another instance is inserting waits for
        // that transaction and then sees its key, so a delivery offered twice at once (even
        // under two ids) is stored once.
        let mut duplicate_of: Option<String> = None;
        for key in &keys {
            let inserted = tx
                .query_opt(
                    &format!(
                        "INSERT INTO runbook_deliveries (automation, key, run_id, received_at) VALUES ($1, $2, $3, {NOW_MS})
                         ON CONFLICT (automation, key) DO NOTHING RETURNING key"
                    ),
                    &[&run.automation, key, &id],
                )
                .await
                .map_err(|e| db_err(&e))?;
            if inserted.is_none() {
                let first: String = tx
                    .query_one(
                        "SELECT run_id FROM runbook_deliveries WHERE automation = $1 AND key = $2",
                        &[&run.automation, key],
                    )
                    .await
                    .map_err(|e| db_err(&e))?
                    .get(0);
                duplicate_of = Some(first);
                break;
            }
        }
        if let Some(first) = duplicate_of {
            tx.rollback().await.map_err(|e| db_err(&e))?;
            PgStore::record_keys(&client, &run.automation, &super::duplicate_keys(&run), &first).await?;
            return Ok(Enqueued {
                run_id: first,
                automation: run.automation,
                created: false,
            });
        }
        let inserted = tx
            .query_opt(
                &format!(
                    "INSERT INTO runbook_runs (id, automation, trigger, idem_key, status, max_retries, params, event, scheduled_for, retry_of, created_at, not_before,
                                               script, script_digest, started_by)
                     VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, {NOW_MS}, {NOW_MS}, $10, $11, $12)
                     ON CONFLICT (automation, idem_key) DO NOTHING RETURNING id"
                ),
                &[
                    &id,
                    &run.automation,
                    &run.trigger,
                    &run.idem_key,
                    &max_retries,
                    &params,
                    &event,
                    &run.scheduled_for,
                    &run.retry_of,
                    &run.script,
                    &script_digest(&run.script),
                    &run.started_by,
                ],
            )
            .await
            .map_err(|e| db_err(&e))?;
        if inserted.is_some() {
            tx.commit().await.map_err(|e| db_err(&e))?;
            return Ok(Enqueued {
                run_id: id,
                automation: run.automation,
                created: true,
            });
        }
        tx.rollback().await.map_err(|e| db_err(&e))?;
        // The key exists: committed by now (the insert waited for it), so a new statement sees it.
        let existing: String = client
            .query_one(
                "SELECT id FROM runbook_runs WHERE automation = $1 AND idem_key = $2",
                &[&run.automation, &run.idem_key],
            )
            .await
            .map_err(|e| db_err(&e))?
            .get(0);
        PgStore::record_keys(&client, &run.automation, &super::duplicate_keys(&run), &existing).await?;
        Ok(Enqueued {
            run_id: existing,
            automation: run.automation,
            created: false,
        })
    }

    async fn claim(
        &self,
        owner: &str,
        concurrency: &BTreeMap<String, usize>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        let max = max.min(CLAIM_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_err(&e))?;
        // Only the automations this instance knows: another's stay queued for an instance that
        // knows them (a rolling deploy that adds one).
        let known: Vec<&str> = concurrency.keys().map(String::as_str).collect();
        let due: Vec<String> = tx
            .query(
                &format!(
                    "SELECT DISTINCT automation FROM runbook_runs
                     WHERE status = 'queued' AND not_before <= {NOW_MS} AND automation = ANY($1)
                       AND automation NOT IN (SELECT name FROM runbook_automations WHERE paused)"
                ),
                &[&known],
            )
            .await
            .map_err(|e| db_err(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let lease = lease_ms(lease);
        let mut claimed = Vec::new();
        for automation in due {
            if claimed.len() >= max {
                break;
            }
            // Counting the automation's running runs and claiming more must be one step across
            // every instance: a transaction-scoped lock per automation. An instance that finds it
            // taken leaves that automation to the one holding it this round.
            let locked: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended(current_schema() || ':runbook:claim:' || $1, 0))",
                    &[&automation],
                )
                .await
                .map_err(|e| db_err(&e))?
                .get(0);
            if !locked {
                continue;
            }
            let running: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM runbook_runs WHERE automation = $1 AND status = 'running'",
                    &[&automation],
                )
                .await
                .map_err(|e| db_err(&e))?
                .get(0);
            let Some(limit) = concurrency.get(&automation).copied() else {
                continue;
            };
            let room = limit
                .saturating_sub(usize::try_from(running).unwrap_or(usize::MAX))
                .min(max - claimed.len());
            if room == 0 {
                continue;
            }
            let rows = tx
                .query(
                    &format!(
                        "UPDATE runbook_runs SET status = 'running', attempts = attempts + 1, epoch = epoch + 1, started_at = {NOW_MS},
                             lease_owner = $2, lease_until = {NOW_MS} + $3
                         WHERE id IN (
                             SELECT id FROM runbook_runs
                             WHERE automation = $1 AND status = 'queued' AND not_before <= {NOW_MS}
                             ORDER BY not_before, id LIMIT $4
                             FOR UPDATE SKIP LOCKED)
                         RETURNING id, automation, attempts, max_retries, params, event, created_at, not_before, epoch, script,
                             approved_at"
                    ),
                    &[&automation, &owner, &lease, &i64::try_from(room).unwrap_or(i64::MAX)],
                )
                .await
                .map_err(|e| db_err(&e))?;
            let mut batch: Vec<(i64, ClaimedRun)> = rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, i64>(7),
                        ClaimedRun {
                            id: r.get(0),
                            automation: r.get(1),
                            attempt: count(r.get(2)),
                            max_retries: count(r.get(3)),
                            params: params_of(r.get(4)),
                            event: parse_json(r.get(5)),
                            created_at: r.get(6),
                            epoch: u64::try_from(r.get::<_, i64>(8)).unwrap_or(0),
                            script: r.get(9),
                            approved: r.get::<_, Option<i64>>(10).is_some(),
                        },
                    )
                })
                .collect();
            batch.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
            claimed.extend(batch.into_iter().map(|(_, run)| run));
        }
        tx.commit().await.map_err(|e| db_err(&e))?;
        Ok(claimed)
    }

    async fn heartbeat(&self, owner: &str, runs: &[(String, u64)], lease: Duration) -> Result<Vec<String>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let ids: Vec<&str> = runs.iter().map(|(id, _)| id.as_str()).collect();
        let epochs: Vec<i64> = runs.iter().map(|(_, epoch)| epoch_sql(*epoch)).collect();
        let rows = client
            .query(
                &format!(
                    "UPDATE runbook_runs AS r SET lease_until = {NOW_MS} + $3
                     FROM unnest($1::text[], $4::bigint[]) AS held (id, epoch)
                     WHERE r.id = held.id AND r.epoch = held.epoch AND r.lease_owner = $2 AND r.status = 'running'
                     RETURNING r.id"
                ),
                &[&ids, &owner, &lease_ms(lease), &epochs],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn complete(&self, owner: &str, id: &str, epoch: u64, c: Completion) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let (status, not_before, finished) = match c.retry_at {
            Some(at) => ("queued", Some(at), false),
            None => (c.status.as_str(), None, true),
        };
        let changed = client
            .execute(
                &format!(
                    "UPDATE runbook_runs SET
                         status = CASE WHEN cancelled_by IS NOT NULL AND $3 = 'queued' THEN 'cancelled' ELSE $3 END,
                         result = $4, error = $5, error_kind = $6, logs = $7, calls = $8,
                         finished_at = CASE WHEN $9 OR cancelled_by IS NOT NULL THEN {NOW_MS} END,
                         not_before = COALESCE($10, not_before),
                         lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running' AND epoch = $11"
                ),
                &[
                    &id,
                    &owner,
                    &status,
                    &c.result.as_ref().map(json_text),
                    &c.error,
                    &c.error_kind,
                    &json_text(&c.logs),
                    &json_text(&c.calls),
                    &finished,
                    &not_before,
                    &epoch_sql(epoch),
                ],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(changed == 1)
    }

    async fn release(&self, owner: &str, id: &str, epoch: u64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                &format!(
                    "UPDATE runbook_runs SET
                         status = CASE WHEN cancelled_by IS NULL THEN 'queued' ELSE 'cancelled' END,
                         finished_at = CASE WHEN cancelled_by IS NULL THEN finished_at ELSE {NOW_MS} END,
                         attempts = GREATEST(attempts - 1, 0), started_at = NULL, lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running' AND epoch = $3"
                ),
                &[&id, &owner, &epoch_sql(epoch)],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(changed == 1)
    }

    fn journal(&self, run_id: &str, attempt: u32, epoch: u64) -> Arc<dyn Journal> {
        Arc::new(PgJournal {
            store: self.clone(),
            run_id: run_id.to_owned(),
            attempt,
            epoch,
        })
    }

    async fn resolve(&self, run_id: &str, key: &str, resolution: Resolution, by: &str) -> Result<(), ResolveError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_err(&e))?;
        let Some(run) = tx
            .query_opt("SELECT status FROM runbook_runs WHERE id = $1 FOR UPDATE", &[&run_id])
            .await
            .map_err(|e| db_err(&e))?
        else {
            return Err(ResolveError::NoRun(run_id.to_owned()));
        };
        let status: String = run.get(0);
        if status != RunStatus::NeedsAttention.as_str() {
            return Err(ResolveError::NotWaiting {
                run: run_id.to_owned(),
                status,
            });
        }
        let Some(step) = tx
            .query_opt(
                "SELECT status FROM runbook_journal WHERE run_id = $1 AND key = $2",
                &[&run_id, &key],
            )
            .await
            .map_err(|e| db_err(&e))?
        else {
            return Err(ResolveError::NoStep {
                run: run_id.to_owned(),
                key: key.to_owned(),
            });
        };
        let step: String = step.get(0);
        if step != "intent" {
            return Err(ResolveError::NotInDoubt {
                run: run_id.to_owned(),
                key: key.to_owned(),
                status: step,
            });
        }
        tx.execute(
            "UPDATE runbook_journal SET resolution = $3, resolved_by = $4 WHERE run_id = $1 AND key = $2",
            &[&run_id, &key, &resolution.as_str(), &by],
        )
        .await
        .map_err(|e| db_err(&e))?;
        tx.execute(
            &format!(
                "UPDATE runbook_runs SET status = 'queued', not_before = {NOW_MS}, finished_at = NULL WHERE id = $1"
            ),
            &[&run_id],
        )
        .await
        .map_err(|e| db_err(&e))?;
        tx.commit().await.map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn compact_journals(&self, before: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "UPDATE runbook_journal SET result = NULL, args = 'null'
                     WHERE (result IS NOT NULL OR args <> 'null') AND run_id IN (
                         SELECT id FROM runbook_runs WHERE status IN ({}) AND finished_at < $1)",
                    RunStatus::FINAL_SQL
                ),
                &[&before],
            )
            .await
            .map_err(|e| db_err(&e))
    }

    /// Only expired leases: other instances may hold runs this one cannot see, so
    /// `all_running` is not honoured here — a run of a dead instance waits out its lease.
    async fn recover(&self, _all_running: bool) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_err(&e))?;
        // A run a person asked to cancel whose instance died is cancelled, not queued again.
        tx.execute(
            &format!(
                "UPDATE runbook_runs SET status = 'cancelled', finished_at = {NOW_MS}, lease_owner = NULL, lease_until = NULL
                 WHERE status = 'running' AND lease_until < {NOW_MS} AND cancelled_by IS NOT NULL"
            ),
            &[],
        )
        .await
        .map_err(|e| db_err(&e))?;
        // A run lost on its last allowed attempt with a change in doubt that only a person can
        // settle waits for one (see the SQLite store).
        tx.execute(
            &format!(
                "UPDATE runbook_runs SET status = 'needs_attention', lease_owner = NULL, lease_until = NULL,
                     error = 'the process running it stopped on its last allowed attempt with a change in doubt: check the service, then runbook runs resolve RUN STEP --sent or --not-sent (runs show names the step)',
                     error_kind = 'lost'
                 WHERE status = 'running' AND lease_until < {NOW_MS} AND attempts > max_retries
                   AND EXISTS (SELECT 1 FROM runbook_journal j WHERE j.run_id = runbook_runs.id AND j.status = 'intent'
                               AND NOT j.idempotent AND j.resolution IS NULL)"
            ),
            &[],
        )
        .await
        .map_err(|e| db_err(&e))?;
        tx.execute(
            &format!(
                "UPDATE runbook_runs SET status = 'failed', finished_at = {NOW_MS}, lease_owner = NULL, lease_until = NULL,
                     error = 'the process running it stopped before it finished, on its last allowed attempt', error_kind = 'lost'
                 WHERE status = 'running' AND lease_until < {NOW_MS} AND attempts > max_retries"
            ),
            &[],
        )
        .await
        .map_err(|e| db_err(&e))?;
        let requeued = tx
            .execute(
                &format!(
                    "UPDATE runbook_runs SET status = 'queued', lease_owner = NULL, lease_until = NULL
                     WHERE status = 'running' AND lease_until < {NOW_MS}"
                ),
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        tx.commit().await.map_err(|e| db_err(&e))?;
        Ok(requeued)
    }

    async fn get(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let client = self.client().await?;
        // Prepared once per connection: a page that reads several runs pays one round trip
        // per statement, not two.
        let statement = client
            .prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM runbook_runs WHERE id = $1"))
            .await
            .map_err(|e| db_err(&e))?;
        let row = client.query_opt(&statement, &[&id]).await.map_err(|e| db_err(&e))?;
        let Some(mut run) = row.as_ref().map(record) else {
            return Ok(None);
        };
        run.steps = history_steps(&run.id, journal_rows(&client, &run.id).await?)?;
        if let Some(approval) = &mut run.approval {
            approval.approvals = approval_rows(&client, &run.id).await?;
        }
        Ok(Some(run))
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.select_runs(RECORD_COLUMNS, filter, record).await
    }

    async fn list_summaries(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        self.select_runs(SUMMARY_COLUMNS, filter, summary).await
    }

    async fn cancel(&self, id: &str, by: &str) -> Result<Cancelled, CancelError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_err(&e))?;
        let Some(row) = tx
            .query_opt("SELECT status FROM runbook_runs WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(|e| db_err(&e))?
        else {
            return Err(CancelError::NoRun(id.to_owned()));
        };
        let status: String = row.get(0);
        let outcome = match status.parse::<RunStatus>() {
            Ok(RunStatus::Queued | RunStatus::NeedsAttention | RunStatus::AwaitingApproval) => {
                tx.execute(
                    &format!(
                        "UPDATE runbook_runs SET status = 'cancelled', cancelled_by = $2, finished_at = {NOW_MS},
                             lease_owner = NULL, lease_until = NULL
                         WHERE id = $1"
                    ),
                    &[&id, &by],
                )
                .await
                .map_err(|e| db_err(&e))?;
                Cancelled::Now
            }
            Ok(RunStatus::Running) => {
                tx.execute(
                    "UPDATE runbook_runs SET cancelled_by = COALESCE(cancelled_by, $2) WHERE id = $1",
                    &[&id, &by],
                )
                .await
                .map_err(|e| db_err(&e))?;
                Cancelled::Stopping
            }
            _ => {
                return Err(CancelError::Finished {
                    run: id.to_owned(),
                    status,
                });
            }
        };
        tx.commit().await.map_err(|e| db_err(&e))?;
        Ok(outcome)
    }

    async fn cancel_requested(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM runbook_runs WHERE status = 'running' AND lease_owner = $1 AND cancelled_by IS NOT NULL",
                &[&owner],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn await_approval(
        &self,
        owner: &str,
        id: &str,
        epoch: u64,
        pending: PendingPlan,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let plan = serde_json::to_string(&pending.plan).map_err(StoreError::new)?;
        let diff = pending.diff.as_ref().map(json_text);
        let changed = client
            .execute(
                &format!(
                    "UPDATE runbook_runs SET
                         status = CASE WHEN cancelled_by IS NOT NULL THEN 'cancelled' ELSE 'awaiting_approval' END,
                         finished_at = CASE WHEN cancelled_by IS NOT NULL THEN {NOW_MS} END,
                         plan = $4, plan_sha256 = $5, plan_round = plan_round + 1, plan_diff = $6,
                         approval_expires_at = {NOW_MS} + $7, approved_at = NULL,
                         result = NULL, error = NULL, error_kind = NULL, logs = $8, calls = $9,
                         lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running' AND epoch = $3"
                ),
                &[
                    &id,
                    &owner,
                    &epoch_sql(epoch),
                    &plan,
                    &pending.plan.effects_sha256,
                    &diff,
                    &lease_ms(pending.expires_in),
                    &json_text(&pending.logs),
                    &json_text(&pending.calls),
                ],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(changed == 1)
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_err(&e))?;
        let Some(row) = tx
            .query_opt(
                &format!(
                    "SELECT status, plan_sha256, plan_round, approval_expires_at <= {NOW_MS} FROM runbook_runs
                     WHERE id = $1 FOR UPDATE"
                ),
                &[&id],
            )
            .await
            .map_err(|e| db_err(&e))?
        else {
            return Err(DecideError::NoRun(id.to_owned()));
        };
        let status: String = row.get(0);
        let digest: String = row.get::<_, Option<String>>(1).unwrap_or_default();
        let round: i32 = row.get(2);
        let expired: bool = row.get::<_, Option<bool>>(3).unwrap_or(false);
        if status != RunStatus::AwaitingApproval.as_str() {
            return Err(DecideError::NotWaiting {
                run: id.to_owned(),
                status,
            });
        }
        if expired {
            tx.execute(
                &format!(
                    "UPDATE runbook_runs SET status = 'expired', finished_at = {NOW_MS}, error = $2, error_kind = 'expired'
                     WHERE id = $1"
                ),
                &[&id, &EXPIRED_TEXT],
            )
            .await
            .map_err(|e| db_err(&e))?;
            tx.commit().await.map_err(|e| db_err(&e))?;
            return Err(DecideError::Expired(id.to_owned()));
        }
        if let Some(seen) = seen.filter(|s| *s != digest) {
            return Err(DecideError::PlanChanged {
                run: id.to_owned(),
                seen: seen.to_owned(),
                current: digest,
            });
        }
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO runbook_approvals (run_id, round, approver, decision, comment, effects_sha256, at)
                     VALUES ($1, $2, $3, $4, $5, $6, {NOW_MS}) ON CONFLICT DO NOTHING"
                ),
                &[&id, &round, &by, &decision.as_str(), &comment, &digest],
            )
            .await
            .map_err(|e| db_err(&e))?;
        if inserted == 0 {
            return Err(DecideError::AlreadyDecided {
                run: id.to_owned(),
                approver: by.to_owned(),
            });
        }
        let approvals: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM runbook_approvals WHERE run_id = $1 AND round = $2 AND decision = 'approve'",
                &[&id, &round],
            )
            .await
            .map_err(|e| db_err(&e))?
            .get(0);
        let approvals = u32::try_from(approvals).unwrap_or(0);
        let status = match decision {
            Decision::Reject => {
                tx.execute(
                    &format!(
                        "UPDATE runbook_runs SET status = 'rejected', finished_at = {NOW_MS}, error = $2,
                             error_kind = 'rejected'
                         WHERE id = $1"
                    ),
                    &[&id, &rejection_text(by, comment)],
                )
                .await
                .map_err(|e| db_err(&e))?;
                RunStatus::Rejected
            }
            Decision::Approve if approvals >= required => {
                tx.execute(
                    &format!(
                        "UPDATE runbook_runs SET status = 'queued', approved_at = {NOW_MS}, not_before = {NOW_MS},
                             max_retries = max_retries + attempts
                         WHERE id = $1"
                    ),
                    &[&id],
                )
                .await
                .map_err(|e| db_err(&e))?;
                RunStatus::Queued
            }
            Decision::Approve => RunStatus::AwaitingApproval,
        };
        tx.commit().await.map_err(|e| db_err(&e))?;
        Ok(Decided {
            status,
            approvals,
            effects_sha256: digest,
        })
    }

    async fn expire_approvals(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "UPDATE runbook_runs SET status = 'expired', finished_at = {NOW_MS}, error = $1, error_kind = 'expired'
                     WHERE status = 'awaiting_approval' AND approval_expires_at <= {NOW_MS}"
                ),
                &[&EXPIRED_TEXT],
            )
            .await
            .map_err(|e| db_err(&e))
    }

    async fn set_paused(&self, automation: &str, paused: bool, by: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO runbook_automations (name, paused, changed_by, changed_at) VALUES ($1, $2, $3, {NOW_MS})
                     ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, changed_by = excluded.changed_by,
                         changed_at = excluded.changed_at"
                ),
                &[&automation, &paused, &by],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn session_create(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO runbook_console_sessions (id_sha256, token_name, token_sha256, csrf, created_at, last_seen)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &session.id_sha256,
                    &session.token_name,
                    &session.token_sha256,
                    &session.csrf,
                    &session.created_at,
                    &session.last_seen,
                ],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn session_get(&self, id_sha256: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id_sha256, token_name, token_sha256, csrf, created_at, last_seen
                 FROM runbook_console_sessions WHERE id_sha256 = $1",
                &[&id_sha256],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(row.map(|r| ConsoleSession {
            id_sha256: r.get(0),
            token_name: r.get(1),
            token_sha256: r.get(2),
            csrf: r.get(3),
            created_at: r.get(4),
            last_seen: r.get(5),
        }))
    }

    async fn session_touch(&self, id_sha256: &str, at: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE runbook_console_sessions SET last_seen = GREATEST(last_seen, $2) WHERE id_sha256 = $1",
                &[&id_sha256, &at],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn session_delete(&self, id_sha256: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM runbook_console_sessions WHERE id_sha256 = $1",
                &[&id_sha256],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn session_prune(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM runbook_console_sessions WHERE last_seen < $1 OR created_at < $2",
                &[&idle_before, &created_before],
            )
            .await
            .map_err(|e| db_err(&e))
    }

    async fn automations(&self) -> Result<Vec<AutomationSwitch>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, paused, changed_by, changed_at FROM runbook_automations ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows
            .iter()
            .map(|r| AutomationSwitch {
                name: r.get(0),
                paused: r.get(1),
                changed_by: r.get(2),
                changed_at: r.get(3),
            })
            .collect())
    }

    async fn last_tick(&self, automation: &str) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT MAX(scheduled_for) FROM runbook_runs WHERE automation = $1 AND scheduled_for IS NOT NULL",
                &[&automation],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(row.get(0))
    }

    async fn state_get(&self, automation: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT value FROM runbook_state WHERE automation = $1 AND key = $2",
                &[&automation, &key],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(parse_json(row.map(|r| r.get(0))))
    }

    async fn state_set(&self, automation: &str, key: &str, value: &Value) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO runbook_state (automation, key, value, updated_at) VALUES ($1, $2, $3, {NOW_MS})
                     ON CONFLICT (automation, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
                ),
                &[&automation, &key, &json_text(value)],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "DELETE FROM runbook_runs WHERE status IN ({}) AND finished_at < $1",
                    RunStatus::FINAL_SQL
                ),
                &[&before],
            )
            .await
            .map_err(|e| db_err(&e))
    }

    async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM runbook_deliveries WHERE received_at < $1", &[&before])
            .await
            .map_err(|e| db_err(&e))
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT automation, status, COUNT(*) FROM runbook_runs GROUP BY automation, status",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        let mut stats = Stats::default();
        for row in rows {
            let status: String = row.get(1);
            if let Ok(status) = status.parse() {
                stats
                    .runs
                    .insert((row.get(0), status), u64::try_from(row.get::<_, i64>(2)).unwrap_or(0));
            }
        }
        let oldest: Option<i64> = client
            .query_one(
                &format!(
                    "SELECT {NOW_MS} - MIN(not_before) FROM runbook_runs WHERE status = 'queued' AND not_before <= {NOW_MS}"
                ),
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?
            .get(0);
        stats.oldest_queued_ms = oldest.map(|ms| ms.max(0));
        Ok(stats)
    }

    async fn changes_since(&self, automation: Option<&str>, since_ms: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(SUM(j.targets), 0)::BIGINT FROM runbook_journal j JOIN runbook_runs r ON r.id = j.run_id
                 WHERE (r.finished_at IS NULL OR r.finished_at >= $1)
                   AND ($2::TEXT IS NULL OR r.automation = $2)
                   AND j.kind = 'call' AND j.effect IN ('write', 'destructive') AND j.status != 'err'
                   AND j.started_at >= $1",
                &[&since_ms, &automation],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn backlog(&self, automation: &str) -> Result<Backlog, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT COUNT(*) FROM runbook_runs WHERE automation = $1 AND status = 'queued'),
                        (SELECT COUNT(*) FROM runbook_runs WHERE automation = $1 AND status = 'running')",
                &[&automation],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(Backlog {
            queued: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            running: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        })
    }

    async fn known_delivery(&self, automation: &str, keys: &[String]) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT run_id FROM runbook_deliveries WHERE automation = $1 AND key = ANY($2) LIMIT 1",
                &[&automation, &keys],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(|e| db_err(&e))?;
        Ok(())
    }

    fn shared_budget(&self) -> Option<Arc<dyn SharedBudget>> {
        Some(Arc::new(self.clone()))
    }
}

/// The rate budget every instance draws from: a token bucket per account in `runbook_budgets`,
/// and one reservation per request.
///
/// Why a bucket with per-request reservations rather than leasing slices of the budget to each
/// instance: a slice sits unused in an idle instance while a busy one waits, and every unspent
/// slice is budget the service may still see spent at once, so slices would have to be small —
/// and small slices cost as many round trips as single reservations. One reservation is one
/// single-row `UPDATE` on loopback or a LAN (well under a millisecond), far below the gap between
/// requests at any budget a SaaS API grants (Cloudflare: 1,200 per 5 minutes, 4 per second).
///
/// The bucket holds at most `burst` = a tenth of the budget and refills at `(N − burst) / period`.
/// Over any stretch of one period, then, at most `burst + (N − burst) = N` requests are sent,
/// whichever instances send them and wherever the service's window starts. A reservation may
/// drive the bucket below zero: it is then a place in line, and its caller waits until the
/// refill reaches it — so instances are served in the order they asked, and none overtakes.
/// Time is the database's, so the instances' clocks do not matter.
#[async_trait]
impl SharedBudget for PgStore {
    async fn reserve(&self, key: &str, limit: RateLimit) -> Result<Duration, BudgetError> {
        let (burst, per_us) = bucket(limit);
        let tokens: f64 = {
            let client = pooled(&self.pool).await.map_err(|e| BudgetError::new(e.0))?;
            let row = client
                    .query_one(
                        "WITH now AS (SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint AS us)
                         INSERT INTO runbook_budgets AS b (key, tokens, updated_us)
                         SELECT $1, $2::float8 - 1, now.us FROM now
                         ON CONFLICT (key) DO UPDATE SET
                             tokens = LEAST($2::float8, b.tokens + (excluded.updated_us - b.updated_us) * $3::float8) - 1,
                             updated_us = GREATEST(excluded.updated_us, b.updated_us)
                         RETURNING tokens",
                        &[&key, &burst, &per_us],
                    )
                    .await
                    .map_err(|e| BudgetError::new(db_err(&e).0))?;
            row.get(0)
        };
        if tokens >= 0.0 {
            return Ok(Duration::ZERO);
        }
        Ok(Duration::from_secs_f64(-tokens / per_us / 1_000_000.0))
    }
}

async fn pooled(pool: &Pool) -> Result<deadpool_postgres::Client, StoreError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => db_err(&e),
        other => pg_err(other),
    })
}

/// The bucket for a budget of N per period: its capacity, and its refill per microsecond.
fn bucket(limit: RateLimit) -> (f64, f64) {
    let n = f64::from(limit.requests);
    let burst = (n / 10.0).floor().max(1.0).min(n);
    let period_us = limit.per.as_secs_f64() * 1_000_000.0;
    // Requests are whole: a budget of 1 may refill half a token per period and still let at
    // most one through in any period.
    let per_period = if n > burst { n - burst } else { 0.5 };
    (burst, per_period / period_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_never_lets_more_than_the_budget_through_in_one_period() {
        for (n, per) in [(1200, 300), (200, 1), (10, 60), (1, 1), (3, 1)] {
            let limit = RateLimit::new(n, Duration::from_secs(per));
            let (burst, refill) = bucket(limit);
            // Whole requests: at most floor(burst + refill × period) in one period.
            let through = (burst + refill * (per as f64) * 1_000_000.0 + 1e-9).floor();
            assert!(through <= f64::from(n), "{n}/{per}s lets {through} through");
            assert!(burst >= 1.0 && refill > 0.0, "{n}/{per}s must refill");
        }
        assert_eq!(bucket(RateLimit::new(1200, Duration::from_secs(300))).0, 120.0);
    }
}
