//! `runbook run` / `runbook plan` as a user runs them, against the simulators.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixtures::{cf_id, tenant};
use crate::support::Sims;

const CF_TOKEN: &str = "cf-e2e-secret-token-91f3c7";
const PX_API_SECRET: &str = "px-e2e-api-secret-5d0b2e";
const PX_OAUTH_SECRET: &str = "px-e2e-oauth-secret-a7c4d1";

/// A tenant whose credentials are distinctive, to look for them in every output.
fn secret_tenant(users: usize) -> serde_json::Value {
    let mut t = tenant(users, 0);
    t["cloudflare"]["api_token"] = json!(CF_TOKEN);
    t["privx"]["api_client_secret"] = json!(PX_API_SECRET);
    t["privx"]["oauth_client_secret"] = json!(PX_OAUTH_SECRET);
    t
}

#[tokio::test]
async fn plan_sends_no_change_and_run_sends_exactly_one() {
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = sims.workspace();
    ws.file(
        "disable.rhai",
        &format!(
            "let u = cloudflare::get_user(\"{}\");\ncloudflare::delete_user(u.id);\nu.email\n",
            cf_id(2)
        ),
    );
    let plan = ws.run(&["plan", "disable.rhai"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert!(
        plan.stdout.contains("Plan: 1 change to 1 target. Nothing was sent."),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("cloudflare.delete_user") && plan.stdout.contains("destructive"),
        "{}",
        plan.stdout
    );
    assert_eq!(sims.changes(), 0);
    assert!(sims.cf().user(&cf_id(2)).is_some());

    let run = ws.run(&["run", "disable.rhai", "-o", "json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let doc = run.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["result"], "user2@example.com");
    assert_eq!(doc["calls"], 2);
    assert_eq!(doc["planned_changes"], json!([]));
    assert_eq!(sims.changes(), 1);
    assert!(sims.cf().user(&cf_id(2)).is_none());
    sims.shutdown().await;
}

#[tokio::test]
async fn the_guard_stops_the_run_before_the_call_that_passes_the_cap() {
    let sims = Sims::start(tenant(5, 0)).await;
    let ws = sims.workspace();
    ws.file("three.rhai", "for u in cloudflare::list_users().filter(|u| u.email != \"user5@example.com\").extract(0, 3) {\n    cloudflare::delete_user(u.id);\n}\n");
    let out = ws.run(&["run", "three.rhai", "--max-changes", "2", "-o", "json"]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.json()["status"], "refused");
    assert!(
        out.stderr.contains("three.rhai:2:")
            && out
                .stderr
                .contains("the blast-radius guard refused cloudflare.delete_user")
            && out.stderr.contains("(raise --max-changes if this is intended)"),
        "{}",
        out.stderr
    );
    assert_eq!(sims.changes(), 2, "the server saw a change beyond the cap");
    assert_eq!(sims.cf().users().len(), 3);
    sims.shutdown().await;
}

#[tokio::test]
async fn sigint_during_a_slow_call_ends_the_run_promptly() {
    let sims = Sims::start(tenant(1, 0)).await;
    sims.cf().set_latency(Duration::from_secs(30));
    let ws = sims.workspace();
    ws.file("slow.rhai", &format!("cloudflare::get_user(\"{}\")", cf_id(1)));
    let child = ws
        .command(&["run", "slow.rhai"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the call is in flight at the simulator.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sims.cf().max_in_flight() == 0 {
        assert!(Instant::now() < deadline, "the call never reached the simulator");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap().to_string();
    let sent = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the run did not stop after SIGINT")
        .unwrap();
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("the run was interrupted"), "{stderr}");
    // The call would have taken 30 s; the run ended as soon as it was cancelled.
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    eprintln!("SIGINT to exit: {took:?}");
    sims.shutdown().await;
}

#[tokio::test]
async fn parallel_calls_overlap_at_the_server() {
    let sims = Sims::start(tenant(40, 0)).await;
    sims.cf().set_latency(Duration::from_millis(50));
    let ws = sims.workspace();
    ws.file(
        "fan.rhai",
        "parallel(cloudflare::list_users(), |u| cloudflare::failed_logins(u.id).len()).len()",
    );
    let out = ws.run(&["run", "fan.rhai", "--concurrency", "8"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "40");
    let most = sims.cf().max_in_flight();
    assert!(most > 1 && most <= 8, "requests in flight at once: {most}");
    sims.shutdown().await;
}

#[tokio::test]
async fn configured_secrets_appear_in_no_output_even_at_trace_level() {
    let sims = Sims::start(secret_tenant(3)).await;
    let mut ws = sims.workspace();
    ws.set_env("RUST_LOG", "trace");
    ws.file(
        "noisy.rhai",
        &format!(
            "let users = cloudflare::list_users();\nprint(users);\nlet ann = privx::find_user(\"ann@example.com\");\ndebug(ann);\n\
             cloudflare::update_user(\"{}\", #{{name: \"Renamed\"}});\nprivx::reset_mfa(ann.id);\ncloudflare::get_user(\"no-such-user\")\n",
            cf_id(1)
        ),
    );
    let mut everything = String::new();
    for args in [
        vec!["plan", "noisy.rhai", "--audit-log", "plan.jsonl", "-o", "json"],
        vec!["run", "noisy.rhai", "--audit-log", "run.jsonl"],
        vec!["run", "noisy.rhai", "--log-format", "json", "-o", "json"],
    ] {
        let out = ws.run(&args).await;
        assert_eq!(out.code, Some(1), "the last call fails: {out:?}");
        assert!(out.stderr.contains("no user no-such-user"), "{}", out.stderr);
        everything.push_str(&out.all());
    }
    everything.push_str(&std::fs::read_to_string(ws.path().join("plan.jsonl")).unwrap());
    let audit = std::fs::read_to_string(ws.path().join("run.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 5, "one record per call:\n{audit}");
    everything.push_str(&audit);
    assert!(everything.contains("http request"), "trace logging was not on");
    // A wrong token: the error path must not show the token it sent either.
    ws.set_env("CLOUDFLARE_API_TOKEN", "cf-e2e-wrong-token-3b9d1e");
    let out = ws.run(&["run", "noisy.rhai"]).await;
    everything.push_str(&out.all());
    for secret in [
        CF_TOKEN,
        PX_API_SECRET,
        PX_OAUTH_SECRET,
        "cf-e2e-wrong-token-3b9d1e",
        "TOTPSEED",
    ] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    sims.shutdown().await;
}
