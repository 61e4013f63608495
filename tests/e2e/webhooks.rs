//! Webhooks as an attacker tries them: a real `runbook serve`, real HTTP over loopback, real
//! restarts. A captured delivery replayed under a new id, with a new timestamp, or after its run
//! was pruned starts no second run; a request without a valid signature header is refused before
//! its body is read; a flood of large bodies with bad MACs stays inside the intake budget.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serve::{SECRET, Server, all_runs, wait_until};
use crate::support::Workspace;

const GITHUB_SECRET: &str = "github-webhook-secret-for-tests-0001";
/// A Standard Webhooks secret: `whsec_` and the base64 of a 32-byte key.
fn standard_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"runbook-standard-webhooks-key-32")
    )
}

const SCRIPT: &str = "print(`delivery ${event.delivery_id}`);\nevent.delivery_id\n";

fn config(extra_serve: &str) -> String {
    format!(
        r#"
[serve]
listen = "127.0.0.1:0"
store = "sqlite://runbook.db"
workers = 3
{extra_serve}

[[automation]]
name = "plain"
script = "hook.rhai"
trigger = {{ webhook = "/hooks/plain", secret = "${{HMAC_SECRET}}" }}

[[automation]]
name = "gh"
script = "hook.rhai"
trigger = {{ webhook = "/hooks/gh", scheme = "github", secret = "${{GITHUB_SECRET}}" }}

[[automation]]
name = "std"
script = "hook.rhai"
trigger = {{ webhook = "/hooks/std", scheme = "standard-webhooks", secret = "${{STD_SECRET}}" }}
"#
    )
}

fn workspace(extra_serve: &str) -> Workspace {
    let mut ws = Workspace::new();
    ws.set_env("HMAC_SECRET", SECRET);
    ws.set_env("GITHUB_SECRET", GITHUB_SECRET);
    ws.set_env("STD_SECRET", &standard_secret());
    ws.file("hook.rhai", SCRIPT);
    ws.file("runbook.toml", &config(extra_serve));
    ws
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Hmac,
    Github,
    Standard,
}

const SCHEMES: [Scheme; 3] = [Scheme::Hmac, Scheme::Github, Scheme::Standard];

impl Scheme {
    fn path(self) -> &'static str {
        match self {
            Scheme::Hmac => "/hooks/plain",
            Scheme::Github => "/hooks/gh",
            Scheme::Standard => "/hooks/std",
        }
    }

    fn automation(self) -> &'static str {
        match self {
            Scheme::Hmac => "plain",
            Scheme::Github => "gh",
            Scheme::Standard => "std",
        }
    }

    fn id_header(self) -> &'static str {
        match self {
            Scheme::Hmac => "X-Delivery-Id",
            Scheme::Github => "X-GitHub-Delivery",
            Scheme::Standard => "webhook-id",
        }
    }

    fn timestamp_header(self) -> Option<&'static str> {
        match self {
            Scheme::Hmac => Some("X-Timestamp"),
            Scheme::Github => None,
            Scheme::Standard => Some("webhook-timestamp"),
        }
    }

    fn signature_header(self) -> &'static str {
        match self {
            Scheme::Hmac => "X-Signature-256",
            Scheme::Github => "X-Hub-Signature-256",
            Scheme::Standard => "webhook-signature",
        }
    }
}

/// A signed delivery as it went over the wire: what an attacker who captured it holds.
#[derive(Debug, Clone)]
struct Delivery {
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    /// Signed as the scheme's sender signs (`id` may be left out where the scheme allows).
    fn signed(scheme: Scheme, id: Option<&str>, at: i64, body: &Value) -> Delivery {
        let body = serde_json::to_vec(body).unwrap();
        let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        let signature = match scheme {
            Scheme::Hmac => runbook_serve::webhook::sign(SECRET, Some(at), &body),
            Scheme::Github => runbook_serve::webhook::sign(GITHUB_SECRET, None, &body),
            Scheme::Standard => {
                runbook_serve::webhook::sign_standard(&standard_secret(), id.unwrap_or_default(), at, &body)
            }
        };
        headers.push((scheme.signature_header().to_owned(), signature));
        if let Some(h) = scheme.timestamp_header() {
            headers.push((h.to_owned(), at.to_string()));
        }
        if let Some(id) = id {
            headers.push((scheme.id_header().to_owned(), id.to_owned()));
        }
        if scheme == Scheme::Github {
            headers.push(("X-GitHub-Event".to_owned(), "push".to_owned()));
        }
        Delivery {
            path: scheme.path(),
            headers,
            body,
        }
    }

    /// The same delivery with one header changed (and not signed again).
    fn with(&self, name: &str, value: &str) -> Delivery {
        let mut d = self.clone();
        d.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        d.headers.push((name.to_owned(), value.to_owned()));
        d
    }

    async fn send(&self, client: &reqwest::Client, url: &str) -> (u16, Value) {
        let mut request = client.post(format!("{url}{}", self.path)).body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

async fn runs_of(ws: &Workspace, automation: &str) -> usize {
    all_runs(ws).await.iter().filter(|r| r.automation == automation).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_delivery_starts_one_run_however_it_is_replayed_even_after_pruning() {
    // keep = 1s: a finished run is pruned at the next start; the dedup keys stay (dedup_keep).
    let ws = workspace("keep = \"1s\"");
    let server = Server::start(&ws).await;
    let log = server.log();
    for expected in [
        "webhook /hooks/plain (automation \"plain\"): scheme hmac-sha256: x-signature-256",
        "webhook /hooks/gh (automation \"gh\"): scheme github: x-hub-signature-256",
        "webhook /hooks/std (automation \"std\"): scheme standard-webhooks: webhook-id, webhook-timestamp",
    ] {
        assert!(
            log.contains(expected),
            "serve names each webhook's scheme and headers at start: {expected:?} in\n{log}"
        );
    }
    let client = reqwest::Client::new();
    let body = json!({"alert": "impossible travel", "user": "ann@example.com"});
    let at = now();
    let mut captured = Vec::new();
    for scheme in SCHEMES {
        let name = scheme.automation();
        let delivery = Delivery::signed(scheme, Some(&format!("{name}-1")), at, &body);
        let (status, first) = delivery.send(&client, &server.url).await;
        assert_eq!(status, 202, "{name}: {first}");
        let run_id = first["run_id"].clone();

        // Replayed under a new id: the signature (hmac-sha256, github) makes it the same
        // delivery; standard-webhooks signs the id, so the signature no longer matches.
        let relabelled = delivery.with(scheme.id_header(), &format!("{name}-2"));
        let (status, answer) = relabelled.send(&client, &server.url).await;
        match scheme {
            Scheme::Standard => assert_eq!(status, 401, "{name}: {answer}"),
            _ => assert_eq!(
                (status, &answer["run_id"], &answer["duplicate"]),
                (200, &run_id, &json!(true)),
                "{name}"
            ),
        }
        // The replay did not claim the id it carried: the sender's real delivery under that id
        // (another event) starts its run.
        let real = Delivery::signed(scheme, Some(&format!("{name}-2")), at, &json!({"another": "event"}));
        let (status, answer) = real.send(&client, &server.url).await;
        assert_eq!(status, 202, "{name}: {answer}");
        // Replayed with a new timestamp, not signed again: refused.
        if let Some(ts) = scheme.timestamp_header() {
            let (status, answer) = delivery
                .with(ts, &(at + 1).to_string())
                .send(&client, &server.url)
                .await;
            assert_eq!(status, 401, "{name}: {answer}");
        }
        // Sent again as it was: the same delivery.
        let (status, answer) = delivery.send(&client, &server.url).await;
        assert_eq!((status, &answer["run_id"]), (200, &run_id), "{name}");
        captured.push((scheme, delivery, run_id));
    }
    // Two distinct events with the same body, at different times: two runs.
    for scheme in [Scheme::Hmac, Scheme::Standard] {
        let id_a = format!("{}-a", scheme.automation());
        let id_b = format!("{}-b", scheme.automation());
        let (id_a, id_b) = match scheme {
            // Without ids: the signature (of the time and the body) tells them apart.
            Scheme::Hmac => (None, None),
            _ => (Some(id_a.as_str()), Some(id_b.as_str())),
        };
        let (a, _) = Delivery::signed(scheme, id_a, at - 10, &body)
            .send(&client, &server.url)
            .await;
        let (b, _) = Delivery::signed(scheme, id_b, at - 11, &body)
            .send(&client, &server.url)
            .await;
        assert_eq!((a, b), (202, 202), "{scheme:?}");
    }
    let expected = [("plain", 4), ("gh", 2), ("std", 4)];
    for (automation, n) in expected {
        assert_eq!(runs_of(&ws, automation).await, n, "{automation}");
    }
    wait_until("every run to finish", Duration::from_secs(30), || async {
        all_runs(&ws).await.iter().all(|r| r.status.is_final())
    })
    .await;
    assert_eq!(server.stop().await, Some(0));

    // A restart past `keep`: housekeeping prunes every run; the dedup keys stay.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let server = Server::start(&ws).await;
    wait_until("history to be pruned", Duration::from_secs(20), || async {
        all_runs(&ws).await.is_empty()
    })
    .await;
    for (scheme, delivery, run_id) in &captured {
        let name = scheme.automation();
        let (status, answer) = delivery.send(&client, &server.url).await;
        assert_eq!(
            (status, &answer["run_id"], &answer["duplicate"]),
            (200, run_id, &json!(true)),
            "{name} after pruning"
        );
        if *scheme != Scheme::Standard {
            let relabelled = delivery.with(scheme.id_header(), &format!("{name}-3"));
            let (status, answer) = relabelled.send(&client, &server.url).await;
            assert_eq!(
                (status, &answer["run_id"]),
                (200, run_id),
                "{name} under a new id after pruning"
            );
        }
    }
    assert!(all_runs(&ws).await.is_empty(), "a replay started a run after pruning");
    assert_eq!(server.stop().await, Some(0));
}

/// Sends the request line and headers of a 1 MB delivery, withholds the body, and returns what
/// the server answered meanwhile (or panics after 5 s of silence).
async fn answer_while_withholding_the_body(url: &str, path: &str, headers: &[(String, String)]) -> String {
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000000\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // Not a byte of the body is sent: the answer must come anyway, and the connection close.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| {
            panic!("no answer to {path} {headers:?} while its body was withheld: the server waits for the body")
        })
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_request_without_a_valid_signature_header_is_refused_before_its_body_is_read() {
    let ws = workspace("");
    let server = Server::start(&ws).await;
    let at = now();
    for scheme in SCHEMES {
        let good = Delivery::signed(scheme, Some("id-1"), at, &json!({"n": 1}));
        let without = |name: &str| -> Vec<(String, String)> {
            good.headers
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
                .cloned()
                .collect()
        };
        let mut cases = vec![
            ("unsigned", without(scheme.signature_header())),
            (
                "malformed",
                good.with(scheme.signature_header(), "sha256=not-hex").headers,
            ),
            ("empty", good.with(scheme.signature_header(), "").headers),
        ];
        if let Some(ts) = scheme.timestamp_header() {
            cases.push(("stale", good.with(ts, &(at - 3600).to_string()).headers));
            cases.push(("untimed", without(ts)));
        }
        for (case, headers) in cases {
            let answer = answer_while_withholding_the_body(&server.url, scheme.path(), &headers).await;
            let status_line = answer.lines().next().unwrap_or_default();
            assert!(status_line.contains(" 401 "), "{scheme:?} {case}: {answer}");
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{scheme:?} {case}: {answer}"
            );
        }
    }
    assert!(all_runs(&ws).await.is_empty());
    assert_eq!(server.stop().await, Some(0));
}

/// Peak resident memory of a process, in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_large_bodies_with_bad_macs_stay_inside_the_intake_budget() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("*** SKIPPED: no /proc to read the server's peak memory from ***");
        return;
    }
    const BODIES: usize = 1000;
    const BODY: usize = 1_000_000;
    // The default budget, 64 MiB: 67 bodies of 1 MB read at once, the rest wait for their turn
    // (or, after 5 s, are told to come back).
    let ws = workspace("");
    let server = Server::start(&ws).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    // One good delivery first, so the baseline includes a whole request's path.
    let (status, _) = Delivery::signed(Scheme::Hmac, Some("warm"), now(), &json!({"n": 0}))
        .send(&client, &server.url)
        .await;
    assert_eq!(status, 202);
    let baseline = peak_rss_kib(server.pid());

    let body = bytes::Bytes::from(vec![b'x'; BODY]);
    let at = now();
    let forged = runbook_serve::webhook::sign("a-guessed-secret-of-24-bytes", Some(at), &body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..BODIES {
        let (client, url, body, forged) = (client.clone(), server.url.clone(), body.clone(), forged.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(format!("{url}/hooks/plain"))
                .header("X-Signature-256", forged)
                .header("X-Timestamp", at.to_string())
                .header("X-Delivery-Id", format!("flood-{i}"))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    let took = started.elapsed();
    let peak = peak_rss_kib(server.pid());
    eprintln!(
        "{BODIES} bodies of {BODY} bytes with bad MACs in {took:.1?}: answers {statuses:?}; server peak RSS {} KiB before, {} KiB after (+{} KiB)",
        baseline,
        peak,
        peak.saturating_sub(baseline)
    );
    // Every one refused: 401 (read, MAC wrong) or 503 (no budget in time, body never read; a
    // client still sending its body may see the closed connection instead: 0).
    assert!(statuses.keys().all(|s| [0, 401, 503].contains(s)), "{statuses:?}");
    assert!(
        statuses.get(&401).copied().unwrap_or(0) >= 67,
        "fewer bodies than the budget holds were read: {statuses:?}"
    );
    assert!(all_runs(&ws).await.len() == 1, "a forged delivery started a run");
    // The bound: the budget (64 MiB: the bodies being read, kept as the chunks they arrived in),
    // plus per connection what the HTTP server holds before the body is asked for (its read
    // buffer and the connection's task, well under 64 KiB: 1000 × 64 KiB = 62.5 MiB), plus
    // 32 MiB for the allocator's slack and threads. Reading every body at once would take ~1 GB.
    let bound_kib = 64 * 1024 + BODIES as u64 * 64 + 32 * 1024;
    assert!(
        peak.saturating_sub(baseline) < bound_kib,
        "peak RSS grew by {} KiB (bound {bound_kib} KiB)",
        peak - baseline
    );
    assert_eq!(server.stop().await, Some(0));
}

#[tokio::test]
async fn a_waived_timestamp_is_announced_at_start_and_only_the_id_deduplicates() {
    let mut ws = Workspace::new();
    ws.set_env("HMAC_SECRET", SECRET);
    ws.file("hook.rhai", SCRIPT);
    ws.file(
        "runbook.toml",
        "[serve]\nlisten = \"127.0.0.1:0\"\n\n[[automation]]\nname = \"open\"\nscript = \"hook.rhai\"\n\
         trigger = { webhook = \"/hooks/open\", secret = \"${HMAC_SECRET}\", require_timestamp = false, keep_headers = [\"X-Request-Source\"] }\n",
    );
    let server = Server::start(&ws).await;
    let log = server.log();
    assert!(
        log.contains("WITHOUT a timestamp") && log.contains("re-sent under a new id starts a new run"),
        "{log}"
    );
    let client = reqwest::Client::new();
    let body = br#"{"user":"ann@example.com"}"#.to_vec();
    let send = |id: &'static str| {
        client
            .post(format!("{}/hooks/open", server.url))
            .header("X-Signature-256", runbook_serve::webhook::sign(SECRET, None, &body))
            .header("X-Delivery-Id", id)
            .header("X-Gitlab-Token", "glpat-a-credential")
            .header("X-Request-Source", "siem")
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
    };
    assert_eq!(send("id-1").await.unwrap().status(), 202);
    assert_eq!(send("id-1").await.unwrap().status(), 200);
    // What the README warns about: the same signed body under a new id is a new run.
    assert_eq!(send("id-2").await.unwrap().status(), 202);
    let runs = all_runs(&ws).await;
    assert_eq!(runs.len(), 2);
    let headers = &runs[0].event.as_ref().unwrap()["headers"];
    assert_eq!(
        headers,
        &json!({"content-type": "application/json", "x-delivery-id": runs[0].event.as_ref().unwrap()["delivery_id"], "x-request-source": "siem"}),
        "only allowed headers are kept"
    );
    assert_eq!(server.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_declared_over_the_limit_keep_nothing_while_they_drain() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("*** SKIPPED: no /proc to read the server's peak memory from ***");
        return;
    }
    // Each declares 2 MB, so takes no share of the intake budget, sends just under 1 MiB
    // and stalls: were those bytes kept, 200 connections would hold 200 MB.
    const CONNECTIONS: usize = 200;
    const SENT: usize = 1_040_000;
    let ws = workspace("");
    let server = Server::start(&ws).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let baseline = peak_rss_kib(server.pid());
    let at = now();
    let chunk = vec![b'x'; SENT];
    let mut streams = Vec::new();
    for i in 0..CONNECTIONS {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /hooks/plain HTTP/1.1\r\nHost: {addr}\r\nX-Timestamp: {at}\r\nX-Signature-256: sha256={}\r\n\
             X-Delivery-Id: big-{i}\r\nContent-Length: 2000000\r\n\r\n",
            "ab".repeat(32)
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    let mut writes = Vec::new();
    for mut stream in streams {
        let chunk = chunk.clone();
        writes.push(tokio::spawn(async move {
            let _ = stream.write_all(&chunk).await;
            stream
        }));
    }
    let mut streams = Vec::new();
    for w in writes {
        streams.push(w.await.unwrap());
    }
    // Give the server time to read what was sent (it drains as it arrives).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = peak_rss_kib(server.pid());
    eprintln!(
        "{CONNECTIONS} stalled bodies declared over the limit, {SENT} bytes each sent: server peak RSS {baseline} KiB before, {peak} KiB after"
    );
    let bound_kib = 64 * 1024;
    assert!(
        peak.saturating_sub(baseline) < bound_kib,
        "peak RSS grew by {} KiB while {CONNECTIONS} oversize bodies drained (bound {bound_kib} KiB): their bytes were kept",
        peak.saturating_sub(baseline)
    );
    drop(streams);
    assert!(all_runs(&ws).await.is_empty(), "an oversize body started a run");
    assert_eq!(server.stop().await, Some(0));
}
