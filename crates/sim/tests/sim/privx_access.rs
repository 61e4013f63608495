//! The PrivX roles, grants, sessions, connections, authorized keys and sources endpoints as a
//! client sees them: paging limits, lookups, grant checks, and what each change leaves behind.

use reqwest::Method;
use runbook_sim::{PrivxFixture, PrivxSim};
use serde_json::{Value, json};

use crate::support::{privx, privx_fixture, privx_login, privx_sim, send};

const ROLES: &str = "/role-store/api/v1/roles";
const USERS: &str = "/role-store/api/v1/users";
const SESSIONS: &str = "/auth/api/v1/sessionstorage";

/// `privx_fixture(users)` plus roles `role-000` .. `role-{extra - 1}` named `Role 000` ...
fn many_roles(users: usize, extra: usize) -> PrivxFixture {
    let mut fixture = privx_fixture(users);
    fixture
        .roles
        .extend((0..extra).map(|n| json!({"id": format!("role-{n:03}"), "name": format!("Role {n:03}")})));
    fixture
}

async fn get(sim: &PrivxSim, token: &str, path: &str) -> (u16, Value) {
    let reply = send(privx(sim, token, Method::GET, path)).await;
    let body = if reply.text.is_empty() {
        Value::Null
    } else {
        reply.json()
    };
    (reply.status, body)
}

async fn post(sim: &PrivxSim, token: &str, path: &str, body: Value) -> (u16, Value) {
    let reply = send(privx(sim, token, Method::POST, path).json(&body)).await;
    let body = if reply.text.is_empty() {
        Value::Null
    } else {
        reply.json()
    };
    (reply.status, body)
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|item| item["id"].as_str().expect("an id"))
        .collect()
}

#[tokio::test]
async fn roles_page_by_50_by_default_and_at_most_1000() {
    let sim = privx_sim(many_roles(0, 1200)).await;
    let token = privx_login(&sim).await;
    let (status, page) = get(&sim, &token, ROLES).await;
    assert_eq!((status, &page["count"]), (200, &json!(1203)));
    assert_eq!(ids(&page).len(), 50, "the default page is 50");
    assert_eq!(
        ids(&page)[..3],
        ["r-admin", "r-ops", "r-audit"],
        "the store's own order"
    );

    let (_, page) = get(&sim, &token, &format!("{ROLES}?limit=1000")).await;
    assert_eq!(ids(&page).len(), 1000);
    let (_, page) = get(&sim, &token, &format!("{ROLES}?offset=1000&limit=1000")).await;
    assert_eq!((ids(&page).len(), ids(&page)[202]), (203, "role-1199"));

    let (status, error) = get(&sim, &token, &format!("{ROLES}?limit=1001")).await;
    assert_eq!(status, 400);
    assert_eq!(
        (&error["error_code"], &error["property"]),
        (&json!("BAD_REQUEST"), &json!("limit"))
    );

    let (_, page) = get(&sim, &token, &format!("{ROLES}?sortkey=name&sortdir=DESC&limit=2")).await;
    assert_eq!(
        ids(&page),
        ["role-999", "role-998"],
        "names sorted descending, case-insensitively"
    );
}

#[tokio::test]
async fn a_role_is_read_by_id_and_resolved_by_exact_name() {
    let sim = privx_sim(many_roles(0, 120)).await;
    let token = privx_login(&sim).await;
    let (status, role) = get(&sim, &token, &format!("{ROLES}/role-110")).await;
    assert_eq!((status, &role["name"]), (200, &json!("Role 110")));
    let (status, error) = get(&sim, &token, &format!("{ROLES}/role-999")).await;
    assert_eq!((status, &error["error_code"]), (404, &json!("NOT_FOUND")));

    let (status, page) = post(
        &sim,
        &token,
        &format!("{ROLES}/resolve"),
        json!(["Role 110", "ops", "role 111", "nope"]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], json!(2), "exact names only: {page}");
    assert_eq!(ids(&page), ["r-ops", "role-110"]);
    for bad in [json!({"names": ["ops"]}), json!([1, 2])] {
        let (status, error) = post(&sim, &token, &format!("{ROLES}/resolve"), bad.clone()).await;
        assert_eq!((status, &error["error_code"]), (400, &json!("BAD_REQUEST")), "{bad}");
    }
}

#[tokio::test]
async fn role_members_are_paged_and_include_mapped_holders() {
    let mut fixture = privx_fixture(120);
    fixture.users[0]["roles"] = json!([{"id": "r-audit", "name": "audit", "explicit": false}]);
    let sim = privx_sim(fixture).await;
    let token = privx_login(&sim).await;
    let (status, page) = get(&sim, &token, &format!("{ROLES}/r-ops/members")).await;
    assert_eq!((status, &page["count"]), (200, &json!(119)));
    assert_eq!(ids(&page).len(), 50, "the default page is 50");
    assert_eq!(page["items"][0]["principal"], json!("user0001"), "members are users");
    let (_, page) = get(&sim, &token, &format!("{ROLES}/r-ops/members?offset=100&limit=1000")).await;
    assert_eq!(ids(&page).len(), 19);
    let (status, _) = get(&sim, &token, &format!("{ROLES}/r-ops/members?limit=1001")).await;
    assert_eq!(status, 400);
    let (_, page) = get(&sim, &token, &format!("{ROLES}/r-audit/members")).await;
    assert_eq!(ids(&page), ["u-0000"], "a mapped role's holder is a member");
    let (status, _) = get(&sim, &token, &format!("{ROLES}/r-nope/members")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn grants_are_checked_and_stored_as_sent() {
    let sim = privx_sim(privx_fixture(1)).await;
    let token = privx_login(&sim).await;
    let roles_path = format!("{USERS}/u-0000/roles");
    let put = |body: Value| send(privx(&sim, &token, Method::PUT, &roles_path).json(&body));
    let window = json!([{"grant_start": "2026-01-01T00:00:00Z", "grant_end": "2026-01-02T00:00:00Z"}]);
    let reply = put(json!([
        {"id": "r-ops", "explicit": true, "grant_type": "PERMANENT"},
        {"id": "r-admin", "explicit": true, "grant_type": "TIME_RESTRICTED", "grant_validity_periods": window},
        {"id": "r-audit", "explicit": true, "grant_type": "FLOATING", "floating_length": 24},
    ]))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let (_, held) = get(&sim, &token, &roles_path).await;
    let items = held["items"].as_array().expect("items");
    assert_eq!(items[0]["grant_type"], json!("PERMANENT"));
    assert_eq!(
        (&items[1]["grant_type"], &items[1]["grant_validity_periods"]),
        (&json!("TIME_RESTRICTED"), &window)
    );
    assert_eq!(
        (&items[2]["grant_type"], &items[2]["floating_length"]),
        (&json!("FLOATING"), &json!(24))
    );
    assert!(items.iter().all(|r| r["explicit"] == json!(true)));

    let refused = [
        (
            json!([{"id": "r-ops", "grant_type": "SOMETIMES"}]),
            "roles[0].grant_type",
        ),
        (
            json!([{"id": "r-ops", "grant_type": "TIME_RESTRICTED"}]),
            "roles[0].grant_validity_periods",
        ),
        (
            json!([{"id": "r-ops", "grant_type": "TIME_RESTRICTED", "grant_validity_periods": [{"grant_start": "2026-01-02T00:00:00Z", "grant_end": "2026-01-01T00:00:00Z"}]}]),
            "roles[0].grant_validity_periods[0].grant_end",
        ),
        (
            json!([{"id": "r-ops", "grant_type": "TIME_RESTRICTED", "grant_start": "tomorrow", "grant_end": "2026-01-01T00:00:00Z"}]),
            "roles[0].grant_start",
        ),
        (
            json!([{"id": "r-ops"}, {"id": "r-audit", "grant_type": "FLOATING"}]),
            "roles[1].floating_length",
        ),
        (
            json!([{"id": "r-ops", "grant_type": "FLOATING", "floating_length": 0}]),
            "roles[0].floating_length",
        ),
    ];
    for (body, property) in refused {
        let reply = put(body.clone()).await;
        assert_eq!(
            (reply.status, &reply.json()["property"]),
            (400, &json!(property)),
            "{body}"
        );
    }
    let (_, after) = get(&sim, &token, &roles_path).await;
    assert_eq!(after, held, "refused PUTs change nothing");

    // A handle sent with explicit false is stored and shown that way.
    put(json!([{"id": "r-ops", "explicit": false}])).await;
    let (_, held) = get(&sim, &token, &roles_path).await;
    assert_eq!(held["items"][0]["explicit"], json!(false));
}

#[tokio::test]
async fn the_ignore_grant_fields_knob_stores_the_role_stores_own_grant() {
    let mut fixture = privx_fixture(1);
    fixture.roles[1]["grant_type"] = json!("PERMANENT");
    let sim = privx_sim(fixture).await;
    let token = privx_login(&sim).await;
    sim.set_ignore_grant_fields(true);
    let roles_path = format!("{USERS}/u-0000/roles");
    let reply = send(privx(&sim, &token, Method::PUT, &roles_path).json(&json!([
        {"id": "r-ops", "explicit": true, "grant_type": "FLOATING", "floating_length": 8},
    ])))
    .await;
    assert_eq!(reply.status, 200);
    let (_, held) = get(&sim, &token, &roles_path).await;
    assert_eq!(held["items"][0]["grant_type"], json!("PERMANENT"));
    assert_eq!(held["items"][0]["floating_length"], Value::Null);
}

fn session(id: &str, user: &str, expires: &str) -> Value {
    json!({"id": id, "user_id": user, "type": "login", "domain": "privx-ui", "created": "2026-01-01T00:00:00Z", "expires": expires, "logged_out": false})
}

fn access_fixture() -> PrivxFixture {
    let mut fixture = privx_fixture(2);
    let many: Vec<Value> = (0..60)
        .map(|n| session(&format!("s-{n:02}"), "u-0000", &format!("2026-02-01T00:{n:02}:00Z")))
        .collect();
    fixture.sessions.insert("u-0000".to_owned(), many);
    fixture.sessions.insert(
        "u-0001".to_owned(),
        vec![session("s-bob", "u-0001", "2026-03-01T00:00:00Z")],
    );
    fixture.connections.insert(
        "u-0000".to_owned(),
        vec![
            json!({"id": "c-1", "protocol": "SSH"}),
            json!({"id": "c-2", "protocol": "RDP"}),
        ],
    );
    fixture.authorized_keys.insert(
        "u-0000".to_owned(),
        vec![
            json!({"id": "k-1", "name": "laptop", "public_key": "ssh-ed25519 AAAA1", "fingerprints": ["SHA256:one"]}),
            json!({"id": "k-2", "name": "desktop", "public_key": "ssh-ed25519 AAAA2", "fingerprints": ["SHA256:two"]}),
        ],
    );
    fixture.sources = vec![
        json!({"id": "src-ad", "name": "AD", "enabled": true, "status_code": "OK", "connection": {"type": "LDAP"}}),
        json!({"id": "src-local", "name": "Local", "enabled": true, "status_code": "OK", "connection": {"type": "LOCAL"}}),
    ];
    fixture
}

#[tokio::test]
async fn sessions_are_listed_by_page_and_terminated_per_user_or_one_by_one() {
    let sim = privx_sim(access_fixture()).await;
    let token = privx_login(&sim).await;
    let ann = format!("{SESSIONS}/users/u-0000/sessions");
    let (status, page) = get(&sim, &token, &ann).await;
    assert_eq!((status, &page["count"]), (200, &json!(60)));
    assert_eq!(ids(&page).len(), 50, "the default page is 50");
    let (_, page) = get(&sim, &token, &format!("{ann}?offset=50&sortdir=DESC")).await;
    assert_eq!(ids(&page).len(), 10);
    assert_eq!(ids(&page)[0], "s-09", "sorted by expires, descending");

    let (status, _) = post(
        &sim,
        &token,
        &format!("{SESSIONS}/sessions/s-bob/terminate"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert!(sim.sessions("u-0001").is_empty());
    let (status, error) = post(
        &sim,
        &token,
        &format!("{SESSIONS}/sessions/s-bob/terminate"),
        Value::Null,
    )
    .await;
    assert_eq!((status, &error["error_code"]), (404, &json!("NOT_FOUND")));

    for _ in 0..2 {
        let (status, _) = post(&sim, &token, &format!("{ann}/terminate"), Value::Null).await;
        assert_eq!(status, 200, "ending ended sessions is fine");
    }
    assert!(sim.sessions("u-0000").is_empty());
    let (_, page) = get(&sim, &token, &ann).await;
    assert_eq!(page, json!({"count": 0, "items": []}));
    let (status, _) = get(&sim, &token, &format!("{SESSIONS}/users/nobody/sessions")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn connections_of_a_user_are_ended() {
    let sim = privx_sim(access_fixture()).await;
    let token = privx_login(&sim).await;
    assert_eq!(sim.connections("u-0000").len(), 2);
    for _ in 0..2 {
        let (status, _) = post(
            &sim,
            &token,
            "/connection-manager/api/v1/terminate/user/u-0000",
            Value::Null,
        )
        .await;
        assert_eq!(status, 200);
    }
    assert!(sim.connections("u-0000").is_empty());
    let (status, _) = post(
        &sim,
        &token,
        "/connection-manager/api/v1/terminate/user/nobody",
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn authorized_keys_are_listed_read_and_deleted() {
    let sim = privx_sim(access_fixture()).await;
    let token = privx_login(&sim).await;
    let keys = format!("{USERS}/u-0000/authorizedkeys");
    let (status, page) = get(&sim, &token, &keys).await;
    assert_eq!(
        (status, &page["count"], ids(&page)),
        (200, &json!(2), vec!["k-1", "k-2"])
    );
    let (_, page) = get(&sim, &token, &format!("{keys}?offset=1&limit=50")).await;
    assert_eq!(ids(&page), ["k-2"], "a page when one is asked for");
    let (status, key) = get(&sim, &token, &format!("{keys}/k-2")).await;
    assert_eq!((status, &key["public_key"]), (200, &json!("ssh-ed25519 AAAA2")));

    let reply = send(privx(&sim, &token, Method::DELETE, &format!("{keys}/k-1"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(sim.authorized_keys("u-0000").len(), 1);
    let reply = send(privx(&sim, &token, Method::DELETE, &format!("{keys}/k-1"))).await;
    assert_eq!((reply.status, &reply.json()["error_code"]), (404, &json!("NOT_FOUND")));
    let (status, _) = get(&sim, &token, &format!("{keys}/k-1")).await;
    assert_eq!(status, 404);
    let (status, page) = get(&sim, &token, &format!("{USERS}/u-0001/authorizedkeys")).await;
    assert_eq!((status, page), (200, json!({"count": 0, "items": []})));
    let (status, _) = get(&sim, &token, &format!("{USERS}/nobody/authorizedkeys")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn sources_are_listed_read_and_refreshed() {
    let sim = privx_sim(access_fixture()).await;
    let token = privx_login(&sim).await;
    let (status, page) = get(&sim, &token, "/role-store/api/v1/sources").await;
    assert_eq!(
        (status, &page["count"], ids(&page)),
        (200, &json!(2), vec!["src-ad", "src-local"])
    );
    let (status, source) = get(&sim, &token, "/role-store/api/v1/sources/src-ad").await;
    assert_eq!((status, &source["connection"]["type"]), (200, &json!("LDAP")));
    let (status, _) = get(&sim, &token, "/role-store/api/v1/sources/src-nope").await;
    assert_eq!(status, 404);

    let refresh = "/role-store/api/v1/sources/refresh";
    let (status, _) = post(&sim, &token, refresh, json!(["src-ad"])).await;
    assert_eq!(status, 200);
    assert_eq!(
        (sim.source_refreshes("src-ad"), sim.source_refreshes("src-local")),
        (1, 0)
    );
    let (status, error) = post(&sim, &token, refresh, json!(["src-local", "src-nope"])).await;
    assert_eq!((status, &error["property"]), (400, &json!("[1]")));
    assert_eq!(
        sim.source_refreshes("src-local"),
        0,
        "a refused refresh refreshes nothing"
    );
    let (status, _) = post(&sim, &token, refresh, json!({"ids": ["src-ad"]})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn fixture_data_must_name_existing_users_and_have_ids() {
    let mut fixture = privx_fixture(1);
    fixture.sessions.insert("nobody".to_owned(), vec![]);
    let error = fixture.validate().expect_err("an unknown user");
    assert!(error.to_string().contains("privx.sessions: user \"nobody\""), "{error}");
    let mut fixture = privx_fixture(1);
    fixture
        .authorized_keys
        .insert("u-0000".to_owned(), vec![json!({"name": "no id"})]);
    assert!(fixture.validate().is_err());
    let mut fixture = privx_fixture(1);
    fixture.sources = vec![json!({"id": "s"}), json!({"id": "s"})];
    assert!(
        fixture
            .validate()
            .expect_err("a duplicate")
            .to_string()
            .contains("duplicate id")
    );
    let parsed: runbook_sim::Fixture =
        serde_json::from_value(json!({"privx": {"users": []}})).expect("old fixtures still load");
    assert!(parsed.privx.sessions.is_empty() && parsed.privx.sources.is_empty());
}
