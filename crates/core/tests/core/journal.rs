//! Durable runs: every step journaled as it happens, a resumed run replaying what was recorded
//! without a request, divergence, changes in doubt, the lease fence, and the journal's caps.

use std::sync::Arc;
use std::time::Duration;

use runbook_core::journal::{JournalLimits, StepKind, StepStatus};
use runbook_core::{
    Fence, Journal, JournalEntry, JournalError, MemoryJournal, Resolution, RunErrorKind, RunOptions, async_trait,
};
use serde_json::{Value, json};

use crate::{run, setup};

/// Reads, an idempotent write, a non-idempotent write with a probe, `state::`, `now()` and a
/// `parallel` of five items.
const SCRIPT: &str = r#"
    let users = dir::list_users();
    let first = dir::disable_user("u1");
    let made = dir::create_user("new@example.com");
    state::set("cursor", 7);
    let cursor = state::get("cursor");
    let t = now();
    let items = parallel(["u2", "u3", "u4", "u5", "u6"], |id| dir::disable_user(id).disabled);
    #{users: users.len(), made: made.email, cursor: cursor, t: t, items: items}
"#;

fn options(journal: &Arc<MemoryJournal>) -> RunOptions {
    RunOptions::new().journal(journal.clone()).concurrency(4)
}

#[tokio::test]
async fn every_step_is_journaled_under_a_structural_key() {
    let (_dir, engine) = setup(8).await;
    let journal = Arc::new(MemoryJournal::new());
    run(&engine, SCRIPT, options(&journal)).await.unwrap();
    let entries = journal.entries();
    let keys: Vec<(&str, StepKind)> = entries.iter().map(|e| (e.key.as_str(), e.kind)).collect();
    let mut expected = vec![
        ("1", StepKind::Call),
        ("2", StepKind::Call),
        ("3", StepKind::Call),
        ("4", StepKind::StateSet),
        ("5", StepKind::StateGet),
        ("6", StepKind::Now),
        ("7", StepKind::Parallel),
    ];
    let items: Vec<String> = (0..5).map(|i| format!("7/{i}/1")).collect();
    for key in &items {
        expected.push((key.as_str(), StepKind::Call));
    }
    assert_eq!(keys, expected);
    assert!(entries.iter().all(|e| e.status == StepStatus::Ok), "{entries:#?}");
    assert_eq!(
        journal.state("cursor"),
        Some(json!(7)),
        "state::set stored through the journal"
    );
    let create = &entries[2];
    assert_eq!(create.action, "dir.create_user");
    assert!(!create.idempotent);
    assert_eq!(create.targets, 1);
    assert_eq!(create.result.as_ref().unwrap()["email"], "new@example.com");
}

#[tokio::test]
async fn a_resumed_run_returns_recorded_results_without_a_request() {
    let (dir, engine) = setup(8).await;
    let journal = Arc::new(MemoryJournal::new());
    let first = run(&engine, SCRIPT, options(&journal)).await.unwrap();
    let requests = dir.log().len();
    // Time passes: now() must come back as recorded.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    journal.next_attempt();
    let again = run(&engine, SCRIPT, options(&journal)).await.unwrap();
    assert_eq!(again.result, first.result, "the same result, `now()` included");
    assert_eq!(dir.log().len(), requests, "nothing was sent");
    assert!(
        again
            .records
            .audit
            .iter()
            .all(|r| r.outcome == runbook_core::CallOutcome::Replayed)
    );
}

/// Cuts the journal back to what a process killed at `key` would have left: every entry before
/// it, and the entry at `key` as an intent.
fn crash_at(journal: &MemoryJournal, key: &str) -> MemoryJournal {
    let cut = MemoryJournal::new();
    for mut entry in journal.entries() {
        let order = |k: &str| k.split('/').map(|p| p.parse::<u64>().unwrap()).collect::<Vec<_>>();
        if order(&entry.key) < order(key) {
            cut.put(entry);
        } else if entry.key == key {
            entry.status = StepStatus::Intent;
            entry.result = None;
            entry.result_digest = None;
            cut.put(entry);
        }
    }
    cut.next_attempt();
    cut
}

#[tokio::test]
async fn an_idempotent_change_in_doubt_is_sent_again_and_the_rest_follows() {
    let (dir, engine) = setup(8).await;
    let journal = Arc::new(MemoryJournal::new());
    let whole = run(&engine, SCRIPT, options(&journal)).await.unwrap();
    let (dir2, engine2) = setup(8).await;
    let _ = dir;
    let cut = Arc::new(crash_at(&journal, "2"));
    let resumed = run(&engine2, SCRIPT, RunOptions::new().journal(cut.clone()).concurrency(4))
        .await
        .unwrap();
    // The read at step 1 was replayed; the disable in doubt sent again; the rest sent once.
    let log = dir2.log();
    assert_eq!(
        log.iter().filter(|r| r.path == "/users" && r.method == "GET").count(),
        0
    );
    assert_eq!(log.iter().filter(|r| r.path == "/users/u1/disabled").count(), 1);
    assert_eq!(log.iter().filter(|r| r.method == "POST").count(), 1);
    assert_eq!(resumed.result["items"], whole.result["items"]);
    assert_eq!(resumed.result["users"], whole.result["users"]);
}

#[tokio::test]
async fn a_create_in_doubt_is_probed_and_not_sent_twice() {
    let (dir, engine) = setup(8).await;
    let journal = Arc::new(MemoryJournal::new());
    run(&engine, SCRIPT, options(&journal)).await.unwrap();
    // The create reached the service, then the process died before its answer was recorded.
    let cut = Arc::new(crash_at(&journal, "3"));
    let before = dir.log().iter().filter(|r| r.method == "POST").count();
    let resumed = run(&engine, SCRIPT, RunOptions::new().journal(cut.clone()).concurrency(4))
        .await
        .unwrap();
    assert_eq!(
        dir.log().iter().filter(|r| r.method == "POST").count(),
        before,
        "the probe found it"
    );
    assert_eq!(resumed.result["made"], "new@example.com");
    assert!(
        resumed
            .records
            .logs
            .iter()
            .any(|l| l.message.contains("its probe (a user with that email) found it")),
        "{:?}",
        resumed.records.logs
    );
    let create = cut.entries().into_iter().find(|e| e.key == "3").unwrap();
    assert_eq!(create.status, StepStatus::Ok);

    // On a service where it never arrived, the probe finds nothing and it is sent once.
    let (fresh, engine) = setup(8).await;
    let cut = Arc::new(crash_at(&journal, "3"));
    run(&engine, SCRIPT, RunOptions::new().journal(cut).concurrency(4))
        .await
        .unwrap();
    assert_eq!(fresh.log().iter().filter(|r| r.method == "POST").count(), 1);
}

const NOTIFY: &str = r#"
    dir::disable_user("u1");
    dir::disable_user_and_notify("u2");
    dir::disable_user("u3");
    "done"
"#;

#[tokio::test]
async fn a_change_in_doubt_without_a_probe_waits_for_a_person() {
    let (_dir, engine) = setup(4).await;
    let journal = Arc::new(MemoryJournal::new());
    run(&engine, NOTIFY, RunOptions::new().journal(journal.clone()))
        .await
        .unwrap();

    let (dir, engine) = setup(4).await;
    let cut = Arc::new(crash_at(&journal, "2"));
    let err = run(&engine, NOTIFY, RunOptions::new().journal(cut.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::NeedsAttention);
    assert!(
        err.message.contains("step 2 dir.disable_user_and_notify"),
        "{}",
        err.message
    );
    assert!(err.message.contains("runbook runs resolve"), "{}", err.message);
    assert_eq!(dir.mutating_requests(), 0, "nothing sent: step 1 replayed, step 2 held");

    // A person says it was not sent: it is sent once, and the run goes on.
    let mut entry = cut.entries().into_iter().find(|e| e.key == "2").unwrap();
    entry.resolution = Some(Resolution::NotSent);
    cut.put(entry);
    cut.next_attempt();
    run(&engine, NOTIFY, RunOptions::new().journal(cut.clone()))
        .await
        .unwrap();
    let paths: Vec<String> = dir
        .log()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, ["/users/u2/disabled", "/users/u3/disabled"]);

    // Said to have been sent: it is not sent again.
    let (dir, engine) = setup(4).await;
    let cut = Arc::new(crash_at(&journal, "2"));
    let mut entry = cut.entries().into_iter().find(|e| e.key == "2").unwrap();
    entry.resolution = Some(Resolution::Sent);
    cut.put(entry);
    run(&engine, NOTIFY, RunOptions::new().journal(cut)).await.unwrap();
    let paths: Vec<String> = dir
        .log()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, ["/users/u3/disabled"]);
}

#[tokio::test]
async fn a_different_step_at_a_recorded_key_diverges_and_sends_nothing_after_it() {
    let (_dir, engine) = setup(4).await;
    let journal = Arc::new(MemoryJournal::new());
    run(&engine, NOTIFY, RunOptions::new().journal(journal.clone()))
        .await
        .unwrap();
    journal.next_attempt();
    let (dir, engine) = setup(4).await;
    let edited = NOTIFY.replace("disable_user_and_notify(\"u2\")", "disable_user_and_notify(\"u4\")");
    let err = run(&engine, &edited, RunOptions::new().journal(journal))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Diverged);
    assert!(
        err.message
            .contains(r#"it recorded step 2 dir.disable_user_and_notify({"id":"u2"})"#)
            && err.message.contains(
                r#"this attempt took step 2 dir.disable_user_and_notify({"id":"u4"}) (same call, other arguments)"#
            ),
        "{}",
        err.message
    );
    assert_eq!(dir.mutating_requests(), 0);
}

#[tokio::test]
async fn a_run_that_ends_before_its_recorded_steps_diverges() {
    let (_dir, engine) = setup(4).await;
    let journal = Arc::new(MemoryJournal::new());
    run(&engine, NOTIFY, RunOptions::new().journal(journal.clone()))
        .await
        .unwrap();
    journal.next_attempt();
    let shorter = "dir::disable_user(\"u1\"); \"done\"";
    let err = run(&engine, shorter, RunOptions::new().journal(journal))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Diverged);
    assert!(err.message.contains("without reaching step 2"), "{}", err.message);
}

#[tokio::test]
async fn the_guard_counts_the_changes_of_earlier_attempts() {
    let (dir, engine) = setup(8).await;
    // The first attempt changed two users, then failed on a user that does not exist.
    let script = r#"
        dir::disable_user("u1");
        dir::disable_user("u2");
        dir::get_user("u7");
        dir::disable_user("u3");
        dir::disable_user("u4");
    "#;
    let journal = Arc::new(MemoryJournal::new());
    let failing = script.replace("u7", "ghost");
    let first = run(&engine, &failing, RunOptions::new().journal(journal.clone())).await;
    assert_eq!(first.unwrap_err().kind, RunErrorKind::Action);
    // A retry of the same run (the failed read now answers) under a cap of 3 may change one more.
    let cut = Arc::new(MemoryJournal::new());
    for mut e in journal.entries() {
        if e.key == "3" {
            e.action = "dir.get_user".into();
            e.args_digest = runbook_core::journal::digest(&json!({"id": "u7"}));
        }
        cut.put(e);
    }
    cut.next_attempt();
    let err = run(&engine, script, RunOptions::new().journal(cut).max_changes(3))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Guard, "{}", err.message);
    assert!(err.message.contains("after 3 already changed"), "{}", err.message);
    assert_eq!(dir.user("u4").unwrap()["disabled"], false);
    assert_eq!(dir.user("u3").unwrap()["disabled"], true);
}

#[tokio::test]
async fn a_read_too_large_to_keep_is_read_again_and_must_answer_the_same() {
    let (dir, engine) = setup(20).await;
    let script = r#"let users = dir::list_users(); dir::disable_user("u1"); users.len()"#;
    let limits = JournalLimits::new(1000, 64);
    let journal = Arc::new(MemoryJournal::new());
    run(
        &engine,
        script,
        RunOptions::new().journal(journal.clone()).journal_limits(limits),
    )
    .await
    .unwrap();
    let read = &journal.entries()[0];
    assert!(
        read.result.is_none() && read.result_digest.is_some(),
        "kept as a digest"
    );
    journal.next_attempt();
    // Step 2 disabled u1, so the list answers differently now.
    let err = run(
        &engine,
        script,
        RunOptions::new().journal(journal.clone()).journal_limits(limits),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Diverged);
    assert!(err.message.contains("answered differently"), "{}", err.message);
    assert_eq!(dir.mutating_requests(), 1, "the write was not sent again");
}

#[tokio::test]
async fn the_step_past_the_entry_cap_is_a_named_error() {
    let (dir, engine) = setup(8).await;
    let script = r#"for id in ["u1", "u2", "u3", "u4"] { dir::disable_user(id); }"#;
    let journal = Arc::new(MemoryJournal::new());
    let err = run(
        &engine,
        script,
        RunOptions::new()
            .journal(journal.clone())
            .journal_limits(JournalLimits::new(3, 1024)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Journal);
    assert!(err.message.starts_with("journal_full: "), "{}", err.message);
    assert_eq!(dir.mutating_requests(), 3);
}

#[tokio::test]
async fn a_closed_fence_sends_no_change() {
    let (dir, engine) = setup(4).await;
    let fence = Arc::new(Fence::new(Duration::from_millis(200), Duration::from_millis(50)));
    let script = r#"dir::slow(400); dir::disable_user("u1"); 1"#;
    let err = run(
        &engine,
        script,
        RunOptions::new().journal(Arc::new(MemoryJournal::new())).fence(fence),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Fenced, "{}", err.message);
    assert_eq!(dir.mutating_requests(), 0);
}

/// A journal whose store refuses or fails every write.
struct Broken(JournalError);

#[async_trait]
impl Journal for Broken {
    async fn load(&self) -> Result<Vec<JournalEntry>, JournalError> {
        Ok(Vec::new())
    }
    async fn write(&self, _: &JournalEntry) -> Result<(), JournalError> {
        Err(self.0.clone())
    }
    async fn write_with_state(&self, _: &JournalEntry, _: &str, _: &Value) -> Result<(), JournalError> {
        Err(self.0.clone())
    }
    fn attempt(&self) -> u32 {
        2
    }
    fn epoch(&self) -> u64 {
        2
    }
}

#[tokio::test]
async fn a_stale_attempt_or_an_unreachable_store_sends_nothing_unrecorded() {
    let (dir, engine) = setup(4).await;
    let script = r#"dir::disable_user("u1"); 1"#;
    let fenced = Arc::new(Broken(JournalError::Fenced("epoch 3 holds it".into())));
    let err = run(&engine, script, RunOptions::new().journal(fenced))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Fenced);
    assert!(err.message.contains("epoch 3 holds it"), "{}", err.message);

    let down = Arc::new(Broken(JournalError::Unavailable("connection refused".into())));
    // The store is waited for, never past the lease.
    let fence = Arc::new(Fence::new(Duration::from_millis(600), Duration::from_millis(100)));
    let err = run(&engine, script, RunOptions::new().journal(down).fence(fence))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::StoreUnavailable);
    assert!(err.message.contains("connection refused"), "{}", err.message);
    assert_eq!(dir.mutating_requests(), 0);
}

#[tokio::test]
async fn a_journal_from_a_newer_runbook_is_refused_before_anything_is_sent() {
    let (dir, engine) = setup(4).await;
    let journal = Arc::new(MemoryJournal::new());
    let mut entry = JournalEntry::new("1", StepKind::Call, "dir.disable_user", runbook_core::Effect::Write);
    entry.version = 99;
    journal.put(entry);
    let err = run(&engine, NOTIFY, RunOptions::new().journal(journal))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Journal);
    assert!(
        err.message.contains("newer runbook (journal format 99"),
        "{}",
        err.message
    );
    assert_eq!(dir.log().len(), 0);
}

#[tokio::test]
async fn a_plan_journals_nothing() {
    let (_dir, engine) = setup(4).await;
    let journal = Arc::new(MemoryJournal::new());
    run(&engine, NOTIFY, RunOptions::new().plan(true).journal(journal.clone()))
        .await
        .unwrap();
    assert!(journal.entries().is_empty());
}

/// A journal that remembers each commit's keys.
#[derive(Default)]
struct Batches {
    inner: MemoryJournal,
    commits: std::sync::Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl Journal for Batches {
    async fn load(&self) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.load().await
    }
    async fn write(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        self.write_batch(std::slice::from_ref(entry), None).await
    }
    async fn write_with_state(&self, entry: &JournalEntry, key: &str, value: &Value) -> Result<(), JournalError> {
        self.write_batch(std::slice::from_ref(entry), Some((key, value))).await
    }
    async fn write_batch(&self, entries: &[JournalEntry], state: Option<(&str, &Value)>) -> Result<(), JournalError> {
        self.commits.lock().unwrap().push(
            entries
                .iter()
                .map(|e| format!("{}:{}", e.key, e.status.as_str()))
                .collect(),
        );
        for (i, e) in entries.iter().enumerate() {
            match state {
                Some((k, v)) if i + 1 == entries.len() => self.inner.write_with_state(e, k, v).await?,
                _ => self.inner.write(e).await?,
            }
        }
        Ok(())
    }
    fn attempt(&self) -> u32 {
        1
    }
    fn epoch(&self) -> u64 {
        1
    }
}

#[tokio::test]
async fn reads_are_committed_with_the_next_change_and_at_the_end() {
    let (_dir, engine) = setup(4).await;
    let journal = Arc::new(Batches::default());
    let script = r#"
        dir::get_user("u1"); dir::get_user("u2"); let t = now();
        dir::disable_user("u1");
        dir::get_user("u3");
        t
    "#;
    run(&engine, script, RunOptions::new().journal(journal.clone()))
        .await
        .unwrap();
    let commits = journal.commits.lock().unwrap().clone();
    assert_eq!(
        commits,
        vec![vec!["1:ok", "2:ok", "3:ok", "4:intent"], vec!["4:ok"], vec!["5:ok"],],
        "the reads before the change go with its intent; the last read at the end"
    );
}

#[tokio::test]
async fn an_interrupt_lets_the_change_in_flight_finish_and_be_recorded() {
    let (dir, engine) = setup(4).await;
    dir.delay_write_answers(Duration::from_millis(300));
    let journal = Arc::new(MemoryJournal::new());
    let interrupt = runbook_core::CancellationToken::new();
    let script = r#"dir::disable_user("u1"); dir::disable_user("u2"); 1"#;
    let (stop, watched) = (interrupt.clone(), dir.clone());
    // Interrupted while the first change is at the service, its answer held back.
    tokio::spawn(async move {
        while watched.max_in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
    });
    let err = run(
        &engine,
        script,
        RunOptions::new().journal(journal.clone()).interrupt(interrupt),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Cancelled);
    assert!(err.message.contains("calls in flight finished"), "{}", err.message);
    assert_eq!(dir.mutating_requests(), 1, "the second change was never sent");
    let entries = journal.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].status,
        StepStatus::Ok,
        "the first change's answer was recorded, not left in doubt"
    );

    // Resumed, it sends only the second.
    dir.delay_write_answers(Duration::ZERO);
    journal.next_attempt();
    run(&engine, script, RunOptions::new().journal(journal)).await.unwrap();
    assert_eq!(dir.mutating_requests(), 2);
}

#[tokio::test]
async fn a_person_saying_not_sent_covers_one_send_only() {
    let (_dir, engine) = setup(4).await;
    let journal = Arc::new(MemoryJournal::new());
    run(&engine, NOTIFY, RunOptions::new().journal(journal.clone()))
        .await
        .unwrap();
    let (dir, engine) = setup(4).await;
    let cut = Arc::new(crash_at(&journal, "2"));
    let mut entry = cut.entries().into_iter().find(|e| e.key == "2").unwrap();
    entry.resolution = Some(Resolution::NotSent);
    cut.put(entry);
    run(&engine, NOTIFY, RunOptions::new().journal(cut.clone()))
        .await
        .unwrap();
    assert_eq!(dir.mutating_requests(), 2);
    // That send, too, crashed before its answer was kept: it is in doubt again, and waits.
    let again = Arc::new(crash_at(&cut, "2"));
    let err = run(&engine, NOTIFY, RunOptions::new().journal(again))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::NeedsAttention, "{}", err.message);
    assert_eq!(dir.mutating_requests(), 2, "not sent a second time");
}

#[tokio::test]
async fn a_probe_that_fails_cannot_be_caught_and_sends_nothing() {
    let (dir, engine) = setup(4).await;
    let script =
        r#"let made = (); try { made = dir::create_user("x@example.com"); } catch (e) { made = "caught"; } made"#;
    let journal = Arc::new(MemoryJournal::new());
    run(&engine, script, RunOptions::new().journal(journal.clone()))
        .await
        .unwrap();
    let cut = Arc::new(crash_at(&journal, "1"));
    dir.fail_next(&[crate::server::Fault {
        status: 403,
        retry_after: None,
        headers: &[],
    }]);
    let posts = dir.log().iter().filter(|r| r.method == "POST").count();
    let err = run(&engine, script, RunOptions::new().journal(cut.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Action);
    assert!(err.message.contains("its probe failed"), "{}", err.message);
    assert_eq!(dir.log().iter().filter(|r| r.method == "POST").count(), posts);
    assert_eq!(cut.entries()[0].status, StepStatus::Intent, "still in doubt");
}

#[tokio::test]
async fn an_interrupt_drops_reads_in_flight_and_lets_changes_finish() {
    let (dir, engine) = setup(4).await;
    dir.delay_write_answers(Duration::from_millis(300));
    let journal = Arc::new(MemoryJournal::new());
    let interrupt = runbook_core::CancellationToken::new();
    let script =
        r#"parallel(["w", "r"], |x| if x == "w" { dir::disable_user("u1").disabled } else { dir::slow(20000) })"#;
    let (stop, watched) = (interrupt.clone(), dir.clone());
    tokio::spawn(async move {
        while watched.max_in_flight() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
    });
    let err = run(
        &engine,
        script,
        RunOptions::new()
            .journal(journal.clone())
            .interrupt(interrupt)
            .concurrency(2),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Cancelled);
    let write = journal
        .entries()
        .into_iter()
        .find(|e| e.action == "dir.disable_user")
        .unwrap();
    assert_eq!(
        write.status,
        StepStatus::Ok,
        "the change in flight finished and was recorded"
    );
}
