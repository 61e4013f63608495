//! Durable local runs: every real `runbook run` keeps a journal in the state directory, and
//! `runbook run --resume RUN_ID` goes on with an interrupted run without sending a change twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::{cf_id, tenant};
use crate::support::{Output, Sims, Workspace};

/// Reads and renames five users, one call after another, and returns their new names.
fn rename_five() -> String {
    let calls: String = (1..=5)
        .map(|i| {
            format!(
                "let u = cloudflare::get_user(\"{id}\");\n\
                 renamed.push(cloudflare::update_user(\"{id}\", #{{name: \"Renamed {i}\", email: u.email}}).name);\n",
                id = cf_id(i)
            )
        })
        .collect();
    format!("let renamed = [];\n{calls}renamed\n")
}

/// The renames each user got, as the simulator counted them: path → PUT requests.
fn puts(sims: &Sims) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in sims.cf().requests() {
        if request.method == "PUT" {
            *counts.entry(request.path).or_insert(0) += 1;
        }
    }
    counts
}

fn total(counts: &BTreeMap<String, usize>) -> usize {
    counts.values().sum()
}

/// The ids of the runs kept in the workspace's state directory.
fn run_ids(ws: &Workspace) -> Vec<String> {
    match std::fs::read_dir(ws.state_dir().join("runs")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn run_dir(ws: &Workspace, id: &str) -> PathBuf {
    ws.state_dir().join("runs").join(id)
}

fn run_json(ws: &Workspace, id: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir(ws, id).join("run.json")).unwrap()).unwrap()
}

/// The run id of the `resume with:` line.
fn resume_id(out: &Output) -> String {
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("resume with: runbook run --resume "))
        .unwrap_or_else(|| panic!("no resume hint:\n{}", out.stderr));
    line.trim().to_owned()
}

/// Sends SIGINT, as Ctrl-C does.
fn interrupt(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -INT {pid} failed");
}

/// Starts the five renames against the simulators (each answer 300 ms late) and interrupts the
/// run with a real SIGINT once exactly two renames reached the Cloudflare simulator. Returns the
/// run's id.
async fn interrupted_after_two(sims: &Sims, ws: &Workspace) -> String {
    ws.file("rename.rhai", &rename_five());
    let child = ws
        .command(&["run", "rename.rhai", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(&puts(sims)) < 2 {
        assert!(Instant::now() < deadline, "two renames never reached the simulator");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The run is at the second rename or the read after it (each answer is 300 ms late): Ctrl-C
    // lets the call in flight finish and starts nothing new.
    interrupt(pid);
    let out = child.wait_with_output().await.unwrap();
    let out = Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(out.code, Some(130), "{out:?}");
    let counts = puts(sims);
    assert_eq!(
        counts,
        (1..=2)
            .map(|i| (
                format!(
                    "/client/v4/accounts/{}/access/users/{}",
                    sims.cf().account_id(),
                    cf_id(i)
                ),
                1
            ))
            .collect::<BTreeMap<_, _>>(),
        "exactly the first two renames reached the simulator"
    );
    let id = resume_id(&out);
    assert!(
        out.stderr
            .contains(&format!("run {id} (journal: {})", run_dir(ws, &id).display())),
        "{}",
        out.stderr
    );
    assert_eq!(run_json(ws, &id)["status"], "interrupted");
    assert_eq!(run_json(ws, &id)["error_kind"], "cancelled");
    id
}

fn slow_sims_options() -> runbook_sim::SimOptions {
    runbook_sim::SimOptions {
        latency: Duration::from_millis(300),
        ..Default::default()
    }
}

#[tokio::test]
async fn ctrl_c_stops_a_run_between_changes_and_says_how_to_resume() {
    let sims = Sims::start_with(tenant(5, 0), slow_sims_options()).await;
    let ws = sims.workspace();
    let id = interrupted_after_two(&sims, &ws).await;
    let pinned = std::fs::read_to_string(run_dir(&ws, &id).join("script.rhai")).unwrap();
    assert_eq!(pinned, rename_five());
    sims.shutdown().await;
}

#[tokio::test]
async fn a_resumed_run_sends_only_the_changes_the_interrupted_one_did_not() {
    let sims = Sims::start_with(tenant(5, 0), slow_sims_options()).await;
    let ws = sims.workspace();
    let id = interrupted_after_two(&sims, &ws).await;

    let resumed = ws.run(&["run", "--resume", &id, "-o", "json"]).await;
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    assert!(
        resumed.stderr.contains(&format!("resuming run {id}: attempt 2")),
        "{}",
        resumed.stderr
    );
    let counts = puts(&sims);
    let every_user_once: BTreeMap<String, usize> = (1..=5)
        .map(|i| {
            (
                format!(
                    "/client/v4/accounts/{}/access/users/{}",
                    sims.cf().account_id(),
                    cf_id(i)
                ),
                1,
            )
        })
        .collect();
    assert_eq!(
        counts, every_user_once,
        "each user renamed exactly once, over both attempts"
    );
    for i in 1..=5 {
        assert_eq!(sims.cf().user(&cf_id(i)).unwrap()["name"], format!("Renamed {i}"));
    }
    let record = run_json(&ws, &id);
    assert_eq!(
        (&record["status"], &record["attempt"]),
        (&json!("succeeded"), &json!(2))
    );

    // The same result as a run nobody interrupted.
    let fresh = Sims::start(tenant(5, 0)).await;
    let fresh_ws = fresh.workspace();
    fresh_ws.file("rename.rhai", &rename_five());
    let whole = fresh_ws.run(&["run", "rename.rhai", "-o", "json"]).await;
    assert_eq!(whole.code, Some(0), "{whole:?}");
    assert_eq!(resumed.json()["result"], whole.json()["result"]);
    assert_eq!(
        whole.json()["result"],
        json!(["Renamed 1", "Renamed 2", "Renamed 3", "Renamed 4", "Renamed 5"])
    );
    fresh.shutdown().await;
    sims.shutdown().await;
}

/// A run stopped by its timeout: resumable, and it needs no service.
async fn timed_out(ws: &Workspace) -> String {
    ws.file("spin.rhai", "let n = 0;\nwhile n >= 0 { n += 1; }\n");
    let out = ws.run(&["run", "spin.rhai", "--timeout", "1s"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    resume_id(&out)
}

#[tokio::test]
async fn resuming_an_unknown_run_says_where_it_looked() {
    let ws = Workspace::new();
    let out = ws
        .run(&["run", "--resume", "0190aaaa-0000-7000-8000-000000000000"])
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("no run 0190aaaa-0000-7000-8000-000000000000 on this machine"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&ws.state_dir().join("runs").display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("$RUNBOOK_STATE_DIR"), "{}", out.stderr);
}

#[tokio::test]
async fn a_resume_runs_the_pinned_script_and_warns_when_the_file_changed() {
    let ws = Workspace::new();
    let id = timed_out(&ws).await;
    assert_eq!(run_json(&ws, &id)["status"], "interrupted");
    // The file now says something else; the run goes on with the text it started with.
    ws.file("spin.rhai", "40 + 2\n");
    let out = ws.run(&["run", "spin.rhai", "--resume", &id]).await;
    assert!(
        out.stderr.contains(&format!(
            "warning: spin.rhai is not the text run {id} was started with; the run continues with its pinned copy"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(out.code, Some(1), "the pinned loop ran again into its timeout: {out:?}");
    assert!(out.stderr.contains("timeout of 1s"), "{}", out.stderr);
    assert!(!out.stdout.contains("42"), "{out:?}");
    let record = run_json(&ws, &id);
    assert_eq!((&record["attempt"], &record["epoch"]), (&json!(2), &json!(2)));

    // Unchanged, no warning; --timeout applies to this attempt.
    ws.file("spin.rhai", "let n = 0;\nwhile n >= 0 { n += 1; }\n");
    let out = ws.run(&["run", "spin.rhai", "--resume", &id, "--timeout", "2s"]).await;
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    assert!(out.stderr.contains("timeout of 2s"), "{}", out.stderr);
}

#[tokio::test]
async fn a_damaged_journal_is_refused_naming_the_file() {
    let ws = Workspace::new();
    let id = timed_out(&ws).await;
    let journal = run_dir(&ws, &id).join("journal.jsonl");
    std::fs::write(&journal, "{\"key\": \"1\", \"kind\n{}\n").unwrap();
    let out = ws.run(&["run", "--resume", &id]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&journal.display().to_string()) && out.stderr.contains("line 1 is damaged"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_resume_keeps_the_runs_params_and_refuses_what_cannot_be_resumed() {
    let ws = Workspace::new();
    let id = timed_out(&ws).await;
    let out = ws.run(&["run", "--resume", &id, "--param", "x=1"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("keeps the params it was started with"),
        "{}",
        out.stderr
    );
    let out = ws.run(&["run", "--resume", &id, "--max-changes", "5"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("keeps the --max-changes it was started with (100)"),
        "{}",
        out.stderr
    );
    let out = ws.run(&["plan", "--resume", &id]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = ws.run(&["run", "--resume", &id, "--simulate"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = ws.run(&["run", "--resume", "../../etc"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("is not a run id"), "{}", out.stderr);
    let out = ws.run(&["run"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("runbook run --resume RUN_ID"), "{}", out.stderr);

    // A finished run has nothing to resume.
    ws.file("answer.rhai", "40 + 2\n");
    let out = ws.run(&["run", "answer.rhai"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "42", "stdout carries only the result");
    let finished = run_ids(&ws).into_iter().find(|r| *r != id).unwrap();
    assert_eq!(run_json(&ws, &finished)["status"], "succeeded");
    let out = ws.run(&["run", "--resume", &finished]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("run {finished} has already finished (succeeded)")),
        "{}",
        out.stderr
    );

    // A plan keeps no run.
    let before = run_ids(&ws).len();
    let out = ws.run(&["plan", "answer.rhai"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(run_ids(&ws).len(), before);
}

#[tokio::test]
async fn a_simulate_run_is_journaled_but_cannot_be_resumed() {
    let ws = Workspace::new();
    ws.file("spin.rhai", "let n = 0;\nwhile n >= 0 { n += 1; }\n");
    let out = ws.run(&["run", "spin.rhai", "--simulate", "--timeout", "1s"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(!out.stderr.contains("resume with:"), "{}", out.stderr);
    let id = run_ids(&ws).pop().unwrap();
    assert_eq!(run_json(&ws, &id)["simulate"], true);
    let out = ws.run(&["run", "--resume", &id]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("ran against the simulators of --simulate"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_run_being_run_elsewhere_is_not_resumed() {
    let ws = Workspace::new();
    ws.file("spin.rhai", "let n = 0;\nwhile n >= 0 { n += 1; }\n");
    let mut child = ws
        .command(&["run", "spin.rhai", "--timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Some(id) = run_ids(&ws).pop()
            && run_dir(&ws, &id).join("run.json").exists()
        {
            break id;
        }
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = ws.run(&["run", "--resume", &id]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("run {id} is being run by another process")),
        "{}",
        out.stderr
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
