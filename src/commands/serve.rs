//! `runbook serve` and `runbook runs`.

use std::sync::Arc;

use runbook_serve::store::{RunFilter, Store, redact_url};
use runbook_serve::{ServeConfig, StartOptions};
use serde_json::Value;

use crate::cli::{AutomationsCommand, OutputFormat, RunsCommand, ServeArgs, TokenCommand};
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
    let mut parsed = ServeConfig::parse(path, &config.expanded, |source, params| {
        engine
            .check_run(source, params, &names)
            .iter()
            .map(ToString::to_string)
            .collect()
    })
    .map_err(|e| CliError::usage(e.to_string()))?;
    parsed.policy = runbook_serve::Policy::new(config.policy.protect.clone(), config.policy.max_changes_per_day);
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
    let serve_config = serve_config(config, &build_checker(config).await?)?;
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
    let engine = build_engine_sharing(config, &overrides, store.shared_budget()).await?;
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

/// Remembers the secrets the configuration holds (API tokens, webhook secrets, provider
/// credentials: every string value of a key named like a secret) so that what is shown of a run
/// is scrubbed of them, as the server scrubs its answers.
fn remember_config_secrets(config: &Config) {
    fn walk(value: &toml::Value, secret: bool) {
        match value {
            toml::Value::String(s) if secret => runbook_core::remember(s),
            toml::Value::Table(t) => {
                // An http profile's `header = { name, value }` holds its secret in `value`; with
                // `secret_url = true` its base_url is the credential (an incoming webhook's).
                let secret_header = t.contains_key("name") && t.contains_key("value") && t.len() == 2;
                let secret_url = t.get("secret_url").and_then(toml::Value::as_bool) == Some(true);
                for (k, v) in t {
                    let named_secret = runbook_serve::is_secret_field(k)
                        || k == "bearer"
                        || (secret_header && k == "value")
                        || (secret_url && k == "base_url");
                    walk(v, named_secret);
                }
            }
            toml::Value::Array(items) => {
                for v in items {
                    walk(v, secret);
                }
            }
            _ => {}
        }
    }
    if let Ok(table) = toml::from_str::<toml::Table>(&config.expanded) {
        walk(&toml::Value::Table(table), false);
    }
}

/// `runbook runs list|show|start|retry|cancel|resolve`.
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
                ..RunFilter::default()
            };
            remember_config_secrets(config);
            let runs = store
                .list_summaries(&filter)
                .await
                .map_err(|e| CliError::failed(e.to_string()))?;
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
            // The same scrubbing as the server's GET /api/runs/ID.
            remember_config_secrets(config);
            let run = runbook_serve::redacted(run);
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
            resolve(&ApiClient::from_env("approve")?, id, step, sent).await
        }
        RunsCommand::Start { automation, params } => {
            let mut given = serde_json::Map::new();
            for p in params {
                let (k, v) = crate::params::parse_param(p).map_err(CliError::usage)?;
                given.insert(k, v);
            }
            let api = ApiClient::from_env("run")?;
            let path = format!("/api/automations/{}/runs", percent_segment(automation));
            let answer = api
                .post_once(&path, &serde_json::json!({"params": given}), "run")
                .await?;
            let run_id = answer["run_id"].as_str().unwrap_or_default();
            println!("{run_id}");
            if answer["duplicate"] == true {
                eprintln!("queued {run_id} (automation \"{automation}\"; the server had it from an earlier attempt)");
            } else {
                eprintln!(
                    "queued {run_id} (automation \"{automation}\", started by {})",
                    answer["started_by"].as_str().unwrap_or("?")
                );
            }
            Ok(exit::OK)
        }
        RunsCommand::Retry { id } => {
            let api = ApiClient::from_env("run")?;
            let path = format!("/api/runs/{}/retry", percent_segment(id));
            let answer = api.post(&path, &serde_json::json!({}), "run").await?;
            let run_id = answer["run_id"].as_str().unwrap_or_default();
            println!("{run_id}");
            eprintln!(
                "queued {run_id} (a retry of {id}, started by {})",
                answer["started_by"].as_str().unwrap_or("?")
            );
            Ok(exit::OK)
        }
        RunsCommand::Approve { id, comment } => decide(id, "approve", comment).await,
        RunsCommand::Reject { id, comment } => decide(id, "reject", comment).await,
        RunsCommand::Cancel { id } => {
            let api = ApiClient::from_env("run")?;
            let path = format!("/api/runs/{}/cancel", percent_segment(id));
            let answer = api.post(&path, &serde_json::json!({}), "run").await?;
            println!("{id}");
            if answer["status"] == "cancelling" {
                eprintln!(
                    "run {id} is running: it stops within one heartbeat (calls in flight finish) and ends cancelled"
                );
            } else {
                eprintln!("run {id} cancelled: it will not start");
            }
            Ok(exit::OK)
        }
    }
}

/// `runbook token new NAME --scope S`.
pub fn token(command: &TokenCommand) -> Result<u8, CliError> {
    let TokenCommand::New { name, scopes } = command;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(CliError::usage(format!(
            "token name \"{name}\" must be letters, digits, - or _"
        )));
    }
    let mut known: Vec<&str> = Vec::new();
    for s in scopes {
        let scope = runbook_serve::Scope::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| CliError::usage(format!("\"{s}\" is not a scope; write read, run, approve or admin")))?;
        if !known.contains(&scope.as_str()) {
            known.push(scope.as_str());
        }
    }
    // 244 random bits from the operating system's generator (two version-4 UUIDs).
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let digest: String = runbook_serve::sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let scopes = known.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    println!("{token}");
    eprintln!(
        "# Add to runbook.toml (it holds only the token's SHA-256), and give the token above to its user:\n\
         [[serve.tokens]]\nname = \"{name}\"\ntoken_sha256 = \"{digest}\"\nscopes = [{scopes}]"
    );
    Ok(exit::OK)
}

/// `runbook automations list|pause|resume`.
pub async fn automations(command: &AutomationsCommand, config: &Config) -> Result<u8, CliError> {
    match command {
        AutomationsCommand::List { output } => {
            let store = open_store(config).await?;
            let switches = store.automations().await.map_err(|e| CliError::failed(e.to_string()))?;
            let table = toml::from_str::<toml::Table>(&config.expanded).unwrap_or_default();
            let configured = table
                .get("automation")
                .and_then(|a| a.as_array())
                .cloned()
                .unwrap_or_default();
            let mut rows: Vec<Value> = Vec::new();
            for a in &configured {
                let Some(name) = a.get("name").and_then(|n| n.as_str()) else {
                    continue;
                };
                let trigger = a.get("trigger");
                let text = |key: &str| trigger.and_then(|t| t.get(key)).and_then(|v| v.as_str());
                let trigger = match (text("webhook"), text("schedule"), text("every")) {
                    (Some(path), _, _) => format!("webhook {path}"),
                    (_, Some(cron), _) => format!("schedule {cron}"),
                    (_, _, Some(every)) => format!("every {every}"),
                    _ => String::new(),
                };
                let switch = switches.iter().find(|s| s.name == name);
                rows.push(serde_json::json!({
                    "name": name,
                    "trigger": trigger,
                    "paused": switch.is_some_and(|s| s.paused),
                    "changed_by": switch.map(|s| s.changed_by.clone()),
                    "changed_at": runbook_serve::ms_time(switch.map(|s| s.changed_at)),
                }));
            }
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default()),
                OutputFormat::Csv => print!("{}", crate::output::csv(&Value::Array(rows)).map_err(CliError::usage)?),
                OutputFormat::Pretty if rows.is_empty() => println!("no automations"),
                OutputFormat::Pretty => print!(
                    "{}",
                    crate::output::value_text(&Value::Array(rows), crate::output::width())
                ),
            }
            Ok(exit::OK)
        }
        AutomationsCommand::Pause { name } | AutomationsCommand::Resume { name } => {
            let pause = matches!(command, AutomationsCommand::Pause { .. });
            let api = ApiClient::from_env("admin")?;
            let verb = if pause { "pause" } else { "resume" };
            let path = format!("/api/automations/{}/{verb}", percent_segment(name));
            api.post(&path, &serde_json::json!({}), "admin").await?;
            println!("{name}");
            if pause {
                eprintln!(
                    "automation \"{name}\" paused: deliveries and ticks are stored, nothing starts until `runbook automations resume {name}`"
                );
            } else {
                eprintln!("automation \"{name}\" resumed: its held runs start now");
            }
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
    if !run.started_by.is_empty() {
        let _ = writeln!(out, "started by  {}", run.started_by);
    }
    if let Some(by) = &run.cancelled_by {
        let _ = writeln!(out, "cancelled by {by}");
    }
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
    if let Some(approval) = &run.approval {
        approval_text(&mut out, run, approval);
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

/// A run's plan, its approvals, its expiry and a stale plan's diff.
fn approval_text(
    out: &mut String,
    run: &runbook_serve::store::RunRecord,
    approval: &runbook_serve::store::ApprovalState,
) {
    use std::fmt::Write as _;

    use runbook_serve::store::RunStatus;
    let t = |ms: Option<i64>| crate::output::cell(&runbook_serve::ms_time(ms));
    let plan = &approval.plan;
    let _ = writeln!(
        out,
        "\nplan (round {}, effects {}):",
        approval.round,
        &plan.effects_sha256[..plan.effects_sha256.len().min(12)]
    );
    let text = crate::output::plan_text(&plan.effects).replacen(" Nothing was sent.", "", 1);
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(diff) = &approval.diff {
        let _ = writeln!(
            out,
            "\nthe services changed after the previous plan was approved ({} added, {} removed, {} changed); \
             nothing was sent, and this plan needs fresh approvals:",
            diff["added"], diff["removed"], diff["changed"]
        );
        let _ = write!(out, "{}", diff["text"].as_str().unwrap_or(""));
    }
    let current: Vec<_> = approval
        .approvals
        .iter()
        .filter(|a| a.round == approval.round)
        .collect();
    if !approval.approvals.is_empty() {
        let _ = writeln!(out, "\ndecisions:");
        for a in &approval.approvals {
            let comment = if a.comment.is_empty() {
                String::new()
            } else {
                format!(" \"{}\"", a.comment)
            };
            let _ = writeln!(
                out,
                "  {} {} {} (round {}, effects {}){comment}",
                t(Some(a.at)),
                a.approver,
                match a.decision {
                    runbook_serve::store::Decision::Approve => "approved",
                    runbook_serve::store::Decision::Reject => "rejected",
                },
                a.round,
                &a.effects_sha256[..a.effects_sha256.len().min(12)]
            );
        }
    }
    if let Some(at) = approval.approved_at {
        let _ = writeln!(out, "approved    {}", t(Some(at)));
    }
    if run.status == RunStatus::AwaitingApproval {
        let approvals = current
            .iter()
            .filter(|a| a.decision == runbook_serve::store::Decision::Approve)
            .count();
        let _ = writeln!(
            out,
            "\nwaiting for approval ({approvals} so far) until {}:\n  runbook runs approve {} --comment \"...\"   (or reject)",
            t(approval.expires_at),
            run.id
        );
    }
}

/// The variables `runbook runs` commands that go through the server's API read.
const API_URL_VAR: &str = "RUNBOOK_API_URL";
const API_TOKEN_VAR: &str = "RUNBOOK_API_TOKEN";

/// The server's API, as the environment names it.
struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// The client, for a command that needs `scope`.
    fn from_env(scope: &str) -> Result<ApiClient, CliError> {
        let base = std::env::var(API_URL_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "{API_URL_VAR} is unset: set it to the address of a running runbook serve, e.g. \
                     {API_URL_VAR}=http://127.0.0.1:8787 (and {API_TOKEN_VAR} to one of its API tokens with the {scope} scope)"
                ))
            })?;
        let token = std::env::var(API_TOKEN_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "{API_TOKEN_VAR} is unset: set it to one of the server's API tokens ([[serve.tokens]] or api_token) \
                     with the {scope} scope; every change through the API records the token's name"
                ))
            })?;
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

    /// POSTs `body` to `path` (which needs `scope`); the answer's JSON, or an error saying
    /// what to do.
    async fn post(&self, path: &str, body: &Value, scope: &str) -> Result<Value, CliError> {
        self.send(path, body, scope, None).await.map_err(|e| e.error)
    }

    /// POSTs a start under an idempotency key of its own, sending it again (same key) while the
    /// server cannot be reached or answers 503: however often it is sent, it is one run.
    async fn post_once(&self, path: &str, body: &Value, scope: &str) -> Result<Value, CliError> {
        let key = uuid::Uuid::new_v4().to_string();
        let mut wait = std::time::Duration::from_secs(1);
        let mut attempts = 1;
        loop {
            match self.send(path, body, scope, Some(&key)).await {
                Err(e) if e.retryable && attempts < 4 => {
                    eprintln!(
                        "{}; sending it again in {}s (the same start: it runs once)",
                        e.error.message,
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempts += 1;
                }
                other => return other.map_err(|e| e.error),
            }
        }
    }

    async fn send(&self, path: &str, body: &Value, scope: &str, key: Option<&str>) -> Result<Value, Failed> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.post(&url).json(body).bearer_auth(self.token.trim());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.map_err(|e| Failed {
            error: CliError::failed(format!(
                "cannot reach runbook serve at {} ({API_URL_VAR}): {e}; is it running there?",
                self.base
            )),
            retryable: true,
        })?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let message = answer["error"].as_str().unwrap_or("").to_owned();
        let refused = |error: CliError| Failed {
            error,
            retryable: status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
        };
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(refused(CliError::failed(format!(
                "the server refused the request ({message}): {API_TOKEN_VAR} must be one of its API tokens, with the {scope} scope"
            ))));
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(refused(CliError::failed(format!(
                "the server refused the request: {message}; set {API_TOKEN_VAR} to a token with the {scope} scope"
            ))));
        }
        if !status.is_success() {
            let message = if message.is_empty() {
                format!("the server answered {status}")
            } else {
                message
            };
            return Err(refused(CliError::failed(message)));
        }
        Ok(answer)
    }
}

/// Why a request through the API failed, and whether sending it again may succeed.
struct Failed {
    error: CliError,
    /// The server could not be reached, or answered 503.
    retryable: bool,
}

/// `runbook runs resolve RUN STEP --sent|--not-sent`.
async fn resolve(api: &ApiClient, id: &str, step: &str, sent: bool) -> Result<u8, CliError> {
    let path = format!("/api/runs/{}/resolve", percent_segment(id));
    let answer = api
        .post(&path, &serde_json::json!({"step": step, "sent": sent}), "approve")
        .await?;
    let resolution = answer["resolution"]
        .as_str()
        .unwrap_or(if sent { "sent" } else { "not_sent" });
    println!("{id}");
    eprintln!("step {step} of run {id} resolved as {resolution}; the run is queued again and resumes from its journal");
    Ok(exit::OK)
}

/// `runbook runs approve|reject ID [--comment TEXT]`.
async fn decide(id: &str, verb: &str, comment: &str) -> Result<u8, CliError> {
    let api = ApiClient::from_env("approve")?;
    let path = format!("/api/runs/{}/{verb}", percent_segment(id));
    let answer = api
        .post(&path, &serde_json::json!({"comment": comment}), "approve")
        .await?;
    println!("{id}");
    let by = answer["by"].as_str().unwrap_or("?");
    let digest: String = answer["effects_sha256"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(12)
        .collect();
    match answer["status"].as_str().unwrap_or("") {
        "queued" => eprintln!(
            "run {id} approved by {by} (effects {digest}…; {} of {} approval(s)): it applies exactly that plan now",
            answer["approvals"], answer["required"]
        ),
        "awaiting_approval" => eprintln!(
            "run {id} approved by {by} (effects {digest}…): {} of {} approval(s); it waits for another approver",
            answer["approvals"], answer["required"]
        ),
        "rejected" => eprintln!("run {id} rejected by {by}: it ends rejected and nothing is sent"),
        other => eprintln!("run {id}: {verb} recorded for {by}; the run is {other}"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_profile_credential_is_remembered_as_a_secret() {
        let text = r#"
[providers.http.profiles.a]
base_url = "https://a.example"
bearer = "bearer-secret-0001"
[providers.http.profiles.b]
base_url = "https://b.example"
header = { name = "X-Api-Key", value = "header-secret-0002" }
[providers.http.profiles.c]
base_url = "https://hooks.example/services/T0/B0/url-secret-0003"
secret_url = true
"#;
        let config = Config {
            expanded: text.to_owned(),
            ..Config::default()
        };
        remember_config_secrets(&config);
        for secret in [
            "bearer-secret-0001",
            "header-secret-0002",
            "https://hooks.example/services/T0/B0/url-secret-0003",
        ] {
            let shown = runbook_core::redact(&format!("the answer held {secret}")).into_owned();
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            runbook_core::redact("X-Api-Key").contains("X-Api-Key"),
            "a header's name is not secret"
        );
    }
}
