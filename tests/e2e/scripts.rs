//! The automations runbook ships, run as a user runs them: the binary, plan then run, against
//! the simulators — asserting the report and the simulators' state afterwards.

use serde_json::json;

use crate::fixtures::{cf_id, scripted_tenant};
use crate::support::{Sims, Workspace};

fn script(name: &str) -> String {
    format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn mfa(sims: &Sims, n: usize) -> String {
    let id = format!("eef4aefc-0000-4000-8000-{n:012}");
    sims.px().user(&id).unwrap()["mfa"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn changes(sims: &Sims) -> usize {
    sims.cf()
        .requests()
        .iter()
        .chain(sims.px().requests().iter())
        .filter(|r| matches!(r.method.as_str(), "PUT" | "DELETE") || (r.method == "POST" && r.path.contains("/mfa/")))
        .count()
}

#[tokio::test]
async fn revoke_mfa_plans_then_resets_exactly_the_flagged_users() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let revoke = script("revoke_mfa_for_failed_logins.rhai");

    let plan = ws.run(&["plan", &revoke, "-o", "json"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    let doc = plan.json();
    assert_eq!(changes(&sims), 0, "plan mode changed something");
    assert_eq!(doc["planned_changes"].as_array().unwrap().len(), 1);
    assert_eq!(doc["planned_changes"][0]["action"], "privx.reset_mfa");
    assert_eq!(doc["planned_changes"][0]["targets"], 2);

    let run = ws.run(&["run", &revoke, "-o", "json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let report = &run.json()["result"];
    assert_eq!(
        report["failures"], 17,
        "the failures of the last 24 hours, from the log"
    );
    let flagged: Vec<(&str, i64)> = report["flagged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["email"].as_str().unwrap(), f["failures"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        flagged,
        vec![
            ("ann@example.com", 4),
            ("bob@example.com", 3),
            ("carol@example.com", 5),
            ("dave@example.com", 3)
        ]
    );
    let acted: Vec<&str> = report["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["principal"].as_str().unwrap())
        .collect();
    assert_eq!(acted, vec!["ann", "bob"]);
    assert_eq!(report["not_in_privx"], json!(["dave@example.com"]));
    assert_eq!(report["ambiguous"][0]["email"], "carol@example.com");
    assert_eq!(
        report["ambiguous"][0]["candidates"],
        json!(["carol (AD)", "carol.local (LOCAL)"])
    );

    // Exactly the flagged users' MFA was reset, with one call.
    assert_eq!(
        (mfa(&sims, 1), mfa(&sims, 2)),
        ("UNINITIALIZED".into(), "UNINITIALIZED".into())
    );
    assert_eq!(
        (mfa(&sims, 3), mfa(&sims, 4), mfa(&sims, 5), mfa(&sims, 6)),
        (
            "ENABLED".into(),
            "UNINITIALIZED".into(),
            "DISABLED".into(),
            "ENABLED".into()
        )
    );
    assert_eq!(changes(&sims), 1);
    sims.shutdown().await;
}

#[tokio::test]
async fn revoke_mfa_follows_its_params() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let revoke = script("revoke_mfa_for_failed_logins.rhai");
    // Threshold 2 also flags erin (2 recent failures; her 5 old ones do not count).
    let out = ws
        .run(&["run", &revoke, "-p", "threshold=2", "-p", "mode=disable", "-o", "json"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let acted: Vec<String> = out.json()["result"]["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["principal"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(acted, vec!["ann", "bob", "erin"]);
    assert_eq!(
        (mfa(&sims, 1), mfa(&sims, 2), mfa(&sims, 5)),
        ("DISABLED".into(), "DISABLED".into(), "DISABLED".into())
    );
    // A wide window counts erin's old failures too.
    let out = ws.run(&["plan", &revoke, "-p", "window_hours=200", "-o", "json"]).await;
    let flagged = out.json()["result"]["flagged"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["email"] == "erin@example.com");
    assert!(flagged);
    let out = ws.run(&["run", &revoke, "-p", "mode=wipe"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("mode must be \"reset\" or \"disable\", got \"wipe\""),
        "{}",
        out.stderr
    );
    let out = ws.run(&["run", &revoke, "-p", "threshold=many"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("parameter `threshold` must be an int (like its default 3), got the string \"many\""),
        "{}",
        out.stderr
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn offboarding_cuts_live_access_everywhere_and_keeps_the_access_user() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let offboard = script("offboard_user.rhai");
    let ann = "eef4aefc-0000-4000-8000-000000000001";

    let plan = ws
        .run(&["plan", &offboard, "-p", "email=ann@example.com", "-o", "json"])
        .await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    let actions: Vec<String> = plan.json()["planned_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        vec![
            "cloudflare.revoke_user",
            "cloudflare.free_seats",
            "privx.terminate_user_sessions",
            "privx.terminate_user_connections",
            "privx.delete_authorized_key",
            "privx.delete_authorized_key",
            "privx.disable_mfa",
            "privx.set_user_roles"
        ]
    );
    assert_eq!(sims.changes(), 0, "plan mode changed something");

    let run = ws
        .run(&["run", &offboard, "-p", "email=ann@example.com", "-o", "json"])
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let report = &run.json()["result"];
    assert_eq!(
        report["cloudflare"],
        json!({"found": true, "id": cf_id(1), "revoked": true, "seats_freed": true, "deleted": false})
    );
    assert_eq!(report["privx"]["principal"], "ann");
    assert_eq!(report["privx"]["keys_removed"], json!(["laptop", "ci"]));
    assert_eq!(report["privx"]["mfa_disabled"], true);
    assert_eq!(report["privx"]["roles_removed"], json!(["admins", "auditors"]));

    // Cloudflare: every token of Ann's revoked, devices included; her seats freed; the user kept.
    let revocations = sims.cf().revocations();
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert_eq!(revocations[0]["email"], "ann@example.com");
    assert_eq!(revocations[0]["devices"], true);
    let user = sims.cf().user(&cf_id(1)).expect("the Access user is kept");
    assert_eq!(
        (user["access_seat"].clone(), user["gateway_seat"].clone()),
        (json!(false), json!(false))
    );
    // PrivX: nothing left that lets Ann in.
    assert!(sims.px().sessions(ann).is_empty());
    assert!(sims.px().connections(ann).is_empty());
    assert!(sims.px().authorized_keys(ann).is_empty());
    let user = sims.px().user(ann).unwrap();
    assert_eq!(user["mfa"]["status"], "DISABLED");
    let roles_left = user["roles"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(roles_left, 0);

    // delete=true also deletes the Access user.
    let run = ws
        .run(&[
            "run",
            &offboard,
            "-p",
            "email=ann@example.com",
            "-p",
            "delete=true",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["result"]["cloudflare"]["deleted"], true);
    assert!(sims.cf().user(&cf_id(1)).is_none());
    sims.shutdown().await;
}

#[tokio::test]
async fn the_access_review_lists_a_roles_members_with_mfa_and_last_login() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let review = script("access_review.rhai");
    let out = ws.run(&["run", &review, "-p", "role=developers", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = &out.json()["result"];
    assert_eq!(report["members"], 1);
    assert_eq!(report["rows"][0]["principal"], "bob");
    assert_eq!(report["rows"][0]["mfa"], "ENABLED");
    assert_eq!(
        report["rows"][0]["stale"], false,
        "bob logged in 20 hours ago: {report}"
    );
    assert_eq!(report["without_mfa"], 0);
    assert_eq!(sims.changes(), 0, "a review changes nothing");
    sims.shutdown().await;
}

#[tokio::test]
async fn temporary_elevation_grants_a_role_that_ends_by_itself() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let elevate = script("temporary_elevation.rhai");
    let frank = "eef4aefc-0000-4000-8000-000000000006";
    let out = ws
        .run(&[
            "run",
            &elevate,
            "-p",
            "email=frank@example.com",
            "-p",
            "role=auditors",
            "-p",
            "hours=2",
            "-p",
            "reason=incident 42",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = &out.json()["result"];
    assert_eq!(report["principal"], "frank");
    let roles = sims.px().user(frank).unwrap()["roles"].clone();
    let grant = roles
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "auditors")
        .unwrap_or_else(|| panic!("no auditors grant: {roles}"));
    assert_eq!(grant["grant_type"], "TIME_RESTRICTED");
    assert_eq!(grant["explicit"], true);
    assert_eq!(grant["grant_validity_periods"][0]["grant_end"], report["to"], "{grant}");

    let out = ws
        .run(&[
            "run",
            &elevate,
            "-p",
            "email=frank@example.com",
            "-p",
            "role=auditors",
            "-p",
            "hours=100",
            "-p",
            "reason=x",
        ])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("hours must be from 1 to 72, got 100"),
        "{}",
        out.stderr
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn offboarding_refuses_unknown_ambiguous_and_missing_emails() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let offboard = script("offboard_user.rhai");
    let out = ws.run(&["run", &offboard, "-p", "email=nobody@example.com"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("no user nobody@example.com in Cloudflare Access or PrivX: nothing to offboard"),
        "{}",
        out.stderr
    );
    let out = ws.run(&["run", &offboard, "-p", "email=carol@example.com"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("is ambiguous"), "{}", out.stderr);
    // The email may come from a webhook's body instead, so the param is optional: the script
    // itself stops when neither names anyone.
    let out = ws.run(&["run", &offboard]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("no email: set it with --param email=..."),
        "{}",
        out.stderr
    );
    assert_eq!(changes(&sims), 0, "a refused offboarding changed something");
    sims.shutdown().await;
}

#[tokio::test]
async fn the_mfa_coverage_report_lists_users_without_mfa_most_active_first() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let out = ws
        .run(&["run", &script("mfa_coverage_report.rhai"), "-o", "json"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = &out.json()["result"];
    assert_eq!(report["privx_users"], 6);
    let rows: Vec<(&str, &str)> = report["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["principal"].as_str().unwrap(), u["mfa"].as_str().unwrap()))
        .collect();
    // carol.local shares carol@'s last login (30 h ago); erin logged in 50 h ago.
    assert_eq!(rows, vec![("carol.local", "UNINITIALIZED"), ("erin", "DISABLED")]);
    assert_eq!(changes(&sims), 0);
    let pretty = ws.run(&["run", &script("mfa_coverage_report.rhai")]).await;
    assert!(
        pretty.stdout.contains("users (2):") && pretty.stdout.contains("carol.local"),
        "{}",
        pretty.stdout
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn sessions_outside_countries_reports_and_revokes_only_when_asked() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let outside = script("sessions_outside_countries.rhai");
    let out = ws
        .run(&["run", &outside, "-p", "allowed=[\"FI\",\"SE\"]", "-o", "json"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let found: Vec<(String, String)> = out.json()["result"]["outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["email"].as_str().unwrap().to_owned(),
                o["country"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("bob@example.com".into(), "BR".into()),
            ("dave@example.com".into(), "US".into())
        ]
    );
    assert_eq!(changes(&sims), 0, "read-only without revoke");

    let plan = ws
        .run(&[
            "plan",
            &outside,
            "-p",
            "allowed=[\"fi\",\"se\"]",
            "-p",
            "revoke=true",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(plan.json()["planned_changes"].as_array().unwrap().len(), 2);
    assert_eq!(changes(&sims), 0);
    let run = ws
        .run(&["run", &outside, "-p", "allowed=[\"FI\",\"SE\"]", "-p", "revoke=true"])
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(sims.cf().user(&cf_id(2)).is_none() && sims.cf().user(&cf_id(4)).is_none());
    assert_eq!(sims.cf().users().len(), 4);
    sims.shutdown().await;
}

#[tokio::test]
async fn the_readmes_first_runbook_plans_on_the_demo_tenant() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let example = readme
        .split("```rhai\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a rhai example");
    let ws = Workspace::new();
    ws.file("first.rhai", example);
    let plan = ws.run(&["plan", "first.rhai", "--simulate"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert!(
        plan.stdout.contains("Plan: 1 change to 3 targets. Nothing was sent."),
        "{}",
        plan.stdout
    );
}

#[tokio::test]
async fn the_quick_start_runs_on_the_built_in_demo_tenant() {
    let ws = Workspace::new();
    let revoke = script("revoke_mfa_for_failed_logins.rhai");
    let plan = ws.run(&["plan", &revoke, "--simulate"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert!(
        plan.stdout.contains("Plan: 1 change to 3 targets. Nothing was sent."),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("privx.reset_mfa"), "{}", plan.stdout);
    let run = ws.run(&["run", &revoke, "--simulate"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    for expected in [
        "selected (3):",
        "jonas.berg@example.com",
        "ambiguous (1):",
        "maria.virtanen@example.com",
        "not_in_privx (1):",
        "contractor.kim@partner.example.org",
    ] {
        assert!(run.stdout.contains(expected), "missing {expected:?}:\n{}", run.stdout);
    }
    // What was changed is said on stderr; stdout keeps only the result.
    assert!(
        run.stderr.contains("Applied 1 change(s) touching 3 target(s):") && run.stderr.contains("privx.reset_mfa"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("Applied"), "{}", run.stdout);
    // Each script with the params it declares: another name would be refused.
    let each: [(&str, &[&str]); 3] = [
        ("offboard_user.rhai", &["-p", "email=aino.laine@example.com"]),
        ("mfa_coverage_report.rhai", &[]),
        ("sessions_outside_countries.rhai", &["-p", "allowed=[\"FI\",\"SE\"]"]),
    ];
    for (name, params) in each {
        let path = script(name);
        let mut args = vec!["plan", path.as_str(), "--simulate"];
        args.extend(params);
        let out = ws.run(&args).await;
        assert_eq!(out.code, Some(0), "{name}: {out:?}");
    }
}

#[tokio::test]
async fn a_malformed_fixture_is_named_with_its_position() {
    let ws = Workspace::new();
    ws.file("bad.json", "{\n  \"cloudflare\": {\"users\": [}\n}\n");
    let out = ws
        .run(&[
            "plan",
            &script("mfa_coverage_report.rhai"),
            "--simulate",
            "--fixture",
            "bad.json",
        ])
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("bad.json: line 2, column"), "{}", out.stderr);
}

#[tokio::test]
async fn every_shipped_script_passes_check() {
    let ws = Workspace::new();
    let dir = format!("{}/scripts", env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".rhai"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 4);
    let mut args = vec!["check"];
    args.extend(scripts.iter().map(String::as_str));
    let out = ws.run(&args).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for s in &scripts {
        let text = std::fs::read_to_string(s).unwrap();
        assert!(text.starts_with("// "), "{s} must open with its comment block");
        for section in ["Params", "Calls:", "Changes:", "Returns:"] {
            assert!(text.contains(section), "{s}'s header lacks {section}");
        }
    }
}

#[tokio::test]
async fn a_run_that_fails_half_way_says_what_it_already_changed() {
    let sims = Sims::start(scripted_tenant()).await;
    let ws = sims.workspace();
    let half = ws.file(
        "half.rhai",
        &format!(
            "cloudflare::delete_user(\"{}\");\nthrow \"stopped on purpose\";\n",
            cf_id(2)
        ),
    );
    let out = ws.run(&["run", half.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Before it failed, the run applied 1 change(s) touching 1 target(s):")
            && out.stderr.contains("cloudflare.delete_user")
            && out.stderr.contains("stopped on purpose"),
        "{}",
        out.stderr
    );
    assert!(sims.cf().user(&cf_id(2)).is_none());
    sims.shutdown().await;
}
