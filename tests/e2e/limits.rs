//! `runbook serve` under hostile clients and a failing store: real processes, real sockets, real
//! signals, a real SQLite file locked by another connection and a real PostgreSQL server this
//! test starts (with TLS) and stops.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_serve::store::{PgStore, RunFilter, RunRecord, RunStatus, SqliteStore, Store};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures::{cf_id, tenant};
use crate::serve::{HOOK_SCRIPT, SECRET, Server, signed, wait_until, workspace_with};
use crate::support::{SKIP_VAR, Sims, Workspace};

const HOOK: &str = "[[automation]]\nname = \"hook\"\nscript = \"one.rhai\"\n\
                    trigger = { webhook = \"/hooks/siem\", secret = \"${SIEM_SECRET}\", id_header = \"X-Delivery-Id\" }\n";
const TICK: &str = "[[automation]]\nname = \"tick\"\nscript = \"one.rhai\"\ntrigger = { every = \"1s\" }\n";

fn workspace(serve: &str, automations: &[&str]) -> Workspace {
    let mut ws = Workspace::new();
    ws.set_env("SIEM_SECRET", SECRET);
    ws.file("one.rhai", "1\n");
    ws.file(
        "runbook.toml",
        &format!("[serve]\nlisten = \"127.0.0.1:0\"\n{serve}\n{}", automations.join("\n")),
    );
    ws
}

fn addr(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// A delivery's request, signed with the current time, with `body` as its body.
fn delivery(id: &str, body: &[u8]) -> String {
    let now = jiff::Timestamp::now().as_second();
    format!(
        "POST /hooks/siem HTTP/1.1\r\nHost: x\r\nX-Delivery-Id: {id}\r\nX-Timestamp: {now}\r\nX-Signature-256: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        runbook_serve::webhook::sign(SECRET, Some(now), body),
        body.len()
    )
}

async fn post(client: &reqwest::Client, server: &Server, id: &str) -> (reqwest::StatusCode, Option<String>, Duration) {
    let body = format!("{{\"id\": \"{id}\"}}");
    let started = Instant::now();
    let now = jiff::Timestamp::now().as_second();
    let response = client
        .post(format!("{}/hooks/siem", server.url))
        .header("X-Delivery-Id", id)
        .header("X-Timestamp", now.to_string())
        .header(
            "X-Signature-256",
            runbook_serve::webhook::sign(SECRET, Some(now), body.as_bytes()),
        )
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), retry_after, took)
}

async fn get(client: &reqwest::Client, server: &Server, path: &str) -> (u16, String) {
    let response = client.get(format!("{}{path}", server.url)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The sum of every sample of `name` (with any labels) whose labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

/// Reads until the server closes the connection; when it did, and what it said.
async fn read_until_closed(mut reader: tokio::net::tcp::OwnedReadHalf) -> (Instant, String) {
    let mut answer = Vec::new();
    let _ = reader.read_to_end(&mut answer).await;
    (Instant::now(), String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_stalled_bodies_are_disconnected_on_time() {
    let ws = workspace("header_timeout = \"1s\"\nbody_timeout = \"1s\"\n", &[HOOK]);
    let server = Server::start(&ws).await;

    // Slow-loris: the request's head, one byte every 100 ms (it would take 8 s).
    let (reader, mut writer) = TcpStream::connect(addr(&server)).await.unwrap().into_split();
    let started = Instant::now();
    let closed = tokio::spawn(read_until_closed(reader));
    let head = delivery("slow-head", b"{}");
    for byte in head.as_bytes() {
        if closed.is_finished() || writer.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (at, _) = closed.await.unwrap();
    let after = at - started;
    eprintln!("slow headers: disconnected after {after:?} (header_timeout 1s)");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(4),
        "disconnected after {after:?}"
    );

    // The head at once, then a body that stops after 10 of its 1,000 bytes.
    let body = vec![b' '; 1000];
    let (reader, mut writer) = TcpStream::connect(addr(&server)).await.unwrap().into_split();
    let started = Instant::now();
    let closed = tokio::spawn(read_until_closed(reader));
    writer.write_all(delivery("slow-body", &body).as_bytes()).await.unwrap();
    writer.write_all(&body[..10]).await.unwrap();
    let (at, answer) = closed.await.unwrap();
    let after = at - started;
    eprintln!("stalled body: disconnected after {after:?} (body_timeout 1s)");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(4),
        "disconnected after {after:?}"
    );
    drop(writer);

    // The server still serves, and stored nothing of either.
    let client = reqwest::Client::new();
    assert_eq!(get(&client, &server, "/healthz").await.0, 200);
    let metrics = get(&client, &server, "/metrics").await.1;
    assert_eq!(
        metric(&metrics, "runbook_webhook_rejections_total", "body_timeout"),
        1.0,
        "{metrics}"
    );
    assert_eq!(server.stop().await, Some(0));
    assert!(all_sqlite_runs(&ws).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_for_a_free_one() {
    let ws = workspace("max_connections = 2\nheader_timeout = \"30s\"\n", &[HOOK]);
    let server = Server::start(&ws).await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut held = TcpStream::connect(addr(&server)).await.unwrap();
        held.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        holders.push(held);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third connection is made (the kernel's backlog takes it) but not served.
    let mut third = TcpStream::connect(addr(&server)).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let waited = tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut answer)).await;
    assert!(
        waited.is_err(),
        "served beyond max_connections: {}",
        String::from_utf8_lossy(&answer)
    );
    // One closes: the waiting one is served.
    drop(holders.pop());
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(holders);
    assert_eq!(server.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_stalled_clients_and_a_slow_run_exits_within_grace_and_drain() {
    let sims = Sims::start(tenant(3, 0)).await;
    let config = "[serve]\nlisten = \"127.0.0.1:0\"\ngrace = \"1s\"\ndrain = \"1s\"\nheader_timeout = \"60s\"\nbody_timeout = \"60s\"\n\n\
                  [[automation]]\nname = \"hook\"\nscript = \"hook.rhai\"\n\
                  trigger = { webhook = \"/hooks/siem\", secret = \"${SIEM_SECRET}\", id_header = \"X-Delivery-Id\" }\n";
    let ws = workspace_with(&sims, config, &[("hook.rhai", HOOK_SCRIPT)]);
    // A run whose call takes far longer than grace and drain together.
    sims.cf().set_latency(Duration::from_secs(20));
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let accepted = signed(
        &client,
        &server.url,
        "/hooks/siem",
        "slow",
        &serde_json::json!({"user_id": cf_id(1), "n": 1}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(accepted.status(), 202);
    wait_until("a call in flight", Duration::from_secs(20), || async {
        sims.cf().max_in_flight() > 0
    })
    .await;
    // One client stops halfway through its headers, another halfway through its body.
    let mut half_head = TcpStream::connect(addr(&server)).await.unwrap();
    half_head
        .write_all(b"POST /hooks/siem HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let body = vec![b' '; 1000];
    let mut half_body = TcpStream::connect(addr(&server)).await.unwrap();
    half_body
        .write_all(delivery("stalled", &body).as_bytes())
        .await
        .unwrap();
    half_body.write_all(&body[..100]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    server.signal("-TERM");
    let code = server.exit_within(Duration::from_secs(30)).await;
    let took = signalled.elapsed();
    eprintln!("SIGTERM with a run in a 20 s call and two stalled clients: exited after {took:?} (grace 1s + drain 1s)");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_millis(3500), "exited after {took:?}");
    drop((half_head, half_body));
    let runs = all_sqlite_runs(&ws).await;
    assert_eq!(runs.len(), 1, "the stalled delivery was not stored: {runs:#?}");
    assert_eq!(
        runs[0].status,
        RunStatus::Queued,
        "the run stopped after grace is queued again"
    );
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_stores_nothing_and_sighup_stops_gracefully() {
    let ws = workspace("queue_limit = 2\n", &[HOOK]);
    let server = Server::start(&ws).await;
    // Two runs that wait for a time far ahead fill the queue.
    {
        let conn = rusqlite::Connection::open(ws.path().join("runbook.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        for id in ["waiting-1", "waiting-2"] {
            conn.execute(
                "INSERT INTO runs (id, automation, trigger, status, max_retries, params, created_at, not_before)
                 VALUES (?1, 'hook', 'webhook', 'queued', 0, '{}', 0, 9999999999999)",
                [id],
            )
            .unwrap();
        }
    }
    let client = reqwest::Client::new();
    let (status, retry_after, _) = post(&client, &server, "over-the-limit").await;
    assert_eq!(status, 429);
    // A delivery stored before the queue filled is still recognised when sent again.
    {
        let conn = rusqlite::Connection::open(ws.path().join("runbook.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute(
            "INSERT INTO deliveries (automation, key, run_id, received_at) VALUES ('hook', 'stored-before', 'waiting-1', 0)",
            [],
        )
        .unwrap();
    }
    let (status, _, _) = post(&client, &server, "stored-before").await;
    assert_eq!(status, 200, "a resend of a stored delivery is a duplicate, not refused");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok()));
    let metrics = get(&client, &server, "/metrics").await.1;
    assert_eq!(metric(&metrics, "runbook_webhook_rejections_total", "queue_full"), 1.0);
    assert_eq!(metric(&metrics, "runbook_queue_depth", ""), 2.0, "{metrics}");

    // SIGHUP is a graceful stop, said so.
    server.signal("-HUP");
    wait_until("the SIGHUP message", Duration::from_secs(10), || async {
        server.log().contains("SIGHUP")
    })
    .await;
    let log = server.log();
    assert_eq!(server.exit_within(Duration::from_secs(15)).await, Some(0));
    assert!(log.contains("does not reload runbook.toml"), "{log}");
    let runs = all_sqlite_runs(&ws).await;
    assert_eq!(runs.len(), 2, "the refused delivery was stored: {runs:#?}");
}

async fn all_sqlite_runs(ws: &Workspace) -> Vec<RunRecord> {
    SqliteStore::open_shared(&ws.path().join("runbook.db"))
        .await
        .unwrap()
        .list(&RunFilter {
            limit: 100_000,
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

async fn all_pg_runs(url: &str) -> Vec<RunRecord> {
    PgStore::open(url)
        .await
        .unwrap()
        .list(&RunFilter {
            limit: 100_000,
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

/// What an outage test checks once the store is back: no tick ran twice, every tick between
/// the first and the last that ran either ran or was counted as skipped or missed, every
/// delivery ran at most once, no run failed.
fn account(runs: &[RunRecord], metrics: &str) -> (usize, f64, f64) {
    let mut ticks: Vec<i64> = runs
        .iter()
        .filter(|r| r.automation == "tick")
        .map(|r| r.scheduled_for.unwrap())
        .collect();
    ticks.sort_unstable();
    let ran = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), ran, "a tick ran twice: {ticks:?}");
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    let fallen = usize::try_from((last - first) / 1000 + 1).unwrap();
    let missed = metric(metrics, "runbook_ticks_missed_total", "automation=\"tick\"");
    let skipped = metric(metrics, "runbook_ticks_skipped_total", "automation=\"tick\"");
    assert!(
        ran as f64 + missed + skipped >= fallen as f64,
        "{fallen} ticks fell, {ran} ran, {missed} counted missed, {skipped} skipped: one was lost silently ({ticks:?})\n{metrics}"
    );
    let mut deliveries: Vec<&str> = runs
        .iter()
        .filter(|r| r.automation == "hook")
        .map(|r| r.event.as_ref().unwrap()["delivery_id"].as_str().unwrap())
        .collect();
    let all = deliveries.len();
    deliveries.sort_unstable();
    deliveries.dedup();
    assert_eq!(deliveries.len(), all, "a delivery ran twice");
    assert!(
        runs.iter()
            .all(|r| !matches!(r.status, RunStatus::Failed | RunStatus::NeedsAttention)),
        "{runs:#?}"
    );
    (fallen, missed, skipped)
}

/// During a store outage: `/readyz` 503 with a reason, `/healthz` and `/metrics` 200, a webhook
/// answered 503 + Retry-After about `store_timeout` later. Returns the webhook's answer time.
async fn check_outage(client: &reqwest::Client, server: &Server, id: &str) -> Duration {
    let started = Instant::now();
    let (status, ready) = get(client, server, "/readyz").await;
    eprintln!(
        "/readyz during the outage, after {:?}: {status} {ready}",
        started.elapsed()
    );
    assert_eq!(status, 503, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["status"], "unavailable");
    assert!(ready["reason"].as_str().unwrap().contains("store"), "{ready}");
    assert_eq!(get(client, server, "/healthz").await.0, 200);
    let (status, retry_after, took) = post(client, server, id).await;
    eprintln!("a webhook during the outage: {status} after {took:?} (store_timeout 1s)");
    assert_eq!(status, 503);
    assert!(retry_after.is_some());
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let (status, metrics) = get(client, server, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("runbook_store_up"), "{metrics}");
    took
}

/// After the outage: ready again, the delivery refused during it accepted once, a tick after
/// it run; then the accounting.
async fn check_recovery(client: &reqwest::Client, server: &Server, id: &str, runs: impl AsyncFn() -> Vec<RunRecord>) {
    wait_until("/readyz 200 again", Duration::from_secs(20), || async {
        get(client, server, "/readyz").await.0 == 200
    })
    .await;
    let resumed_at = jiff::Timestamp::now().as_millisecond();
    let (status, _, _) = post(client, server, id).await;
    assert!(status == 202 || status == 200, "{status}");
    wait_until(
        "a tick after the outage and the delivery ran",
        Duration::from_secs(20),
        || async {
            let runs = runs().await;
            runs.iter().any(|r| {
                r.automation == "tick" && r.scheduled_for.unwrap() > resumed_at && r.status == RunStatus::Succeeded
            }) && runs
                .iter()
                .any(|r| r.automation == "hook" && r.status == RunStatus::Succeeded)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sqlite_store_locked_for_three_leases_is_reported_and_loses_no_tick() {
    let ws = workspace(
        "lease = \"2s\"\nstore_timeout = \"1s\"\ngrace = \"2s\"\n",
        &[HOOK, TICK],
    );
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    wait_until("two ticks ran", Duration::from_secs(10), || async {
        all_sqlite_runs(&ws)
            .await
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 2
    })
    .await;
    let before = get(&client, &server, "/metrics").await.1;

    // Another connection holds the file's write lock for three leases.
    let db = ws.path().join("runbook.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    let took = check_outage(&client, &server, "during-lock").await;
    let during = get(&client, &server, "/metrics").await.1;
    assert!(
        metric(&during, "runbook_store_errors_total", "") > metric(&before, "runbook_store_errors_total", ""),
        "{during}"
    );
    tokio::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();

    check_recovery(&client, &server, "during-lock", || all_sqlite_runs(&ws)).await;
    let runs = all_sqlite_runs(&ws).await;
    let metrics = get(&client, &server, "/metrics").await.1;
    let (fallen, missed, skipped) = account(&runs, &metrics);
    eprintln!(
        "SQLite locked 6s: webhook answered in {took:?}; {fallen} ticks fell, {missed} missed, {skipped} skipped; store errors {}",
        metric(&metrics, "runbook_store_errors_total", "")
    );
    assert!(missed + skipped >= 1.0, "ticks fell during the lock:\n{metrics}");
    assert_eq!(server.stop().await, Some(0));
}

/// A PostgreSQL server of the test's own, with TLS, which the test can stop and start.
pub(crate) struct OwnPostgres {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) ca: PathBuf,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl OwnPostgres {
    /// `None` (said loudly) when there is no `initdb` and `RUNBOOK_TEST_SKIP` names postgres.
    pub(crate) fn start() -> Option<OwnPostgres> {
        if Command::new("initdb").arg("--version").output().is_err() {
            let skip = std::env::var(SKIP_VAR).unwrap_or_default();
            assert!(
                skip.split(',').any(|s| s.trim() == "postgres"),
                "this test starts a PostgreSQL server of its own and needs initdb and pg_ctl on PATH; or set {SKIP_VAR}=postgres"
            );
            eprintln!("\n*** SKIPPED: no initdb on PATH: this test passes having checked nothing ***\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = OwnPostgres {
            ca: dir.path().join("ca.pem"),
            dir,
            port,
        };
        if running_as_root() {
            // PostgreSQL refuses to run as root: its files are its own user's.
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(pg.dir.path())
                    .status()
                    .unwrap()
                    .success()
            );
        }
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-N",
                "--no-instructions",
            ],
        );
        let (ca, cert, key) = tls_material();
        std::fs::write(&pg.ca, ca).unwrap();
        let data = PathBuf::from(pg.data());
        std::fs::write(data.join("server.crt"), cert).unwrap();
        std::fs::write(data.join("server.key"), key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            pg.dir.path().display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).unwrap();
        if running_as_root() {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(pg.dir.path())
                    .status()
                    .unwrap()
                    .success()
            );
        }
        pg.up();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn up(&self) {
        let log = self.dir.path().join("log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "start"]);
    }

    pub(crate) fn down(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub(crate) fn url(&self, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?{query}", self.port)
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pg_ctl"]);
            c
        } else {
            Command::new("pg_ctl")
        };
        let _ = cmd.args(["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output();
    }
}

/// A CA, and a certificate it signed for 127.0.0.1 and localhost with its key (PEM).
fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "runbook test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_checks_the_ca_with_verify_full_and_encrypts_with_require() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let ca = pg.ca.display().to_string();
    let store = PgStore::open(&pg.url(&format!("sslmode=verify-full&sslrootcert={ca}")))
        .await
        .unwrap();
    store.ping().await.unwrap();

    let (other_ca, _, _) = tls_material();
    let wrong = pg.path().join("other-ca.pem");
    std::fs::write(&wrong, other_ca).unwrap();
    let err = PgStore::open(&pg.url(&format!(
        "sslmode=verify-full&sslrootcert={}&connect_timeout=5",
        wrong.display()
    )))
    .await
    .unwrap_err()
    .to_string();
    eprintln!("verify-full with another CA: {err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("sslrootcert must name the CA"), "{err}");

    let store = PgStore::open(&pg.url("sslmode=require")).await.unwrap();
    store.ping().await.unwrap();
    // The server sees every connection of the store encrypted.
    let (client, connection) = tokio_postgres::connect(&pg.url("sslmode=disable"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap();
    let (encrypted, plain): (i64, i64) = (row.get(0), row.get(1));
    assert!(encrypted >= 2, "{encrypted} encrypted connections");
    assert_eq!(plain, 1, "only the test's own sslmode=disable connection is plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_stopped_for_three_leases_is_reported_and_loses_no_tick() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let url = pg.url("sslmode=require&connect_timeout=2");
    let mut ws = workspace(
        "store = \"${RUNBOOK_STORE}\"\nlease = \"2s\"\nstore_timeout = \"1s\"\ngrace = \"2s\"\n",
        &[HOOK, TICK],
    );
    ws.set_env("RUNBOOK_STORE", &url);
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    wait_until("two ticks ran", Duration::from_secs(10), || async {
        all_pg_runs(&url)
            .await
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 2
    })
    .await;

    pg.down();
    let stopped = Instant::now();
    let took = check_outage(&client, &server, "during-stop").await;
    let metrics = get(&client, &server, "/metrics").await.1;
    assert_eq!(metric(&metrics, "runbook_store_up", ""), 0.0, "{metrics}");
    assert!(
        !metrics.contains("runbook_queue_depth"),
        "the store's gauges are left out:\n{metrics}"
    );
    assert!(metric(&metrics, "runbook_store_errors_total", "") >= 1.0, "{metrics}");
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(stopped.elapsed())).await;
    pg.up();

    check_recovery(&client, &server, "during-stop", || all_pg_runs(&url)).await;
    let runs = all_pg_runs(&url).await;
    let metrics = get(&client, &server, "/metrics").await.1;
    assert_eq!(metric(&metrics, "runbook_store_up", ""), 1.0, "{metrics}");
    let (fallen, missed, skipped) = account(&runs, &metrics);
    eprintln!(
        "PostgreSQL stopped 6s: webhook answered in {took:?}; {fallen} ticks fell, {missed} missed, {skipped} skipped; store errors {}",
        metric(&metrics, "runbook_store_errors_total", "")
    );
    assert!(missed >= 1.0, "ticks fell while PostgreSQL was down:\n{metrics}");
    assert_eq!(server.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_an_automation_an_instance_does_not_know_waits_for_one_that_does() {
    let Some(url) = crate::cluster::postgres_url().await else {
        return;
    };
    let only_a = "[[automation]]\nname = \"a\"\nscript = \"one.rhai\"\ntrigger = { every = \"1h\" }\n";
    let b = "[[automation]]\nname = \"b\"\nscript = \"one.rhai\"\ntrigger = { every = \"1h\" }\n";
    let mut old = workspace("store = \"${RUNBOOK_STORE}\"\n", &[only_a]);
    old.set_env("RUNBOOK_STORE", &url);
    let server = Server::start(&old).await;
    // A newer instance's run of "b", queued before that instance is up.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "INSERT INTO runbook_runs (id, automation, trigger, status, max_retries, params, created_at, not_before)
             VALUES ('run-of-b', 'b', 'webhook', 'queued', 0, '{}', 0, 0)",
            &[],
        )
        .await
        .unwrap();
    // Several of the old instance's polls pass; the run stays queued, untouched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = all_pg_runs(&url)
        .await
        .into_iter()
        .find(|r| r.id == "run-of-b")
        .unwrap();
    assert_eq!((run.status, run.attempts), (RunStatus::Queued, 0), "{run:#?}");

    let mut new = workspace("store = \"${RUNBOOK_STORE}\"\n", &[only_a, b]);
    new.set_env("RUNBOOK_STORE", &url);
    let newer = Server::start(&new).await;
    wait_until(
        "the run of b ran on the instance that knows it",
        Duration::from_secs(15),
        || async {
            all_pg_runs(&url)
                .await
                .iter()
                .any(|r| r.id == "run-of-b" && r.status == RunStatus::Succeeded)
        },
    )
    .await;
    assert_eq!(server.stop().await, Some(0));
    assert_eq!(newer.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_sqlite_store_is_locked_still_exits_on_time() {
    let ws = workspace(
        "grace = \"1s\"\ndrain = \"1s\"\nstore_timeout = \"1s\"\n",
        &[HOOK, TICK],
    );
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    wait_until("a tick ran", Duration::from_secs(10), || async {
        !all_sqlite_runs(&ws).await.is_empty()
    })
    .await;
    let db = ws.path().join("runbook.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    // A delivery and a tick wait on the locked store.
    let (status, _, _) = post(&client, &server, "locked").await;
    assert_eq!(status, 503);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let signalled = Instant::now();
    server.signal("-TERM");
    let code = server.exit_within(Duration::from_secs(30)).await;
    let took = signalled.elapsed();
    eprintln!("SIGTERM while SQLite is locked: exited after {took:?} (grace 1s + drain 1s, store_timeout 1s)");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(6), "exited after {took:?}");
    release_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();
}
