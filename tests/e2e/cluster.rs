//! Several `runbook serve` processes on one PostgreSQL: shared intake, schedules that fire once,
//! runs that survive a SIGKILL, and one rate budget for all. These need the server named by
//! `RUNBOOK_TEST_POSTGRES_URL`; each test works in a schema of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runbook_serve::store::{PgStore, RunFilter, RunRecord, RunStatus, Store};
use runbook_sim::{RateLimit, SimOptions};
use serde_json::{Value, json};

use crate::fixtures::{cf_id, tenant};
use crate::serve::{HOOK_SCRIPT, Server, signed, wait_until, workspace_with};
use crate::support::{Sims, needed_env};

const POSTGRES_VAR: &str = "RUNBOOK_TEST_POSTGRES_URL";

/// A URL for a fresh schema on the test server. Without one the test fails, or with
/// `RUNBOOK_TEST_SKIP=postgres` passes having checked nothing (`None`, said loudly).
pub(crate) async fn postgres_url() -> Option<String> {
    let base = needed_env(
        POSTGRES_VAR,
        "postgres",
        "e.g. RUNBOOK_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test",
    )?;
    let schema = format!(
        "rb_e2e_{}_{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond() % 1_000_000_000_000
    );
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_VAR}={base}: cannot connect: {e}"));
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

async fn all_runs(url: &str) -> Vec<RunRecord> {
    PgStore::open(url)
        .await
        .unwrap()
        .list(&RunFilter {
            limit: 100_000,
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

fn config(store_var: &str, rest: &str) -> String {
    format!(
        // 2,000 deliveries arrive faster than they run: more than the default queue_limit wait.
        "[serve]\nlisten = \"127.0.0.1:0\"\nstore = \"${{{store_var}}}\"\nworkers = 4\ngrace = \"10s\"\nlease = \"2s\"\nqueue_limit = 100000\n\n{rest}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_2000_deliveries_and_lose_none_to_a_sigkill() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let sims = Sims::start(tenant(20, 0)).await;
    let automation = "[[automation]]\nname = \"hook\"\nscript = \"hook.rhai\"\nretries = 3\nretry_delay = \"100ms\"\nconcurrency = 8\n\
                      trigger = { webhook = \"/hooks/siem\", secret = \"${SIEM_SECRET}\", id_header = \"X-Delivery-Id\" }\n";
    let mut ws = workspace_with(
        &sims,
        &config("RUNBOOK_STORE", automation),
        &[("hook.rhai", HOOK_SCRIPT)],
    );
    ws.set_env("RUNBOOK_STORE", &url);
    // The instances share Cloudflare's budget; this test is about the queue, not the budget.
    ws.set_env("CLOUDFLARE_RATE_LIMIT", "100000/1s");
    let servers = vec![
        Server::start(&ws).await,
        Server::start(&ws).await,
        Server::start(&ws).await,
    ];
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let client = reqwest::Client::new();
    let body = |i: usize| json!({"user_id": cf_id(i % 20 + 1), "n": i});
    const N: usize = 2000;

    // Deliveries go round-robin to the three instances, 24 at a time.
    let accepted: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; N]));
    let next = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..24 {
        let (client, urls, accepted, next, sent) = (
            client.clone(),
            urls.clone(),
            accepted.clone(),
            next.clone(),
            sent.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= N {
                    break;
                }
                if let Ok(response) = signed(&client, &urls[i % 3], "/hooks/siem", &format!("d-{i}"), &body(i))
                    .send()
                    .await
                    && response.status().is_success()
                {
                    let doc: Value = response.json().await.unwrap();
                    accepted.lock().unwrap()[i] = Some(doc["run_id"].as_str().unwrap().to_owned());
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Part-way through, one instance dies without any chance to clean up.
    wait_until("600 deliveries", Duration::from_secs(120), || async {
        sent.load(Ordering::SeqCst) >= 600
    })
    .await;
    let mut servers = servers.into_iter();
    servers.next().unwrap().kill().await;
    let survivors: Vec<Server> = servers.collect();
    for s in senders {
        s.await.unwrap();
    }
    let before: Vec<Option<String>> = accepted.lock().unwrap().clone();
    let got_2xx = before.iter().filter(|a| a.is_some()).count();
    assert!(
        (600..N).contains(&got_2xx),
        "the kill came too late or too early: {got_2xx} accepted"
    );

    // The sender delivers again whatever it is not sure of, to the instances still up; a
    // delivery already accepted is recognised wherever it arrives.
    for (i, first) in before.iter().enumerate() {
        let to = &survivors[i % 2].url;
        let response = signed(&client, to, "/hooks/siem", &format!("d-{i}"), &body(i))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let doc: Value = response.json().await.unwrap();
        if let Some(run_id) = first {
            assert_eq!(status, 200, "d-{i} was accepted before: a resend must not create a run");
            assert_eq!(doc["run_id"], json!(run_id));
        } else {
            assert!(status == 202 || status == 200, "d-{i}: {status} {doc}");
        }
    }
    // The killed instance's runs come back when their leases expire.
    wait_until("every run to finish", Duration::from_secs(180), || async {
        all_runs(&url).await.iter().all(|r| r.status.is_final())
    })
    .await;
    let runs = all_runs(&url).await;
    assert_eq!(runs.len(), N, "one run per delivery");
    let mut deliveries: Vec<&str> = runs
        .iter()
        .map(|r| r.event.as_ref().unwrap()["delivery_id"].as_str().unwrap())
        .collect();
    deliveries.sort_unstable();
    deliveries.dedup();
    assert_eq!(deliveries.len(), N, "a delivery has two runs");
    let not_ok: Vec<&RunRecord> = runs.iter().filter(|r| r.status != RunStatus::Succeeded).collect();
    assert!(
        not_ok.is_empty(),
        "{} runs did not succeed: {:?}",
        not_ok.len(),
        not_ok.first().map(|r| (&r.status, &r.error))
    );
    for (i, first) in before.iter().enumerate() {
        if let Some(run_id) = first {
            let run = runs.iter().find(|r| &r.id == run_id).unwrap();
            assert_eq!(run.result.as_ref().unwrap()["n"], json!(i));
        }
    }
    let retried = runs.iter().filter(|r| r.attempts > 1).count();
    eprintln!(
        "{got_2xx} of {N} deliveries accepted before SIGKILL; {retried} runs needed a second attempt; all {N} ended in one succeeded run each"
    );

    // `runbook runs` reads the shared store like any instance.
    let listed = ws.run(&["runs", "list", "--limit", "3", "-o", "json"]).await;
    assert_eq!(listed.code, Some(0), "{}", listed.all());
    assert_eq!(listed.json().as_array().map(Vec::len), Some(3), "{}", listed.stdout);
    for server in survivors {
        assert_eq!(server.stop().await, Some(0));
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_schedule_fires_once_per_tick_across_three_instances() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let sims = Sims::start(tenant(1, 0)).await;
    let automation = "[[automation]]\nname = \"tick\"\nscript = \"tick.rhai\"\ntrigger = { every = \"1s\" }\n";
    let mut ws = workspace_with(&sims, &config("RUNBOOK_STORE", automation), &[("tick.rhai", "now()\n")]);
    ws.set_env("RUNBOOK_STORE", &url);
    let servers = vec![
        Server::start(&ws).await,
        Server::start(&ws).await,
        Server::start(&ws).await,
    ];
    tokio::time::sleep(Duration::from_secs(10)).await;
    for server in servers {
        assert_eq!(server.stop().await, Some(0));
    }
    let runs = all_runs(&url).await;
    let mut ticks: Vec<i64> = runs.iter().map(|r| r.scheduled_for.unwrap()).collect();
    ticks.sort_unstable();
    ticks.dedup();
    assert_eq!(ticks.len(), runs.len(), "a tick ran more than once: {runs:#?}");
    assert!(
        (9..=11).contains(&runs.len()),
        "{} runs in 10 s of a 1-second schedule",
        runs.len()
    );
    // Ticks are whole seconds and none is missing between the first and the last.
    assert!(ticks.iter().all(|t| t % 1000 == 0));
    assert_eq!(
        (ticks[ticks.len() - 1] - ticks[0]) / 1000 + 1,
        ticks.len() as i64,
        "{ticks:?}"
    );
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded), "{runs:#?}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_fanning_out_stay_inside_one_shared_rate_budget() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let budget = 50;
    let sims = Sims::start_with(
        tenant(100, 0),
        SimOptions {
            rate_limit: Some(RateLimit {
                requests: budget,
                window: Duration::from_secs(1),
            }),
            ..SimOptions::default()
        },
    )
    .await;
    let automation = "[[automation]]\nname = \"fanout\"\nscript = \"fanout.rhai\"\n\
                      trigger = { webhook = \"/hooks/fanout\", secret = \"${SIEM_SECRET}\" }\n";
    let script = "parallel(cloudflare::list_users().map(|u| u.id), |id| cloudflare::get_user(id).email).len()\n";
    let mut ws = workspace_with(&sims, &config("RUNBOOK_STORE", automation), &[("fanout.rhai", script)]);
    ws.set_env("RUNBOOK_STORE", &url);
    // Each instance on its own would allow itself the whole budget.
    ws.set_env("CLOUDFLARE_RATE_LIMIT", &format!("{budget}/1s"));
    let servers = vec![
        Server::start(&ws).await,
        Server::start(&ws).await,
        Server::start(&ws).await,
    ];
    let client = reqwest::Client::new();
    for (i, server) in servers.iter().enumerate() {
        let response = signed(
            &client,
            &server.url,
            "/hooks/fanout",
            &format!("f-{i}"),
            &json!({"i": i}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 202);
    }
    wait_until("the three fan-outs", Duration::from_secs(60), || async {
        let runs = all_runs(&url).await;
        runs.len() == 3 && runs.iter().all(|r| r.status.is_final())
    })
    .await;
    let runs = all_runs(&url).await;
    for run in &runs {
        assert_eq!(
            (run.status, run.result.clone()),
            (RunStatus::Succeeded, Some(json!(100))),
            "{run:#?}"
        );
    }
    let log = sims.cf().requests();
    let limited = log.iter().filter(|r| r.status == 429).count();
    assert_eq!(limited, 0, "the simulator answered 429 {limited} times");
    assert!(log.len() >= 303, "{} requests", log.len());
    // Over any one-second stretch, the three instances together sent at most the budget.
    // (A few milliseconds of slack: the budget is kept by the database's clock, and each
    // request still crosses loopback before the simulator stamps it.)
    let (first, last) = (log[0].at, log[log.len() - 1].at);
    for w in log.windows(budget as usize + 1) {
        let span = w[budget as usize].at - w[0].at;
        assert!(
            span >= Duration::from_millis(980),
            "{} requests within {span:?}",
            budget + 1
        );
    }
    let rate = log.len() as f64 / (last - first).as_secs_f64();
    eprintln!(
        "3 instances, {} requests in {:.2} s: {rate:.1}/s against a budget of {budget}/s, no 429",
        log.len(),
        (last - first).as_secs_f64()
    );
    for server in servers {
        assert_eq!(server.stop().await, Some(0));
    }
    sims.shutdown().await;
}
