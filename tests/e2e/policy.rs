//! `[policy]`: protected targets are refused before anything is sent — in `run`, `plan`,
//! `apply` and serve — and a daily budget of changes counts across runs.

use std::time::Duration;

use runbook_serve::store::{RunRecord, RunStatus};
use serde_json::{Value, json};

use crate::fixtures::{cf_id, cf_user, px_user, role};
use crate::serve::{API_TOKEN, Server, all_runs, workspace_with};
use crate::support::{Output, Sims, Workspace};

/// The break-glass account.
const BREAKGLASS: &str = "eef4aefc-0000-4000-8000-000000000001";
/// The PrivX administrator (role `privx-admin`).
const ROOT: &str = "eef4aefc-0000-4000-8000-000000000002";
/// A developer.
const DEV: &str = "eef4aefc-0000-4000-8000-000000000003";

/// Six PrivX users: the break-glass account, an administrator, four developers.
fn tenant() -> Value {
    let roles = vec![role("privx-admin", 1), role("developers", 2)];
    let mut users = vec![
        px_user(1, "breakglass", "breakglass@corp.example", "LOCAL", &[], "ENABLED"),
        px_user(2, "root.admin", "root.admin@corp.example", "AD", &roles[..1], "ENABLED"),
    ];
    for i in 3..=6 {
        users.push(px_user(
            i,
            &format!("dev{i}"),
            &format!("dev{i}@corp.example"),
            "AD",
            &roles[1..],
            "ENABLED",
        ));
    }
    json!({"cloudflare": {"users": []}, "privx": {"users": users, "roles": roles}})
}

/// Resets the MFA of everyone at corp.example: six users, in one call.
const RESET_ALL: &str = "let users = privx::search_users(#{keywords: \"corp.example\"});\n\
                         privx::reset_mfa(users.map(|u| u.id));\nusers.len()\n";

/// Resets the MFA of the first `n` developers, one call each.
const RESET_SOME: &str = "let devs = privx::search_users(#{keywords: \"dev\"});\n\
                          let n = param(\"n\");\nfor i in 0..n { privx::reset_mfa(devs[i].id); }\nn\n";

/// Resets the MFA of the ids it is given, without reading anyone first.
const RESET_IDS: &str = "let ids = param(\"ids\").split(\",\");\nprivx::reset_mfa(ids);\nids.len()\n";

/// Requests to PrivX that change something.
fn writes(sims: &Sims) -> Vec<String> {
    sims.px()
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && !r.path.ends_with("/search") && !r.path.ends_with("/token"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn workspace(sims: &Sims, policy: &str) -> Workspace {
    let ws = sims.workspace();
    ws.file("reset.rhai", RESET_ALL);
    ws.file("some.rhai", RESET_SOME);
    ws.file("ids.rhai", RESET_IDS);
    ws.file("runbook.toml", &format!("[policy]\n{policy}\n"));
    ws
}

fn assert_refused(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, Some(3), "{out:?}");
    for needle in needles {
        assert!(out.stderr.contains(needle), "{needle:?} not in:\n{}", out.stderr);
    }
}

#[tokio::test]
async fn a_protected_user_among_five_others_is_refused_before_any_write_in_run_and_plan() {
    let sims = Sims::start(tenant()).await;
    let rules = [
        (
            "protect = [\"breakglass@corp.example\"]",
            format!(
                "target breakglass@corp.example (id {BREAKGLASS}) is protected by rule \"breakglass@corp.example\""
            ),
        ),
        (
            &*format!("protect = [\"{BREAKGLASS}\"]"),
            format!("target breakglass@corp.example (id {BREAKGLASS}) is protected by rule \"{BREAKGLASS}\""),
        ),
        (
            "protect = [\"privx-role:privx-admin\"]",
            format!(
                "target root.admin@corp.example (id {ROOT}) holds role privx-admin, and is protected by rule \
                 \"privx-role:privx-admin\""
            ),
        ),
    ];
    for (rule, message) in &rules {
        let ws = workspace(&sims, rule);
        let shown = [
            "policy refused privx.reset_mfa",
            message.as_str(),
            "([policy] protect in runbook.toml)",
        ];
        // A run with --yes, a run that plans and would ask first, and a plan.
        assert_refused(&ws.run(&["run", "reset.rhai"]).await, &shown);
        assert_refused(&ws.run_as_given(&["run", "reset.rhai"]).await, &shown);
        let plan = ws.run(&["plan", "reset.rhai", "--out", "reset.plan"]).await;
        assert_refused(&plan, &shown);
        assert!(
            plan.stdout.contains("The policy refused a change"),
            "the plan shows the refusal:\n{}",
            plan.stdout
        );
        assert!(!ws.path().join("reset.plan").exists(), "a refused plan is not saved");
        let json = ws.run(&["run", "reset.rhai", "--output", "json"]).await;
        assert_eq!(json.json()["status"], "refused", "{json:?}");
        assert_eq!(json.json()["error"]["kind"], "policy", "{json:?}");
    }
    assert_eq!(writes(&sims), Vec::<String>::new(), "nothing was ever sent");

    // Without a rule that matches, the same script resets all six.
    let ws = workspace(&sims, "protect = [\"nobody@corp.example\", \"role:auditors\"]");
    let out = ws.run(&["run", "reset.rhai"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(writes(&sims).len(), 1, "one reset of six users");
    sims.shutdown().await;
}

#[tokio::test]
async fn a_plan_made_before_the_rule_is_refused_when_applied() {
    let sims = Sims::start(tenant()).await;
    let ws = workspace(&sims, "");
    let out = ws.run(&["plan", "reset.rhai", "--out", "reset.plan"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    ws.file("runbook.toml", "[policy]\nprotect = [\"breakglass@corp.example\"]\n");
    let out = ws.run(&["apply", "reset.plan", "--yes"]).await;
    assert_refused(
        &out,
        &[
            "policy refused privx.reset_mfa",
            "breakglass@corp.example",
            "nothing was sent",
        ],
    );
    assert_eq!(writes(&sims), Vec::<String>::new());
    sims.shutdown().await;
}

#[tokio::test]
async fn a_target_no_read_showed_is_identified_and_one_nobody_knows_is_refused() {
    let sims = Sims::start(tenant()).await;
    let ws = workspace(&sims, "protect = [\"breakglass@corp.example\"]");
    // Asked by id alone, PrivX tells who the developer is: the reset goes out.
    let out = ws.run(&["run", "ids.rhai", "--param", &format!("ids={DEV}")]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(writes(&sims).len(), 1);
    // The break-glass account by id alone is found out the same way.
    let out = ws
        .run(&["run", "ids.rhai", "--param", &format!("ids={DEV},{BREAKGLASS}")])
        .await;
    assert_refused(
        &out,
        &[&format!("breakglass@corp.example (id {BREAKGLASS}) is protected")],
    );
    // An id PrivX does not know could be anyone: refused (fail closed).
    let ghost = "eef4aefc-0000-4000-8000-000000000099";
    let out = ws
        .run(&["run", "ids.rhai", "--param", &format!("ids={DEV},{ghost}")])
        .await;
    assert_refused(
        &out,
        &[
            &format!("cannot tell who target {ghost} is"),
            "rule \"breakglass@corp.example\" could match",
            "fail closed",
        ],
    );
    assert_eq!(writes(&sims).len(), 1, "the refused runs sent nothing");
    // An id rule alone needs nobody identified: the unknown id is not refused by it.
    let ws = workspace(&sims, &format!("protect = [\"{BREAKGLASS}\"]"));
    let before = sims.px().requests().len();
    let out = ws.run(&["run", "ids.rhai", "--param", &format!("ids={DEV}")]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let asked: Vec<String> = sims.px().requests()[before..]
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    assert!(asked.is_empty(), "nobody was looked up: {asked:?}");
    sims.shutdown().await;
}

#[tokio::test]
async fn a_days_budget_of_five_refuses_the_sixth_change_in_a_later_run() {
    let sims = Sims::start(tenant()).await;
    let ws = workspace(&sims, "max_changes_per_day = 5");
    for n in ["3", "2"] {
        let out = ws.run(&["run", "some.rhai", "--param", &format!("n={n}")]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
    }
    assert_eq!(writes(&sims).len(), 5);
    // The third run: planned first (as on a terminal) or sent with --yes, it is refused at once.
    let planned = ws.run_as_given(&["run", "some.rhai", "--param", "n=1"]).await;
    assert_refused(
        &planned,
        &["the plan would touch 1 target(s), and today's budget: 5 changes, 5 used in the last 24 h by earlier runs"],
    );
    let out = ws.run(&["run", "some.rhai", "--param", "n=1"]).await;
    assert_refused(
        &out,
        &[
            "the change budget refused privx.reset_mfa",
            "today's budget: 5 changes, 5 used in the last 24 h by earlier runs and 0 by this run",
            "max_changes_per_day in [policy] of runbook.toml",
        ],
    );
    assert_eq!(writes(&sims).len(), 5, "the third run sent nothing");
    // The simulators of --simulate are nobody's services: no budget there.
    ws.file("tenant.json", &tenant().to_string());
    let out = ws
        .run(&[
            "run",
            "some.rhai",
            "--param",
            "n=1",
            "--simulate",
            "--fixture",
            "tenant.json",
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    sims.shutdown().await;
}

#[tokio::test]
async fn cloudflare_creates_and_deletes_are_checked_by_email() {
    let mut fixture = tenant();
    let mut breakglass = cf_user(1);
    breakglass["email"] = json!("breakglass@corp.example");
    fixture["cloudflare"] = json!({"users": [breakglass, cf_user(2)]});
    let sims = Sims::start(fixture).await;
    let ws = workspace(&sims, "protect = [\"breakglass@corp.example\"]");
    ws.file("create.rhai", "cloudflare::create_user(param(\"email\")).email\n");
    ws.file("delete.rhai", "cloudflare::delete_user(param(\"id\"))\n");
    // A create names its target by the email it is given.
    let out = ws
        .run(&["run", "create.rhai", "--param", "email=BreakGlass@corp.example"])
        .await;
    assert_refused(
        &out,
        &["policy refused cloudflare.create_user: target BreakGlass@corp.example is protected by rule"],
    );
    // A delete by id alone: Cloudflare tells whose id it is.
    let out = ws
        .run(&["run", "delete.rhai", "--param", &format!("id={}", cf_id(1))])
        .await;
    assert_refused(
        &out,
        &[&format!(
            "target breakglass@corp.example (id {}) is protected",
            cf_id(1)
        )],
    );
    assert_eq!(sims.changes(), 0, "nothing was sent");
    // Others go ahead.
    let out = ws
        .run(&["run", "create.rhai", "--param", "email=new@corp.example"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = ws
        .run(&["run", "delete.rhai", "--param", &format!("id={}", cf_id(2))])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(sims.changes(), 2);
    sims.shutdown().await;
}

#[tokio::test]
async fn a_mistake_in_the_policy_is_a_usage_error() {
    let sims = Sims::start(tenant()).await;
    for (policy, needle) in [
        ("protect = [\"okta-role:admins\"]", "\"okta\", which is not known"),
        ("protect = [\"role:\"]", "names no role"),
        ("protekt = []", "protekt"),
    ] {
        let ws = workspace(&sims, policy);
        let out = ws.run(&["run", "reset.rhai"]).await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains(needle), "{needle:?} not in {}", out.stderr);
    }
    assert_eq!(writes(&sims), Vec::<String>::new());
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_refuses_a_run_touching_a_protected_user_and_one_past_the_automations_budget() {
    let sims = Sims::start(tenant()).await;
    let config = r#"
[policy]
protect = ["breakglass@corp.example"]

[serve]
listen = "127.0.0.1:0"
store = "sqlite://runbook.db"
api_token = "${RUNBOOK_API_TOKEN}"

[[automation]]
name = "reset"
script = "reset.rhai"
retries = 0
trigger = { webhook = "/hooks/reset", secret = "${SIEM_SECRET}" }

[[automation]]
name = "some"
script = "some.rhai"
retries = 0
max_changes_per_day = 3
params = { n = 1 }
trigger = { webhook = "/hooks/some", secret = "${SIEM_SECRET}" }
"#;
    let mut ws = workspace_with(&sims, config, &[("reset.rhai", RESET_ALL), ("some.rhai", RESET_SOME)]);
    let server = Server::start(&ws).await;
    ws.set_env("RUNBOOK_API_URL", &server.url);
    ws.set_env("RUNBOOK_API_TOKEN", API_TOKEN);
    let refused = finished(&ws, &start(&ws, &["runs", "start", "reset"]).await).await;
    assert_eq!(refused.status, RunStatus::Refused, "{refused:?}");
    assert_eq!(refused.error_kind.as_deref(), Some("policy"));
    let error = refused.error.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "target breakglass@corp.example (id {BREAKGLASS}) is protected by rule \"breakglass@corp.example\""
        )),
        "{error}"
    );
    assert_eq!(writes(&sims), Vec::<String>::new());

    // The automation's budget of 3: 2, then 1, then a run of 1 more is refused before sending.
    for (n, status) in [
        ("n=2", RunStatus::Succeeded),
        ("n=1", RunStatus::Succeeded),
        ("n=1", RunStatus::Refused),
    ] {
        let run = finished(&ws, &start(&ws, &["runs", "start", "some", "--param", n]).await).await;
        assert_eq!(run.status, status, "{run:?}");
        if status == RunStatus::Refused {
            assert_eq!(run.error_kind.as_deref(), Some("budget"));
            let error = run.error.unwrap_or_default();
            assert!(
                error.contains("today's budget of automation \"some\": 3 changes, 3 used in the last 24 h"),
                "{error}"
            );
        }
    }
    assert_eq!(writes(&sims).len(), 3);
    server.stop().await;
    sims.shutdown().await;
}

/// Starts a run through the API; its id.
async fn start(ws: &Workspace, args: &[&str]) -> String {
    let out = ws.run(args).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout.trim().to_owned()
}

/// The run once it has finished.
async fn finished(ws: &Workspace, id: &str) -> RunRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run = all_runs(ws).await.into_iter().find(|r| r.id == id);
        if let Some(run) = run.filter(|r| r.status.is_final()) {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "run {id} did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
