//! The Cloudflare provider over real HTTP against the simulator: every action, paging, both
//! auth schemes, every error shape, rate limits and retries.

use std::time::Duration;

use runbook_core::RunOptions;
use runbook_sim::{AuthUsed, Fault, RateLimit, SimOptions};
use serde_json::json;

use crate::fixtures::{cf_id, tenant};
use crate::support::{Sims, eval, eval_err};

fn list_requests(sims: &Sims) -> Vec<runbook_sim::LoggedRequest> {
    sims.cf()
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/access/users"))
        .collect()
}

#[tokio::test]
async fn listing_2500_users_takes_exactly_three_requests() {
    let sims = Sims::start(tenant(2500, 0)).await;
    let engine = sims.engine();
    let result = eval(
        &engine,
        "let all = cloudflare::list_users(); [all.len(), all[0].email, all[2499].email]",
    )
    .await;
    assert_eq!(result, json!([2500, "user1@example.com", "user2500@example.com"]));
    let lists = list_requests(&sims);
    assert_eq!(lists.len(), 3, "{lists:#?}");
    // Page 1 first; pages 2 and 3 may be fetched together once page 1 says there are 3.
    let mut pages: Vec<String> = lists.iter().map(|r| r.query.clone().unwrap_or_default()).collect();
    assert!(pages[0].split('&').any(|p| p == "page=1"), "{pages:?}");
    pages.sort();
    for (n, query) in pages.iter().enumerate() {
        assert!(
            query.split('&').any(|p| p == format!("page={}", n + 1)) && query.contains("per_page=1000"),
            "{query}"
        );
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn list_filters_reach_the_api() {
    let sims = Sims::start(tenant(30, 0)).await;
    let engine = sims.engine();
    let one = eval(
        &engine,
        r#"cloudflare::list_users(#{email: "user7@example.com"}).map(|u| u.id)"#,
    )
    .await;
    assert_eq!(one, json!([cf_id(7)]));
    let some = eval(&engine, r#"cloudflare::list_users(#{search: "user2"}).len()"#).await;
    assert_eq!(some, json!(11), "user2 and user20..user29");
    assert!(
        list_requests(&sims)
            .iter()
            .any(|r| r.query.as_deref().unwrap_or("").contains("email=user7%40example.com"))
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn a_user_is_created_read_renamed_and_deleted() {
    let sims = Sims::start(tenant(3, 0)).await;
    let engine = sims.engine();
    let created = eval(
        &engine,
        r#"cloudflare::create_user(#{email: "new@example.com", name: "New Person"})"#,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["email"], "new@example.com");
    let post = sims.cf().requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.status, 201);
    assert_eq!(
        post.body,
        Some(json!({"email": "new@example.com", "name": "New Person"}))
    );

    let fetched = eval(&engine, &format!(r#"cloudflare::get_user("{id}").name"#)).await;
    assert_eq!(fetched, json!("New Person"));

    let renamed = eval(
        &engine,
        &format!(r#"cloudflare::update_user("{id}", #{{name: "Renamed"}})"#),
    )
    .await;
    assert_eq!(renamed["name"], "Renamed");
    assert_eq!(renamed["email"], "new@example.com");
    let put = sims.cf().requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(
        put.body,
        Some(json!({"email": "new@example.com", "name": "Renamed"})),
        "the API needs the current email too"
    );
    assert_eq!(sims.cf().user(&id).unwrap()["name"], "Renamed");

    assert_eq!(
        eval(&engine, &format!(r#"cloudflare::delete_user("{id}")"#)).await,
        json!(null)
    );
    assert!(sims.cf().user(&id).is_none());
    let err = eval_err(&engine, &format!(r#"cloudflare::get_user("{id}")"#)).await;
    assert!(
        err.message.starts_with(&format!(
            "cloudflare.get_user: no user {id} in Cloudflare account {} (Cloudflare answered 404",
            sims.cf().account_id()
        )),
        "{}",
        err.message
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn sessions_failed_logins_and_identities_keep_every_field() {
    let sims = Sims::start(tenant(2, 0)).await;
    let engine = sims.engine();
    let id = cf_id(1);
    let result = eval(
        &engine,
        &format!(
            r#"
            let sessions = cloudflare::active_sessions("{id}");
            let one = cloudflare::active_session("{id}", sessions[0].metadata.nonce);
            let failures = cloudflare::failed_logins("{id}");
            let seen = cloudflare::last_seen_identity("{id}");
            #{{
                nonce: sessions[0].metadata.nonce,
                app: sessions[0].metadata.apps["app-1"].hostname,
                active: one.isActive,
                failures: failures.len(),
                when: failures[0].metadata.datetime,
                kept: failures[0].metadata.future_key.kept,
                country: seen.geo.country,
                posture: seen.devicePosture.disk.success,
                device_session: seen.device_sessions["dev-1"].last_authenticated,
                none: cloudflare::failed_logins("{other}").len(),
            }}
            "#,
            other = cf_id(2)
        ),
    )
    .await;
    assert_eq!(
        result,
        json!({"nonce": "nonce-1", "app": "grafana.example.com", "active": true, "failures": 2, "when": "2026-11-22T10:00:00Z", "kept": true, "country": "FI", "posture": true, "device_session": 1_763_600_000, "none": 0})
    );
    let err = eval_err(&engine, &format!(r#"cloudflare::active_session("{id}", "nope")"#)).await;
    assert!(
        err.message.contains(&format!("no active session nope for user {id}")),
        "{}",
        err.message
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn the_legacy_global_key_authenticates() {
    let sims = Sims::start(tenant(5, 0)).await;
    let cf = sims.cf();
    let config = json!({"base_url": cf.base_url(), "account_id": cf.account_id(), "api_email": cf.api_email(), "api_key": cf.api_key()});
    let engine = sims.engine_with(config.as_object().unwrap().clone(), sims.privx_config());
    assert_eq!(eval(&engine, "cloudflare::list_users().len()").await, json!(5));
    assert!(
        cf.requests().iter().all(|r| r.auth == AuthUsed::LegacyKey),
        "{:?}",
        cf.requests()
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_says_what_to_check() {
    let sims = Sims::start(tenant(1, 0)).await;
    let mut config = sims.cloudflare_config();
    config.insert("api_token".into(), json!("wrong-token-000000"));
    let engine = sims.engine_with(config, sims.privx_config());
    let result = eval(&engine, "let r = (); try { cloudflare::list_users(); } catch (e) { r = #{status: e.status, code: e.code, message: e.message}; } r").await;
    assert_eq!(result["status"], 403);
    assert_eq!(result["code"], 10000);
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .starts_with("Cloudflare refused the API token: check CLOUDFLARE_API_TOKEN"),
        "{result}"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn malformed_answers_become_clear_errors() {
    let sims = Sims::start(tenant(1, 0)).await;
    let engine = sims.engine();
    let get = format!(r#"cloudflare::get_user("{}")"#, cf_id(1));

    // Retried (5xx) until the retries run out: four attempts.
    sims.cf().inject(Fault::Html(502), 4);
    let err = eval_err(&engine, &get).await;
    assert!(
        err.message
            .contains("Cloudflare answered 502 with an HTML page instead of JSON"),
        "{}",
        err.message
    );
    assert_eq!(err.records.audit[0].attempts, 4);

    sims.cf().inject(Fault::Empty(500), 4);
    let err = eval_err(&engine, &get).await;
    assert!(
        err.message.contains("Cloudflare answered 500 with an empty body"),
        "{}",
        err.message
    );

    sims.cf().inject(Fault::TruncatedJson, 1);
    let err = eval_err(&engine, &get).await;
    assert!(
        err.message
            .contains("Cloudflare answered 200 with a body that is not the documented JSON"),
        "{}",
        err.message
    );

    let err = eval_err(&engine, r#"cloudflare::create_user(#{email: "user1@example.com"})"#).await;
    assert!(
        err.message.contains("Cloudflare answered 409"),
        "duplicate email: {}",
        err.message
    );
    let err = eval_err(&engine, r#"cloudflare::create_user(#{email: "not an email"})"#).await;
    assert!(err.message.contains("Cloudflare answered 400"), "{}", err.message);
    sims.shutdown().await;
}

#[tokio::test]
async fn ids_are_escaped_into_one_path_segment() {
    let sims = Sims::start(tenant(1, 0)).await;
    let engine = sims.engine();
    let err = eval_err(&engine, r#"cloudflare::get_user("../../users")"#).await;
    assert!(
        err.message.contains("no user ../../users in Cloudflare account"),
        "{}",
        err.message
    );
    let request = sims.cf().requests().pop().unwrap();
    assert!(
        request.path.ends_with("/access/users/..%2F..%2Fusers"),
        "{}",
        request.path
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn reads_are_retried_after_503s() {
    let sims = Sims::start(tenant(1, 0)).await;
    let engine = sims.engine();
    sims.cf().inject(Fault::Status(503), 2);
    let name = eval(&engine, &format!(r#"cloudflare::get_user("{}").name"#, cf_id(1))).await;
    assert_eq!(name, json!("User 1"));
    let statuses: Vec<u16> = sims.cf().requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    sims.shutdown().await;
}

#[tokio::test]
async fn create_user_is_never_resent_after_a_503() {
    let sims = Sims::start(tenant(1, 0)).await;
    let engine = sims.engine();
    sims.cf().inject(Fault::Status(503), 1);
    let err = eval_err(&engine, r#"cloudflare::create_user(#{email: "once@example.com"})"#).await;
    assert_eq!(err.records.audit[0].status, Some(503));
    let posts = sims.cf().requests().into_iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1);
    assert_eq!(sims.cf().users().len(), 1);
    sims.shutdown().await;
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_calls_succeed() {
    let limit = RateLimit {
        requests: 4,
        window: Duration::from_secs(1),
    };
    let sims = Sims::start_with(
        tenant(12, 0),
        SimOptions {
            rate_limit: Some(limit),
            ..SimOptions::default()
        },
    )
    .await;
    let engine = sims.engine();
    // Twelve reads at once: more than the window allows before any answer can tell the client so.
    let script = "parallel(cloudflare::list_users().map(|u| u.id), |id| cloudflare::get_user(id).email).len()";
    let outcome = engine.run(script, RunOptions::new().concurrency(12)).await.unwrap();
    assert_eq!(outcome.result, json!(12));
    let log = sims.cf().requests();
    let first_429 = log
        .iter()
        .position(|r| r.status == 429)
        .expect("no request was rate limited");
    let after = log[first_429 + 1..]
        .iter()
        .find(|r| r.status == 200)
        .expect("nothing succeeded after the 429");
    assert!(
        after.at.duration_since(log[first_429].at) >= Duration::from_millis(900),
        "retried before retry-after"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn the_ratelimit_header_paces_a_sequential_run_without_any_429() {
    let limit = RateLimit {
        requests: 5,
        window: Duration::from_secs(1),
    };
    let sims = Sims::start_with(
        tenant(3, 0),
        SimOptions {
            rate_limit: Some(limit),
            ..SimOptions::default()
        },
    )
    .await;
    let engine = sims.engine();
    let n = eval(
        &engine,
        &format!(
            r#"let n = 0; for i in 0..12 {{ n += cloudflare::get_user("{}").active_device_count; }} n"#,
            cf_id(1)
        ),
    )
    .await;
    assert_eq!(n, json!(12));
    let statuses: Vec<u16> = sims.cf().requests().iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    sims.shutdown().await;
}

#[tokio::test]
async fn plan_mode_sends_no_change_to_cloudflare() {
    let sims = Sims::start(tenant(3, 0)).await;
    let engine = sims.engine();
    let script = format!(
        r#"let u = cloudflare::create_user(#{{email: "p@example.com"}}); cloudflare::update_user("{a}", #{{name: "x"}}); cloudflare::delete_user("{b}"); u.id"#,
        a = cf_id(1),
        b = cf_id(2)
    );
    let outcome = engine.run(&script, RunOptions::new().plan(true)).await.unwrap();
    assert_eq!(outcome.result, json!("(planned)"));
    assert_eq!(outcome.records.planned_changes.len(), 3);
    assert!(sims.cf().requests().is_empty(), "{:?}", sims.cf().requests());
    assert_eq!(sims.cf().users().len(), 3);
    sims.shutdown().await;
}
