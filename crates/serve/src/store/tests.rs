//! The store contract, checked against every backend: SQLite always, PostgreSQL when
//! `RUNBOOK_TEST_POSTGRES_URL` names a server (each test gets a schema of its own).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use runbook_core::http::SharedBudget;
use serde_json::json;

use super::*;

/// A store to test, and what keeps it alive.
struct Backend {
    name: &'static str,
    /// Opens another handle on the same data, as a second instance would.
    handles: Vec<Arc<dyn Store>>,
    _dir: Option<tempfile::TempDir>,
    /// Where the data is, for tests that reach past the store.
    raw: Raw,
}

enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Backend {
    /// Runs SQL on the data directly (`journal` is the journal table's name on either backend).
    async fn exec(&self, sql: &str) {
        match &self.raw {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Raw::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                client
                    .batch_execute(&sql.replace("journal", "runbook_journal"))
                    .await
                    .unwrap();
            }
        }
    }
}

const POSTGRES_VAR: &str = "RUNBOOK_TEST_POSTGRES_URL";

/// Lists what the tests may go without: `RUNBOOK_TEST_SKIP=postgres,python`.
const SKIP_VAR: &str = "RUNBOOK_TEST_SKIP";

/// A URL for a fresh schema on the test server. Without one the test fails, or with
/// `RUNBOOK_TEST_SKIP=postgres` its PostgreSQL half passes having checked nothing (`None`,
/// said loudly).
pub(crate) async fn postgres_url() -> Option<String> {
    let Ok(base) = std::env::var(POSTGRES_VAR) else {
        let skip = std::env::var(SKIP_VAR).unwrap_or_default();
        if skip.split(',').any(|s| s.trim() == "postgres") {
            eprintln!(
                "\n*** SKIPPED: the PostgreSQL half of this test: {POSTGRES_VAR} is unset and {SKIP_VAR} names \
                 postgres: that half passes having checked nothing ***\n"
            );
            return None;
        }
        panic!(
            "{POSTGRES_VAR} is unset: this test needs PostgreSQL (e.g. \
             {POSTGRES_VAR}=postgres://postgres@127.0.0.1:5432/test); set it, or set {SKIP_VAR}=postgres to let \
             its PostgreSQL half pass unchecked"
        );
    };
    let schema = format!("rb_test_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_VAR}={base}: cannot connect: {e}"));
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let mut all = vec![Backend {
        name: "sqlite",
        // One process owns an SQLite store: its "instances" are handles on the one store.
        handles: vec![sqlite.clone(), sqlite.clone(), sqlite],
        _dir: Some(dir),
        raw: Raw::Sqlite(path),
    }];
    if let Some(url) = postgres_url().await {
        let mut handles: Vec<Arc<dyn Store>> = Vec::new();
        for _ in 0..3 {
            handles.push(Arc::new(PgStore::open(&url).await.unwrap()));
        }
        all.push(Backend {
            name: "postgres",
            handles,
            _dir: None,
            raw: Raw::Postgres(url),
        });
    }
    all
}

fn run(automation: &str, key: Option<&str>) -> NewRun {
    NewRun {
        automation: automation.to_owned(),
        trigger: "webhook".to_owned(),
        idem_key: key.map(str::to_owned),
        dedup: Vec::new(),
        scheduled_for: None,
        params: serde_json::Map::new(),
        event: Some(json!({"k": key})),
        max_retries: 1,
        retry_of: None,
        script: format!("// {automation}\n1"),
        started_by: "webhook".to_owned(),
    }
}

fn limits(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn done() -> Completion {
    Completion {
        status: RunStatus::Succeeded,
        result: Some(json!(1)),
        error: None,
        error_kind: None,
        logs: json!([]),
        calls: json!([]),
        retry_at: None,
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_is_queued_once_even_from_several_instances() {
    for b in backends().await {
        let store = &b.handles[0];
        let first = store.enqueue(run("a", Some("d1"))).await.unwrap();
        let again = b.handles[1].enqueue(run("a", Some("d1"))).await.unwrap();
        let other_automation = store.enqueue(run("b", Some("d1"))).await.unwrap();
        assert!(
            first.created && !again.created && other_automation.created,
            "{}",
            b.name
        );
        assert_eq!(first.run_id, again.run_id, "{}", b.name);
        // Concurrent intakes through every instance: still once per key.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = b.handles[i % 3].clone();
            tasks.push(tokio::spawn(async move {
                store.enqueue(run("c", Some(&format!("k{}", i % 50)))).await.unwrap()
            }));
        }
        let mut created = 0;
        let mut ids = BTreeMap::new();
        for t in tasks {
            let e = t.await.unwrap();
            created += usize::from(e.created);
            ids.entry(e.run_id).or_insert(0);
        }
        assert_eq!((created, ids.len()), (50, 50), "{}", b.name);
        let stored = store
            .list(&RunFilter {
                automation: Some("c".into()),
                limit: 1000,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 50, "{}", b.name);
    }
}

fn delivery(key: &str, dedup: &[&str]) -> NewRun {
    NewRun {
        idem_key: Some(key.to_owned()),
        dedup: dedup.iter().map(|k| (*k).to_owned()).collect(),
        ..run("hook", None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_a_duplicate_when_any_of_its_keys_was_seen_even_after_its_run_was_pruned() {
    for b in backends().await {
        let name = b.name;
        let store = &b.handles[0];
        let first = store.enqueue(delivery("id1", &["id1", "mac:aa"])).await.unwrap();
        assert!(first.created, "{name}");
        // The captured delivery under a new id (same signature), through another instance.
        let relabelled = b.handles[1].enqueue(delivery("id2", &["id2", "mac:aa"])).await.unwrap();
        // The sender's own retry, signed again (same id, new signature).
        let resigned = store.enqueue(delivery("id1", &["id1", "mac:bb"])).await.unwrap();
        for dup in [&relabelled, &resigned] {
            assert_eq!(
                (dup.created, dup.run_id.as_str()),
                (false, first.run_id.as_str()),
                "{name}"
            );
        }
        // The re-signed retry's signature is recorded: a capture of it under yet another id is
        // a duplicate too. The relabelled replay did not claim its id: a real delivery sent
        // later under it starts its run.
        let retry_captured = store.enqueue(delivery("id7", &["id7", "mac:bb"])).await.unwrap();
        assert_eq!(
            (retry_captured.created, retry_captured.run_id.as_str()),
            (false, first.run_id.as_str()),
            "{name}"
        );
        assert!(
            store
                .enqueue(delivery("id2", &["id2", "mac:cc"]))
                .await
                .unwrap()
                .created,
            "{name}"
        );
        // Keys belong to their automation.
        let elsewhere = store
            .enqueue(NewRun {
                automation: "other".into(),
                ..delivery("id1", &["id1", "mac:aa"])
            })
            .await
            .unwrap();
        assert!(elsewhere.created, "{name}");
        // The run finishes and history is pruned: the keys stay, the delivery is still known.
        let claimed = store.claim("w", &limits(&[("hook", 1)]), 1, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1, "{name}");
        assert!(
            store
                .complete("w", &claimed[0].id, claimed[0].epoch, done())
                .await
                .unwrap()
        );
        assert!(store.prune(now_ms() + 1000).await.unwrap() >= 1, "{name}");
        assert!(store.get(&first.run_id).await.unwrap().is_none(), "{name}");
        let replayed = b.handles[2].enqueue(delivery("id9", &["id9", "mac:aa"])).await.unwrap();
        assert_eq!(
            (replayed.created, replayed.run_id.as_str()),
            (false, first.run_id.as_str()),
            "{name}"
        );
        // Past dedup_keep the keys go too.
        assert!(store.prune_deliveries(now_ms() + 1000).await.unwrap() >= 5, "{name}");
        assert!(
            store
                .enqueue(delivery("id1", &["id1", "mac:aa"]))
                .await
                .unwrap()
                .created,
            "{name}"
        );
        // One captured delivery re-sent at once under many ids, through every instance: one run.
        let mut tasks = Vec::new();
        for i in 0..60 {
            let store = b.handles[i % 3].clone();
            tasks.push(tokio::spawn(async move {
                store
                    .enqueue(delivery(&format!("burst{i}"), &[&format!("burst{i}"), "mac:burst"]))
                    .await
                    .unwrap()
            }));
        }
        let mut created = 0;
        let mut ids = std::collections::BTreeSet::new();
        for t in tasks {
            let e = t.await.unwrap();
            created += usize::from(e.created);
            ids.insert(e.run_id);
        }
        assert_eq!((created, ids.len()), (1, 1), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_respect_each_automations_concurrency_across_instances() {
    for b in backends().await {
        let store = &b.handles[0];
        for i in 0..5 {
            store.enqueue(run("one", Some(&format!("o{i}")))).await.unwrap();
            store.enqueue(run("two", Some(&format!("t{i}")))).await.unwrap();
        }
        let l = limits(&[("one", 1), ("two", 2)]);
        // Three instances claim at the same moment: together they get what the limits allow.
        let (a, c, d) = tokio::join!(
            b.handles[0].claim("w1", &l, 10, LEASE),
            b.handles[1].claim("w2", &l, 10, LEASE),
            b.handles[2].claim("w3", &l, 10, LEASE),
        );
        let mut claimed: Vec<(String, ClaimedRun)> = [("w1", a), ("w2", c), ("w3", d)]
            .into_iter()
            .flat_map(|(w, r)| r.unwrap().into_iter().map(move |run| (w.to_owned(), run)))
            .collect();
        // A claim that found another instance claiming for an automation leaves it to that
        // one this round; the next round picks up what is left, never more.
        for (i, h) in b.handles.iter().enumerate() {
            let owner = format!("x{i}");
            for run in h.claim(&owner, &l, 10, LEASE).await.unwrap() {
                claimed.push((owner.clone(), run));
            }
        }
        let count = |name: &str| claimed.iter().filter(|(_, c)| c.automation == name).count();
        assert_eq!((count("one"), count("two")), (1, 2), "{}", b.name);
        assert!(claimed.iter().all(|(_, c)| c.attempt == 1), "{}", b.name);

        let (owner, one) = claimed.iter().find(|(_, c)| c.automation == "one").unwrap();
        // Only the lease's owner may finish it.
        assert!(
            !store.complete("intruder", &one.id, one.epoch, done()).await.unwrap(),
            "{}",
            b.name
        );
        assert!(
            b.handles[2].complete(owner, &one.id, one.epoch, done()).await.unwrap(),
            "{}",
            b.name
        );
        let next = b.handles[1].claim("w9", &l, 10, LEASE).await.unwrap();
        assert_eq!(next.len(), 1, "{}", b.name);
        assert_eq!(next[0].automation, "one", "{}", b.name);
        let record = store.get(&one.id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Succeeded, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_return_to_the_queue_and_retries_wait_their_turn() {
    for b in backends().await {
        let store = &b.handles[0];
        let queued = store.enqueue(run("a", Some("x"))).await.unwrap();
        let claimed = store
            .claim("w1", &limits(&[("a", 1)]), 1, Duration::from_millis(1))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{}", b.name);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Any instance re-queues a lease that expired.
        assert_eq!(b.handles[2].recover(false).await.unwrap(), 1, "{}", b.name);
        let again = b.handles[1].claim("w2", &limits(&[("a", 1)]), 1, LEASE).await.unwrap();
        assert_eq!(again[0].attempt, 2, "{}", b.name);
        assert_eq!(again[0].epoch, claimed[0].epoch + 1, "{}", b.name);
        // The first owner's late answer is discarded.
        assert!(
            !store
                .complete("w1", &queued.run_id, claimed[0].epoch, done())
                .await
                .unwrap(),
            "{}",
            b.name
        );
        // A live lease is left alone, and heartbeats keep it alive.
        let renewed = store
            .heartbeat("w2", &[(queued.run_id.clone(), again[0].epoch)], LEASE)
            .await
            .unwrap();
        assert_eq!(renewed, vec![queued.run_id.clone()], "{}", b.name);
        assert_eq!(store.recover(false).await.unwrap(), 0, "{}", b.name);
        // A retry scheduled in the future is not claimable yet.
        let later = Completion {
            status: RunStatus::Failed,
            result: None,
            error: Some("boom".into()),
            error_kind: Some("action".into()),
            logs: json!([]),
            calls: json!([]),
            retry_at: Some(now_ms() + 60_000),
        };
        assert!(
            store
                .complete("w2", &queued.run_id, again[0].epoch, later)
                .await
                .unwrap(),
            "{}",
            b.name
        );
        assert!(
            store
                .claim("w3", &limits(&[("a", 1)]), 1, LEASE)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            b.name
        );
        let record = store.get(&queued.run_id).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.error.as_deref()),
            (RunStatus::Queued, Some("boom")),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_lost_on_its_last_attempt_fails_instead_of_looping() {
    for b in backends().await {
        let store = &b.handles[0];
        let queued = store.enqueue(run("a", Some("x"))).await.unwrap();
        for _ in 0..2 {
            store
                .claim("w", &limits(&[("a", 1)]), 1, Duration::from_millis(1))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            store.recover(false).await.unwrap();
        }
        let record = store.get(&queued.run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Failed, "{}", b.name);
        assert_eq!(record.error_kind.as_deref(), Some("lost"), "{}", b.name);

        // Lost on its last attempt with a change only a person can settle: it waits for one.
        let queued = store.enqueue(run("a", Some("y"))).await.unwrap();
        for round in 0..2 {
            let claimed = store
                .claim("w", &limits(&[("a", 1)]), 1, Duration::from_millis(1))
                .await
                .unwrap();
            if round == 1 {
                let mut entry = runbook_core::JournalEntry::new(
                    "1",
                    runbook_core::StepKind::Call,
                    "cloudflare.create_group",
                    runbook_core::Effect::Write,
                );
                entry.idempotent = false;
                entry.epoch = claimed[0].epoch;
                // The lease is a millisecond: write before it can be recovered.
                let journal = store.journal(&claimed[0].id, claimed[0].attempt, claimed[0].epoch);
                journal.write(&entry).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            store.recover(false).await.unwrap();
        }
        let record = store.get(&queued.run_id).await.unwrap().unwrap();
        assert_eq!(
            record.status,
            RunStatus::NeedsAttention,
            "{}: {:?}",
            b.name,
            record.error
        );
        assert!(
            record.error.unwrap_or_default().contains("runbook runs resolve"),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_run_keeps_its_attempt_count_and_a_retry_repeats_a_finished_run() {
    for b in backends().await {
        let store = &b.handles[0];
        let queued = store.enqueue(run("a", Some("x"))).await.unwrap();
        let claimed = store.claim("w", &limits(&[("a", 1)]), 1, LEASE).await.unwrap();
        assert!(store.release("w", &claimed[0].id, claimed[0].epoch).await.unwrap());
        let record = store.get(&queued.run_id).await.unwrap().unwrap();
        assert_eq!((record.status, record.attempts), (RunStatus::Queued, 0), "{}", b.name);
        let err = store.retry(&queued.run_id, "2".into(), "ci").await.unwrap_err();
        assert!(err.to_string().contains("only a finished run"), "{}: {err}", b.name);
        let claimed = b.handles[1].claim("w", &limits(&[("a", 1)]), 1, LEASE).await.unwrap();
        assert!(
            b.handles[1]
                .complete("w", &claimed[0].id, claimed[0].epoch, done())
                .await
                .unwrap()
        );
        // A retry runs the automation's script as it is now.
        let retry = b.handles[2].retry(&queued.run_id, "2".into(), "ci").await.unwrap();
        let copy = store.get(&retry.run_id).await.unwrap().unwrap();
        assert_eq!(
            (copy.trigger.as_str(), copy.retry_of.as_deref(), copy.event),
            ("retry", Some(queued.run_id.as_str()), Some(json!({"k": "x"}))),
            "{}",
            b.name
        );
        assert_eq!(
            copy.script_digest,
            runbook_core::journal::hex_digest(b"2"),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_ticks_stats_and_retention() {
    for b in backends().await {
        let store = &b.handles[0];
        assert_eq!(store.state_get("a", "cursor").await.unwrap(), None, "{}", b.name);
        store.state_set("a", "cursor", &json!({"at": 5})).await.unwrap();
        b.handles[1].state_set("a", "cursor", &json!({"at": 6})).await.unwrap();
        assert_eq!(
            b.handles[2].state_get("a", "cursor").await.unwrap(),
            Some(json!({"at": 6})),
            "{}",
            b.name
        );
        assert_eq!(store.state_get("b", "cursor").await.unwrap(), None, "{}", b.name);

        assert_eq!(store.last_tick("tick").await.unwrap(), None, "{}", b.name);
        for at in [1_000, 3_000, 2_000] {
            let mut tick = run("tick", Some(&format!("schedule:{at}")));
            tick.scheduled_for = Some(at);
            store.enqueue(tick).await.unwrap();
        }
        assert_eq!(store.last_tick("tick").await.unwrap(), Some(3_000), "{}", b.name);

        let q = store.enqueue(run("a", Some("old"))).await.unwrap();
        // (The ticks' automation may not run now: a limit of 0.)
        let claimed = store
            .claim("w", &limits(&[("a", 1), ("tick", 0)]), 1, LEASE)
            .await
            .unwrap();
        assert_eq!(claimed[0].id, q.run_id, "{}", b.name);
        store.complete("w", &q.run_id, claimed[0].epoch, done()).await.unwrap();
        store.enqueue(run("a", Some("still-queued"))).await.unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!(
            stats.runs.get(&("a".to_owned(), RunStatus::Succeeded)),
            Some(&1),
            "{}",
            b.name
        );
        assert_eq!(stats.queued(), 4, "{}", b.name);
        assert_eq!(
            store.prune(now_ms() + 1000).await.unwrap(),
            1,
            "{}: only finished runs are pruned",
            b.name
        );
        assert_eq!(store.list(&RunFilter::default()).await.unwrap().len(), 4, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_rate_budget() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(PgStore::open(&url).await.unwrap()));
    }
    // 20 requests per second between them; 60 reservations at once, 20 from each.
    let limit = runbook_core::http::RateLimit::new(20, Duration::from_secs(1));
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = stores[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            let wait = store.reserve("cloudflare test account", limit).await.unwrap();
            (start.elapsed() + wait, wait)
        }));
    }
    let (mut send_at, mut waits) = (Vec::new(), Vec::new());
    for t in tasks {
        let (at, wait) = t.await.unwrap();
        send_at.push(at);
        waits.push(wait);
    }
    send_at.sort();
    // Any 20 consecutive sends span at least (nearly) one period: never more than 20 in a
    // second, whichever instance sends them. (The slack covers the reservations' own spread.)
    for w in send_at.windows(21) {
        let span = w[20] - w[0];
        assert!(
            span >= Duration::from_millis(950),
            "21 sends within {span:?}: {send_at:?}"
        );
    }
    // And the budget is used, not starved: at 20/s the 60th request is told to wait about 3 s.
    // The bound is loose: the wait the store hands out (not the wall clock) still grows when a
    // loaded machine slows the reservations themselves, and starving would mean far longer.
    let longest = *waits.iter().max().unwrap();
    assert!(longest < Duration::from_secs(8), "a send was told to wait {longest:?}");
    // A different account has its own budget.
    let other = stores[0].reserve("privx other", limit).await.unwrap();
    assert_eq!(other, Duration::ZERO);
}

#[tokio::test]
async fn migrations_are_applied_once_and_a_newer_schema_is_refused() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let (a, b) = tokio::join!(PgStore::open(&url), PgStore::open(&url));
    a.unwrap();
    b.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let n: i64 = client
        .query_one("SELECT COUNT(*) FROM runbook_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, postgres::MIGRATIONS.len() as i64);
    client
        .execute("INSERT INTO runbook_migrations (version) VALUES (999)", &[])
        .await
        .unwrap();
    let err = PgStore::open(&url).await.unwrap_err();
    assert!(err.to_string().contains("newer than this build"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let Err(err) = open("postgres://runbook:hunter2@127.0.0.1:1/runbook").await else {
        panic!("nothing listens on port 1");
    };
    let text = err.to_string();
    assert!(text.contains("PostgreSQL"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(
        redact_url("postgres://runbook:hunter2@db.internal:5432/runbook?sslmode=disable"),
        "postgres://runbook:***@db.internal:5432/runbook?sslmode=disable"
    );
    assert_eq!(
        redact_url("postgres://runbook@db.internal/runbook?sslmode=require&password=hunter2"),
        "postgres://runbook@db.internal/runbook?sslmode=require&password=***"
    );
    let Err(err) = open("mysql://x").await else {
        panic!("mysql:// is not a store");
    };
    assert!(err.to_string().contains("write sqlite://PATH or postgres://"), "{err}");
}

use runbook_core::{Effect, JournalEntry, JournalError, Resolution, StepKind, StepStatus};

/// A step as the engine would record it.
fn step(key: &str, status: StepStatus) -> JournalEntry {
    let mut entry = JournalEntry::new(key, StepKind::Call, "privx.reset_mfa", Effect::Write);
    entry.idempotent = false;
    entry.args = json!({"user": "ann@example.com"});
    entry.args_digest = runbook_core::journal::digest(&entry.args);
    entry.status = status;
    entry.targets = 1;
    if status == StepStatus::Ok {
        entry.result = Some(json!({"id": "u1", "email": "ann@example.com"}));
        entry.result_digest = Some(runbook_core::journal::digest(&json!({"id": "u1"})));
        entry.finished_at = Some(entry.started_at + 5);
    }
    entry
}

/// Queues a run of automation `a` and claims it as `owner`.
async fn claimed(store: &Arc<dyn Store>, key: &str, owner: &str) -> ClaimedRun {
    let queued = store.enqueue(run("a", Some(key))).await.unwrap();
    let mut runs = store.claim(owner, &limits(&[("a", 1)]), 1, LEASE).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = runs.remove(0);
    assert_eq!(run.id, queued.run_id);
    run
}

fn stopped(status: RunStatus) -> Completion {
    Completion {
        status,
        result: None,
        error: Some("stopped".into()),
        error_kind: Some("needs_attention".into()),
        logs: json!([]),
        calls: json!([]),
        retry_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_pins_its_script_and_its_journal_lists_the_steps_in_order() {
    for b in backends().await {
        let store = &b.handles[0];
        let run = claimed(store, "x", "w").await;
        assert_eq!((run.script.as_str(), run.epoch), ("// a\n1", 1), "{}", b.name);
        let journal = b.handles[1].journal(&run.id, run.attempt, run.epoch);
        assert_eq!((journal.attempt(), journal.epoch()), (1, 1), "{}", b.name);
        for key in ["10", "2", "9/1/1", "9/0/1"] {
            journal.write(&step(key, StepStatus::Intent)).await.unwrap();
        }
        // A key written again is replaced: the intent's outcome.
        let done_step = step("2", StepStatus::Ok);
        journal.write(&done_step).await.unwrap();
        let mut loaded = b.handles[2].journal(&run.id, 2, 2).load().await.unwrap();
        runbook_core::journal::sort_by_key(&mut loaded);
        assert_eq!(loaded.len(), 4, "{}", b.name);
        assert_eq!(loaded[0], done_step, "{}: an entry comes back as written", b.name);

        let record = store.get(&run.id).await.unwrap().unwrap();
        let keys: Vec<&str> = record.steps.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["2", "9/0/1", "9/1/1", "10"], "{}", b.name);
        assert_eq!(
            record.script_digest,
            runbook_core::journal::hex_digest(b"// a\n1"),
            "{}",
            b.name
        );
        // The history shows steps of a run that is still running (or crashed mid-way).
        assert_eq!(record.status, RunStatus::Running, "{}", b.name);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["steps"][0]["action"], "privx.reset_mfa", "{}", b.name);
        assert!(store.list(&RunFilter::default()).await.unwrap()[0].steps.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempt_is_fenced_even_when_its_own_process_claims_the_run_again() {
    for b in backends().await {
        let store = &b.handles[0];
        let first = claimed(store, "x", "w").await;
        let old = store.journal(&first.id, first.attempt, first.epoch);
        old.write(&step("1", StepStatus::Ok)).await.unwrap();
        // The run goes back to the queue and the same process claims it again.
        assert!(store.release("w", &first.id, first.epoch).await.unwrap());
        let second = b.handles[1]
            .claim("w", &limits(&[("a", 1)]), 1, LEASE)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(second.id, first.id, "{}", b.name);
        assert_eq!(second.epoch, first.epoch + 1, "{}", b.name);

        let refused = old.write(&step("2", StepStatus::Intent)).await.unwrap_err();
        assert!(matches!(refused, JournalError::Fenced(_)), "{}: {refused:?}", b.name);
        assert!(
            !store.complete("w", &first.id, first.epoch, done()).await.unwrap(),
            "{}: the old attempt finished the new one's run",
            b.name
        );
        assert!(!store.release("w", &first.id, first.epoch).await.unwrap(), "{}", b.name);
        // Heartbeats renew only the current attempt's lease.
        let renewed = store
            .heartbeat("w", &[(first.id.clone(), first.epoch)], LEASE)
            .await
            .unwrap();
        assert!(renewed.is_empty(), "{}: {renewed:?}", b.name);
        let renewed = store
            .heartbeat("w", &[(first.id.clone(), second.epoch)], LEASE)
            .await
            .unwrap();
        assert_eq!(renewed, vec![first.id.clone()], "{}", b.name);

        // The new attempt sees what the old one recorded, and nothing the old one tried after.
        let current = b.handles[2].journal(&second.id, second.attempt, second.epoch);
        let keys: Vec<String> = current.load().await.unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["1"], "{}", b.name);
        current.write(&step("2", StepStatus::Ok)).await.unwrap();
        assert!(
            store.complete("w", &second.id, second.epoch, done()).await.unwrap(),
            "{}",
            b.name
        );
        // A finished run takes no more steps, from any attempt.
        let late = current.write(&step("3", StepStatus::Ok)).await.unwrap_err();
        assert!(matches!(late, JournalError::Fenced(_)), "{}: {late:?}", b.name);
        let gone = store
            .journal("no-such-run", 1, 1)
            .write(&step("1", StepStatus::Ok))
            .await;
        assert!(matches!(gone, Err(JournalError::Fenced(_))), "{}: {gone:?}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_set_and_its_step_are_written_together_or_not_at_all() {
    for b in backends().await {
        let store = &b.handles[0];
        let first = claimed(store, "x", "w").await;
        let old = store.journal(&first.id, first.attempt, first.epoch);
        let mut set = JournalEntry::new("1", StepKind::StateSet, "cursor", Effect::Read);
        set.status = StepStatus::Ok;
        old.write_with_state(&set, "cursor", &json!({"at": 5})).await.unwrap();
        assert_eq!(
            store.state_get("a", "cursor").await.unwrap(),
            Some(json!({"at": 5})),
            "{}",
            b.name
        );
        assert!(store.release("w", &first.id, first.epoch).await.unwrap());
        store.claim("w2", &limits(&[("a", 1)]), 1, LEASE).await.unwrap();
        let mut later = JournalEntry::new("2", StepKind::StateSet, "cursor", Effect::Read);
        later.status = StepStatus::Ok;
        let refused = old
            .write_with_state(&later, "cursor", &json!({"at": 9}))
            .await
            .unwrap_err();
        assert!(matches!(refused, JournalError::Fenced(_)), "{}: {refused:?}", b.name);
        assert_eq!(
            store.state_get("a", "cursor").await.unwrap(),
            Some(json!({"at": 5})),
            "{}: a fenced state::set changed the state",
            b.name
        );
        let steps = store.get(&first.id).await.unwrap().unwrap().steps;
        assert_eq!(steps.len(), 1, "{}: a fenced state::set was journaled", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_a_newer_runbook_or_a_damaged_one_is_refused_by_name() {
    for b in backends().await {
        let store = &b.handles[0];
        let run = claimed(store, "x", "w").await;
        let journal = store.journal(&run.id, run.attempt, run.epoch);
        let mut newer = step("1", StepStatus::Ok);
        newer.version = runbook_core::journal::JOURNAL_VERSION + 1;
        journal.write(&newer).await.unwrap();
        let err = journal.load().await.unwrap_err();
        assert!(matches!(err, JournalError::NewerVersion { .. }), "{}: {err:?}", b.name);
        // The history still shows what it can.
        assert_eq!(store.get(&run.id).await.unwrap().unwrap().steps.len(), 1);

        journal.write(&step("1", StepStatus::Ok)).await.unwrap();
        b.exec("UPDATE journal SET kind = 'teleport' WHERE key = '1'").await;
        let err = journal.load().await.unwrap_err();
        let JournalError::Corrupt(text) = &err else {
            panic!("{}: {err:?}", b.name);
        };
        assert!(
            text.contains(&run.id) && text.contains("step 1") && text.contains("teleport"),
            "{}: {text}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_doubt_is_resolved_by_a_person_and_the_run_queued_again() {
    for b in backends().await {
        let store = &b.handles[0];
        let err = store.resolve("nope", "1", Resolution::Sent, "ann").await.unwrap_err();
        assert!(matches!(err, ResolveError::NoRun(_)), "{}: {err}", b.name);

        let run = claimed(store, "x", "w").await;
        let journal = store.journal(&run.id, run.attempt, run.epoch);
        journal.write(&step("1", StepStatus::Ok)).await.unwrap();
        journal.write(&step("2", StepStatus::Intent)).await.unwrap();
        let err = store.resolve(&run.id, "2", Resolution::Sent, "ann").await.unwrap_err();
        assert!(matches!(err, ResolveError::NotWaiting { .. }), "{}: {err}", b.name);
        assert!(err.to_string().contains("is running, not needs_attention"), "{err}");

        assert!(
            store
                .complete("w", &run.id, run.epoch, stopped(RunStatus::NeedsAttention))
                .await
                .unwrap()
        );
        let waiting = store.get(&run.id).await.unwrap().unwrap();
        assert_eq!(waiting.status, RunStatus::NeedsAttention, "{}", b.name);
        assert!(!waiting.status.is_final());
        // Waiting for a person, it is not claimed.
        assert!(
            store
                .claim("w", &limits(&[("a", 1)]), 1, LEASE)
                .await
                .unwrap()
                .is_empty()
        );

        let err = store.resolve(&run.id, "7", Resolution::Sent, "ann").await.unwrap_err();
        assert!(matches!(err, ResolveError::NoStep { .. }), "{}: {err}", b.name);
        let err = store.resolve(&run.id, "1", Resolution::Sent, "ann").await.unwrap_err();
        assert!(matches!(err, ResolveError::NotInDoubt { .. }), "{}: {err}", b.name);
        assert!(err.to_string().contains("it is ok"), "{err}");

        b.handles[1]
            .resolve(&run.id, "2", Resolution::NotSent, "ann")
            .await
            .unwrap();
        let record = store.get(&run.id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Queued, "{}", b.name);
        let resolved = &record.steps[1];
        assert_eq!(
            (resolved.resolution, resolved.resolved_by.as_deref()),
            (Some(Resolution::NotSent), Some("ann")),
            "{}",
            b.name
        );
        let err = store.resolve(&run.id, "2", Resolution::Sent, "bob").await.unwrap_err();
        assert!(matches!(err, ResolveError::NotWaiting { .. }), "{}: {err}", b.name);
        // The next attempt starts at once, replaying the journal with the answer in it.
        let next = b.handles[2].claim("w", &limits(&[("a", 1)]), 1, LEASE).await.unwrap();
        assert_eq!(next.len(), 1, "{}", b.name);
        assert_eq!((next[0].attempt, next[0].epoch), (2, 2), "{}", b.name);
        let replay = store.journal(&run.id, 2, 2).load().await.unwrap();
        assert!(
            replay
                .iter()
                .any(|e| e.key == "2" && e.resolution == Some(Resolution::NotSent)),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_runs_are_final_and_counted_and_needs_attention_outlives_pruning() {
    for b in backends().await {
        let store = &b.handles[0];
        let diverged = claimed(store, "d", "w").await;
        store
            .complete("w", &diverged.id, diverged.epoch, stopped(RunStatus::Diverged))
            .await
            .unwrap();
        let waiting = claimed(store, "n", "w").await;
        store
            .complete("w", &waiting.id, waiting.epoch, stopped(RunStatus::NeedsAttention))
            .await
            .unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (
                stats.runs.get(&("a".to_owned(), RunStatus::Diverged)),
                stats.runs.get(&("a".to_owned(), RunStatus::NeedsAttention))
            ),
            (Some(&1), Some(&1)),
            "{}",
            b.name
        );
        let listed = store
            .list(&RunFilter {
                status: Some("needs_attention".parse().unwrap()),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "{}", b.name);
        assert!(store.retry(&waiting.id, String::new(), "ci").await.is_err());
        assert_eq!(store.prune(now_ms() + 1000).await.unwrap(), 1, "{}", b.name);
        assert!(store.get(&waiting.id).await.unwrap().is_some(), "{}", b.name);
        assert!(store.get(&diverged.id).await.unwrap().is_none(), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_steps_of_finished_runs_and_drops_their_data() {
    for b in backends().await {
        let store = &b.handles[0];
        let finished = claimed(store, "f", "w").await;
        store
            .journal(&finished.id, finished.attempt, finished.epoch)
            .write(&step("1", StepStatus::Ok))
            .await
            .unwrap();
        store.complete("w", &finished.id, finished.epoch, done()).await.unwrap();
        let running = claimed(store, "r", "w").await;
        store
            .journal(&running.id, running.attempt, running.epoch)
            .write(&step("1", StepStatus::Ok))
            .await
            .unwrap();

        assert_eq!(
            store.compact_journals(now_ms() - 60_000).await.unwrap(),
            0,
            "{}: a run finished within the retention was compacted",
            b.name
        );
        assert_eq!(store.compact_journals(now_ms() + 1000).await.unwrap(), 1, "{}", b.name);
        let kept = &store.get(&finished.id).await.unwrap().unwrap().steps[0];
        let original = step("1", StepStatus::Ok);
        assert_eq!(
            (
                kept.key.as_str(),
                kept.kind,
                kept.action.as_str(),
                kept.status,
                kept.targets
            ),
            ("1", StepKind::Call, "privx.reset_mfa", StepStatus::Ok, 1),
            "{}",
            b.name
        );
        assert_eq!((&kept.result, &kept.args), (&None, &json!(null)), "{}", b.name);
        assert_eq!(kept.finished_at.is_some(), original.finished_at.is_some());
        // A run still going keeps everything.
        let live = &store.get(&running.id).await.unwrap().unwrap().steps[0];
        assert!(live.result.is_some() && live.args != json!(null), "{}", b.name);
        assert_eq!(store.compact_journals(now_ms() + 1000).await.unwrap(), 0, "{}", b.name);
    }
}

/// The first SQLite schema, as runbook files written before the journal have it.
const SQLITE_SCHEMA_1: &str = r#"
CREATE TABLE runs (
    id TEXT PRIMARY KEY, automation TEXT NOT NULL, trigger TEXT NOT NULL, idem_key TEXT, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, max_retries INTEGER NOT NULL, params TEXT NOT NULL, event TEXT,
    scheduled_for INTEGER, result TEXT, error TEXT, error_kind TEXT, logs TEXT NOT NULL DEFAULT '[]',
    calls TEXT NOT NULL DEFAULT '[]', retry_of TEXT, created_at INTEGER NOT NULL, not_before INTEGER NOT NULL,
    started_at INTEGER, finished_at INTEGER, lease_owner TEXT, lease_until INTEGER, UNIQUE (automation, idem_key)
);
CREATE INDEX runs_queue ON runs (status, not_before);
CREATE INDEX runs_by_automation ON runs (automation, id);
CREATE TABLE state (automation TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at INTEGER NOT NULL,
    PRIMARY KEY (automation, key));
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"#;

const OLD_RUNS: &str = "INSERT INTO {runs} (id, automation, trigger, status, attempts, max_retries, params, created_at, not_before, result, finished_at)
     VALUES ('old-done', 'a', 'webhook', 'succeeded', 1, 0, '{}', 1, 1, '42', 2),
            ('old-queued', 'a', 'webhook', 'queued', 0, 0, '{\"n\": 1}', 3, 3, NULL, NULL);";

/// A webhook run stored before dedup keys had their own table.
const OLD_DELIVERY: &str = "INSERT INTO {runs} (id, automation, trigger, idem_key, status, attempts, max_retries, params, created_at, not_before, finished_at)
     VALUES ('old-delivered', 'hook', 'webhook', 'd-old', 'succeeded', 1, 0, '{}', 1, 1, 2);";

/// What an upgraded store must still hold, and do with a run queued before the upgrade.
async fn assert_old_runs_kept(name: &str, store: &dyn Store) {
    assert_eq!(
        store.session_get("none").await.unwrap(),
        None,
        "{name}: the console's sessions table is there"
    );
    let old = store.get("old-done").await.unwrap().unwrap();
    assert_eq!(
        (old.status, old.result, old.steps.len()),
        (RunStatus::Succeeded, Some(json!(42)), 0),
        "{name}"
    );
    let claimed = store.claim("w", &limits(&[("a", 1)]), 1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "{name}");
    // No pinned script: the worker runs the automation's current one.
    assert_eq!(
        (claimed[0].id.as_str(), claimed[0].epoch, claimed[0].script.as_str()),
        ("old-queued", 1, ""),
        "{name}"
    );
    store
        .journal("old-queued", 1, 1)
        .write(&step("1", StepStatus::Ok))
        .await
        .unwrap();
    assert!(store.complete("w", "old-queued", 1, done()).await.unwrap());
    // The old delivery's key was copied into the dedup table: it outlives the run.
    assert_eq!(store.prune(100).await.unwrap(), 2, "{name}");
    let replayed = store.enqueue(delivery("d-old", &["d-old", "mac:new"])).await.unwrap();
    assert_eq!(
        (replayed.created, replayed.run_id.as_str()),
        (false, "old-delivered"),
        "{name}"
    );
}

#[tokio::test]
async fn an_sqlite_file_of_the_first_schema_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SQLITE_SCHEMA_1).unwrap();
        conn.execute_batch(&OLD_RUNS.replace("{runs}", "runs")).unwrap();
        conn.execute_batch(&OLD_DELIVERY.replace("{runs}", "runs")).unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_old_runs_kept("sqlite", &store).await;
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, "5");
    // Opening it again changes nothing; a file from a newer runbook is refused.
    drop(SqliteStore::open(&path).await.unwrap());
    conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'", [])
        .unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("written by a newer runbook"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the store is readable by others: {mode:o}");
    }
}

#[tokio::test]
async fn a_postgres_database_of_the_first_schema_is_upgraded_in_place() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE runbook_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO runbook_migrations (version) VALUES (1);",
        )
        .await
        .unwrap();
    client.batch_execute(postgres::MIGRATIONS[0].1).await.unwrap();
    client
        .batch_execute(&OLD_RUNS.replace("{runs}", "runbook_runs"))
        .await
        .unwrap();
    client
        .batch_execute(&OLD_DELIVERY.replace("{runs}", "runbook_runs"))
        .await
        .unwrap();
    let store = PgStore::open(&url).await.unwrap();
    assert_old_runs_kept("postgres", &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_takes_only_configured_automations_and_the_backlog_counts_what_waits() {
    for b in backends().await {
        let store = &b.handles[0];
        store.ping().await.unwrap();
        let unknown = store.enqueue(run("b", Some("1"))).await.unwrap();
        store.enqueue(run("a", Some("1"))).await.unwrap();
        store.enqueue(run("a", Some("2"))).await.unwrap();
        // An instance that knows only "a" leaves "b" queued (a rolling deploy adding "b").
        let claimed = store.claim("w", &limits(&[("a", 5)]), 10, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 2, "{}", b.name);
        assert!(claimed.iter().all(|c| c.automation == "a"), "{}", b.name);
        let record = store.get(&unknown.run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Queued, "{}", b.name);
        assert_eq!(
            store.backlog("a").await.unwrap(),
            Backlog { queued: 0, running: 2 },
            "{}",
            b.name
        );
        assert_eq!(
            b.handles[1].backlog("b").await.unwrap(),
            Backlog { queued: 1, running: 0 },
            "{}",
            b.name
        );
        assert!(store.stats().await.unwrap().oldest_queued_ms.is_some(), "{}", b.name);
        // One that knows "b" takes it.
        let claimed = b.handles[2].claim("w2", &limits(&[("b", 1)]), 10, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", b.name);
        assert_eq!(claimed[0].id, unknown.run_id, "{}", b.name);
        assert_eq!(store.stats().await.unwrap().oldest_queued_ms, None, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_automation_keeps_its_runs_queued_until_resumed_on_every_instance() {
    for b in backends().await {
        let paused = b.handles[0].enqueue(run("a", Some("p1"))).await.unwrap();
        b.handles[0].enqueue(run("b", Some("other"))).await.unwrap();
        b.handles[0].set_paused("a", true, "ops").await.unwrap();
        // Deliveries and ticks of a paused automation are still stored.
        let later = b.handles[1].enqueue(run("a", Some("p2"))).await.unwrap();
        assert!(later.created, "{}", b.name);
        let claimed = b.handles[1]
            .claim("w", &limits(&[("a", 5), ("b", 5)]), 10, LEASE)
            .await
            .unwrap();
        assert_eq!(
            claimed.iter().map(|c| c.automation.as_str()).collect::<Vec<_>>(),
            vec!["b"],
            "{}: a paused automation's run was claimed",
            b.name
        );
        let switches = b.handles[2].automations().await.unwrap();
        assert_eq!(switches.len(), 1, "{}", b.name);
        assert_eq!(
            (
                switches[0].name.as_str(),
                switches[0].paused,
                switches[0].changed_by.as_str()
            ),
            ("a", true, "ops"),
            "{}",
            b.name
        );
        b.handles[2].set_paused("a", false, "ops-2").await.unwrap();
        let claimed = b.handles[1].claim("w", &limits(&[("a", 5)]), 10, LEASE).await.unwrap();
        let mut ids: Vec<String> = claimed.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        let mut expected = vec![paused.run_id.clone(), later.run_id.clone()];
        expected.sort();
        assert_eq!(ids, expected, "{}: resumed, both runs start", b.name);
        let switches = b.handles[0].automations().await.unwrap();
        assert_eq!((switches[0].paused, switches[0].changed_by.as_str()), (false, "ops-2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_queued_and_waiting_runs_at_once_and_running_ones_through_their_worker() {
    for b in backends().await {
        let store = &b.handles[0];
        let name = b.name;
        // A queued run: cancelled at once, never claimed.
        let queued = store.enqueue(run("q", Some("1"))).await.unwrap();
        assert_eq!(store.cancel(&queued.run_id, "ci").await.unwrap(), Cancelled::Now);
        let record = store.get(&queued.run_id).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.cancelled_by.as_deref()),
            (RunStatus::Cancelled, Some("ci")),
            "{name}"
        );
        assert!(record.finished_at.is_some() && record.status.is_final(), "{name}");
        assert!(
            b.handles[1]
                .claim("w", &limits(&[("q", 5)]), 5, LEASE)
                .await
                .unwrap()
                .is_empty()
        );
        let again = store.cancel(&queued.run_id, "ci").await.unwrap_err();
        assert!(matches!(again, CancelError::Finished { .. }), "{name}: {again}");
        assert!(matches!(
            store.cancel("no-such-run", "ci").await.unwrap_err(),
            CancelError::NoRun(_)
        ));

        // A running run: its worker learns at its heartbeat and records the end.
        let held = claimed(store, "r1", "w").await;
        assert_eq!(b.handles[1].cancel(&held.id, "ci").await.unwrap(), Cancelled::Stopping);
        assert_eq!(store.get(&held.id).await.unwrap().unwrap().status, RunStatus::Running);
        assert_eq!(
            store.cancel_requested("w").await.unwrap(),
            vec![held.id.clone()],
            "{name}"
        );
        assert!(store.cancel_requested("someone-else").await.unwrap().is_empty());
        assert_eq!(
            store
                .heartbeat("w", &[(held.id.clone(), held.epoch)], LEASE)
                .await
                .unwrap(),
            vec![held.id.clone()],
            "{name}: a run being cancelled keeps its lease while it stops"
        );
        assert!(
            store
                .complete("w", &held.id, held.epoch, stopped(RunStatus::Cancelled))
                .await
                .unwrap()
        );
        let record = store.get(&held.id).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.cancelled_by.as_deref()),
            (RunStatus::Cancelled, Some("ci"))
        );

        // One that fails after the request is not retried; one whose worker dies is not re-queued;
        // one released at shutdown is not either.
        let failing = claimed(store, "r2", "w").await;
        store.cancel(&failing.id, "ci").await.unwrap();
        let mut retry = stopped(RunStatus::Failed);
        retry.retry_at = Some(0);
        assert!(store.complete("w", &failing.id, failing.epoch, retry).await.unwrap());
        assert_eq!(
            store.get(&failing.id).await.unwrap().unwrap().status,
            RunStatus::Cancelled,
            "{name}"
        );
        store.enqueue(run("a", Some("r3"))).await.unwrap();
        let lapsing = store
            .claim("w", &limits(&[("a", 1)]), 1, Duration::from_millis(1))
            .await
            .unwrap()
            .remove(0);
        store.cancel(&lapsing.id, "ci").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.recover(false).await.unwrap();
        assert_eq!(
            store.get(&lapsing.id).await.unwrap().unwrap().status,
            RunStatus::Cancelled,
            "{name}"
        );
        let released = claimed(store, "r4", "w").await;
        store.cancel(&released.id, "ci").await.unwrap();
        assert!(store.release("w", &released.id, released.epoch).await.unwrap());
        assert_eq!(
            store.get(&released.id).await.unwrap().unwrap().status,
            RunStatus::Cancelled,
            "{name}"
        );

        // A run waiting for a person may be cancelled too.
        let waiting = claimed(store, "r5", "w").await;
        assert!(
            store
                .complete("w", &waiting.id, waiting.epoch, stopped(RunStatus::NeedsAttention))
                .await
                .unwrap()
        );
        assert_eq!(store.cancel(&waiting.id, "ops").await.unwrap(), Cancelled::Now);
        assert_eq!(
            store.get(&waiting.id).await.unwrap().unwrap().status,
            RunStatus::Cancelled,
            "{name}"
        );
        // A cancelled run can be retried like any finished one.
        let retried = store.retry(&queued.run_id, "1".into(), "ci").await.unwrap();
        assert!(retried.created, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_records_who_started_it_and_summaries_match_the_records() {
    for b in backends().await {
        let store = &b.handles[0];
        let held = claimed(store, "s3", "w").await;
        assert!(store.complete("w", &held.id, held.epoch, done()).await.unwrap());
        let first = store.enqueue(run("x", Some("s1"))).await.unwrap();
        let mut tick = run("x", Some("s2"));
        tick.started_by = "schedule".into();
        store.enqueue(tick).await.unwrap();
        let retry = store.retry(&held.id, "2".into(), "ci-token").await.unwrap();
        let records = store
            .list(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        let summaries = b.handles[1]
            .list_summaries(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            summaries,
            records.iter().map(RunRecord::summary).collect::<Vec<_>>(),
            "{}",
            b.name
        );
        let by = |id: &str| records.iter().find(|r| r.id == id).unwrap().started_by.clone();
        assert_eq!(by(&first.run_id), "webhook", "{}", b.name);
        assert_eq!(by(&retry.run_id), "ci-token", "{}", b.name);
        assert_eq!(records.iter().filter(|r| r.started_by == "schedule").count(), 1);
        let only = store
            .list_summaries(&RunFilter {
                status: Some(RunStatus::Succeeded),
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(only.len(), 1, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_budget_counts_changes_in_the_window_by_automation() {
    for b in backends().await {
        let store = &b.handles[0];
        let a = claimed(store, "a1", "w").await;
        let journal = store.journal(&a.id, a.attempt, a.epoch);
        // Two users changed, one in doubt, one refused by the service, one read, one old change.
        let mut two = step("1", StepStatus::Ok);
        two.targets = 2;
        journal.write(&two).await.unwrap();
        journal.write(&step("2", StepStatus::Intent)).await.unwrap();
        let mut refused = step("3", StepStatus::Err);
        refused.error = Some(runbook_core::journal::StepError {
            kind: "api".into(),
            message: "no".into(),
            status: Some(400),
        });
        journal.write(&refused).await.unwrap();
        let mut read = JournalEntry::new("4", StepKind::Call, "privx.search_users", Effect::Read);
        read.status = StepStatus::Ok;
        read.finished_at = Some(read.started_at);
        journal.write(&read).await.unwrap();
        let mut old = step("5", StepStatus::Ok);
        old.started_at -= 25 * 3600 * 1000;
        journal.write(&old).await.unwrap();
        store.complete("w", &a.id, a.epoch, done()).await.unwrap();

        store.enqueue(run("b", Some("b1"))).await.unwrap();
        let mut runs = store.claim("w", &limits(&[("b", 1)]), 1, LEASE).await.unwrap();
        let other = runs.remove(0);
        store
            .journal(&other.id, other.attempt, other.epoch)
            .write(&step("1", StepStatus::Ok))
            .await
            .unwrap();

        let since = now_ms() - 24 * 3600 * 1000;
        assert_eq!(store.changes_since(Some("a"), since).await.unwrap(), 3, "{}", b.name);
        assert_eq!(store.changes_since(Some("b"), since).await.unwrap(), 1, "{}", b.name);
        assert_eq!(store.changes_since(None, since).await.unwrap(), 4, "{}", b.name);
        assert_eq!(store.changes_since(Some("none"), since).await.unwrap(), 0, "{}", b.name);
        assert_eq!(
            store.changes_since(None, now_ms() + 1000).await.unwrap(),
            0,
            "{}",
            b.name
        );
    }
}

/// A plan of one change per user in `users`.
fn plan_of(users: &[&str]) -> runbook_core::SavedPlan {
    let effects: Vec<runbook_core::PlannedChange> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            serde_json::from_value(json!({
                "step": (i + 2).to_string(),
                "action": "cloudflare.delete_user",
                "effect": "destructive",
                "targets": 1,
                "labels": [{"id": u, "label": format!("{u}@example.com")}],
                "args": {"user_id": u},
                "args_sha256": runbook_core::journal::digest(&json!({"user_id": u})),
            }))
            .unwrap()
        })
        .collect();
    runbook_core::SavedPlan::new(
        "delete.rhai",
        "// a\n1",
        serde_json::Map::new(),
        10,
        effects,
        Vec::new(),
    )
}

fn pending(users: &[&str], expires_in: Duration) -> PendingPlan {
    PendingPlan {
        plan: plan_of(users),
        expires_in,
        diff: None,
        logs: json!([]),
        calls: json!([]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_waits_for_distinct_approvers_without_a_slot_and_is_queued_to_apply_once() {
    for b in backends().await {
        let (store, other) = (&b.handles[0], &b.handles[1]);
        let run = claimed(store, "x", "w").await;
        let plan = pending(&["u1"], Duration::from_secs(3600));
        let digest = plan.plan.effects_sha256.clone();
        // Only the attempt that holds the run records its plan.
        assert!(
            !store
                .await_approval("w", &run.id, run.epoch + 1, plan.clone())
                .await
                .unwrap(),
            "{}",
            b.name
        );
        assert!(
            store.await_approval("w", &run.id, run.epoch, plan).await.unwrap(),
            "{}",
            b.name
        );
        let waiting = other.get(&run.id).await.unwrap().unwrap();
        assert_eq!(waiting.status, RunStatus::AwaitingApproval, "{}", b.name);
        assert!(!waiting.status.is_final());
        let approval = waiting.approval.unwrap();
        assert_eq!((approval.round, approval.approved_at), (1, None), "{}", b.name);
        assert_eq!(approval.plan.effects_sha256, digest, "{}", b.name);
        assert!(approval.expires_at.unwrap() > now_ms(), "{}", b.name);

        // It holds no slot of the automation's concurrency of 1.
        store.enqueue(run_of("a", "y")).await.unwrap();
        let next = other.claim("w2", &limits(&[("a", 1)]), 5, LEASE).await.unwrap();
        assert_eq!(next.len(), 1, "{}: the waiting run holds no slot", b.name);
        other.complete("w2", &next[0].id, next[0].epoch, done()).await.unwrap();

        // Two distinct approvers, each once, on the plan they saw.
        let refused = store
            .decide(&run.id, "bob", Decision::Approve, "", Some("0000"), 2)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, DecideError::PlanChanged { .. }),
            "{}: {refused}",
            b.name
        );
        let first = store
            .decide(&run.id, "bob", Decision::Approve, "ok", Some(&digest), 2)
            .await
            .unwrap();
        assert_eq!(
            (first.status, first.approvals),
            (RunStatus::AwaitingApproval, 1),
            "{}",
            b.name
        );
        let again = other
            .decide(&run.id, "bob", Decision::Approve, "", None, 2)
            .await
            .unwrap_err();
        assert!(
            matches!(again, DecideError::AlreadyDecided { .. }),
            "{}: {again}",
            b.name
        );
        let second = other
            .decide(&run.id, "carol", Decision::Approve, "", None, 2)
            .await
            .unwrap();
        assert_eq!((second.status, second.approvals), (RunStatus::Queued, 2), "{}", b.name);
        assert_eq!(second.effects_sha256, digest, "{}", b.name);
        let late = store
            .decide(&run.id, "dave", Decision::Approve, "", None, 2)
            .await
            .unwrap_err();
        assert!(matches!(late, DecideError::NotWaiting { .. }), "{}: {late}", b.name);

        // The apply attempt knows it applies an approved plan.
        let applying = store.claim("w", &limits(&[("a", 1)]), 5, LEASE).await.unwrap();
        assert_eq!(applying.len(), 1, "{}", b.name);
        assert!(applying[0].approved, "{}", b.name);
        // The plan's attempt used none of the retries: the apply has them all.
        assert_eq!((applying[0].attempt, applying[0].max_retries), (2, 2), "{}", b.name);
        let record = store.get(&run.id).await.unwrap().unwrap();
        let approval = record.approval.unwrap();
        assert!(approval.approved_at.is_some(), "{}", b.name);
        let names: Vec<&str> = approval.approvals.iter().map(|a| a.approver.as_str()).collect();
        assert_eq!(names, ["bob", "carol"], "{}", b.name);
        assert_eq!(approval.approvals[0].comment, "ok", "{}", b.name);
        assert!(
            approval
                .approvals
                .iter()
                .all(|a| a.effects_sha256 == digest && a.round == 1)
        );

        // The services changed: a fresh plan, a new round, approvals needed again.
        let mut fresh = pending(&["u1", "u2"], Duration::from_secs(3600));
        fresh.diff = Some(json!({"added": 1, "removed": 0, "changed": 0, "text": "+ u2"}));
        assert!(
            store
                .await_approval("w", &run.id, applying[0].epoch, fresh)
                .await
                .unwrap()
        );
        let record = store.get(&run.id).await.unwrap().unwrap();
        let approval = record.approval.unwrap();
        assert_eq!(
            (record.status, approval.round, approval.approved_at),
            (RunStatus::AwaitingApproval, 2, None)
        );
        assert_eq!(approval.diff.unwrap()["added"], 1, "{}", b.name);
        assert_eq!(approval.plan.effects.len(), 2, "{}", b.name);
        let renewed = store
            .decide(&run.id, "bob", Decision::Approve, "", None, 1)
            .await
            .unwrap();
        assert_eq!(
            (renewed.status, renewed.approvals),
            (RunStatus::Queued, 1),
            "{}",
            b.name
        );
        assert!(store.claim("w", &limits(&[("a", 1)]), 5, LEASE).await.unwrap()[0].approved);
    }
}

fn run_of(automation: &str, key: &str) -> NewRun {
    run(automation, Some(key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_expired_or_cancelled_plan_ends_the_run() {
    for b in backends().await {
        let store = &b.handles[0];
        let rejected = claimed(store, "r", "w").await;
        store
            .await_approval(
                "w",
                &rejected.id,
                rejected.epoch,
                pending(&["u1"], Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        let decided = store
            .decide(&rejected.id, "bob", Decision::Reject, "not this one", None, 1)
            .await
            .unwrap();
        assert_eq!(decided.status, RunStatus::Rejected, "{}", b.name);
        let record = store.get(&rejected.id).await.unwrap().unwrap();
        assert!(record.status.is_final() && record.finished_at.is_some(), "{}", b.name);
        assert!(record.error.unwrap().contains("rejected by bob"), "{}", b.name);
        assert_eq!(record.approval.unwrap().approvals[0].decision, Decision::Reject);

        // A decision after the expiry expires the run and is refused, swept or not.
        let late = claimed(store, "e1", "w").await;
        store
            .await_approval("w", &late.id, late.epoch, pending(&["u1"], Duration::ZERO))
            .await
            .unwrap();
        let err = store
            .decide(&late.id, "bob", Decision::Approve, "", None, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, DecideError::Expired(_)), "{}: {err}", b.name);
        assert_eq!(store.get(&late.id).await.unwrap().unwrap().status, RunStatus::Expired);

        let swept = claimed(store, "e2", "w").await;
        store
            .await_approval("w", &swept.id, swept.epoch, pending(&["u1"], Duration::ZERO))
            .await
            .unwrap();
        let kept = claimed(store, "e3", "w").await;
        store
            .await_approval("w", &kept.id, kept.epoch, pending(&["u1"], Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(store.expire_approvals().await.unwrap(), 1, "{}", b.name);
        let record = store.get(&swept.id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Expired, "{}", b.name);
        assert!(record.error.unwrap().contains("nothing was sent"), "{}", b.name);
        assert_eq!(
            store.get(&kept.id).await.unwrap().unwrap().status,
            RunStatus::AwaitingApproval
        );

        // A waiting run is cancelled at once.
        assert_eq!(
            store.cancel(&kept.id, "ops").await.unwrap(),
            Cancelled::Now,
            "{}",
            b.name
        );
        assert_eq!(store.get(&kept.id).await.unwrap().unwrap().status, RunStatus::Cancelled);

        // Finished approval runs are pruned with their decisions.
        assert_eq!(store.prune(now_ms() + 1000).await.unwrap(), 4, "{}", b.name);
        assert!(store.get(&rejected.id).await.unwrap().is_none(), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_are_shared_by_instances_and_end_by_sign_out_or_age() {
    for b in backends().await {
        let (one, other) = (&b.handles[0], &b.handles[1]);
        let now = now_ms();
        let session = |id: &str, created_at: i64, last_seen: i64| ConsoleSession {
            id_sha256: id.to_owned(),
            token_name: "alice".to_owned(),
            token_sha256: "ab".repeat(32),
            csrf: format!("csrf-{id}"),
            created_at,
            last_seen,
        };
        one.session_create(&session("fresh", now, now)).await.unwrap();
        one.session_create(&session("idle", now - 10_000, now - 10_000))
            .await
            .unwrap();
        one.session_create(&session("old", now - 100_000, now)).await.unwrap();
        assert_eq!(
            other.session_get("fresh").await.unwrap(),
            Some(session("fresh", now, now)),
            "{}: another instance knows the session",
            b.name
        );
        assert_eq!(other.session_get("unknown").await.unwrap(), None);
        other.session_touch("idle", now).await.unwrap();
        other.session_touch("idle", now - 50_000).await.unwrap();
        assert_eq!(
            one.session_get("idle").await.unwrap().unwrap().last_seen,
            now,
            "{}: never goes back",
            b.name
        );
        one.session_create(&session("stale", now - 10_000, now - 10_000))
            .await
            .unwrap();
        assert_eq!(
            one.session_prune(now - 5_000, now - 50_000).await.unwrap(),
            2,
            "{}",
            b.name
        );
        assert!(one.session_get("stale").await.unwrap().is_none());
        assert!(one.session_get("old").await.unwrap().is_none());
        other.session_delete("fresh").await.unwrap();
        assert!(
            one.session_get("fresh").await.unwrap().is_none(),
            "{}: sign-out ends it everywhere",
            b.name
        );
        assert!(one.session_get("idle").await.unwrap().is_some());
        assert!(
            one.session_create(&session("idle", now, now)).await.is_err(),
            "{}: a session id is never reused",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_by_time_and_page_by_page() {
    for b in backends().await {
        let store = &b.handles[0];
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                store
                    .enqueue(run("paged", Some(&format!("p{i}"))))
                    .await
                    .unwrap()
                    .run_id,
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let all = store
            .list_summaries(&RunFilter {
                automation: Some("paged".into()),
                limit: 2,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|r| &r.id).collect::<Vec<_>>(),
            [&ids[4], &ids[3]],
            "{}",
            b.name
        );
        let next = store
            .list_summaries(&RunFilter {
                automation: Some("paged".into()),
                limit: 2,
                before: Some(all[1].id.clone()),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            next.iter().map(|r| &r.id).collect::<Vec<_>>(),
            [&ids[2], &ids[1]],
            "{}",
            b.name
        );
        let middle = store.get(&ids[2]).await.unwrap().unwrap().created_at;
        let since = store
            .list_summaries(&RunFilter {
                automation: Some("paged".into()),
                since: Some(middle),
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(since.len(), 3, "{}: created at or after", b.name);
        let until = store
            .list_summaries(&RunFilter {
                automation: Some("paged".into()),
                until: Some(middle),
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(until.len(), 2, "{}: created before", b.name);
    }
}
