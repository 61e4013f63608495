//! Helpers shared by the test modules: fixtures, clients and response capture.

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use runbook_sim::{CloudflareFixture, CloudflareSim, PrivxFixture, PrivxSim, SimOptions};
use serde_json::{Value, json};

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("status {} body is not JSON ({e}): {}", self.status, self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is text").to_owned())
    }
}

pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("the simulator answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a readable body");
    Reply { status, headers, text }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// A deterministic UUID-shaped id for test user `n`.
pub fn cf_user_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A Cloudflare tenant with `count` users named `User n` / `user{n}@example.com`.
pub fn cf_fixture(count: usize) -> CloudflareFixture {
    let users = (0..count)
        .map(|n| {
            json!({
                "id": cf_user_id(n),
                "uid": format!("uid-{n}"),
                "seat_uid": format!("seat-{n}"),
                "email": format!("user{n}@example.com"),
                "name": format!("User {n}"),
                "access_seat": true,
                "gateway_seat": false,
                "active_device_count": n % 3,
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
                "last_successful_login": "2024-06-01T12:00:00Z",
            })
        })
        .collect();
    CloudflareFixture {
        users,
        ..CloudflareFixture::default()
    }
}

pub async fn cf_sim(fixture: CloudflareFixture) -> CloudflareSim {
    CloudflareSim::start(fixture, SimOptions::default())
        .await
        .expect("the Cloudflare simulator starts")
}

/// A request to `<base>/accounts/<account>/access/users<suffix>` with the bearer token.
pub fn cf(sim: &CloudflareSim, method: Method, suffix: &str) -> RequestBuilder {
    cf_unauthenticated(sim, method, suffix).bearer_auth(sim.api_token())
}

pub fn cf_unauthenticated(sim: &CloudflareSim, method: Method, suffix: &str) -> RequestBuilder {
    let url = format!("{}/accounts/{}/access/users{suffix}", sim.base_url(), sim.account_id());
    client().request(method, url)
}

/// Checks the error envelope's shape and returns its first error code.
pub fn cf_error_code(reply: &Reply) -> i64 {
    let body = reply.json();
    assert_eq!(body["success"], json!(false), "{}", reply.text);
    assert_eq!(body["result"], Value::Null, "{}", reply.text);
    assert_eq!(body["messages"], json!([]), "{}", reply.text);
    let code = body["errors"][0]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer error code: {}", reply.text));
    assert!(code >= 1000, "error codes are at least 1000: {}", reply.text);
    assert!(body["errors"][0]["message"].is_string(), "{}", reply.text);
    code
}

/// A PrivX deployment with roles `r-admin`, `r-ops`, `r-audit` and `count` users; every user has
/// the explicit role `r-ops` and enabled MFA with a seed.
pub fn privx_fixture(count: usize) -> PrivxFixture {
    let roles = vec![
        json!({"id": "r-admin", "name": "admins", "permissions": ["users-manage", "roles-manage"], "system": true}),
        json!({"id": "r-ops", "name": "ops", "permissions": ["hosts-view", "connections-manual"]}),
        json!({"id": "r-audit", "name": "audit", "permissions": ["hosts-view", "audit-view"]}),
    ];
    let users = (0..count)
        .map(|n| {
            json!({
                "id": format!("u-{n:04}"),
                "principal": format!("user{n:04}"),
                "email": format!("user{n:04}@corp.example"),
                "full_name": format!("Test Person {n:04}"),
                "source": if n % 2 == 0 { "local" } else { "ad-main" },
                "source_type": if n % 2 == 0 { "LOCAL" } else { "AD" },
                "roles": [{"id": "r-ops", "name": "ops", "grant_type": "PERMANENT"}],
                "mfa": {"status": "ENABLED", "seed": {"seed_string": format!("SEED{n}"), "seed_qr_code": "data:image/png;base64,AAAA"}},
            })
        })
        .collect();
    PrivxFixture {
        users,
        roles,
        ..PrivxFixture::default()
    }
}

pub async fn privx_sim(fixture: PrivxFixture) -> PrivxSim {
    PrivxSim::start(fixture, SimOptions::default())
        .await
        .expect("the PrivX simulator starts")
}

/// A token request with the given OAuth client credentials (HTTP Basic) and form.
pub fn token_request(
    http: &reqwest::Client,
    sim: &PrivxSim,
    oauth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> RequestBuilder {
    let request = http
        .post(format!("{}/auth/api/v1/oauth/token", sim.base_url()))
        .form(form);
    match oauth {
        Some((id, secret)) => request.basic_auth(id, Some(secret)),
        None => request,
    }
}

/// The simulator's own, valid, password-grant form.
pub fn good_grant(sim: &PrivxSim) -> Vec<(String, String)> {
    vec![
        ("grant_type".to_owned(), "password".to_owned()),
        ("username".to_owned(), sim.api_client_id()),
        ("password".to_owned(), sim.api_client_secret()),
    ]
}

/// Logs in with the simulator's own credentials and returns the access token.
pub async fn privx_login(sim: &PrivxSim) -> String {
    privx_login_with(&client(), sim).await
}

pub async fn privx_login_with(http: &reqwest::Client, sim: &PrivxSim) -> String {
    let (oauth_id, oauth_secret) = (sim.oauth_client_id(), sim.oauth_client_secret());
    let grant = good_grant(sim);
    let form: Vec<(&str, &str)> = grant.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reply = send(token_request(http, sim, Some((&oauth_id, &oauth_secret)), &form)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// An authenticated request to `<base><path>`.
pub fn privx(sim: &PrivxSim, token: &str, method: Method, path: &str) -> RequestBuilder {
    client()
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
}
