//! `runbook-bench`: the figures in BENCHMARKS.md.
//!
//! ```sh
//! cargo build --release --workspace
//! python3 -m venv target/bench-venv && target/bench-venv/bin/pip install cloudflare httpx
//! target/release/runbook-bench --python target/bench-venv/bin/python all
//! ```
//!
//! Every figure is min / median / max over `--runs` runs (default 5). The simulators run in this
//! process; the `runbook` binary beside this one runs as a child process, as a user would run it.

#![allow(clippy::unwrap_used)]

mod console;
mod journal;
mod outage;
mod plugin;
mod stats;
mod tenant;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use runbook_core::{Engine, ProviderConfig, RunOptions};
use runbook_sim::{Fixture, RateLimit, RateLimitMode, SimOptions, Simulators};
use serde_json::{Value, json};
use stats::{Spread, quantile};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of runbook; prints Markdown for BENCHMARKS.md")]
struct Args {
    /// Runs per figure (figure 1 takes at least 15 pairs).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The runbook binary (default: the one beside this binary).
    #[arg(long)]
    runbook: Option<PathBuf>,
    /// A Python with `pip install cloudflare httpx`, for the peer comparison.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The PostgreSQL server for the cluster benchmark (each measurement uses a schema of its own).
    #[arg(
        long,
        env = "RUNBOOK_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres: String,
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, Clone, Subcommand, PartialEq, Eq)]
enum Which {
    /// Everything below, in order.
    All,
    /// 1. Engine overhead per action call, against a plain reqwest loop.
    Engine,
    /// The engine's own cost per call: a provider that answers at once, no I/O.
    Noop,
    /// 2 and 5. The revoke-MFA job on 10,000 users at 20 ms latency; peak RSS.
    Fanout,
    /// 3. 2,000 calls against a 200 requests/s limit.
    RateLimit,
    /// 4. Cold start of `runbook run` on a one-line script.
    ColdStart,
    /// 5. Peak RSS of listing 100,000 users.
    Memory,
    /// 6. The same job in Python with Cloudflare's SDK and httpx.
    Peer,
    /// 7. A real tenant's budget: the log-based revoke job on 10,000 users at Cloudflare's budget.
    RealScale,
    /// 8. What the journal costs: figure 1 journaled on SQLite, and the latency a journaled change adds.
    Journal,
    /// runbook serve: webhook intake and acceptance-to-start latency.
    Webhooks,
    /// runbook serve: runs completed per second with 1, 2 and 3 instances on PostgreSQL, and SQLite.
    Cluster,
    /// runbook serve: a 30 s store outage (SQLite locked) under webhooks and a one-second schedule.
    Outage,
    /// An external plugin (Python) against the same action built in, at 10 ms service latency.
    Plugin,
    /// runbook serve: the console's pages (p50 / p99 / max) with a history of `--runs` runs.
    /// SQLite unless `--postgres URL` is given (a fresh schema on it). Not part of `all`.
    Console {
        /// Runs in the history.
        #[arg(long = "runs", default_value_t = 10_000)]
        history: usize,
        /// Requests per page, from one client and again from 8 at once.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// The PostgreSQL server to hold the history instead of SQLite.
        #[arg(long = "postgres")]
        postgres_url: Option<String>,
        /// Keep the seeded store and its runbook.toml in this directory (to explore them).
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Print the benchmarks' tenant as a fixture (for `runbook sim --fixture`, e.g. to profile).
    Tenant {
        /// Access users (each with a PrivX account).
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// Every N-th user has recent failed logins.
        #[arg(long, default_value_t = 100)]
        flag_every: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Which::Tenant { users, flag_every } = args.which {
        println!("{}", tenant::tenant(users, flag_every));
        return Ok(());
    }
    let runbook = match &args.runbook {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("runbook"),
    };
    if !runbook.exists() {
        bail!(
            "{} does not exist: build it first (cargo build --release --workspace)",
            runbook.display()
        );
    }
    println!("{}", machine());
    let all = args.which == Which::All;
    let mut fanout_rss = None;
    if all || args.which == Which::Engine {
        engine_overhead(args.runs).await?;
    }
    if args.which == Which::Plugin {
        plugin::plugin(args.runs).await?;
    }
    if all || args.which == Which::Noop {
        noop(args.runs).await?;
    }
    if all || args.which == Which::Fanout {
        fanout_rss = Some(fanout(&runbook, args.runs).await?);
    }
    if all || args.which == Which::RateLimit {
        rate_limited(&runbook, args.runs).await?;
    }
    if all || args.which == Which::ColdStart {
        cold_start(&runbook, args.runs).await?;
    }
    if all || args.which == Which::Memory {
        memory(&runbook, args.runs, fanout_rss).await?;
    }
    if all || args.which == Which::Peer {
        match &args.python {
            Some(python) => peer(&runbook, &std::path::absolute(python)?, args.runs).await?,
            None => println!(
                "\n## 6. The Python peer\n\nskipped: pass --python PATH (a Python with `pip install cloudflare httpx`)\n"
            ),
        }
    }
    if all || args.which == Which::RealScale {
        real_scale(&runbook, args.runs).await?;
    }
    if all || args.which == Which::Journal {
        journal::journal_cost(&args.postgres, args.runs).await?;
    }
    if all || args.which == Which::Webhooks {
        webhooks(&runbook, args.runs).await?;
    }
    if all || args.which == Which::Cluster {
        cluster(&runbook, &args.postgres, args.runs).await?;
    }
    if let Which::Console {
        history,
        requests,
        postgres_url,
        keep,
    } = &args.which
    {
        console::console(&runbook, *history, *requests, postgres_url.as_deref(), keep.as_deref()).await?;
    }
    if all || args.which == Which::Outage {
        outage::outage(&runbook, 30).await?;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kb: u64 = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "Machine: {cores} cores ({model}), {:.0} GiB memory, {}",
        total_kb as f64 / 1024.0 / 1024.0,
        jiff::Timestamp::now().strftime("%Y-%m-%d")
    )
}

async fn sims(fixture: Value, options: SimOptions) -> Result<Simulators> {
    let fixture: Fixture = serde_json::from_value(fixture)?;
    Ok(Simulators::start(fixture, options).await?)
}

/// The provider variables for the simulators, with Cloudflare's client budget at `cf_budget`.
fn provider_env(sims: &Simulators, cf_budget: &str) -> Vec<(String, String)> {
    let (cf, px) = (&sims.cloudflare, &sims.privx);
    vec![
        ("CLOUDFLARE_BASE_URL".into(), cf.base_url()),
        ("CLOUDFLARE_API_TOKEN".into(), cf.api_token()),
        ("CLOUDFLARE_ACCOUNT_ID".into(), cf.account_id()),
        ("CLOUDFLARE_RATE_LIMIT".into(), cf_budget.to_owned()),
        ("PRIVX_API_BASE_URL".into(), px.base_url()),
        ("PRIVX_API_CLIENT_ID".into(), px.api_client_id()),
        ("PRIVX_API_CLIENT_SECRET".into(), px.api_client_secret()),
        ("PRIVX_API_OAUTH_CLIENT_ID".into(), px.oauth_client_id()),
        ("PRIVX_API_OAUTH_CLIENT_SECRET".into(), px.oauth_client_secret()),
    ]
}

/// A finished child process: wall time, peak RSS, output.
struct Child {
    wall: Duration,
    peak_rss_kib: u64,
    stdout: String,
    stderr: String,
    ok: bool,
}

/// Runs a program to completion, sampling its peak resident set (VmHWM) while it runs.
async fn run_child(program: &Path, args: &[&str], env: &[(String, String)], dir: &Path) -> Result<Child> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let pid = child.id().unwrap_or(0);
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            let path = format!("/proc/{pid}/status");
            while let Ok(status) = std::fs::read_to_string(&path) {
                if let Some(kb) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|l| l.split_whitespace().next()?.parse::<usize>().ok())
                {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let out = child.wait_with_output().await?;
    let wall = started.elapsed();
    sampler.abort();
    Ok(Child {
        wall,
        peak_rss_kib: peak.load(Ordering::Relaxed) as u64,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ok: out.status.success(),
    })
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

// ---------------------------------------------------------------------------------------------
// 1. Engine overhead

async fn engine_overhead(runs: usize) -> Result<()> {
    const CALLS: usize = 10_000;
    const BLOCK: usize = 1_000;
    // Single runs of either side vary by a third or more on a shared 2-core machine; more pairs
    // give a median that holds still.
    let runs = runs.max(15);
    let sims = sims(tenant::tenant(10, 0), SimOptions::default()).await?;
    let cf = &sims.cloudflare;
    let config = json!({"base_url": cf.base_url(), "account_id": cf.account_id(), "api_token": cf.api_token(), "rate_limit": "100000000/1s"});
    let provider = runbook_provider_cloudflare::Cloudflare::from_config(&ProviderConfig::from_table(
        "cloudflare",
        config.as_object().unwrap().clone(),
    ))?;
    let engine = Engine::builder().provider(Arc::new(provider)).build()?;
    let id = tenant::user_id(1);
    let script = |calls: usize| {
        format!(
            "let id = \"{id}\"; let n = 0; for i in 0..{calls} {{ n += cloudflare::get_user(id).active_device_count; }} n"
        )
    };
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let url = format!("{}/accounts/{}/access/users/{id}", cf.base_url(), cf.account_id());
    let token = cf.api_token();

    let baseline = |calls: usize| {
        let (client, url, token) = (&client, &url, &token);
        async move {
            let started = Instant::now();
            let mut n = 0_i64;
            for _ in 0..calls {
                let response = client.get(url).bearer_auth(token).send().await?;
                let body = response.bytes().await?;
                let value: Value = serde_json::from_slice(&body)?;
                n += value["result"]["active_device_count"].as_i64().unwrap_or(0);
            }
            anyhow::ensure!(n == calls as i64);
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    let scripted = |calls: usize| {
        let (engine, script) = (&engine, script(calls));
        async move {
            let started = Instant::now();
            let outcome = engine
                .run(&script, RunOptions::new())
                .await
                .map_err(|e| anyhow::anyhow!(e.describe()))?;
            anyhow::ensure!(outcome.result == json!(calls));
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    // Warm both up (connections, allocator), then alternate.
    baseline(CALLS).await?;
    scripted(CALLS).await?;
    let (mut plain, mut ours) = (Vec::new(), Vec::new());
    let (mut plain_blocks, mut ours_blocks) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        sims.cloudflare.clear_requests();
        plain.push(baseline(CALLS).await?);
        ours.push(scripted(CALLS).await?);
        // The same 10,000 calls in blocks of 1,000, alternating, so that both sides see the
        // machine at the same speed.
        let (mut p, mut o) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..CALLS / BLOCK {
            sims.cloudflare.clear_requests();
            p += baseline(BLOCK).await?;
            o += scripted(BLOCK).await?;
        }
        plain_blocks.push(p);
        ours_blocks.push(o);
    }
    let table = |plain: &[Duration], ours: &[Duration]| {
        let (p, o) = (Spread::of_durations(plain), Spread::of_durations(ours));
        let ratios: Vec<f64> = plain
            .iter()
            .zip(ours)
            .map(|(a, b)| b.as_secs_f64() / a.as_secs_f64())
            .collect();
        let overhead_us: Vec<f64> = plain
            .iter()
            .zip(ours)
            .map(|(a, b)| (b.as_secs_f64() - a.as_secs_f64()) * 1e6 / CALLS as f64)
            .collect();
        println!("| | min / median / max |\n|---|---|");
        println!("| plain reqwest loop | {} |", p.show(3, "s"));
        println!("| runbook script | {} |", o.show(3, "s"));
        println!("| ratio (runbook / plain) | {} |", Spread::of(&ratios).show(3, ""));
        println!("| overhead per call | {} |", Spread::of(&overhead_us).show(1, "µs"));
    };
    println!("\n## 1. Engine overhead per action call\n");
    println!(
        "{CALLS} sequential `cloudflare::get_user` calls from one script, against a plain reqwest + serde_json loop making the same {CALLS} requests to the same simulator, alternating, in one process; {runs} pairs, the ratio taken per pair.\n"
    );
    table(&plain, &ours);
    println!(
        "\nThe same {CALLS} calls per side in blocks of {BLOCK} (a script run of {BLOCK} calls, then {BLOCK} plain requests, ten times), so that both sides meet the machine at the same speed: single runs above vary by a third or more on this shared 2-core machine.\n"
    );
    table(&plain_blocks, &ours_blocks);
    sims.shutdown().await;
    Ok(())
}

/// A provider that answers at once with a user-sized object: what the engine costs per call.
struct Instant0;

const NOOP_ACTIONS: &[runbook_core::ActionSpec] = &[runbook_core::ActionSpec::read("get_user", "Answer at once")
    .params(&[runbook_core::ParamSpec::required(
        "user_id",
        runbook_core::ParamType::String,
        "any id",
    )])
    .example("noop::get_user(\"x\")")];

#[runbook_core::async_trait]
impl runbook_core::Provider for Instant0 {
    fn namespace(&self) -> &str {
        "noop"
    }
    fn actions(&self) -> &[runbook_core::ActionSpec] {
        NOOP_ACTIONS
    }
    async fn call(
        &self,
        _: &runbook_core::CallContext,
        _: &runbook_core::ActionSpec,
        args: Value,
    ) -> Result<Value, runbook_core::ActionError> {
        Ok(
            json!({"id": args["user_id"], "email": "user1@example.com", "name": "User 1", "access_seat": true, "active_device_count": 1}),
        )
    }
}

async fn noop(runs: usize) -> Result<()> {
    const CALLS: usize = 100_000;
    let engine = Engine::builder().provider(Arc::new(Instant0)).build()?;
    let script = format!("let n = 0; for i in 0..{CALLS} {{ n += noop::get_user(\"u1\").active_device_count; }} n");
    let empty = format!("let n = 0; for i in 0..{CALLS} {{ n += #{{active_device_count: 1}}.active_device_count; }} n");
    let mut per_call = Vec::new();
    for _ in 0..runs + 1 {
        let started = Instant::now();
        engine
            .run(&empty, RunOptions::new())
            .await
            .map_err(|e| anyhow::anyhow!(e.describe()))?;
        let loop_only = started.elapsed();
        let started = Instant::now();
        let outcome = engine
            .run(&script, RunOptions::new())
            .await
            .map_err(|e| anyhow::anyhow!(e.describe()))?;
        anyhow::ensure!(outcome.result == json!(CALLS));
        per_call.push((started.elapsed().saturating_sub(loop_only)).as_secs_f64() * 1e6 / CALLS as f64);
    }
    per_call.remove(0);
    println!("\n## The engine's own cost per call\n");
    println!(
        "{CALLS} calls of an action whose provider answers at once (no I/O), minus the same loop without the call: argument binding, the audit record, the hand-off to the async runtime and back, JSON to script values.\n"
    );
    println!("| | min / median / max |\n|---|---|");
    println!("| per call | {} |", Spread::of(&per_call).show(2, "µs"));
    Ok(())
}

/// The revoke-MFA job of figures 2, 5 and 6: 10,000 Access users (every 100th flagged, all in
/// PrivX), 20 ms of latency on every request, no client-side budget to speak of.
const USERS: usize = 10_000;
const LATENCY_MS: u64 = 20;

struct RevokeJob {
    sims: Simulators,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl RevokeJob {
    async fn start() -> Result<RevokeJob> {
        let options = SimOptions {
            latency: Duration::from_millis(LATENCY_MS),
            ..SimOptions::default()
        };
        let sims = sims(tenant::tenant(USERS, 100), options).await?;
        let env = provider_env(&sims, "100000000/1s");
        Ok(RevokeJob {
            sims,
            env,
            dir: tempfile::tempdir()?,
            // The job as one call per user: the fan-out these figures measure.
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/revoke_mfa_per_user.rhai"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Fan-out against latency (and 5: its peak RSS)

async fn fanout(runbook: &Path, runs: usize) -> Result<Vec<u64>> {
    let RevokeJob { sims, env, dir, script } = RevokeJob::start().await?;
    let script = script.to_str().unwrap();
    println!("\n## 2. Fan-out against latency\n");
    println!(
        "`crates/bench/scripts/revoke_mfa_per_user.rhai` (the revoke-MFA job with one `failed_logins` call per user) on {USERS} Access users (100 flagged, all in PrivX), {LATENCY_MS} ms simulated latency on every request, run by the `runbook` binary. Floor = requests × latency / concurrency.\n"
    );
    println!(
        "| concurrency | requests | floor | wall time (min / median / max) | wall / floor (median) |\n|---|---|---|---|---|"
    );
    let mut rss = Vec::new();
    for concurrency in [16, 64] {
        let c = concurrency.to_string();
        let mut walls = Vec::new();
        let mut requests = 0;
        for _ in 0..runs {
            sims.cloudflare.clear_requests();
            sims.privx.clear_requests();
            let child = run_child(
                runbook,
                &[
                    "run",
                    "--yes",
                    script,
                    "--concurrency",
                    &c,
                    "--max-changes",
                    "1000",
                    "-o",
                    "json",
                ],
                &env,
                dir.path(),
            )
            .await?;
            anyhow::ensure!(child.ok, "the job failed: {}", child.stderr);
            let doc: Value = serde_json::from_str(&child.stdout)?;
            anyhow::ensure!(
                doc["result"]["selected"].as_array().map(Vec::len) == Some(USERS / 100),
                "unexpected report: {}",
                doc["result"]
            );
            requests = sims.cloudflare.requests().len() + sims.privx.requests().len();
            walls.push(child.wall);
            rss.push(child.peak_rss_kib);
        }
        let floor = requests as f64 * LATENCY_MS as f64 / 1000.0 / concurrency as f64;
        let w = Spread::of_durations(&walls);
        println!(
            "| {concurrency} | {requests} | {floor:.2} s | {} | {:.2}× |",
            w.show(2, "s"),
            w.median / floor
        );
    }
    sims.shutdown().await;
    Ok(rss)
}

// ---------------------------------------------------------------------------------------------
// 3. Fan-out against a rate limit

async fn rate_limited(runbook: &Path, runs: usize) -> Result<()> {
    const USERS: usize = 2_000;
    const RATE: u32 = 200;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("fan.rhai");
    std::fs::write(
        &script,
        "parallel(cloudflare::list_users(), |u| cloudflare::get_user(u.id).id).len()",
    )?;
    let fixture = tenant::tenant(USERS, 0);
    let mut walls = Vec::new();
    let mut throttled = Vec::new();
    let mut requests = 0;
    for _ in 0..runs {
        // A fresh simulator: each run starts with a fresh window.
        let limit = RateLimit {
            requests: RATE,
            window: Duration::from_secs(1),
        };
        let sims = sims(
            fixture.clone(),
            SimOptions {
                rate_limit: Some(limit),
                ..SimOptions::default()
            },
        )
        .await?;
        let env = provider_env(&sims, &format!("{RATE}/1s"));
        let child = run_child(
            runbook,
            &[
                "run",
                "--yes",
                script.to_str().unwrap(),
                "--concurrency",
                "64",
                "-o",
                "json",
            ],
            &env,
            dir.path(),
        )
        .await?;
        anyhow::ensure!(child.ok, "the job failed: {}", child.stderr);
        let log = sims.cloudflare.requests();
        requests = log.iter().filter(|r| r.status != 429).count();
        throttled.push(log.iter().filter(|r| r.status == 429).count() as f64);
        walls.push(child.wall);
        sims.shutdown().await;
    }
    let floor = requests as f64 / f64::from(RATE);
    let w = Spread::of_durations(&walls);
    println!("\n## 3. Fan-out against a rate limit\n");
    println!(
        "{USERS} `get_user` calls through `parallel` (concurrency 64) plus the listing, against a simulator limited to {RATE} requests per second (fixed window, 429 beyond it), with the provider's budget set to the same `{RATE}/1s`. Floor = requests / rate.\n"
    );
    println!(
        "| requests | floor | wall time (min / median / max) | wall / floor (median) | 429s (min / median / max) |\n|---|---|---|---|---|"
    );
    println!(
        "| {requests} | {floor:.2} s | {} | {:.2}× | {} |",
        w.show(2, "s"),
        w.median / floor,
        Spread::of(&throttled).show(0, "")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 7. A real tenant's budget

async fn real_scale(runbook: &Path, runs: usize) -> Result<()> {
    const LATENCY_MS: u64 = 50;
    const PER_DAY: usize = 2;
    let budget = RateLimit::CLOUDFLARE_ACCOUNT;
    let fixture = tenant::with_successful_logins(tenant::tenant(USERS, 100), PER_DAY);
    let log_rows = fixture["cloudflare"]["access_requests"].as_array().map_or(0, Vec::len);
    // Cloudflare's budget as a service that says nothing of it until it answers 429.
    let options = SimOptions {
        latency: Duration::from_millis(LATENCY_MS),
        rate_limit: Some(budget),
        rate_limit_mode: RateLimitMode::SlidingWindowSilent,
        ..SimOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for (label, ignores_allowed) in [
        ("log, `allowed=false` applied by the service", false),
        ("log, `allowed` ignored by the service", true),
    ] {
        let mut walls = Vec::new();
        let mut requests = 0;
        let mut throttled = 0;
        let mut flagged = 0;
        for _ in 0..runs {
            // A fresh simulator each run: its sliding window starts empty, as the client's does.
            let sims = sims(fixture.clone(), options.clone()).await?;
            sims.cloudflare.set_access_log_ignores_allowed(ignores_allowed);
            let env = provider_env(&sims, "1200/300s");
            let script = scripts_dir().join("revoke_mfa_for_failed_logins.rhai");
            let child = run_child(
                runbook,
                &[
                    "run",
                    "--yes",
                    script.to_str().unwrap(),
                    "--max-changes",
                    "1000",
                    "-o",
                    "json",
                ],
                &env,
                dir.path(),
            )
            .await?;
            anyhow::ensure!(child.ok, "the job failed: {}", child.stderr);
            let result: Value = serde_json::from_str(&child.stdout)?;
            flagged = result["result"]["flagged"].as_array().map_or(0, Vec::len);
            let log = sims.cloudflare.requests();
            requests = log.len();
            throttled += log.iter().filter(|r| r.status == 429).count();
            walls.push(child.wall);
            sims.shutdown().await;
        }
        rows.push((label, requests, Spread::of_durations(&walls), throttled, flagged));
    }
    // One poll of the watch automation on the same tenant: its first poll reads the whole window.
    let sims = sims(fixture.clone(), options).await?;
    let env = provider_env(&sims, "1200/300s");
    let watch = scripts_dir().join("watch_failed_logins.rhai");
    let child = run_child(
        runbook,
        &[
            "run",
            "--yes",
            watch.to_str().unwrap(),
            "--max-changes",
            "1000",
            "-o",
            "json",
        ],
        &env,
        dir.path(),
    )
    .await?;
    anyhow::ensure!(child.ok, "the watch poll failed: {}", child.stderr);
    let watch_requests = sims.cloudflare.requests().len();
    sims.shutdown().await;

    // The per-user job: every page of users, then one failed_logins per user.
    let per_user = USERS.div_ceil(1000) + USERS;
    let per_user_secs = per_user as f64 * budget.window.as_secs_f64() / f64::from(budget.requests);
    println!("\n## 7. A real tenant's budget\n");
    println!(
        "`scripts/revoke_mfa_for_failed_logins.rhai` on {USERS} Access users whose authentication log holds {PER_DAY} successful logins per user over the last day ({log_rows} rows) and the failures of the tenant of (2) (100 users flagged), {LATENCY_MS} ms latency, against a simulator that enforces Cloudflare's budget of {} requests per {} s as a sliding window and sends no `Ratelimit` headers; the provider's budget is the default `1200/300s`. Cloudflare requests only (PrivX is not on that budget).\n",
        budget.requests,
        budget.window.as_secs()
    );
    println!(
        "| approach | Cloudflare requests | share of per-user | wall time (min / median / max) | 429s | users flagged |\n|---|---|---|---|---|---|"
    );
    for (label, requests, wall, throttled, flagged) in rows {
        println!(
            "| {label} | {requests} | {:.2} % | {} | {throttled} | {flagged} |",
            requests as f64 * 100.0 / per_user as f64,
            wall.show(2, "s")
        );
    }
    println!(
        "| one `failed_logins` per user (computed, not run) | {per_user} | 100 % | ≥ {:.0} s ({:.1} min) at the budget | — | — |",
        per_user_secs,
        per_user_secs / 60.0
    );
    println!(
        "\n`scripts/watch_failed_logins.rhai`, first poll (it reads the whole 24-hour window; later polls read only what is newer than its cursor): {watch_requests} Cloudflare requests — every 5 minutes that is {:.1} % of the budget.",
        watch_requests as f64 * 100.0 / f64::from(budget.requests)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Cold start

async fn cold_start(runbook: &Path, runs: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("one.rhai");
    std::fs::write(&script, "40 + 2")?;
    let args = ["run", "--yes", script.to_str().unwrap()];
    for _ in 0..5 {
        run_child(runbook, &args, &[], dir.path()).await?;
    }
    let mut per_batch = Vec::new();
    let mut all = Vec::new();
    for _ in 0..runs {
        let mut batch = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let status = std::process::Command::new(runbook)
                .args(args)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .status()?;
            anyhow::ensure!(status.success());
            batch.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        per_batch.push(Spread::of(&batch).median);
        all.extend(batch);
    }
    println!("\n## 4. Cold start\n");
    println!(
        "`runbook run one.rhai` (the script `40 + 2`), the whole process from spawn to exit, {} batches of 20.\n",
        runs
    );
    println!("| | min / median / max |\n|---|---|");
    println!("| median per batch | {} |", Spread::of(&per_batch).show(2, "ms"));
    println!("| every invocation | {} |", Spread::of(&all).show(2, "ms"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Memory

async fn memory(runbook: &Path, runs: usize, fanout_rss: Option<Vec<u64>>) -> Result<()> {
    const USERS: usize = 100_000;
    let users: Vec<Value> = (1..=USERS)
        .map(|i| json!({"id": tenant::user_id(i), "email": format!("user{i}@example.com"), "name": format!("User {i}"), "access_seat": true, "gateway_seat": false, "active_device_count": 1, "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z", "last_successful_login": "2026-11-01T00:00:00Z", "seat_uid": format!("s{i}"), "uid": format!("u{i}")}))
        .collect();
    let sims = sims(json!({"cloudflare": {"users": users}}), SimOptions::default()).await?;
    let env = provider_env(&sims, "100000000/1s");
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("list.rhai");
    std::fs::write(&script, "cloudflare::list_users().len()")?;
    let mut rss = Vec::new();
    let mut walls = Vec::new();
    for _ in 0..runs {
        let child = run_child(runbook, &["run", "--yes", script.to_str().unwrap()], &env, dir.path()).await?;
        anyhow::ensure!(
            child.ok && child.stdout.trim() == USERS.to_string(),
            "listing failed: {} {}",
            child.stdout,
            child.stderr
        );
        rss.push(child.peak_rss_kib as f64 / 1024.0);
        walls.push(child.wall);
    }
    println!("\n## 5. Memory\n");
    println!("Peak resident set (VmHWM) of the `runbook` process.\n");
    println!("| job | peak RSS (min / median / max) | wall time (min / median / max) |\n|---|---|---|");
    if let Some(f) = fanout_rss {
        let mib: Vec<f64> = f.iter().map(|k| *k as f64 / 1024.0).collect();
        println!(
            "| the fan-out of (2), 10,000 users (both concurrencies) | {} | see (2) |",
            Spread::of(&mib).show(1, "MiB")
        );
    }
    println!(
        "| `cloudflare::list_users().len()` over {USERS} users (100 pages) | {} | {} |",
        Spread::of(&rss).show(1, "MiB"),
        Spread::of_durations(&walls).show(2, "s")
    );
    sims.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 6. The Python peer

async fn peer(runbook: &Path, python: &Path, runs: usize) -> Result<()> {
    let RevokeJob { sims, env, dir, script } = RevokeJob::start().await?;
    let peer_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/revoke_mfa.py");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let py = run_child(
            python,
            &[peer_script.to_str().unwrap(), "--concurrency", "16"],
            &env,
            dir.path(),
        )
        .await?;
        anyhow::ensure!(py.ok, "the Python job failed: {}\n{}", py.stdout, py.stderr);
        let report: Value = serde_json::from_str(py.stdout.lines().last().unwrap_or("{}"))?;
        anyhow::ensure!(
            report["acted_on"].as_u64() == Some((USERS / 100) as u64),
            "unexpected Python report: {report}"
        );
        theirs.push(py.wall);
        let rb = run_child(
            runbook,
            &[
                "run",
                "--yes",
                script.to_str().unwrap(),
                "--concurrency",
                "16",
                "--max-changes",
                "1000",
                "-o",
                "json",
            ],
            &env,
            dir.path(),
        )
        .await?;
        anyhow::ensure!(rb.ok, "the runbook job failed: {}", rb.stderr);
        ours.push(rb.wall);
    }
    let (o, t) = (Spread::of_durations(&ours), Spread::of_durations(&theirs));
    let ratios: Vec<f64> = theirs
        .iter()
        .zip(&ours)
        .map(|(p, r)| p.as_secs_f64() / r.as_secs_f64())
        .collect();
    println!("\n## 6. The peer a user would pick instead\n");
    println!(
        "The revoke-MFA job of (2) — {USERS} users, {LATENCY_MS} ms latency, 16 at a time — as `crates/bench/python/revoke_mfa.py` (Cloudflare's official SDK for Access, httpx for PrivX, a thread pool of 16) and as `runbook run crates/bench/scripts/revoke_mfa_per_user.rhai --concurrency 16`, alternating, whole processes.\n"
    );
    println!("| | wall time (min / median / max) |\n|---|---|");
    println!("| Python (cloudflare SDK + httpx) | {} |", t.show(2, "s"));
    println!("| runbook | {} |", o.show(2, "s"));
    println!("| ratio (Python / runbook) | {} |", Spread::of(&ratios).show(2, ""));
    sims.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// runbook serve: webhooks

pub(crate) const WEBHOOK_SECRET: &str = "bench-webhook-secret-000001";

pub(crate) async fn start_serve(runbook: &Path, dir: &Path) -> Result<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(runbook)
        .arg("serve")
        .current_dir(dir)
        .env("BENCH_SECRET", WEBHOOK_SECRET)
        .env_remove("RUST_LOG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let Some(line) = lines.next_line().await? else {
            bail!("runbook serve did not start")
        };
        if let Some(addr) = line.split("listening on ").nth(1) {
            break addr.trim().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

pub(crate) async fn stop_serve(mut child: tokio::process::Child) -> Result<()> {
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
    }
    child.wait().await?;
    Ok(())
}

/// Sends `total` signed deliveries (hmac-sha256 over the timestamp and the body, as serve's
/// default scheme wants) from `senders` tasks; returns the time taken and each answer's latency
/// in milliseconds (request sent → 202 read).
async fn send_deliveries(url: &str, total: usize, senders: usize, pace: Option<f64>) -> Result<(Duration, Vec<f64>)> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (client, url, next) = (client.clone(), format!("{url}/hooks/bench"), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                if let Some(rate) = pace {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = serde_json::to_vec(&json!({"n": i, "alert": "suspicious login"}))?;
                let now = jiff::Timestamp::now().as_second();
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header(
                        "X-Signature-256",
                        runbook_serve::webhook::sign(WEBHOOK_SECRET, Some(now), &body),
                    )
                    .header("X-Timestamp", now.to_string())
                    .header("X-Delivery-Id", format!("b-{i}"))
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 202, "delivery {i}: {}", response.status());
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok((started.elapsed(), latencies))
}

async fn webhooks(runbook: &Path, runs: usize) -> Result<()> {
    const BURST: usize = 5_000;
    const PACED: usize = 1_000;
    const RATE: f64 = 200.0;
    // The burst queues far more than the default queue_limit (1,000 per automation) before the
    // workers catch up: intake is what is measured here, not the cap.
    let config = "[serve]\nlisten = \"127.0.0.1:0\"\nstore = \"sqlite://runbook.db\"\nworkers = 4\nqueue_limit = 100000\n\n[[automation]]\nname = \"bench\"\n\
                  script = \"hook.rhai\"\nconcurrency = 4\ntrigger = { webhook = \"/hooks/bench\", secret = \"${BENCH_SECRET}\", id_header = \"X-Delivery-Id\" }\n";
    let mut rates = Vec::new();
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    let (mut burst_p99s, mut paced_p99s) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        // Intake: 32 senders as fast as the server answers.
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("runbook.toml"), config)?;
        std::fs::write(dir.path().join("hook.rhai"), "event.body.n")?;
        let (child, url) = start_serve(runbook, dir.path()).await?;
        let (took, answers) = send_deliveries(&url, BURST, 32, None).await?;
        rates.push(BURST as f64 / took.as_secs_f64());
        burst_p99s.push(quantile(&answers, 0.99));
        stop_serve(child).await?;

        // Latency: a steady 200 deliveries per second, acceptance to script start.
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("runbook.toml"), config)?;
        std::fs::write(dir.path().join("hook.rhai"), "event.body.n")?;
        let (child, url) = start_serve(runbook, dir.path()).await?;
        let (_, answers) = send_deliveries(&url, PACED, 32, Some(RATE)).await?;
        paced_p99s.push(quantile(&answers, 0.99));
        let store = runbook_serve::store::SqliteStore::open_shared(&dir.path().join("runbook.db")).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let runs = loop {
            use runbook_serve::store::Store;
            let all = store
                .list(&runbook_serve::store::RunFilter {
                    limit: PACED * 2,
                    ..Default::default()
                })
                .await?;
            if all.len() == PACED && all.iter().all(|r| r.started_at.is_some()) {
                break all;
            }
            anyhow::ensure!(Instant::now() < deadline, "runs did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let waits: Vec<f64> = runs
            .iter()
            .map(|r| (r.started_at.unwrap_or(r.created_at) - r.created_at) as f64)
            .collect();
        p50s.push(quantile(&waits, 0.5));
        p99s.push(quantile(&waits, 0.99));
        stop_serve(child).await?;
    }
    println!("\n## runbook serve: webhooks\n");
    println!(
        "The release `runbook serve` with SQLite (WAL, synchronous=FULL), 4 workers, a one-line script; deliveries signed with the default scheme (hmac-sha256 over the timestamp and the body; dedup on the id and the signature) from this process over loopback, on the same 2 cores.\n"
    );
    println!("| | min / median / max |\n|---|---|");
    println!(
        "| deliveries accepted per second, 32 concurrent senders, {BURST} deliveries | {} |",
        Spread::of(&rates).show(0, "/s")
    );
    println!(
        "| 202 answer latency (headers checked, body read and MAC checked, stored), p99, 32 concurrent senders | {} |",
        Spread::of(&burst_p99s).show(1, "ms")
    );
    println!(
        "| 202 answer latency, p99, at {RATE:.0} deliveries/s | {} |",
        Spread::of(&paced_p99s).show(1, "ms")
    );
    println!(
        "| acceptance → script start, p50, at {RATE:.0} deliveries/s | {} |",
        Spread::of(&p50s).show(0, "ms")
    );
    println!(
        "| acceptance → script start, p99, at {RATE:.0} deliveries/s | {} |",
        Spread::of(&p99s).show(0, "ms")
    );
    Ok(())
}

/// A fresh schema on `base`, as a store URL.
async fn pg_schema(base: &str) -> Result<String> {
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let schema = format!("rb_bench_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

/// Runs completed per second: `RUNS` runs queued up front, then `instances` servers started
/// together drain the queue; the rate is runs over the time from the first start to the last
/// finish, both as the store recorded them.
async fn drain(runbook: &Path, store_url: &str, instances: usize) -> Result<f64> {
    use runbook_serve::store::{NewRun, RunFilter, Store};
    const RUNS: usize = 3_000;
    let dir = tempfile::tempdir()?;
    let config = format!(
        "[serve]\nlisten = \"127.0.0.1:0\"\nstore = \"{store_url}\"\nworkers = 8\n\n[[automation]]\nname = \"bench\"\n\
         script = \"hook.rhai\"\nconcurrency = 64\ntrigger = {{ webhook = \"/hooks/bench\", secret = \"${{BENCH_SECRET}}\" }}\n"
    );
    std::fs::write(dir.path().join("runbook.toml"), config)?;
    std::fs::write(dir.path().join("hook.rhai"), "event.body.n")?;
    let store_url = runbook_serve::resolve_store(store_url, Some(dir.path()));
    {
        let store = runbook_serve::store::open(&store_url).await?;
        for n in 0..RUNS {
            store
                .enqueue(NewRun {
                    automation: "bench".into(),
                    trigger: "webhook".into(),
                    idem_key: Some(format!("d-{n}")),
                    dedup: Vec::new(),
                    scheduled_for: None,
                    params: serde_json::Map::new(),
                    event: Some(serde_json::json!({"body": {"n": n}})),
                    max_retries: 0,
                    retry_of: None,
                    script: "event.body.n".into(),
                    started_by: "webhook".into(),
                })
                .await?;
        }
    }
    let mut children = Vec::new();
    for _ in 0..instances {
        children.push(start_serve(runbook, dir.path()).await?.0);
    }
    let reader: std::sync::Arc<dyn Store> = match store_url.strip_prefix("sqlite://") {
        Some(path) => std::sync::Arc::new(runbook_serve::store::SqliteStore::open_shared(Path::new(path)).await?),
        None => runbook_serve::store::open(&store_url).await?,
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let runs = loop {
        let all = reader
            .list(&RunFilter {
                limit: RUNS * 2,
                ..Default::default()
            })
            .await?;
        if all.iter().all(|r| r.status.is_final()) {
            break all;
        }
        anyhow::ensure!(Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for child in children {
        stop_serve(child).await?;
    }
    anyhow::ensure!(
        runs.len() == RUNS && runs.iter().all(|r| r.attempts == 1),
        "every run once"
    );
    let first = runs.iter().filter_map(|r| r.started_at).min().unwrap_or(0);
    let last = runs.iter().filter_map(|r| r.finished_at).max().unwrap_or(0);
    Ok(RUNS as f64 / ((last - first).max(1) as f64 / 1000.0))
}

async fn cluster(runbook: &Path, postgres: &str, runs: usize) -> Result<()> {
    let mut rows = Vec::new();
    let mut sqlite = Vec::new();
    for _ in 0..runs {
        sqlite.push(drain(runbook, "sqlite://runbook.db", 1).await?);
    }
    rows.push(("SQLite, 1 instance".to_owned(), sqlite));
    for instances in 1..=3 {
        let mut rates = Vec::new();
        for _ in 0..runs {
            let url = pg_schema(postgres).await?;
            rates.push(drain(runbook, &url, instances).await?);
        }
        rows.push((
            format!(
                "PostgreSQL, {instances} instance{}",
                if instances > 1 { "s" } else { "" }
            ),
            rates,
        ));
    }
    println!("\n## runbook serve: runs completed per second\n");
    println!(
        "3,000 runs of a one-line script queued up front, then drained by release `runbook serve` processes started together \
         (8 workers each, the automation's concurrency 64); the rate is runs over first start → last finish as the store recorded them. \
         PostgreSQL on the same 2 cores.\n"
    );
    println!("| store | runs completed per second, min / median / max |\n|---|---|");
    for (name, rates) in rows {
        println!("| {name} | {} |", Spread::of(&rates).show(0, "/s"));
    }
    Ok(())
}
