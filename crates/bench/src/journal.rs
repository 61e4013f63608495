//! Figure 8: what the journal costs — figure 1 with the journal on SQLite, and the latency a
//! journaled change adds (its intent and its outcome, each a commit), on SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use runbook_core::journal::{JournalEntry, StepKind, StepStatus};
use runbook_core::{Effect, Engine, ProviderConfig, RunOptions};
use runbook_serve::store::{NewRun, Store};
use runbook_sim::SimOptions;
use serde_json::json;

use crate::stats::{Spread, quantile};
use crate::{pg_schema, sims, tenant};

/// A run held by this process, as a worker holds one: its journal accepts writes.
async fn held_run(store: &Arc<dyn Store>, n: usize) -> Result<Arc<dyn runbook_core::Journal>> {
    let queued = store
        .enqueue(NewRun {
            automation: "bench".into(),
            trigger: "api".into(),
            idem_key: Some(format!("journal-{n}-{}", uuid::Uuid::new_v4())),
            dedup: Vec::new(),
            scheduled_for: None,
            params: serde_json::Map::new(),
            event: None,
            max_retries: 0,
            retry_of: None,
            script: "bench".into(),
            started_by: "webhook".into(),
        })
        .await?;
    let mut concurrency = BTreeMap::new();
    concurrency.insert("bench".to_owned(), 1_000_000);
    let claimed = store
        .claim("bench", &concurrency, 1, Duration::from_secs(600))
        .await?
        .into_iter()
        .find(|r| r.id == queued.run_id)
        .ok_or_else(|| anyhow::anyhow!("the run was not claimed"))?;
    Ok(store.journal(&claimed.id, claimed.attempt, claimed.epoch))
}

pub async fn journal_cost(postgres: &str, runs: usize) -> Result<()> {
    const CALLS: usize = 10_000;
    const BLOCK: usize = 1_000;
    const WRITES: usize = 2_000;
    let runs = runs.max(15);
    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> =
        Arc::new(runbook_serve::store::SqliteStore::open(&dir.path().join("runbook.db")).await?);

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
    let mut n = 0;
    // 0: no journal; 1: serve's SQLite journal; 2: a journal in memory (the engine's own share).
    let mut timed = async |calls: usize, journal: u8| -> Result<Duration> {
        let mut options = RunOptions::new();
        if journal == 1 {
            n += 1;
            options = options.journal(held_run(&sqlite, n).await?);
        } else if journal == 2 {
            options = options.journal(Arc::new(runbook_core::MemoryJournal::new()));
        }
        let started = Instant::now();
        let outcome = engine
            .run(&script(calls), options)
            .await
            .map_err(|e| anyhow::anyhow!(e.describe()))?;
        anyhow::ensure!(outcome.result == json!(calls));
        Ok(started.elapsed())
    };
    timed(CALLS, 0).await?;
    timed(CALLS, 1).await?;
    let (mut plain, mut journaled, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plain_blocks, mut journaled_blocks) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        cf.clear_requests();
        plain.push(timed(CALLS, 0).await?);
        journaled.push(timed(CALLS, 1).await?);
        memory.push(timed(CALLS, 2).await?);
        let (mut p, mut j) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..CALLS / BLOCK {
            cf.clear_requests();
            p += timed(BLOCK, 0).await?;
            j += timed(BLOCK, 1).await?;
        }
        plain_blocks.push(p);
        journaled_blocks.push(j);
    }
    let ratio = |plain: &[Duration], other: &[Duration]| -> Vec<f64> {
        plain
            .iter()
            .zip(other)
            .map(|(a, b)| b.as_secs_f64() / a.as_secs_f64())
            .collect()
    };
    let table = |plain: &[Duration], journaled: &[Duration], memory: Option<&[Duration]>| {
        println!("| | min / median / max |\n|---|---|");
        println!(
            "| runbook script, no journal | {} |",
            Spread::of_durations(plain).show(3, "s")
        );
        println!(
            "| runbook script, journal on SQLite | {} |",
            Spread::of_durations(journaled).show(3, "s")
        );
        println!(
            "| ratio (SQLite journal / none) | {} |",
            Spread::of(&ratio(plain, journaled)).show(3, "")
        );
        if let Some(memory) = memory {
            println!(
                "| runbook script, journal in memory | {} |",
                Spread::of_durations(memory).show(3, "s")
            );
            println!(
                "| ratio (memory journal / none) | {} |",
                Spread::of(&ratio(plain, memory)).show(3, "")
            );
        }
    };
    println!("\n## 8. What the journal costs\n");
    println!(
        "Figure 1's script ({CALLS} sequential `cloudflare::get_user` calls against the simulator, in one process) run \
         without a journal and with serve's SQLite journal (WAL, synchronous=FULL; the run held as a worker holds one), \
         alternating; {runs} pairs, the ratio taken per pair. Reads are committed with the next change or at the end, \
         at the latest every 256 reads.\n"
    );
    table(&plain, &journaled, Some(&memory));
    println!("\nThe same in blocks of {BLOCK} calls, alternating:\n");
    table(&plain_blocks, &journaled_blocks, None);

    // The latency a change gains: its intent committed before it is sent, its outcome after.
    let mut rows = vec![("SQLite".to_owned(), sqlite.clone())];
    if let Ok(url) = pg_schema(postgres).await {
        rows.push(("PostgreSQL".to_owned(), runbook_serve::store::open(&url).await?));
    }
    println!(
        "\nThe latency a journaled change adds: its intent committed before it is sent, its outcome after it is \
         answered — two commits, timed one after the other for {WRITES} changes of one run.\n"
    );
    println!("| store | p50 | p99 |\n|---|---|---|");
    for (name, store) in rows {
        let (mut p50, mut p99) = (Vec::new(), Vec::new());
        for r in 0..runs.min(5) {
            let journal = held_run(&store, 1_000_000 + r).await?;
            let mut took = Vec::with_capacity(WRITES);
            for k in 1..=WRITES {
                let mut entry =
                    JournalEntry::new(k.to_string(), StepKind::Call, "cloudflare.update_user", Effect::Write);
                entry.args = json!({"user_id": format!("u{k}"), "name": "n"});
                let started = Instant::now();
                journal.write(&entry).await?;
                entry.status = StepStatus::Ok;
                entry.result = Some(json!({"id": format!("u{k}"), "name": "n"}));
                journal.write(&entry).await?;
                took.push(started.elapsed().as_secs_f64() * 1e3);
            }
            p50.push(quantile(&took, 0.5));
            p99.push(quantile(&took, 0.99));
        }
        println!(
            "| {name} | {} | {} |",
            Spread::of(&p50).show(2, "ms"),
            Spread::of(&p99).show(2, "ms")
        );
    }
    sims.shutdown().await;
    Ok(())
}
