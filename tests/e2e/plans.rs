//! Saved plans and `runbook apply`, and the confirmation of `runbook run`: the writes that reach
//! the simulators are exactly the plan's effects, and nothing is sent for a stale, edited or
//! declined plan.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::fixtures::{cf_id, tenant};
use crate::support::{Output, Sims, Workspace};

/// Deletes every user but the first: four deletions on a tenant of five.
const OFFBOARD: &str = r#"
let gone = [];
for u in cloudflare::list_users() {
    if u.email != "user1@example.com" {
        cloudflare::delete_user(u.id);
        gone.push(u.email);
    }
}
gone
"#;

/// The writes the Cloudflare simulator received: (method, path).
fn writes(sims: &Sims) -> Vec<(String, String)> {
    sims.cf()
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method, r.path))
        .collect()
}

fn read_plan(ws: &Workspace, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(ws.path().join(name)).unwrap()).unwrap()
}

/// The DELETE paths a plan's effects stand for, in order.
fn planned_deletes(sims: &Sims, plan: &Value) -> Vec<(String, String)> {
    let account = sims.cf().account_id();
    plan["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["action"], "cloudflare.delete_user");
            let id = e["args"]["user_id"].as_str().unwrap();
            (
                "DELETE".to_owned(),
                format!("/client/v4/accounts/{account}/access/users/{id}"),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_saved_plan_applies_exactly_its_effects_in_order() {
    let sims = Sims::start(tenant(5, 0)).await;
    let ws = sims.workspace();
    ws.file("offboard.rhai", OFFBOARD);
    let plan = ws.run(&["plan", "offboard.rhai", "--out", "offboard.plan"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert!(
        plan.stdout.contains("cloudflare.delete_user × 4 targets"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!("user2@example.com ({})", cf_id(2))),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stderr
            .contains("apply exactly it with: runbook apply offboard.plan"),
        "{}",
        plan.stderr
    );
    assert!(writes(&sims).is_empty(), "a plan sends nothing");

    // The file is readable JSON: its own format, each effect's targets with labels.
    let saved = read_plan(&ws, "offboard.plan");
    assert_eq!(saved["kind"], "runbook-plan");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["total_targets"], 4);
    assert_eq!(saved["effects"][0]["labels"][0]["label"], "user2@example.com");
    let expected = planned_deletes(&sims, &saved);
    assert_eq!(expected.len(), 4);

    sims.cf().clear_requests();
    let apply = ws.run(&["apply", "offboard.plan", "--yes", "-o", "json"]).await;
    assert_eq!(apply.code, Some(0), "{apply:?}");
    assert_eq!(writes(&sims), expected, "the writes are the plan's effects, in order");
    assert_eq!(sims.cf().users().len(), 1);
}

#[tokio::test]
async fn a_plan_whose_services_changed_is_stale_and_sends_nothing() {
    let sims = Sims::start(tenant(5, 0)).await;
    let ws = sims.workspace();
    ws.file("offboard.rhai", OFFBOARD);
    let plan = ws.run(&["plan", "offboard.rhai", "--out", "offboard.plan"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");

    // Someone deletes user 3 by other means, and user 6 appears.
    ws.file("other.rhai", &format!("cloudflare::delete_user(\"{}\")", cf_id(3)));
    let other = ws.run(&["run", "other.rhai"]).await;
    assert_eq!(other.code, Some(0), "{other:?}");
    ws.file(
        "add.rhai",
        "cloudflare::create_user(#{email: \"user6@example.com\", name: \"User 6\"})",
    );
    assert_eq!(ws.run(&["run", "add.rhai"]).await.code, Some(0));
    sims.cf().clear_requests();

    let apply = ws.run(&["apply", "offboard.plan", "--yes"]).await;
    assert_eq!(apply.code, Some(4), "{apply:?}");
    assert!(apply.stderr.contains("the plan is stale"), "{}", apply.stderr);
    assert!(apply.stderr.contains("nothing was sent"), "{}", apply.stderr);
    assert!(
        apply.stderr.contains("user6@example.com"),
        "the diff names what changed:\n{}",
        apply.stderr
    );
    assert!(writes(&sims).is_empty(), "{:?}", writes(&sims));
}

#[tokio::test]
async fn an_edited_script_or_a_tampered_plan_file_is_refused_before_anything_is_sent() {
    let sims = Sims::start(tenant(5, 0)).await;
    let ws = sims.workspace();
    ws.file("offboard.rhai", OFFBOARD);
    ws.file(
        "rename.rhai",
        "let who = param(\"who\");\ncloudflare::update_user(who, #{name: \"Renamed\"})",
    );
    assert_eq!(
        ws.run(&["plan", "offboard.rhai", "--out", "offboard.plan"]).await.code,
        Some(0)
    );
    let rename = ws
        .run(&[
            "plan",
            "rename.rhai",
            "--param",
            &format!("who={}", cf_id(2)),
            "--out",
            "rename.plan",
        ])
        .await;
    assert_eq!(rename.code, Some(0), "{rename:?}");
    sims.cf().clear_requests();

    // The script edited after the plan.
    ws.file("offboard.rhai", &format!("{OFFBOARD}\n// edited\n"));
    let out = ws.run(&["apply", "offboard.plan", "--yes"]).await;
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(out.stderr.contains("changed since the plan was made"), "{}", out.stderr);
    ws.file("offboard.rhai", OFFBOARD);

    // Other params written into the file.
    let text = std::fs::read_to_string(ws.path().join("rename.plan")).unwrap();
    ws.file(
        "other-params.plan",
        &text.replace(
            &format!("\"who\": \"{}\"", cf_id(2)),
            &format!("\"who\": \"{}\"", cf_id(4)),
        ),
    );
    let out = ws.run(&["apply", "other-params.plan", "--yes"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("params"), "{}", out.stderr);

    // An effect edited in the file.
    let text = std::fs::read_to_string(ws.path().join("offboard.plan")).unwrap();
    ws.file("tampered.plan", &text.replacen(&cf_id(2), &cf_id(1), 1));
    let out = ws.run(&["apply", "tampered.plan", "--yes"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("do not match their digest"), "{}", out.stderr);

    // Not a plan at all.
    ws.file("junk.plan", "{\"kind\": \"something\"}");
    let out = ws.run(&["apply", "junk.plan", "--yes"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");

    assert!(writes(&sims).is_empty(), "{:?}", writes(&sims));
    // The untouched plan still applies.
    let out = ws.run(&["apply", "offboard.plan", "--yes"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(writes(&sims).len(), 4);
}

#[tokio::test]
async fn an_apply_killed_half_way_resumes_with_no_effect_twice_and_none_outside_the_plan() {
    let sims = Sims::start(tenant(5, 0)).await;
    let ws = sims.workspace();
    ws.file("offboard.rhai", OFFBOARD);
    assert_eq!(
        ws.run(&["plan", "offboard.rhai", "--out", "offboard.plan"]).await.code,
        Some(0)
    );
    let expected = planned_deletes(&sims, &read_plan(&ws, "offboard.plan"));
    sims.cf().clear_requests();

    // Killed once the second deletion (step 3) is recorded.
    let killed = ws
        .command(&["apply", "offboard.plan", "--yes"])
        .env("RUNBOOK_FAULT", "after-record@3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert_eq!(killed.status.signal(), Some(9), "{killed:?}");
    assert_eq!(writes(&sims), expected[..2].to_vec());
    let stderr = String::from_utf8_lossy(&killed.stderr);
    let id = stderr
        .split("run ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the apply names its run")
        .to_owned();

    let resumed = ws.run(&["run", "--resume", &id, "-o", "json"]).await;
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    assert_eq!(writes(&sims), expected, "each planned effect once, nothing else");
}

#[tokio::test]
async fn now_in_an_apply_returns_the_plans_value() {
    let sims = Sims::start(tenant(2, 0)).await;
    let ws = sims.workspace();
    ws.file(
        "stamp.rhai",
        &format!(
            "let t = now();\ncloudflare::update_user(\"{}\", #{{name: `checked ${{t}}`}}).name",
            cf_id(2)
        ),
    );
    assert_eq!(
        ws.run(&["plan", "stamp.rhai", "--out", "stamp.plan"]).await.code,
        Some(0)
    );
    let planned = read_plan(&ws, "stamp.plan")["effects"][0]["args"]["name"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let apply = ws.run(&["apply", "stamp.plan", "--yes", "-o", "json"]).await;
    assert_eq!(apply.code, Some(0), "{apply:?}");
    assert_eq!(apply.json()["result"], planned);
}

#[tokio::test]
async fn a_plan_past_the_cap_lists_every_change_and_the_full_total() {
    let sims = Sims::start(tenant(5, 0)).await;
    let ws = sims.workspace();
    ws.file("offboard.rhai", OFFBOARD);
    let plan = ws
        .run(&["plan", "offboard.rhai", "--max-changes", "3", "--out", "big.plan"])
        .await;
    assert_eq!(plan.code, Some(3), "{plan:?}");
    assert!(plan.stdout.contains("Plan: 4 changes to 4 targets"), "{}", plan.stdout);
    for i in 2..=5 {
        assert!(plan.stdout.contains(&format!("user{i}@example.com")), "{}", plan.stdout);
    }
    assert!(
        plan.stderr
            .contains("the plan would touch 4 target(s); the cap is 3 (--max-changes): the real run would be refused"),
        "{}",
        plan.stderr
    );
    assert!(!ws.path().join("big.plan").exists(), "a refused plan is not saved");
    assert!(writes(&sims).is_empty());
}

async fn on_terminal(ws: &Workspace, args: &[&str], typed: &str) -> Output {
    let mut child = ws
        .command_on_terminal(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(typed.as_bytes()).await.unwrap();
    // `script` passes on what was typed, then the end of input.
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the command ends")
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn run_asks_on_a_terminal_and_needs_yes_without_one() {
    let sims = Sims::start(tenant(5, 0)).await;
    let ws = sims.workspace();
    ws.file("offboard.rhai", OFFBOARD);

    // Without a terminal and without --yes: nothing sent, exit 2, naming the flag.
    let out = ws.run_as_given(&["run", "offboard.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(
        out.stderr.contains("cloudflare.delete_user × 4 targets"),
        "{}",
        out.stderr
    );
    assert!(writes(&sims).is_empty());

    // On a terminal, answering n: nothing sent, exit 1.
    let out = on_terminal(&ws, &["run", "offboard.rhai"], "n\n").await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("Apply 4 changes to 4 targets? [y/N]"), "{out:?}");
    assert!(out.stdout.contains("declined: nothing was sent"), "{out:?}");
    assert!(writes(&sims).is_empty());

    // Answering y: applied.
    let out = on_terminal(&ws, &["run", "offboard.rhai"], "y\n").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(writes(&sims).len(), 4);
    assert_eq!(sims.cf().users().len(), 1);

    // A run that changes nothing does not ask.
    ws.file("count.rhai", "cloudflare::list_users().len()");
    let out = ws.run_as_given(&["run", "count.rhai"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "1");
}

#[tokio::test]
async fn apply_without_a_terminal_needs_yes() {
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = sims.workspace();
    ws.file("offboard.rhai", OFFBOARD);
    assert_eq!(
        ws.run(&["plan", "offboard.rhai", "--out", "offboard.plan"]).await.code,
        Some(0)
    );
    let out = ws.run(&["apply", "offboard.plan"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(writes(&sims).is_empty());
}

#[tokio::test]
async fn a_yes_given_after_the_services_changed_sends_nothing() {
    use tokio::io::AsyncReadExt;

    let sims = Sims::start(tenant(5, 0)).await;
    let ws = sims.workspace();
    ws.file("offboard.rhai", OFFBOARD);
    let mut child = ws
        .command_on_terminal(&["run", "offboard.rhai"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("[y/N]") {
        let n = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut buf))
            .await
            .expect("the prompt comes")
            .unwrap();
        assert!(n > 0, "the command ended before asking:\n{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // While the operator reads the plan, user 6 appears.
    ws.file(
        "add.rhai",
        "cloudflare::create_user(#{email: \"user6@example.com\", name: \"User 6\"})",
    );
    assert_eq!(ws.run(&["run", "add.rhai"]).await.code, Some(0));
    sims.cf().clear_requests();

    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"y\n").await.unwrap();
    drop(stdin);
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest).await;
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(4), "{seen}{rest}");
    assert!(rest.contains("the plan is stale"), "{rest}");
    assert!(rest.contains("user6@example.com"), "{rest}");
    assert!(writes(&sims).is_empty(), "{:?}", writes(&sims));
}
