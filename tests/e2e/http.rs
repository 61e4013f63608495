//! `http::` as a user runs it: the binary against a loopback HTTP/1.1 server that counts the
//! connections it accepts and keeps every request it reads, so that "nothing was sent" is a
//! count of zero on the wire.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::Workspace;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }
}

type Responder = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

#[derive(Default)]
struct State {
    connections: usize,
    requests: Vec<Seen>,
}

/// A loopback server; the responder gets each request and how many requests with the same
/// method and target came before it.
pub struct TestServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(responder: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let responder: Arc<Responder> = Arc::new(responder);
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                shared.lock().unwrap().connections += 1;
                tokio::spawn(serve(stream, shared.clone(), responder.clone()));
            }
        });
        TestServer { port, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn count(&self, method: &str) -> usize {
        self.requests().iter().filter(|r| r.method == method).count()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: tokio::net::TcpStream, state: Arc<Mutex<State>>, responder: Arc<Responder>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, target) = (method.to_owned(), target.to_owned());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let seen = Seen {
            method,
            target,
            headers,
            body,
        };
        let before = {
            let mut state = state.lock().unwrap();
            let before = state
                .requests
                .iter()
                .filter(|r| r.method == seen.method && r.target == seen.target)
                .count();
            state.requests.push(seen.clone());
            before
        };
        let reply = responder(&seen, before);
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            reply.status,
            reply.content_type,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = reader.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(reply.body.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Echoes what it was sent: `{method, target, body}` as JSON.
fn echo(seen: &Seen, _: usize) -> Reply {
    Reply::json(
        200,
        json!({"method": seen.method, "target": seen.target, "body": String::from_utf8_lossy(&seen.body)}),
    )
}

fn workspace(config: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file("runbook.toml", config);
    ws
}

#[tokio::test]
async fn plan_sends_no_change_but_reads_go_out() {
    let server = TestServer::start(echo).await;
    let ws = workspace(&format!(
        "[providers.http.profiles.api]\nbase_url = \"{}\"\n",
        server.url("/v1")
    ));
    ws.file(
        "both.rhai",
        r#"
        let read = http::get("api", ["users", "a b/c"], #{query: #{limit: 5, tag: ["x", "y"]}});
        let made = http::post("api", "events", #{json: #{user: read.body.target}});
        http::request("api", #{method: "GET", path: "events"});
        #{read: read.body.target, status: made.status}
        "#,
    );
    for args in [
        vec!["plan", "both.rhai", "-o", "json"],
        vec!["run", "--plan", "both.rhai", "-o", "json"],
    ] {
        let before = server.count("GET");
        let plan = ws.run(&args).await;
        assert_eq!(plan.code, Some(0), "{plan:?}");
        let doc = plan.json();
        assert_eq!(server.count("POST"), 0, "{args:?} sent a POST");
        assert_eq!(
            server.count("GET"),
            before + 1,
            "{args:?}: the read goes out, the request() does not"
        );
        assert_eq!(doc["result"]["read"], "/v1/users/a%20b%2Fc?limit=5&tag=x&tag=y");
        assert_eq!(doc["result"]["status"], Value::Null);
        let planned: Vec<&str> = doc["planned_changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["action"].as_str().unwrap())
            .collect();
        assert_eq!(planned, vec!["http.post", "http.request"]);
    }

    let run = ws.run(&["run", "both.rhai", "-o", "json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["result"]["status"], 200);
    let posts: Vec<Seen> = server.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].target, "/v1/events");
    assert_eq!(posts[0].header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&posts[0].body).unwrap(),
        json!({"user": "/v1/users/a%20b%2Fc?limit=5&tag=x&tag=y"})
    );
}

#[tokio::test]
async fn the_guard_counts_http_changes() {
    let server = TestServer::start(echo).await;
    let ws = workspace(&format!(
        "[providers.http.profiles.api]\nbase_url = \"{}\"\n",
        server.url("")
    ));
    ws.file(
        "three.rhai",
        r#"for i in 0..3 { http::post("api", ["events", i], #{json: #{n: i}}); }"#,
    );
    let plan = ws.run(&["plan", "three.rhai", "--max-changes", "2"]).await;
    assert_eq!(plan.code, Some(3), "{plan:?}");
    assert_eq!(server.count("POST"), 0);

    let run = ws.run(&["run", "three.rhai", "--max-changes", "2"]).await;
    assert_eq!(run.code, Some(3), "{run:?}");
    let sent: Vec<String> = server.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        sent,
        vec!["/events/0", "/events/1"],
        "the third POST was refused before it was sent"
    );
}

#[tokio::test]
async fn paths_outside_the_profile_are_refused_before_any_connection() {
    let elsewhere = TestServer::start(echo).await;
    let location = elsewhere.url("/stolen");
    let server = TestServer::start(move |seen, _| {
        if seen.target.starts_with("/v1/moved") {
            let mut reply = Reply::text(302, "");
            reply.headers.push(("location".to_owned(), location.clone()));
            reply
        } else {
            Reply::text(200, "fine")
        }
    })
    .await;
    let ws = workspace(&format!(
        "[providers.http.profiles.api]\nbase_url = \"{}\"\nbearer = \"outside-token-7781\"\n",
        server.url("/v1")
    ));
    let outside = [
        elsewhere.url("/x"),
        format!("//127.0.0.1:{}/x", elsewhere.port),
        "../admin".to_owned(),
        "users/../../admin".to_owned(),
        "%2e%2e/admin".to_owned(),
        "users\\..\\..\\admin".to_owned(),
        // Java servers (Tomcat, Jetty, Spring) read `..;x` as `..`, and some decode %2F to /.
        "..;/admin".to_owned(),
        "users/..;x/..;y/admin".to_owned(),
        "users%2F..%2F..%2Fadmin".to_owned(),
    ];
    for path in &outside {
        let script = format!("http::get(\"api\", {})", Value::String(path.clone()));
        ws.file("outside.rhai", &script);
        let out = ws.run(&["run", "outside.rhai"]).await;
        assert_eq!(out.code, Some(1), "{path}: {out:?}");
        assert!(
            out.stderr.contains("refused for profile \"api\""),
            "{path}: {}",
            out.stderr
        );
    }
    assert_eq!(server.connections(), 0, "a refused path opened a connection");
    assert_eq!(elsewhere.connections(), 0);

    // A redirect is answered by the profile's own host, and never followed.
    ws.file(
        "moved.rhai",
        r#"
        let out = "followed";
        try { http::get("api", "moved"); } catch (e) { out = #{status: e.status, code: e.code, location: e.location}; }
        out
        "#,
    );
    let out = ws.run(&["run", "moved.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.json()["result"],
        json!({"status": 302, "code": "redirect", "location": elsewhere.url("/stolen")})
    );
    assert_eq!(server.count("GET"), 1);
    assert_eq!(elsewhere.connections(), 0, "the redirect was followed");
}

#[tokio::test]
async fn an_error_answer_is_catchable_with_status_and_body() {
    let server = TestServer::start(|seen, _| {
        if seen.target.contains("nobody") {
            Reply::json(404, json!({"error": "no such user", "echo": "err-token-31337"}))
        } else if seen.target.contains("huge") {
            Reply::text(500, &"x".repeat(20_000))
        } else {
            Reply::text(200, "plain")
        }
    })
    .await;
    let ws = workspace(&format!(
        "[providers.http.profiles.dir]\nbase_url = \"{}\"\nheader = {{ name = \"X-Api-Key\", value = \"err-token-31337\" }}\n",
        server.url("")
    ));
    ws.file(
        "missing.rhai",
        r#"
        let ok = http::get("dir", "users/somebody");
        let out = "no error";
        try {
            http::get("dir", ["users", "nobody"]);
        } catch (e) {
            out = #{status: e.status, body: e.body, kind: e.kind, message: e.message, ok: ok.body};
        }
        try { http::get("dir", "huge"); } catch (e) { out.huge = e.body.len(); out.huge_status = e.status; }
        out
        "#,
    );
    let out = ws.run(&["run", "missing.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = &out.json()["result"];
    assert_eq!(result["status"], 404);
    assert_eq!(result["kind"], "api");
    assert_eq!(result["ok"], "plain");
    assert_eq!(result["huge_status"], 500, "a 5xx GET is resent, then reported");
    assert!(
        result["huge"].as_u64().unwrap() <= runbook_provider_http::EXCERPT as u64 + 1,
        "the body excerpt is capped: {}",
        result["huge"]
    );
    let body = result["body"].as_str().unwrap();
    assert!(body.contains("no such user"), "{body}");
    assert!(
        !out.all().contains("err-token-31337") && body.contains("***"),
        "the echoed credential is redacted: {body}"
    );

    ws.file("unknown.rhai", r#"http::get("tickets", "x")"#);
    let out = ws.run(&["run", "unknown.rhai"]).await;
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("no http profile \"tickets\"") && out.stderr.contains("dir"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn every_kind_of_secret_stays_out_of_every_output() {
    let server = TestServer::start(echo).await;
    let base = server.url("");
    let hook = "/services/T0001/B0002/webhook-secret-5514";
    let ws = workspace(&format!(
        r#"
[providers.http.profiles.bearer]
base_url = "{base}/b"
bearer = "${{BEARER_TOKEN}}"

[providers.http.profiles.basic]
base_url = "{base}/u"
basic = {{ user = "ops", password = "${{BASIC_PASSWORD}}" }}

[providers.http.profiles.header]
base_url = "{base}/h"
header = {{ name = "X-Api-Key", value = "${{HEADER_KEY}}" }}

[providers.http.profiles.hmac]
base_url = "{base}/s"
hmac = {{ header = "X-Signature", secret = "${{HMAC_SECRET}}" }}

[providers.http.profiles.hook]
base_url = "{base}{hook}"
secret_url = true
"#
    ));
    let mut ws = ws;
    let secrets = [
        ("BEARER_TOKEN", "bearer-secret-9f2c81"),
        ("BASIC_PASSWORD", "basic-secret-77e1aa"),
        ("HEADER_KEY", "header-secret-c0ffee"),
        ("HMAC_SECRET", "hmac-secret-5ca1ab1e"),
    ];
    for (k, v) in secrets {
        ws.set_env(k, v);
    }
    ws.set_env("RUST_LOG", "trace");
    ws.file(
        "auth.rhai",
        r#"
        let out = [];
        for p in ["bearer", "basic", "header"] { out.push(http::get(p, "whoami").body.target); }
        out.push(http::post("hmac", "events", #{json: #{event: "reset"}}).status);
        out.push(http::post("hook", "", #{json: #{text: "done"}}).status);
        out
        "#,
    );
    let out = ws
        .run(&["run", "auth.rhai", "-o", "json", "--audit-log", "audit.jsonl"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc = out.json();
    assert_eq!(doc["result"], json!(["/b/whoami", "/u/whoami", "/h/whoami", 200, 200]));

    // Each credential went where it belongs.
    let requests = server.requests();
    let by_target = |t: &str| requests.iter().find(|r| r.target == t).unwrap().clone();
    assert_eq!(
        by_target("/b/whoami").header("authorization"),
        Some("Bearer bearer-secret-9f2c81")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("ops:basic-secret-77e1aa");
    assert_eq!(
        by_target("/u/whoami").header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(by_target("/h/whoami").header("x-api-key"), Some("header-secret-c0ffee"));
    let signed = by_target("/s/events");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hmac-secret-5ca1ab1e").unwrap();
    mac.update(&signed.body);
    assert_eq!(
        signed.header("x-signature"),
        Some(hex::encode(mac.finalize().into_bytes()).as_str())
    );
    assert_eq!(signed.body, br#"{"event":"reset"}"#);
    assert_eq!(by_target(hook).method, "POST");

    // And nowhere else: not in stdout, stderr at trace level, the audit trail, or the run's
    // directory (its record, journal and state).
    let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("http.post"), "{audit}");
    assert!(
        out.stderr.contains("TRACE") || out.stderr.contains("trace"),
        "trace logging is on"
    );
    let mut stored = String::new();
    for entry in walk(&ws.state_dir()) {
        stored.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    let places = [
        ("stdout and stderr", out.all()),
        ("the audit trail", audit),
        ("the state directory", stored),
    ];
    for (place, text) in &places {
        for secret in secrets
            .iter()
            .map(|(_, v)| *v)
            .chain([basic.as_str(), "webhook-secret-5514"])
        {
            assert!(!text.contains(secret), "{secret} appears in {place}");
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_post_is_resent_only_with_an_idempotency_key_and_a_put_always() {
    // Every target answers 503 the first time, then 200.
    let server = TestServer::start(|seen, before| {
        if before == 0 {
            Reply::text(503, "busy")
        } else {
            Reply::json(200, json!({"key": seen.header("idempotency-key")}))
        }
    })
    .await;
    let ws = workspace(&format!(
        "[providers.http.profiles.plain]\nbase_url = \"{0}/plain\"\n\n\
         [providers.http.profiles.keyed]\nbase_url = \"{0}/keyed\"\nidempotency_header = \"Idempotency-Key\"\n",
        server.url("")
    ));
    ws.file(
        "retries.rhai",
        r#"
        let plain = "sent";
        try { http::post("plain", "jobs", #{json: #{}}); } catch (e) { plain = e.status; }
        let put = http::put("plain", ["jobs", 1], #{json: #{}}).status;
        let keyed = http::post("keyed", "jobs", #{json: #{}}).body.key;
        #{plain: plain, put: put, keyed: keyed}
        "#,
    );
    let out = ws.run(&["run", "retries.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = &out.json()["result"];
    assert_eq!(result["plain"], 503, "a POST without a key is not resent");
    assert_eq!(result["put"], 200, "a PUT is resent");
    let key = result["keyed"].as_str().unwrap();
    let run_id = out.json()["run_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("runbook-{run_id}-")), "{key}");

    let count = |method: &str, target: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.method == method && r.target == target)
            .count()
    };
    assert_eq!(count("POST", "/plain/jobs"), 1);
    assert_eq!(count("PUT", "/plain/jobs/1"), 2);
    assert_eq!(count("POST", "/keyed/jobs"), 2);
    let keys: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.target == "/keyed/jobs")
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        vec![key.to_owned(), key.to_owned()],
        "the resend carries the same key"
    );
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.target.starts_with("/plain"))
            .all(|r| r.header("idempotency-key").is_none())
    );
}

/// A stand-in for a Slack incoming webhook, as Slack documents it: a JSON body with `text`
/// answers `ok` (text/plain, 200); anything else `invalid_payload` (400).
async fn slack() -> TestServer {
    TestServer::start(|seen, _| {
        let text = serde_json::from_slice::<Value>(&seen.body)
            .ok()
            .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_owned));
        match (seen.method.as_str(), text) {
            ("POST", Some(t)) if !t.is_empty() => Reply::text(200, "ok"),
            _ => Reply::text(400, "invalid_payload"),
        }
    })
    .await
}

#[tokio::test]
async fn notify_slack_posts_the_revoke_summary_to_the_webhook() {
    let server = slack().await;
    let hook = "/services/T0001/B0002/slack-secret-4242";
    let mut ws = workspace("[providers.http.profiles.slack]\nbase_url = \"${SLACK_WEBHOOK_URL}\"\nsecret_url = true\n");
    ws.set_env("SLACK_WEBHOOK_URL", &server.url(hook));
    // What `runbook run revoke_mfa_for_failed_logins.rhai -o json` prints under "result".
    ws.file(
        "summary.json",
        &json!({
            "failures": 17, "threshold": 3, "window_hours": 24, "mode": "reset",
            "flagged": [{"email": "ann@example.com", "failures": 4}, {"email": "bob@example.com", "failures": 3},
                        {"email": "carol@example.com", "failures": 5}, {"email": "dave@example.com", "failures": 3}],
            "acted_on": [{"email": "ann@example.com", "principal": "ann", "id": "1"},
                         {"email": "bob@example.com", "principal": "bob", "id": "2"}],
            "not_in_privx": ["dave@example.com"],
            "ambiguous": [{"email": "carol@example.com", "candidates": ["carol (AD)", "carol.local (LOCAL)"]}]
        })
        .to_string(),
    );
    let script = format!("{}/scripts/notify_slack.rhai", env!("CARGO_MANIFEST_DIR"));

    let plan = ws
        .run(&["plan", &script, "--params-file", "summary.json", "-o", "json"])
        .await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert_eq!(server.connections(), 0, "a plan posts nothing");
    assert_eq!(plan.json()["planned_changes"][0]["action"], "http.post");

    let run = ws
        .run(&["run", &script, "--params-file", "summary.json", "-o", "json"])
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["result"]["posted"], true);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].target, hook);
    let text = serde_json::from_slice::<Value>(&requests[0].body).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    for expected in [
        "MFA reset",
        "2 users",
        "ann@example.com (ann)",
        "bob@example.com (bob)",
        "dave@example.com",
        "carol@example.com",
        "17 failed logins",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from {text}");
    }
    assert!(!run.all().contains("slack-secret-4242") && !plan.all().contains("slack-secret-4242"));

    // Slack refusing the message is the run's failure, with Slack's word for it.
    ws.file("empty_text.rhai", r#"http::post("slack", "", #{json: #{text: ""}})"#);
    let out = ws.run(&["run", "empty_text.rhai"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("invalid_payload"), "{}", out.stderr);

    // A webhook that cannot be reached: the error names the address without its secret path.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ws = workspace("[providers.http.profiles.slack]\nbase_url = \"${SLACK_WEBHOOK_URL}\"\nsecret_url = true\n");
    ws.set_env("SLACK_WEBHOOK_URL", &format!("http://127.0.0.1:{closed}{hook}/"));
    ws.set_env("RUST_LOG", "trace");
    ws.file("down.rhai", r#"http::put("slack", "", #{json: #{text: "x"}})"#);
    let out = ws.run(&["run", "down.rhai", "--audit-log", "audit.jsonl"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap();
    assert!(!out.all().contains("slack-secret-4242") && !audit.contains("slack-secret-4242"));
}

#[tokio::test]
async fn a_profile_trusts_its_ca_cert_and_only_then() {
    let sims = crate::support::Sims::start_with(
        crate::fixtures::tenant(0, 1),
        runbook_sim::SimOptions {
            tls: true,
            ..runbook_sim::SimOptions::default()
        },
    )
    .await;
    let px = sims.px();
    let ws = Workspace::new();
    ws.file("ca.pem", &px.ca_cert_pem().unwrap());
    ws.file(
        "runbook.toml",
        &format!(
            "[providers.http.profiles.trusted]\nbase_url = \"{0}\"\nca_cert = \"ca.pem\"\n\n\
             [providers.http.profiles.untrusted]\nbase_url = \"{0}\"\n",
            px.base_url()
        ),
    );
    ws.file(
        "tls.rhai",
        r#"
        let out = #{};
        for p in ["trusted", "untrusted"] {
            try { http::get(p, "local-user-store/api/v1/users"); out[p] = "answered"; }
            catch (e) { out[p] = #{status: e.status, code: e.code, message: e.message}; }
        }
        out
        "#,
    );
    let out = ws.run(&["run", "tls.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = &out.json()["result"];
    assert_eq!(
        result["trusted"]["status"], 401,
        "TLS held and PrivX refused the missing token: {result}"
    );
    assert_eq!(result["untrusted"]["code"], "certificate", "{result}");
    let message = result["untrusted"]["message"].as_str().unwrap();
    assert!(
        message.contains("set ca_cert in [providers.http.profiles.untrusted]"),
        "{message}"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn a_path_segment_holding_a_semicolon_stays_one_segment() {
    let server = TestServer::start(echo).await;
    let ws = workspace(&format!(
        "[providers.http.profiles.api]\nbase_url = \"{}\"\n",
        server.url("/v1")
    ));
    ws.file("semi.rhai", r#"http::get("api", ["users", "a;b"]).body.target"#);
    let out = ws.run(&["run", "semi.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["result"], "/v1/users/a%3Bb");
    ws.file("dots.rhai", r#"http::get("api", ["users", "..;x", "admin"])"#);
    let out = ws.run(&["run", "dots.rhai"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("Java servers read"), "{}", out.stderr);
    assert_eq!(server.count("GET"), 1, "the ..; segment was sent");
}

#[tokio::test]
async fn an_answer_larger_than_max_body_fails_clearly() {
    let big = "x".repeat(3 << 20);
    let server = TestServer::start(move |_, _| Reply::text(200, &big)).await;
    let ws = workspace(&format!(
        "[providers.http.profiles.small]\nbase_url = \"{url}\"\nmax_body = \"1MiB\"\n\n\
         [providers.http.profiles.roomy]\nbase_url = \"{url}\"\n",
        url = server.url("/v1")
    ));
    ws.file(
        "big.rhai",
        r#"
        let out = "read";
        try { http::get("small", "big"); } catch (e) { out = #{message: e.message, code: e.code, status: e.status}; }
        #{small: out, roomy: http::get("roomy", "big").body.len()}
        "#,
    );
    let out = ws.run(&["run", "big.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = &out.json()["result"];
    let message = result["small"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("with a body larger than 1 MiB") && message.contains("max_body"),
        "{result}"
    );
    assert_eq!(result["small"]["code"], "body_too_large");
    assert_eq!(result["small"]["status"], 200);
    assert_eq!(result["roomy"], 3 << 20, "the default limit (8 MiB) reads 3 MiB");
}

#[tokio::test]
async fn a_plan_names_the_path_each_http_change_targets() {
    let server = TestServer::start(echo).await;
    let ws = workspace(&format!(
        "[providers.http.profiles.api]\nbase_url = \"{}\"\n",
        server.url("/v1")
    ));
    ws.file(
        "two.rhai",
        r#"
        let made = http::post("api", ["users", "u1", "mfa"], #{json: #{on: true}});
        http::delete("api", "users/u2");
        #{status: made.status, headers: made.headers, body: made.body}
        "#,
    );
    let plan = ws.run(&["plan", "two.rhai", "-o", "json"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    let doc = plan.json();
    let ids: Vec<&str> = doc["planned_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["labels"][0]["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, vec!["users/u1/mfa", "users/u2"], "{doc}");
    // What a planned change returns: a Response with nothing in it.
    assert_eq!(doc["result"], json!({"status": null, "headers": {}, "body": null}));
    assert_eq!(server.count("POST") + server.count("DELETE"), 0);
}
