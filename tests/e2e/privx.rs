//! The PrivX provider over real HTTP against the simulator: every action, find_user's matching,
//! OAuth (renewal under load, forced 401s, wrong credentials), TLS with a private CA, and the
//! TOTP seed that must never come out.

use std::time::{Duration, Instant};

use runbook_core::RunOptions;
use runbook_sim::SimOptions;
use serde_json::json;

use crate::fixtures::tenant;
use crate::support::{Sims, eval, eval_err};

const ANN: &str = "eef4aefc-0000-4000-8000-000000000001";
const BOB: &str = "eef4aefc-0000-4000-8000-000000000002";

fn searches(sims: &Sims) -> usize {
    sims.px()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/users/search"))
        .count()
}

#[tokio::test]
async fn a_user_comes_back_whole_but_for_the_totp_seed() {
    let sims = Sims::start(tenant(0, 2)).await;
    let engine = sims.engine();
    let user = eval(&engine, &format!(r#"privx::get_user("{ANN}")"#)).await;
    assert_eq!(user["principal"], "ann");
    assert_eq!(user["job_title"], "Engineer", "unknown fields are kept");
    assert_eq!(user["big_number"], json!(u64::MAX));
    assert_eq!(user["mfa"], json!({"status": "ENABLED", "seed": "(redacted)"}));
    let resolved = eval(&engine, &format!(r#"privx::resolve_user("{ANN}")"#)).await;
    assert_eq!(resolved["mfa"]["seed"], "(redacted)");
    let all = eval(&engine, "privx::search_users()").await;
    assert!(!all.to_string().contains("TOTPSEED"), "a seed escaped the search");
    let err = eval_err(&engine, r#"privx::get_user("eef4aefc-0000-4000-8000-999999999999")"#).await;
    assert!(
        err.message
            .starts_with("privx.get_user: no user eef4aefc-0000-4000-8000-999999999999 in PrivX (PrivX answered 404"),
        "{}",
        err.message
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn search_pages_through_every_user() {
    let sims = Sims::start(tenant(0, 2094)).await;
    let engine = sims.engine();
    assert_eq!(eval(&engine, "privx::search_users().len()").await, json!(2100));
    assert_eq!(searches(&sims), 3);
    let offsets: Vec<String> = sims.px().requests().iter().filter_map(|r| r.query.clone()).collect();
    assert!(
        offsets
            .iter()
            .any(|q| q.contains("offset=2000") && q.contains("limit=1000")),
        "{offsets:?}"
    );
    let some = eval(
        &engine,
        r#"privx::search_users(#{source: "LOCAL"}).map(|u| u.principal)"#,
    )
    .await;
    assert_eq!(some, json!(["carol.local"]));
    sims.shutdown().await;
}

#[tokio::test]
async fn find_user_keeps_only_exact_matches() {
    let sims = Sims::start(tenant(0, 2)).await;
    let engine = sims.engine();
    // "ann@example.com" also hits joann@example.com and ann@example.com.invalid as keywords.
    assert_eq!(
        eval(&engine, r#"privx::find_user("ann@example.com").principal"#).await,
        json!("ann")
    );
    assert_eq!(
        eval(&engine, r#"privx::find_user("ann").principal"#).await,
        json!("ann")
    );
    // A case-only difference still matches.
    assert_eq!(
        eval(&engine, r#"privx::find_user("bob@example.com").principal"#).await,
        json!("bob")
    );
    // A miss is ().
    assert_eq!(
        eval(&engine, r#"privx::find_user("nobody@example.com")"#).await,
        json!(null)
    );
    // A UUID is fetched directly, without a search.
    let before = searches(&sims);
    assert_eq!(
        eval(&engine, &format!(r#"privx::find_user("{BOB}").principal"#)).await,
        json!("bob")
    );
    assert_eq!(searches(&sims), before);
    // The same email in two directories is ambiguous: the error names both.
    let err = eval_err(&engine, r#"privx::find_user("carol@example.com")"#).await;
    assert!(
        err.message.contains("\"carol@example.com\" is ambiguous"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("carol (source AD") && err.message.contains("carol.local (source LOCAL"),
        "{}",
        err.message
    );
    let caught = eval(&engine, r#"let r = (); try { privx::find_user("carol@example.com"); } catch (e) { r = [e.code, e.candidates.len()]; } r"#).await;
    assert_eq!(caught, json!(["AMBIGUOUS", 2]));
    sims.shutdown().await;
}

#[tokio::test]
async fn settings_are_read_and_replaced() {
    let sims = Sims::start(tenant(0, 0)).await;
    let engine = sims.engine();
    assert_eq!(
        eval(&engine, &format!(r#"privx::get_user_settings("{ANN}")"#)).await,
        json!({"locale": "fi_FI"})
    );
    eval(
        &engine,
        &format!(r#"privx::set_user_settings("{ANN}", #{{locale: "sv_SE", theme: "dark"}})"#),
    )
    .await;
    assert_eq!(
        eval(&engine, &format!(r#"privx::get_user_settings("{ANN}")"#)).await,
        json!({"locale": "sv_SE", "theme": "dark"})
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn roles_are_granted_and_revoked_by_read_modify_write() {
    let sims = Sims::start(tenant(0, 0)).await;
    let engine = sims.engine();
    let names = |v: serde_json::Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    let roles = eval(&engine, &format!(r#"privx::get_user_roles("{ANN}")"#)).await;
    assert_eq!(names(roles), vec!["admins"]);

    let granted = eval(&engine, &format!(r#"privx::grant_role("{ANN}", "auditors")"#)).await;
    assert_eq!(granted["changed"], true);
    let puts = || sims.px().requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts(), 1);
    assert_eq!(
        names(eval(&engine, &format!(r#"privx::get_user_roles("{ANN}")"#)).await),
        vec!["admins", "auditors"]
    );

    // Already held: nothing is sent.
    let again = eval(&engine, &format!(r#"privx::grant_role("{ANN}", "auditors")"#)).await;
    assert_eq!(again["changed"], false);
    assert_eq!(puts(), 1);

    let revoked = eval(&engine, &format!(r#"privx::revoke_role("{ANN}", "admins")"#)).await;
    assert_eq!(revoked["changed"], true);
    assert_eq!(
        names(eval(&engine, &format!(r#"privx::get_user_roles("{ANN}")"#)).await),
        vec!["auditors"]
    );
    let not_held = eval(&engine, &format!(r#"privx::revoke_role("{ANN}", "admins")"#)).await;
    assert_eq!(not_held["changed"], false);
    assert_eq!(puts(), 2);

    let err = eval_err(&engine, &format!(r#"privx::grant_role("{ANN}", "no-such-role")"#)).await;
    assert!(
        err.message
            .contains("PrivX has no role \"no-such-role\"; roles: admins, auditors, developers"),
        "{}",
        err.message
    );

    eval(&engine, &format!(r#"privx::set_user_roles("{BOB}", [])"#)).await;
    assert_eq!(
        eval(&engine, &format!(r#"privx::get_user_roles("{BOB}").len()"#)).await,
        json!(0)
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn errors_carry_error_code_and_property() {
    let sims = Sims::start(tenant(0, 0)).await;
    let engine = sims.engine();
    let caught = eval(
        &engine,
        &format!(r#"let r = (); try {{ privx::set_user_roles("{ANN}", ["00000000-0000-4000-8000-00000000dead"]); }} catch (e) {{ r = e; }} r"#),
    )
    .await;
    assert_eq!(caught["status"], 400);
    assert!(caught["error_code"].is_string(), "{caught}");
    assert_eq!(caught["code"], caught["error_code"]);
    assert!(caught["property"].is_string(), "{caught}");
    sims.shutdown().await;
}

#[tokio::test]
async fn mfa_is_enabled_disabled_and_reset() {
    let sims = Sims::start(tenant(0, 0)).await;
    let engine = sims.engine();
    let status = |id: &str| {
        sims.px().user(id).unwrap()["mfa"]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    eval(&engine, &format!(r#"privx::disable_mfa("{ANN}")"#)).await;
    assert_eq!(status(ANN), "DISABLED");
    eval(&engine, &format!(r#"privx::enable_mfa(["{ANN}", "{BOB}"])"#)).await;
    assert_eq!((status(ANN), status(BOB)), ("ENABLED".to_owned(), "ENABLED".to_owned()));
    let outcome = engine
        .run(&format!(r#"privx::reset_mfa(["{ANN}", "{BOB}"])"#), RunOptions::new())
        .await
        .unwrap();
    assert_eq!(outcome.records.audit[0].targets, 2);
    assert_eq!(
        (status(ANN), status(BOB)),
        ("UNINITIALIZED".to_owned(), "UNINITIALIZED".to_owned())
    );
    let before = sims.px().requests().len();
    eval(&engine, "privx::reset_mfa([])").await;
    assert_eq!(sims.px().requests().len(), before, "an empty list sends nothing");
    sims.shutdown().await;
}

#[tokio::test]
async fn tokens_are_renewed_under_load_once_per_lifetime() {
    let sims = Sims::start_with(
        tenant(0, 194),
        SimOptions {
            latency: Duration::from_millis(100),
            ..SimOptions::default()
        },
    )
    .await;
    sims.px().set_token_lifetime(Duration::from_secs(2));
    let engine = sims.engine();
    let started = Instant::now();
    let revoker = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sims.px().revoke_all_tokens();
    };
    let script = "let ids = privx::search_users().map(|u| u.id); parallel(ids, |id| privx::get_user(id).id).len()";
    let (outcome, ()) = tokio::join!(engine.run(script, RunOptions::new().concurrency(8)), revoker);
    let outcome = outcome.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcome.result, json!(200));
    assert!(
        outcome
            .records
            .audit
            .iter()
            .all(|r| r.outcome == runbook_core::CallOutcome::Ok)
    );
    let lifetimes = elapsed.as_secs_f64() / 2.0;
    let allowed = lifetimes.ceil() as usize + 1;
    let tokens = sims.px().token_requests();
    assert!(
        elapsed > Duration::from_secs(2),
        "the run must outlive a token ({elapsed:?})"
    );
    assert!(
        tokens >= 2 && tokens <= allowed,
        "{tokens} token requests in {elapsed:?} (at most {allowed}: one per 2 s lifetime plus one after the forced 401)"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn a_revoked_token_is_renewed_and_the_call_resent_once() {
    let sims = Sims::start(tenant(0, 0)).await;
    let engine = sims.engine();
    eval(&engine, &format!(r#"privx::get_user("{ANN}")"#)).await;
    sims.px().revoke_all_tokens();
    assert_eq!(
        eval(&engine, &format!(r#"privx::get_user("{ANN}").principal"#)).await,
        json!("ann")
    );
    assert_eq!(sims.px().token_requests(), 2);
    let statuses: Vec<u16> = sims
        .px()
        .requests()
        .iter()
        .filter(|r| r.path.contains("/users/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200, 401, 200]);
    sims.shutdown().await;
}

#[tokio::test]
async fn wrong_secrets_name_the_setting_to_check() {
    let sims = Sims::start(tenant(0, 0)).await;
    let mut bad_oauth = sims.privx_config();
    bad_oauth.insert("oauth_client_secret".into(), json!("not-the-oauth-secret"));
    let err = eval_err(
        &sims.engine_with(sims.cloudflare_config(), bad_oauth),
        &format!(r#"privx::get_user("{ANN}")"#),
    )
    .await;
    assert!(
        err.message.contains("PrivX rejected the OAuth client \"privx-external\" (invalid_client): check oauth_client_id in [providers.privx] and oauth_client_secret in [providers.privx]"),
        "{}",
        err.message
    );
    let mut bad_api = sims.privx_config();
    bad_api.insert("api_client_secret".into(), json!("not-the-api-secret"));
    let err = eval_err(
        &sims.engine_with(sims.cloudflare_config(), bad_api),
        &format!(r#"privx::get_user("{ANN}")"#),
    )
    .await;
    assert!(
        err.message.contains(&format!(
            "PrivX rejected the API client \"{}\" (invalid_grant): check api_client_id in [providers.privx] and api_client_secret in [providers.privx]",
            sims.px().api_client_id()
        )),
        "{}",
        err.message
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_configured() {
    let sims = Sims::start_with(
        tenant(0, 0),
        SimOptions {
            tls: true,
            ..SimOptions::default()
        },
    )
    .await;
    assert!(sims.px().base_url().starts_with("https://"));
    // The CA as PEM text.
    assert_eq!(
        eval(&sims.engine(), &format!(r#"privx::get_user("{ANN}").principal"#)).await,
        json!("ann")
    );
    // The CA as a file.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("privx-ca.pem");
    std::fs::write(&ca_file, sims.px().ca_cert_pem().unwrap()).unwrap();
    let mut from_file = sims.privx_config();
    from_file.insert("ca_cert".into(), json!(ca_file.display().to_string()));
    assert_eq!(
        eval(
            &sims.engine_with(sims.cloudflare_config(), from_file),
            &format!(r#"privx::get_user("{ANN}").principal"#)
        )
        .await,
        json!("ann")
    );
    // Without it: an error that says what to set.
    let mut without = sims.privx_config();
    without.remove("ca_cert");
    let err = eval_err(
        &sims.engine_with(sims.cloudflare_config(), without),
        &format!(r#"privx::get_user("{ANN}")"#),
    )
    .await;
    assert!(
        err.message.contains("the server's TLS certificate is not trusted"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("set ca_cert in [providers.privx] to the PEM"),
        "{}",
        err.message
    );
    sims.shutdown().await;
}
