//! Durable runs, proven by crashing the real `runbook serve`: the process kills itself with
//! SIGKILL at a fault point of a step (`RUNBOOK_FAULT=POINT@STEP`, compiled into test builds
//! only), is started again without the fault, and the run must end as an uninterrupted run
//! would have — no change sent twice, none lost, the recorded `now()` kept — or, for a change
//! nothing can tell about, wait for a person. Also: 40 (or `RUNBOOK_SOAK_RUNS`) runs across
//! SIGKILLs at random moments, a SIGSTOPped worker whose run another instance finished, and a
//! journal changed under a crashed run.
//!
//! Sizes: CI runs one kill point per boundary and step kind, and a soak of 40 runs and 3 kills.
//! The benchmark sizes: `RUNBOOK_FULL_SWEEP=1` crashes every point of every step (146 per
//! backend), `RUNBOOK_SOAK_RUNS=200 RUNBOOK_SOAK_KILLS=10` (and `RUNBOOK_SOAK_SEED` to repeat one)
//! for the soak: `cargo nextest run --test e2e durable::`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runbook_serve::store::{PgStore, RunRecord, RunStatus, SqliteStore, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cluster::postgres_url;
use crate::fixtures::tenant;
use crate::serve::{API_TOKEN, signed, wait_until, workspace_with};
use crate::support::{Sims, Workspace};

/// The script every kill point crashes: a read, an idempotent write, a non-idempotent write
/// with a probe, one without, `state::set`, `now()` and a 20-item `parallel`.
///
/// Steps: 1 list_users, 2 update_user, 3 create_user, 4 create_group, 5 state::set, 6 now(),
/// 7 parallel, 7/i/1 update_user of the listing's i-th user.
const SCRIPT: &str = r#"
let users = cloudflare::list_users();
let me = cloudflare::update_user(event.body.user_id, #{name: "Renamed One", email: event.body.email});
let made = cloudflare::create_user(#{email: "new.hire@example.com", name: "New Hire"});
cloudflare::create_group(#{name: "Crash testers", include: [#{email: #{email: "new.hire@example.com"}}]});
state::set("last_hire", made.email);
let t = now();
let renamed = parallel(users, |u| cloudflare::update_user(u.id, #{name: `${u.name} (checked)`, email: u.email}).name);
#{listed: users.len(), first: me.name, created: made.email, created_name: made.name, renamed: renamed, now: t}
"#;

/// The step without a probe: in doubt, it waits for a person.
const NO_PROBE_STEP: &str = "4";

fn config(store: &str, script: &str, retries: u32) -> String {
    format!(
        "[serve]\nlisten = \"127.0.0.1:0\"\nstore = \"{store}\"\nworkers = 4\ngrace = \"5s\"\nlease = \"2s\"\npoll_interval = \"100ms\"\n\
         api_token = \"{API_TOKEN}\"\n\n\
         [[automation]]\nname = \"durable\"\nscript = \"{script}\"\nretries = {retries}\nretry_delay = \"100ms\"\nconcurrency = 8\nmax_changes = 1000\n\
         trigger = {{ webhook = \"/hooks/durable\", secret = \"${{SIEM_SECRET}}\", id_header = \"X-Delivery-Id\" }}\n"
    )
}

/// Where the runs are kept.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite,
    /// The URL of a schema of this test's own.
    Postgres(String),
}

impl Backend {
    /// A fresh PostgreSQL schema, or `None` (a loud skip).
    async fn postgres() -> Option<Backend> {
        postgres_url().await.map(Backend::Postgres)
    }

    /// The same database server, a new schema: for one more fresh store.
    async fn fresh(&self) -> Backend {
        match self {
            Backend::Sqlite => Backend::Sqlite,
            Backend::Postgres(_) => Backend::Postgres(postgres_url().await.unwrap()),
        }
    }

    fn workspace(&self, sims: &Sims, script_name: &str, script: &str, retries: u32) -> Workspace {
        let store = match self {
            Backend::Sqlite => "sqlite://runbook.db",
            Backend::Postgres(_) => "${RUNBOOK_STORE}",
        };
        let mut ws = workspace_with(sims, &config(store, script_name, retries), &[(script_name, script)]);
        // These tests are about runs, not Cloudflare's budget (which PostgreSQL keeps for all
        // instances, and which would make the soak wait for it).
        ws.set_env("CLOUDFLARE_RATE_LIMIT", "100000/1s");
        if let Backend::Postgres(url) = self {
            ws.set_env("RUNBOOK_STORE", url);
        }
        ws
    }

    async fn store(&self, ws: &Workspace) -> Box<dyn Store> {
        match self {
            Backend::Sqlite => Box::new(SqliteStore::open_shared(&ws.path().join("runbook.db")).await.unwrap()),
            Backend::Postgres(url) => Box::new(PgStore::open(url).await.unwrap()),
        }
    }

    async fn run(&self, ws: &Workspace, id: &str) -> RunRecord {
        self.store(ws).await.get(id).await.unwrap().unwrap()
    }

    async fn runs(&self, ws: &Workspace) -> Vec<RunRecord> {
        self.store(ws)
            .await
            .list(&runbook_serve::store::RunFilter {
                limit: 100_000,
                ..runbook_serve::store::RunFilter::default()
            })
            .await
            .unwrap()
    }

    /// Changes the arguments digest recorded at `key`, as a different script would have.
    async fn tamper(&self, ws: &Workspace, run_id: &str, key: &str) {
        let sql = "UPDATE {table} SET args_digest = 'a-different-step' WHERE run_id = {run} AND key = {key}";
        let changed = match self {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(ws.path().join("runbook.db")).unwrap();
                conn.execute(
                    &sql.replace("{table}", "journal")
                        .replace("{run}", "?1")
                        .replace("{key}", "?2"),
                    rusqlite::params![run_id, key],
                )
                .unwrap() as u64
            }
            Backend::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                client
                    .execute(
                        &sql.replace("{table}", "runbook_journal")
                            .replace("{run}", "$1")
                            .replace("{key}", "$2"),
                        &[&run_id, &key],
                    )
                    .await
                    .unwrap()
            }
        };
        assert_eq!(changed, 1, "run {run_id} has no journal entry at step {key}");
    }
}

/// A `runbook serve` process this module controls: crashes, stops, continues.
struct Proc {
    child: tokio::process::Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `runbook serve` in `ws`, with `RUNBOOK_FAULT` when `fault` names a point.
    async fn start(ws: &Workspace, fault: Option<&str>) -> Proc {
        let mut cmd = ws.command(&["serve"]);
        if let Some(fault) = fault {
            cmd.env("RUNBOOK_FAULT", fault);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.split("listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(url)) => url,
            _ => {
                let status = child.wait().await.unwrap();
                panic!("runbook serve did not start ({status}):\n{}", log.lock().unwrap());
            }
        };
        Proc { child, url, log }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for the process to kill itself at its fault point.
    async fn killed_by_fault(mut self, fault: &str) {
        let status = match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "RUNBOOK_FAULT={fault}: the process never reached its fault point:\n{}",
                self.log()
            ),
        };
        assert_eq!(
            status.signal(),
            Some(9),
            "RUNBOOK_FAULT={fault}: the process ended otherwise than by SIGKILL ({status}):\n{}",
            self.log()
        );
        // The process is gone; its last lines may still be on their way through the pipe.
        let wanted = format!("fault point {fault}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(&wanted) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            self.log().contains(&wanted),
            "RUNBOOK_FAULT={fault}: killed elsewhere:\n{}",
            self.log()
        );
    }

    async fn kill(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait().await;
    }

    /// SIGTERM; it must exit 0.
    async fn stop(mut self) {
        self.signal("-TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("runbook serve ignored SIGTERM:\n{}", self.log()))
            .unwrap();
        assert_eq!(status.code(), Some(0), "{}", self.log());
    }
}

/// Delivers the webhook; returns the run's id.
async fn deliver(url: &str, delivery: &str, body: &Value) -> String {
    let client = reqwest::Client::new();
    let response = signed(&client, url, "/hooks/durable", delivery, body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let doc: Value = response.json().await.unwrap();
    doc["run_id"].as_str().unwrap().to_owned()
}

/// Waits until run `id` is over or waits for a person; says where it is stuck otherwise.
async fn settled(backend: &Backend, ws: &Workspace, id: &str, what: &str, server: &Proc) -> RunRecord {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let run = backend.run(ws, id).await;
        if run.status.is_final() || run.status == RunStatus::NeedsAttention {
            return run;
        }
        if Instant::now() > deadline {
            let steps: Vec<String> = run
                .steps
                .iter()
                .map(|s| format!("{} {} {}", s.key, s.status.as_str(), s.epoch))
                .collect();
            panic!(
                "timed out waiting for {what}: run {id} is {:?} after {} attempt(s), error {:?}, steps {steps:?}\nserver log:\n{}",
                run.status,
                run.attempts,
                run.error,
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn posts(sims: &Sims, path_end: &str) -> usize {
    sims.cf()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(path_end))
        .count()
}

fn user_creates(sims: &Sims) -> usize {
    posts(sims, "/access/users")
}

fn group_creates(sims: &Sims) -> usize {
    posts(sims, "/access/groups")
}

/// What the service holds, without the ids and times it made up.
fn service_state(sims: &Sims) -> Value {
    let mut users: Vec<Value> = sims
        .cf()
        .users()
        .iter()
        .map(|u| json!({"email": u["email"], "name": u["name"]}))
        .collect();
    users.sort_by_key(|u| u["email"].as_str().unwrap_or_default().to_owned());
    let mut groups: Vec<Value> = sims
        .cf()
        .groups()
        .iter()
        .map(|g| json!({"name": g["name"], "include": g["include"]}))
        .collect();
    groups.sort_by_key(|g| g["name"].as_str().unwrap_or_default().to_owned());
    json!({"users": users, "groups": groups})
}

fn without_now(result: &Value) -> Value {
    let mut result = result.clone();
    if let Some(map) = result.as_object_mut() {
        map.remove("now");
    }
    result
}

fn body() -> Value {
    json!({"user_id": crate::fixtures::cf_id(1), "email": "user1@example.com"})
}

/// What an uninterrupted run leaves: its result, the service's state, its step keys.
#[derive(Debug, Clone)]
struct Reference {
    result: Value,
    state: Value,
    keys: Vec<String>,
}

async fn reference(backend: &Backend) -> Reference {
    let sims = Sims::start(tenant(20, 0)).await;
    let backend = backend.fresh().await;
    let ws = backend.workspace(&sims, "durable.rhai", SCRIPT, 20);
    let server = Proc::start(&ws, None).await;
    let id = deliver(&server.url, "reference", &body()).await;
    let run = settled(&backend, &ws, &id, "the uninterrupted run", &server).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    // The steps, as the API shows them.
    let shown: Value = reqwest::Client::new()
        .get(format!("{}/api/runs/{id}", server.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<String> = shown["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("/api/runs/{id} shows no steps: {shown}"))
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = (1..=7).map(|k| k.to_string()).collect();
    expected.extend((0..20).map(|i| format!("7/{i}/1")));
    assert_eq!(keys, expected, "the steps of the script");
    assert!(
        shown["steps"].as_array().unwrap().iter().all(|s| s["status"] == "ok"),
        "{shown}"
    );
    assert_eq!((user_creates(&sims), group_creates(&sims)), (1, 1));
    let reference = Reference {
        result: run.result.clone().unwrap(),
        state: service_state(&sims),
        keys,
    };
    assert_eq!(reference.result["renamed"].as_array().map(Vec::len), Some(20));
    // `runbook runs show` lists the steps too.
    let shown = ws.run(&["runs", "show", &id]).await;
    assert_eq!(shown.code, Some(0), "{}", shown.all());
    for expected in ["steps (27):", "cloudflare.create_group", "state_set", "7/19/1"] {
        assert!(
            shown.stdout.contains(expected),
            "runs show lacks {expected:?}:\n{}",
            shown.stdout
        );
    }
    server.stop().await;
    sims.shutdown().await;
    reference
}

/// The points of one step: a write's four boundaries and its outcome's record, or a record's.
fn points_of(key: &str) -> Vec<&'static str> {
    let write = ["2", "3", "4"].contains(&key) || key.starts_with("7/");
    if write {
        vec![
            "before-intent",
            "after-intent",
            "after-send",
            "after-answer",
            "before-record",
            "after-record",
        ]
    } else {
        vec!["before-record", "after-record"]
    }
}

/// One kill point per boundary and step kind.
const CI_POINTS: &[(&str, &str)] = &[
    // The read answered, not recorded: read again.
    ("before-record", "1"),
    // The idempotent write reached the service, unanswered: sent again.
    ("after-send", "2"),
    // The create with a probe, committed and never sent: the probe finds nothing, sent once.
    ("after-intent", "3"),
    // ... answered, outcome lost: the probe finds the user.
    ("after-answer", "3"),
    // The create without a probe, not even intended yet: sent on resume.
    ("before-intent", "4"),
    // ... intended, never sent: the engine cannot know; a person says "not sent".
    ("after-intent", "4"),
    // ... sent: a person says "sent".
    ("after-send", "4"),
    ("after-record", "5"),
    // now() recorded: the same value comes back.
    ("after-record", "6"),
    ("before-record", "7"),
    // An item of the parallel in doubt.
    ("after-send", "7/13/1"),
    ("after-record", "7/4/1"),
];

/// Crashes the run at `point@key` and checks what the restarted server makes of it.
async fn crash_at(backend: Backend, reference: Reference, point: &'static str, key: String) {
    let fault = format!("{point}@{key}");
    let sims = Sims::start(tenant(20, 0)).await;
    let ws = backend.workspace(&sims, "durable.rhai", SCRIPT, 20);
    let server = Proc::start(&ws, Some(&fault)).await;
    let id = deliver(&server.url, "crash", &body()).await;
    server.killed_by_fault(&fault).await;

    // What the crashed attempt recorded of now().
    let crashed = backend.run(&ws, &id).await;
    let now_before = crashed
        .steps
        .iter()
        .find(|s| s.key == "6" && s.status == runbook_core::StepStatus::Ok)
        .and_then(|s| s.result.clone());
    let (users_at_kill, groups_at_kill) = (user_creates(&sims), group_creates(&sims));
    assert!(users_at_kill <= 1 && groups_at_kill <= 1, "{fault}: before the kill");

    let server = Proc::start(&ws, None).await;
    let mut run = settled(&backend, &ws, &id, &format!("the run after {fault}"), &server).await;
    let in_doubt =
        key == NO_PROBE_STEP && ["after-intent", "after-send", "after-answer", "before-record"].contains(&point);
    if in_doubt {
        assert_eq!(
            run.status,
            RunStatus::NeedsAttention,
            "{fault}: create_group has no probe; in doubt it must wait for a person: {:?}\n{}",
            run.error,
            server.log()
        );
        assert_eq!(
            group_creates(&sims),
            groups_at_kill,
            "{fault}: the group was sent again while in doubt"
        );
        assert!(
            run.error
                .as_deref()
                .unwrap_or_default()
                .contains(&format!("step {NO_PROBE_STEP}")),
            "{fault}: the run does not say which step waits: {:?}",
            run.error
        );
        // A person looks at the service and says what happened: with the CLI (SQLite) or
        // the API (PostgreSQL).
        let sent = group_creates(&sims) == 1;
        match backend {
            Backend::Sqlite => {
                let flag = if sent { "--sent" } else { "--not-sent" };
                let out = ws
                    .command(&["runs", "resolve", &id, NO_PROBE_STEP, flag])
                    .env("RUNBOOK_API_URL", &server.url)
                    .env("RUNBOOK_API_TOKEN", API_TOKEN)
                    .output()
                    .await
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{fault}: runs resolve: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Backend::Postgres(_) => {
                let answer = reqwest::Client::new()
                    .post(format!("{}/api/runs/{id}/resolve", server.url))
                    .bearer_auth(API_TOKEN)
                    .json(&json!({"step": NO_PROBE_STEP, "sent": sent}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 202, "{fault}: {:?}", answer.text().await);
            }
        }
        run = settled(&backend, &ws, &id, &format!("the resolved run after {fault}"), &server).await;
    }
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "{fault}: the run did not succeed: {:?} {:?}\n{}",
        run.error_kind,
        run.error,
        server.log()
    );
    assert_eq!(user_creates(&sims), 1, "{fault}: create_user reached the service");
    assert_eq!(group_creates(&sims), 1, "{fault}: create_group reached the service");
    let result = run.result.clone().unwrap();
    assert_eq!(
        without_now(&result),
        without_now(&reference.result),
        "{fault}: the result differs from an uninterrupted run's"
    );
    assert_eq!(
        service_state(&sims),
        reference.state,
        "{fault}: the service's state differs from an uninterrupted run's"
    );
    if let Some(now) = &now_before {
        assert_eq!(&result["now"], now, "{fault}: now() changed on resume");
    }
    assert!(run.attempts >= 2, "{fault}: {} attempt(s)", run.attempts);
    eprintln!(
        "{fault}: {}succeeded after {} attempts; sent at the kill: {users_at_kill} create_user, {groups_at_kill} create_group; now() {}",
        if in_doubt { "needs_attention, resolved, " } else { "" },
        run.attempts,
        if now_before.is_some() {
            "kept"
        } else {
            "taken after the kill"
        }
    );
    server.stop().await;
    sims.shutdown().await;
}

/// Crashes the script at every point CI runs (every point of every step with
/// `RUNBOOK_FULL_SWEEP=1`), a few at once.
async fn sweep(backend: Backend) {
    let reference = reference(&backend).await;
    let points: Vec<(&'static str, String)> = if full_sweep() {
        reference
            .keys
            .iter()
            .flat_map(|k| points_of(k).into_iter().map(move |p| (p, k.clone())))
            .collect()
    } else {
        CI_POINTS.iter().map(|(p, k)| (*p, (*k).to_owned())).collect()
    };
    let started = Instant::now();
    let n = points.len();
    let at_once = Arc::new(tokio::sync::Semaphore::new(3));
    let mut tasks = tokio::task::JoinSet::new();
    for (point, key) in points {
        let (backend, reference, at_once) = (backend.fresh().await, reference.clone(), at_once.clone());
        tasks.spawn(async move {
            let _permit = at_once.acquire_owned().await.unwrap();
            crash_at(backend, reference, point, key).await;
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} kill points failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{n} kill points, each ended as the uninterrupted run: {:.1?}",
        started.elapsed()
    );
}

fn full_sweep() -> bool {
    std::env::var("RUNBOOK_FULL_SWEEP").is_ok_and(|v| v == "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kill_point_ends_as_the_uninterrupted_run_on_sqlite() {
    sweep(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kill_point_ends_as_the_uninterrupted_run_on_postgres() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    sweep(backend).await;
}

/// A cheap generator for the soak's random moments; the seed is printed to repeat a run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn between(&mut self, low_ms: u64, high_ms: u64) -> Duration {
        Duration::from_millis(low_ms + self.next() % (high_ms - low_ms))
    }
}

fn env_size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const SOAK_SCRIPT: &str = r#"
let made = cloudflare::create_user(#{email: `soak${event.body.n}@example.com`, name: `Soak ${event.body.n}`});
let again = cloudflare::get_user(made.id);
let renamed = cloudflare::update_user(made.id, #{name: `Soaked ${event.body.n}`, email: again.email});
#{n: event.body.n, name: renamed.name}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_survive_sigkills_at_random_moments_on_sqlite() {
    soak(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_survive_sigkills_at_random_moments_on_postgres() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    soak(backend).await;
}

/// Runs (create, slow read, update) delivered while the server is SIGKILLed at random moments
/// and started again: every run ends succeeded, every create reached the service once.
async fn soak(backend: Backend) {
    let runs = env_size("RUNBOOK_SOAK_RUNS", 40);
    let kills = env_size("RUNBOOK_SOAK_KILLS", 3);
    let seed = env_size("RUNBOOK_SOAK_SEED", 0) as u64;
    let seed = if seed == 0 {
        jiff::Timestamp::now().as_nanosecond() as u64
    } else {
        seed
    };
    eprintln!("soak: {runs} runs, {kills} SIGKILLs, RUNBOOK_SOAK_SEED={seed}");
    let mut rng = Lcg(seed);
    let sims = Sims::start(tenant(1, 0)).await;
    // Every request is slow, the read too.
    sims.cf().set_latency(Duration::from_millis(20));
    let ws = backend.workspace(&sims, "soak.rhai", SOAK_SCRIPT, 100);
    let server = Proc::start(&ws, None).await;
    let url = Arc::new(Mutex::new(server.url.clone()));
    let started = Instant::now();
    // Deliveries spread over the time the kills take.
    let pause = Duration::from_millis((kills as u64 * 500 / runs.max(1) as u64).max(20));

    // The sender delivers each run until it is accepted, whatever happens to the server.
    let sender = {
        let url = url.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..runs {
                loop {
                    let to = url.lock().unwrap().clone();
                    let body = json!({"n": n});
                    if let Ok(r) = signed(&client, &to, "/hooks/durable", &format!("soak-{n}"), &body)
                        .send()
                        .await
                        && r.status().is_success()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(pause).await;
            }
        })
    };
    let mut server = server;
    for _ in 0..kills {
        // A random moment while a run is in flight (unless every run is over already).
        wait_until("a run in flight", Duration::from_secs(60), || async {
            let all = backend.runs(&ws).await;
            all.iter().any(|r| r.status == RunStatus::Running)
                || (all.len() == runs && all.iter().all(|r| r.status.is_final()))
        })
        .await;
        tokio::time::sleep(rng.between(0, 120)).await;
        server.kill().await;
        server = Proc::start(&ws, None).await;
        *url.lock().unwrap() = server.url.clone();
        tokio::time::sleep(rng.between(100, 600)).await;
    }
    let killed = started.elapsed();
    sender.await.unwrap();
    let delivered = started.elapsed();
    wait_until("every soak run to end", Duration::from_secs(300), || async {
        let all = backend.runs(&ws).await;
        all.len() == runs
            && all
                .iter()
                .all(|r| r.status.is_final() || r.status == RunStatus::NeedsAttention)
    })
    .await;
    let all = backend.runs(&ws).await;
    let not_ok: Vec<String> = all
        .iter()
        .filter(|r| r.status != RunStatus::Succeeded)
        .map(|r| format!("{} {:?}: {:?}", r.id, r.status, r.error))
        .collect();
    assert!(
        not_ok.is_empty(),
        "seed {seed}: runs that did not succeed:\n{}",
        not_ok.join("\n")
    );
    let mut creates: BTreeMap<String, usize> = BTreeMap::new();
    for r in sims.cf().requests() {
        if r.method == "POST" && r.path.ends_with("/access/users") {
            let email = r
                .body
                .as_ref()
                .and_then(|b| b["email"].as_str())
                .unwrap_or("?")
                .to_owned();
            *creates.entry(email).or_default() += 1;
        }
    }
    for n in 0..runs {
        let email = format!("soak{n}@example.com");
        assert_eq!(
            creates.get(&email).copied().unwrap_or(0),
            1,
            "seed {seed}: {email} was created this many times"
        );
    }
    assert_eq!(creates.len(), runs, "seed {seed}: {creates:?}");
    let resumed = all.iter().filter(|r| r.attempts > 1).count();
    assert!(resumed >= 1, "seed {seed}: no SIGKILL caught a run in flight");
    eprintln!(
        "soak: {runs} runs across {kills} SIGKILLs, {resumed} resumed, each create sent once: {:.1?} \
         (kills done at {killed:.1?}, deliveries at {delivered:.1?})",
        started.elapsed()
    );
    server.stop().await;
    sims.shutdown().await;
}

const ZOMBIE_SCRIPT: &str = r#"
let made = cloudflare::create_user(#{email: "zombie@example.com", name: "Zombie"});
let everyone = cloudflare::list_users();
cloudflare::update_user(made.id, #{name: `Seen ${everyone.len()}`, email: made.email});
cloudflare::create_group(#{name: "Zombies", include: [#{email: #{email: made.email}}]});
#{users: everyone.len()}
"#;

fn is_write(r: &runbook_sim::LoggedRequest) -> bool {
    r.method != "GET" && !r.path.ends_with("/token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stopped_past_its_lease_sends_nothing_more_when_it_wakes() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = backend.workspace(&sims, "zombie.rhai", ZOMBIE_SCRIPT, 20);
    let first = Proc::start(&ws, None).await;
    // Every request takes a while: the run is in a slow step when its worker stops.
    sims.cf().set_latency(Duration::from_millis(2500));
    let id = deliver(&first.url, "zombie", &json!({})).await;
    wait_until("the first worker's create", Duration::from_secs(30), || async {
        backend
            .run(&ws, &id)
            .await
            .steps
            .iter()
            .any(|s| s.key == "1" && s.status == runbook_core::StepStatus::Ok)
    })
    .await;
    first.signal("-STOP");
    let stopped_at = sims.cf().requests().len();
    let second = Proc::start(&ws, None).await;
    let run = settled(&backend, &ws, &id, "the second instance to finish the run", &second).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}\n{}", run.error, second.log());
    assert!(run.attempts >= 2, "the second instance claimed the run again");

    // The first wakes up long past its lease.
    let before_wake = sims.cf().requests().len();
    first.signal("-CONT");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = sims.cf().requests();
    let late: Vec<String> = log[before_wake..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        late.is_empty(),
        "the woken worker sent requests: {late:?}\n{}",
        first.log()
    );
    // A live process, not a dead one: it answers, and sent nothing.
    let health = reqwest::get(format!("{}/healthz", first.url)).await.unwrap();
    assert_eq!(health.status(), 200, "the woken instance is up");
    let after = backend.run(&ws, &id).await;
    assert_eq!(after.status, RunStatus::Succeeded, "its late completion was refused");
    assert_eq!(after.result, run.result);
    assert_eq!(after.finished_at, run.finished_at);
    let steps = |r: &RunRecord| -> Vec<(String, String, u64)> {
        r.steps
            .iter()
            .map(|s| (s.key.clone(), s.status.as_str().to_owned(), s.epoch))
            .collect()
    };
    assert_eq!(steps(&after), steps(&run), "its late journal writes were refused");
    let epoch_of = |key: &str| after.steps.iter().find(|s| s.key == key).map(|s| s.epoch);
    assert!(
        epoch_of("2") > epoch_of("1") && epoch_of("1").is_some(),
        "the first attempt made step 1, the second the rest: {:?}",
        steps(&after)
    );
    // Each write reached the service once, in the script's order: no two attempts at once.
    let writes: Vec<String> = log
        .iter()
        .filter(|r| is_write(r))
        .map(|r| format!("{} {}", r.method, r.path.rsplit("/access/").next().unwrap_or_default()))
        .collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes[0].starts_with("POST users"), "{writes:?}");
    assert!(writes[1].starts_with("PUT users/"), "{writes:?}");
    assert!(writes[2].starts_with("POST groups"), "{writes:?}");
    eprintln!(
        "zombie: {} requests before the stop, {} after the second finished, none after the wake",
        stopped_at,
        log.len()
    );
    first.kill().await;
    second.stop().await;
    sims.shutdown().await;
}

async fn diverges(backend: Backend) {
    let sims = Sims::start(tenant(20, 0)).await;
    let ws = backend.workspace(&sims, "durable.rhai", SCRIPT, 20);
    // The create without a probe committed its intent: resumed as is, the run would wait for a
    // person; resumed against a journal whose step 2 is not this script's, it must diverge.
    let fault = "after-intent@4";
    let server = Proc::start(&ws, Some(fault)).await;
    let id = deliver(&server.url, "diverge", &body()).await;
    server.killed_by_fault(fault).await;
    backend.tamper(&ws, &id, "2").await;
    let sent_before = sims.cf().requests().len();

    let server = Proc::start(&ws, None).await;
    let run = settled(&backend, &ws, &id, "the resumed run", &server).await;
    assert_eq!(run.status, RunStatus::Diverged, "{:?}\n{}", run.error, server.log());
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("step 2"), "the divergence names step 2: {error}");
    let late: Vec<String> = sims.cf().requests()[sent_before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(late.is_empty(), "sent after the divergence: {late:?}");
    assert_eq!((user_creates(&sims), group_creates(&sims)), (1, 0));
    // Diverged is final: it is not tried again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backend.run(&ws, &id).await.status, RunStatus::Diverged);
    server.stop().await;
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_differs_at_a_step_diverges_and_sends_nothing_after_it_on_sqlite() {
    diverges(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_differs_at_a_step_diverges_and_sends_nothing_after_it_on_postgres() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    diverges(backend).await;
}
