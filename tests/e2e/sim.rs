//! `runbook sim`: the simulators as a user serves them, and Cloudflare's official SDK pointed
//! at them.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fixtures::tenant;
use crate::support::Workspace;

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
    let Ok(python) = std::env::var("RUNBOOK_TEST_PYTHON") else {
        eprintln!(
            "SKIPPED cloudflares_official_python_sdk_accepts_runbook_sim: set RUNBOOK_TEST_PYTHON to a python with \
             `pip install cloudflare` (.ci/run does)"
        );
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
