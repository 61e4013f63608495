//! The console over plain HTTP, as a careful operator and an attacker would try it: sign-in and
//! its cookie, sessions that end (sign-out, idle, a rotated token) and survive a restart, forms
//! refused from another origin or without their token, scopes, the run-now form, and a run's
//! timeline with its targets' labels. (The browser tests are in `console_browser`.)

use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures::{cf_id, tenant};
use crate::serve::{Server, wait_until, workspace_with};
use crate::support::{Sims, Workspace};

const ALICE: &str = "alice-token-0c3e5a7b9d1f2e4c6a8b0d2f4e6a";
const BOB: &str = "bob-token-7d9f1b3c5e7a9c1e3b5d7f9a1c3e5b";
const READER: &str = "reader-token-9a1c3e5b7d9f1a3c5e7b9d1f3a5c";
const CI: &str = "ci-token-3b5d7f9a1c3e5b7d9f1a3c5e7b9d";

/// Deletes the Cloudflare users whose email contains `match`, after listing them (the read that
/// labels the targets).
const DELETE: &str = r#"let m = param("match", "", "what the users' emails contain");
let limit = param("limit", 10, "at most this many");
let gone = [];
for u in cloudflare::list_users(#{search: m}) {
    if gone.len() < limit {
        cloudflare::delete_user(u.id);
        gone.push(#{email: u.email, id: u.id});
    }
}
print(`deleted ${gone.len()}`);
gone
"#;

fn config(extra_serve: &str) -> String {
    format!(
        r#"
[serve]
listen = "127.0.0.1:0"
store = "sqlite://runbook.db"
workers = 2
poll_interval = "100ms"
{extra_serve}

[[serve.tokens]]
name = "alice"
token = "${{ALICE_TOKEN}}"
scopes = ["read", "run", "approve"]

[[serve.tokens]]
name = "bob"
token = "${{BOB_TOKEN}}"
scopes = ["read", "approve"]

[[serve.tokens]]
name = "reader"
token = "${{READER_TOKEN}}"
scopes = ["read"]

[[serve.tokens]]
name = "ci"
token = "${{CI_TOKEN}}"
scopes = ["run"]

[[automation]]
name = "offboard"
script = "delete.rhai"
retries = 0
approval = {{ approvers = ["alice", "bob"] }}
trigger = {{ webhook = "/hooks/offboard", secret = "${{SIEM_SECRET}}" }}

[[automation]]
name = "cleanup"
script = "delete.rhai"
retries = 0
params = {{ match = "configured-match-7f3a" }}
trigger = {{ schedule = "0 0 3 * * *" }}
"#
    )
}

fn workspace(sims: &Sims, extra_serve: &str) -> Workspace {
    let mut ws = workspace_with(sims, &config(extra_serve), &[("delete.rhai", DELETE)]);
    ws.set_env("ALICE_TOKEN", ALICE);
    ws.set_env("BOB_TOKEN", BOB);
    ws.set_env("READER_TOKEN", READER);
    ws.set_env("CI_TOKEN", CI);
    ws
}

/// An answer: status, Location, Set-Cookie lines and body.
struct Answer {
    status: u16,
    location: String,
    cookies: Vec<String>,
    body: String,
}

/// A browser's part, by hand: one cookie jar of one, no redirects followed.
struct Console {
    client: reqwest::Client,
    base: String,
    /// `name=value` of the session cookie, once signed in.
    cookie: String,
    /// The session's CSRF token, as the pages carry it.
    csrf: String,
}

/// The value of `<input name="NAME" value="...">` in `html`.
fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

impl Console {
    fn new(server: &Server) -> Console {
        Console {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.url.clone(),
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let header = |name: &str| -> Vec<String> {
            response
                .headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        let location = header("location").pop().unwrap_or_default();
        let cookies = header("set-cookie");
        Answer {
            status,
            location,
            cookies,
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        Self::answer(response).await
    }

    /// A form post as the console's own page sends it (same Origin), with extra headers.
    async fn post_with(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(fields);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let origin = self.base.clone();
        self.post_with(path, fields, &[("origin", &origin), ("sec-fetch-site", "same-origin")])
            .await
    }

    /// Opens `automation`'s run-now form and sends it with `params` (`param.NAME` fields).
    async fn run_now(&self, automation: &str, params: &[(&str, &str)]) -> Answer {
        let form = self.get(&format!("/automations/{automation}")).await;
        let request_id = hidden(&form.body, "request_id").expect("the run-now form carries a request id");
        let mut fields = vec![
            ("_csrf".to_owned(), self.csrf.clone()),
            ("request_id".to_owned(), request_id),
        ];
        fields.extend(params.iter().map(|(k, v)| (format!("param.{k}"), (*v).to_owned())));
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post(&format!("/automations/{automation}/run"), &fields).await
    }

    /// `path`'s live part, as the page's own script asks for it: status and body.
    async fn fragment(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-console-fragment", "1")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Signs in with `token` through the form; the answer to the sign-in post.
    async fn sign_in(&mut self, token: &str) -> Answer {
        let form = self.get("/sign-in").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let signin_cookie = form
            .cookies
            .iter()
            .find(|c| c.starts_with("runbook_signin="))
            .expect("the sign-in page sets its CSRF cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let csrf = hidden(&form.body, "_csrf").expect("the sign-in form carries a CSRF token");
        self.cookie = signin_cookie;
        let answer = self.post("/sign-in", &[("token", token), ("_csrf", &csrf)]).await;
        if let Some(session) = answer.cookies.iter().find(|c| c.contains("runbook_session=")) {
            self.cookie = session.split(';').next().unwrap().to_owned();
            let page = self.get("/runs").await;
            self.csrf = hidden(&page.body, "_csrf").expect("a signed-in page carries the session's CSRF token");
        }
        answer
    }
}

async fn signed_in(server: &Server, token: &str) -> Console {
    let mut console = Console::new(server);
    let answer = console.sign_in(token).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    console
}

/// Starts a run of `automation` through the API as alice.
async fn start(server: &Server, automation: &str, params: Value) -> String {
    let answer = reqwest::Client::new()
        .post(format!("{}/api/automations/{automation}/runs", server.url))
        .bearer_auth(ALICE)
        .json(&json!({ "params": params }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    answer.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn status_of(server: &Server, id: &str) -> String {
    let run: Value = reqwest::Client::new()
        .get(format!("{}/api/runs/{id}", server.url))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    run["status"].as_str().unwrap_or_default().to_owned()
}

async fn wait_status(server: &Server, id: &str, want: &str) {
    wait_until(&format!("run {id} to be {want}"), Duration::from_secs(30), || async {
        status_of(server, id).await == want
    })
    .await;
}

fn deletes(sims: &Sims) -> usize {
    sims.cf().requests().iter().filter(|r| r.method == "DELETE").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signs_in_to_a_private_session_and_sign_out_ends_it() {
    let sims = Sims::start(tenant(2, 0)).await;
    let ws = workspace(&sims, "");
    let server = Server::start(&ws).await;

    let anonymous = Console::new(&server);
    let home = anonymous.get("/").await;
    assert_eq!((home.status, home.location.as_str()), (303, "/sign-in"));
    let runs = anonymous.get("/runs").await;
    assert_eq!(
        (runs.status, runs.location.as_str()),
        (303, "/sign-in"),
        "no page without a session"
    );

    let mut wrong = Console::new(&server);
    let refused = wrong.sign_in("not-a-token-of-this-server-0000000000000").await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("not one of this server&#x27;s tokens"),
        "{}",
        refused.body
    );
    assert!(!refused.cookies.iter().any(|c| c.contains("runbook_session=")));

    // A sign-in form without its own CSRF cookie (another site's page posting a token of its
    // choosing, to sign the victim in as the attacker) is refused.
    let forged = Console::new(&server)
        .post("/sign-in", &[("token", ALICE), ("_csrf", "chosen")])
        .await;
    assert_eq!(forged.status, 403);
    assert!(!forged.cookies.iter().any(|c| c.contains("runbook_session=")));

    let mut alice = Console::new(&server);
    let answer = alice.sign_in(ALICE).await;
    assert_eq!((answer.status, answer.location.as_str()), (303, "/runs"));
    let cookie = answer
        .cookies
        .iter()
        .find(|c| c.starts_with("runbook_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http on loopback: {cookie}");
    let page = alice.get("/runs").await;
    assert_eq!(page.status, 200);
    let headers = alice
        .client
        .get(format!("{}/runs", alice.base))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    let header = |name: &str| headers.headers()[name].to_str().unwrap().to_owned();
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(!header("content-security-policy").contains("unsafe-inline"));
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("x-frame-options"), "DENY");
    assert!(
        page.body
            .contains(r#"<span id="whoami" title="signed in with this token">alice</span>"#)
    );
    assert!(!page.body.contains(ALICE), "a page never shows the token");

    // Signing out needs the session's own CSRF token.
    let forged = alice.post("/sign-out", &[("_csrf", "guessed")]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(
        alice.get("/runs").await.status,
        200,
        "a refused sign-out leaves the session"
    );

    let out = alice.post("/sign-out", &[("_csrf", &alice.csrf)]).await;
    assert_eq!((out.status, out.location.as_str()), (303, "/sign-in?signed_out=1"));
    assert!(
        out.cookies
            .iter()
            .any(|c| c.starts_with("runbook_session=;") && c.contains("Max-Age=0"))
    );
    // The old cookie, replayed, opens nothing: the session is gone from the store.
    let replayed = alice.get("/runs").await;
    assert_eq!((replayed.status, replayed.location.as_str()), (303, "/sign-in"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_from_another_origin_or_without_the_session_token_change_nothing() {
    let sims = Sims::start(tenant(2, 0)).await;
    let ws = workspace(&sims, "");
    let server = Server::start(&ws).await;
    let id = start(&server, "offboard", json!({"match": "@example.com"})).await;
    wait_status(&server, &id, "awaiting_approval").await;
    let bob = signed_in(&server, BOB).await;
    let page = bob.get(&format!("/runs/{id}")).await;
    assert!(
        page.body.contains(r#"data-action="approve""#),
        "bob may approve: {}",
        page.body
    );
    let digest = hidden(&page.body, "effects_sha256").unwrap();
    let approve = format!("/runs/{id}/approve");
    let fields = [
        ("_csrf", bob.csrf.as_str()),
        ("effects_sha256", &digest),
        ("comment", "ok"),
    ];

    // A valid cookie and even the right token, but another site's page sent it.
    let evil = bob
        .post_with(&approve, &fields, &[("origin", "http://evil.example")])
        .await;
    assert_eq!(evil.status, 403, "{}", evil.body);
    assert!(evil.body.contains("another site"), "{}", evil.body);
    for site in ["cross-site", "same-site"] {
        // same-site: another port of this host is another origin, and may be anyone's.
        let refused = bob.post_with(&approve, &fields, &[("sec-fetch-site", site)]).await;
        assert_eq!(refused.status, 403, "{site}");
    }
    // The right origin without the session's token: a form someone else built.
    for csrf in ["", "0000", &"a".repeat(64)] {
        let forged = bob
            .post(
                &approve,
                &[("_csrf", csrf), ("effects_sha256", &digest), ("comment", "ok")],
            )
            .await;
        assert_eq!(forged.status, 403, "csrf {csrf:?}: {}", forged.body);
    }
    // The API does not take forms at all, whatever the cookie.
    let api_form = bob.post_with(&format!("/api/runs/{id}/approve"), &fields, &[]).await;
    assert!(matches!(api_form.status, 401 | 415), "{}", api_form.status);
    assert_eq!(status_of(&server, &id).await, "awaiting_approval");
    assert_eq!(deletes(&sims), 0, "nothing was sent");

    // A read token sees no approve form, and its forged post is refused by scope.
    let reader = signed_in(&server, READER).await;
    let seen = reader.get(&format!("/runs/{id}")).await;
    assert!(!seen.body.contains(r#"data-action="approve""#));
    assert!(
        !seen.body.contains(r#"href="/approvals""#),
        "no Waiting for me for a read token"
    );
    let scoped = reader
        .post(
            &approve,
            &[("_csrf", &reader.csrf), ("effects_sha256", &digest), ("comment", "me")],
        )
        .await;
    assert_eq!(scoped.status, 403);
    assert!(scoped.body.contains("approve scope"), "{}", scoped.body);
    assert_eq!(reader.get("/approvals").await.status, 403);

    // Alice started it: four eyes.
    let alice = signed_in(&server, ALICE).await;
    let own = alice.get(&format!("/runs/{id}")).await;
    assert!(!own.body.contains(r#"data-action="approve""#));
    assert!(own.body.contains("another approver must decide"), "{}", own.body);
    assert!(
        !alice.get("/approvals").await.body.contains(&id),
        "not waiting for its own starter"
    );
    assert_eq!(status_of(&server, &id).await, "awaiting_approval");

    // Bob, properly: approved once, applied once.
    assert!(
        bob.get("/approvals")
            .await
            .body
            .contains(&format!(r#"data-run-id="{id}""#))
    );
    let ok = bob.post(&approve, &fields).await;
    assert_eq!(
        (ok.status, ok.location.clone()),
        (303, format!("/runs/{id}?notice=approved"))
    );
    wait_status(&server, &id, "succeeded").await;
    assert_eq!(deletes(&sims), 2);
    let again = bob.post(&approve, &fields).await;
    assert_eq!(again.status, 409, "an approval is used once: {}", again.body);
    let done = bob.get(&format!("/runs/{id}")).await;
    assert!(
        done.body.contains("<strong>bob</strong> approved the plan (round 1)"),
        "{}",
        done.body
    );
    assert_eq!(deletes(&sims), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_end_when_their_token_is_rotated() {
    let sims = Sims::start(tenant(1, 0)).await;
    let mut ws = workspace(&sims, "");
    let server = Server::start(&ws).await;
    let alice = signed_in(&server, ALICE).await;
    let bob = signed_in(&server, BOB).await;
    server.stop().await;

    let server = Server::start(&ws).await;
    let moved = |mut c: Console| {
        c.base = server.url.clone();
        c
    };
    let (alice, bob) = (moved(alice), moved(bob));
    assert_eq!(
        alice.get("/runs").await.status,
        200,
        "a session is in the store, not the process"
    );
    server.stop().await;

    // Alice's token is rotated; bob's is not.
    ws.set_env("ALICE_TOKEN", "alice-rotated-token-5f7a9c1e3b5d7f9a1c3e5b7d");
    let server = Server::start(&ws).await;
    let moved = |mut c: Console| {
        c.base = server.url.clone();
        c
    };
    let (alice, bob) = (moved(alice), moved(bob));
    assert_eq!(
        alice.get("/runs").await.location,
        "/sign-in",
        "a rotated token's sessions end"
    );
    assert_eq!(bob.get("/runs").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_use_lives_on_and_an_idle_one_ends_even_with_its_page_open() {
    let sims = Sims::start(tenant(1, 0)).await;
    let ws = workspace(&sims, r#"console_idle_timeout = "3s""#);
    let server = Server::start(&ws).await;
    let alice = signed_in(&server, ALICE).await;
    // Pages opened for longer than the idle timeout keep the session.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(4500) {
        assert_eq!(
            alice.get("/runs").await.status,
            200,
            "in use after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // An open page refreshing itself is not use: the session ends.
    let idle = std::time::Instant::now();
    let mut last = 200;
    while idle.elapsed() < Duration::from_millis(4500) {
        last = alice.fragment("/runs").await.0;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(last, 401, "the page's own refresh is told the session ended");
    assert_eq!(alice.get("/runs").await.location, "/sign-in");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_an_https_proxy_the_cookie_is_secure_and_bound_to_the_host() {
    let sims = Sims::start(tenant(1, 0)).await;
    let ws = workspace(&sims, r#"public_url = "https://runbook.example.com""#);
    let server = Server::start(&ws).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let as_proxied = |request: reqwest::RequestBuilder| request.header("host", "runbook.example.com");
    let form = as_proxied(client.get(format!("{}/sign-in", server.url)))
        .send()
        .await
        .unwrap();
    let signin = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(signin.contains("; Secure"), "{signin}");
    let html = form.text().await.unwrap();
    let csrf = hidden(&html, "_csrf").unwrap();
    let answer = as_proxied(client.post(format!("{}/sign-in", server.url)))
        .header("cookie", signin.split(';').next().unwrap())
        .header("origin", "https://runbook.example.com")
        .form(&[("token", ALICE), ("_csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let session = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.contains("runbook_session="))
        .unwrap();
    assert!(session.starts_with("__Host-runbook_session="), "{session}");
    assert!(session.contains("; Secure") && session.contains("HttpOnly") && session.contains("SameSite=Strict"));

    let page = as_proxied(client.get(format!("{}/runs", server.url)))
        .header("cookie", session.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["strict-transport-security"], "max-age=31536000");

    // Opened at the listen address itself, perhaps over plain http, where the Secure cookie
    // would never come back: the sign-in page says where to go.
    let direct = client.get(format!("{}/sign-in", server.url)).send().await.unwrap();
    assert!(direct.headers().get("strict-transport-security").is_none());
    let text = direct.text().await.unwrap();
    assert!(text.contains("runbook.example.com instead"), "{text}");
    let proxied = as_proxied(client.get(format!("{}/sign-in", server.url)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!proxied.contains("instead"), "no hint at the published address");

    // A name this server is not published under (DNS rebinding) gets no page.
    let rebound = client
        .get(format!("{}/sign-in", server.url))
        .header("host", "attacker.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 421);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_builds_its_form_from_the_declared_params_and_a_resent_form_is_one_run() {
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = workspace(&sims, "");
    let server = Server::start(&ws).await;
    let alice = signed_in(&server, ALICE).await;

    let automations = alice.get("/automations").await;
    assert!(automations.body.contains(r#"<tr data-automation="cleanup">"#));
    assert!(automations.body.contains("schedule"), "{}", automations.body);
    let form = alice.get("/automations/cleanup").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(r#"name="param.match""#) && form.body.contains(r#"name="param.limit""#));
    assert!(
        form.body.contains("what the users&#x27; emails contain"),
        "the param's doc is shown"
    );
    let request_id = hidden(&form.body, "request_id").unwrap();

    let bad = alice
        .post(
            "/automations/cleanup/run",
            &[
                ("_csrf", &alice.csrf),
                ("request_id", &request_id),
                ("param.limit", "two"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("limit must be a whole number"), "{}", bad.body);

    let fields = [
        ("_csrf", alice.csrf.as_str()),
        ("request_id", request_id.as_str()),
        ("param.match", "@example.com"),
        ("param.limit", "2"),
    ];
    let first = alice.post("/automations/cleanup/run", &fields).await;
    assert_eq!(first.status, 303, "{}", first.body);
    let again = alice.post("/automations/cleanup/run", &fields).await;
    assert_eq!(first.location, again.location, "the same form sent twice is one run");
    let id = first
        .location
        .strip_prefix("/runs/")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    wait_status(&server, &id, "succeeded").await;
    assert_eq!(deletes(&sims), 2, "limit = 2 from the form reached the script");

    // The run's page: who started it, the timeline with targets labelled by the run's own
    // read, the result as a table, the log.
    let page = alice.get(&format!("/runs/{id}")).await;
    assert!(page.body.contains(r#"data-status="succeeded""#));
    assert!(
        page.body.contains("<strong>alice</strong> started it (api)"),
        "{}",
        page.body
    );
    let steps = page.body.matches(r#"<tr class="step""#).count();
    assert_eq!(steps, 3, "a list and two deletes: {}", page.body);
    assert!(page.body.contains("<code>cloudflare.list_users</code>"));
    let first_target = cf_id(1);
    let labelled = page
        .body
        .lines()
        .any(|l| l.contains("@example.com (") && l.contains(&first_target));
    assert!(labelled, "the delete's target shows its email and id: {}", page.body);
    assert!(page.body.contains(r#"<table class="result">"#));
    assert!(page.body.contains("deleted 2"), "the log");

    // Listed, filterable, and live: the fragment is the table alone.
    let listed = alice.get("/runs?automation=cleanup&status=succeeded").await;
    assert!(
        listed
            .body
            .contains(&format!(r#"<tr data-run-id="{id}" data-status="succeeded">"#))
    );
    let none = alice.get("/runs?automation=cleanup&status=failed").await;
    assert!(none.body.contains("No runs match."));
    let later = alice.get("/runs?since=2999-01-01T00:00").await;
    assert!(later.body.contains("No runs match."));
    // Whatever a run holds is shown as text, never as markup.
    let hostile = alice
        .run_now("cleanup", &[("match", "<img src=x onerror=alert(1)>")])
        .await;
    let shown = alice.get(hostile.location.split('?').next().unwrap()).await;
    assert!(
        shown.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        shown.body
    );
    assert!(!shown.body.contains("<img src=x"));
    let bad_time = alice.get("/runs?since=yesterday").await;
    assert!(bad_time.body.contains("is not a time"));
    let (_, fragment) = alice.fragment("/runs").await;
    assert!(fragment.contains(r#"<table id="runs">"#) && !fragment.contains("<html"));

    // A token that may start runs but not read history: run now, and its own run's page.
    let ci = signed_in(&server, CI).await;
    assert_eq!(ci.get("/").await.location, "/automations");
    let history = ci.get("/runs").await;
    assert_eq!(history.status, 403);
    assert!(history.body.contains("read scope"), "{}", history.body);
    assert_eq!(ci.get(&format!("/runs/{id}")).await.status, 403, "alice's run");
    let listed = ci.get("/automations").await;
    assert!(
        !listed.body.contains(&format!("/runs/{id}")),
        "no history on the automations page"
    );
    let started = ci.run_now("cleanup", &[("limit", "0")]).await;
    assert_eq!(started.status, 303);
    assert_eq!(ci.get(&started.location).await.status, 200, "its own run");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_doubt_shows_its_labelled_target_and_only_an_approve_token_resolves_it() {
    use runbook_core::{Effect, JournalEntry, StepKind, StepStatus};
    use runbook_serve::store::{Completion, NewRun, RunStatus, SqliteStore, Store};
    let sims = Sims::start(tenant(1, 0)).await;
    let ws = workspace(&sims, "");
    let user = cf_id(1);
    // A run that stopped between sending a delete and hearing back, as the store keeps it.
    let id = {
        let store = SqliteStore::open(&ws.path().join("runbook.db")).await.unwrap();
        let queued = store
            .enqueue(NewRun {
                automation: "cleanup".into(),
                trigger: "schedule".into(),
                idem_key: Some("doubt-1".into()),
                dedup: Vec::new(),
                scheduled_for: None,
                params: serde_json::Map::new(),
                event: None,
                max_retries: 0,
                retry_of: None,
                script: DELETE.into(),
                started_by: "schedule".into(),
            })
            .await
            .unwrap();
        let claimed = store
            .claim("w", &[("cleanup".to_owned(), 1)].into(), 1, Duration::from_secs(30))
            .await
            .unwrap()
            .remove(0);
        let journal = store.journal(&claimed.id, claimed.attempt, claimed.epoch);
        let mut list = JournalEntry::new("1", StepKind::Call, "cloudflare.list_users", Effect::Read);
        list.status = StepStatus::Ok;
        list.result = Some(json!([{"id": user, "email": "doubtful@example.com", "name": "Doubtful"}]));
        journal.write(&list).await.unwrap();
        let mut delete = JournalEntry::new("2", StepKind::Call, "cloudflare.delete_user", Effect::Destructive);
        delete.idempotent = false;
        delete.args = json!({"user_id": user});
        delete.targets = 1;
        journal.write(&delete).await.unwrap();
        let stopped = Completion {
            status: RunStatus::NeedsAttention,
            result: None,
            error: Some("step 2 cloudflare.delete_user is in doubt".into()),
            error_kind: Some("needs_attention".into()),
            logs: json!([]),
            calls: json!([]),
            retry_at: None,
        };
        assert!(store.complete("w", &claimed.id, claimed.epoch, stopped).await.unwrap());
        queued.run_id
    };
    let server = Server::start(&ws).await;
    let page = format!("/runs/{id}");

    let reader = signed_in(&server, READER).await;
    let seen = reader.get(&page).await;
    assert!(
        seen.body
            .contains(r#"<tr class="step in-doubt" data-step-key="2" data-status="intent">"#),
        "{}",
        seen.body
    );
    assert!(
        seen.body.contains(&format!("doubtful@example.com ({user})")),
        "the target is labelled by the run's own read: {}",
        seen.body
    );
    assert!(
        !seen.body.contains(r#"data-action="resolve""#),
        "a read token cannot resolve"
    );
    assert!(seen.body.contains("Resolving needs a token with the approve scope"));
    let refused = reader
        .post(
            &format!("{page}/resolve"),
            &[("_csrf", &reader.csrf), ("step", "2"), ("sent", "true")],
        )
        .await;
    assert_eq!(refused.status, 403);

    let alice = signed_in(&server, ALICE).await;
    let offered = alice.get(&page).await;
    assert!(offered.body.contains(r#"data-action="resolve""#));
    assert!(
        offered.body.contains(r#"name="sent" value="true""#) && offered.body.contains(r#"name="sent" value="false""#)
    );
    let forged = alice
        .post(
            &format!("{page}/resolve"),
            &[("_csrf", "nope"), ("step", "2"), ("sent", "true")],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(status_of(&server, &id).await, "needs_attention");

    let resolved = alice
        .post(
            &format!("{page}/resolve"),
            &[("_csrf", &alice.csrf), ("step", "2"), ("sent", "true")],
        )
        .await;
    assert_eq!(
        (resolved.status, resolved.location.clone()),
        (303, format!("{page}?notice=resolved"))
    );
    wait_until("the resolved run to finish", Duration::from_secs(30), || async {
        !matches!(
            status_of(&server, &id).await.as_str(),
            "needs_attention" | "queued" | "running"
        )
    })
    .await;
    let after = alice.get(&page).await;
    assert!(
        after
            .body
            .contains("<strong>alice</strong> said step 2 (cloudflare.delete_user) was sent"),
        "{}",
        after.body
    );
    assert_eq!(deletes(&sims), 0, "a change said to be sent is never sent again");
    server.stop().await;
}
