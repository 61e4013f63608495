//! `runbook serve` and `runbook runs`.

use std::sync::Arc;

use runbook_serve::store::{RunFilter, Store, redact_url};
use runbook_serve::{ServeConfig, StartOptions};
use serde_json::Value;

use crate::cli::{OutputFormat, RunsCommand, ServeArgs};
use crate::commands::{build_checker, build_engine_sharing};
use crate::config::Config;
use crate::error::{CliError, exit};
use crate::simulate::Simulation;

/// Reads `[serve]` and `[[automation]]`, checking every script against the engine.
fn serve_config(config: &Config, engine: &runbook_core::Engine) -> Result<ServeConfig, CliError> {
    let Some(path) = &config.path else {
        return Err(CliError::usage(
            "runbook serve needs a runbook.toml with [[automation]] entries (in this directory, or --config FILE)",
        ));
    };
    let names = runbook_core::SettingNames::new("max_changes", "timeout", "params = { {name} = ... }");
    let parsed = ServeConfig::parse(path, &config.expanded, |source, params| {
        engine
            .check_run(source, params, &names)
            .iter()
            .map(ToString::to_string)
            .collect()
    })
    .map_err(|e| CliError::usage(e.to_string()))?;
    if parsed.automations.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no [[automation]] to serve; add one (see the README's runbook serve section)",
            path.display()
        )));
    }
    Ok(parsed)
}

/// Serves until SIGTERM or Ctrl-C, then shuts down in order; exit 0.
pub async fn serve(args: &ServeArgs, config: &Config) -> Result<u8, CliError> {
    let simulation = if args.simulate {
        Some(Simulation::start(args.fixture.as_deref(), runbook_sim::SimOptions::default(), None, None).await?)
    } else {
        None
    };
    let overrides = simulation.as_ref().map(Simulation::overrides).unwrap_or_default();
    let serve_config = serve_config(config, &build_checker()?)?;
    let webhooks: Vec<String> = serve_config
        .automations
        .iter()
        .filter_map(|a| match &a.trigger {
            runbook_serve::Trigger::Webhook(w) => Some(format!(
                "runbook serve: webhook {} (automation \"{}\"): {}",
                w.path,
                a.name,
                runbook_serve::webhook::describe(w)
            )),
            runbook_serve::Trigger::Schedule(_) => None,
        })
        .collect();
    let url = serve_config.store_url();
    let store: Arc<dyn Store> = runbook_serve::store::open(&url)
        .await
        .map_err(|e| CliError::failed(format!("{}: {e}", redact_url(&url))))?;
    // A store several instances share also holds the providers' rate budgets, so that the
    // instances together stay inside them.
    let engine = build_engine_sharing(config, &overrides, store.shared_budget())?;
    let handle = runbook_serve::start(
        serve_config,
        engine,
        store,
        StartOptions::default().recovering_all_running(),
    )
    .await
    .map_err(|e| CliError::usage(e.to_string()))?;
    for line in &webhooks {
        eprintln!("{line}");
    }
    eprintln!("runbook serve: listening on http://{}", handle.local_addr());
    let signal = super::wait_for_signal().await;
    if signal == super::StopSignal::Hangup {
        eprintln!(
            "runbook serve: SIGHUP: stopping gracefully; runbook serve does not reload runbook.toml, start it again to load a changed one"
        );
    }
    eprintln!(
        "runbook serve: stopping on {} (running runs get the grace period, open connections the drain deadline; queued runs stay queued)",
        signal.name()
    );
    handle.shutdown().await;
    if let Some(sim) = simulation {
        sim.shutdown().await;
    }
    Ok(exit::OK)
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, CliError> {
    let Some(path) = &config.path else {
        return Err(CliError::usage(
            "runbook runs reads the store named in runbook.toml's [serve] store (default sqlite://runbook.db): no runbook.toml here; pass --config FILE",
        ));
    };
    let store = toml::from_str::<toml::Table>(&config.expanded)
        .ok()
        .and_then(|t| t.get("serve")?.get("store")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "sqlite://runbook.db".to_owned());
    let url = runbook_serve::resolve_store(&store, path.parent());
    let opened: Result<Arc<dyn Store>, _> = match url.strip_prefix("sqlite://") {
        Some(file) => {
            if !std::path::Path::new(file).exists() {
                return Err(CliError::usage(format!(
                    "{file} does not exist yet: runbook serve creates it"
                )));
            }
            runbook_serve::store::SqliteStore::open_shared(std::path::Path::new(file))
                .await
                .map(|s| Arc::new(s) as Arc<dyn Store>)
        }
        None => runbook_serve::store::open(&url).await,
    };
    opened.map_err(|e| CliError::failed(format!("{}: {e}", redact_url(&url))))
}

/// The script an `[[automation]]` of the configuration names, as it is now (for a retry, which
/// runs the automation's current script).
fn automation_script(config: &Config, automation: &str) -> Result<String, CliError> {
    let path = config.path.as_deref().unwrap_or(std::path::Path::new("runbook.toml"));
    let script = toml::from_str::<toml::Table>(&config.expanded)
        .ok()
        .and_then(|t| {
            t.get("automation")?
                .as_array()?
                .iter()
                .find(|a| a.get("name").and_then(|n| n.as_str()) == Some(automation))?
                .get("script")?
                .as_str()
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            CliError::usage(format!(
                "{}: no [[automation]] named \"{automation}\" with a script: a retry runs the automation's current script",
                path.display()
            ))
        })?;
    let file = path.parent().unwrap_or(std::path::Path::new("")).join(&script);
    std::fs::read_to_string(&file).map_err(|e| {
        CliError::usage(format!(
            "automation \"{automation}\": cannot read the script {}: {e}",
            file.display()
        ))
    })
}

/// `runbook runs list|show|retry|resolve`.
pub async fn runs(command: &RunsCommand, config: &Config) -> Result<u8, CliError> {
    match command {
        RunsCommand::List {
            automation,
            status,
            limit,
            output,
        } => {
            let store = open_store(config).await?;
            let status = match status.as_deref().map(str::parse) {
                None => None,
                Some(Ok(s)) => Some(s),
                Some(Err(e)) => return Err(CliError::usage(e)),
            };
            let filter = RunFilter {
                automation: automation.clone(),
                status,
                limit: *limit,
            };
            let runs = store.list(&filter).await.map_err(|e| CliError::failed(e.to_string()))?;
            let rows: Vec<Value> = runs.iter().map(runbook_serve::summary).collect();
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default()),
                OutputFormat::Csv => print!("{}", crate::output::csv(&Value::Array(rows)).map_err(CliError::usage)?),
                OutputFormat::Pretty if rows.is_empty() => println!("no runs"),
                OutputFormat::Pretty => print!(
                    "{}",
                    crate::output::value_text(&Value::Array(rows), crate::output::width())
                ),
            }
            Ok(exit::OK)
        }
        RunsCommand::Show { id, output } => {
            let store = open_store(config).await?;
            let Some(run) = store.get(id).await.map_err(|e| CliError::failed(e.to_string()))? else {
                return Err(CliError::failed(format!("no run {id}")));
            };
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default()),
                OutputFormat::Csv => {
                    return Err(CliError::usage(
                        "runs show prints one run, which is not a list of records: use --output pretty or json",
                    ));
                }
                OutputFormat::Pretty => print!("{}", show_text(&run, crate::output::width())),
            }
            Ok(exit::OK)
        }
        RunsCommand::Resolve {
            id,
            step,
            sent,
            not_sent,
        } => {
            let sent = match (*sent, *not_sent) {
                (true, false) => true,
                (false, true) => false,
                _ => return Err(CliError::usage("say exactly one of --sent or --not-sent")),
            };
            // A run of `runbook run` on this machine first; else the server's.
            let resolution = if sent {
                runbook_core::Resolution::Sent
            } else {
                runbook_core::Resolution::NotSent
            };
            if crate::local_runs::resolve_local(id, step, resolution)? {
                eprintln!(
                    "recorded: step {step} of run {id} was {}; go on with: runbook run --resume {id}",
                    if sent { "sent" } else { "not sent" }
                );
                return Ok(exit::OK);
            }
            resolve(&ApiClient::from_env()?, id, step, sent).await
        }
        RunsCommand::Retry { id } => {
            let store = open_store(config).await?;
            let Some(original) = store.get(id).await.map_err(|e| CliError::failed(e.to_string()))? else {
                return Err(CliError::failed(format!("no run {id}")));
            };
            let script = automation_script(config, &original.automation)?;
            let queued = store
                .retry(id, script)
                .await
                .map_err(|e| CliError::failed(e.to_string()))?;
            println!("{}", queued.run_id);
            eprintln!(
                "queued {} (a retry of {id}); a running runbook serve starts it",
                queued.run_id
            );
            Ok(exit::OK)
        }
    }
}

/// One run for people; every empty value shows as [`crate::output::EMPTY`].
fn show_text(run: &runbook_serve::store::RunRecord, width: usize) -> String {
    use std::fmt::Write as _;

    use crate::output::{EMPTY, cell, value_text};
    let mut out = String::new();
    let t = |ms: Option<i64>| cell(&runbook_serve::ms_time(ms));
    let _ = writeln!(out, "run         {}", run.id);
    let _ = writeln!(out, "automation  {} ({})", run.automation, run.trigger);
    let _ = writeln!(
        out,
        "status      {} after {} attempt(s)",
        run.status.as_str(),
        run.attempts
    );
    let _ = writeln!(out, "queued      {}", t(Some(run.created_at)));
    let _ = writeln!(out, "started     {}", t(run.started_at));
    let _ = writeln!(out, "finished    {}", t(run.finished_at));
    if let Some(retry_of) = &run.retry_of {
        let _ = writeln!(out, "retry of    {retry_of}");
    }
    if let Some(error) = &run.error {
        let _ = writeln!(out, "error       {error}");
    }
    if !run.params.is_empty() {
        let _ = writeln!(out, "params      {}", Value::Object(run.params.clone()));
    }
    if let Some(event) = &run.event {
        let _ = writeln!(out, "event       {}", serde_json::to_string(event).unwrap_or_default());
    }
    if let Some(result) = &run.result {
        let _ = write!(out, "\nresult:\n{}", value_text(result, width));
    }
    if let Some(lines) = run.logs.as_array().filter(|l| !l.is_empty()) {
        let _ = writeln!(out, "\nlog:");
        for line in lines {
            let _ = writeln!(
                out,
                "  {} {}",
                line["at"].as_str().unwrap_or(EMPTY),
                cell(&line["message"])
            );
        }
    }
    if !run.steps.is_empty() {
        let rows: Vec<Value> = run
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "key": s.key, "kind": s.kind.as_str(), "action": s.action, "status": s.status.as_str(),
                    "attempt": s.attempt, "targets": s.targets,
                    "resolution": s.resolution.map(|r| match &s.resolved_by {
                        Some(by) => format!("{} by {by}", r.as_str()),
                        None => r.as_str().to_owned(),
                    }),
                })
            })
            .collect();
        let _ = write!(
            out,
            "\nsteps ({}):\n{}",
            rows.len(),
            value_text(&Value::Array(rows), width)
        );
        let in_doubt: Vec<&str> = run
            .steps
            .iter()
            .filter(|s| s.status == runbook_core::StepStatus::Intent && s.resolution.is_none())
            .map(|s| s.key.as_str())
            .collect();
        if run.status == runbook_serve::store::RunStatus::NeedsAttention && !in_doubt.is_empty() {
            let _ = writeln!(
                out,
                "\nwaiting for a person: did step {} take effect? Check the service, then\n  runbook runs resolve {} {} --sent   (or --not-sent)",
                in_doubt.join(", "),
                run.id,
                in_doubt[0]
            );
        }
    }
    if let Some(calls) = run.calls.as_array().filter(|c| !c.is_empty()) {
        let rows: Vec<Value> = calls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "seq": c["seq"], "action": c["action"], "outcome": c["outcome"], "http": c["status"],
                    "targets": c["targets"], "attempts": c["attempts"], "ms": c["duration_ms"].as_f64().map(|m| (m * 10.0).round() / 10.0),
                    "args": c["args"],
                })
            })
            .collect();
        let _ = write!(
            out,
            "\ncalls ({}):\n{}",
            rows.len(),
            value_text(&Value::Array(rows), width)
        );
    }
    runbook_core::redact(&out).into_owned()
}

/// The variables `runbook runs` commands that go through the server's API read.
const API_URL_VAR: &str = "RUNBOOK_API_URL";
const API_TOKEN_VAR: &str = "RUNBOOK_API_TOKEN";

/// The server's API, as the environment names it.
struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    fn from_env() -> Result<ApiClient, CliError> {
        let base = std::env::var(API_URL_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "{API_URL_VAR} is unset: set it to the address of a running runbook serve, e.g. \
                     {API_URL_VAR}=http://127.0.0.1:8787 (and {API_TOKEN_VAR} to its api_token)"
                ))
            })?;
        let token = std::env::var(API_TOKEN_VAR).ok().filter(|v| !v.is_empty());
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::failed(format!("cannot make an HTTP client: {e}")))?;
        Ok(ApiClient {
            base: base.trim().trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// POSTs `body` to `path`; the answer's JSON, or an error saying what to do.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.post(&url).json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            CliError::failed(format!(
                "cannot reach runbook serve at {} ({API_URL_VAR}): {e}; is it running there?",
                self.base
            ))
        })?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let message = answer["error"].as_str().unwrap_or("").to_owned();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let hint = if self.token.is_some() {
                format!("{API_TOKEN_VAR} is not the server's api_token")
            } else {
                format!("set {API_TOKEN_VAR} to the server's api_token")
            };
            return Err(CliError::failed(format!("the server refused the request: {hint}")));
        }
        if !status.is_success() {
            let message = if message.is_empty() {
                format!("the server answered {status}")
            } else {
                message
            };
            return Err(CliError::failed(message));
        }
        Ok(answer)
    }
}

/// `runbook runs resolve RUN STEP --sent|--not-sent`.
async fn resolve(api: &ApiClient, id: &str, step: &str, sent: bool) -> Result<u8, CliError> {
    let path = format!("/api/runs/{}/resolve", percent_segment(id));
    let answer = api
        .post(&path, &serde_json::json!({"step": step, "sent": sent}))
        .await?;
    let resolution = answer["resolution"]
        .as_str()
        .unwrap_or(if sent { "sent" } else { "not_sent" });
    println!("{id}");
    eprintln!("step {step} of run {id} resolved as {resolution}; the run is queued again and resumes from its journal");
    Ok(exit::OK)
}

/// `text` safe as one URL path segment.
fn percent_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
