//! The script API: errors, `parallel`, `call`, the sandbox, timeouts and cancellation.

use std::time::Duration;

use runbook_core::{ConfigError, Engine, ProviderDescriptor, RunErrorKind, RunOptions};
use serde_json::json;

use crate::provider::{ACTIONS, Dir};
use crate::{run, setup};

#[tokio::test]
async fn action_errors_are_catchable_maps() {
    let (_dir, engine) = setup(1).await;
    let script = r#"
        let caught = ();
        try {
            dir::get_user("ghost");
        } catch (e) {
            caught = #{status: e.status, message: e.message, action: e.action, code: e.code, kind: e.kind};
        }
        caught
    "#;
    let outcome = run(&engine, script, RunOptions::new()).await.unwrap();
    assert_eq!(
        outcome.result,
        json!({"status": 404, "message": "no user ghost", "action": "dir.get_user", "code": "E_DIR", "kind": "api"})
    );
}

#[tokio::test]
async fn an_uncaught_action_error_names_the_action_line_and_column() {
    let (_dir, engine) = setup(1).await;
    let script = "let a = 1;\nlet u = dir::get_user(\"ghost\");\n";
    let err = run(&engine, script, RunOptions::new()).await.unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Action);
    assert_eq!(err.message, "dir.get_user: no user ghost");
    assert_eq!(err.position, Some((2, 14)), "the position of get_user");
}

#[tokio::test]
async fn errors_inside_functions_report_where_they_happened() {
    let (_dir, engine) = setup(1).await;
    let script = "fn fetch(id) {\n  dir::get_user(id)\n}\nfetch(\"ghost\")\n";
    let err = run(&engine, script, RunOptions::new()).await.unwrap_err();
    assert_eq!(err.position.map(|p| p.0), Some(2));
    assert!(err.message.contains("in fetch called at line 4"), "{}", err.message);
}

#[tokio::test]
async fn bad_arguments_are_explained() {
    let (_dir, engine) = setup(1).await;
    // A mistake in the arguments is the script's, not the service's: no `catch` hides it.
    let err = run(
        &engine,
        "let id = 42; try { dir::get_user(id) } catch (e) { 0 }",
        RunOptions::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::InvalidArgs);
    assert_eq!(err.message, "dir::get_user: `id` must be string, got int");
    let err = run(
        &engine,
        r#"let options = #{nope: 1}; dir::create_user("a@b.c", options)"#,
        RunOptions::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::InvalidArgs);
    assert!(
        err.message
            .contains("dir::create_user: unknown option `nope` (did you mean `note`?); valid keys: email, note"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn parallel_overlaps_keeps_order_and_sees_captures_and_functions() {
    let (dir, engine) = setup(40).await;
    let script = r#"
        fn label(u, suffix) { u.email + suffix }
        let suffix = "!";
        let ids = [];
        for i in 1..=40 { ids.push("u" + i); }
        parallel(ids, |id| {
            dir::slow(30);
            label(dir::get_user(id), suffix)
        })
    "#;
    let outcome = run(&engine, script, RunOptions::new().concurrency(8)).await.unwrap();
    let expected: Vec<String> = (1..=40).map(|i| format!("user{i}@example.com!")).collect();
    assert_eq!(outcome.result, json!(expected));
    assert!(
        dir.max_in_flight() > 1,
        "requests never overlapped: max in flight {}",
        dir.max_in_flight()
    );
    assert!(
        dir.max_in_flight() <= 8,
        "concurrency exceeded: {}",
        dir.max_in_flight()
    );
}

#[tokio::test]
async fn a_failing_parallel_item_is_named_by_index_and_catchable() {
    let (_dir, engine) = setup(3).await;
    let script = r#"
        let caught = ();
        try {
            parallel(["u1", "ghost", "u3"], |id| dir::get_user(id));
        } catch (e) {
            caught = [e.index, e.status, e.message];
        }
        caught
    "#;
    let outcome = run(&engine, script, RunOptions::new()).await.unwrap();
    assert_eq!(outcome.result, json!([1, 404, "parallel item 1: no user ghost"]));
    let err = run(
        &engine,
        r#"parallel([1, 2, 3], |x| if x == 3 { throw "three" } else { x })"#,
        RunOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("parallel item 2: three"), "{}", err.message);
}

#[tokio::test]
async fn invoke_reaches_any_action_by_name() {
    let (_dir, engine) = setup(2).await;
    let outcome = run(
        &engine,
        r#"invoke("dir.get_user", #{id: "u2"}).email"#,
        RunOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, json!("user2@example.com"));
    // Rhai's own call() on function pointers still works.
    let outcome = run(&engine, r#"let f = |x| x * 2; call(f, 21)"#, RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.result, json!(42));
    let err = run(&engine, r#"invoke("dir.nope", #{})"#, RunOptions::new())
        .await
        .unwrap_err();
    assert!(err.message.contains("unknown action dir::nope"), "{}", err.message);
}

#[tokio::test]
async fn time_helpers() {
    let (_dir, engine) = setup(1).await;
    let outcome = run(
        &engine,
        r#"[parse_time("2026-11-21T10:00:00Z"), now() > 1700000000, format_time(parse_time("2026-11-21T12:00:00+02:00"))]"#,
        RunOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, json!([1_795_255_200_i64, true, "2026-11-21T10:00:00Z"]));
    let err = run(&engine, r#"parse_time("yesterday")"#, RunOptions::new())
        .await
        .unwrap_err();
    assert!(
        err.message.contains("\"yesterday\" is not an RFC 3339 time"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn the_sandbox_has_no_eval_and_no_import() {
    let (_dir, engine) = setup(1).await;
    let err = run(&engine, r#"eval("1 + 1")"#, RunOptions::new()).await.unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Compile);
    let err = run(&engine, r#"import "os" as os;"#, RunOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Compile);
    let err = run(&engine, "let x = 1;\nundefined_variable + 1", RunOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Compile);
    assert_eq!(err.position.map(|p| p.0), Some(2));
}

#[tokio::test]
async fn a_busy_loop_is_stopped_by_the_timeout() {
    let (_dir, engine) = setup(1).await;
    let err = run(
        &engine,
        "let going = true; while going {}",
        RunOptions::new().timeout(Some(Duration::from_millis(300))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Timeout);
    assert!(err.message.contains("timeout of 300ms"), "{}", err.message);
}

#[tokio::test]
async fn the_timeout_also_stops_a_call_in_flight() {
    let (dir, engine) = setup(1).await;
    let err = run(
        &engine,
        "dir::slow(30000)",
        RunOptions::new().timeout(Some(Duration::from_millis(300))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Timeout);
    // The call was abandoned, not awaited: the server has not answered it.
    assert!(dir.log().is_empty(), "the slow request completed: {:?}", dir.log());
}

#[tokio::test]
async fn cancelling_from_outside_stops_a_call_in_flight() {
    let (dir, engine) = setup(1).await;
    let cancel = runbook_core::CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let err = run(&engine, "dir::slow(30000)", RunOptions::new().cancel(cancel))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Cancelled);
    assert!(dir.log().is_empty());
}

#[tokio::test]
async fn an_unconfigured_provider_fails_naming_its_settings() {
    static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
        namespace: "dir",
        summary: "test directory",
        actions: ACTIONS,
        settings: "DIR_URL",
        build: |config| {
            Err(ConfigError::Missing {
                provider: config.namespace().to_owned(),
                missing: vec![config.setting_name("url", "DIR_URL")],
                hint: config.hint(),
            })
        },
    };
    let engine = Engine::builder()
        .descriptor(
            &DESCRIPTOR,
            &runbook_core::ProviderConfig::from_vars("dir", [("X", "y")]),
        )
        .build()
        .unwrap();
    assert!(
        engine.check(r#"dir::get_user("u1")"#).is_empty(),
        "check knows unconfigured providers' actions"
    );
    let err = run(
        &engine,
        r#"try { dir::get_user("u1") } catch (e) { 1 }"#,
        RunOptions::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::NotConfigured);
    assert!(
        err.message.starts_with("dir is not configured: set DIR_URL"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn two_providers_cannot_share_a_namespace() {
    let a = Dir::new("http://127.0.0.1:9", "t");
    let b = Dir::new("http://127.0.0.1:9", "t");
    let err = Engine::builder().provider(a).provider(b).build().unwrap_err();
    assert!(err.to_string().contains("namespace `dir`"), "{err}");
}

#[tokio::test]
async fn param_names_a_missing_or_mistyped_parameter_as_a_usage_error() {
    let (_dir, engine) = setup(1).await;
    let script = r#"let email = param("email"); let n = param("threshold", 3); #{email: email, n: n}"#;
    let err = run(&engine, script, RunOptions::new()).await.unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Params);
    assert_eq!(
        err.message,
        "missing required parameter `email`: set it with params.email"
    );

    let mut params = serde_json::Map::new();
    params.insert("email".into(), json!("a@example.com"));
    let ok = run(&engine, script, RunOptions::new().params(params.clone()))
        .await
        .unwrap();
    assert_eq!(ok.result, json!({"email": "a@example.com", "n": 3}));

    params.insert("threshold".into(), json!("many"));
    let err = run(&engine, script, RunOptions::new().params(params))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Params);
    assert_eq!(
        err.message,
        "parameter `threshold` must be an int (like its default 3), got the string \"many\""
    );
}

#[tokio::test]
async fn a_failing_check_refuses_the_run_before_anything_is_sent() {
    let (dir, engine) = setup(1).await;
    let script = "let u = dir::get_user(\"u1\");\ndir::disable_user(u.id);\ndir::delet_users([u.id]);\n";
    let err = run(&engine, script, RunOptions::new()).await.unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Compile);
    assert_eq!(
        err.message,
        "unknown action dir::delet_users (did you mean dir::delete_users?)"
    );
    assert_eq!(err.position, Some((3, 1)));
    assert!(dir.log().is_empty(), "sent: {:?}", dir.log());
}

#[tokio::test]
async fn a_method_on_an_empty_value_says_the_value_is_empty() {
    let (_dir, engine) = setup(1).await;
    let script = "let u = #{};\nlet e = u.email;\ne.to_lower()\n";
    let err = run(&engine, script, RunOptions::new()).await.unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Script);
    assert!(
        err.message
            .starts_with("`to_lower` was called on (): the value is empty (())"),
        "{}",
        err.message
    );
    assert_eq!(err.position.map(|p| p.0), Some(3));
    for leak in ["Function not found", "ImmutableString", "i64", "(line"] {
        assert!(!err.message.contains(leak), "{}", err.message);
    }
}

#[tokio::test]
async fn a_runaway_loop_at_the_operation_limit_says_so() {
    let dir = crate::server::Directory::start(crate::TOKEN, 1).await;
    let mut limits = runbook_core::Limits::default();
    limits.max_operations = 10_000;
    let engine = Engine::builder()
        .provider(Dir::new(&dir.url, crate::TOKEN))
        .limits(limits)
        .build()
        .unwrap();
    let err = run(&engine, "let n = 0; while n >= 0 { n += 1; }", RunOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Script);
    assert_eq!(
        err.message,
        "the script was stopped after 10,000 operations, the most one run may perform: does a loop never end? \
         (to stop a long run sooner, set the run's timeout)"
    );
}

#[tokio::test]
async fn wrong_types_are_named_in_the_scripts_words() {
    let (_dir, engine) = setup(1).await;
    let err = run(&engine, "let n = 3; n.pad(\"x\")", RunOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.message, "no function `pad` takes (int, string)");
}
