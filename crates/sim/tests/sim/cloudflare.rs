//! The Cloudflare Zero Trust users API as a client sees it.

use std::collections::BTreeSet;

use reqwest::Method;
use runbook_sim::CloudflareFixture;
use serde_json::{Value, json};

use crate::support::{cf, cf_error_code, cf_fixture, cf_sim, cf_unauthenticated, cf_user_id, client, send};

#[tokio::test]
async fn list_answers_the_success_envelope_with_result_info() {
    let sim = cf_sim(cf_fixture(3)).await;
    let reply = send(cf(&sim, Method::GET, "")).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    let body = reply.json();
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["errors"], json!([]));
    assert_eq!(body["messages"], json!([]));
    assert_eq!(body["result"].as_array().map(Vec::len), Some(3));
    assert_eq!(body["result"][0]["email"], json!("user0@example.com"));
    assert_eq!(
        body["result_info"],
        json!({"page": 1, "per_page": 1000, "count": 3, "total_count": 3, "total_pages": 1}),
        "the documented default page size is 1000"
    );
}

#[tokio::test]
async fn twenty_five_hundred_users_come_in_pages_of_1000_1000_500() {
    let sim = cf_sim(cf_fixture(2500)).await;
    let mut seen = BTreeSet::new();
    for (page, expected) in [(1, 1000), (2, 1000), (3, 500), (4, 0)] {
        let reply = send(cf(&sim, Method::GET, &format!("?page={page}&per_page=1000"))).await;
        assert_eq!(reply.status, 200);
        let body = reply.json();
        let items = body["result"].as_array().expect("a result array");
        assert_eq!(items.len(), expected, "page {page}");
        assert_eq!(
            body["result_info"],
            json!({"page": page, "per_page": 1000, "count": expected, "total_count": 2500, "total_pages": 3})
        );
        seen.extend(items.iter().map(|u| u["id"].as_str().expect("an id").to_owned()));
    }
    assert_eq!(seen.len(), 2500, "every user exactly once across the pages");
}

#[tokio::test]
async fn per_page_and_page_outside_their_range_are_400() {
    let sim = cf_sim(cf_fixture(2)).await;
    for query in [
        "per_page=0",
        "per_page=-1",
        "per_page=ten",
        "per_page=1001",
        "page=0",
        "page=-3",
        "page=x",
    ] {
        let reply = send(cf(&sim, Method::GET, &format!("?{query}"))).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        cf_error_code(&reply);
    }
    let reply = send(cf(&sim, Method::GET, "?per_page=1000")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn filters_match_email_exactly_and_name_or_search_as_substrings() {
    let sim = cf_sim(cf_fixture(12)).await;
    let emails = |body: Value| -> Vec<String> {
        body["result"]
            .as_array()
            .expect("a result array")
            .iter()
            .map(|u| u["email"].as_str().expect("an email").to_owned())
            .collect()
    };

    let body = send(cf(&sim, Method::GET, "?email=USER1@Example.com")).await.json();
    assert_eq!(
        emails(body.clone()),
        vec!["user1@example.com"],
        "exact and case-insensitive, not user10/user11"
    );
    assert_eq!(body["result_info"]["total_count"], json!(1));

    let body = send(cf(&sim, Method::GET, "?email=user1")).await.json();
    assert!(emails(body).is_empty(), "email is not a substring match");

    let body = send(cf(&sim, Method::GET, "?name=user%201")).await.json();
    assert_eq!(
        emails(body),
        vec!["user1@example.com", "user10@example.com", "user11@example.com"]
    );

    let body = send(cf(&sim, Method::GET, "?search=R11%40EXAMPLE")).await.json();
    assert_eq!(emails(body), vec!["user11@example.com"], "search covers the email");

    let body = send(cf(&sim, Method::GET, "?search=user%2011")).await.json();
    assert_eq!(emails(body), vec!["user11@example.com"], "search covers the name");

    let body = send(cf(&sim, Method::GET, "?name=user%201&per_page=2&page=2"))
        .await
        .json();
    assert_eq!(emails(body.clone()), vec!["user11@example.com"]);
    assert_eq!(body["result_info"]["total_count"], json!(3));
    assert_eq!(body["result_info"]["total_pages"], json!(2));
}

#[tokio::test]
async fn bearer_and_legacy_key_are_accepted_and_anything_else_is_403() {
    let sim = cf_sim(cf_fixture(1)).await;
    assert_eq!(send(cf(&sim, Method::GET, "")).await.status, 200);

    let legacy = cf_unauthenticated(&sim, Method::GET, "")
        .header("X-Auth-Email", sim.api_email())
        .header("X-Auth-Key", sim.api_key());
    assert_eq!(send(legacy).await.status, 200);

    let refused = [
        cf_unauthenticated(&sim, Method::GET, ""),
        cf_unauthenticated(&sim, Method::GET, "").bearer_auth("wrong-token"),
        cf_unauthenticated(&sim, Method::GET, "").header("Authorization", sim.api_token()),
        cf_unauthenticated(&sim, Method::GET, "").header("X-Auth-Key", sim.api_key()),
        cf_unauthenticated(&sim, Method::GET, "")
            .header("X-Auth-Email", sim.api_email())
            .header("X-Auth-Key", "wrong-key"),
        // Every credential presented must hold, not just one of them.
        cf(&sim, Method::GET, "")
            .header("X-Auth-Email", sim.api_email())
            .header("X-Auth-Key", "wrong-key"),
    ];
    for request in refused {
        let reply = send(request).await;
        assert_eq!(reply.status, 403, "{}", reply.text);
        assert_eq!(cf_error_code(&reply), 10000);
        assert_eq!(reply.json()["errors"][0]["message"], json!("Authentication error"));
    }
}

#[tokio::test]
async fn another_account_is_403_and_a_malformed_one_cannot_be_routed() {
    let sim = cf_sim(cf_fixture(1)).await;
    let other = format!(
        "{}/accounts/ffffffffffffffffffffffffffffffff/access/users",
        sim.base_url()
    );
    let reply = send(client().get(other).bearer_auth(sim.api_token())).await;
    assert_eq!(reply.status, 403);
    assert_eq!(cf_error_code(&reply), 10000);

    let malformed = format!("{}/accounts/my-account/access/users", sim.base_url());
    let reply = send(client().get(malformed).bearer_auth(sim.api_token())).await;
    assert_eq!(reply.status, 404);
    assert_eq!(cf_error_code(&reply), 7003);

    let unknown_route = format!("{}/accounts/{}/access/apps", sim.base_url(), sim.account_id());
    let reply = send(client().get(unknown_route).bearer_auth(sim.api_token())).await;
    assert_eq!(reply.status, 404);
    assert_eq!(cf_error_code(&reply), 7003);

    let reply = send(cf(&sim, Method::PATCH, &format!("/{}", cf_user_id(0)))).await;
    assert_eq!(reply.status, 405);
    cf_error_code(&reply);
}

#[tokio::test]
async fn get_returns_the_user_or_a_404_envelope() {
    let sim = cf_sim(cf_fixture(2)).await;
    let reply = send(cf(&sim, Method::GET, &format!("/{}", cf_user_id(1)))).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["result"]["email"], json!("user1@example.com"));
    assert!(body.get("result_info").is_none(), "result_info is for collections only");

    let reply = send(cf(&sim, Method::GET, "/9a1c0d52-0000-4000-8000-000000000000")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(cf_error_code(&reply), 1001);
}

#[tokio::test]
async fn fixture_users_come_back_field_for_field_including_huge_integers() {
    let user = json!({
        "id": cf_user_id(0),
        "email": "big@example.com",
        "name": "",
        "active_device_count": u64::MAX,
        "custom_field": {"nested": [1, 2.5, "x"]},
    });
    let fixture = CloudflareFixture {
        users: vec![user.clone()],
        ..CloudflareFixture::default()
    };
    let sim = cf_sim(fixture).await;
    let reply = send(cf(&sim, Method::GET, &format!("/{}", cf_user_id(0)))).await;
    assert!(reply.text.contains("18446744073709551615"), "{}", reply.text);
    assert_eq!(reply.json()["result"], user);
    assert_eq!(send(cf(&sim, Method::GET, "")).await.json()["result"][0], user);
}

#[tokio::test]
async fn create_answers_201_with_a_new_user_and_refuses_duplicates_and_bad_emails() {
    let sim = cf_sim(cf_fixture(1)).await;
    let reply = send(cf(&sim, Method::POST, "").json(&json!({"email": "new@example.com", "name": "New Person"}))).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let user = reply.json()["result"].clone();
    let id = user["id"].as_str().expect("an id").to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(id.matches('-').count(), 4, "a UUID: {id}");
    assert_eq!(user["email"], json!("new@example.com"));
    assert_eq!(user["name"], json!("New Person"));
    assert_eq!(user["access_seat"], json!(false));
    assert_eq!(user["gateway_seat"], json!(false));
    assert_eq!(user["active_device_count"], json!(0));
    assert_eq!(user["last_successful_login"], Value::Null);
    assert!(user["uid"].is_string() && user["uid"] != user["id"]);
    assert!(user["seat_uid"].is_string());
    for field in ["created_at", "updated_at"] {
        let stamp = user[field].as_str().expect("a timestamp");
        assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{field} is RFC 3339: {stamp}");
    }
    assert_eq!(sim.user(&id), Some(user.clone()));
    let listed = send(cf(&sim, Method::GET, "?email=new@example.com")).await.json();
    assert_eq!(listed["result"][0], user);

    let reply = send(cf(&sim, Method::POST, "").json(&json!({"email": "NEW@example.com"}))).await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    cf_error_code(&reply);

    for body in [
        json!({"name": "No Email"}),
        json!({"email": "not-an-address"}),
        json!({"email": 7}),
        json!([1]),
    ] {
        let reply = send(cf(&sim, Method::POST, "").json(&body)).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        cf_error_code(&reply);
    }
    let missing = send(cf(&sim, Method::POST, "").json(&json!({"name": "x"})))
        .await
        .json();
    assert_eq!(missing["errors"][0]["source"]["pointer"], json!("/email"));
    let reply = send(cf(&sim, Method::POST, "").body("{not json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(sim.users().len(), 2, "refused creates change nothing");
}

#[tokio::test]
async fn update_changes_only_the_name_and_needs_the_current_email() {
    let sim = cf_sim(cf_fixture(1)).await;
    let path = format!("/{}", cf_user_id(0));
    let reply =
        send(cf(&sim, Method::PUT, &path).json(&json!({"email": "user0@example.com", "name": "Renamed"}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let user = reply.json()["result"].clone();
    assert_eq!(user["name"], json!("Renamed"));
    assert_eq!(user["email"], json!("user0@example.com"));
    assert_ne!(user["updated_at"], json!("2024-01-01T00:00:00Z"));
    assert_eq!(user["created_at"], json!("2024-01-01T00:00:00Z"));
    assert_eq!(sim.user(&cf_user_id(0)), Some(user));

    for body in [
        json!({"email": "other@example.com", "name": "X"}),
        json!({"email": "user0@example.com"}),
        json!({"name": "X"}),
    ] {
        let reply = send(cf(&sim, Method::PUT, &path).json(&body)).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        cf_error_code(&reply);
    }
    let reply = send(
        cf(&sim, Method::PUT, "/00000000-0000-4000-8000-999999999999").json(&json!({"email": "a@b.c", "name": "X"})),
    )
    .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn delete_answers_202_and_the_user_and_its_records_are_gone() {
    let mut fixture = cf_fixture(2);
    let id = cf_user_id(0);
    fixture
        .active_sessions
        .insert(id.clone(), vec![json!({"name": "app", "metadata": {"nonce": "n1"}})]);
    fixture
        .last_seen_identity
        .insert(id.clone(), json!({"email": "user0@example.com"}));
    let sim = cf_sim(fixture).await;

    let reply = send(cf(&sim, Method::DELETE, &format!("/{id}"))).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["result"], json!({}));

    for suffix in ["", "/active_sessions", "/last_seen_identity", "/failed_logins"] {
        let reply = send(cf(&sim, Method::GET, &format!("/{id}{suffix}"))).await;
        assert_eq!(reply.status, 404, "{suffix}");
        assert_eq!(cf_error_code(&reply), 1001);
    }
    assert_eq!(send(cf(&sim, Method::DELETE, &format!("/{id}"))).await.status, 404);
    assert!(sim.user(&id).is_none());
    assert_eq!(sim.users().len(), 1);
}

#[tokio::test]
async fn sessions_failed_logins_and_identities_are_served_per_user() {
    let mut fixture = cf_fixture(2);
    let id = cf_user_id(0);
    let session = json!({
        "expiration": 1_767_225_600,
        "name": "Grafana",
        "metadata": {"apps": {"a1": {"hostname": "grafana.example.com", "name": "Grafana", "type": "self_hosted", "uid": "a1"}},
                     "expires": 1_767_225_600, "iat": 1_767_139_200, "nonce": "nonce-1", "ttl": 86400},
    });
    let identity =
        json!({"email": "user0@example.com", "geo": {"country": "FI"}, "devicePosture": {}, "is_warp": false});
    let failed =
        json!({"expiration": 1_767_225_600, "metadata": {"app_name": "Grafana", "ray_id": "abc", "extra": true}});
    fixture.active_sessions.insert(id.clone(), vec![session.clone()]);
    fixture
        .session_identities
        .insert(id.clone(), [("nonce-1".to_owned(), identity.clone())].into());
    fixture.failed_logins.insert(id.clone(), vec![failed.clone()]);
    fixture.last_seen_identity.insert(id.clone(), identity.clone());
    let sim = cf_sim(fixture).await;

    let body = send(cf(&sim, Method::GET, &format!("/{id}/active_sessions")))
        .await
        .json();
    assert_eq!(body["result"], json!([session]));

    let body = send(cf(&sim, Method::GET, &format!("/{id}/active_sessions/nonce-1")))
        .await
        .json();
    let mut active = identity.clone();
    active["isActive"] = json!(true);
    assert_eq!(body["result"], active);

    let reply = send(cf(&sim, Method::GET, &format!("/{id}/active_sessions/nonce-2"))).await;
    assert_eq!(reply.status, 404);
    cf_error_code(&reply);

    let body = send(cf(&sim, Method::GET, &format!("/{id}/failed_logins")))
        .await
        .json();
    assert_eq!(body["result"], json!([failed]));

    let body = send(cf(&sim, Method::GET, &format!("/{id}/last_seen_identity")))
        .await
        .json();
    assert_eq!(body["result"], identity);

    let other = cf_user_id(1);
    let body = send(cf(&sim, Method::GET, &format!("/{other}/active_sessions")))
        .await
        .json();
    assert_eq!(body["result"], json!([]));
    let body = send(cf(&sim, Method::GET, &format!("/{other}/failed_logins")))
        .await
        .json();
    assert_eq!(body["result"], json!([]));
    let reply = send(cf(&sim, Method::GET, &format!("/{other}/last_seen_identity"))).await;
    assert_eq!(reply.status, 404, "no identity seen yet");
    cf_error_code(&reply);
}

#[tokio::test]
async fn undecodable_path_segments_get_the_error_envelope_not_a_plain_text_rejection() {
    let sim = cf_sim(cf_fixture(1)).await;
    let reply = send(cf(&sim, Method::GET, "/%FF%FE")).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    cf_error_code(&reply);
}

/// A request to `<base>/accounts/<account>/access<path>` with the bearer token.
fn access(sim: &runbook_sim::CloudflareSim, method: Method, path: &str) -> reqwest::RequestBuilder {
    let url = format!("{}/accounts/{}/access{path}", sim.base_url(), sim.account_id());
    client().request(method, url).bearer_auth(sim.api_token())
}

/// A log row at minute `m` after 2026-11-20T00:00:00Z.
fn log_row(m: usize, email: &str, allowed: bool) -> Value {
    json!({
        "user_email": email,
        "created_at": format!("2026-11-20T{:02}:{:02}:00Z", m / 60, m % 60),
        "allowed": allowed,
        "action": "login",
        "ray_id": format!("ray{m:05}"),
        "ip_address": "192.0.2.1",
        "app_uid": "app-uid-1",
        "app_domain": "grafana.example.com",
        "connection": "saml",
    })
}

async fn log_sim(rows: Vec<Value>) -> runbook_sim::CloudflareSim {
    cf_sim(CloudflareFixture {
        access_requests: rows,
        ..cf_fixture(2)
    })
    .await
}

fn rays(body: &Value) -> Vec<String> {
    body["result"]
        .as_array()
        .expect("a result array")
        .iter()
        .map(|r| r["ray_id"].as_str().expect("a ray id").to_owned())
        .collect()
}

#[tokio::test]
async fn the_access_log_pages_newest_first_until_a_short_page_without_result_info() {
    let sim = log_sim((0..60).map(|m| log_row(m, "user0@example.com", true)).collect()).await;
    let mut seen = Vec::new();
    for (page, expected) in [(1, 25), (2, 25), (3, 10), (4, 0)] {
        let reply = send(access(&sim, Method::GET, &format!("/logs/access_requests?page={page}"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let body = reply.json();
        assert_eq!(body["success"], json!(true));
        assert!(
            body.get("result_info").is_none(),
            "the log has no result_info: {}",
            reply.text
        );
        let page_rays = rays(&body);
        assert_eq!(page_rays.len(), expected, "page {page} (default per_page 25)");
        seen.extend(page_rays);
    }
    let newest_first: Vec<String> = (0..60).rev().map(|m| format!("ray{m:05}")).collect();
    assert_eq!(seen, newest_first);
    let asc = send(access(
        &sim,
        Method::GET,
        "/logs/access_requests?direction=asc&per_page=3",
    ))
    .await;
    assert_eq!(rays(&asc.json()), ["ray00000", "ray00001", "ray00002"]);
    assert_eq!(
        send(access(&sim, Method::GET, "/logs/access_requests?direction=up"))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn the_access_log_refuses_a_page_above_its_maximum_naming_per_page() {
    let sim = log_sim((0..5).map(|m| log_row(m, "a@example.com", true)).collect()).await;
    let ok = send(access(&sim, Method::GET, "/logs/access_requests?per_page=1000")).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let reply = send(access(&sim, Method::GET, "/logs/access_requests?per_page=1001")).await;
    assert_eq!(reply.status, 400);
    cf_error_code(&reply);
    assert!(
        reply.json()["errors"][0]["message"]
            .as_str()
            .expect("a message")
            .contains("per_page")
    );

    sim.set_access_log_max_per_page(100);
    assert_eq!(
        send(access(&sim, Method::GET, "/logs/access_requests?per_page=101"))
            .await
            .status,
        400
    );
    assert_eq!(
        send(access(&sim, Method::GET, "/logs/access_requests?per_page=100"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_access_log_filters_by_window_email_and_allowed() {
    let rows = vec![
        log_row(0, "ann@example.com", true),
        log_row(10, "ann@example.com", false),
        log_row(20, "bob@corp.example", false),
        log_row(30, "joann@example.com", false),
        log_row(40, "ann@example.com", false),
    ];
    let sim = log_sim(rows).await;
    async fn ascending(sim: &runbook_sim::CloudflareSim, query: &str) -> Vec<String> {
        let reply = send(access(
            sim,
            Method::GET,
            &format!("/logs/access_requests?direction=asc&{query}"),
        ))
        .await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.text);
        rays(&reply.json())
    }
    let get = |query: &'static str| ascending(&sim, query);
    assert_eq!(
        get("since=2026-11-20T00:10:00Z&until=2026-11-20T00:30:00Z").await,
        ["ray00010", "ray00020", "ray00030"]
    );
    assert_eq!(
        get("email=ann@example.com").await,
        ["ray00000", "ray00010", "ray00030", "ray00040"]
    );
    assert_eq!(
        get("email=ann@example.com&email_exact=true").await,
        ["ray00000", "ray00010", "ray00040"]
    );
    assert_eq!(get("email=@corp.example").await, ["ray00020"]);
    assert_eq!(
        get("allowed=false&email=ann@").await,
        ["ray00010", "ray00030", "ray00040"]
    );
    assert_eq!(get("limit=2").await, ["ray00000", "ray00010"]);
    sim.set_access_log_ignores_allowed(true);
    assert_eq!(get("allowed=false").await.len(), 5, "the filter is ignored");
    for bad in [
        "since=yesterday",
        "until=2026-13-01",
        "allowed=maybe",
        "email_exact=yes",
        "page=0",
    ] {
        let reply = send(access(&sim, Method::GET, &format!("/logs/access_requests?{bad}"))).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        cf_error_code(&reply);
    }
}

#[tokio::test]
async fn failed_logins_are_refused_rows_of_the_access_log() {
    let mut fixture = cf_fixture(2);
    fixture.failed_logins.insert(
        cf_user_id(1),
        vec![json!({"expiration": 1_767_225_600, "metadata": {"app_name": "Grafana", "datetime": "2026-11-21T10:00:00Z", "ray_id": "7f00aa", "user_email": "user1@example.com"}})],
    );
    fixture.access_requests = vec![log_row(0, "user0@example.com", true)];
    let sim = cf_sim(fixture).await;
    let body = send(access(&sim, Method::GET, "/logs/access_requests")).await.json();
    let result = body["result"].as_array().expect("rows");
    assert_eq!(result.len(), 2);
    let failure = &result[0];
    assert_eq!(failure["user_email"], "user1@example.com");
    assert_eq!(failure["created_at"], "2026-11-21T10:00:00Z");
    assert_eq!(failure["ray_id"], "7f00aa");
    assert_eq!(failure["allowed"], false);
    assert_eq!(failure["app_domain"], "Grafana");
    let refused = send(access(&sim, Method::GET, "/logs/access_requests?allowed=false"))
        .await
        .json();
    assert_eq!(rays(&refused), ["7f00aa"]);
}

#[tokio::test]
async fn the_access_log_can_refuse_tokens_and_still_take_the_global_key() {
    let sim = log_sim(vec![log_row(0, "a@example.com", true)]).await;
    sim.set_access_log_refuses_tokens(true);
    let reply = send(access(&sim, Method::GET, "/logs/access_requests")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(cf_error_code(&reply), 10000);
    let url = format!(
        "{}/accounts/{}/access/logs/access_requests",
        sim.base_url(),
        sim.account_id()
    );
    let with_key = client()
        .get(url)
        .header("X-Auth-Email", sim.api_email())
        .header("X-Auth-Key", sim.api_key());
    assert_eq!(send(with_key).await.status, 200);
    assert_eq!(
        send(cf(&sim, Method::GET, "")).await.status,
        200,
        "other endpoints take the token"
    );
}

#[tokio::test]
async fn revoke_user_ends_the_sessions_and_keeps_the_user() {
    let mut fixture = cf_fixture(2);
    let session = json!({"expiration": 1, "name": "app", "metadata": {"nonce": "n1"}});
    fixture.active_sessions.insert(cf_user_id(1), vec![session]);
    let sim = cf_sim(fixture).await;
    let reply = send(
        access(&sim, Method::POST, "/organizations/revoke_user?devices=true")
            .json(&json!({"email": "user1@example.com"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["result"], json!(true));
    let sessions = send(cf(&sim, Method::GET, &format!("/{}/active_sessions", cf_user_id(1)))).await;
    assert_eq!(sessions.json()["result"], json!([]));
    let user = sim.user(&cf_user_id(1)).expect("the user is kept");
    assert_eq!(user["active_device_count"], json!(0));
    assert_eq!(
        sim.revocations(),
        [json!({"email": "user1@example.com", "user_uid": null, "devices": true, "warp_session_reauth": false})]
    );
    for body in [
        json!({}),
        json!({"email": cf_user_id(1)}),
        json!({"email": "a@example.com", "devices": "yes"}),
    ] {
        let reply = send(access(&sim, Method::POST, "/organizations/revoke_user").json(&body)).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
    }
    assert_eq!(sim.revocations().len(), 1);
}

#[tokio::test]
async fn seats_take_a_bare_array_and_change_all_or_nothing() {
    let sim = cf_sim(cf_fixture(3)).await;
    let patch = |body: Value| access(&sim, Method::PATCH, "/seats").json(&body);
    let reply = send(patch(
        json!({"seat_uid": "seat-1", "access_seat": false, "gateway_seat": false}),
    ))
    .await;
    assert_eq!(reply.status, 400, "an object is not an array: {}", reply.text);
    let reply = send(patch(json!([{"seat_uid": "seat-1", "access_seat": false}]))).await;
    assert_eq!(reply.status, 400, "gateway_seat is required: {}", reply.text);
    let reply = send(patch(json!([
        {"seat_uid": "seat-1", "access_seat": false, "gateway_seat": false},
        {"seat_uid": "nope", "access_seat": false, "gateway_seat": false},
    ])))
    .await;
    assert_eq!(reply.status, 400, "an unknown seat: {}", reply.text);
    assert_eq!(
        sim.user(&cf_user_id(1)).expect("user")["access_seat"],
        json!(true),
        "nothing changed"
    );

    let reply = send(patch(
        json!([{"seat_uid": "seat-1", "access_seat": false, "gateway_seat": false}]),
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seat = &reply.json()["result"][0];
    assert_eq!(seat["seat_uid"], "seat-1");
    assert_eq!(
        (seat["access_seat"].clone(), seat["gateway_seat"].clone()),
        (json!(false), json!(false))
    );
    assert!(seat["created_at"].is_string() && seat["updated_at"].is_string());
    let user = sim.user(&cf_user_id(1)).expect("user");
    assert_eq!(
        (user["access_seat"].clone(), user["gateway_seat"].clone()),
        (json!(false), json!(false))
    );
}

#[tokio::test]
async fn groups_are_created_listed_replaced_and_deleted() {
    let sim = cf_sim(CloudflareFixture {
        groups: vec![json!({"id": "g-1", "name": "Admins", "include": [{"email": {"email": "a@example.com"}}], "exclude": [], "require": []})],
        ..cf_fixture(1)
    })
    .await;
    let reply = send(
        access(&sim, Method::POST, "/groups")
            .json(&json!({"name": "Ops", "include": [{"email_domain": {"domain": "example.com"}}]})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let created = reply.json()["result"].clone();
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["exclude"], json!([]));
    for bad in [
        json!({"include": []}),
        json!({"name": "x"}),
        json!({"name": "x", "include": [{"email": "a@example.com"}]}),
        json!({"name": "x", "include": [{"email": {"email": "a@example.com"}, "everyone": {}}]}),
    ] {
        let reply = send(access(&sim, Method::POST, "/groups").json(&bad)).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
    }

    let list = send(access(&sim, Method::GET, "/groups")).await.json();
    assert_eq!(list["result"].as_array().map(Vec::len), Some(2));
    assert_eq!(list["result_info"]["per_page"], json!(1000));
    assert_eq!(list["result_info"]["total_count"], json!(2));
    let found = send(access(&sim, Method::GET, "/groups?search=adm")).await.json();
    assert_eq!(found["result"][0]["id"], "g-1");

    let put = json!({"name": "Ops team", "include": [{"everyone": {}}]});
    let reply = send(access(&sim, Method::PUT, &format!("/groups/{id}")).json(&put)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let got = send(access(&sim, Method::GET, &format!("/groups/{id}"))).await.json();
    assert_eq!(got["result"]["name"], "Ops team");
    assert_eq!(got["result"]["include"], json!([{"everyone": {}}]));
    let reply = send(access(&sim, Method::PUT, &format!("/groups/{id}")).json(&json!({"name": "x"}))).await;
    assert_eq!(reply.status, 400, "a PUT replaces the group: include is required");

    let reply = send(access(&sim, Method::DELETE, &format!("/groups/{id}"))).await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.json()["result"], json!({"id": id}));
    let reply = send(access(&sim, Method::GET, &format!("/groups/{id}"))).await;
    assert_eq!(reply.status, 404);
    assert_eq!(sim.groups().len(), 1);
}

#[test]
fn log_rows_need_a_time_and_groups_a_unique_id() {
    for (fixture, expected) in [
        (
            json!({"cloudflare": {"access_requests": [{"user_email": "a@example.com"}]}}),
            "cloudflare.access_requests[0]: \"created_at\" must be an RFC 3339 time",
        ),
        (
            json!({"cloudflare": {"groups": [{"id": "g"}, {"id": "g"}]}}),
            "cloudflare.groups[1]: duplicate id \"g\"",
        ),
    ] {
        let error = runbook_sim::Fixture::from_json(&fixture.to_string()).expect_err("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
    let old = runbook_sim::Fixture::from_json(r#"{"cloudflare": {"users": []}}"#).expect("loads");
    assert!(old.cloudflare.access_requests.is_empty() && old.cloudflare.groups.is_empty());
}
