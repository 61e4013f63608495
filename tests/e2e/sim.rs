//! `runbook sim`: the simulators as a user serves them, and Cloudflare's official SDK pointed
//! at them.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fixtures::tenant;
use crate::support::{SKIP_VAR, Workspace, needed_env};

/// A running `runbook sim` and the variables it printed.
struct Served {
    child: tokio::process::Child,
    env: Vec<(String, String)>,
}

async fn serve(ws: &Workspace, extra: &[&str]) -> Served {
    let mut args = vec!["sim", "--cloudflare-addr", "127.0.0.1:0", "--privx-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = ws
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut env = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with('#') {
                break;
            }
            let rest = line
                .strip_prefix("export ")
                .unwrap_or_else(|| panic!("not an export line: {line}"));
            let (key, value) = rest.split_once('=').unwrap();
            env.push((key.to_owned(), value.trim_matches('\'').to_owned()));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("runbook sim printed nothing");
    Served { child, env }
}

impl Served {
    /// Ctrl-C, then the exit code.
    async fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("runbook sim ignored Ctrl-C")
            .unwrap();
        status.code()
    }
}

#[tokio::test]
async fn runbook_sim_serves_until_ctrl_c_and_its_exports_configure_the_providers() {
    let ws = Workspace::new();
    let served = serve(&ws, &[]).await;
    let names: Vec<&str> = served.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "CLOUDFLARE_BASE_URL",
            "CLOUDFLARE_API_TOKEN",
            "CLOUDFLARE_ACCOUNT_ID",
            "PRIVX_API_BASE_URL",
            "PRIVX_API_CLIENT_ID",
            "PRIVX_API_CLIENT_SECRET",
            "PRIVX_API_OAUTH_CLIENT_ID",
            "PRIVX_API_OAUTH_CLIENT_SECRET"
        ]
    );
    // Another process, configured only by those variables, works against them.
    let mut user = Workspace::new();
    for (k, v) in &served.env {
        user.set_env(k, v);
    }
    user.file(
        "count.rhai",
        "[cloudflare::list_users().len(), privx::search_users().len()]",
    );
    let out = user.run(&["run", "count.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["result"], serde_json::json!([500, 472]), "the demo tenant");
    assert_eq!(served.stop().await, Some(0));
}

#[tokio::test]
async fn print_env_prints_the_same_variables_and_exits() {
    let ws = Workspace::new();
    let out = ws.run(&["sim", "--print-env"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("export CLOUDFLARE_BASE_URL='http://127.0.0.1:7801/client/v4'"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("export PRIVX_API_BASE_URL='http://127.0.0.1:7802'"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn cloudflares_official_python_sdk_accepts_runbook_sim() {
    let Some(python) = needed_env(
        "RUNBOOK_TEST_PYTHON",
        "python",
        "a python with `pip install cloudflare`, as .ci/run makes",
    ) else {
        return;
    };
    let ws = Workspace::new();
    ws.file("tenant.json", &tenant(10, 0).to_string());
    let served = serve(&ws, &["--fixture", "tenant.json"]).await;
    let script = format!("{}/tests/sdk/cloudflare_sdk_check.py", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .envs(served.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // The fixture's legacy credentials (the simulator's defaults), for the X-Auth-Key check.
    cmd.env("CLOUDFLARE_EMAIL", "sim@example.com")
        .env("CLOUDFLARE_API_KEY", "sim-cloudflare-global-key");
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the SDK check failed:\n{stdout}\n{stderr}");
    eprintln!("{}", stdout.trim());
    assert_eq!(served.stop().await, Some(0));
}

#[tokio::test]
async fn an_exported_demo_tenant_can_be_edited_and_run_against() {
    let ws = Workspace::new();
    let out = ws.run(&["sim", "--export-fixture", "tenant.json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("--fixture tenant.json"), "{}", out.stderr);
    let text = std::fs::read_to_string(ws.path().join("tenant.json")).unwrap();
    assert!(text.lines().count() > 100, "written to be edited, one value a line");
    let mut tenant: serde_json::Value = serde_json::from_str(&text).unwrap();
    tenant["cloudflare"]["users"][0]["email"] = serde_json::json!("edited@example.com");
    ws.file("tenant.json", &tenant.to_string());
    ws.file(
        "count.rhai",
        "[cloudflare::list_users().len(), cloudflare::list_users(#{email: \"edited@example.com\"}).len()]",
    );
    let out = ws
        .run(&[
            "run",
            "count.rhai",
            "--simulate",
            "--fixture",
            "tenant.json",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["result"], serde_json::json!([500, 1]));

    let out = ws.run(&["sim", "--export-fixture", "tenant.json"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("tenant.json already exists"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("tenant.json")).unwrap(),
        tenant.to_string()
    );
}

#[tokio::test]
async fn a_busy_port_is_named_with_the_flag_that_moves_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let ws = Workspace::new();
    let out = ws
        .run(&["sim", "--cloudflare-addr", &addr, "--privx-addr", "127.0.0.1:0"])
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "cannot start the Cloudflare simulator: cannot listen on {addr}: "
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("choose a free address with --cloudflare-addr"),
        "{}",
        out.stderr
    );
}

/// Runs one test of this binary in a child process with `var` unset and `skip` as the opt-out.
/// Returns whether it passed, and everything it printed.
fn run_this_test_without(test: &str, var: &str, skip: Option<&str>) -> (bool, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture"])
        .env_remove(var)
        .env_remove(SKIP_VAR);
    if let Some(skip) = skip {
        cmd.env(SKIP_VAR, skip);
    }
    let out = cmd.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn tests_that_need_postgres_or_python_fail_without_them_unless_opted_out() {
    for (test, var, what) in [
        (
            "sim::cloudflares_official_python_sdk_accepts_runbook_sim",
            "RUNBOOK_TEST_PYTHON",
            "python",
        ),
        (
            "cluster::three_instances_share_2000_deliveries_and_lose_none_to_a_sigkill",
            "RUNBOOK_TEST_POSTGRES_URL",
            "postgres",
        ),
    ] {
        let (passed, said) = run_this_test_without(test, var, None);
        assert!(!passed, "{test} passed without {var}:\n{said}");
        assert!(
            said.contains(&format!("{var} is unset")) && said.contains("1 failed"),
            "{said}"
        );

        let (passed, said) = run_this_test_without(test, var, Some(&format!("other,{what}")));
        assert!(passed, "{test} failed with {SKIP_VAR}={what}:\n{said}");
        assert!(said.contains("*** SKIPPED") && said.contains("1 passed"), "{said}");
    }
}
