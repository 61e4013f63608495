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
            .contains("PrivX has no role \"no-such-role\" (no role has this exact name; names are case-sensitive); check it against privx::list_roles()"),
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

/// `tenant(0, 0)` with roles 4 ..= 123 (`Role 004` ...) after admins, auditors and developers:
/// more than two default pages of 50.
fn many_roles() -> serde_json::Value {
    let mut tenant = tenant(0, 0);
    let roles = tenant["privx"]["roles"].as_array_mut().unwrap();
    roles.extend((4..=123).map(|n| crate::fixtures::role(&format!("Role {n:03}"), n)));
    tenant
}

fn role_id(n: usize) -> String {
    format!("7c1f0000-0000-4000-8000-{n:012}")
}

/// The explicit roles the simulator holds for a user: `(id, grant_type)`.
fn explicit_roles(sims: &Sims, user: &str) -> Vec<(String, serde_json::Value)> {
    let user = sims.px().user(user).unwrap();
    user["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["explicit"] == json!(true))
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["grant_type"].clone()))
        .collect()
}

fn requests_to(sims: &Sims, method: &str, suffix: &str) -> Vec<runbook_sim::LoggedRequest> {
    sims.px()
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .collect()
}

#[tokio::test]
async fn roles_past_the_first_page_are_granted_and_revoked_by_name_and_by_id() {
    let sims = Sims::start(many_roles()).await;
    let engine = sims.engine();
    let granted = eval(&engine, &format!(r#"privx::grant_role("{ANN}", "Role 110")"#)).await;
    assert_eq!(
        (&granted["changed"], &granted["role"]["id"]),
        (&json!(true), &json!(role_id(110)))
    );
    let by_id = eval(&engine, &format!(r#"privx::grant_role("{ANN}", "{}")"#, role_id(111))).await;
    assert_eq!(
        (&by_id["changed"], &by_id["role"]["name"]),
        (&json!(true), &json!("Role 111"))
    );
    let held: Vec<String> = explicit_roles(&sims, ANN).into_iter().map(|(id, _)| id).collect();
    assert_eq!(held, vec![role_id(1), role_id(110), role_id(111)]);

    let revoked = eval(&engine, &format!(r#"privx::revoke_role("{ANN}", "Role 111")"#)).await;
    assert_eq!(revoked["changed"], true);
    let revoked = eval(&engine, &format!(r#"privx::revoke_role("{ANN}", "{}")"#, role_id(110))).await;
    assert_eq!(revoked["changed"], true);
    let held: Vec<String> = explicit_roles(&sims, ANN).into_iter().map(|(id, _)| id).collect();
    assert_eq!(held, vec![role_id(1)]);

    // By name: one resolve each; by id: one GET of that role; never the role list.
    assert_eq!(requests_to(&sims, "POST", "/roles/resolve").len(), 2);
    let resolved = &requests_to(&sims, "POST", "/roles/resolve")[0];
    assert_eq!(resolved.body, Some(json!(["Role 110"])));
    assert_eq!(requests_to(&sims, "GET", &format!("/roles/{}", role_id(111))).len(), 1);
    assert_eq!(requests_to(&sims, "GET", "/role-store/api/v1/roles").len(), 0);

    let err = eval_err(&engine, &format!(r#"privx::grant_role("{ANN}", "Role 999")"#)).await;
    assert!(
        err.message
            .contains("PrivX has no role \"Role 999\" (no role has this exact name"),
        "{}",
        err.message
    );
    let missing = role_id(999);
    let err = eval_err(&engine, &format!(r#"privx::revoke_role("{ANN}", "{missing}")"#)).await;
    assert!(
        err.message
            .contains(&format!("PrivX has no role \"{missing}\" (no role has this id)")),
        "{}",
        err.message
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn roles_are_listed_read_resolved_and_their_members_paged() {
    let mut fixture = many_roles();
    let roles = fixture["privx"]["roles"].as_array_mut().unwrap();
    roles.extend((124..1200).map(|n| crate::fixtures::role(&format!("Role {n:04}"), n)));
    // 120 users holding "developers" explicitly: three pages of members.
    let developers = crate::fixtures::role("developers", 3);
    let users = fixture["privx"]["users"].as_array_mut().unwrap();
    users.extend((7..127).map(|i| {
        crate::fixtures::px_user(
            i,
            &format!("dev{i}"),
            &format!("dev{i}@example.com"),
            "AD",
            std::slice::from_ref(&developers),
            "ENABLED",
        )
    }));
    let sims = Sims::start(fixture).await;
    let engine = sims.engine();
    assert_eq!(eval(&engine, "privx::list_roles().len()").await, json!(1199));
    let lists = requests_to(&sims, "GET", "/role-store/api/v1/roles");
    assert_eq!(lists.len(), 2, "two pages of at most 1000");
    assert!(
        lists
            .iter()
            .all(|r| r.query.as_deref().is_some_and(|q| q.contains("limit=1000")))
    );

    assert_eq!(
        eval(&engine, &format!(r#"privx::get_role("{}").name"#, role_id(2))).await,
        json!("auditors")
    );
    let err = eval_err(&engine, &format!(r#"privx::get_role("{}")"#, role_id(5000))).await;
    assert!(err.message.contains("PrivX has no role"), "{}", err.message);
    assert_eq!(
        eval(
            &engine,
            r#"privx::resolve_roles(["admins", "Role 0500", "nope"]).map(|r| r.id)"#
        )
        .await,
        json!([role_id(1), role_id(500)])
    );

    let members = eval(&engine, r#"privx::role_members("developers").map(|u| u.principal)"#).await;
    let members = members.as_array().unwrap();
    assert_eq!(members.len(), 121, "bob and the 120 developers");
    assert_eq!(members[0], json!("bob"));
    assert_eq!(requests_to(&sims, "GET", "/members").len(), 3, "pages of 50");
    let all = eval(&engine, r#"privx::role_members("developers")"#).await;
    assert!(!all.to_string().contains("TOTPSEED"), "a seed escaped the member list");
    sims.shutdown().await;
}

#[tokio::test]
async fn time_restricted_and_floating_grants_are_stored_as_sent_and_other_grants_kept() {
    let sims = Sims::start(tenant(0, 0)).await;
    let engine = sims.engine();
    let granted = eval(
        &engine,
        &format!(r#"privx::grant_role("{ANN}", "auditors", #{{from: "2026-12-01T08:00:00Z", to: parse_time("2026-12-01T16:00:00Z")}})"#),
    )
    .await;
    assert_eq!(granted["changed"], true);
    let user = sims.px().user(ANN).unwrap();
    let auditors = user["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "auditors")
        .unwrap()
        .clone();
    assert_eq!(auditors["grant_type"], "TIME_RESTRICTED");
    assert_eq!(
        auditors["grant_validity_periods"],
        json!([{"grant_start": "2026-12-01T08:00:00Z", "grant_end": "2026-12-01T16:00:00Z"}])
    );

    // The same window again sends nothing; a floating grant keeps the window of the other.
    let puts = || requests_to(&sims, "PUT", "/roles").len();
    let again = eval(
        &engine,
        &format!(r#"privx::grant_role("{ANN}", "auditors", #{{from: 1796112000, to: 1796140800}})"#),
    )
    .await;
    assert_eq!((again["changed"].clone(), puts()), (json!(false), 1));
    eval(
        &engine,
        &format!(r#"privx::grant_role("{ANN}", "developers", #{{floating_hours: 24}})"#),
    )
    .await;
    assert_eq!(
        explicit_roles(&sims, ANN),
        vec![
            (role_id(1), json!("PERMANENT")),
            (role_id(2), json!("TIME_RESTRICTED")),
            (role_id(3), json!("FLOATING")),
        ]
    );
    let last_put = requests_to(&sims, "PUT", "/roles").pop().unwrap().body.unwrap();
    let sent = last_put.as_array().unwrap();
    assert!(
        sent.iter()
            .all(|h| h["explicit"] == json!(true) && h["grant_type"].is_string()),
        "{last_put}"
    );
    assert_eq!(
        sent[1]["grant_validity_periods"], auditors["grant_validity_periods"],
        "kept as it was"
    );
    assert_eq!(sent[2]["floating_length"], json!(24));

    // Making a time-limited grant permanent is a change.
    let permanent = eval(&engine, &format!(r#"privx::grant_role("{ANN}", "auditors")"#)).await;
    assert_eq!(permanent["changed"], true);
    assert_eq!(explicit_roles(&sims, ANN)[2], (role_id(2), json!("PERMANENT")));

    // A window that ends before it starts is refused before anything is sent.
    let before = puts();
    let err = eval_err(
        &engine,
        &format!(r#"privx::grant_role("{ANN}", "admins", #{{from: now(), to: now() - 60}})"#),
    )
    .await;
    assert!(
        err.message.contains("`to`") && err.message.contains("must be after `from`"),
        "{}",
        err.message
    );
    assert_eq!(puts(), before);
    sims.shutdown().await;
}

#[tokio::test]
async fn a_grant_privx_stores_differently_is_an_error_naming_both() {
    let sims = Sims::start(tenant(0, 0)).await;
    sims.px().set_ignore_grant_fields(true);
    let engine = sims.engine();
    let err = eval_err(
        &engine,
        &format!(
            r#"privx::grant_role("{BOB}", "admins", #{{from: "2026-12-01T08:00:00Z", to: "2026-12-02T08:00:00Z"}})"#
        ),
    )
    .await;
    assert!(
        err.message.contains(&format!(
            "PrivX did not store the grant of role \"admins\" to user {BOB} as sent: sent TIME_RESTRICTED from 2026-12-01T08:00:00Z until 2026-12-02T08:00:00Z, but reading the user's roles back, PrivX stored it as PERMANENT"
        )),
        "{}",
        err.message
    );
    let err = eval_err(
        &engine,
        &format!(r#"privx::grant_role("{ANN}", "auditors", #{{floating_hours: 8}})"#),
    )
    .await;
    assert!(
        err.message.contains("sent FLOATING for 8 h") && err.message.contains("stored it as PERMANENT"),
        "{}",
        err.message
    );
    // A permanent grant is what this PrivX stores: no error.
    let carol = "eef4aefc-0000-4000-8000-000000000003";
    assert_eq!(
        eval(&engine, &format!(r#"privx::grant_role("{carol}", "admins").changed"#)).await,
        json!(true)
    );
    sims.shutdown().await;
}

/// `tenant(0, 0)` with 60 sessions and two connections for ann, one session for bob, two SSH
/// keys for ann and two sources.
fn access_tenant() -> serde_json::Value {
    let mut tenant = tenant(0, 0);
    let session = |id: String, user: &str, minute: usize| json!({"id": id, "user_id": user, "type": "login", "remote_addr": "10.0.0.1", "created": "2026-11-01T00:00:00Z", "expires": format!("2026-12-01T00:{minute:02}:00Z")});
    let privx = &mut tenant["privx"];
    privx["sessions"] = json!({
        ANN: (0..60).map(|n| session(format!("s-ann-{n:02}"), ANN, n)).collect::<Vec<_>>(),
        BOB: [session("s-bob".to_owned(), BOB, 0)],
    });
    privx["connections"] = json!({ANN: [{"id": "c-1", "protocol": "SSH"}, {"id": "c-2", "protocol": "RDP"}]});
    privx["authorized_keys"] = json!({ANN: [
        {"id": "k-1", "user_id": ANN, "name": "laptop", "public_key": "ssh-ed25519 AAAAC3one", "fingerprints": ["SHA256:one"]},
        {"id": "k-2", "user_id": ANN, "name": "desktop", "public_key": "ssh-ed25519 AAAAC3two", "fingerprints": ["SHA256:two"]},
    ]});
    privx["sources"] = json!([
        {"id": "src-ad", "name": "Corporate AD", "enabled": true, "status_code": "OK", "ttl": 900, "connection": {"type": "LDAP"}},
        {"id": "src-local", "name": "Local", "enabled": true, "status_code": "OK", "connection": {"type": "LOCAL"}},
    ]);
    tenant
}

#[tokio::test]
async fn sessions_are_listed_in_pages_and_terminated() {
    let sims = Sims::start(access_tenant()).await;
    let engine = sims.engine();
    let sessions = eval(&engine, &format!(r#"privx::user_sessions("{ANN}")"#)).await;
    assert_eq!(sessions.as_array().unwrap().len(), 60);
    assert_eq!(sessions[0]["remote_addr"], "10.0.0.1");
    assert_eq!(requests_to(&sims, "GET", &format!("/users/{ANN}/sessions")).len(), 2);

    for _ in 0..2 {
        eval(&engine, &format!(r#"privx::terminate_user_sessions("{ANN}")"#)).await;
    }
    assert!(sims.px().sessions(ANN).is_empty());
    assert_eq!(sims.px().sessions(BOB).len(), 1, "only ann's sessions ended");
    let terminations = requests_to(
        &sims,
        "POST",
        &format!("/sessionstorage/users/{ANN}/sessions/terminate"),
    );
    assert_eq!(
        terminations.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![200, 200]
    );
    assert_eq!(
        eval(&engine, &format!(r#"privx::user_sessions("{ANN}").len()"#)).await,
        json!(0)
    );

    let err = eval_err(
        &engine,
        r#"privx::terminate_user_sessions("eef4aefc-0000-4000-8000-999999999999")"#,
    )
    .await;
    assert!(
        err.message
            .contains("no user eef4aefc-0000-4000-8000-999999999999 in PrivX"),
        "{}",
        err.message
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn live_connections_are_terminated() {
    let sims = Sims::start(access_tenant()).await;
    let engine = sims.engine();
    assert_eq!(sims.px().connections(ANN).len(), 2);
    for _ in 0..2 {
        eval(&engine, &format!(r#"privx::terminate_user_connections("{ANN}")"#)).await;
    }
    assert!(sims.px().connections(ANN).is_empty());
    let calls = requests_to(
        &sims,
        "POST",
        &format!("/connection-manager/api/v1/terminate/user/{ANN}"),
    );
    assert_eq!(calls.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200, 200]);
    sims.shutdown().await;
}

#[tokio::test]
async fn authorized_keys_are_listed_and_deleted_once() {
    let sims = Sims::start(access_tenant()).await;
    let engine = sims.engine();
    let keys = eval(
        &engine,
        &format!(r#"privx::authorized_keys("{ANN}").map(|k| [k.id, k.fingerprints[0]])"#),
    )
    .await;
    assert_eq!(keys, json!([["k-1", "SHA256:one"], ["k-2", "SHA256:two"]]));
    assert_eq!(
        eval(&engine, &format!(r#"privx::authorized_keys("{BOB}")"#)).await,
        json!([])
    );

    let deleted = eval(&engine, &format!(r#"privx::delete_authorized_key("{ANN}", "k-1")"#)).await;
    assert_eq!(deleted, json!({"deleted": true}));
    let ids: Vec<serde_json::Value> = sims.px().authorized_keys(ANN).iter().map(|k| k["id"].clone()).collect();
    assert_eq!(ids, vec![json!("k-2")]);
    // Already gone: not an error, and the answer says so.
    let again = eval(&engine, &format!(r#"privx::delete_authorized_key("{ANN}", "k-1")"#)).await;
    assert_eq!(again, json!({"deleted": false}));
    assert_eq!(requests_to(&sims, "DELETE", "/authorizedkeys/k-1").len(), 2);
    // An unknown user is an error, not "already gone".
    let err = eval_err(
        &engine,
        r#"privx::delete_authorized_key("eef4aefc-0000-4000-8000-999999999999", "k-1")"#,
    )
    .await;
    assert!(
        err.message
            .contains("no user eef4aefc-0000-4000-8000-999999999999 in PrivX"),
        "{}",
        err.message
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn sources_are_listed_and_refreshed() {
    let sims = Sims::start(access_tenant()).await;
    let engine = sims.engine();
    assert_eq!(
        eval(&engine, "privx::list_sources().map(|s| [s.id, s.ttl])").await,
        json!([["src-ad", 900], ["src-local", null]])
    );
    eval(&engine, "privx::refresh_sources(privx::list_sources().map(|s| s.id))").await;
    eval(&engine, r#"privx::refresh_sources("src-ad")"#).await;
    assert_eq!(
        (
            sims.px().source_refreshes("src-ad"),
            sims.px().source_refreshes("src-local")
        ),
        (2, 1)
    );
    let bodies: Vec<_> = requests_to(&sims, "POST", "/sources/refresh")
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(
        bodies,
        vec![Some(json!(["src-ad", "src-local"])), Some(json!(["src-ad"]))]
    );
    let err = eval_err(&engine, r#"privx::refresh_sources(["src-nope"])"#).await;
    assert!(err.message.contains("source src-nope not found"), "{}", err.message);
    let before = sims.px().requests().len();
    eval(&engine, "privx::refresh_sources([])").await;
    assert_eq!(sims.px().requests().len(), before, "an empty list sends nothing");
    sims.shutdown().await;
}

#[tokio::test]
async fn a_plan_of_the_new_writes_sends_nothing_and_gives_results_a_script_can_read() {
    let sims = Sims::start(access_tenant()).await;
    let engine = sims.engine();
    let script = format!(
        r#"let g = privx::grant_role("{ANN}", "auditors", #{{floating_hours: 8}});
        privx::terminate_user_sessions("{ANN}");
        privx::terminate_user_connections("{ANN}");
        let d = privx::delete_authorized_key("{ANN}", "k-1");
        privx::refresh_sources(["src-ad", "src-local"]);
        [g.changed, g.role.name, d.deleted]"#
    );
    let outcome = engine.run(&script, RunOptions::new().plan(true)).await.unwrap();
    assert_eq!(outcome.result, json!([true, "auditors", true]));
    let planned: Vec<&str> = outcome
        .records
        .planned_changes
        .iter()
        .map(|c| c.action.as_str())
        .collect();
    assert_eq!(
        planned,
        vec![
            "privx.grant_role",
            "privx.terminate_user_sessions",
            "privx.terminate_user_connections",
            "privx.delete_authorized_key",
            "privx.refresh_sources",
        ]
    );
    assert_eq!(sims.changes(), 0);
    assert_eq!(
        (sims.px().sessions(ANN).len(), sims.px().authorized_keys(ANN).len()),
        (60, 2)
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn roles_read_back_and_written_again_carry_no_field_privx_did_not_give() {
    // Ann holds two explicit roles; the records filled in for the fields PrivX left out must not
    // travel back to it as nulls.
    let sims = Sims::start(crate::fixtures::scripted_tenant()).await;
    let engine = sims.engine();
    let ann = "eef4aefc-0000-4000-8000-000000000001";
    let script = format!(r#"privx::set_user_roles("{ann}", privx::get_user_roles("{ann}").filter(|r| r.explicit))"#);
    eval(&engine, &script).await;
    let put = sims
        .px()
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("the roles were written");
    let body = put.body.expect("a JSON body");
    for role in body.as_array().unwrap() {
        for (key, value) in role.as_object().unwrap() {
            assert!(!value.is_null(), "{key} sent as null: {role}");
        }
        assert_eq!(role["explicit"], true, "{role}");
    }
    assert_eq!(put.status, 200);
    sims.shutdown().await;
}
