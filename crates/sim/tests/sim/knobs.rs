//! Rate limits, faults, latency and the request log: the knobs tests turn.

use std::time::Duration;

use reqwest::Method;
use runbook_sim::{AuthUsed, CloudflareSim, Fault, RateLimit, SimOptions};
use serde_json::json;

use crate::support::{
    cf, cf_error_code, cf_fixture, cf_sim, cf_unauthenticated, cf_user_id, privx, privx_fixture, privx_login,
    privx_sim, send,
};

fn parse_ratelimit(header: &str) -> (u64, u64) {
    // "default";r=<remaining>;t=<seconds>
    let mut remaining = None;
    let mut reset = None;
    for part in header.split(';') {
        if let Some(r) = part.strip_prefix("r=") {
            remaining = r.parse().ok();
        }
        if let Some(t) = part.strip_prefix("t=") {
            reset = t.parse().ok();
        }
    }
    (remaining.expect("r="), reset.expect("t="))
}

#[tokio::test]
async fn the_fixed_window_answers_429_with_retry_after_and_every_answer_carries_ratelimit() {
    let opts = SimOptions {
        rate_limit: Some(RateLimit {
            requests: 3,
            window: Duration::from_secs(60),
        }),
        ..SimOptions::default()
    };
    let sim = CloudflareSim::start(cf_fixture(1), opts).await.expect("starts");

    for expected_remaining in [2, 1, 0] {
        let reply = send(cf(&sim, Method::GET, "")).await;
        assert_eq!(reply.status, 200);
        let (remaining, reset) = parse_ratelimit(&reply.header("ratelimit").expect("a Ratelimit header"));
        assert!(reply.header("ratelimit").is_some_and(|h| h.starts_with("\"default\";")));
        assert_eq!(remaining, expected_remaining);
        assert!((1..=60).contains(&reset), "t={reset}");
        assert_eq!(
            reply.header("ratelimit-policy").as_deref(),
            Some("\"default\";q=3;w=60")
        );
    }

    let reply = send(cf(&sim, Method::POST, "").json(&json!({"email": "blocked@example.com"}))).await;
    assert_eq!(reply.status, 429);
    cf_error_code(&reply);
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&retry_after), "retry-after={retry_after}");
    assert_eq!(
        parse_ratelimit(&reply.header("ratelimit").expect("Ratelimit on the 429")).0,
        0
    );
    assert_eq!(sim.users().len(), 1, "a rate-limited create changes nothing");

    // Auth failures are blocked too: the window counts every request.
    assert_eq!(send(cf_unauthenticated(&sim, Method::GET, "")).await.status, 429);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);

    sim.set_rate_limit(None);
    let reply = send(cf(&sim, Method::GET, "")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("ratelimit").is_none(), "no limit, no Ratelimit header");
}

#[tokio::test]
async fn a_new_window_opens_after_the_old_one_ends() {
    let sim = cf_sim(cf_fixture(1)).await;
    sim.set_rate_limit(Some(RateLimit {
        requests: 1,
        window: Duration::from_millis(200),
    }));
    assert_eq!(send(cf(&sim, Method::GET, "")).await.status, 200);
    let limited = send(cf(&sim, Method::GET, "")).await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.header("retry-after").as_deref(),
        Some("1"),
        "at least one whole second"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(send(cf(&sim, Method::GET, "")).await.status, 200);
}

#[tokio::test]
async fn each_fault_kind_answers_as_a_broken_service_would_and_changes_nothing() {
    let sim = cf_sim(cf_fixture(1)).await;
    let create = || cf(&sim, Method::POST, "").json(&json!({"email": "faulted@example.com"}));

    sim.inject(Fault::Status(503), 2);
    for _ in 0..2 {
        let reply = send(create()).await;
        assert_eq!(reply.status, 503);
        cf_error_code(&reply);
    }

    sim.inject(Fault::TruncatedJson, 1);
    let reply = send(create()).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    assert!(!reply.text.is_empty());
    assert!(
        serde_json::from_str::<serde_json::Value>(&reply.text).is_err(),
        "cut in half: {}",
        reply.text
    );

    sim.inject(Fault::Html(502), 1);
    let reply = send(create()).await;
    assert_eq!(reply.status, 502);
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(
        reply.text.contains("<html>") && reply.text.contains("502 Bad Gateway"),
        "{}",
        reply.text
    );

    sim.inject(Fault::Empty(500), 1);
    let reply = send(create()).await;
    assert_eq!(reply.status, 500);
    assert!(reply.text.is_empty());

    assert_eq!(sim.users().len(), 1, "no faulted create reached the tenant");
    let reply = send(create()).await;
    assert_eq!(reply.status, 201, "faults are used up: {}", reply.text);
    assert_eq!(sim.users().len(), 2);
}

#[tokio::test]
async fn faults_come_before_authentication() {
    let sim = cf_sim(cf_fixture(1)).await;
    sim.inject(Fault::Status(500), 1);
    assert_eq!(send(cf_unauthenticated(&sim, Method::GET, "")).await.status, 500);
    assert_eq!(send(cf_unauthenticated(&sim, Method::GET, "")).await.status, 403);
}

#[tokio::test]
async fn the_request_log_records_every_request_in_order_with_its_status() {
    let sim = cf_sim(cf_fixture(1)).await;
    send(cf(&sim, Method::GET, "?per_page=5&page=1")).await;
    send(cf(&sim, Method::POST, "").json(&json!({"email": "logged@example.com", "name": "L"}))).await;
    send(
        cf_unauthenticated(&sim, Method::GET, &format!("/{}", cf_user_id(0)))
            .header("X-Auth-Email", sim.api_email())
            .header("X-Auth-Key", sim.api_key()),
    )
    .await;
    send(cf_unauthenticated(&sim, Method::GET, "")).await;
    sim.inject(Fault::Empty(503), 1);
    send(cf(&sim, Method::GET, "")).await;

    let log = sim.requests();
    let summary: Vec<(&str, u16, AuthUsed)> = log.iter().map(|r| (r.method.as_str(), r.status, r.auth)).collect();
    assert_eq!(
        summary,
        vec![
            ("GET", 200, AuthUsed::Bearer),
            ("POST", 201, AuthUsed::Bearer),
            ("GET", 200, AuthUsed::LegacyKey),
            ("GET", 403, AuthUsed::None),
            ("GET", 503, AuthUsed::Bearer),
        ]
    );
    let users_path = format!("/client/v4/accounts/{}/access/users", sim.account_id());
    assert_eq!(log[0].path, users_path);
    assert_eq!(log[0].query.as_deref(), Some("per_page=5&page=1"));
    assert_eq!(log[0].body, None);
    assert_eq!(log[1].body, Some(json!({"email": "logged@example.com", "name": "L"})));
    assert_eq!(log[2].path, format!("{users_path}/{}", cf_user_id(0)));
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));

    sim.clear_requests();
    assert!(sim.requests().is_empty());
    send(cf(&sim, Method::GET, "")).await;
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn latency_holds_requests_in_flight_at_once() {
    let sim = cf_sim(cf_fixture(1)).await;
    sim.set_latency(Duration::from_millis(400));
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let request = cf(&sim, Method::GET, "");
            tokio::spawn(async move { send(request).await.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("the task finishes"), 200);
    }
    assert!(
        sim.max_in_flight() >= 2,
        "concurrent requests overlap while they wait: {}",
        sim.max_in_flight()
    );
    sim.clear_requests();
    assert_eq!(sim.max_in_flight(), 0);
}

#[tokio::test]
async fn privx_has_the_same_knobs_without_ratelimit_headers() {
    let sim = privx_sim(privx_fixture(2)).await;
    let token = privx_login(&sim).await;
    sim.set_rate_limit(Some(RateLimit {
        requests: 1,
        window: Duration::from_secs(30),
    }));
    let ok = send(privx(&sim, &token, Method::GET, "/role-store/api/v1/users/u-0000")).await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.header("ratelimit").is_none(),
        "PrivX documents no rate-limit headers"
    );
    let limited =
        send(privx(&sim, &token, Method::POST, "/role-store/api/v1/users/mfa/disable").json(&json!(["u-0000"]))).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.json()["error_code"], json!("TOO_MANY_REQUESTS"));
    assert!(limited.header("retry-after").is_some());
    assert_eq!(
        sim.user("u-0000").expect("user")["mfa"]["status"],
        json!("ENABLED"),
        "a 429 changes nothing"
    );
    sim.set_rate_limit(None);

    sim.inject(Fault::Status(503), 1);
    let reply = send(privx(&sim, &token, Method::GET, "/role-store/api/v1/users/u-0000")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error_code"], json!("SERVICE_UNAVAILABLE"));
    sim.inject(Fault::Html(504), 1);
    let reply = send(privx(&sim, &token, Method::GET, "/role-store/api/v1/users/u-0000")).await;
    assert_eq!(reply.status, 504);
    assert!(reply.text.contains("<html>"));
    sim.inject(Fault::TruncatedJson, 1);
    let reply = send(privx(&sim, &token, Method::GET, "/role-store/api/v1/users/u-0000")).await;
    assert!(serde_json::from_str::<serde_json::Value>(&reply.text).is_err());
    sim.inject(Fault::Empty(502), 1);
    let reply = send(privx(&sim, &token, Method::GET, "/role-store/api/v1/users/u-0000")).await;
    assert_eq!((reply.status, reply.text.as_str()), (502, ""));

    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200, 429, 503, 504, 200, 502]);
    assert_eq!(sim.requests()[0].auth, AuthUsed::Basic);
}
