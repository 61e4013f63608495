//! `runbook serve` as an operator runs it: a real process, real HTTP, a real SQLite file, real
//! signals (SIGKILL, SIGTERM).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runbook_serve::store::{RunFilter, RunRecord, RunStatus, SqliteStore, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fixtures::{cf_id, scripted_tenant, tenant};
use crate::support::{Sims, Workspace};

pub(crate) const SECRET: &str = "siem-webhook-secret-6f2a";

/// The API token the tests' servers know (as `api_token`: named `admin`, every scope).
pub(crate) const API_TOKEN: &str = "e2e-api-token-2b7f0c9d14e6a8537f21c0d9";

/// A running `runbook serve`.
pub(crate) struct Server {
    child: tokio::process::Child,
    pub(crate) url: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    pub(crate) async fn start(ws: &Workspace) -> Server {
        let mut child = ws
            .command(&["serve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = stderr.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.split("listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
            }
        });
        let url = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(url)) => url,
            _ => {
                let status = child.wait().await.unwrap();
                panic!("runbook serve did not start ({status}):\n{}", stderr.lock().unwrap());
            }
        };
        Server { child, url, stderr }
    }

    pub(crate) fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGTERM, then the exit code.
    pub(crate) async fn stop(mut self) -> Option<i32> {
        self.signal("-TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("runbook serve ignored SIGTERM:\n{}", self.stderr.lock().unwrap()))
            .unwrap();
        status.code()
    }

    /// Waits at most `limit` for the process to exit (after a signal); its exit code.
    pub(crate) async fn exit_within(mut self, limit: Duration) -> Option<i32> {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "runbook serve still runs after {limit:?}:\n{}",
                    self.stderr.lock().unwrap()
                )
            })
            .unwrap();
        status.code()
    }

    pub(crate) async fn kill(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait().await;
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    pub(crate) fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

pub(crate) fn workspace_with(sims: &Sims, config: &str, scripts: &[(&str, &str)]) -> Workspace {
    let mut ws = sims.workspace();
    ws.set_env("SIEM_SECRET", SECRET);
    ws.set_env("RUNBOOK_API_TOKEN", API_TOKEN);
    for (name, text) in scripts {
        ws.file(name, text);
    }
    ws.file("runbook.toml", config);
    ws
}

pub(crate) async fn store(ws: &Workspace) -> SqliteStore {
    SqliteStore::open_shared(&ws.path().join("runbook.db")).await.unwrap()
}

pub(crate) async fn all_runs(ws: &Workspace) -> Vec<RunRecord> {
    store(ws)
        .await
        .list(&RunFilter {
            limit: 100_000,
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

pub(crate) async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(ws: &Workspace, status: RunStatus) -> usize {
    all_runs(ws).await.iter().filter(|r| r.status == status).count()
}

pub(crate) fn signed(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    delivery: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    let bytes = serde_json::to_vec(body).unwrap();
    let now = jiff::Timestamp::now().as_second();
    client
        .post(format!("{url}{path}"))
        .header(
            "X-Signature-256",
            runbook_serve::webhook::sign(SECRET, Some(now), &bytes),
        )
        .header("X-Timestamp", now.to_string())
        .header("X-Delivery-Id", delivery)
        .header("Content-Type", "application/json")
        .body(bytes)
}

const HOOK_CONFIG: &str = r#"
[serve]
listen = "127.0.0.1:0"
store = "sqlite://runbook.db"
workers = 4
grace = "10s"
api_token = "${RUNBOOK_API_TOKEN}"

[[automation]]
name = "hook"
script = "hook.rhai"
retries = 3
retry_delay = "100ms"
concurrency = 4
trigger = { webhook = "/hooks/siem", secret = "${SIEM_SECRET}", id_header = "X-Delivery-Id" }
"#;

pub(crate) const HOOK_SCRIPT: &str = "let u = cloudflare::get_user(event.body.user_id);\nprint(`delivery ${event.delivery_id}`);\n#{email: u.email, n: event.body.n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_delivery_ends_in_exactly_one_succeeded_run_across_a_sigkill() {
    let sims = Sims::start(tenant(20, 0)).await;
    let ws = workspace_with(&sims, HOOK_CONFIG, &[("hook.rhai", HOOK_SCRIPT)]);
    let client = reqwest::Client::new();
    let body = |i: usize| json!({"user_id": cf_id(i % 20 + 1), "n": i});

    let server = Server::start(&ws).await;
    let url = server.url.clone();
    let accepted: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; 500]));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, url, accepted, next, sent) = (
            client.clone(),
            url.clone(),
            accepted.clone(),
            next.clone(),
            sent.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= 500 {
                    break;
                }
                if let Ok(response) = signed(&client, &url, "/hooks/siem", &format!("d-{i}"), &body(i))
                    .send()
                    .await
                    && response.status().is_success()
                {
                    let doc: Value = response.json().await.unwrap();
                    accepted.lock().unwrap()[i] = Some(doc["run_id"].as_str().unwrap().to_owned());
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    // Part-way through, the server dies without any chance to clean up.
    wait_until("200 deliveries", Duration::from_secs(60), || async {
        sent.load(std::sync::atomic::Ordering::SeqCst) >= 200
    })
    .await;
    server.kill().await;
    for s in senders {
        s.await.unwrap();
    }
    let before: Vec<Option<String>> = accepted.lock().unwrap().clone();
    let got_2xx = before.iter().filter(|a| a.is_some()).count();
    assert!(
        (200..500).contains(&got_2xx),
        "the kill came too late or too early: {got_2xx} accepted"
    );

    // Restart; the sender sends everything again.
    let server = Server::start(&ws).await;
    for (i, first) in before.iter().enumerate() {
        let response = signed(&client, &server.url, "/hooks/siem", &format!("d-{i}"), &body(i))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let doc: Value = response.json().await.unwrap();
        match first {
            Some(run_id) => {
                assert_eq!(
                    status, 200,
                    "d-{i} was accepted before the kill: a resend must not create a run"
                );
                assert_eq!(doc["run_id"], json!(run_id));
                assert_eq!(doc["duplicate"], true);
            }
            // Never answered 2xx: it may have been committed just before the kill (a duplicate now)
            // or never stored (created now); either way exactly one run.
            None => assert!(status == 202 || status == 200, "d-{i}: {status} {doc}"),
        }
    }
    wait_until("every run to finish", Duration::from_secs(90), || async {
        all_runs(&ws).await.iter().all(|r| r.status.is_final())
    })
    .await;
    let runs = all_runs(&ws).await;
    assert_eq!(runs.len(), 500, "one run per delivery");
    let mut deliveries: Vec<String> = runs
        .iter()
        .map(|r| r.event.as_ref().unwrap()["delivery_id"].as_str().unwrap().to_owned())
        .collect();
    deliveries.sort();
    deliveries.dedup();
    assert_eq!(deliveries.len(), 500, "a delivery has two runs");
    let failed: Vec<&RunRecord> = runs.iter().filter(|r| r.status != RunStatus::Succeeded).collect();
    assert!(
        failed.is_empty(),
        "{} runs did not succeed: {:?}",
        failed.len(),
        failed.first().map(|r| &r.error)
    );
    for (i, first) in before.iter().enumerate() {
        if let Some(run_id) = first {
            let run = runs.iter().find(|r| &r.id == run_id).unwrap();
            assert_eq!(run.result.as_ref().unwrap()["n"], json!(i));
        }
    }
    eprintln!("{got_2xx} deliveries accepted before SIGKILL; all 500 ended in one succeeded run each");
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn refused_deliveries_get_their_status_and_leave_nothing_behind() {
    let sims = Sims::start(tenant(2, 0)).await;
    let config = format!(
        "{HOOK_CONFIG}\n[[automation]]\nname = \"stamped\"\nscript = \"hook.rhai\"\n\
         trigger = {{ webhook = \"/hooks/stamped\", secret = \"${{SIEM_SECRET}}\", timestamp_header = \"X-Timestamp\", replay_window = \"60s\" }}\n"
    );
    let ws = workspace_with(&sims, &config, &[("hook.rhai", HOOK_SCRIPT)]);
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&json!({"user_id": cf_id(1), "n": 1})).unwrap();

    let now = jiff::Timestamp::now().as_second();
    let bad = client
        .post(format!("{}/hooks/siem", server.url))
        .header(
            "X-Signature-256",
            runbook_serve::webhook::sign("not-the-secret-but-long-enough", Some(now), &body),
        )
        .header("X-Timestamp", now.to_string())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    let old = jiff::Timestamp::now().as_second() - 3600;
    let replayed = client
        .post(format!("{}/hooks/stamped", server.url))
        .header(
            "X-Signature-256",
            runbook_serve::webhook::sign(SECRET, Some(old), &body),
        )
        .header("X-Timestamp", old.to_string())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
    assert!(replayed.text().await.unwrap().contains("replay window"));

    let huge = vec![b'x'; runbook_serve::MAX_BODY + 1];
    let too_big = client
        .post(format!("{}/hooks/siem", server.url))
        .header(
            "X-Signature-256",
            runbook_serve::webhook::sign(SECRET, Some(now), &huge),
        )
        .header("X-Timestamp", now.to_string())
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);

    let unknown = signed(&client, &server.url, "/hooks/nope", "x", &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    assert!(all_runs(&ws).await.is_empty(), "a refused delivery was stored");
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["signature", "replay", "too_large", "unknown_path"] {
        assert!(
            metrics.contains(&format!("runbook_webhook_rejections_total{{reason=\"{reason}\"}} 1")),
            "{reason}:\n{metrics}"
        );
    }

    // A fresh, correctly signed and stamped delivery is accepted.
    let fresh = client
        .post(format!("{}/hooks/stamped", server.url))
        .header(
            "X-Signature-256",
            runbook_serve::webhook::sign(SECRET, Some(now), &body),
        )
        .header("X-Timestamp", now.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 202);
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn a_one_second_schedule_runs_once_per_tick_across_a_restart() {
    let sims = Sims::start(tenant(1, 0)).await;
    let config = "[serve]\nlisten = \"127.0.0.1:0\"\n\n[[automation]]\nname = \"tick\"\nscript = \"tick.rhai\"\ntrigger = { schedule = \"* * * * * *\" }\n";
    let ws = workspace_with(&sims, config, &[("tick.rhai", "now()")]);
    let server = Server::start(&ws).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(server.stop().await, Some(0));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let server = Server::start(&ws).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(server.stop().await, Some(0));

    let runs = all_runs(&ws).await;
    let mut ticks: Vec<i64> = runs.iter().map(|r| r.scheduled_for.unwrap()).collect();
    ticks.sort_unstable();
    let distinct = {
        let mut d = ticks.clone();
        d.dedup();
        d.len()
    };
    assert_eq!(distinct, ticks.len(), "a tick ran twice: {ticks:?}");
    assert!(
        ticks.iter().all(|t| t % 1000 == 0),
        "ticks fall on whole seconds: {ticks:?}"
    );
    let gaps: Vec<i64> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().filter(|g| **g > 1000).count() <= 1,
        "more than the restart's gap: {gaps:?}"
    );
    assert!(
        ticks.len() >= 6,
        "about one run per second of uptime, plus the catch-up: {ticks:?}"
    );
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded), "{runs:?}");
    sims.shutdown().await;
}

#[tokio::test]
async fn sigterm_lets_the_running_run_finish_and_keeps_the_queue() {
    let sims = Sims::start(tenant(3, 0)).await;
    let config = "[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 1\ngrace = \"20s\"\n\n[[automation]]\nname = \"hook\"\nscript = \"hook.rhai\"\n\
                  trigger = { webhook = \"/hooks/siem\", secret = \"${SIEM_SECRET}\", id_header = \"X-Delivery-Id\" }\n";
    let ws = workspace_with(&sims, config, &[("hook.rhai", HOOK_SCRIPT)]);
    sims.cf().set_latency(Duration::from_secs(2));
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    for i in 1..=3 {
        let r = signed(
            &client,
            &server.url,
            "/hooks/siem",
            &format!("t-{i}"),
            &json!({"user_id": cf_id(i), "n": i}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 202);
    }
    wait_until("a run in flight", Duration::from_secs(20), || async {
        sims.cf().max_in_flight() > 0
    })
    .await;
    let started = Instant::now();
    assert_eq!(server.stop().await, Some(0));
    let took = started.elapsed();
    assert_eq!(count(&ws, RunStatus::Succeeded).await, 1, "the run in flight finished");
    assert_eq!(count(&ws, RunStatus::Queued).await, 2, "the others are still queued");
    eprintln!("SIGTERM to exit with one run in flight: {took:?}");

    // After a restart the queued runs run.
    sims.cf().set_latency(Duration::ZERO);
    let server = Server::start(&ws).await;
    wait_until("the queued runs", Duration::from_secs(30), || async {
        count(&ws, RunStatus::Succeeded).await == 3
    })
    .await;
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn the_polling_example_acts_only_on_new_offenders() {
    let sims = Sims::start(scripted_tenant()).await;
    let script = std::fs::read_to_string(format!(
        "{}/scripts/watch_failed_logins.rhai",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let config = "[serve]\nlisten = \"127.0.0.1:0\"\n\n[[automation]]\nname = \"watch\"\nscript = \"watch.rhai\"\ntrigger = { every = \"1s\" }\n";
    let ws = workspace_with(&sims, config, &[("watch.rhai", &script)]);
    let server = Server::start(&ws).await;
    wait_until("two polls", Duration::from_secs(20), || async {
        count(&ws, RunStatus::Succeeded).await >= 2
    })
    .await;
    assert_eq!(server.stop().await, Some(0));

    let mut runs = all_runs(&ws).await;
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    let acted = |r: &RunRecord| -> Vec<String> {
        r.result.as_ref().unwrap()["selected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["principal"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(acted(&runs[0]), vec!["ann", "bob"]);
    for later in &runs[1..] {
        assert!(
            acted(later).is_empty(),
            "acted again on old offenders: {:?}",
            later.result
        );
    }
    let state = store(&ws).await.state_get("watch", "acted").await.unwrap().unwrap();
    assert!(
        state.get("ann@example.com").is_some() && state.get("bob@example.com").is_some(),
        "{state}"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn metrics_move_and_runs_show_the_calls_a_run_made() {
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = workspace_with(&sims, HOOK_CONFIG, &[("hook.rhai", HOOK_SCRIPT)]);
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let scrape = || async {
        client
            .get(format!("{}/metrics", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    let first: Value = signed(
        &client,
        &server.url,
        "/hooks/siem",
        "m-1",
        &json!({"user_id": cf_id(1), "n": 1}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    wait_until("the first run", Duration::from_secs(20), || async {
        count(&ws, RunStatus::Succeeded).await == 1
    })
    .await;
    let text = scrape().await;
    // Every line is Prometheus text: a comment, or `name{labels} value`.
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        assert!(value.parse::<f64>().is_ok(), "not a number in {line}");
        assert!(series.chars().next().unwrap().is_ascii_alphabetic(), "{line}");
    }
    assert!(text.contains("# TYPE runbook_run_duration_seconds histogram"), "{text}");
    let succeeded = "runbook_runs{automation=\"hook\",status=\"succeeded\"}";
    assert_eq!(metric(&text, succeeded), Some(1.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "runbook_action_calls_total{provider=\"cloudflare\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{text}"
    );

    signed(
        &client,
        &server.url,
        "/hooks/siem",
        "m-2",
        &json!({"user_id": cf_id(2), "n": 2}),
    )
    .send()
    .await
    .unwrap();
    wait_until("the second run", Duration::from_secs(20), || async {
        count(&ws, RunStatus::Succeeded).await == 2
    })
    .await;
    // The store's gauges are read at most twice a second.
    wait_until("the second run in /metrics", Duration::from_secs(5), || async {
        metric(&scrape().await, succeeded) == Some(2.0)
    })
    .await;

    let run_id = first["run_id"].as_str().unwrap();
    let shown = ws.run(&["runs", "show", run_id]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    for expected in [
        "status      succeeded",
        "calls (1):",
        "cloudflare.get_user",
        "delivery m-1",
        "user1@example.com",
    ] {
        assert!(
            shown.stdout.contains(expected),
            "missing {expected:?}:\n{}",
            shown.stdout
        );
    }
    let listed = ws.run(&["runs", "list", "--automation", "hook", "-o", "json"]).await;
    assert_eq!(listed.json().as_array().unwrap().len(), 2);

    // A retry is a new run with the same event, asked for through the API by a named token.
    let mut ws = ws;
    ws.set_env("RUNBOOK_API_URL", &server.url);
    ws.set_env("RUNBOOK_API_TOKEN", API_TOKEN);
    let retried = ws.run(&["runs", "retry", run_id]).await;
    assert_eq!(retried.code, Some(0), "{retried:?}");
    let new_id = retried.stdout.trim().to_owned();
    wait_until("the retry", Duration::from_secs(20), || async {
        count(&ws, RunStatus::Succeeded).await == 3
    })
    .await;
    let again = store(&ws).await.get(&new_id).await.unwrap().unwrap();
    assert_eq!(again.retry_of.as_deref(), Some(run_id));
    assert_eq!(again.started_by, "admin");
    assert_eq!(again.event.unwrap()["delivery_id"], "m-1");
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn a_failing_run_is_retried_with_backoff_then_fails() {
    let sims = Sims::start(tenant(1, 0)).await;
    let ws = workspace_with(&sims, HOOK_CONFIG, &[("hook.rhai", HOOK_SCRIPT)]);
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let r = signed(
        &client,
        &server.url,
        "/hooks/siem",
        "f-1",
        &json!({"user_id": "no-such-user", "n": 0}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    wait_until("the run to fail for good", Duration::from_secs(30), || async {
        count(&ws, RunStatus::Failed).await == 1
    })
    .await;
    let run = &all_runs(&ws).await[0];
    assert_eq!(run.attempts, 4, "one attempt and three retries");
    assert!(
        run.error.as_deref().unwrap().contains("no user no-such-user"),
        "{:?}",
        run.error
    );
    assert_eq!(run.error_kind.as_deref(), Some("action"));
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn the_api_wants_its_token() {
    let sims = Sims::start(tenant(1, 0)).await;
    let ws = workspace_with(&sims, HOOK_CONFIG, &[("hook.rhai", HOOK_SCRIPT)]);
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let without = client.get(format!("{}/api/runs", server.url)).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let with = client
        .get(format!("{}/api/runs", server.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    assert_eq!(
        client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(!server.log().contains(API_TOKEN));
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn configuration_mistakes_stop_serve_at_start_with_file_and_line() {
    let sims = Sims::start(tenant(1, 0)).await;
    let cases = [
        (
            "[serve]\nlisten = \"127.0.0.1:0\"\nworkerz = 2\n",
            "runbook.toml:3: unknown field `workerz`",
        ),
        (
            "[[automation]]\nname = \"a\"\nscript = \"hook.rhai\"\ntrigger = { schedule = \"every day\" }\n",
            "runbook.toml:4: automation \"a\": schedule \"every day\" is not a cron expression",
        ),
        (
            "[[automation]]\nname = \"a\"\nscript = \"gone.rhai\"\ntrigger = { every = \"5m\" }\n",
            "runbook.toml:3: automation \"a\": cannot read the script",
        ),
        (
            "[[automation]]\nname = \"a\"\nscript = \"hook.rhai\"\ntrigger = { webhook = \"/hooks/a\", secret = \"${UNSET_SECRET}\" }\n",
            "runbook.toml:4: ${UNSET_SECRET} is not set in the environment",
        ),
        (
            "[[automation]]\nname = \"a\"\nscript = \"typo.rhai\"\ntrigger = { every = \"5m\" }\n",
            "unknown action cloudflare::lst_users",
        ),
    ];
    for (config, expected) in cases {
        let ws = workspace_with(
            &sims,
            config,
            &[("hook.rhai", HOOK_SCRIPT), ("typo.rhai", "cloudflare::lst_users()")],
        );
        let out = ws.run(&["serve"]).await;
        assert_eq!(out.code, Some(2), "{config}: {out:?}");
        assert!(
            out.stderr.contains(expected),
            "{config}\nexpected {expected:?} in:\n{}",
            out.stderr
        );
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn the_readme_webhook_offboards_the_person_the_body_names() {
    let sims = Sims::start(scripted_tenant()).await;
    let script =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/offboard_user.rhai"))
            .unwrap();
    let config = "[serve]\nlisten = \"127.0.0.1:0\"\nstore = \"sqlite://runbook.db\"\n\n\
        [[automation]]\nname = \"siem\"\nscript = \"offboard_user.rhai\"\n\
        trigger = { webhook = \"/hooks/siem\", secret = \"${SIEM_SECRET}\", signature_header = \"X-Signature-256\", id_header = \"X-Delivery-Id\" }\n";
    let ws = workspace_with(&sims, config, &[("offboard_user.rhai", &script)]);
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let answer = signed(
        &client,
        &server.url,
        "/hooks/siem",
        "alert-1",
        &json!({"email": "ann@example.com"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(answer.status(), 202);
    wait_until("the offboarding run", Duration::from_secs(30), || async {
        count(&ws, RunStatus::Succeeded).await + count(&ws, RunStatus::Failed).await == 1
    })
    .await;
    let runs = all_runs(&ws).await;
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{:?}", runs[0].error);
    let report = runs[0].result.as_ref().unwrap();
    assert_eq!(report["email"], "ann@example.com");
    assert_eq!(report["cloudflare"]["revoked"], true);
    assert_eq!(sims.cf().revocations()[0]["email"], "ann@example.com");
    assert_eq!(report["privx"]["mfa_disabled"], true);
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn a_run_in_doubt_shows_its_steps_and_a_person_resolves_it_through_the_api() {
    use runbook_core::{Effect, JournalEntry, StepKind, StepStatus};
    const TOKEN: &str = API_TOKEN;
    let sims = Sims::start(tenant(1, 0)).await;
    let mut ws = workspace_with(&sims, HOOK_CONFIG, &[("hook.rhai", HOOK_SCRIPT)]);
    // A run that stopped with a change in doubt, as the store keeps it.
    let id = {
        let store = SqliteStore::open(&ws.path().join("runbook.db")).await.unwrap();
        let queued = store
            .enqueue(runbook_serve::store::NewRun {
                automation: "hook".into(),
                trigger: "webhook".into(),
                idem_key: Some("doubt-1".into()),
                dedup: Vec::new(),
                scheduled_for: None,
                params: serde_json::Map::new(),
                event: None,
                max_retries: 0,
                retry_of: None,
                script: "1".into(),
                started_by: "webhook".into(),
            })
            .await
            .unwrap();
        let claimed = store
            .claim("w", &[("hook".to_owned(), 1)].into(), 1, Duration::from_secs(30))
            .await
            .unwrap()
            .remove(0);
        let journal = store.journal(&claimed.id, claimed.attempt, claimed.epoch);
        let mut read = JournalEntry::new("1", StepKind::Now, "", Effect::Read);
        read.status = StepStatus::Ok;
        journal.write(&read).await.unwrap();
        let mut create = JournalEntry::new("2", StepKind::Call, "privx.create_user", Effect::Write);
        create.targets = 1;
        journal.write(&create).await.unwrap();
        let stopped = runbook_serve::store::Completion {
            status: RunStatus::NeedsAttention,
            result: None,
            error: Some("step 2 privx.create_user is in doubt".into()),
            error_kind: Some("needs_attention".into()),
            logs: json!([]),
            calls: json!([]),
            retry_at: None,
        };
        assert!(store.complete("w", &claimed.id, claimed.epoch, stopped).await.unwrap());
        queued.run_id
    };

    let shown = ws.run(&["runs", "show", &id]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    for expected in [
        "status      needs_attention",
        "steps (2):",
        "privx.create_user",
        "intent",
        &format!("runbook runs resolve {id} 2 --sent"),
    ] {
        assert!(
            shown.stdout.contains(expected),
            "missing {expected:?}:\n{}",
            shown.stdout
        );
    }
    let listed = ws
        .run(&["runs", "list", "--status", "needs_attention", "-o", "json"])
        .await;
    assert_eq!(listed.json().as_array().unwrap().len(), 1, "{listed:?}");

    let unset = ws.run(&["runs", "resolve", &id, "2", "--sent"]).await;
    assert_eq!(unset.code, Some(2), "{unset:?}");
    assert!(unset.stderr.contains("RUNBOOK_API_URL is unset"), "{}", unset.stderr);
    let neither = ws.run(&["runs", "resolve", &id, "2"]).await;
    assert_eq!(neither.code, Some(2), "{neither:?}");

    let server = Server::start(&ws).await;
    ws.set_env("RUNBOOK_API_URL", &server.url);
    ws.set_env("RUNBOOK_API_TOKEN", "not-the-token");
    let refused = ws.run(&["runs", "resolve", &id, "2", "--sent"]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("must be one of its API tokens"),
        "{}",
        refused.stderr
    );
    ws.set_env("RUNBOOK_API_TOKEN", TOKEN);
    let no_step = ws.run(&["runs", "resolve", &id, "7", "--sent"]).await;
    assert_eq!(no_step.code, Some(1), "{no_step:?}");
    assert!(no_step.stderr.contains("has no step 7"), "{}", no_step.stderr);
    let not_in_doubt = ws.run(&["runs", "resolve", &id, "1", "--not-sent"]).await;
    assert!(not_in_doubt.stderr.contains("not in doubt"), "{}", not_in_doubt.stderr);

    let resolved = ws.run(&["runs", "resolve", &id, "2", "--sent"]).await;
    assert_eq!(resolved.code, Some(0), "{resolved:?}");
    assert_eq!(resolved.stdout.trim(), id);
    let run = store(&ws).await.get(&id).await.unwrap().unwrap();
    assert_ne!(run.status, RunStatus::NeedsAttention, "the run was not queued again");
    let step = &run.steps[1];
    assert_eq!(
        (step.resolution, step.resolved_by.as_deref()),
        (Some(runbook_core::Resolution::Sent), Some("admin"))
    );
    let again = ws.run(&["runs", "resolve", &id, "2", "--sent"]).await;
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("not needs_attention"), "{}", again.stderr);
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}
