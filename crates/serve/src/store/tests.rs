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
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("runs.db")).await.unwrap());
    let mut all = vec![Backend {
        name: "sqlite",
        // One process owns an SQLite store: its "instances" are handles on the one store.
        handles: vec![sqlite.clone(), sqlite.clone(), sqlite],
        _dir: Some(dir),
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
        });
    }
    all
}

fn run(automation: &str, key: Option<&str>) -> NewRun {
    NewRun {
        automation: automation.to_owned(),
        trigger: "webhook".to_owned(),
        idem_key: key.map(str::to_owned),
        scheduled_for: None,
        params: serde_json::Map::new(),
        event: Some(json!({"k": key})),
        max_retries: 1,
        retry_of: None,
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
            !store.complete("intruder", &one.id, done()).await.unwrap(),
            "{}",
            b.name
        );
        assert!(
            b.handles[2].complete(owner, &one.id, done()).await.unwrap(),
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
        // The first owner's late answer is discarded.
        assert!(
            !store.complete("w1", &queued.run_id, done()).await.unwrap(),
            "{}",
            b.name
        );
        // A live lease is left alone, and heartbeats keep it alive.
        store
            .heartbeat("w2", std::slice::from_ref(&queued.run_id), LEASE)
            .await
            .unwrap();
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
        assert!(store.complete("w2", &queued.run_id, later).await.unwrap(), "{}", b.name);
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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_run_keeps_its_attempt_count_and_a_retry_repeats_a_finished_run() {
    for b in backends().await {
        let store = &b.handles[0];
        let queued = store.enqueue(run("a", Some("x"))).await.unwrap();
        let claimed = store.claim("w", &limits(&[]), 1, LEASE).await.unwrap();
        store.release("w", &claimed[0].id).await.unwrap();
        let record = store.get(&queued.run_id).await.unwrap().unwrap();
        assert_eq!((record.status, record.attempts), (RunStatus::Queued, 0), "{}", b.name);
        let err = store.retry(&queued.run_id).await.unwrap_err();
        assert!(err.to_string().contains("only a finished run"), "{}: {err}", b.name);
        let claimed = b.handles[1].claim("w", &limits(&[]), 1, LEASE).await.unwrap();
        assert!(b.handles[1].complete("w", &claimed[0].id, done()).await.unwrap());
        let retry = b.handles[2].retry(&queued.run_id).await.unwrap();
        let copy = store.get(&retry.run_id).await.unwrap().unwrap();
        assert_eq!(
            (copy.trigger.as_str(), copy.retry_of.as_deref(), copy.event),
            ("retry", Some(queued.run_id.as_str()), Some(json!({"k": "x"}))),
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
        store.complete("w", &q.run_id, done()).await.unwrap();
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
            start.elapsed() + wait
        }));
    }
    let mut send_at = Vec::new();
    for t in tasks {
        send_at.push(t.await.unwrap());
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
    // And the budget is used, not starved: 60 requests at 20/s take about 3 s, not much more.
    let last = *send_at.last().unwrap();
    assert!(last < Duration::from_secs(5), "the last send waits {last:?}");
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
    assert_eq!(n, 1);
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
    let Err(err) = open("mysql://x").await else {
        panic!("mysql:// is not a store");
    };
    assert!(err.to_string().contains("write sqlite://PATH or postgres://"), "{err}");
}
