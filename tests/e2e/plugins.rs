//! External providers (`[[plugins]]`): the Python example end to end against a loopback ticketing
//! API, and plugins that crash, hang, break the protocol or lie in `describe`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{Output, SKIP_VAR, Workspace};

const TOKEN: &str = "tickets-token-0123456789abcdef";

/// `python3`, when there is one. Without it the test fails, unless `RUNBOOK_TEST_SKIP` names
/// `python`: then it says loudly that it checked nothing.
fn python3() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("python3");
    }
    let skip = std::env::var(SKIP_VAR).unwrap_or_default();
    if skip.split(',').any(|s| s.trim() == "python") {
        eprintln!(
            "\n*** SKIPPED: python3 is missing and {SKIP_VAR} names python: this test passes having checked nothing ***\n"
        );
        return None;
    }
    panic!("python3 is missing: the plugin tests run Python plugins; install it, or set {SKIP_VAR}=python");
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The example's ticketing API, on a free loopback port.
struct TicketServer {
    child: tokio::process::Child,
    url: String,
}

impl TicketServer {
    async fn start(latency_ms: u32) -> TicketServer {
        let mut child = tokio::process::Command::new("python3")
            .arg(repo("examples/plugin-python/ticket_server.py"))
            .args(["--port", "0", "--token", TOKEN, "--latency-ms", &latency_ms.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next_line().await.unwrap().unwrap();
        let port = line.strip_prefix("listening on ").unwrap().trim().to_owned();
        TicketServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Requests served, by `METHOD /path`.
    async fn stats(&self) -> Value {
        reqwest::get(format!("{}/stats", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn count(&self, what: &str) -> u64 {
        self.stats().await.get(what).and_then(Value::as_u64).unwrap_or(0)
    }
}

impl Drop for TicketServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn tickets_workspace(server: &TicketServer) -> Workspace {
    let mut ws = Workspace::new();
    ws.file(
        "runbook.toml",
        &format!(
            "[[plugins]]\ncommand = [\"python3\", \"{}\"]\nconfig = {{ base_url = \"{}\", token = \"${{TICKETS_TOKEN}}\" }}\n",
            repo("examples/plugin-python/tickets.py").display(),
            server.url
        ),
    );
    ws.set_env("TICKETS_TOKEN", TOKEN);
    ws
}

#[tokio::test]
async fn the_python_example_is_described_planned_run_and_audited() {
    if python3().is_none() {
        return;
    }
    let server = TicketServer::start(0).await;
    let mut ws = tickets_workspace(&server);

    let listed = ws.run(&["actions", "tickets"]).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    for line in [
        "tickets::list_tickets(#{status})",
        "tickets::create_ticket(title, #{body})",
        "tickets::close_ticket(id)",
    ] {
        assert!(listed.stdout.contains(line), "{line} missing:\n{}", listed.stdout);
    }
    let json = ws.run(&["actions", "tickets.create_ticket", "--json"]).await;
    assert_eq!(json.json()["effect"], "write", "{json:?}");
    assert_eq!(json.json()["idempotent"], false, "{json:?}");

    ws.file(
        "open.rhai",
        "let t = tickets::create_ticket(\"MFA reset for ana@example.com\", #{body: \"by runbook\"});\n\
         let open = tickets::list_tickets(#{status: \"open\"});\nopen.len()\n",
    );
    assert_eq!(ws.run(&["check", "open.rhai"]).await.code, Some(0));

    let plan = ws.run(&["plan", "open.rhai", "-o", "json"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert_eq!(
        plan.json()["planned_changes"][0]["action"],
        "tickets.create_ticket",
        "{plan:?}"
    );
    assert_eq!(server.count("POST /tickets").await, 0, "plan mode sent a create");
    assert_eq!(server.count("GET /tickets").await, 1, "plan mode runs the read");

    ws.set_env("RUST_LOG", "trace");
    let run = ws
        .run(&["run", "open.rhai", "-o", "json", "--audit-log", "audit.jsonl"])
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["result"], 1);
    assert_eq!(server.count("POST /tickets").await, 1);
    let audit = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap();
    let records: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records[0]["action"], "tickets.create_ticket");
    assert_eq!(records[0]["outcome"], "ok");
    assert_eq!(records[0]["args"]["title"], "MFA reset for ana@example.com");
    assert_eq!(records[1]["action"], "tickets.list_tickets");
    // The plugin's log line reached runbook's log; the token is in no output.
    assert!(run.stderr.contains("tickets: configured for"), "{}", run.stderr);
    assert!(!run.all().contains(TOKEN), "the token leaked:\n{}", run.all());
    assert!(!audit.contains(TOKEN));
}

/// A run of `script` against the misbehaving plugin in `mode`.
fn fixture_workspace(mode: &str, extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file(
        "runbook.toml",
        &format!(
            "[[plugins]]\ncommand = [\"python3\", \"{}\"]\nenv = {{ MODE = \"{mode}\", PID_FILE = \"{}\" }}\n\
             config = {{ token = \"fixture-secret-value-42\" }}\n{extra}",
            repo("tests/plugins/misbehave.py").display(),
            std::env::temp_dir().join("unused").display(),
        ),
    );
    ws
}

/// `act` misbehaves, is caught, and a `ping` after it is answered: the result is both.
async fn misbehaving(mode: &str, extra: &str) -> (Output, Value) {
    let ws = fixture_workspace(mode, extra);
    ws.file(
        "act.rhai",
        "let first = \"answered\";\ntry { fix::act(); } catch (e) { first = e.message; }\nlet after = fix::ping();\n[first, after]\n",
    );
    let started = Instant::now();
    let out = ws.run(&["run", "act.rhai", "-o", "json"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{mode}: took {:?}",
        started.elapsed()
    );
    assert_eq!(out.code, Some(0), "{mode}: {out:?}");
    let result = out.json()["result"].clone();
    assert!(
        result[1]["pid"].is_u64(),
        "{mode}: the plugin did not answer after: {result}"
    );
    // Uncaught, the same failure fails the run: exit 1, one clear line.
    ws.file("bare.rhai", "fix::act()\n");
    let bare = ws.run(&["run", "bare.rhai"]).await;
    assert_eq!(bare.code, Some(1), "{mode}: {bare:?}");
    assert!(bare.stderr.contains("error: "), "{mode}: {}", bare.stderr);
    assert!(!bare.stderr.contains("panicked"), "{mode}: {}", bare.stderr);
    (out, result)
}

#[tokio::test]
async fn many_calls_are_in_flight_on_one_plugin_process() {
    if python3().is_none() {
        return;
    }
    // The plugin answers `act` only once four calls wait at once; one by one, they would fail.
    let ws = fixture_workspace("together", "");
    ws.file("fan.rhai", "parallel([1, 2, 3, 4], |i| fix::act())\n");
    let out = ws.run(&["run", "fan.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.json()["result"],
        serde_json::json!(["together", "together", "together", "together"])
    );
}

#[tokio::test]
async fn a_plugin_that_prints_non_json_is_stopped_and_started_again() {
    if python3().is_none() {
        return;
    }
    let (_, result) = misbehaving("non_json", "").await;
    let message = result[0].as_str().unwrap();
    assert!(
        message.contains(
            "wrote \"Traceback (most recent call last): oops\" on its output, which is not a JSON-RPC message"
        ),
        "{message}"
    );
    assert!(message.contains("starts again on the next call"), "{message}");
}

#[tokio::test]
async fn a_plugin_that_never_answers_times_out() {
    if python3().is_none() {
        return;
    }
    let (_, result) = misbehaving("silent", "timeout = \"1s\"\n").await;
    let message = result[0].as_str().unwrap();
    assert!(message.contains("did not answer within 1s"), "{message}");
}

#[tokio::test]
async fn a_plugin_that_answers_another_calls_id_is_stopped() {
    if python3().is_none() {
        return;
    }
    let (_, result) = misbehaving("wrong_id", "").await;
    let message = result[0].as_str().unwrap();
    assert!(message.contains("which is no call waiting for an answer"), "{message}");
}

#[tokio::test]
async fn a_plugin_that_sends_100_mb_is_stopped_with_memory_bounded() {
    if python3().is_none() {
        return;
    }
    let (_, result) = misbehaving("flood", "").await;
    let message = result[0].as_str().unwrap();
    assert!(message.contains("longer than 4194304 bytes"), "{message}");

    // The peak memory of runbook (and of the plugin, its child) while it meets the 100 MB line:
    // the largest child's maximum resident set, as the kernel counts it.
    let ws = fixture_workspace("flood", "");
    ws.file("act.rhai", "try { fix::act(); } catch (e) { print(e.message); }\n");
    let measure = "import resource, subprocess, sys\n\
                   code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n\
                   print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg("-c")
        .arg(measure)
        .arg(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", "act.rhai"])
        .current_dir(ws.path())
        .env("RUNBOOK_STATE_DIR", ws.state_dir());
    let out = cmd.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    assert_eq!(parts.next(), Some("0"), "{text}");
    let peak_kib: u64 = parts.next().unwrap().parse().unwrap();
    eprintln!(
        "peak resident memory while a plugin sends 100 MB: {} MiB",
        peak_kib / 1024
    );
    assert!(
        peak_kib < 64 * 1024,
        "runbook held {peak_kib} KiB: the line was buffered"
    );
}

#[tokio::test]
async fn a_plugin_killed_mid_call_leaves_the_change_in_doubt_and_starts_again() {
    if python3().is_none() {
        return;
    }
    let pid_file = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&pid_file).unwrap();
    let ws = Workspace::new();
    ws.file(
        "runbook.toml",
        &format!(
            "[[plugins]]\ncommand = [\"python3\", \"{}\"]\nenv = {{ MODE = \"die\", PID_FILE = \"{}\" }}\n",
            repo("tests/plugins/misbehave.py").display(),
            pid_file.display()
        ),
    );
    let kill_when_called = || {
        let pid_file = pid_file.to_path_buf();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let pid = loop {
                if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                    break pid;
                }
                assert!(Instant::now() < deadline, "the plugin never got the call");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            std::fs::remove_file(&pid_file).unwrap();
            let status = std::process::Command::new("kill")
                .args(["-9", pid.trim()])
                .status()
                .unwrap();
            assert!(status.success());
            pid.trim().parse::<u64>().unwrap()
        })
    };

    // In one run: the call in flight fails as in doubt, and the next call is answered by a new process.
    ws.file(
        "again.rhai",
        "let first = \"answered\";\ntry { fix::create(\"a\"); } catch (e) { first = e.message; }\n[first, fix::ping()]\n",
    );
    let killer = kill_when_called();
    let out = ws.run(&["run", "again.rhai", "-o", "json"]).await;
    let killed = killer.await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = out.json()["result"].clone();
    let message = result[0].as_str().unwrap();
    assert!(message.contains("killed by signal 9"), "{message}");
    assert!(message.contains("it is in doubt"), "{message}");
    let after = result[1]["pid"].as_u64().unwrap();
    assert_ne!(after, killed, "the same process answered");

    // Uncaught: the run fails, and its journal keeps the change as an intent with no outcome
    // (in doubt: a resume or a person must settle it, never a blind resend).
    ws.file("create.rhai", "fix::create(\"b\")\n");
    let killer = kill_when_called();
    let out = ws.run(&["run", "create.rhai"]).await;
    killer.await.unwrap();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("killed by signal 9"), "{}", out.stderr);
    assert!(out.stderr.contains("in doubt"), "{}", out.stderr);
    let run_id = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split_whitespace().next()))
        .unwrap_or_else(|| panic!("no run id:\n{}", out.stderr))
        .to_owned();
    let journal = std::fs::read_to_string(ws.state_dir().join("runs").join(&run_id).join("journal.jsonl")).unwrap();
    let step: Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    assert_eq!(step["action"], "fix.create");
    assert_eq!(step["status"], "intent", "{journal}");
}

#[tokio::test]
async fn a_plugin_that_lies_in_describe_is_a_config_error_naming_it() {
    if python3().is_none() {
        return;
    }
    let cases = [
        ("bad_effect", "action `act`: effect \"sideways\" is unknown"),
        ("bad_type", "type \"float\", which runbook does not know"),
        (
            "cloudflare",
            "claims the namespace `cloudflare`, which a built-in provider already has",
        ),
        ("protocol2", "it speaks protocol 2, and this runbook speaks protocol 1"),
    ];
    for (mode, expected) in cases {
        let ws = fixture_workspace(mode, "");
        ws.file("ping.rhai", "fix::ping()\n");
        for args in [&["check", "ping.rhai"][..], &["run", "ping.rhai"], &["actions"]] {
            let out = ws.run(args).await;
            assert_eq!(out.code, Some(2), "{mode} {args:?}: {out:?}");
            assert!(out.stderr.contains(expected), "{mode} {args:?}: {}", out.stderr);
            assert!(out.stderr.contains("plugins[1] (python3 "), "{mode}: {}", out.stderr);
        }
    }
}

#[tokio::test]
async fn two_plugins_claiming_one_namespace_are_refused() {
    if python3().is_none() {
        return;
    }
    let plugin = format!(
        "[[plugins]]\ncommand = [\"python3\", \"{}\"]\n",
        repo("tests/plugins/misbehave.py").display()
    );
    let ws = Workspace::new();
    ws.file("runbook.toml", &format!("{plugin}{plugin}"));
    ws.file("ping.rhai", "fix::ping()\n");
    let out = ws.run(&["run", "ping.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("plugins[2] (python3 ")
            && out
                .stderr
                .contains("claims the namespace `fix`, which another plugin already has"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_secret_the_plugin_prints_is_redacted_from_the_log() {
    if python3().is_none() {
        return;
    }
    let mut ws = fixture_workspace("leak", "");
    ws.set_env("RUST_LOG", "trace");
    ws.file("ping.rhai", "fix::ping()\n");
    let out = ws.run(&["run", "ping.rhai"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("debug: my token is ***"), "{}", out.stderr);
    assert!(!out.all().contains("fixture-secret-value-42"), "{}", out.all());
}

#[tokio::test]
async fn a_create_in_doubt_is_settled_by_the_plugins_probe_on_resume() {
    if python3().is_none() {
        return;
    }
    // Every request takes 3 s: the run's 1 s timeout leaves the create sent and never answered.
    let server = TicketServer::start(3000).await;
    let ws = tickets_workspace(&server);
    ws.file("open.rhai", "let t = tickets::create_ticket(\"MFA reset\");\nt.id\n");
    let out = ws.run(&["run", "open.rhai", "--timeout", "1s"]).await;
    assert_ne!(out.code, Some(0), "{out:?}");
    let run_id = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("resume with: runbook run --resume "))
        .unwrap_or_else(|| panic!("no resume hint:\n{}", out.stderr))
        .trim()
        .to_owned();

    // On resume the plugin is asked whether a ticket carries the call's idempotency key (run id
    // and step key); the service made it meanwhile, so nothing is sent again.
    let resumed = ws
        .run(&["run", "--resume", &run_id, "--timeout", "60s", "-o", "json"])
        .await;
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    assert_eq!(resumed.json()["result"], "T-1");
    assert_eq!(server.count("POST /tickets").await, 1, "the create was sent twice");
    let tickets: Value = reqwest::Client::new()
        .get(format!("{}/tickets", server.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tickets[0]["idempotency_key"], format!("{run_id}/1"));
}

#[tokio::test]
async fn the_guard_counts_a_plugins_writes() {
    if python3().is_none() {
        return;
    }
    let server = TicketServer::start(0).await;
    let ws = tickets_workspace(&server);
    ws.file(
        "two.rhai",
        "tickets::create_ticket(\"one\");\ntickets::create_ticket(\"two\");\n",
    );
    let out = ws.run(&["run", "two.rhai", "--max-changes", "1"]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr.contains("blast-radius guard refused tickets.create_ticket"),
        "{}",
        out.stderr
    );
    assert_eq!(server.count("POST /tickets").await, 1);
}

#[tokio::test]
async fn a_change_that_times_out_is_never_carried_out_later() {
    if python3().is_none() {
        return;
    }
    let pid_file = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&pid_file).unwrap();
    let made = std::path::PathBuf::from(format!("{}.made", pid_file.display()));
    let ws = Workspace::new();
    ws.file(
        "runbook.toml",
        &format!(
            "[[plugins]]\ncommand = [\"python3\", \"{}\"]\nenv = {{ MODE = \"slow_create\", PID_FILE = \"{}\" }}\n\
             timeout = \"1s\"\n",
            repo("tests/plugins/misbehave.py").display(),
            pid_file.display()
        ),
    );
    // The create takes 3 s, the timeout is 1 s: the call is given up on, and the process that
    // holds it is killed, so the create never completes behind the run's back. The next call
    // is answered by a new process, not queued behind the abandoned create.
    ws.file(
        "late.rhai",
        "let first = \"answered\";\ntry { fix::create(\"late\"); } catch (e) { first = e.message; }\n[first, fix::ping()]\n",
    );
    let out = ws.run(&["run", "late.rhai", "-o", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let result = out.json()["result"].clone();
    let message = result[0].as_str().unwrap();
    assert!(message.contains("did not answer within 1s"), "{message}");
    assert!(message.contains("in doubt"), "{message}");
    let create_pid: u64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_ne!(
        result[1]["pid"].as_u64().unwrap(),
        create_pid,
        "the abandoned process answered"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!made.exists(), "the create given up on was carried out later");
    let _ = std::fs::remove_file(&made);
}

#[tokio::test]
async fn a_plugins_change_is_planned_with_its_planned_result() {
    if python3().is_none() {
        return;
    }
    let ws = fixture_workspace("ok", "");
    ws.file("open.rhai", "let t = fix::create(\"x\");\nt.id\n");
    let plan = ws.run(&["plan", "open.rhai", "-o", "json"]).await;
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert_eq!(plan.json()["result"], "(planned)");
}

#[tokio::test]
async fn a_plugins_change_naming_no_target_is_not_sent() {
    if python3().is_none() {
        return;
    }
    let ws = fixture_workspace("ok", "");
    ws.file("none.rhai", "fix::remove([])\n");
    let out = ws.run(&["run", "none.rhai"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("fix.remove was not sent: it names no target"),
        "{}",
        out.stderr
    );
    ws.file("two.rhai", "fix::remove([\"a\", \"b\"])\n");
    let out = ws.run(&["run", "two.rhai", "--max-changes", "1"]).await;
    assert_eq!(out.code, Some(3), "the guard counts both ids: {out:?}");
}

#[tokio::test]
async fn a_value_handed_to_a_plugin_is_redacted_from_what_it_prints_at_start() {
    if python3().is_none() {
        return;
    }
    let mut ws = Workspace::new();
    ws.file(
        "runbook.toml",
        &format!(
            "[[plugins]]\ncommand = [\"python3\", \"{}\"]\nenv = {{ MODE = \"env_leak\", GREETING = \"plain-named-value-9137\" }}\n",
            repo("tests/plugins/misbehave.py").display(),
        ),
    );
    ws.set_env("RUST_LOG", "trace");
    ws.file("ping.rhai", "fix::ping()\n");
    for args in [vec!["check", "ping.rhai"], vec!["run", "ping.rhai"]] {
        let out = ws.run(&args).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("starting with GREETING=***"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.all().contains("plain-named-value-9137"), "{args:?}: {}", out.all());
    }
}
