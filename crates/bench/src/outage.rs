//! A store outage as an operator would see it: `runbook serve` on SQLite whose file another
//! connection locks for `seconds` while webhooks arrive and a one-second schedule ticks.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use runbook_serve::store::{RunFilter, RunStatus, SqliteStore, Store};
use serde_json::json;

use crate::stats::quantile;
use crate::{WEBHOOK_SECRET, start_serve, stop_serve};

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

async fn deliver(client: &reqwest::Client, url: &str, id: &str) -> Result<(u16, Duration)> {
    let body = serde_json::to_vec(&json!({"id": id}))?;
    let started = Instant::now();
    let now = jiff::Timestamp::now().as_second();
    let response = client
        .post(format!("{url}/hooks/bench"))
        .header("X-Timestamp", now.to_string())
        .header(
            "X-Signature-256",
            runbook_serve::webhook::sign(WEBHOOK_SECRET, Some(now), &body),
        )
        .header("X-Delivery-Id", id)
        .body(body)
        .send()
        .await?;
    Ok((response.status().as_u16(), started.elapsed()))
}

/// The outage figure: webhook answers during the lock, `/readyz` and `/metrics`, the time to
/// recover, and every tick accounted for.
pub async fn outage(runbook: &Path, seconds: u64) -> Result<()> {
    let config = "[serve]\nlisten = \"127.0.0.1:0\"\nstore = \"sqlite://runbook.db\"\nlease = \"10s\"\n\n\
                  [[automation]]\nname = \"bench\"\nscript = \"one.rhai\"\n\
                  trigger = { webhook = \"/hooks/bench\", secret = \"${BENCH_SECRET}\", id_header = \"X-Delivery-Id\" }\n\n\
                  [[automation]]\nname = \"tick\"\nscript = \"one.rhai\"\ntrigger = { every = \"1s\" }\n";
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("runbook.toml"), config)?;
    std::fs::write(dir.path().join("one.rhai"), "1")?;
    let (child, url) = start_serve(runbook, dir.path()).await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let db = dir.path().join("runbook.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let hold = Duration::from_secs(seconds);
    let holder = std::thread::spawn(move || -> Result<()> {
        let conn = rusqlite::Connection::open(db)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch("BEGIN EXCLUSIVE")?;
        let _ = locked_tx.send(());
        std::thread::sleep(hold);
        conn.execute_batch("ROLLBACK")?;
        Ok(())
    });
    locked_rx.recv()?;
    let locked_at = Instant::now();
    // Every 0.5 s, without waiting for earlier answers: a delivery, a `/readyz` probe, a scrape.
    let mut deliveries_sent = Vec::new();
    let mut probes_sent = Vec::new();
    let mut n = 0;
    while locked_at.elapsed() < hold {
        let id = format!("during-{n}");
        n += 1;
        let (c, u) = (client.clone(), url.clone());
        deliveries_sent.push(tokio::spawn(async move {
            let answer = deliver(&c, &u, &id).await;
            (id, answer)
        }));
        let (c, u) = (client.clone(), url.clone());
        probes_sent.push(tokio::spawn(async move {
            let ready = c.get(format!("{u}/readyz")).send().await.map(|r| r.status().as_u16());
            let metrics = c.get(format!("{u}/metrics")).send().await.map(|r| r.status().as_u16());
            (ready, metrics)
        }));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (mut during, mut refused) = (Vec::new(), Vec::new());
    for task in deliveries_sent {
        let (id, answer) = task.await?;
        let (status, took) = answer?;
        during.push(took.as_secs_f64() * 1000.0);
        if status != 202 && status != 200 {
            refused.push((id, status));
        }
    }
    let (mut ready_503, mut probes, mut metrics_200) = (0, 0, 0);
    for task in probes_sent {
        let (ready, metrics) = task.await?;
        probes += 1;
        ready_503 += usize::from(ready? == 503);
        metrics_200 += usize::from(metrics? == 200);
    }
    tokio::task::spawn_blocking(move || holder.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the lock holder panicked"))??;
    let unlocked = Instant::now();
    while client.get(format!("{url}/readyz")).send().await?.status() != 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_after = unlocked.elapsed();
    for (id, _) in &refused {
        let (status, _) = deliver(&client, &url, id).await?;
        ensure!(status == 202 || status == 200, "{id} sent again: {status}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = client.get(format!("{url}/metrics")).send().await?.text().await?;
    let store = SqliteStore::open_shared(&dir.path().join("runbook.db")).await?;
    let runs = store
        .list(&RunFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await?;
    stop_serve(child).await?;

    let mut ticks: Vec<i64> = runs.iter().filter_map(|r| r.scheduled_for).collect();
    ticks.sort_unstable();
    let ran = ticks.len();
    ticks.dedup();
    ensure!(ticks.len() == ran, "a tick ran twice");
    let fallen = (ticks[ticks.len() - 1] - ticks[0]) / 1000 + 1;
    let missed = metric(&metrics, "runbook_ticks_missed_total");
    let skipped = metric(&metrics, "runbook_ticks_skipped_total");
    let deliveries = runs.iter().filter(|r| r.automation == "bench").count();
    ensure!(deliveries == n, "{n} deliveries, {deliveries} runs");
    let failed = runs.iter().filter(|r| r.status == RunStatus::Failed).count();

    println!("\n## runbook serve: a {seconds} s store outage\n");
    println!(
        "The release `runbook serve` with SQLite (default `store_timeout` 5s, `lease` 10s); another connection holds the file's write lock (`BEGIN EXCLUSIVE`) for {seconds} s while a client sends a signed delivery, probes `/readyz` and scrapes `/metrics` every 0.5 s (without waiting for earlier answers), and a one-second schedule ticks.\n"
    );
    println!("| | |\n|---|---|");
    println!(
        "| deliveries during the outage | {} sent, {} answered 503 + Retry-After, all stored once when sent again |",
        during.len(),
        refused.len()
    );
    println!(
        "| webhook answer time during the outage, p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        quantile(&during, 0.5),
        quantile(&during, 0.99),
        during.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "| `/readyz` 503 during the outage | {ready_503} of {probes} probes (a probe sent in its last `store_timeout` may see the store back) |"
    );
    println!("| `/metrics` 200 during the outage | {metrics_200} of {probes} scrapes |");
    println!(
        "| `/readyz` 200 again after the lock was released | {:.0} ms |",
        ready_after.as_secs_f64() * 1000.0
    );
    println!(
        "| ticks between the first and the last that ran | {fallen}: {ran} ran, {missed} counted missed, {skipped} skipped |"
    );
    println!(
        "| runs run twice / failed | 0 / {failed}; store errors counted: {} |",
        metric(&metrics, "runbook_store_errors_total")
    );
    Ok(())
}
