//! The PrivX token flow and role-store user endpoints as a client sees them.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{client, good_grant, privx, privx_fixture, privx_login, privx_sim, send, token_request};

const USERS: &str = "/role-store/api/v1/users";

/// OAuth client credentials, the form, and the expected status and OAuth `error`.
type TokenCase<'a> = (Option<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn the_password_grant_issues_a_bearer_token_that_opens_the_api() {
    let sim = privx_sim(privx_fixture(1)).await;
    let (oauth_id, oauth_secret) = (sim.oauth_client_id(), sim.oauth_client_secret());
    assert_eq!(
        (oauth_id.as_str(), sim.api_client_id().as_str()),
        ("privx-external", "sim-api-client")
    );
    let grant = good_grant(&sim);
    let form: Vec<(&str, &str)> = grant.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reply = send(token_request(&client(), &sim, Some((&oauth_id, &oauth_secret)), &form)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["token_type"], json!("bearer"));
    assert_eq!(body["expires_in"], json!(300));
    assert!(body["refresh_token"].is_string() && body["scope"].is_string());
    let token = body["access_token"].as_str().expect("a token");
    assert_eq!(sim.token_requests(), 1);

    let reply = send(privx(&sim, token, Method::GET, &format!("{USERS}/u-0000"))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let user = reply.json();
    assert_eq!(user["principal"], json!("user0000"));
    assert_eq!(
        user["mfa"]["seed"]["seed_string"],
        json!("SEED0"),
        "served as the real API does"
    );
}

#[tokio::test]
async fn each_bad_credential_gets_its_oauth_error() {
    let sim = privx_sim(privx_fixture(1)).await;
    let http = client();
    let (oauth_id, oauth_secret) = (sim.oauth_client_id(), sim.oauth_client_secret());
    let (api_id, api_secret) = (sim.api_client_id(), sim.api_client_secret());
    let good = [
        ("grant_type", "password"),
        ("username", api_id.as_str()),
        ("password", api_secret.as_str()),
    ];
    let cases: Vec<TokenCase> = vec![
        (None, good.to_vec(), 401, "invalid_client"),
        (Some((&oauth_id, "wrong")), good.to_vec(), 401, "invalid_client"),
        (
            Some(("someone-else", &oauth_secret)),
            good.to_vec(),
            401,
            "invalid_client",
        ),
        (
            Some((&oauth_id, &oauth_secret)),
            vec![("grant_type", "password"), ("username", &api_id), ("password", "wrong")],
            400,
            "invalid_grant",
        ),
        (
            Some((&oauth_id, &oauth_secret)),
            vec![
                ("grant_type", "password"),
                ("username", "nobody"),
                ("password", &api_secret),
            ],
            400,
            "invalid_grant",
        ),
        (
            Some((&oauth_id, &oauth_secret)),
            vec![("grant_type", "client_credentials")],
            400,
            "unsupported_grant_type",
        ),
        (
            Some((&oauth_id, &oauth_secret)),
            vec![("username", &api_id)],
            400,
            "invalid_request",
        ),
    ];
    for (oauth, form, status, error) in cases {
        let reply = send(token_request(&http, &sim, oauth, &form)).await;
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (status, Some(error)),
            "{oauth:?} {form:?}"
        );
        assert!(reply.json()["error_description"].is_string());
    }
    let json_body = http
        .post(format!("{}/auth/api/v1/oauth/token", sim.base_url()))
        .basic_auth(&oauth_id, Some(&oauth_secret))
        .json(&json!({"grant_type": "password"}));
    assert_eq!(send(json_body).await.status, 400, "the grant is a form, not JSON");
    assert_eq!(sim.token_requests(), 0);
}

#[tokio::test]
async fn calls_without_a_valid_token_are_401() {
    let sim = privx_sim(privx_fixture(1)).await;
    let no_token = send(client().get(format!("{}{USERS}/u-0000", sim.base_url()))).await;
    let bad_token = send(privx(&sim, "not-a-token", Method::GET, &format!("{USERS}/u-0000"))).await;
    for reply in [no_token, bad_token] {
        assert_eq!(reply.status, 401);
        assert_eq!(reply.json()["error_code"], json!("UNAUTHORIZED"));
        assert!(reply.json()["error_message"].is_string());
    }
}

#[tokio::test]
async fn an_expired_token_is_401_and_a_new_login_works() {
    let sim = privx_sim(privx_fixture(1)).await;
    sim.set_token_lifetime(Duration::ZERO);
    let token = privx_login(&sim).await;
    let reply = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000"))).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply.json()["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("expired"))
    );

    sim.set_token_lifetime(Duration::from_secs(60));
    let token = privx_login(&sim).await;
    assert_eq!(
        send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000")))
            .await
            .status,
        200
    );
    assert_eq!(sim.token_requests(), 2);
}

#[tokio::test]
async fn revoke_all_tokens_forces_a_fresh_login() {
    let sim = privx_sim(privx_fixture(1)).await;
    let token = privx_login(&sim).await;
    assert_eq!(
        send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000")))
            .await
            .status,
        200
    );
    sim.revoke_all_tokens();
    assert_eq!(
        send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000")))
            .await
            .status,
        401
    );
    let token = privx_login(&sim).await;
    assert_eq!(
        send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000")))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn an_unknown_user_is_404_not_found() {
    let sim = privx_sim(privx_fixture(1)).await;
    let token = privx_login(&sim).await;
    for path in ["/nobody", "/nobody/resolve", "/nobody/settings", "/nobody/roles"] {
        let reply = send(privx(&sim, &token, Method::GET, &format!("{USERS}{path}"))).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["error_code"], json!("NOT_FOUND"));
    }
    let reply = send(privx(&sim, &token, Method::GET, "/role-store/api/v1/nothing-here")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error_code"], json!("NOT_FOUND"));
}

async fn search(sim: &runbook_sim::PrivxSim, token: &str, query: &str, body: Value) -> (u16, Value) {
    let reply = send(privx(sim, token, Method::POST, &format!("{USERS}/search{query}")).json(&body)).await;
    (reply.status, reply.json())
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test]
async fn search_pages_with_offset_and_limit_and_counts_every_match() {
    let sim = privx_sim(privx_fixture(120)).await;
    let token = privx_login(&sim).await;

    let (status, page) = search(&sim, &token, "", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], json!(120));
    assert_eq!(ids(&page).len(), 50, "the default limit");
    assert_eq!(ids(&page)[0], "u-0000", "sorted by principal by default");

    let mut seen = BTreeSet::new();
    for offset in (0..120).step_by(40) {
        let (_, page) = search(&sim, &token, &format!("?offset={offset}&limit=40"), json!({})).await;
        seen.extend(ids(&page));
    }
    assert_eq!(seen.len(), 120);

    let (_, page) = search(&sim, &token, "?offset=100&limit=1000", json!({})).await;
    assert_eq!((page["count"].clone(), ids(&page).len()), (json!(120), 20));
    let (_, page) = search(&sim, &token, "?offset=500", json!({})).await;
    assert_eq!((page["count"].clone(), ids(&page).len()), (json!(120), 0));

    let (_, page) = search(&sim, &token, "?sortkey=principal&sortdir=DESC&limit=2", json!({})).await;
    assert_eq!(ids(&page), vec!["u-0119", "u-0118"]);

    for (query, property) in [
        ("?limit=1001", "limit"),
        ("?limit=0", "limit"),
        ("?limit=-5", "limit"),
        ("?limit=many", "limit"),
        ("?offset=-1", "offset"),
        ("?sortdir=SIDEWAYS", "sortdir"),
    ] {
        let (status, error) = search(&sim, &token, query, json!({})).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(error["property"], json!(property), "{query}");
        assert!(error["error_code"].is_string());
    }
}

#[tokio::test]
async fn search_keywords_source_and_user_id_narrow_the_result() {
    let sim = privx_sim(privx_fixture(12)).await;
    let token = privx_login(&sim).await;

    let (_, page) = search(&sim, &token, "", json!({"keywords": "USER0003@CORP"})).await;
    assert_eq!(ids(&page), vec!["u-0003"], "case-insensitive substring of the email");
    let (_, page) = search(&sim, &token, "", json!({"keywords": "person 0011"})).await;
    assert_eq!(
        page["count"],
        json!(12),
        "any word may match: 'person' matches every full_name"
    );
    let (_, page) = search(&sim, &token, "", json!({"keywords": "user0011 user0002"})).await;
    assert_eq!(ids(&page), vec!["u-0002", "u-0011"]);
    let (_, page) = search(&sim, &token, "", json!({"keywords": "nobody-like-this"})).await;
    assert_eq!(page, json!({"count": 0, "items": []}));

    let (_, page) = search(&sim, &token, "", json!({"source": "ad-main"})).await;
    assert_eq!(page["count"], json!(6));
    let (_, page) = search(&sim, &token, "", json!({"source": "ad"})).await;
    assert_eq!(page["count"], json!(0), "source is an exact match");

    let (_, page) = search(
        &sim,
        &token,
        "",
        json!({"user_id": ["u-0005", "u-0007", "missing"], "source": "ad-main"}),
    )
    .await;
    assert_eq!(ids(&page), vec!["u-0005", "u-0007"]);

    let reply = send(privx(&sim, &token, Method::POST, &format!("{USERS}/search"))).await;
    assert_eq!(reply.json()["count"], json!(12), "an empty body is {{}}");
    let (status, error) = search(&sim, &token, "", json!({"user_id": "u-0005"})).await;
    assert_eq!((status, error["property"].clone()), (400, json!("user_id")));
}

#[tokio::test]
async fn roles_put_replaces_the_explicit_set_and_get_and_resolve_show_it() {
    let sim = privx_sim(privx_fixture(2)).await;
    let token = privx_login(&sim).await;
    let roles_path = format!("{USERS}/u-0000/roles");

    let body = send(privx(&sim, &token, Method::GET, &roles_path)).await.json();
    assert_eq!(body["count"], json!(1));
    assert_eq!(body["items"][0]["id"], json!("r-ops"));
    assert_eq!(body["items"][0]["explicit"], json!(true));
    assert_eq!(
        body["items"][0]["permissions"],
        json!(["hosts-view", "connections-manual"]),
        "merged from the store"
    );
    assert_eq!(body["items"][0]["grant_type"], json!("PERMANENT"));

    let reply = send(
        privx(&sim, &token, Method::PUT, &roles_path)
            .json(&json!([{"id": "r-admin", "explicit": true}, {"id": "r-audit", "name": "ignored", "explicit": true, "grant_type": "FLOATING", "floating_length": 8}])),
    )
    .await;
    assert_eq!((reply.status, reply.text.as_str()), (200, ""), "200 with an empty body");

    let body = send(privx(&sim, &token, Method::GET, &roles_path)).await.json();
    let names: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["admins", "audit"]);
    assert_eq!(body["count"], json!(2));
    assert_eq!(body["items"][1]["grant_type"], json!("FLOATING"));
    assert_eq!(body["items"][1]["floating_length"], json!(8));
    assert!(
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|r| r["explicit"] == json!(true))
    );

    // The role-handle schema's default for `explicit` is false: a handle without it is kept so.
    let unflagged =
        send(privx(&sim, &token, Method::PUT, &format!("{USERS}/u-0001/roles")).json(&json!([{"id": "r-admin"}])))
            .await;
    assert_eq!(unflagged.status, 200, "{}", unflagged.text);
    let body = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0001/roles")))
        .await
        .json();
    assert_eq!(body["items"][0]["explicit"], json!(false), "{body}");

    let resolved = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000/resolve")))
        .await
        .json();
    assert_eq!(resolved["id"], json!("u-0000"));
    assert_eq!(resolved["roles"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        resolved["permissions"],
        json!(["users-manage", "roles-manage", "hosts-view", "audit-view"])
    );
    assert_eq!(
        sim.user("u-0000").expect("user")["roles"].as_array().map(Vec::len),
        Some(2)
    );

    for body in [
        json!([{"id": "r-nope"}]),
        json!([{"name": "ops"}]),
        json!({"id": "r-ops"}),
        json!(["r-ops"]),
    ] {
        let reply = send(privx(&sim, &token, Method::PUT, &roles_path).json(&body)).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.json()["error_code"].is_string());
    }
    let reply =
        send(privx(&sim, &token, Method::PUT, &roles_path).json(&json!([{"id": "r-ops"}, {"id": "r-nope"}]))).await;
    assert_eq!(reply.json()["property"], json!("roles[1].id"));
    let body = send(privx(&sim, &token, Method::GET, &roles_path)).await.json();
    assert_eq!(body["count"], json!(2), "a refused PUT changes nothing");

    let all = send(privx(&sim, &token, Method::GET, "/role-store/api/v1/roles"))
        .await
        .json();
    assert_eq!(all["count"], json!(3));
    assert_eq!(all["items"][0]["id"], json!("r-admin"));
}

#[tokio::test]
async fn settings_are_stored_and_read_back() {
    let sim = privx_sim(privx_fixture(1)).await;
    let token = privx_login(&sim).await;
    let path = format!("{USERS}/u-0000/settings");
    assert_eq!(send(privx(&sim, &token, Method::GET, &path)).await.json(), json!({}));
    let settings = json!({"theme": "dark", "notifications": {"email": false}});
    let reply = send(privx(&sim, &token, Method::PUT, &path).json(&settings)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["id"],
        json!("u-0000"),
        "answers the user, as the docs show"
    );
    assert_eq!(send(privx(&sim, &token, Method::GET, &path)).await.json(), settings);
    let reply = send(privx(&sim, &token, Method::PUT, &path).json(&json!([1, 2]))).await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn mfa_enable_disable_and_reset_move_the_status_for_every_listed_user() {
    let sim = privx_sim(privx_fixture(3)).await;
    let token = privx_login(&sim).await;
    let mfa =
        |action: &str, body: Value| privx(&sim, &token, Method::POST, &format!("{USERS}/mfa/{action}")).json(&body);
    let status_of = |id: &str| sim.user(id).expect("user")["mfa"]["status"].clone();

    let reply = send(mfa("disable", json!(["u-0000", "u-0001"]))).await;
    assert_eq!((reply.status, reply.text.as_str()), (200, ""));
    assert_eq!(
        (status_of("u-0000"), status_of("u-0001"), status_of("u-0002")),
        (json!("DISABLED"), json!("DISABLED"), json!("ENABLED"))
    );

    send(mfa("enable", json!(["u-0000"]))).await;
    let user = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000")))
        .await
        .json();
    assert_eq!(user["mfa"]["status"], json!("ENABLED"), "later reads see it");

    send(mfa("reset", json!(["u-0000"]))).await;
    let user = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000")))
        .await
        .json();
    assert_eq!(user["mfa"]["status"], json!("UNINITIALIZED"));
    assert!(user["mfa"].get("seed").is_none(), "a reset forgets the seed: {user}");

    let reply = send(mfa("disable", json!(["u-0002", "ghost"]))).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("ghost"))
    );
    assert_eq!(status_of("u-0002"), json!("ENABLED"), "nothing changed");

    for body in [json!({"ids": ["u-0002"]}), json!("u-0002"), json!([1])] {
        assert_eq!(send(mfa("disable", body.clone())).await.status, 400, "{body}");
    }
    assert_eq!(send(mfa("sideways", json!(["u-0002"]))).await.status, 404);
}

#[tokio::test]
async fn undecodable_path_segments_get_privx_error_bodies() {
    let sim = privx_sim(privx_fixture(1)).await;
    let token = privx_login(&sim).await;
    let reply = send(privx(&sim, &token, Method::GET, &format!("{USERS}/%FF%FE/roles"))).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.json()["error_code"], json!("NOT_FOUND"));
    let reply = send(privx(&sim, &token, Method::DELETE, &format!("{USERS}/u-0000"))).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.json()["error_code"], json!("METHOD_NOT_ALLOWED"));
}

/// The deployment of `privx_fixture(2)` where `u-0000` holds `r-ops` explicitly and `r-audit`
/// through a mapping, and `u-0001` holds `r-admin` and `r-audit` both ways (`r-admin` as one
/// entry with both flags, `r-audit` as a mapped and an explicit entry).
fn mapped_fixture() -> runbook_sim::PrivxFixture {
    let mut fixture = privx_fixture(2);
    fixture.users[0]["roles"] = json!([
        {"id": "r-ops", "name": "ops", "grant_type": "PERMANENT"},
        {"id": "r-audit", "name": "audit", "explicit": false, "implicit": true},
    ]);
    fixture.users[1]["roles"] = json!([
        {"id": "r-admin", "name": "admins", "explicit": true, "implicit": true},
        {"id": "r-audit", "name": "audit", "explicit": false, "implicit": true},
        {"id": "r-audit", "name": "audit"},
    ]);
    fixture
}

/// Each role's `(id, explicit, implicit)`, in order.
fn held(roles: &Value) -> Vec<(String, Value, Value)> {
    roles
        .as_array()
        .unwrap_or_else(|| panic!("an array of roles: {roles}"))
        .iter()
        .map(|r| {
            let id = r["id"].as_str().expect("a role id").to_owned();
            (id, r["explicit"].clone(), r["implicit"].clone())
        })
        .collect()
}

fn role(id: &str, explicit: bool, implicit: bool) -> (String, Value, Value) {
    (id.to_owned(), json!(explicit), json!(implicit))
}

#[tokio::test]
async fn mapped_roles_are_listed_beside_explicit_ones_with_their_flags() {
    let sim = privx_sim(mapped_fixture()).await;
    let token = privx_login(&sim).await;

    let body = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000/roles")))
        .await
        .json();
    assert_eq!(body["count"], json!(2));
    assert_eq!(
        held(&body["items"]),
        vec![role("r-ops", true, false), role("r-audit", false, true)]
    );
    assert_eq!(
        body["items"][1]["permissions"],
        json!(["hosts-view", "audit-view"]),
        "a mapped role is the store's role too"
    );

    let body = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0001/roles")))
        .await
        .json();
    assert_eq!(body["count"], json!(2), "a role held both ways is listed once: {body}");
    assert_eq!(
        held(&body["items"]),
        vec![role("r-admin", true, true), role("r-audit", true, true)]
    );

    let user = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000")))
        .await
        .json();
    assert_eq!(
        held(&user["roles"]),
        vec![role("r-ops", true, false), role("r-audit", false, true)]
    );
    assert_eq!(user["roles"][0]["grant_type"], json!("PERMANENT"));
    assert_eq!(
        held(&sim.user("u-0001").expect("user")["roles"]),
        vec![role("r-admin", true, true), role("r-audit", true, true)]
    );

    let reply = send(privx(&sim, &token, Method::POST, &format!("{USERS}/search")).json(&json!({}))).await;
    assert_eq!(
        held(&reply.json()["items"][0]["roles"]),
        vec![role("r-ops", true, false), role("r-audit", false, true)],
        "search answers the same users"
    );

    let plain = privx_sim(privx_fixture(1)).await;
    let token = privx_login(&plain).await;
    let user = send(privx(&plain, &token, Method::GET, &format!("{USERS}/u-0000")))
        .await
        .json();
    assert_eq!(
        held(&user["roles"]),
        vec![role("r-ops", true, false)],
        "a role without flags is explicit"
    );
}

#[tokio::test]
async fn a_roles_put_replaces_only_the_explicit_set_and_mapped_roles_stay() {
    let sim = privx_sim(mapped_fixture()).await;
    let token = privx_login(&sim).await;
    let roles_path = format!("{USERS}/u-0000/roles");
    let roles = || async { send(privx(&sim, &token, Method::GET, &roles_path)).await.json() };

    let reply = send(privx(&sim, &token, Method::PUT, &roles_path).json(&json!([]))).await;
    assert_eq!((reply.status, reply.text.as_str()), (200, ""));
    let body = roles().await;
    assert_eq!(body["count"], json!(1));
    assert_eq!(held(&body["items"]), vec![role("r-audit", false, true)]);
    let user = send(privx(&sim, &token, Method::GET, &format!("{USERS}/u-0000")))
        .await
        .json();
    assert_eq!(held(&user["roles"]), vec![role("r-audit", false, true)]);

    let reply = send(privx(&sim, &token, Method::PUT, &roles_path).json(&json!([
        {"id": "r-audit", "explicit": true, "grant_type": "FLOATING", "floating_length": 4},
        {"id": "r-admin", "explicit": true},
    ])))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = roles().await;
    assert_eq!(body["count"], json!(2));
    assert_eq!(
        held(&body["items"]),
        vec![role("r-audit", true, true), role("r-admin", true, false)],
        "granting a mapped role explicitly marks it both ways"
    );
    assert_eq!(body["items"][0]["grant_type"], json!("FLOATING"));

    let reply = send(privx(&sim, &token, Method::PUT, &roles_path).json(&json!([{"id": "r-nope"}]))).await;
    assert_eq!(reply.status, 400);
    assert_eq!(roles().await["count"], json!(2), "a refused PUT changes nothing");

    send(privx(&sim, &token, Method::PUT, &roles_path).json(&json!([]))).await;
    let body = roles().await;
    assert_eq!(
        held(&body["items"]),
        vec![role("r-audit", false, true)],
        "revoking the explicit grant leaves the mapping"
    );
    assert!(
        body["items"][0].get("grant_type").is_none(),
        "the explicit grant's fields went with it: {body}"
    );
}

#[tokio::test]
async fn resolve_includes_the_roles_and_permissions_of_mappings() {
    let sim = privx_sim(mapped_fixture()).await;
    let token = privx_login(&sim).await;
    let resolve_path = format!("{USERS}/u-0000/resolve");

    let resolved = send(privx(&sim, &token, Method::GET, &resolve_path)).await.json();
    assert_eq!(
        held(&resolved["roles"]),
        vec![role("r-ops", true, false), role("r-audit", false, true)]
    );
    assert_eq!(
        resolved["permissions"],
        json!(["hosts-view", "connections-manual", "audit-view"])
    );

    send(privx(&sim, &token, Method::PUT, &format!("{USERS}/u-0000/roles")).json(&json!([]))).await;
    let resolved = send(privx(&sim, &token, Method::GET, &resolve_path)).await.json();
    assert_eq!(held(&resolved["roles"]), vec![role("r-audit", false, true)]);
    assert_eq!(resolved["permissions"], json!(["hosts-view", "audit-view"]));
}
