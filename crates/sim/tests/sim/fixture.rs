//! Loading fixtures, parsing rate limits, and starting/stopping both simulators together.

use std::time::Duration;

use reqwest::Method;
use runbook_sim::{Fixture, FixtureError, RateLimit, SimOptions, Simulators};
use serde_json::json;

use crate::support::{cf, client, privx, privx_login, send};

#[test]
fn a_missing_half_is_an_empty_tenant_with_default_credentials() {
    let fixture = Fixture::from_json(r#"{"privx": {"api_client_id": "bot"}}"#).expect("valid");
    assert_eq!(fixture.cloudflare.account_id, "0123456789abcdef0123456789abcdef");
    assert_eq!(fixture.cloudflare.api_token, "sim-cloudflare-token");
    assert_eq!(fixture.cloudflare.api_email, "sim@example.com");
    assert_eq!(fixture.cloudflare.api_key, "sim-cloudflare-global-key");
    assert!(fixture.cloudflare.users.is_empty());
    assert_eq!(fixture.privx.api_client_id, "bot");
    assert_eq!(fixture.privx.oauth_client_id, "privx-external");
    assert_eq!(fixture.privx.oauth_client_secret, "sim-oauth-secret");
    assert_eq!(fixture.privx.api_client_secret, "sim-api-secret");
    assert_eq!(fixture.privx.token_lifetime_secs, 300);
    assert!(Fixture::from_json("{}").is_ok());
}

#[test]
fn an_unknown_key_is_named_with_its_line_and_column() {
    let error = Fixture::from_json("{\n  \"cloudflare\": {},\n  \"privy\": {}\n}").expect_err("an error");
    let message = error.to_string();
    assert!(message.contains("privy"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert_eq!(error.line(), Some(3));
    assert!(error.column().is_some());

    let error = Fixture::from_json(r#"{"cloudflare": {"user": []}}"#).expect_err("an error");
    assert!(error.to_string().contains("user"), "{error}");
}

#[test]
fn inconsistent_content_is_refused_with_its_location() {
    let cases = [
        (
            json!({"cloudflare": {"users": [{"email": "a@b.c"}]}}),
            "cloudflare.users[0]",
        ),
        (
            json!({"cloudflare": {"users": [{"id": "x"}, {"id": "x"}]}}),
            "duplicate id",
        ),
        (
            json!({"cloudflare": {"users": [], "failed_logins": {"ghost": []}}}),
            "ghost",
        ),
        (json!({"cloudflare": {"api_token": ""}}), "api_token"),
        (
            json!({"privx": {"users": [{"id": "u", "roles": [{"name": "r"}]}]}}),
            "privx.users[0].roles[0]",
        ),
        (json!({"privx": {"roles": ["admin"]}}), "privx.roles[0]"),
        (
            json!({"privx": {"users": [{"id": "u", "roles": [{"id": "r"}, {"id": "s", "explicit": "no"}]}]}}),
            "privx.users[0].roles[1]: \"explicit\" must be a boolean",
        ),
        (
            json!({"privx": {"users": [{"id": "u", "roles": [{"id": "r", "implicit": 1}]}]}}),
            "\"implicit\" must be a boolean",
        ),
        (json!({"privx": {"settings": {"ghost": {}}}}), "ghost"),
    ];
    for (document, expected) in cases {
        let error = Fixture::from_json(&document.to_string()).expect_err("an error");
        assert!(matches!(error, FixtureError::Invalid { .. }), "{error:?}");
        assert!(error.to_string().contains(expected), "{expected:?} in {error}");
    }
}

#[test]
fn roles_may_be_marked_explicit_or_mapped() {
    let document = json!({"privx": {
        "roles": [{"id": "r"}, {"id": "s"}],
        "users": [{"id": "u", "roles": [
            {"id": "r", "explicit": true, "implicit": false},
            {"id": "s", "explicit": false, "implicit": true},
            {"id": "r", "explicit": null, "implicit": null},
        ]}],
    }});
    assert!(Fixture::from_json(&document.to_string()).is_ok());
}

#[test]
fn from_path_names_the_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\"cloudflare\": {\"users\": [}\n").expect("written");
    let error = Fixture::from_path(&path).expect_err("an error");
    assert!(error.to_string().contains("broken.json"), "{error}");
    assert_eq!(error.line(), Some(1));

    let missing = dir.path().join("missing.json");
    let error = Fixture::from_path(&missing).expect_err("an error");
    assert!(matches!(error, FixtureError::Read { .. }));
    assert!(error.to_string().contains("missing.json"), "{error}");

    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"cloudflare": {"users": [{"id": "a", "email": "a@example.com"}]}}"#,
    )
    .expect("written");
    assert_eq!(Fixture::from_path(&good).expect("loads").cloudflare.users.len(), 1);
}

#[test]
fn rate_limits_parse_from_the_cli_forms() {
    let parse = |text: &str| text.parse::<RateLimit>();
    assert_eq!(
        parse("200/1s"),
        Ok(RateLimit {
            requests: 200,
            window: Duration::from_secs(1)
        })
    );
    assert_eq!(
        parse("1200/300s"),
        Ok(RateLimit {
            requests: 1200,
            window: Duration::from_secs(300)
        })
    );
    assert_eq!(
        parse("100/s"),
        Ok(RateLimit {
            requests: 100,
            window: Duration::from_secs(1)
        })
    );
    assert_eq!(
        parse("10/500ms"),
        Ok(RateLimit {
            requests: 10,
            window: Duration::from_millis(500)
        })
    );
    assert_eq!(
        parse("60/1m"),
        Ok(RateLimit {
            requests: 60,
            window: Duration::from_secs(60)
        })
    );
    assert_eq!(parse("1200/300s").map(|l| l.to_string()), Ok("1200/300s".to_owned()));
    for bad in ["", "200", "0/1s", "x/1s", "5/0s", "5/1x", "5/-1s", "-5/1s"] {
        let error = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} should not parse"));
        assert!(error.to_string().contains("REQUESTS/WINDOW"), "{error}");
    }
}

#[tokio::test]
async fn both_simulators_start_together_and_shutdown_releases_their_ports() {
    let mut fixture = Fixture::default();
    fixture
        .cloudflare
        .users
        .push(json!({"id": "c1", "email": "c1@example.com"}));
    fixture.privx.users.push(json!({"id": "p1", "principal": "p1"}));
    let sims = Simulators::start(fixture, SimOptions::default())
        .await
        .expect("both start");
    assert!(sims.cloudflare.base_url().starts_with("http://127.0.0.1:"));
    assert!(sims.cloudflare.base_url().ends_with("/client/v4"));
    assert!(sims.privx.base_url().starts_with("http://127.0.0.1:"));
    assert!(sims.privx.ca_cert_pem().is_none());

    let reply = send(cf(&sims.cloudflare, Method::GET, "/c1")).await;
    assert_eq!(reply.json()["result"]["email"], json!("c1@example.com"));
    let token = privx_login(&sims.privx).await;
    let reply = send(privx(&sims.privx, &token, Method::GET, "/role-store/api/v1/users/p1")).await;
    assert_eq!(reply.json()["principal"], json!("p1"));

    let cloudflare_url = sims.cloudflare.base_url();
    let privx_url = sims.privx.base_url();
    sims.shutdown().await;
    for url in [cloudflare_url, privx_url] {
        let error = client().get(&url).send().await.expect_err("nothing listens any more");
        assert!(error.is_connect(), "{error}");
    }
}

#[tokio::test]
async fn an_inconsistent_fixture_does_not_start() {
    let mut fixture = Fixture::default();
    fixture.privx.users.push(json!({"principal": "no-id"}));
    let error = Simulators::start(fixture, SimOptions::default())
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("privx.users[0]"), "{error}");
}
