//! The HTTP layer as scripts see it: retries, retry-after, non-idempotent requests, secrets.

use std::time::Duration;

use runbook_core::{CallOutcome, RunOptions};
use serde_json::json;

use crate::server::Fault;
use crate::{TOKEN, run, setup};

#[tokio::test]
async fn transient_failures_of_reads_are_retried() {
    let (dir, engine) = setup(1).await;
    dir.fail_next(&[
        Fault {
            status: 503,
            retry_after: None,
            headers: &[],
        },
        Fault {
            status: 503,
            retry_after: None,
            headers: &[],
        },
    ]);
    let outcome = run(&engine, r#"dir::get_user("u1").id"#, RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.result, json!("u1"));
    assert_eq!(outcome.records.audit[0].attempts, 3);
    let statuses: Vec<u16> = dir.log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let (dir, engine) = setup(1).await;
    dir.fail_next(&[Fault {
        status: 429,
        retry_after: Some("1"),
        headers: &[],
    }]);
    let outcome = run(&engine, r#"dir::get_user("u1").id"#, RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.result, json!("u1"));
    let log = dir.log();
    assert_eq!(log.len(), 2);
    let gap = log[1].at.duration_since(log[0].at);
    assert!(
        gap >= Duration::from_secs(1),
        "retried after {gap:?}, before retry-after allowed"
    );
}

#[tokio::test]
async fn the_services_word_on_retrying_wins_over_the_status() {
    let (dir, engine) = setup(1).await;
    // A 503 the service says not to retry is reported at once.
    dir.fail_next(&[Fault {
        status: 503,
        retry_after: None,
        headers: &[("x-should-retry", "false")],
    }]);
    let err = run(&engine, r#"dir::get_user("u1").id"#, RunOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.records.audit[0].status, Some(503));
    assert_eq!(
        dir.log().len(),
        1,
        "a read the service said not to retry was sent again"
    );

    // A 409 the service says to retry is sent again, after retry-after-ms.
    dir.fail_next(&[Fault {
        status: 409,
        retry_after: Some("30"),
        headers: &[("x-should-retry", "true"), ("retry-after-ms", "200")],
    }]);
    let outcome = run(&engine, r#"dir::get_user("u1").id"#, RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.result, json!("u1"));
    let log = dir.log();
    assert_eq!(log.len(), 3);
    let gap = log[2].at.duration_since(log[1].at);
    assert!(
        gap < Duration::from_secs(30),
        "retry-after-ms (200 ms) should win over retry-after (30 s); waited {gap:?}"
    );
}

#[tokio::test]
async fn a_non_idempotent_request_is_not_resent_after_a_503() {
    let (dir, engine) = setup(1).await;
    dir.fail_next(&[Fault {
        status: 503,
        retry_after: None,
        headers: &[],
    }]);
    let err = run(
        &engine,
        r#"dir::create_user(#{email: "x@example.com"})"#,
        RunOptions::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.records.audit[0].status, Some(503));
    assert_eq!(err.records.audit[0].attempts, 1);
    assert_eq!(dir.log().iter().filter(|r| r.method == "POST").count(), 1);
}

#[tokio::test]
async fn retries_give_up_after_the_policy_and_report_the_status() {
    let (dir, engine) = setup(1).await;
    dir.fail_next(
        &[Fault {
            status: 500,
            retry_after: None,
            headers: &[],
        }; 6],
    );
    let err = run(&engine, r#"dir::get_user("u1")"#, RunOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.records.audit[0].outcome, CallOutcome::Error);
    assert_eq!(err.records.audit[0].status, Some(500));
    assert_eq!(err.records.audit[0].attempts, 4);
    assert_eq!(dir.log().len(), 4);
}

#[tokio::test]
async fn a_refused_connection_is_a_clear_error() {
    let engine = runbook_core::Engine::builder()
        .provider(crate::provider::Dir::new("http://127.0.0.1:9", TOKEN))
        .build()
        .unwrap();
    let err = run(&engine, r#"dir::get_user("u1")"#, RunOptions::new())
        .await
        .unwrap_err();
    assert!(
        err.message
            .starts_with("dir.get_user: cannot connect for GET http://127.0.0.1:9/users/u1"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_secret_echoed_by_the_service_never_reaches_the_script_or_the_trail() {
    let dir = crate::server::Directory::start("another-token", 1).await;
    let engine = runbook_core::Engine::builder()
        .provider(crate::provider::Dir::new(&dir.url, TOKEN))
        .build()
        .unwrap();
    let script = r#"let m = (); try { dir::get_user("u1"); } catch (e) { m = e.message; } m"#;
    let outcome = run(&engine, script, RunOptions::new()).await.unwrap();
    assert_eq!(outcome.result, json!("bad credentials: Bearer ***"));
    let err = run(&engine, r#"dir::get_user("u1")"#, RunOptions::new())
        .await
        .unwrap_err();
    let everything = format!("{err:?}{}", serde_json::to_string(&err).unwrap());
    assert!(everything.contains("bad credentials"));
    assert!(!everything.contains(TOKEN), "the token leaked: {everything}");
}

#[tokio::test]
async fn every_parallel_worker_sends_the_cookie_the_service_set() {
    let (dir, engine) = setup(40).await;
    let script = r#"
        dir::get_user("u1");
        let ids = [];
        for i in 1..=40 { ids.push(`u${i}`); }
        let got = parallel(ids, |id| dir::get_user(id).id);
        dir::get_user("u2");
        got
    "#;
    let outcome = run(&engine, script, RunOptions::new().concurrency(8)).await.unwrap();
    let expected: Vec<String> = (1..=40).map(|i| format!("u{i}")).collect();
    assert_eq!(outcome.result, json!(expected));
    let log = dir.log();
    assert_eq!(log.len(), 42);
    assert_eq!(log[0].cookie, None, "the first request has no cookie yet");
    for request in &log[1..] {
        assert_eq!(
            request.cookie.as_deref(),
            Some("node=dir-1"),
            "{} went without the cookie",
            request.path
        );
    }
    // A second run, on another thread, is still pinned.
    run(&engine, r#"dir::get_user("u3")"#, RunOptions::new()).await.unwrap();
    assert_eq!(dir.log().last().unwrap().cookie.as_deref(), Some("node=dir-1"));
}
