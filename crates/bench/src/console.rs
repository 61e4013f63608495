//! The console's pages under a history of 10,000 runs (issue 19: under 50 ms p99).
//!
//! The history is written through the store's own operations — enqueue, claim, the journal,
//! await_approval, decide, complete — so the rows are the ones `runbook serve` writes; only the
//! timestamps are moved afterwards, to spread the runs over 28 days as a real history is. Then a
//! release `runbook serve` serves the console on that store, the benchmark signs in as a browser
//! does (the sign-in form's cookie and hidden `_csrf`, then the session cookie), and asks for each
//! page many times over keep-alive: from one client, then from 8 at once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use runbook_core::journal::{StepError, digest};
use runbook_core::{Effect, JournalEntry, SavedPlan, StepKind, StepStatus};
use runbook_serve::store::{Completion, Decision, NewRun, PendingPlan, RunStatus, Store};
use serde_json::{Map, Value, json};

use crate::stats::quantile;
use crate::{pg_schema, start_serve, stop_serve};

const DAY_MS: i64 = 86_400_000;
/// How far back the history goes: inside serve's default `keep` and `journal_retention` (30
/// days), so that nothing is pruned or compacted while the pages are measured.
const HISTORY_DAYS: i64 = 28;
/// The token the benchmark signs in with: an approver of `offboard-users`, with `read` and `run`.
const ALICE_TOKEN: &str = "alice-token-0c3e5a7b9d1f2e4c6a8b0d2f4e6a";
const OWNER: &str = "bench-seed";

/// One automation of the seeded history: its trigger, and the steps each of its runs takes —
/// a `now()`, the reads at its head, the same few calls per target, a `state::set` at the end.
struct Automation {
    name: &'static str,
    /// Share of the history, in percent.
    weight: u64,
    /// `webhook` or `schedule`.
    trigger: &'static str,
    /// The trigger's line in runbook.toml.
    toml: &'static str,
    approval: bool,
    head: &'static [&'static str],
    per_target: &'static [(&'static str, Effect)],
    targets: usize,
}

const AUTOMATIONS: &[Automation] = &[
    Automation {
        name: "revoke-mfa",
        weight: 35,
        trigger: "webhook",
        toml: "trigger = { webhook = \"/hooks/siem\", secret = \"${BENCH_SECRET}\", id_header = \"X-Delivery-Id\" }",
        approval: false,
        head: &["cloudflare.failed_logins"],
        per_target: &[
            ("cloudflare.get_user", Effect::Read),
            ("cloudflare.revoke_sessions", Effect::Write),
            ("privx.reset_mfa", Effect::Write),
        ],
        targets: 2,
    },
    Automation {
        name: "sync-groups",
        weight: 25,
        trigger: "schedule",
        // Every 6 hours: no tick falls while the benchmark runs (and the automation is paused).
        toml: "trigger = { schedule = \"0 0 */6 * * *\" }",
        approval: false,
        head: &["entra.list_groups", "entra.list_members"],
        per_target: &[("entra.add_member", Effect::Write)],
        targets: 4,
    },
    Automation {
        name: "rotate-keys",
        weight: 10,
        trigger: "schedule",
        toml: "trigger = { schedule = \"0 0 3 * * 1\" }",
        approval: false,
        head: &["vault.list_keys"],
        per_target: &[("vault.rotate_key", Effect::Write)],
        targets: 3,
    },
    Automation {
        name: "offboard-users",
        weight: 15,
        trigger: "webhook",
        toml: "trigger = { webhook = \"/hooks/hr\", secret = \"${BENCH_SECRET}\", id_header = \"X-Delivery-Id\" }\n\
               approval = { approvers = [\"alice\", \"bob\"], required = 1, expires = \"24h\" }",
        approval: true,
        head: &["hr.departures", "cloudflare.list_users"],
        per_target: &[
            ("cloudflare.get_user", Effect::Read),
            ("cloudflare.revoke_sessions", Effect::Write),
            ("privx.remove_roles", Effect::Write),
            ("cloudflare.delete_user", Effect::Destructive),
        ],
        targets: 5,
    },
    Automation {
        name: "cleanup-tokens",
        weight: 15,
        trigger: "schedule",
        toml: "trigger = { schedule = \"0 15 4 * * *\" }",
        approval: false,
        head: &["github.list_tokens"],
        per_target: &[("github.revoke_token", Effect::Destructive)],
        targets: 2,
    },
];

/// The automation whose runs the page filtered by automation and status shows, and the one
/// whose runs are the big ones a run's page shows.
const FILTERED: &str = "revoke-mfa";
const BIG: &str = "offboard-users";
/// Paused a day ago: its runs since then wait as `queued`.
const PAUSED: &str = "sync-groups";

/// How a seeded run ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Succeeded,
    Failed,
    Refused,
    Cancelled,
    NeedsAttention,
    Rejected,
    Awaiting,
    Queued,
}

/// One seeded run: which automation, when, and how it ends.
#[derive(Debug, Clone, Copy)]
struct Planned {
    n: usize,
    automation: usize,
    fate: Fate,
    /// Queued (unix ms).
    created: i64,
    /// The last attempt started (unix ms).
    started: i64,
    /// It finished (unix ms).
    finished: i64,
    /// Approved (unix ms), for a run of an automation with approval.
    decided: i64,
}

impl Planned {
    fn auto(&self) -> &'static Automation {
        &AUTOMATIONS[self.automation]
    }

    fn steps(&self) -> usize {
        let a = self.auto();
        2 + a.head.len() + a.per_target.len() * a.targets
    }

    /// Time between two steps of its last attempt (ms).
    fn spacing(&self) -> i64 {
        ((self.finished - self.started) / (self.steps() as i64 + 1)).max(1)
    }

    fn started_by(&self) -> &'static str {
        match mix(self.n as u64, 7) % 20 {
            0 => "ops",
            1 if self.auto().approval => "ops",
            1 => "alice",
            _ if self.auto().trigger == "webhook" => "webhook",
            _ => "schedule",
        }
    }

    fn trigger(&self) -> &'static str {
        match self.started_by() {
            "webhook" => "webhook",
            "schedule" => "schedule",
            _ => "api",
        }
    }
}

/// A deterministic pseudo-random number (splitmix64) of `n` and `salt`.
fn mix(n: u64, salt: u64) -> u64 {
    let mut z = n
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The history: `runs` runs over the last `HISTORY_DAYS` days, oldest first.
fn plan_history(runs: usize, now: i64) -> Vec<Planned> {
    let span = HISTORY_DAYS * DAY_MS;
    let total: u64 = AUTOMATIONS.iter().map(|a| a.weight).sum();
    (0..runs)
        .map(|n| {
            let created = now - span + (n as i64 * span / runs as i64) - 60_000;
            let mut pick = mix(n as u64, 1) % total;
            let automation = AUTOMATIONS
                .iter()
                .position(|a| {
                    if pick < a.weight {
                        true
                    } else {
                        pick -= a.weight;
                        false
                    }
                })
                .unwrap_or(0);
            let a = &AUTOMATIONS[automation];
            let roll = mix(n as u64, 2) % 1000;
            let fate = if a.name == PAUSED && created > now - DAY_MS {
                Fate::Queued
            } else if a.approval && created > now - DAY_MS / 2 {
                Fate::Awaiting
            } else if a.approval && roll < 30 {
                Fate::Rejected
            } else if roll < 100 {
                Fate::Failed
            } else if roll < 120 {
                Fate::NeedsAttention
            } else if roll < 130 {
                Fate::Refused
            } else if roll < 140 {
                Fate::Cancelled
            } else {
                Fate::Succeeded
            };
            // A person approves within minutes to an hour; an attempt takes seconds to minutes.
            let decided = created + 5_000 + (mix(n as u64, 3) % 3_600_000) as i64;
            let begin = if a.approval { decided } else { created };
            let started = begin + 40 + (mix(n as u64, 4) % 400) as i64;
            let finished = started + 1_500 + (mix(n as u64, 5) % if a.approval { 90_000 } else { 20_000 }) as i64;
            Planned {
                n,
                automation,
                fate,
                created,
                started,
                finished,
                decided,
            }
        })
        .collect()
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn user(n: usize, k: usize) -> (String, String) {
    let h = mix(n as u64, 100 + k as u64);
    let first = [
        "anna", "bertil", "chen", "dmitri", "eva", "farah", "goran", "hanna", "ilkka", "jussi", "kaisa", "lauri",
    ][(h % 12) as usize];
    let last = [
        "virtanen",
        "korhonen",
        "nieminen",
        "makinen",
        "hamalainen",
        "laine",
        "heikkinen",
        "koskinen",
    ][((h >> 8) % 8) as usize];
    (
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            h as u32,
            (h >> 32) as u16,
            (h >> 48) & 0xfff,
            (h >> 20) & 0xfff,
            h & 0xffff_ffff_ffff
        ),
        format!("{first}.{last}{}@example.com", h % 97),
    )
}

/// What a read step returned: the head's last read a list of a few KB, the others one object.
fn read_result(p: &Planned, action: &str, k: usize, big: bool) -> Value {
    if big {
        let items: Vec<Value> = (0..12)
            .map(|i| {
                let (id, email) = user(p.n, 50 + i);
                json!({"id": id, "email": email, "name": email.split('@').next(), "last_seen_at": rfc3339(p.created - (i as i64) * 3_600_000),
                       "active_device_count": i % 4, "groups": ["staff", "vpn-users"], "source": action})
            })
            .collect();
        json!({"items": items, "total": 12, "page": 1})
    } else {
        let (id, email) = user(p.n, k);
        json!({"id": id, "email": email, "active_device_count": 2, "mfa": "totp", "created_at": rfc3339(p.created - 90 * DAY_MS)})
    }
}

/// The journal of the run's last attempt, as the engine writes it: every step answered but the
/// last, which failed, stayed in doubt, or was never reached, as the fate says.
fn journal(p: &Planned, attempt: u32, epoch: u64) -> Vec<JournalEntry> {
    let a = p.auto();
    let mut steps: Vec<(StepKind, String, Effect, usize)> = vec![(StepKind::Now, String::new(), Effect::Read, 0)];
    for head in a.head {
        steps.push((StepKind::Call, (*head).to_owned(), Effect::Read, 0));
    }
    for t in 0..a.targets {
        for (action, effect) in a.per_target {
            steps.push((StepKind::Call, (*action).to_owned(), *effect, t));
        }
    }
    steps.push((StepKind::StateSet, "last_run".to_owned(), Effect::Read, 0));
    let first_write = steps.iter().position(|s| s.2.is_mutating()).unwrap_or(1);
    // Where the attempt stopped (the step at `stop` is its last).
    let stop = match p.fate {
        Fate::Failed | Fate::NeedsAttention => {
            first_write + (mix(p.n as u64, 6) as usize % (steps.len() - first_write - 1))
        }
        Fate::Refused => first_write - 1,
        Fate::Cancelled => steps.len() / 2,
        _ => steps.len() - 1,
    };
    let stop = if matches!(p.fate, Fate::Failed | Fate::NeedsAttention) {
        // The step that failed or is in doubt is a change.
        (stop..steps.len())
            .find(|&i| steps[i].2.is_mutating())
            .unwrap_or(first_write)
    } else {
        stop
    };
    let spacing = p.spacing();
    steps
        .into_iter()
        .enumerate()
        .take(stop + 1)
        .map(|(i, (kind, action, effect, target))| {
            let key = (i + 1).to_string();
            let mut e = JournalEntry::new(key, kind, action.clone(), effect);
            e.attempt = attempt;
            e.epoch = epoch;
            e.started_at = p.started + (i as i64 + 1) * spacing;
            e.finished_at = Some(e.started_at + spacing - 3);
            e.status = StepStatus::Ok;
            let (id, email) = user(p.n, target);
            match kind {
                StepKind::Now => e.result = Some(json!(p.started / 1000)),
                StepKind::StateSet => {
                    e.args = json!({"key": "last_run", "value": rfc3339(p.started)});
                    e.result_digest = Some(digest(&Value::Null));
                }
                _ if !effect.is_mutating() => {
                    e.args = if i <= a.head.len() {
                        json!({"since": rfc3339(p.created - DAY_MS), "limit": 1000})
                    } else {
                        json!({"user_id": id})
                    };
                    e.result = Some(read_result(p, &action, target, i == a.head.len()));
                }
                _ => {
                    e.idempotent = effect == Effect::Write;
                    e.targets = 1;
                    e.args = json!({"user_id": id, "reason": format!("{} run by runbook", a.name)});
                    e.result = Some(json!({"id": id, "email": email, "ok": true}));
                }
            }
            e.args_digest = digest(&e.args);
            if i == stop {
                match p.fate {
                    Fate::Failed => {
                        e.status = StepStatus::Err;
                        e.result = None;
                        e.error = Some(StepError {
                            kind: "status".to_owned(),
                            message: format!(
                                "{action}: the service answered 503 Service Unavailable: {{\"errors\":[{{\"code\":1000,\"message\":\"temporarily unavailable\"}}]}}"
                            ),
                            status: Some(503),
                        });
                    }
                    Fate::NeedsAttention => {
                        e.status = StepStatus::Intent;
                        e.result = None;
                        e.finished_at = None;
                    }
                    _ => {}
                }
            }
            e
        })
        .collect()
}

/// What the script printed, and the audit records of its calls, for a journal.
fn records(p: &Planned, steps: &[JournalEntry]) -> (Value, Value) {
    let mut logs = vec![
        json!({"at": rfc3339(p.started), "level": "print", "message": format!("{} started by {}", p.auto().name, p.started_by())}),
    ];
    let mut calls = Vec::new();
    for (seq, e) in steps.iter().filter(|e| e.kind == StepKind::Call).enumerate() {
        let at = rfc3339(e.started_at);
        let outcome = match e.status {
            StepStatus::Ok => "ok",
            StepStatus::Err => "error",
            StepStatus::Intent => "cancelled",
        };
        let mut call = json!({"run_id": "", "seq": seq + 1, "at": at, "action": e.action, "effect": e.effect.as_str(),
            "args": e.args, "targets": e.targets, "outcome": outcome, "attempts": 1,
            "duration_ms": (e.finished_at.unwrap_or(e.started_at) - e.started_at) as f64});
        if let Some(err) = &e.error {
            call["status"] = json!(err.status);
            call["error"] = json!(err.message);
        }
        calls.push(call);
        if e.effect.is_mutating() {
            logs.push(json!({"at": at, "level": "print",
                "message": format!("{} {}: {}", e.action, e.args["user_id"].as_str().unwrap_or(""), outcome)}));
        } else {
            logs.push(json!({"at": at, "level": "debug", "message": format!("{} answered", e.action)}));
        }
    }
    if p.n.is_multiple_of(9) {
        logs.push(json!({"at": rfc3339(p.finished), "level": "warn", "message": "cloudflare: 1 request was retried after 429 Too Many Requests (Retry-After: 2)"}));
    }
    (Value::Array(logs), Value::Array(calls))
}

/// The result of a run that succeeded: what it changed, as a table people read (a few KB).
fn result(p: &Planned) -> Value {
    let a = p.auto();
    let changed: Vec<Value> = (0..a.targets.max(6))
        .map(|t| {
            let (id, email) = user(p.n, t);
            json!({"id": id, "email": email, "actions": a.per_target.iter().filter(|(_, e)| e.is_mutating()).map(|(n, _)| *n).collect::<Vec<_>>(),
                   "at": rfc3339(p.started + t as i64 * 500), "ticket": format!("OPS-{}", 1000 + mix(p.n as u64, t as u64) % 9000)})
        })
        .collect();
    let skipped: Vec<Value> = (0..8)
        .map(|t| {
            let (id, email) = user(p.n, 20 + t);
            json!({"id": id, "email": email, "why": "already compliant"})
        })
        .collect();
    json!({"automation": a.name, "checked": 250 + p.n % 50, "changed": changed, "skipped": skipped,
           "summary": format!("{} changed, {} skipped, 0 errors", changed.len(), skipped.len())})
}

fn plan_of(p: &Planned, params: &Map<String, Value>) -> SavedPlan {
    let a = p.auto();
    let effects: Vec<Value> = (0..a.targets)
        .flat_map(|t| {
            let (id, email) = user(p.n, t);
            a.per_target
                .iter()
                .enumerate()
                .filter(|(_, (_, e))| e.is_mutating())
                .map(move |(k, (action, effect))| {
                    let args = json!({"user_id": id, "reason": format!("{} run by runbook", a.name)});
                    json!({"step": (2 + a.head.len() + t * a.per_target.len() + k).to_string(), "action": action,
                           "effect": effect.as_str(), "targets": 1, "labels": [{"id": id, "label": email}],
                           "args": args, "args_sha256": digest(&args)})
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let effects = serde_json::from_value(Value::Array(effects)).unwrap_or_default();
    SavedPlan::new(
        format!("{}.rhai", a.name),
        &script(a),
        params.clone(),
        100,
        effects,
        Vec::new(),
    )
}

fn script(a: &Automation) -> String {
    format!("// {}\nprint(\"{} ran\");\n#{{ ok: true }}\n", a.name, a.name)
}

fn new_run(p: &Planned) -> NewRun {
    let a = p.auto();
    let (id, email) = user(p.n, 0);
    let mut params = Map::new();
    let mut event = None;
    let (mut idem_key, mut dedup, mut scheduled_for) = (None, Vec::new(), None);
    match p.trigger() {
        "webhook" => {
            let delivery = format!("d-{:016x}", mix(p.n as u64, 8));
            event = Some(
                json!({"headers": {"content-type": "application/json", "x-delivery-id": delivery},
                "body": {"alert": if a.approval { "employee departed" } else { "suspicious login" }, "user": {"id": id, "email": email},
                         "source": if a.approval { "workday" } else { "siem" }, "severity": "high", "at": rfc3339(p.created)}}),
            );
            idem_key = Some(delivery.clone());
            dedup = vec![delivery];
        }
        "schedule" => {
            scheduled_for = Some(p.created);
            idem_key = Some(p.created.to_string());
        }
        _ => {
            params.insert("user".into(), json!(email));
            params.insert("dry_run".into(), json!(false));
        }
    }
    NewRun {
        automation: a.name.to_owned(),
        trigger: p.trigger().to_owned(),
        idem_key,
        dedup,
        scheduled_for,
        params,
        event,
        max_retries: 2,
        retry_of: None,
        script: script(a),
        started_by: p.started_by().to_owned(),
    }
}

fn completion(p: &Planned, steps: &[JournalEntry]) -> Completion {
    let (logs, calls) = records(p, steps);
    let last = steps.last();
    let described = last.map(|e| format!("step {} {}", e.key, e.action)).unwrap_or_default();
    let (status, error, kind) = match p.fate {
        Fate::Succeeded => (RunStatus::Succeeded, None, None),
        Fate::Failed => (
            RunStatus::Failed,
            Some(format!(
                "{described} failed: the service answered 503 Service Unavailable"
            )),
            Some("action"),
        ),
        Fate::NeedsAttention => (
            RunStatus::NeedsAttention,
            Some(format!(
                "{described} was sent and never answered: whether it took effect is unknown; \
                 `runbook runs resolve` it as sent or not sent"
            )),
            Some("needs_attention"),
        ),
        Fate::Refused => (
            RunStatus::Refused,
            Some("the guard refused the change: it would touch 412 targets, over max_changes = 100".to_owned()),
            Some("guard"),
        ),
        _ => (
            RunStatus::Cancelled,
            Some(format!("cancelled while it ran (stopped after {described})")),
            Some("cancelled"),
        ),
    };
    Completion {
        status,
        result: (status == RunStatus::Succeeded).then(|| result(p)),
        error,
        error_kind: kind.map(str::to_owned),
        logs,
        calls,
        retry_at: None,
    }
}

/// Claims and finishes this chunk's runs of one automation as their fates say (the runs meant to
/// stay queued are a paused automation's, which no claim takes).
async fn finish_automation(
    store: Arc<dyn Store>,
    automation: usize,
    fates: Arc<HashMap<String, Planned>>,
) -> Result<()> {
    let a = &AUTOMATIONS[automation];
    let expected = fates
        .values()
        .filter(|p| p.automation == automation && p.fate != Fate::Queued)
        .count();
    let mut concurrency = BTreeMap::new();
    concurrency.insert(a.name.to_owned(), 1_000_000);
    let mut done = 0;
    while done < expected {
        let Some(run) = store
            .claim(OWNER, &concurrency, 1, Duration::from_secs(3600))
            .await?
            .pop()
        else {
            bail!("{}: {done} of {expected} runs finished, none left to claim", a.name)
        };
        let p = *fates.get(&run.id).context("a run the seeding did not queue")?;
        ensure!(p.fate != Fate::Queued, "{}: claimed a run meant to stay queued", a.name);
        if a.approval && !run.approved {
            let plan = plan_of(&p, &run.params);
            let digest = plan.effects_sha256.clone();
            let pending = PendingPlan {
                plan,
                expires_in: Duration::from_secs(24 * 3600),
                diff: None,
                logs: json!([{"at": rfc3339(p.created), "level": "print", "message": "planning the offboarding of 5 users"}]),
                calls: json!([]),
            };
            ensure!(store.await_approval(OWNER, &run.id, run.epoch, pending).await?);
            match p.fate {
                Fate::Awaiting => done += 1,
                Fate::Rejected => {
                    store
                        .decide(
                            &run.id,
                            "bob",
                            Decision::Reject,
                            "not this one: HR reverted the departure",
                            Some(&digest),
                            1,
                        )
                        .await?;
                    done += 1;
                }
                _ => {
                    let approver = if mix(p.n as u64, 9).is_multiple_of(2) {
                        "alice"
                    } else {
                        "bob"
                    };
                    store
                        .decide(
                            &run.id,
                            approver,
                            Decision::Approve,
                            "checked against the HR ticket",
                            Some(&digest),
                            1,
                        )
                        .await?;
                }
            }
            continue;
        }
        let steps = journal(&p, run.attempt, run.epoch);
        store
            .journal(&run.id, run.attempt, run.epoch)
            .write_batch(&steps, None)
            .await?;
        if p.fate == Fate::Cancelled {
            store.cancel(&run.id, "alice").await?;
        }
        ensure!(
            store
                .complete(OWNER, &run.id, run.epoch, completion(&p, &steps))
                .await?,
            "{}: the completion was refused",
            a.name
        );
        done += 1;
    }
    Ok(())
}

/// Where the seeded history is.
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Backend {
    fn store_url(&self) -> String {
        match self {
            Backend::Sqlite(path) => format!("sqlite://{}", path.display()),
            Backend::Postgres(url) => url.clone(),
        }
    }
}

/// Moves every run's timestamps (and its journal's, decisions' and deliveries') to where
/// `plan_history` put them.
async fn spread_timestamps(backend: &Backend, history: &[(String, Planned)]) -> Result<()> {
    // (created, started, finished, decided, spacing)
    let times = |p: &Planned| (p.created, p.started, p.finished, p.decided, p.spacing());
    match backend {
        Backend::Sqlite(path) => {
            let mut conn = rusqlite::Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            let tx = conn.transaction()?;
            {
                let mut runs = tx.prepare(
                    "UPDATE runs SET created_at = ?2, not_before = ?2,
                         scheduled_for = CASE WHEN scheduled_for IS NULL THEN NULL ELSE ?2 END,
                         started_at = CASE WHEN started_at IS NULL THEN NULL ELSE ?3 END,
                         finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE ?4 END,
                         approved_at = CASE WHEN approved_at IS NULL THEN NULL ELSE ?5 END
                     WHERE id = ?1",
                )?;
                let mut steps = tx.prepare(
                    "UPDATE journal SET started_at = ?2 + CAST(key AS INTEGER) * ?3,
                         finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE ?2 + CAST(key AS INTEGER) * ?3 + ?3 - 3 END
                     WHERE run_id = ?1",
                )?;
                let mut approvals = tx.prepare("UPDATE approvals SET at = ?2 WHERE run_id = ?1")?;
                let mut deliveries = tx.prepare("UPDATE deliveries SET received_at = ?2 WHERE run_id = ?1")?;
                for (id, p) in history {
                    let (c, s, f, d, sp) = times(p);
                    runs.execute(rusqlite::params![id, c, s, f, d])?;
                    steps.execute(rusqlite::params![id, s, sp])?;
                    approvals.execute(rusqlite::params![id, d])?;
                    deliveries.execute(rusqlite::params![id, c])?;
                }
            }
            tx.commit()?;
        }
        Backend::Postgres(url) => {
            let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let tx = client.transaction().await?;
            let runs = tx
                .prepare(
                    "UPDATE runbook_runs SET created_at = $2::bigint, not_before = $2::bigint,
                         scheduled_for = CASE WHEN scheduled_for IS NULL THEN NULL ELSE $2::bigint END,
                         started_at = CASE WHEN started_at IS NULL THEN NULL ELSE $3::bigint END,
                         finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE $4::bigint END,
                         approved_at = CASE WHEN approved_at IS NULL THEN NULL ELSE $5::bigint END
                     WHERE id = $1",
                )
                .await?;
            let steps = tx
                .prepare(
                    "UPDATE runbook_journal SET started_at = $2::bigint + key::bigint * $3::bigint,
                         finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE $2::bigint + key::bigint * $3::bigint + $3::bigint - 3 END
                     WHERE run_id = $1",
                )
                .await?;
            let approvals = tx
                .prepare("UPDATE runbook_approvals SET at = $2::bigint WHERE run_id = $1")
                .await?;
            let deliveries = tx
                .prepare("UPDATE runbook_deliveries SET received_at = $2::bigint WHERE run_id = $1")
                .await?;
            for (id, p) in history {
                let (c, s, f, d, sp) = times(p);
                tx.execute(&runs, &[id, &c, &s, &f, &d]).await?;
                tx.execute(&steps, &[id, &s, &sp]).await?;
                tx.execute(&approvals, &[id, &d]).await?;
                tx.execute(&deliveries, &[id, &c]).await?;
            }
            tx.commit().await?;
            client.batch_execute("ANALYZE").await?;
        }
    }
    Ok(())
}

/// What the seeding made: the ids of the big finished runs a run's page is asked for.
struct Seeded {
    big_runs: Vec<String>,
    counts: BTreeMap<&'static str, usize>,
    took: Duration,
}

async fn seed(backend: &Backend, runs: usize) -> Result<Seeded> {
    let started = Instant::now();
    let now = jiff::Timestamp::now().as_millisecond();
    let history = plan_history(runs, now);
    let store: Arc<dyn Store> = runbook_serve::store::open(&backend.store_url()).await?;
    // Queued one after another, so that ids (time-ordered) follow the history's order; in
    // chunks, each finished before the next is queued, because a claim ranks every queued run.
    const CHUNK: usize = 250;
    // The paused automation is paused where its first run that stays queued falls: every run
    // before it is finished by then, every later one of it waits, as behind a real pause.
    let pause_at = history
        .iter()
        .position(|p| p.fate == Fate::Queued)
        .unwrap_or(history.len());
    let (before, after) = history.split_at(pause_at);
    let mut by_id = Vec::with_capacity(runs);
    for (part, segment) in [before, after].into_iter().enumerate() {
        if part == 1 {
            store.set_paused(PAUSED, true, "alice").await?;
        }
        for chunk in segment.chunks(CHUNK) {
            let mut fates = HashMap::new();
            for p in chunk {
                let queued = store.enqueue(new_run(p)).await?;
                ensure!(queued.created, "run {} was taken for a duplicate", p.n);
                by_id.push((queued.run_id.clone(), *p));
                fates.insert(queued.run_id, *p);
            }
            let fates = Arc::new(fates);
            let mut tasks = Vec::new();
            for automation in 0..AUTOMATIONS.len() {
                tasks.push(tokio::spawn(finish_automation(
                    store.clone(),
                    automation,
                    fates.clone(),
                )));
            }
            for task in tasks {
                task.await??;
            }
        }
    }
    drop(store);
    spread_timestamps(backend, &by_id).await?;
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite(path) => Arc::new(runbook_serve::store::SqliteStore::open_shared(path).await?),
        Backend::Postgres(url) => runbook_serve::store::open(url).await?,
    };
    let mut stored: BTreeMap<&'static str, u64> = BTreeMap::new();
    for ((_, status), n) in store.stats().await?.runs {
        *stored.entry(status.as_str()).or_default() += n;
    }
    drop(store);
    let mut counts = BTreeMap::new();
    for p in &history {
        *counts
            .entry(match p.fate {
                Fate::Succeeded => "succeeded",
                Fate::Failed => "failed",
                Fate::Refused => "refused",
                Fate::Cancelled => "cancelled",
                Fate::NeedsAttention => "needs_attention",
                Fate::Rejected => "rejected",
                Fate::Awaiting => "awaiting_approval",
                Fate::Queued => "queued",
            })
            .or_default() += 1;
    }
    let planned: BTreeMap<&'static str, u64> = counts.iter().map(|(k, v)| (*k, *v as u64)).collect();
    ensure!(
        planned == stored,
        "the store holds {stored:?}, the history planned {planned:?}"
    );
    eprintln!(
        "seeded {runs} runs in {:.1} s: {stored:?}",
        started.elapsed().as_secs_f64()
    );
    // The newest big runs that succeeded: a run's page with the longest timeline, a plan, a
    // result of a few KB and its approvals.
    let big_runs: Vec<String> = by_id
        .iter()
        .rev()
        .filter(|(_, p)| p.auto().name == BIG && p.fate == Fate::Succeeded)
        .take(50)
        .map(|(id, _)| id.clone())
        .collect();
    ensure!(!big_runs.is_empty(), "no big finished run in the history");
    Ok(Seeded {
        big_runs,
        counts,
        took: started.elapsed(),
    })
}

fn config(store_url: &str) -> String {
    let mut toml = format!(
        "[serve]\nlisten = \"127.0.0.1:0\"\nstore = \"{store_url}\"\n\n\
         [[serve.tokens]]\nname = \"alice\"\ntoken = \"{ALICE_TOKEN}\"\nscopes = [\"read\", \"run\", \"approve\"]\n\n\
         [[serve.tokens]]\nname = \"bob\"\ntoken = \"bob-token-7d9f1b3c5e7a9c1e3b5d7f9a1c3e5b\"\nscopes = [\"approve\"]\n\n\
         [[serve.tokens]]\nname = \"ops\"\ntoken = \"ops-token-2e4a6c8e0b2d4f6a8c0e2b4d6f8a0c\"\nscopes = [\"admin\"]\n"
    );
    for a in AUTOMATIONS {
        toml.push_str(&format!(
            "\n[[automation]]\nname = \"{}\"\nscript = \"{}.rhai\"\n{}\n",
            a.name, a.name, a.toml
        ));
    }
    toml
}

// ---------------------------------------------------------------------------------------------
// The browser's side

/// A signed-in client: its own connection (kept alive) and its session cookie.
#[derive(Clone)]
struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: String,
}

/// The `name=value` of each `Set-Cookie` of an answer.
fn set_cookies(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The value of the hidden `_csrf` input of a page.
fn hidden_csrf(html: &str) -> Option<String> {
    html.split("<input").skip(1).find_map(|tag| {
        let tag = tag.split('>').next()?;
        if !tag.contains("name=\"_csrf\"") {
            return None;
        }
        let value = tag.split("value=\"").nth(1)?;
        Some(value.split('"').next()?.to_owned())
    })
}

impl Browser {
    /// Signs in as a browser does: the sign-in form (its cookie and hidden `_csrf`), then the
    /// form posted back with the token, which answers 303 with the session cookie.
    async fn sign_in(base: &str, token: &str) -> Result<Browser> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()?;
        let form = client.get(format!("{base}/sign-in")).send().await?;
        ensure!(form.status() == 200, "GET /sign-in answered {}", form.status());
        let signin = set_cookies(&form)
            .into_iter()
            .find(|(k, _)| k.ends_with("runbook_signin"))
            .context("GET /sign-in set no runbook_signin cookie")?;
        let html = form.text().await?;
        let csrf = hidden_csrf(&html).context("the sign-in form has no hidden _csrf")?;
        let answer = client
            .post(format!("{base}/sign-in"))
            .header(reqwest::header::COOKIE, format!("{}={}", signin.0, signin.1))
            .header(reqwest::header::ORIGIN, base)
            .form(&[("token", token), ("_csrf", csrf.as_str())])
            .send()
            .await?;
        ensure!(
            answer.status() == 303,
            "POST /sign-in answered {}: {}",
            answer.status(),
            answer.text().await.unwrap_or_default()
        );
        let session = set_cookies(&answer)
            .into_iter()
            .find(|(k, _)| k.ends_with("runbook_session"))
            .context("POST /sign-in set no runbook_session cookie")?;
        Ok(Browser {
            client,
            base: base.to_owned(),
            cookie: format!("{}={}", session.0, session.1),
        })
    }

    /// One page, read whole: its time (ms) and body.
    async fn get(&self, path: &str, fragment: bool) -> Result<(f64, String)> {
        let started = Instant::now();
        let mut request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie);
        if fragment {
            request = request.header("X-Console-Fragment", "1");
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        ensure!(status == 200, "GET {path} answered {status}");
        Ok((took, body))
    }
}

/// A page the benchmark asks for: its name in the table, its paths (taken in turn) and what its
/// answer must hold.
struct Page {
    name: String,
    paths: Vec<String>,
    fragment: bool,
    check: fn(&str) -> bool,
}

/// `p50 / p99 / max` of one series.
struct Figures {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Figures {
    fn of(times: &[f64]) -> Figures {
        Figures {
            p50: quantile(times, 0.5),
            p99: quantile(times, 0.99),
            max: times.iter().copied().fold(0.0, f64::max),
        }
    }

    fn show(&self) -> String {
        let bold = |v: f64| {
            if v > 50.0 {
                format!("**{v:.1}**")
            } else {
                format!("{v:.1}")
            }
        };
        format!("{:.1} / {} / {:.1}", self.p50, bold(self.p99), self.max)
    }
}

async fn measure(browsers: &[Browser], page: &Page, requests: usize) -> Result<(Figures, Figures, usize)> {
    // Warm up the connection, the server's caches and the store's pages; check the answer.
    let mut size = 0;
    for (i, path) in page.paths.iter().cycle().take(20).enumerate() {
        let (_, body) = browsers[0].get(path, page.fragment).await?;
        if i == 0 {
            ensure!(
                (page.check)(&body),
                "{} ({path}) is not the page expected:\n{}",
                page.name,
                body.chars().take(2000).collect::<String>()
            );
        }
        size = size.max(body.len());
    }
    let mut one = Vec::with_capacity(requests);
    for path in page.paths.iter().cycle().take(requests) {
        one.push(browsers[0].get(path, page.fragment).await?.0);
    }
    let each = requests.div_ceil(browsers.len()).max(20);
    let mut tasks = Vec::new();
    for (b, browser) in browsers.iter().enumerate() {
        let (browser, paths, fragment) = (browser.clone(), page.paths.clone(), page.fragment);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(each);
            for path in paths.iter().cycle().skip(b).take(each) {
                times.push(browser.get(path, fragment).await?.0);
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut many = Vec::new();
    for task in tasks {
        many.extend(task.await??);
    }
    Ok((Figures::of(&one), Figures::of(&many), size))
}

pub async fn console(
    runbook: &Path,
    runs: usize,
    requests: usize,
    postgres: Option<&str>,
    keep: Option<&Path>,
) -> Result<()> {
    const CLIENTS: usize = 8;
    let temp = tempfile::tempdir()?;
    let dir = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            std::path::absolute(dir)?
        }
        None => temp.path().to_path_buf(),
    };
    let backend = match postgres {
        Some(base) => Backend::Postgres(pg_schema(base).await?),
        None => Backend::Sqlite(dir.join("runbook.db")),
    };
    let seeded = seed(&backend, runs).await?;
    let store_name = match backend {
        Backend::Sqlite(_) => "SQLite".to_owned(),
        Backend::Postgres(_) => "PostgreSQL".to_owned(),
    };
    let store_url = match &backend {
        Backend::Sqlite(_) => "sqlite://runbook.db".to_owned(),
        Backend::Postgres(url) => url.clone(),
    };
    std::fs::write(dir.join("runbook.toml"), config(&store_url))?;
    if keep.is_some() {
        eprintln!(
            "the store and runbook.toml are kept in {} (store {})",
            dir.display(),
            backend.store_url()
        );
    }
    for a in AUTOMATIONS {
        std::fs::write(dir.join(format!("{}.rhai", a.name)), script(a))?;
    }
    let (child, base) = start_serve(runbook, &dir).await?;
    let measured = async {
        let mut browsers = Vec::new();
        for _ in 0..CLIENTS {
            browsers.push(Browser::sign_in(&base, ALICE_TOKEN).await?);
        }
        let since = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48);
        // As the filter form's `datetime-local` input sends it (read as UTC), URL-encoded.
        let since = since.strftime("%Y-%m-%dT%H:%M").to_string().replace(':', "%3A");
        let pages = [
            Page {
                name: "`/runs`".into(),
                paths: vec!["/runs".into()],
                fragment: false,
                check: |b| b.contains("id=\"runs\"") && b.matches("data-run-id=").count() == 50,
            },
            Page {
                name: format!("`/runs?automation={FILTERED}&status=succeeded`"),
                paths: vec![format!("/runs?automation={FILTERED}&status=succeeded")],
                fragment: false,
                check: |b| {
                    b.matches("data-run-id=").count() == 50
                        && b.matches("data-status=\"succeeded\"").count() >= 50
                        && !b.contains("data-status=\"failed\"")
                },
            },
            Page {
                name: "`/runs?status=needs_attention`".into(),
                paths: vec!["/runs?status=needs_attention".into()],
                fragment: false,
                check: |b| {
                    b.matches("data-run-id=").count() == 50
                        && b.matches("data-status=\"needs_attention\"").count() >= 50
                },
            },
            Page {
                name: "`/runs?since=` (48 h ago)".into(),
                paths: vec![format!("/runs?since={since}")],
                fragment: false,
                check: |b| b.matches("data-run-id=").count() == 50,
            },
            Page {
                name: format!("`/runs/ID` ({BIG}, {} steps, plan, result)", 2 + 2 + 4 * 5),
                paths: seeded.big_runs.iter().map(|id| format!("/runs/{id}")).collect(),
                fragment: false,
                check: |b| {
                    b.contains("id=\"timeline\"")
                        && b.matches("class=\"step\"").count() >= 20
                        && b.contains("id=\"result\"")
                        && b.contains("id=\"plan\"")
                },
            },
            Page {
                name: "`/approvals`".into(),
                paths: vec!["/approvals".into()],
                fragment: false,
                check: |b| b.contains("class=\"waiting\""),
            },
            Page {
                name: "`/automations`".into(),
                paths: vec!["/automations".into()],
                fragment: false,
                check: |b| b.contains("id=\"automations\"") && b.matches("data-automation=").count() >= 5,
            },
            Page {
                name: "`/runs`, live fragment (`X-Console-Fragment: 1`)".into(),
                paths: vec!["/runs".into()],
                fragment: true,
                check: |b| b.matches("data-run-id=").count() == 50,
            },
        ];
        let mut rows = Vec::new();
        for page in &pages {
            let (one, many, size) = measure(&browsers, page, requests).await?;
            eprintln!("{}: {} | {}", page.name, one.show(), many.show());
            rows.push((page.name.clone(), size, one, many));
        }
        Ok::<_, anyhow::Error>(rows)
    }
    .await;
    stop_serve(child).await?;
    let rows = measured?;

    let counts: Vec<String> = seeded.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("\n## Console pages ({store_name})\n");
    println!(
        "The release `runbook serve` on {store_name} holding {runs} runs over {HISTORY_DAYS} days ({}), of {} automations; \
         each finished run has a journal of 5 to 24 steps, logs, audit records and a result of a few KB, written through the \
         store's own operations (seeded in {:.0} s). Signed in as a browser does; each page asked for {requests} times \
         one after another from one client over keep-alive (after 20 warm-up requests), then {requests} times from {CLIENTS} \
         clients at once (each signed in, on its own connection). Times from request sent to body read, in ms; \
         **bold** is over the 50 ms p99 target.\n",
        counts.join(", "),
        AUTOMATIONS.len(),
        seeded.took.as_secs_f64()
    );
    println!("| page | answer | 1 client: p50 / p99 / max | {CLIENTS} clients: p50 / p99 / max |\n|---|---|---|---|");
    for (name, size, one, many) in rows {
        println!(
            "| {name} | {:.1} KB | {} ms | {} ms |",
            size as f64 / 1024.0,
            one.show(),
            many.show()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_has_every_fate_in_realistic_shares() {
        let now = jiff::Timestamp::now().as_millisecond();
        let history = plan_history(10_000, now);
        let count = |f: Fate| history.iter().filter(|p| p.fate == f).count();
        assert!(count(Fate::Succeeded) > 7_500, "{}", count(Fate::Succeeded));
        for (fate, low, high) in [
            (Fate::Failed, 500, 1_200),
            (Fate::NeedsAttention, 100, 400),
            (Fate::Queued, 30, 200),
            (Fate::Awaiting, 5, 60),
            (Fate::Rejected, 10, 100),
        ] {
            let n = count(fate);
            assert!((low..=high).contains(&n), "{fate:?}: {n}");
        }
        assert!(history.windows(2).all(|w| w[0].created < w[1].created));
        assert!(
            history
                .iter()
                .all(|p| p.created <= p.started && p.started < p.finished && p.finished < now + DAY_MS)
        );
    }

    #[test]
    fn a_finished_big_run_has_a_long_journal_and_a_result_of_a_few_kb() {
        let now = jiff::Timestamp::now().as_millisecond();
        let history = plan_history(10_000, now);
        let big = history
            .iter()
            .find(|p| p.auto().name == BIG && p.fate == Fate::Succeeded)
            .unwrap();
        let steps = journal(big, 1, 3);
        assert_eq!(steps.len(), 24);
        assert!(steps.iter().all(|s| s.status == StepStatus::Ok));
        let size = serde_json::to_string(&result(big)).unwrap().len();
        assert!((2_000..8_000).contains(&size), "{size}");
        let failed = history.iter().find(|p| p.fate == Fate::NeedsAttention).unwrap();
        let steps = journal(failed, 1, 3);
        let last = steps.last().unwrap();
        assert!(last.status == StepStatus::Intent && last.effect.is_mutating());
    }

    /// The seeding alone, against SQLite, at a reduced size (the benchmark seeds 10,000).
    #[tokio::test(flavor = "multi_thread")]
    async fn seeding_writes_every_run_as_planned() {
        let dir = tempfile::tempdir().unwrap();
        let seeded = seed(&Backend::Sqlite(dir.path().join("runbook.db")), 400)
            .await
            .unwrap();
        assert_eq!(seeded.counts.values().sum::<usize>(), 400);
        let store = runbook_serve::store::SqliteStore::open_shared(&dir.path().join("runbook.db"))
            .await
            .unwrap();
        let run = store.get(&seeded.big_runs[0]).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.steps.len(), 24);
        assert!(
            run.approval
                .as_ref()
                .is_some_and(|a| a.approvals.len() == 1 && a.plan.effects.len() == 15)
        );
        let span = run.finished_at.unwrap() - run.started_at.unwrap();
        assert!(span > 1_000, "{span}");
        let all = store
            .list_summaries(&runbook_serve::store::RunFilter {
                limit: 1_000,
                ..Default::default()
            })
            .await
            .unwrap();
        let now = jiff::Timestamp::now().as_millisecond();
        assert!(all.iter().map(|r| r.created_at).min().unwrap() < now - 27 * DAY_MS);
        // Newest first by id is newest first by time.
        assert!(all.windows(2).all(|w| w[0].created_at > w[1].created_at));
    }

    #[test]
    fn the_hidden_csrf_is_found_whatever_the_order_of_attributes() {
        let html = r#"<form id="sign-in"><input type="password" name="token" id="token"><input type="hidden" name="_csrf" value="abc123"></form>"#;
        assert_eq!(hidden_csrf(html).as_deref(), Some("abc123"));
        let html = r#"<input value="x9" type="hidden" name="_csrf" />"#;
        assert_eq!(hidden_csrf(html).as_deref(), Some("x9"));
    }
}
