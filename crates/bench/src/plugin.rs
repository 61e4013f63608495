//! An external plugin against the same action built in: `runbook-bench plugin`.
//!
//! The service is the Python example's ticketing API (`examples/plugin-python/ticket_server.py`)
//! on loopback with 10 ms of latency on every request. The built-in provider is a Rust provider
//! in this process calling it with reqwest; the plugin is `examples/plugin-python/tickets.py`
//! (Python, standard library only) calling the same endpoint. Both run the same script in the
//! same engine, one call after another, then 256 calls through `parallel`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use runbook_core::{ActionError, ActionSpec, CallContext, Engine, ParamSpec, ParamType, Provider, RunOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::stats::Spread;

const LATENCY_MS: u32 = 10;
const SEQUENTIAL: usize = 200;
const PARALLEL: usize = 256;
const TOKEN: &str = "bench-tickets-token-0123456789";

const ACTIONS: &[ActionSpec] = &[
    ActionSpec::read("list_tickets", "List tickets").params(&[ParamSpec::optional(
        "status",
        ParamType::String,
        "open or closed",
    )]),
];

/// The same action as the plugin's, built in.
struct Tickets {
    client: reqwest::Client,
    url: String,
}

#[runbook_core::async_trait]
impl Provider for Tickets {
    fn namespace(&self) -> &str {
        "tickets"
    }
    fn actions(&self) -> &[ActionSpec] {
        ACTIONS
    }
    async fn call(&self, _: &CallContext, _: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        let mut request = self.client.get(format!("{}/tickets", self.url)).bearer_auth(TOKEN);
        if let Some(status) = args.get("status").and_then(Value::as_str) {
            request = request.query(&[("status", status)]);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| ActionError::transport(e.to_string()))?;
        let status = answer.status().as_u16();
        if status >= 400 {
            return Err(ActionError::api(status, "the ticketing API refused"));
        }
        answer
            .json()
            .await
            .map_err(|e| ActionError::invalid_response(e.to_string()))
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn per_call(engine: &Engine, script: &str, calls: usize) -> Result<f64> {
    let started = Instant::now();
    engine
        .run(script, RunOptions::new())
        .await
        .map_err(|e| anyhow::anyhow!(e.describe()))?;
    Ok(started.elapsed().as_secs_f64() * 1000.0 / calls as f64)
}

pub async fn plugin(runs: usize) -> Result<()> {
    let mut server = tokio::process::Command::new("python3")
        .arg(repo().join("examples/plugin-python/ticket_server.py"))
        .args(["--port", "0", "--token", TOKEN, "--latency-ms", &LATENCY_MS.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("python3 is needed for the plugin benchmark")?;
    let mut lines = BufReader::new(server.stdout.take().context("no stdout")?).lines();
    let line = lines.next_line().await?.context("the ticket server did not start")?;
    let port = line
        .strip_prefix("listening on ")
        .context("the ticket server said something else")?;
    let url = format!("http://127.0.0.1:{}", port.trim());

    let builtin = Engine::builder()
        .provider(Arc::new(Tickets {
            client: reqwest::Client::new(),
            url: url.clone(),
        }))
        .build()?;
    let mut settings = runbook_plugin::PluginSettings::new(vec![
        "python3".to_owned(),
        repo().join("examples/plugin-python/tickets.py").display().to_string(),
    ]);
    settings.config = serde_json::from_value(json!({"base_url": url, "token": TOKEN}))?;
    let plugin = runbook_plugin::start(settings).await?;
    let external = Engine::builder().provider(plugin).build()?;

    let sequential = format!("for i in 0..{SEQUENTIAL} {{ tickets::list_tickets(#{{status: \"closed\"}}); }}");
    let parallel = format!(
        "let items = []; for i in 0..{PARALLEL} {{ items.push(i); }}\n\
         parallel(items, |i| tickets::list_tickets(#{{status: \"closed\"}})).len()"
    );
    let (mut seq_builtin, mut seq_plugin, mut par_builtin, mut par_plugin) = (vec![], vec![], vec![], vec![]);
    // One warm-up round, then `runs` rounds, the two providers taking turns.
    for round in 0..=runs {
        let a = per_call(&builtin, &sequential, SEQUENTIAL).await?;
        let b = per_call(&external, &sequential, SEQUENTIAL).await?;
        let c = per_call(&builtin, &parallel, PARALLEL).await?;
        let d = per_call(&external, &parallel, PARALLEL).await?;
        if round > 0 {
            seq_builtin.push(a);
            seq_plugin.push(b);
            par_builtin.push(c);
            par_plugin.push(d);
        }
    }
    runbook_plugin::shutdown_all().await;
    let _ = server.start_kill();

    println!("\n## An external plugin against the same action built in\n");
    println!(
        "`tickets::list_tickets` against the example ticketing API (`examples/plugin-python/ticket_server.py`, Python's threaded HTTP server) on loopback with {LATENCY_MS} ms latency per request: built in (a Rust provider in the engine, reqwest) and as the example plugin (`examples/plugin-python/tickets.py`, Python standard library, http.client on kept-alive connections). The same engine and script; {SEQUENTIAL} calls one after another, then {PARALLEL} calls through `parallel` (16 in flight). Time per call, min / median / max of {runs} runs.\n"
    );
    println!("| | built in | plugin | plugin / built in (median) |\n|---|---|---|---|");
    for (what, a, b) in [
        ("one after another", &seq_builtin, &seq_plugin),
        ("16 in flight (wall / calls)", &par_builtin, &par_plugin),
    ] {
        let (sa, sb) = (Spread::of(a), Spread::of(b));
        println!(
            "| {what} | {} | {} | {:.2}× |",
            sa.show(2, "ms"),
            sb.show(2, "ms"),
            sb.median / sa.median
        );
    }
    Ok(())
}
