//! Approvals in `runbook serve` as a security team meets them: a real server process, named
//! tokens, the simulators' request logs as the proof of what was sent, a restart while a run
//! waits, and a loopback receiver for the `notify` URL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::tenant;
use crate::serve::{Server, wait_until, workspace_with};
use crate::support::{Sims, Workspace};

const ALICE: &str = "alice-token-0c3e5a7b9d1f2e4c6a8b0d2f4e6a";
const BOB: &str = "bob-token-7d9f1b3c5e7a9c1e3b5d7f9a1c3e5b";
const CAROL: &str = "carol-token-2e4a6c8e0b2d4f6a8c0e2b4d6f8a";
const READER: &str = "reader-token-9a1c3e5b7d9f1a3c5e7b9d1f3a5c";
const BOSS: &str = "boss-token-4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f";

/// Deletes the Cloudflare users whose email or name contains `match`: destructive, one change
/// per user found.
const DELETE: &str = r#"let m = param("match", "", "what the users' emails contain");
let gone = [];
for u in cloudflare::list_users(#{search: m}) {
    cloudflare::delete_user(u.id);
    gone.push(u.email);
}
gone
"#;

fn config(notify: &str) -> String {
    format!(
        r#"
[serve]
listen = "127.0.0.1:0"
store = "sqlite://runbook.db"
workers = 2
grace = "5s"
lease = "3s"
poll_interval = "100ms"

[[serve.tokens]]
name = "alice"
token = "${{ALICE_TOKEN}}"
scopes = ["read", "run", "approve"]

[[serve.tokens]]
name = "bob"
token = "${{BOB_TOKEN}}"
scopes = ["read", "approve"]

[[serve.tokens]]
name = "carol"
token = "${{CAROL_TOKEN}}"
scopes = ["read", "approve"]

[[serve.tokens]]
name = "reader"
token = "${{READER_TOKEN}}"
scopes = ["read"]

[[serve.tokens]]
name = "boss"
token = "${{BOSS_TOKEN}}"
scopes = ["admin"]

[[automation]]
name = "offboard"
script = "delete.rhai"
retries = 0
concurrency = 1
approval = {{ approvers = ["alice", "bob"], required = 1 }}
notify = "{notify}"
trigger = {{ webhook = "/hooks/offboard", secret = "${{SIEM_SECRET}}" }}

[[automation]]
name = "pair"
script = "delete.rhai"
retries = 0
approval = {{ approvers = ["bob", "carol"], required = 2 }}
trigger = {{ webhook = "/hooks/pair", secret = "${{SIEM_SECRET}}" }}

[[automation]]
name = "budgeted"
script = "delete.rhai"
retries = 0
max_changes_per_day = 1
approval = {{ approvers = ["bob"] }}
trigger = {{ webhook = "/hooks/budgeted", secret = "${{SIEM_SECRET}}" }}

[[automation]]
name = "quick"
script = "delete.rhai"
retries = 0
approval = {{ approvers = ["bob"], expires = "2s" }}
trigger = {{ webhook = "/hooks/quick", secret = "${{SIEM_SECRET}}" }}
"#
    )
}

fn workspace(sims: &Sims, notify: &str) -> Workspace {
    let mut ws = workspace_with(sims, &config(notify), &[("delete.rhai", DELETE)]);
    for (var, token) in [
        ("ALICE_TOKEN", ALICE),
        ("BOB_TOKEN", BOB),
        ("CAROL_TOKEN", CAROL),
        ("READER_TOKEN", READER),
        ("BOSS_TOKEN", BOSS),
    ] {
        ws.set_env(var, token);
    }
    ws
}

/// A loopback receiver for `notify`: every POST body it got, as JSON.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notices", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = conn.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some(end) = text.find("\r\n\r\n") else { continue };
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + length {
                            continue;
                        }
                        let body: Value =
                            serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                        kept.lock().unwrap().push(body);
                        let _ = conn
                            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                });
            }
        });
        Receiver { url, got }
    }

    fn events(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|n| n["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn call(server: &Server, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", server.url);
    let request = match body {
        None => client.get(url),
        Some(body) => client.post(url).json(&body),
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn start(server: &Server, automation: &str, matching: &str) -> String {
    let (status, answer) = call(
        server,
        &format!("/api/automations/{automation}/runs"),
        ALICE,
        Some(json!({"params": {"match": matching}})),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    answer["run_id"].as_str().unwrap().to_owned()
}

async fn run(server: &Server, id: &str) -> Value {
    call(server, &format!("/api/runs/{id}"), READER, None).await.1
}

async fn wait_status(server: &Server, id: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = run(server, id).await;
        if now["status"] == want {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {id} is not {want}: status {}, error {}\n{}",
            now["status"],
            now["error"],
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Cloudflare simulator's requests that changed something: `DELETE /…/users/ID` and the like.
fn writes(sims: &Sims) -> Vec<String> {
    sims.cf()
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The requests a plan's effects stand for, in order.
fn effects_as_requests(sims: &Sims, run: &Value) -> Vec<String> {
    run["approval"]["plan"]["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["action"], "cloudflare.delete_user", "{e}");
            format!(
                "DELETE /client/v4/accounts/{}/access/users/{}",
                sims.cf().account_id(),
                e["args"]["user_id"].as_str().unwrap()
            )
        })
        .collect()
}

/// `runbook runs approve|reject` as an approver runs it, with their own token.
async fn decide_cli(
    ws: &Workspace,
    server: &Server,
    verb: &str,
    id: &str,
    token: &str,
    comment: &str,
) -> crate::support::Output {
    let out = ws
        .command(&["runs", verb, id, "--comment", comment])
        .env("RUNBOOK_API_URL", &server.url)
        .env("RUNBOOK_API_TOKEN", token)
        .output()
        .await
        .unwrap();
    crate::support::Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_another_named_approver_can_approve_and_the_apply_sends_exactly_the_plan_once() {
    let sims = Sims::start(tenant(3, 0)).await;
    let notices = Receiver::start().await;
    let ws = workspace(&sims, &notices.url);
    let server = Server::start(&ws).await;

    let started = std::time::Instant::now();
    let id = start(&server, "offboard", "user1").await;
    let waiting = wait_status(&server, &id, "awaiting_approval").await;
    let to_wait = started.elapsed();
    assert!(writes(&sims).is_empty(), "a plan sends nothing: {:?}", writes(&sims));
    let effects = waiting["approval"]["plan"]["effects"].as_array().unwrap().clone();
    assert_eq!(effects.len(), 1, "{waiting}");
    assert_eq!(effects[0]["labels"][0]["label"], "user1@example.com", "{waiting}");
    let digest = waiting["approval"]["plan"]["effects_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(waiting["approval"]["expires_at"].is_i64(), "{waiting}");
    wait_until("the notice of a waiting run", Duration::from_secs(10), || async {
        notices.events().contains(&"awaiting_approval".to_owned())
    })
    .await;
    let notice = notices.got.lock().unwrap()[0].clone();
    assert_eq!(notice["run_id"], id.as_str(), "{notice}");
    assert_eq!(notice["changes"], 1, "{notice}");

    // Who may not: a read token, the admin (admin does not imply approve), an approve token not
    // among the approvers, and the requester herself.
    let path = format!("/api/runs/{id}/approve");
    for (token, what) in [
        (READER, "approve scope"),
        (BOSS, "approve scope"),
        (CAROL, "its approvers are alice, bob"),
        (ALICE, "may not approve it"),
    ] {
        let (status, answer) = call(&server, &path, token, Some(json!({"comment": "lgtm"}))).await;
        assert_eq!(status, 403, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(what), "{answer}");
    }
    // A decision on a plan the approver did not review is refused.
    let (status, answer) = call(&server, &path, BOB, Some(json!({"effects_sha256": "0000"}))).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(run(&server, &id).await["status"], "awaiting_approval");
    assert!(writes(&sims).is_empty());

    // Bob approves through the CLI: the run applies exactly the plan.
    let approving = std::time::Instant::now();
    let out = decide_cli(&ws, &server, "approve", &id, BOB, "offboarding ticket SEC-42").await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("approved by bob"), "{}", out.all());
    let done = wait_status(&server, &id, "succeeded").await;
    eprintln!(
        "approval: start to awaiting_approval {to_wait:?}; runs approve (a CLI process) to applied {:?}",
        approving.elapsed()
    );
    assert_eq!(
        writes(&sims),
        effects_as_requests(&sims, &waiting),
        "the writes are the plan's effects"
    );
    let decisions = done["approval"]["approvals"].as_array().unwrap();
    assert_eq!(decisions.len(), 1, "{done}");
    assert_eq!(decisions[0]["approver"], "bob");
    assert_eq!(decisions[0]["decision"], "approve");
    assert_eq!(decisions[0]["comment"], "offboarding ticket SEC-42");
    assert_eq!(decisions[0]["effects_sha256"], digest.as_str());
    assert_eq!(done["result"], json!(["user1@example.com"]), "{done}");

    // An approval is used once.
    let (status, answer) = call(&server, &path, BOB, Some(json!({}))).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("succeeded"), "{answer}");
    let out = decide_cli(&ws, &server, "approve", &id, BOB, "again").await;
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert_eq!(writes(&sims).len(), 1, "nothing sent twice");

    // The history shows the plan and the decision.
    let out = ws.run(&["runs", "show", &id]).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout.contains("cloudflare.delete_user × 1 target"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("bob approved"), "{}", out.stdout);
    assert!(out.stdout.contains("offboarding ticket SEC-42"), "{}", out.stdout);

    assert_eq!(server.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_or_expired_plan_sends_nothing() {
    let sims = Sims::start(tenant(3, 0)).await;
    let notices = Receiver::start().await;
    let ws = workspace(&sims, &notices.url);
    let server = Server::start(&ws).await;

    let rejected = start(&server, "offboard", "user2").await;
    let expiring = start(&server, "quick", "user3").await;
    wait_status(&server, &rejected, "awaiting_approval").await;
    wait_status(&server, &expiring, "awaiting_approval").await;

    let out = decide_cli(&ws, &server, "reject", &rejected, BOB, "wrong person").await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    let done = wait_status(&server, &rejected, "rejected").await;
    assert!(done["error"].as_str().unwrap().contains("rejected by bob"), "{done}");
    assert_eq!(done["approval"]["approvals"][0]["decision"], "reject", "{done}");
    let (status, _) = call(
        &server,
        &format!("/api/runs/{rejected}/approve"),
        ALICE,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403, "alice started it");
    let (status, answer) = call(&server, &format!("/api/runs/{rejected}/approve"), BOB, Some(json!({}))).await;
    assert_eq!(status, 409, "{answer}");

    let done = wait_status(&server, &expiring, "expired").await;
    assert!(done["error"].as_str().unwrap().contains("expired"), "{done}");
    let (status, answer) = call(&server, &format!("/api/runs/{expiring}/approve"), BOB, Some(json!({}))).await;
    assert_eq!(status, 409, "{answer}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(writes(&sims).is_empty(), "{:?}", writes(&sims));
    assert_eq!(sims.cf().users().len(), 3);
    assert_eq!(server.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_holds_no_slot_survives_a_restart_and_a_changed_service_needs_fresh_approval() {
    let sims = Sims::start(tenant(3, 0)).await;
    let notices = Receiver::start().await;
    let ws = workspace(&sims, &notices.url);
    let server = Server::start(&ws).await;

    let waiting = start(&server, "offboard", "user1").await;
    wait_status(&server, &waiting, "awaiting_approval").await;
    // concurrency = 1, and the waiting run holds no slot: another run of it plans and, having
    // nothing to change, succeeds without waiting for anyone.
    let other = start(&server, "offboard", "nobody-matches").await;
    let done = wait_status(&server, &other, "succeeded").await;
    assert!(done["approval"].is_null(), "{done}");

    // A restart loses nothing.
    assert_eq!(server.stop().await, Some(0));
    let server = Server::start(&ws).await;
    let before = wait_status(&server, &waiting, "awaiting_approval").await;
    assert_eq!(before["approval"]["round"], 1);

    // The service changes before the approval: another user matches now.
    let created = reqwest::Client::new()
        .post(format!(
            "{}/accounts/{}/access/users",
            sims.cf().base_url(),
            sims.cf().account_id()
        ))
        .bearer_auth(sims.cf().api_token())
        .json(&json!({"email": "user1b@example.com", "name": "User 1b"}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    sims.cf().clear_requests();

    let (status, answer) = call(&server, &format!("/api/runs/{waiting}/approve"), BOB, Some(json!({}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "queued", "{answer}");
    let stale = wait_until("the fresh plan", Duration::from_secs(30), || async {
        run(&server, &waiting).await["approval"]["round"] == 2
    });
    stale.await;
    let replanned = run(&server, &waiting).await;
    assert_eq!(replanned["status"], "awaiting_approval", "{replanned}");
    assert!(writes(&sims).is_empty(), "nothing was sent: {:?}", writes(&sims));
    assert_eq!(replanned["approval"]["diff"]["added"], 1, "{replanned}");
    assert!(
        replanned["approval"]["diff"]["text"]
            .as_str()
            .unwrap()
            .contains("user1b@example.com"),
        "{replanned}"
    );
    assert_eq!(replanned["approval"]["plan"]["effects"].as_array().unwrap().len(), 2);
    wait_until("the notice of the changed plan", Duration::from_secs(10), || async {
        notices.events().contains(&"plan_changed".to_owned())
    })
    .await;
    let out = ws.run(&["runs", "show", &waiting]).await;
    assert!(out.stdout.contains("the services changed"), "{}", out.stdout);

    // A fresh approval of the fresh plan applies it, exactly.
    let (status, answer) = call(
        &server,
        &format!("/api/runs/{waiting}/approve"),
        BOB,
        Some(json!({"comment": "still right"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let done = wait_status(&server, &waiting, "succeeded").await;
    assert_eq!(writes(&sims), effects_as_requests(&sims, &replanned));
    assert_eq!(done["approval"]["approvals"].as_array().unwrap().len(), 2, "{done}");
    assert_eq!(server.stop().await, Some(0));
}

/// The shipped offboarding script under `runbook serve`, as the README configures it: a webhook
/// names the person, the plan waits, an approver approves, and the apply — killed half-way and
/// resumed by the next server — sends exactly the plan's changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_offboarding_waits_for_approval_and_survives_a_kill_mid_apply() {
    let sims = Sims::start(crate::fixtures::scripted_tenant()).await;
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/offboard_user.rhai")).unwrap();
    let config = config("http://127.0.0.1:9/unused").replace(
        "script = \"delete.rhai\"\nretries = 0\nconcurrency = 1",
        "script = \"offboard_user.rhai\"\nparams = { delete = true }\nretries = 1\nconcurrency = 1",
    );
    let mut ws = workspace_with(
        &sims,
        &config,
        &[("offboard_user.rhai", &script), ("delete.rhai", DELETE)],
    );
    for (var, token) in [
        ("ALICE_TOKEN", ALICE),
        ("BOB_TOKEN", BOB),
        ("CAROL_TOKEN", CAROL),
        ("READER_TOKEN", READER),
        ("BOSS_TOKEN", BOSS),
    ] {
        ws.set_env(var, token);
    }
    let server = Server::start(&ws).await;
    let client = reqwest::Client::new();
    let answer = crate::serve::signed(
        &client,
        &server.url,
        "/hooks/offboard",
        "hr-4711",
        &json!({"email": "ann@example.com"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let id = answer.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = wait_status(&server, &id, "awaiting_approval").await;
    let effects = waiting["approval"]["plan"]["effects"].as_array().unwrap().clone();
    let actions: Vec<&str> = effects.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"cloudflare.delete_user") && actions.contains(&"privx.disable_mfa"),
        "{actions:?}"
    );
    assert_eq!(sims.changes(), 0, "the plan sent nothing");

    // Slow services, so that the apply is caught half-way.
    sims.cf().set_latency(Duration::from_millis(250));
    sims.px().set_latency(Duration::from_millis(250));
    let (status, answer) = call(
        &server,
        &format!("/api/runs/{id}/approve"),
        ALICE,
        Some(json!({"comment": "HR 4711"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    wait_until(
        "the apply to send its first changes",
        Duration::from_secs(30),
        || async { sims.changes() >= 2 },
    )
    .await;
    server.kill().await;
    let sent_before = sims.changes();
    assert!(sent_before < effects.len(), "the kill came too late to test a resume");

    sims.cf().set_latency(Duration::ZERO);
    sims.px().set_latency(Duration::ZERO);
    let server = Server::start(&ws).await;
    let done = wait_status(&server, &id, "succeeded").await;
    assert_eq!(done["result"]["cloudflare"]["deleted"], true, "{done}");
    assert!(sims.cf().user(&crate::fixtures::cf_id(1)).is_none());
    let ann = sims.px().user("eef4aefc-0000-4000-8000-000000000001").unwrap();
    assert_eq!(ann["mfa"]["status"], "DISABLED");

    // Every approved change was sent, and nothing else: the one in flight at the kill (an
    // idempotent call in doubt) may have been sent again, no other.
    let mut writes: Vec<String> = sims
        .cf()
        .requests()
        .iter()
        .chain(sims.px().requests().iter())
        .filter(|r| {
            r.method != "GET"
                && !r.path.ends_with("/search")
                && !r.path.ends_with("/token")
                && !r.path.ends_with("/roles/resolve")
        })
        .map(|r| format!("{} {} {}", r.method, r.path, r.body.clone().unwrap_or_default()))
        .collect();
    let total = writes.len();
    writes.sort();
    writes.dedup();
    assert_eq!(writes.len(), effects.len(), "{writes:#?}");
    assert!(
        total <= effects.len() + 1,
        "{total} writes for {} effects",
        effects.len()
    );
    eprintln!(
        "offboarding with approval: {} effects planned; {sent_before} sent before the kill; {total} writes in all, \
         {} distinct; {} attempts",
        effects.len(),
        writes.len(),
        done["attempts"]
    );
    assert_eq!(server.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_required_approvals_come_from_two_distinct_approvers() {
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = workspace(&sims, "http://127.0.0.1:9/unused");
    let server = Server::start(&ws).await;
    let (status, answer) = call(
        &server,
        "/api/automations/pair/runs",
        BOSS,
        Some(json!({"params": {"match": "user2"}})),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["run_id"].as_str().unwrap().to_owned();
    wait_status(&server, &id, "awaiting_approval").await;
    let path = format!("/api/runs/{id}/approve");

    let (status, answer) = call(&server, &path, BOB, Some(json!({"comment": "one"}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["status"].as_str(), answer["approvals"].as_u64()),
        (Some("awaiting_approval"), Some(1))
    );
    let (status, answer) = call(&server, &path, BOB, Some(json!({"comment": "twice"}))).await;
    assert_eq!(status, 409, "an approver counts once: {answer}");
    let out = ws.run(&["runs", "show", &id]).await;
    assert!(out.stdout.contains("waiting for approval (1 so far)"), "{}", out.stdout);
    assert!(writes(&sims).is_empty());

    let (status, answer) = call(&server, &path, CAROL, Some(json!({"comment": "two"}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "queued", "{answer}");
    let done = wait_status(&server, &id, "succeeded").await;
    assert_eq!(writes(&sims), effects_as_requests(&sims, &done));
    assert_eq!(server.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_the_daily_budget_waits_for_approval_and_applies_once_approved() {
    let sims = Sims::start(tenant(3, 0)).await;
    let notices = Receiver::start().await;
    let ws = workspace(&sims, &notices.url);
    let server = Server::start(&ws).await;

    // Three deletions against a budget of one a day: a person decides, not the budget.
    let id = start(&server, "budgeted", "user").await;
    let waiting = wait_status(&server, &id, "awaiting_approval").await;
    assert!(waiting.to_string().contains("budget"), "{waiting}");
    assert!(writes(&sims).is_empty(), "{:?}", writes(&sims));

    let out = decide_cli(&ws, &server, "approve", &id, BOB, "offboarding day").await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    wait_status(&server, &id, "succeeded").await;
    assert_eq!(writes(&sims).len(), 3, "{:?}", writes(&sims));
    assert_eq!(server.stop().await, Some(0));
}
