//! The example provider, driven by a script through the example host, against a tickets
//! service on loopback.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

const TOKEN: &str = "tickets-token-123456";

#[derive(Default)]
struct Service {
    tickets: Mutex<Vec<Value>>,
    posts: Mutex<usize>,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn list(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    if !authorized(&headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let all = s.tickets.lock().unwrap().clone();
    let wanted: Vec<Value> = all
        .into_iter()
        .filter(|t| q.get("status").is_none_or(|st| t["status"] == json!(st)))
        .collect();
    Ok(Json(json!({"tickets": wanted})))
}

async fn open(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), StatusCode> {
    if !authorized(&headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    *s.posts.lock().unwrap() += 1;
    let mut tickets = s.tickets.lock().unwrap();
    let ticket =
        json!({"id": tickets.len() + 1, "title": body["title"], "status": "open", "assignee": body["assignee"]});
    tickets.push(ticket.clone());
    Ok((StatusCode::CREATED, Json(ticket)))
}

async fn serve(service: Arc<Service>) -> String {
    let app = Router::new()
        .route("/tickets", get(list).post(open))
        .with_state(service);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

const SCRIPT: &str = r#"
fn count(list) { list.len().to_string() }

let open = tickets::list_tickets(#{status: "open"});
let t = tickets::open_ticket("Review MFA for " + count(open) + " users", #{assignee: "secops"});
#{before: open.len(), opened: t.id}
"#;

fn run_host(url: &str, script: &std::path::Path, plan: bool) -> (i32, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickets-runbook"));
    cmd.arg(script).env("TICKETS_URL", url).env("TICKETS_TOKEN", TOKEN);
    if plan {
        cmd.arg("--plan");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let doc = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), doc, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_drives_the_example_provider() {
    let service = Arc::new(Service::default());
    service
        .tickets
        .lock()
        .unwrap()
        .push(json!({"id": 0, "title": "old", "status": "open"}));
    let url = serve(service.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tickets.rhai");
    std::fs::write(&script, SCRIPT).unwrap();

    let (code, doc, stderr) = tokio::task::spawn_blocking({
        let (url, script) = (url.clone(), script.clone());
        move || run_host(&url, &script, true)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["result"], json!({"before": 1, "opened": "(planned)"}));
    assert_eq!(doc["planned_changes"][0]["action"], json!("tickets.open_ticket"));
    assert_eq!(*service.posts.lock().unwrap(), 0, "plan mode opened a ticket");

    let (code, doc, stderr) = tokio::task::spawn_blocking(move || run_host(&url, &script, false))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["result"], json!({"before": 1, "opened": 2}));
    assert_eq!(*service.posts.lock().unwrap(), 1);
    assert_eq!(service.tickets.lock().unwrap()[1]["assignee"], json!("secops"));
}

#[test]
fn without_settings_the_host_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("t.rhai");
    std::fs::write(&script, "tickets::list_tickets()").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tickets-runbook"))
        .arg(&script)
        .env_remove("TICKETS_URL")
        .env_remove("TICKETS_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tickets is not configured: set TICKETS_URL and TICKETS_TOKEN"),
        "{stderr}"
    );
}
