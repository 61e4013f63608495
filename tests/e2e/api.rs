//! The runs API as an operator (and an attacker) meets it: a real `runbook serve` on loopback,
//! named tokens with scopes, actors in history, Host and Origin checks, pause and cancel.

use std::time::{Duration, Instant};

use runbook_serve::store::{RunFilter, RunRecord, RunStatus, SqliteStore, Store};
use serde_json::{Value, json};

use crate::fixtures::{cf_id, tenant};
use crate::serve::{HOOK_SCRIPT, SECRET, Server, signed, wait_until, workspace_with};
use crate::support::{Sims, Workspace};

const READ_TOKEN: &str = "reader-token-5c1e8a0f9b2d47e6a3c8f1d0";
const RUN_TOKEN: &str = "operator-token-8e2d4c6a0b1f3e5d7c9a2b4d";
const ADMIN_TOKEN: &str = "admin-token-1f3e5d7c9a2b4d6f8e0a1c3e5b7d";

/// The manual automation's script: it needs a user id, and reads that user.
const LOOKUP: &str = "let who = param(\"who\", \"\", \"the user's id\");\n#{email: cloudflare::get_user(who).email}\n";

/// A script that keeps reading until it is stopped.
const SLOW: &str =
    "let who = param(\"who\", \"\", \"the user's id\");\nfor i in 0..500 { cloudflare::get_user(who); }\n\"done\"\n";

fn config(extra_serve: &str) -> String {
    let admin_sha: String = runbook_serve::sha256(ADMIN_TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        r#"
[serve]
listen = "127.0.0.1:0"
store = "sqlite://runbook.db"
workers = 2
grace = "5s"
lease = "3s"
poll_interval = "100ms"
{extra_serve}

[[serve.tokens]]
name = "reader"
token = "${{READ_TOKEN}}"
scopes = ["read"]

[[serve.tokens]]
name = "operator"
token = "${{RUN_TOKEN}}"
scopes = ["read", "run"]

[[serve.tokens]]
name = "boss"
token_sha256 = "{admin_sha}"
scopes = ["admin"]

[[automation]]
name = "hook"
script = "hook.rhai"
retries = 0
trigger = {{ webhook = "/hooks/siem", secret = "${{SIEM_SECRET}}", id_header = "X-Delivery-Id" }}

[[automation]]
name = "lookup"
script = "lookup.rhai"
retries = 0
trigger = {{ webhook = "/hooks/lookup", secret = "${{SIEM_SECRET}}" }}

[[automation]]
name = "slow"
script = "slow.rhai"
retries = 0
trigger = {{ webhook = "/hooks/slow", secret = "${{SIEM_SECRET}}" }}
"#
    )
}

fn workspace(sims: &Sims, extra_serve: &str) -> Workspace {
    let mut ws = workspace_with(
        sims,
        &config(extra_serve),
        &[("hook.rhai", HOOK_SCRIPT), ("lookup.rhai", LOOKUP), ("slow.rhai", SLOW)],
    );
    ws.set_env("READ_TOKEN", READ_TOKEN);
    ws.set_env("RUN_TOKEN", RUN_TOKEN);
    ws
}

/// Sends `method path` with `token` (and a JSON body for a POST); the status and the answer.
async fn call(server: &Server, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", server.url);
    let mut request = match method {
        "GET" => client.get(url),
        _ => client.post(url).json(&body.unwrap_or_else(|| json!({}))),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn all_runs(ws: &Workspace) -> Vec<RunRecord> {
    SqliteStore::open_shared(&ws.path().join("runbook.db"))
        .await
        .unwrap()
        .list(&RunFilter {
            limit: 1000,
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

async fn status_of(server: &Server, id: &str) -> String {
    let (_, run) = call(server, "GET", &format!("/api/runs/{id}"), Some(READ_TOKEN), None).await;
    run["status"].as_str().unwrap_or_default().to_owned()
}

async fn wait_status(server: &Server, id: &str, want: &str) {
    wait_until(&format!("run {id} to be {want}"), Duration::from_secs(30), || async {
        status_of(server, id).await == want
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_acts_within_its_scopes_and_history_names_it() {
    let sims = Sims::start(tenant(2, 0)).await;
    let mut ws = workspace(&sims, "");
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();

    // No token, loopback or not: 401.
    let (status, answer) = call(&server, "GET", "/api/runs", None, None).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = call(
        &server,
        "GET",
        "/api/runs",
        Some("not-a-token-of-this-server-at-all"),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // A delivery carrying a secret-like field, and the webhook secret itself.
    let body = json!({"user_id": cf_id(1), "n": 1, "password": "hunter2-leaked-in-a-delivery", "note": SECRET});
    let delivered = signed(&client, &server.url, "/hooks/siem", "api-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 202);
    let first: Value = delivered.json().await.unwrap();
    let first = first["run_id"].as_str().unwrap().to_owned();
    wait_status(&server, &first, "succeeded").await;

    // read: lists and shows, without secrets; cannot retry, start or cancel.
    let (status, listed) = call(&server, "GET", "/api/runs", Some(READ_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["started_by"], "webhook", "{listed}");
    let (_, shown) = call(&server, "GET", &format!("/api/runs/{first}"), Some(READ_TOKEN), None).await;
    assert_eq!(shown["event"]["body"]["password"], "***", "{shown}");
    for text in [listed.to_string(), shown.to_string()] {
        assert!(!text.contains("hunter2-leaked"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
    let (status, refused) = call(
        &server,
        "POST",
        &format!("/api/runs/{first}/retry"),
        Some(READ_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("the run scope"),
        "{refused}"
    );
    let (status, _) = call(&server, "POST", "/api/automations/lookup/runs", Some(READ_TOKEN), None).await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        "POST",
        &format!("/api/runs/{first}/cancel"),
        Some(READ_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(all_runs(&ws).await.len(), 1, "a refused request queued a run");

    // run: retries and starts; the history names the token.
    let (status, retried) = call(
        &server,
        "POST",
        &format!("/api/runs/{first}/retry"),
        Some(RUN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 202, "{retried}");
    let retry = retried["run_id"].as_str().unwrap().to_owned();
    let (status, bad) = call(
        &server,
        "POST",
        "/api/automations/lookup/runs",
        Some(RUN_TOKEN),
        Some(json!({"params": {"whom": cf_id(2)}})),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("did you mean `who`"), "{bad}");
    let (status, started) = call(
        &server,
        "POST",
        "/api/automations/lookup/runs",
        Some(RUN_TOKEN),
        Some(json!({"params": {"who": cf_id(2)}})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let start = started["run_id"].as_str().unwrap().to_owned();
    wait_status(&server, &retry, "succeeded").await;
    wait_status(&server, &start, "succeeded").await;
    let (_, run) = call(&server, "GET", &format!("/api/runs/{start}"), Some(READ_TOKEN), None).await;
    assert_eq!(
        (run["started_by"].as_str(), run["trigger"].as_str()),
        (Some("operator"), Some("api"))
    );
    assert_eq!(run["result"]["email"], "user2@example.com");
    let shown = ws.run(&["runs", "show", &retry, "--output", "json"]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    let shown = shown.json();
    assert_eq!(shown["started_by"], "operator", "{shown}");
    assert_eq!(
        shown["event"]["body"]["password"], "***",
        "runs show --output json redacts as the API does"
    );
    assert!(!shown.to_string().contains(SECRET), "{shown}");
    let pretty = ws.run(&["runs", "show", &retry]).await;
    assert!(pretty.stdout.contains("started by  operator"), "{}", pretty.stdout);
    assert!(!pretty.stdout.contains("hunter2-leaked"), "{}", pretty.stdout);

    // A finished run cannot be cancelled; pausing needs admin (which the hashed token has).
    let (status, _) = call(
        &server,
        "POST",
        &format!("/api/runs/{first}/cancel"),
        Some(RUN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, refused) = call(&server, "POST", "/api/automations/hook/pause", Some(RUN_TOKEN), None).await;
    assert_eq!(status, 403);
    assert!(refused["error"].as_str().unwrap().contains("admin"), "{refused}");

    // The CLI: a read token is told which scope it lacks; the run token starts and cancels.
    ws.set_env("RUNBOOK_API_URL", &server.url);
    ws.set_env("RUNBOOK_API_TOKEN", READ_TOKEN);
    let out = ws.run(&["runs", "retry", &first]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("with the run scope"), "{}", out.stderr);
    ws.set_env("RUNBOOK_API_TOKEN", ADMIN_TOKEN);
    let out = ws.run(&["automations", "pause", "lookup"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    ws.set_env("RUNBOOK_API_TOKEN", RUN_TOKEN);
    let out = ws
        .run(&["runs", "start", "lookup", "--param", &format!("who={}", cf_id(1))])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let held = out.stdout.trim().to_owned();
    let out = ws.run(&["runs", "cancel", &held]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("will not start"), "{}", out.stderr);
    ws.set_env("RUNBOOK_API_TOKEN", ADMIN_TOKEN);
    assert_eq!(ws.run(&["automations", "resume", "lookup"]).await.code, Some(0));
    let listed = ws.run(&["automations", "list", "-o", "json"]).await.json();
    let lookup = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "lookup")
        .unwrap();
    assert_eq!(
        (lookup["paused"].as_bool(), lookup["changed_by"].as_str()),
        (Some(false), Some("boss"))
    );
    // Resumed, the cancelled run still never starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run = all_runs(&ws).await.into_iter().find(|r| r.id == held).unwrap();
    assert_eq!(
        (
            run.status,
            run.attempts,
            run.cancelled_by.as_deref(),
            run.started_by.as_str()
        ),
        (RunStatus::Cancelled, 0, Some("operator"), "operator")
    );
    assert!(
        server.log().contains("operator"),
        "the log names the actor:\n{}",
        server.log()
    );
    for token in [READ_TOKEN, RUN_TOKEN, ADMIN_TOKEN] {
        assert!(!server.log().contains(token), "a token is in the log");
    }
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn rebinding_and_cross_origin_requests_are_refused() {
    let sims = Sims::start(tenant(1, 0)).await;
    let ws = workspace(&sims, "public_url = \"https://runbook.example.com\"");
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let delivered = signed(
        &client,
        &server.url,
        "/hooks/siem",
        "x-1",
        &json!({"user_id": cf_id(1), "n": 1}),
    )
    .send()
    .await
    .unwrap();
    let id = delivered.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&server, &id, "succeeded").await;
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let get = |host: &str| {
        client
            .get(format!("{}/api/runs", server.url))
            .header("Host", host)
            .bearer_auth(READ_TOKEN)
            .send()
    };
    // A name that points here only through an attacker's DNS.
    let foreign = get(&format!("evil.example:{port}")).await.unwrap();
    assert_eq!(foreign.status(), 421);
    assert!(foreign.text().await.unwrap().contains("public_url"));
    for host in [format!("localhost:{port}"), "runbook.example.com".to_owned()] {
        assert_eq!(get(&host).await.unwrap().status(), 200, "{host}");
    }

    // A cross-origin HTML form: urlencoded, with the attacker's Origin (and, were it able to,
    // the token): refused, and nothing is retried.
    let retry = format!("{}/api/runs/{id}/retry", server.url);
    let form = client
        .post(&retry)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", "http://evil.example")
        .bearer_auth(RUN_TOKEN)
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);
    let no_origin = client
        .post(&retry)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .bearer_auth(RUN_TOKEN)
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(no_origin.status(), 415);
    assert!(no_origin.text().await.unwrap().contains("application/json"));
    let json_evil = client
        .post(&retry)
        .header("Origin", "http://evil.example")
        .bearer_auth(RUN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_evil.status(), 403);
    assert_eq!(all_runs(&ws).await.len(), 1, "a refused request retried the run");
    // The server's own origins may.
    for origin in ["https://runbook.example.com".to_owned(), server.url.clone()] {
        let own = client
            .post(&retry)
            .header("Origin", origin.as_str())
            .bearer_auth(RUN_TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 202, "{origin}");
    }
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test]
async fn without_a_token_the_api_refuses_everyone_and_a_short_token_stops_serve() {
    let sims = Sims::start(tenant(1, 0)).await;
    let plain = "[serve]\nlisten = \"127.0.0.1:0\"\n\n[[automation]]\nname = \"hook\"\nscript = \"hook.rhai\"\n\
                 trigger = { webhook = \"/hooks/siem\", secret = \"${SIEM_SECRET}\" }\n";
    let ws = workspace_with(&sims, plain, &[("hook.rhai", HOOK_SCRIPT)]);
    let server = Server::start(&ws).await;
    let (status, answer) = call(&server, "GET", "/api/runs", Some(READ_TOKEN), None).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"].as_str().unwrap().contains("openssl rand -hex 32"),
        "{answer}"
    );
    assert!(server.log().contains("no API token is configured"), "{}", server.log());
    assert_eq!(server.stop().await, Some(0));

    // `runbook token new` makes a token and the entry that names it by its SHA-256 alone.
    let made = ws.run(&["token", "new", "ci-reader", "--scope", "read"]).await;
    assert_eq!(made.code, Some(0), "{made:?}");
    let token = made.stdout.trim().to_owned();
    assert!(token.len() >= 32 && !made.stderr.contains(&token), "{made:?}");
    let entry: String = made
        .stderr
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    ws.file("runbook.toml", &format!("{plain}\n{entry}\n"));
    let server = Server::start(&ws).await;
    let (status, _) = call(&server, "GET", "/api/runs", Some(&token), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, "POST", "/api/automations/hook/pause", Some(&token), None).await;
    assert_eq!(status, 403);
    assert_eq!(server.stop().await, Some(0));

    let short = plain.replace("listen", "api_token = \"too-short-a-token\"\nlisten");
    let ws = workspace_with(&sims, &short, &[("hook.rhai", HOOK_SCRIPT)]);
    let out = ws.run(&["serve"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("at least 32"), "{}", out.stderr);
    assert!(out.stderr.contains("openssl rand -hex 32"), "{}", out.stderr);
    assert!(!out.stderr.contains("too-short-a-token"), "{}", out.stderr);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_automation_keeps_its_deliveries_across_a_restart_and_runs_them_when_resumed() {
    let sims = Sims::start(tenant(3, 0)).await;
    let mut ws = workspace(&sims, "");
    let server = Server::start(&ws).await;
    ws.set_env("RUNBOOK_API_URL", &server.url);
    ws.set_env("RUNBOOK_API_TOKEN", ADMIN_TOKEN);
    let out = ws.run(&["automations", "pause", "hook"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let client = reqwest::Client::new();
    for i in 1..=3 {
        let r = signed(
            &client,
            &server.url,
            "/hooks/siem",
            &format!("p-{i}"),
            &json!({"user_id": cf_id(i), "n": i}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 202, "a paused automation still accepts deliveries");
    }
    // Several claim rounds pass; nothing starts.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        all_runs(&ws)
            .await
            .iter()
            .all(|r| r.status == RunStatus::Queued && r.attempts == 0)
    );
    assert_eq!(server.stop().await, Some(0));

    // The pause is in the store: a restarted server holds the runs too.
    let server = Server::start(&ws).await;
    ws.set_env("RUNBOOK_API_URL", &server.url);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let runs = all_runs(&ws).await;
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == RunStatus::Queued), "{runs:?}");
    let listed = ws.run(&["automations", "list", "-o", "json"]).await.json();
    let hook = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "hook")
        .unwrap()
        .clone();
    assert_eq!(
        (hook["paused"].as_bool(), hook["changed_by"].as_str()),
        (Some(true), Some("boss"))
    );

    let out = ws.run(&["automations", "resume", "hook"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    wait_until("the held runs", Duration::from_secs(30), || async {
        all_runs(&ws)
            .await
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            == 3
    })
    .await;
    assert_eq!(all_runs(&ws).await.len(), 3, "one run per delivery, nothing lost");
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_cancelled_within_one_heartbeat() {
    let sims = Sims::start(tenant(1, 0)).await;
    let ws = workspace(&sims, "");
    sims.cf().set_latency(Duration::from_millis(200));
    let server = Server::start(&ws).await;
    let (status, started) = call(
        &server,
        "POST",
        "/api/automations/slow/runs",
        Some(RUN_TOKEN),
        Some(json!({"params": {"who": cf_id(1)}})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = started["run_id"].as_str().unwrap().to_owned();
    wait_status(&server, &id, "running").await;
    wait_until("a few calls of the slow run", Duration::from_secs(30), || async {
        sims.cf().requests().len() >= 3
    })
    .await;
    let (status, answer) = call(
        &server,
        "POST",
        &format!("/api/runs/{id}/cancel"),
        Some(RUN_TOKEN),
        None,
    )
    .await;
    let asked = Instant::now();
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("cancelling")),
        "{answer}"
    );
    wait_status(&server, &id, "cancelled").await;
    let took = asked.elapsed();
    // The lease is 3s; heartbeats go every third of it, then the call in flight (200ms) finishes
    // and the end is recorded: well inside the lease, which is the bound a worker keeps.
    let (heartbeat, lease) = (Duration::from_secs(1), Duration::from_secs(3));
    assert!(
        took < lease,
        "cancelled after {took:?}: more than the lease ({lease:?}), for a heartbeat every {heartbeat:?}"
    );
    eprintln!("a running run stopped {took:?} after its cancel was answered (heartbeat every {heartbeat:?})");
    let (_, run) = call(&server, "GET", &format!("/api/runs/{id}"), Some(READ_TOKEN), None).await;
    assert_eq!(run["cancelled_by"], "operator", "{run}");
    let steps = run["steps"].as_array().unwrap();
    assert!(steps.len() < 500, "the run went on to its end");
    assert!(
        steps.iter().all(|s| s["status"] == "ok"),
        "a call in flight was not journaled: {steps:?}"
    );
    // It stays cancelled: nothing retries it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of(&server, &id).await, "cancelled");
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_with_overlap_cancel_cancels_the_run_still_going() {
    let sims = Sims::start(tenant(1, 0)).await;
    let ws = workspace(&sims, "");
    ws.file(
        "runbook.toml",
        &format!(
            "{}\n[[automation]]\nname = \"sweep\"\nscript = \"slow.rhai\"\nretries = 0\nparams = {{ who = \"{}\" }}\n\
             overlap = \"cancel\"\ntrigger = {{ every = \"1s\" }}\n",
            config(""),
            cf_id(1)
        ),
    );
    sims.cf().set_latency(Duration::from_millis(200));
    let server = Server::start(&ws).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let cancelled = loop {
        let (_, runs) = call(&server, "GET", "/api/runs?automation=sweep", Some(READ_TOKEN), None).await;
        if let Some(id) = runs
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["status"] == "cancelled")
            .and_then(|r| r["id"].as_str())
        {
            break id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no sweep run was cancelled by a later tick: {runs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = cancelled;
    let (_, run) = call(&server, "GET", &format!("/api/runs/{id}"), Some(READ_TOKEN), None).await;
    assert_eq!(run["cancelled_by"], "schedule", "{run}");
    assert!(
        run["steps"].as_array().unwrap().iter().all(|s| s["status"] == "ok"),
        "a call in flight of the cancelled run was not journaled: {run}"
    );
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_sent_again_with_its_idempotency_key_is_one_run() {
    let sims = Sims::start(tenant(1, 0)).await;
    let mut ws = workspace(&sims, "");
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let start = |key: &str| {
        client
            .post(format!("{}/api/automations/lookup/runs", server.url))
            .bearer_auth(RUN_TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({"params": {"who": cf_id(1)}}))
            .send()
    };
    let first = start("start-7f3a").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = start("start-7f3a").await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (again["run_id"].clone(), again["duplicate"].clone()),
        (first["run_id"].clone(), json!(true))
    );
    let other = start("start-other").await.unwrap();
    assert_eq!(other.status(), 202, "another key is another start");
    let bad = start(&"k".repeat(201)).await.unwrap();
    assert_eq!(bad.status(), 400);
    let (_, runs) = call(&server, "GET", "/api/runs?automation=lookup", Some(READ_TOKEN), None).await;
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    // The CLI sends a key of its own.
    ws.set_env("RUNBOOK_API_URL", &server.url);
    ws.set_env("RUNBOOK_API_TOKEN", RUN_TOKEN);
    let out = ws
        .run(&["runs", "start", "lookup", "--param", &format!("who={}", cf_id(1))])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let (_, runs) = call(&server, "GET", "/api/runs?automation=lookup", Some(READ_TOKEN), None).await;
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs}");
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}
