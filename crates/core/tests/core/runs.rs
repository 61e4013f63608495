//! Plan mode, the blast-radius guard, the audit trail and results.

use runbook_core::{CallOutcome, Effect, RunErrorKind, RunOptions};
use serde_json::json;

use crate::{run, setup};

#[tokio::test]
async fn plan_mode_sends_no_change_and_a_run_sends_exactly_one() {
    let (dir, engine) = setup(3).await;
    let script = r#"
        let u = dir::get_user("u2");
        dir::disable_user(u.id);
        "done"
    "#;
    let plan = run(&engine, script, RunOptions::new().plan(true)).await.unwrap();
    assert_eq!(dir.mutating_requests(), 0);
    assert_eq!(dir.user("u2").unwrap()["disabled"], json!(false));
    assert_eq!(plan.records.planned_changes.len(), 1);
    assert_eq!(plan.records.planned_changes[0].action, "dir.disable_user");
    assert_eq!(plan.records.planned_changes[0].args, json!({"id": "u2"}));
    assert_eq!(plan.records.planned_changes[0].effect, Effect::Write);
    // The read still ran for real.
    assert_eq!(dir.log().len(), 1);

    let real = run(&engine, script, RunOptions::new()).await.unwrap();
    assert!(real.records.planned_changes.is_empty());
    assert_eq!(dir.mutating_requests(), 1);
    assert_eq!(dir.user("u2").unwrap()["disabled"], json!(true));
}

#[tokio::test]
async fn a_planned_create_returns_the_would_be_object() {
    let (dir, engine) = setup(1).await;
    let outcome = run(
        &engine,
        r#"dir::create_user(#{email: "new@example.com"})"#,
        RunOptions::new().plan(true),
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, json!({"id": "(planned)", "email": "new@example.com"}));
    assert_eq!(dir.mutating_requests(), 0);
}

#[tokio::test]
async fn the_guard_refuses_the_call_that_would_pass_the_cap() {
    let (dir, engine) = setup(5).await;
    let script = r#"
        dir::disable_user("u1");
        dir::disable_user("u2");
        dir::disable_user("u3");
    "#;
    let err = run(&engine, script, RunOptions::new().max_changes(2))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Guard);
    assert!(err.message.contains("cap for this run is 2"), "{}", err.message);
    assert_eq!(err.position.map(|p| p.0), Some(4), "the refused call's line");
    assert_eq!(dir.mutating_requests(), 2);
    assert_eq!(dir.user("u3").unwrap()["disabled"], json!(false));
    let refused = err
        .records
        .audit
        .iter()
        .filter(|r| r.outcome == CallOutcome::Refused)
        .count();
    assert_eq!(refused, 1);
}

#[tokio::test]
async fn the_guard_counts_targets_not_calls_and_cannot_be_caught() {
    let (dir, engine) = setup(5).await;
    let script = r#"
        try {
            dir::delete_users(["u1", "u2", "u3"]);
        } catch (e) {
            "caught"
        }
    "#;
    let err = run(&engine, script, RunOptions::new().max_changes(2))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Guard);
    assert_eq!(dir.mutating_requests(), 0);
    // In plan mode the guard applies too: the plan shows the run would be refused.
    let err = run(
        &engine,
        r#"dir::delete_users(["u1", "u2", "u3"])"#,
        RunOptions::new().plan(true).max_changes(2),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Guard);
}

#[tokio::test]
async fn every_call_is_audited_in_order() {
    let (_dir, engine) = setup(2).await;
    let script = r#"
        let a = dir::get_user("u1");
        try { dir::get_user("nobody"); } catch (e) {}
        dir::disable_user("u2");
    "#;
    let outcome = run(&engine, script, RunOptions::new()).await.unwrap();
    assert_eq!(outcome.records.calls, 3);
    let trail: Vec<_> = outcome
        .records
        .audit
        .iter()
        .map(|r| (r.seq, r.action.as_str(), r.outcome, r.status))
        .collect();
    assert_eq!(
        trail,
        vec![
            (1, "dir.get_user", CallOutcome::Ok, None),
            (2, "dir.get_user", CallOutcome::Error, Some(404)),
            (3, "dir.disable_user", CallOutcome::Ok, None),
        ]
    );
    assert!(outcome.records.audit.iter().all(|r| r.attempts == 1));
    assert_eq!(outcome.records.audit[2].targets, 1);
}

#[tokio::test]
async fn results_keep_integers_above_i64_max() {
    let (_dir, engine) = setup(1).await;
    let outcome = run(&engine, r#"dir::get_user("u1")["big"]"#, RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.result, json!(u64::MAX));
    assert!(outcome.result.is_u64());
}

#[tokio::test]
async fn params_and_run_ids_reach_the_script() {
    let (_dir, engine) = setup(1).await;
    let mut params = serde_json::Map::new();
    params.insert("threshold".into(), json!(3));
    params.insert("allowed".into(), json!(["FI", "SE"]));
    let a = run(
        &engine,
        "params.threshold * 2 + params.allowed.len()",
        RunOptions::new().params(params),
    )
    .await
    .unwrap();
    assert_eq!(a.result, json!(8));
    let b = run(&engine, "event", RunOptions::new()).await.unwrap();
    assert_eq!(b.result, json!(null));
    // Run ids are time-ordered (UUIDv7): a later run sorts after an earlier one.
    assert!(b.run_id > a.run_id, "{} then {}", a.run_id, b.run_id);
}

#[tokio::test]
async fn state_set_in_plan_mode_is_not_stored() {
    use runbook_core::{MemoryState, StateStore};
    use std::sync::Arc;
    let (_dir, engine) = setup(1).await;
    let store = Arc::new(MemoryState::new());
    let script = r#"let before = state::get("cursor"); state::set("cursor", 42); [before, state::get("cursor")]"#;
    let planned = run(&engine, script, RunOptions::new().plan(true).state(store.clone()))
        .await
        .unwrap();
    assert_eq!(planned.result, json!([null, 42]));
    assert_eq!(store.get("cursor").await.unwrap(), None);
    let real = run(&engine, script, RunOptions::new().state(store.clone()))
        .await
        .unwrap();
    assert_eq!(real.result, json!([null, 42]));
    assert_eq!(store.get("cursor").await.unwrap(), Some(json!(42)));
}

#[tokio::test]
async fn a_provider_whose_calls_start_long_lived_tasks_keeps_them_across_runs() {
    let engine = runbook_core::Engine::builder()
        .provider(std::sync::Arc::new(crate::provider::Pooled::default()))
        .build()
        .unwrap();
    // The first call starts the task; later runs, and parallel workers, reach the same task.
    let first = run(&engine, "pooled::ping()", RunOptions::new()).await.unwrap();
    assert_eq!(first.result, json!(1));
    let second = run(
        &engine,
        "parallel([1, 2, 3], |x| pooled::ping()).len()",
        RunOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(second.result, json!(3));
    let third = run(&engine, "pooled::ping()", RunOptions::new()).await.unwrap();
    assert_eq!(third.result, json!(5));
}

#[tokio::test]
async fn an_apply_sends_only_the_approved_effect_at_each_step() {
    use std::sync::Arc;

    use runbook_core::Expectation;
    let (dir, engine) = setup(3).await;
    let approved = run(&engine, r#"dir::disable_user("u1")"#, RunOptions::new().plan(true))
        .await
        .unwrap()
        .records
        .planned_changes;
    // The same step, another target: refused before it is sent.
    let err = run(
        &engine,
        r#"dir::disable_user("u2")"#,
        RunOptions::new().expect(Arc::new(Expectation::new(approved.clone()))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Stale);
    assert!(err.message.contains("dir.disable_user"), "{}", err.message);
    assert_eq!(dir.mutating_requests(), 0);
    // A change at a step the plan has none.
    let err = run(
        &engine,
        r#"dir::disable_user("u1"); dir::disable_user("u1")"#,
        RunOptions::new().expect(Arc::new(Expectation::new(approved.clone()))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Stale);
    assert_eq!(
        dir.mutating_requests(),
        1,
        "the approved first change went out, the second did not"
    );
    assert!(err.message.contains("not in the approved plan"), "{}", err.message);
}

#[tokio::test]
async fn a_planned_creates_placeholder_binds_to_what_the_apply_created() {
    use std::sync::Arc;

    use runbook_core::Expectation;
    let (dir, engine) = setup(1).await;
    let script = r#"
        let u = dir::create_user(#{email: "new@example.com"});
        dir::disable_user(u.id);
        u.id
    "#;
    let plan = run(&engine, script, RunOptions::new().plan(true)).await.unwrap();
    assert_eq!(plan.records.planned_changes[1].args, json!({"id": "(planned)"}));
    let applied = run(
        &engine,
        script,
        RunOptions::new().expect(Arc::new(Expectation::new(plan.records.planned_changes))),
    )
    .await
    .unwrap();
    let id = applied.result.as_str().unwrap().to_owned();
    assert_ne!(id, "(planned)");
    assert_eq!(dir.user(&id).unwrap()["disabled"], json!(true));
    assert_eq!(dir.mutating_requests(), 2);
}
