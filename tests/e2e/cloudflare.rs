//! The Cloudflare provider over real HTTP against the simulator: every action, paging, both
//! auth schemes, every error shape, rate limits and retries.

use std::time::Duration;

use runbook_core::RunOptions;
use runbook_sim::{AuthUsed, Fault, RateLimit, RateLimitMode, SimOptions};
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
    // A service that says nothing of its budget until it answers 429 (with the `Ratelimit`
    // header, the listing's answer would let the client hold back and draw no 429 at all); a
    // window long enough that all twelve arrive inside it even on a loaded machine.
    let limit = RateLimit {
        requests: 4,
        window: Duration::from_secs(2),
    };
    let sims = Sims::start_with(
        tenant(12, 0),
        SimOptions {
            rate_limit: Some(limit),
            rate_limit_mode: RateLimitMode::SlidingWindowSilent,
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
        after.at.duration_since(log[first_429].at) >= Duration::from_millis(1800),
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

/// Requests to the Access authentication log.
fn log_requests(sims: &Sims) -> Vec<runbook_sim::LoggedRequest> {
    sims.cf()
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/access/logs/access_requests"))
        .collect()
}

fn query_has(request: &runbook_sim::LoggedRequest, pair: &str) -> bool {
    request.query.as_deref().unwrap_or("").split('&').any(|p| p == pair)
}

/// A tenant of `users` users whose authentication log holds `rows` allowed logins, one a second
/// going back from an hour ago, and nothing else (no failed logins).
fn logged_tenant(users: usize, rows: usize) -> serde_json::Value {
    let start = jiff::Timestamp::now().as_second() - 3600;
    let rows: Vec<serde_json::Value> = (0..rows)
        .map(|i| {
            let at = jiff::Timestamp::from_second(start - i as i64).unwrap();
            json!({
                "user_email": format!("user{}@example.com", i % users.max(1) + 1),
                "created_at": at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "allowed": true,
                "action": "login",
                "ray_id": format!("{i:016x}"),
                "ip_address": "192.0.2.7",
                "app_uid": "app-uid-1",
                "app_domain": "grafana.example.com",
                "connection": "saml",
            })
        })
        .collect();
    let mut tenant = tenant(users, 0);
    tenant["cloudflare"]["access_requests"] = json!(rows);
    tenant["cloudflare"]["failed_logins"] = json!({});
    tenant
}

#[tokio::test]
async fn access_requests_reads_2500_rows_in_three_pages_each_row_once() {
    let sims = Sims::start(logged_tenant(5, 2500)).await;
    let engine = sims.engine();
    let result = eval(
        &engine,
        "let rows = cloudflare::access_requests(); let rays = #{}; for r in rows { rays[r.ray_id] = true; } [rows.len(), rays.len(), rows[0].app_domain]",
    )
    .await;
    assert_eq!(result, json!([2500, 2500, "grafana.example.com"]));
    let log = log_requests(&sims);
    assert_eq!(log.len(), 3, "{log:#?}");
    for (n, request) in log.iter().enumerate() {
        assert!(query_has(request, &format!("page={}", n + 1)), "{request:?}");
        assert!(query_has(request, "per_page=1000"), "{request:?}");
        assert!(
            request.query.as_deref().unwrap_or("").contains("until="),
            "until is pinned: {request:?}"
        );
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn access_requests_steps_down_to_a_page_size_the_log_takes_and_remembers_it() {
    let sims = Sims::start(logged_tenant(3, 250)).await;
    sims.cf().set_access_log_max_per_page(100);
    let engine = sims.engine();
    let outcome = engine
        .run("cloudflare::access_requests().len()", RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.result, json!(250));
    let sizes: Vec<(u16, bool)> = log_requests(&sims)
        .iter()
        .map(|r| (r.status, query_has(r, "per_page=100")))
        .collect();
    assert_eq!(sizes, [(400, false), (200, true), (200, true), (200, true)]);
    assert!(
        outcome
            .records
            .logs
            .iter()
            .any(|l| l.level == "warn" && l.message.contains("pages of 100")),
        "{:?}",
        outcome.records.logs
    );

    sims.cf().clear_requests();
    let again = eval(&engine, r#"cloudflare::access_requests(#{email: "user1@"}).len()"#).await;
    assert_eq!(again, json!(84), "every third row is user1's");
    let first = &log_requests(&sims)[0];
    assert!(
        query_has(first, "per_page=100") && first.status == 200,
        "the second call starts at the size that worked: {first:?}"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn access_requests_reads_on_when_the_log_answers_smaller_pages_without_a_word() {
    let sims = Sims::start(logged_tenant(3, 250)).await;
    sims.cf().set_access_log_max_per_page(100);
    sims.cf().set_access_log_caps_silently(true);
    let engine = sims.engine();
    let outcome = engine
        .run("cloudflare::access_requests().len()", RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.result, json!(250), "rows past the first capped page were lost");
    assert_eq!(log_requests(&sims).len(), 3, "pages of 100: 100, 100, 50");
    assert!(
        outcome
            .records
            .logs
            .iter()
            .any(|l| l.level == "warn" && l.message.contains("answered 100 rows when asked for pages of 1000")),
        "{:?}",
        outcome.records.logs
    );
    sims.shutdown().await;
}

/// A tenant whose log holds allowed logins and, from the fixture's failed logins, refusals.
fn failures_tenant() -> serde_json::Value {
    let mut tenant = logged_tenant(6, 40);
    let recent = |i: usize, hours: f64, ray: &str| {
        let mut f = crate::fixtures::failure(i, &crate::fixtures::hours_ago(hours));
        f["metadata"]["ray_id"] = json!(ray);
        f
    };
    tenant["cloudflare"]["failed_logins"] = json!({
        cf_id(1): [recent(1, 1.0, "r1a"), recent(1, 2.0, "r1b"), recent(1, 72.0, "r1old")],
        cf_id(3): [recent(3, 3.0, "r3a")],
    });
    tenant
}

const FAILURES_SINCE: &str =
    r#"cloudflare::failed_logins_since(now() - 24 * 3600).map(|r| [r.user_email, r.ray_id, r.allowed, r.created_at])"#;

#[tokio::test]
async fn failed_logins_since_returns_only_failures_even_when_the_log_ignores_allowed() {
    let sims = Sims::start(failures_tenant()).await;
    sims.cf().set_access_log_ignores_allowed(true);
    let engine = sims.engine();
    let rows = eval(&engine, FAILURES_SINCE).await;
    let rows = rows.as_array().unwrap();
    let rays: Vec<&str> = rows.iter().map(|r| r[1].as_str().unwrap()).collect();
    assert_eq!(
        rays,
        ["r3a", "r1b", "r1a"],
        "oldest first, the 72-hour-old one left out"
    );
    assert!(rows.iter().all(|r| r[2] == json!(false)));
    assert_eq!(rows[0][0], "user3@example.com");
    let log = log_requests(&sims);
    // A short first page, then the second, empty: the log ended (and was not capped silently).
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().all(|r| query_has(r, "allowed=false")), "{log:?}");
    assert!(sims.cf().requests().iter().all(|r| !r.path.ends_with("/failed_logins")));
    sims.shutdown().await;
}

#[tokio::test]
async fn failed_logins_since_falls_back_to_each_user_when_the_log_refuses_the_token() {
    let sims = Sims::start(failures_tenant()).await;
    let engine = sims.engine();
    let from_log = eval(&engine, FAILURES_SINCE).await;

    sims.cf().set_access_log_refuses_tokens(true);
    sims.cf().clear_requests();
    let outcome = engine.run(FAILURES_SINCE, RunOptions::new()).await.unwrap();
    assert_eq!(outcome.result, from_log, "the same failures either way");
    let per_user = sims
        .cf()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/failed_logins"))
        .count();
    assert_eq!(per_user, 6, "one request per user");
    assert_eq!(log_requests(&sims)[0].status, 403);
    assert!(
        outcome
            .records
            .logs
            .iter()
            .any(|l| l.level == "warn" && l.message.contains("refused the credentials (403)")),
        "{:?}",
        outcome.records.logs
    );

    // With the global key the log answers again.
    sims.cf().clear_requests();
    let cf = sims.cf();
    let key = json!({"base_url": cf.base_url(), "account_id": cf.account_id(), "api_email": cf.api_email(), "api_key": cf.api_key()});
    let engine = sims.engine_with(key.as_object().unwrap().clone(), sims.privx_config());
    assert_eq!(eval(&engine, FAILURES_SINCE).await, from_log);
    assert!(cf.requests().iter().all(|r| !r.path.ends_with("/failed_logins")));
    sims.shutdown().await;
}

#[tokio::test]
async fn access_requests_names_a_refused_token_and_what_to_set() {
    let sims = Sims::start(logged_tenant(1, 3)).await;
    sims.cf().set_access_log_refuses_tokens(true);
    let engine = sims.engine();
    let err = eval_err(&engine, "cloudflare::access_requests()").await;
    assert!(
        err.message
            .contains("documents only the global API key: set CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY"),
        "{}",
        err.message
    );
    let err = eval_err(&engine, r#"cloudflare::access_requests(#{since: "last tuesday"})"#).await;
    assert!(err.message.contains("is not an RFC 3339 time"), "{}", err.message);
    sims.shutdown().await;
}

#[tokio::test]
async fn revoke_user_ends_the_sessions_and_keeps_the_user() {
    let sims = Sims::start(tenant(2, 0)).await;
    let engine = sims.engine();
    let id = cf_id(1);
    let before = eval(&engine, &format!(r#"cloudflare::active_sessions("{id}").len()"#)).await;
    assert_eq!(before, json!(1));
    let script = format!(
        r#"cloudflare::revoke_user("user1@example.com", #{{devices: true}}); cloudflare::active_sessions("{id}").len()"#
    );
    assert_eq!(eval(&engine, &script).await, json!(0));
    assert_eq!(
        sims.cf().revocations(),
        [json!({"email": "user1@example.com", "user_uid": null, "devices": true, "warp_session_reauth": false})]
    );
    let user = sims.cf().user(&id).expect("the user is kept");
    assert_eq!(user["active_device_count"], json!(0));
    let post = sims.cf().requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.body, Some(json!({"email": "user1@example.com", "devices": true})));
    sims.shutdown().await;
}

#[tokio::test]
async fn seats_are_set_and_freed_by_seat_uid() {
    let mut fixture = tenant(3, 0);
    fixture["cloudflare"]["users"][2]
        .as_object_mut()
        .unwrap()
        .remove("seat_uid");
    let sims = Sims::start(fixture).await;
    let engine = sims.engine();
    let freed = eval(&engine, &format!(r#"cloudflare::free_seats("{}")"#, cf_id(1))).await;
    assert_eq!(freed["seat_uid"], "seat-1");
    assert_eq!(
        (freed["access_seat"].clone(), freed["gateway_seat"].clone()),
        (json!(false), json!(false))
    );
    let user = sims.cf().user(&cf_id(1)).unwrap();
    assert_eq!(
        (user["access_seat"].clone(), user["gateway_seat"].clone()),
        (json!(false), json!(false))
    );
    let patch = sims.cf().requests().into_iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(
        patch.body,
        Some(json!([{"seat_uid": "seat-1", "access_seat": false, "gateway_seat": false}]))
    );

    let seats = eval(
        &engine,
        r#"cloudflare::update_seats([#{seat_uid: "seat-2", access_seat: true, gateway_seat: true}]).map(|s| s.gateway_seat)"#,
    )
    .await;
    assert_eq!(seats, json!([true]));
    assert_eq!(sims.cf().user(&cf_id(2)).unwrap()["gateway_seat"], json!(true));

    let err = eval_err(&engine, &format!(r#"cloudflare::free_seats("{}")"#, cf_id(3))).await;
    assert!(err.message.contains("has no seat_uid"), "{}", err.message);
    let err = eval_err(
        &engine,
        r#"cloudflare::update_seats([#{seat_uid: "nope", access_seat: false, gateway_seat: false}])"#,
    )
    .await;
    assert!(err.message.contains("Cloudflare answered 400"), "{}", err.message);
    sims.shutdown().await;
}

#[tokio::test]
async fn membership_edits_keep_the_default_flag_and_lose_no_member_when_run_in_parallel() {
    let mut fixture = tenant(1, 0);
    fixture["cloudflare"]["groups"] = json!([
        {"id": "g-all", "name": "Everyone", "include": [{"email": {"email": "ann@example.com"}}], "is_default": true},
    ]);
    let sims = Sims::start(fixture).await;
    let engine = sims.engine();
    let script = r#"
        let emails = ["b@example.com", "c@example.com", "d@example.com", "e@example.com", "f@example.com"];
        parallel(emails, |e| cloudflare::add_to_group("g-all", e).id).len()
    "#;
    assert_eq!(eval(&engine, script).await, json!(5));
    let group = sims.cf().groups().into_iter().find(|g| g["id"] == "g-all").unwrap();
    let mut members: Vec<&str> = group["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["email"]["email"].as_str().unwrap())
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        vec![
            "ann@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com",
            "e@example.com",
            "f@example.com"
        ],
        "a concurrent read-modify-write dropped a member"
    );
    assert_eq!(
        group["is_default"], true,
        "the full replace cleared the default flag: {group}"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn groups_are_managed_and_membership_edits_send_nothing_when_nothing_changes() {
    let mut fixture = tenant(1, 0);
    fixture["cloudflare"]["groups"] = json!([
        {"id": "g-admins", "name": "Admins", "include": [{"email": {"email": "ann@example.com"}}], "exclude": [{"email_domain": {"domain": "partner.example"}}], "require": []},
    ]);
    let sims = Sims::start(fixture).await;
    let engine = sims.engine();
    let puts = |sims: &Sims| sims.cf().requests().iter().filter(|r| r.method == "PUT").count();

    let created = eval(
        &engine,
        r#"cloudflare::create_group(#{name: "Contractors", include: [#{email_domain: #{domain: "partner.example"}}]})"#,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let post = sims.cf().requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(
        (post.status, post.body),
        (
            201,
            Some(json!({"name": "Contractors", "include": [{"email_domain": {"domain": "partner.example"}}]}))
        )
    );
    let names = eval(&engine, "cloudflare::list_groups().map(|g| g.name)").await;
    assert_eq!(names, json!(["Admins", "Contractors"]));
    assert_eq!(
        eval(&engine, r#"cloudflare::list_groups(#{search: "contr"}).len()"#).await,
        json!(1)
    );

    // A rename sends the rules back as they are: the API replaces the whole group.
    eval(
        &engine,
        r#"cloudflare::update_group("g-admins", #{name: "Administrators"})"#,
    )
    .await;
    let put = sims.cf().requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(
        put.body,
        Some(
            json!({"name": "Administrators", "include": [{"email": {"email": "ann@example.com"}}], "exclude": [{"email_domain": {"domain": "partner.example"}}], "require": []})
        )
    );

    let added = eval(
        &engine,
        r#"cloudflare::add_to_group("g-admins", "bob@example.com").include.len()"#,
    )
    .await;
    assert_eq!(added, json!(2));
    assert_eq!(puts(&sims), 2);
    let again = eval(
        &engine,
        r#"cloudflare::add_to_group("g-admins", "BOB@example.com").include.len()"#,
    )
    .await;
    assert_eq!(again, json!(2));
    assert_eq!(puts(&sims), 2, "already there: no PUT");
    let removed = eval(
        &engine,
        r#"cloudflare::remove_from_group("g-admins", "ann@example.com").include"#,
    )
    .await;
    assert_eq!(removed, json!([{"email": {"email": "bob@example.com"}}]));
    assert_eq!(puts(&sims), 3);
    eval(
        &engine,
        r#"cloudflare::remove_from_group("g-admins", "ann@example.com")"#,
    )
    .await;
    assert_eq!(puts(&sims), 3, "already absent: no PUT");
    let group = sims.cf().groups().into_iter().find(|g| g["id"] == "g-admins").unwrap();
    assert_eq!(group["name"], "Administrators");
    assert_eq!(
        group["exclude"],
        json!([{"email_domain": {"domain": "partner.example"}}]),
        "kept through every edit"
    );

    assert_eq!(
        eval(&engine, &format!(r#"cloudflare::delete_group("{id}")"#)).await,
        json!(null)
    );
    assert_eq!(sims.cf().groups().len(), 1);
    let err = eval_err(&engine, &format!(r#"cloudflare::get_group("{id}")"#)).await;
    assert!(
        err.message
            .contains(&format!("no Access group {id} in Cloudflare account")),
        "{}",
        err.message
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn plan_mode_sends_no_revocation_seat_or_group_change() {
    let sims = Sims::start(tenant(2, 0)).await;
    let engine = sims.engine();
    let script = format!(
        r#"cloudflare::revoke_user("user1@example.com");
           let s = cloudflare::free_seats("{a}");
           let g = cloudflare::create_group(#{{name: "X", include: [#{{everyone: #{{}}}}]}});
           cloudflare::add_to_group("g-1", "a@example.com");
           [s.access_seat, g.id]"#,
        a = cf_id(1)
    );
    let outcome = engine.run(&script, RunOptions::new().plan(true)).await.unwrap();
    assert_eq!(outcome.result, json!([false, "(planned)"]));
    assert_eq!(outcome.records.planned_changes.len(), 4);
    assert!(sims.cf().requests().is_empty(), "{:?}", sims.cf().requests());
    sims.shutdown().await;
}
