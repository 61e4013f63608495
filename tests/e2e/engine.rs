//! The engine as the binary runs it: one connection pool across `parallel` calls, argument
//! mistakes caught before sending, commands that need no secrets, and the audit trail.

use std::time::Duration;

use runbook_sim::{RateLimit, RateLimitMode, SimOptions};

use crate::fixtures::tenant;
use crate::support::{Sims, Workspace};

#[tokio::test]
async fn consecutive_parallel_calls_over_tls_reuse_the_same_connections() {
    let sims = Sims::start_with(
        tenant(0, 30),
        SimOptions {
            tls: true,
            ..SimOptions::default()
        },
    )
    .await;
    let ws = sims.workspace();
    ws.file(
        "twice.rhai",
        r#"
        let ids = privx::search_users(#{source: "AD"}).map(|u| u.id);
        let first = parallel(ids, |id| privx::get_user(id).principal);
        let second = parallel(ids, |id| privx::get_user_roles(id).len());
        [first.len(), second.len()]
        "#,
    );
    let out = ws.run(&["run", "twice.rhai", "--concurrency", "4", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = out.json()["result"].clone();
    assert!(result[0].as_u64().unwrap() >= 30 && result[0] == result[1], "{result}");
    let opened = sims.px().accepted_connections();
    let requests = sims.px().requests().len();
    assert!(
        (1..=4).contains(&opened),
        "{opened} TLS connections for {requests} requests at concurrency 4: connections were not reused"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn an_unknown_option_or_a_wrong_type_stops_the_run_before_anything_is_sent() {
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = sims.workspace();
    ws.file("typo.rhai", "cloudflare::list_users(#{emial: \"user1@example.com\"})\n");
    let out = ws.run(&["run", "typo.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.starts_with("error: typo.rhai:1:"), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            ": cloudflare::list_users: unknown option `emial` (did you mean `email`?); valid keys: email, name, search"
        ),
        "{}",
        out.stderr
    );
    ws.file("type.rhai", "let n = 3;\nprivx::reset_mfa(n)\n");
    let out = ws.run(&["run", "type.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("type.rhai:2:8: privx::reset_mfa: `ids` must be string or array, got int"),
        "{}",
        out.stderr
    );
    // A mistake cannot be caught and passed over: it is the script's, not the service's.
    ws.file(
        "caught.rhai",
        "try { cloudflare::get_user(#{id: 1}) } catch (e) { () }\n",
    );
    let out = ws.run(&["run", "caught.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("valid keys: user_id"), "{}", out.stderr);
    assert!(sims.cf().requests().is_empty() && sims.px().requests().is_empty());
    sims.shutdown().await;
}

#[tokio::test]
async fn check_and_actions_need_no_secrets() {
    let ws = Workspace::new();
    ws.file(
        "runbook.toml",
        r#"
[providers.cloudflare]
account_id = "${CF_ACCOUNT_NOT_SET}"
api_token = "${CF_TOKEN_NOT_SET}"
"#,
    );
    ws.file("ok.rhai", "cloudflare::list_users().len()\n");
    let out = ws.run(&["check", "ok.rhai"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "ok.rhai: ok\n");
    let out = ws.run(&["actions", "cloudflare.list_users"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("list_users"), "{}", out.stdout);
    // Running still needs them, and says which.
    let out = ws.run(&["run", "ok.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("${CF_ACCOUNT_NOT_SET} is not set"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn the_audit_log_keeps_earlier_runs_and_a_trail_that_cannot_be_written_stops_the_run() {
    let sims = Sims::start(tenant(0, 0)).await;
    let ws = sims.workspace();
    ws.file(
        "resets.rhai",
        r#"
        for id in ["eef4aefc-0000-4000-8000-000000000001", "eef4aefc-0000-4000-8000-000000000002", "eef4aefc-0000-4000-8000-000000000003"] {
            privx::reset_mfa(id);
        }
        "#,
    );
    for _ in 0..2 {
        let out = ws.run(&["run", "resets.rhai", "--audit-log", "trail.jsonl"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
    }
    let trail = std::fs::read_to_string(ws.path().join("trail.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = trail.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 6, "both runs are in the trail:\n{trail}");
    assert_ne!(records[0]["run_id"], records[5]["run_id"]);
    assert_eq!(sims.changes(), 6);

    // A trail that cannot be written: the run stops after the first change.
    let out = ws.run(&["run", "resets.rhai", "--audit-log", "/dev/full"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("the audit trail cannot be written") && out.stderr.contains("cannot write to /dev/full"),
        "{}",
        out.stderr
    );
    assert_eq!(sims.changes(), 7, "changes went on with no audit trail");
    sims.shutdown().await;
}

#[tokio::test]
async fn a_fan_out_of_three_budgets_draws_no_429_from_a_service_that_sends_no_rate_headers() {
    // A service that counts a sliding window and says nothing of it until it answers 429: the
    // client's own budget is all that keeps the run inside it.
    let budget = RateLimit {
        requests: 30,
        window: Duration::from_secs(2),
    };
    let sims = Sims::start_with(
        tenant(89, 0),
        SimOptions {
            rate_limit: Some(budget),
            rate_limit_mode: RateLimitMode::SlidingWindowSilent,
            latency: Duration::from_millis(20),
            ..SimOptions::default()
        },
    )
    .await;
    let mut ws = sims.workspace();
    ws.set_env("CLOUDFLARE_RATE_LIMIT", "30/2s");
    ws.file(
        "fan.rhai",
        "parallel(cloudflare::list_users(), |u| cloudflare::get_user(u.id).email).len()",
    );
    let out = ws.run(&["run", "fan.rhai", "--concurrency", "16", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["result"], 89);
    let requests = sims.cf().requests();
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    assert_eq!(requests.len(), 90, "one listing and 89 reads, nothing resent");
    assert_eq!(throttled, 0, "{throttled} requests were answered 429");
    sims.shutdown().await;
}
