//! The run-wide bounds: calls in flight, what a refusal or a dropped run does to calls already
//! sent, a service's long pause, and which requests are resent.

use std::time::Duration;

use runbook_core::{CallOutcome, RunErrorKind, RunOptions};
use serde_json::json;

use crate::server::Fault;
use crate::{run, setup};

#[tokio::test]
async fn nested_parallel_never_has_more_calls_in_flight_than_the_concurrency() {
    let (dir, engine) = setup(1).await;
    let script = r#"
        let outer = [];
        for i in 0..6 { outer.push(i); }
        parallel(outer, |i| {
            let inner = [];
            for j in 0..6 { inner.push(j); }
            parallel(inner, |j| dir::slow(40)).len()
        })
    "#;
    let outcome = run(&engine, script, RunOptions::new().concurrency(4)).await.unwrap();
    assert_eq!(outcome.result, json!([6, 6, 6, 6, 6, 6]), "every item ran, in order");
    let most = dir.max_in_flight();
    assert!(most <= 4, "{most} calls were in flight at once with --concurrency 4");
    assert!(most >= 2, "the items ran one at a time ({most})");
}

#[tokio::test]
async fn a_refusal_in_one_parallel_item_lets_the_others_writes_finish_and_reports_them() {
    let (dir, engine) = setup(4).await;
    // A change takes effect at once and its answer comes 300 ms later.
    dir.delay_write_answers(Duration::from_millis(300));
    // The fourth item reads first, so that the three writes are in flight when it is refused.
    let script = r#"parallel(["u1", "u2", "u3", "u4"], |id| {
        if id == "u4" { dir::slow(150); }
        dir::disable_user(id)
    })"#;
    let err = run(&engine, script, RunOptions::new().max_changes(3).concurrency(4))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Guard);
    let disabled = (1..=4)
        .filter(|i| dir.user(&format!("u{i}")).unwrap()["disabled"] == json!(true))
        .count();
    assert_eq!(disabled, 3, "three writes were sent and applied");
    let mut outcomes: Vec<CallOutcome> = err
        .records
        .audit
        .iter()
        .filter(|r| r.action == "dir.disable_user")
        .map(|r| r.outcome)
        .collect();
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [CallOutcome::Ok, CallOutcome::Ok, CallOutcome::Ok, CallOutcome::Refused],
        "the applied writes are reported as applied, not cancelled"
    );
}

#[tokio::test]
async fn dropping_a_run_stops_it_from_sending_more() {
    let (dir, engine) = setup(1).await;
    let script = r#"for i in 0..100000 { dir::create_user(#{email: "u" + i + "@example.com"}); }"#;
    let options = RunOptions::new().max_changes(1_000_000);
    let dropped = tokio::time::timeout(Duration::from_millis(300), engine.run(script, options)).await;
    assert!(dropped.is_err(), "the run cannot have finished 100,000 calls");
    // Give a call that was in flight when the run was dropped time to land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = dir.mutating_requests();
    assert!(after_drop > 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        dir.mutating_requests(),
        after_drop,
        "the script went on sending changes after its run was dropped"
    );
}

#[tokio::test]
async fn a_pause_longer_than_the_policy_allows_fails_calls_at_once_without_sending() {
    let (dir, engine) = setup(1).await;
    dir.fail_next(&[Fault {
        status: 429,
        retry_after: Some("120"),
        headers: &[],
    }]);
    let script = r#"
        let first = "sent";
        try { dir::get_user("u1"); } catch (e) { first = e.status; }
        let second = "sent";
        try { dir::get_user("u1"); } catch (e) { second = e.message; }
        [first, second]
    "#;
    // Before the fix the second call waited out the whole pause: bound the test instead.
    let outcome = tokio::time::timeout(Duration::from_secs(20), run(&engine, script, RunOptions::new()))
        .await
        .expect("the second call stalled on the service's pause")
        .unwrap();
    assert_eq!(outcome.result[0], json!(429));
    let second = outcome.result[1].as_str().unwrap();
    assert!(
        second.contains("asked for a pause of") && second.contains("GET /users/u1 was not sent"),
        "{second}"
    );
    assert_eq!(dir.log().len(), 1, "only the first call reached the service");
}

#[tokio::test]
async fn the_specs_idempotent_decides_whether_a_change_is_resent() {
    let (dir, engine) = setup(2).await;
    let unavailable = Fault {
        status: 503,
        retry_after: None,
        headers: &[],
    };
    // disable_user is idempotent by its spec: its PUT that drew a 503 is sent again.
    dir.fail_next(&[unavailable]);
    let outcome = run(&engine, r#"dir::disable_user("u1")"#, RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.records.audit[0].attempts, 2);
    // The same PUT under an action declared not idempotent is never sent twice, whatever the
    // HTTP method would suggest.
    dir.fail_next(&[unavailable]);
    let err = run(&engine, r#"dir::disable_user_and_notify("u2")"#, RunOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.records.audit[0].attempts, 1);
    assert_eq!(err.records.audit[0].status, Some(503));
}

/// A state store that never answers, as a store whose connection hangs.
struct Stalled;

#[runbook_core::async_trait]
impl runbook_core::StateStore for Stalled {
    async fn get(&self, _: &str) -> Result<Option<serde_json::Value>, runbook_core::StateError> {
        std::future::pending().await
    }
    async fn set(&self, _: &str, _: serde_json::Value) -> Result<(), runbook_core::StateError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_stalled_state_store_cannot_hold_a_run_past_its_timeout() {
    let (_dir, engine) = setup(1).await;
    let options = RunOptions::new()
        .state(std::sync::Arc::new(Stalled))
        .timeout(Some(Duration::from_millis(300)));
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        run(&engine, r#"state::get("cursor")"#, options),
    )
    .await
    .expect("the run waited on the store past its timeout")
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Timeout);
}

/// Answers after a timer on whatever runtime the call runs in.
struct Timed;

const TIMED: &[runbook_core::ActionSpec] = &[runbook_core::ActionSpec::read("tick", "Answer after 1 ms")];

#[runbook_core::async_trait]
impl runbook_core::Provider for Timed {
    fn namespace(&self) -> &str {
        "timed"
    }
    fn actions(&self) -> &[runbook_core::ActionSpec] {
        TIMED
    }
    async fn call(
        &self,
        _: &runbook_core::CallContext,
        _: &runbook_core::ActionSpec,
        _: serde_json::Value,
    ) -> Result<serde_json::Value, runbook_core::ActionError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(json!(1))
    }
}

#[test]
fn an_engine_outlives_the_runtime_of_its_first_run() {
    let engine = runbook_core::Engine::builder()
        .provider(std::sync::Arc::new(Timed))
        .build()
        .unwrap();
    for _ in 0..2 {
        // A runtime per run, the first gone before the second starts.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let outcome = runtime
            .block_on(engine.run("timed::tick() + timed::tick()", RunOptions::new()))
            .unwrap();
        assert_eq!(outcome.result, json!(2));
    }
}
