//! The operator's console as a person meets it: a real headless Chromium, driven through
//! chromedriver (WebDriver), against a real `runbook serve` process and the simulators.
//!
//! The tests need Debian's `chromium` and `chromium-driver`: `RUNBOOK_TEST_CHROMEDRIVER` names
//! chromedriver (`RUNBOOK_TEST_CHROMIUM` the browser, `/usr/bin/chromium` by default); unset, the
//! tests fail unless `RUNBOOK_TEST_SKIP=browser`. With `RUNBOOK_SCREENSHOTS=DIR` the page tour
//! saves `PAGE-desktop.png` and `PAGE-phone.png` of every page there.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::{cf_id, tenant};
use crate::serve::{Server, workspace_with};
use crate::support::{Sims, Workspace, needed_env};

const ALICE: &str = "alice-console-token-5e7a9c1e3b5d7f9a1c3e5b7d";
const BOB: &str = "bob-console-token-8c0e2b4d6f8a0c2e4b6d8f0a2c";
const READER: &str = "reader-console-token-1d3f5a7c9e1b3d5f7a9c1e3b";
const BOSS: &str = "boss-console-token-6a8c0e2b4d6f8a0c2e4b6d8f0a";

/// How long a page may take to show what a test waits for: a live refresh is once a second.
const PATIENCE: Duration = Duration::from_secs(20);

const CONFIG: &str = r#"
[serve]
listen = "127.0.0.1:0"
store = "sqlite://runbook.db"
workers = 2
grace = "5s"
poll_interval = "100ms"

[[serve.tokens]]
name = "alice"
token = "${ALICE_TOKEN}"
scopes = ["read", "run", "approve"]

[[serve.tokens]]
name = "bob"
token = "${BOB_TOKEN}"
scopes = ["read", "approve"]

[[serve.tokens]]
name = "reader"
token = "${READER_TOKEN}"
scopes = ["read"]

[[serve.tokens]]
name = "boss"
token = "${BOSS_TOKEN}"
scopes = ["admin"]

[[automation]]
name = "offboard"
script = "delete.rhai"
retries = 0
approval = { approvers = ["alice", "bob"] }
trigger = { webhook = "/hooks/offboard", secret = "${SIEM_SECRET}" }

[[automation]]
name = "lookup"
script = "lookup.rhai"
retries = 0
trigger = { webhook = "/hooks/lookup", secret = "${SIEM_SECRET}" }

[[automation]]
name = "nightly-audit"
script = "audit.rhai"
trigger = { schedule = "0 0 3 * * *" }
"#;

/// Deletes the Cloudflare users whose email contains `match`: one change per user found.
const DELETE: &str = r#"let m = param("match", "", "what the users' emails contain");
let gone = [];
for u in cloudflare::list_users(#{search: m}) {
    cloudflare::delete_user(u.id);
    gone.push(u.email);
}
gone
"#;

/// Reads one user: a run that takes as long as the simulator's latency, and fails for an
/// unknown id.
const LOOKUP: &str = r#"let u = cloudflare::get_user(param("user_id", "", "the Cloudflare user's id"));
print(`found ${u.email}`);
#{email: u.email}
"#;

const AUDIT: &str = "cloudflare::list_users(#{}).len()\n";

fn workspace(sims: &Sims) -> Workspace {
    let mut ws = workspace_with(
        sims,
        CONFIG,
        &[("delete.rhai", DELETE), ("lookup.rhai", LOOKUP), ("audit.rhai", AUDIT)],
    );
    for (var, token) in [
        ("ALICE_TOKEN", ALICE),
        ("BOB_TOKEN", BOB),
        ("READER_TOKEN", READER),
        ("BOSS_TOKEN", BOSS),
    ] {
        ws.set_env(var, token);
    }
    ws
}

/// chromedriver on a port of its own, in a process group of its own: dropping it kills the group,
/// so no Chromium outlives a test that panicked before closing its sessions.
struct Driver {
    child: tokio::process::Child,
    url: String,
    chromium: String,
}

impl Driver {
    /// `None` when the browser tests are skipped (`RUNBOOK_TEST_SKIP=browser`).
    async fn start() -> Option<Driver> {
        let how = "Debian's chromium-driver, e.g. /usr/bin/chromedriver";
        let chromedriver = needed_env("RUNBOOK_TEST_CHROMEDRIVER", "browser", how)?;
        let chromium = std::env::var("RUNBOOK_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = client.get(format!("{}/status", driver.url)).send().await;
            if let Ok(answer) = status
                && let Ok(doc) = answer.json::<Value>().await
                && doc["value"]["ready"] == true
            {
                return Some(driver);
            }
            assert!(
                Instant::now() < deadline,
                "{chromedriver} did not get ready on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A fresh browser (its own profile, so its own cookies) on the console at `base`.
    async fn browser(&self, base: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": self.chromium,
                // Without the background-networking flags Chromium hangs on a closed network;
                // without --no-sandbox it does not start as root (CI).
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {}: {e}", self.chromium));
        Browser {
            client,
            base: base.to_owned(),
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The whole group: chromedriver and the Chromium processes it started.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// One browser session on the console.
struct Browser {
    client: Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The path and query of the page shown.
    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Runs `script` in the page (`arguments[0]`… are `args`) and returns its value; a promise is
    /// awaited.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// The attribute `name` of the first element matching `css`, read in one step in the page (a
    /// live refresh may replace the element between two WebDriver calls).
    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let got = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
                vec![json!(css), json!(name)],
            )
            .await;
        got.as_str().map(str::to_owned)
    }

    /// The visible text of the first element matching `css`, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let got = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![json!(css)],
            )
            .await;
        got.as_str().map(str::to_owned)
    }

    async fn exists(&self, css: &str) -> bool {
        self.js(
            "return document.querySelector(arguments[0]) !== null;",
            vec![json!(css)],
        )
        .await
            == json!(true)
    }

    /// Waits until an element matches `css`; says what the page showed when it does not.
    async fn wait_for(&self, what: &str, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        let look = "return document.querySelector(arguments[0]) !== null;";
        // A script run while a page is being replaced may fail: that is a "not yet".
        while !matches!(self.client.execute(look, vec![json!(css)]).await, Ok(Value::Bool(true))) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} ({css}) at {}:\n{}",
                    self.path().await,
                    self.text("body").await.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's path is `path` (a navigation happened).
    async fn wait_for_path(&self, what: &str, path: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self.path().await;
            if now.split('?').next() == Some(path) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: the browser is at {now}, not {path}:\n{}",
                self.text("body").await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} in the page: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Submits the form `form` with its (first) submit button, as a click does.
    async fn submit(&self, form: &str) {
        self.click(&format!(
            "{form} button:not([type=button]):not([type=reset]), {form} input[type=submit]"
        ))
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Signs in through the form as a person does, and lands on the runs.
    async fn sign_in(&self, token: &str, name: &str) {
        self.goto("/").await;
        self.wait_for_path("the sign-in page", "/sign-in").await;
        self.type_into("#sign-in #token", token).await;
        self.submit("#sign-in").await;
        self.wait_for_path("the runs after signing in", "/runs").await;
        assert_eq!(self.text("#whoami").await.as_deref().map(str::trim), Some(name));
    }

    /// The session's CSRF token, as every form of the page carries it.
    async fn csrf(&self) -> String {
        self.attr("#sign-out input[name=_csrf]", "value")
            .await
            .expect("the sign-out form carries the session's _csrf")
    }

    /// The `status` of run `id` in the runs table shown.
    async fn row_status(&self, id: &str) -> Option<String> {
        self.attr(&format!("#runs tr[data-run-id=\"{id}\"]"), "data-status")
            .await
    }

    /// Sets the size of the page's viewport (not the window's), so that a phone's 390 CSS pixels
    /// are what the page lays out in.
    async fn set_viewport(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
        let inner = self.js("return [window.innerWidth, window.innerHeight];", vec![]).await;
        let (iw, ih) = (inner[0].as_u64().unwrap(), inner[1].as_u64().unwrap());
        if (iw, ih) != (u64::from(width), u64::from(height)) {
            let w = (2 * u64::from(width)).saturating_sub(iw);
            let h = (2 * u64::from(height)).saturating_sub(ih);
            self.client
                .set_window_size(u32::try_from(w).unwrap(), u32::try_from(h).unwrap())
                .await
                .unwrap();
        }
    }

    /// Shows the page at a desktop's and a phone's width; with `RUNBOOK_SCREENSHOTS` set, each is
    /// saved as `PAGE-desktop.png` / `PAGE-phone.png` there. Returns what makes the page wider
    /// than the screen (a phone's reader would have to scroll sideways), if anything does.
    async fn at_both_widths(&self, page: &str) -> Vec<String> {
        let dir = std::env::var_os("RUNBOOK_SCREENSHOTS").map(PathBuf::from);
        let mut too_wide = Vec::new();
        for (width, height, kind) in [(1280, 900, "desktop"), (390, 844, "phone")] {
            self.set_viewport(width, height).await;
            if let Some(dir) = &dir {
                std::fs::create_dir_all(dir).unwrap();
                let png = self.client.screenshot().await.unwrap();
                let path = dir.join(format!("{page}-{kind}.png"));
                std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            // The outermost elements that reach past the right edge, and positioned ones (which escape
            // a scrolling box), to name in a failure.
            let overflow = self
                .js(
                    "const w = window.innerWidth;
                     if (document.documentElement.scrollWidth <= w) return null;
                     const wide = Array.from(document.querySelectorAll('body *'))
                       .filter(e => e.getBoundingClientRect().right > w + 1)
                       .filter(e => !(e.parentElement && e.parentElement.getBoundingClientRect().right > w + 1)
                         || ['absolute', 'fixed'].includes(getComputedStyle(e).position));
                     const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                       + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
                     return (document.documentElement.scrollWidth - w) + 'px wider than the screen, by '
                       + wide.slice(0, 5).map(name).join(', ');",
                    vec![],
                )
                .await;
            if let Some(why) = overflow.as_str() {
                too_wide.push(format!("{page} at {width}px is {why}"));
            }
        }
        self.set_viewport(1280, 900).await;
        too_wide
    }

    async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// The JSON API as a script would call it, with a bearer token.
async fn api(server: &Server, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", server.url);
    let request = match body {
        None => client.get(url),
        Some(body) => client.post(url).json(&body),
    };
    let answer = request.bearer_auth(token).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// Starts a run through the API; its id.
async fn start_run(server: &Server, token: &str, automation: &str, params: Value) -> String {
    let (status, answer) = api(
        server,
        token,
        &format!("/api/automations/{automation}/runs"),
        Some(json!({"params": params})),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    answer["run_id"].as_str().unwrap().to_owned()
}

/// Waits until run `id` is `want` (through the API, not the page).
async fn wait_status(server: &Server, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, run) = api(server, READER, &format!("/api/runs/{id}"), None).await;
        if run["status"] == want {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} is not {want}: {}\n{}",
            run["status"],
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(server: &Server, id: &str) -> Value {
    api(server, READER, &format!("/api/runs/{id}"), None).await.1["status"].clone()
}

/// The Cloudflare simulator's requests that changed something.
fn writes(sims: &Sims) -> Vec<String> {
    sims.cf()
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// A plain HTTP client that keeps no cookies and follows no redirects, to see answers as sent.
fn raw_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_watch_a_run_finish_live_open_its_timeline_and_sign_out() {
    let Some(driver) = Driver::start().await else { return };
    // Every answer of the simulator takes a while, so the run is seen running before it succeeds.
    let sims = Sims::start_with(
        tenant(3, 0),
        runbook_sim::SimOptions {
            latency: Duration::from_millis(2500),
            ..runbook_sim::SimOptions::default()
        },
    )
    .await;
    let ws = workspace(&sims);
    let server = Server::start(&ws).await;
    let browser = driver.browser(&server.url).await;

    // Signed out, a console page leads to the sign-in form.
    browser.goto("/runs").await;
    browser.wait_for_path("the sign-in page", "/sign-in").await;

    // A wrong token is refused on the page.
    browser.type_into("#sign-in #token", "not-a-token-of-this-server").await;
    browser.submit("#sign-in").await;
    browser.wait_for("the refusal", "p.flash.error").await;
    assert!(browser.client.get_named_cookie("runbook_session").await.is_err());

    browser.sign_in(ALICE, "alice").await;
    let cookie = browser.client.get_named_cookie("runbook_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert!(cookie.same_site().is_some_and(|s| s.is_strict()), "{cookie:?}");
    assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
    let session = cookie.value().to_owned();
    // Script in the page cannot read it.
    let visible = browser.js("return document.cookie;", vec![]).await;
    assert!(!visible.as_str().unwrap().contains(&session), "{visible}");

    // A run started elsewhere appears in the open page and finishes there, without a reload: a
    // mark left in the page survives only if the page is never loaded again.
    browser.js("window.stillTheSamePage = true; return null;", vec![]).await;
    let id = start_run(&server, BOSS, "lookup", json!({"user_id": cf_id(2)})).await;
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let status = browser.row_status(&id).await;
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status.as_deref() == Some("succeeded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} did not finish in the page; statuses seen: {seen:?}\n{}",
            browser.text("body").await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.first(), Some(&None), "the run was in the page before it started");
    assert!(
        seen.iter().any(|s| s.as_deref() == Some("running")),
        "the page never showed the run running: {seen:?}"
    );
    assert_eq!(
        browser.js("return window.stillTheSamePage === true;", vec![]).await,
        json!(true),
        "the page was reloaded"
    );

    // Its page: the timeline names the action.
    browser
        .click(&format!("#runs tr[data-run-id=\"{id}\"] a[href=\"/runs/{id}\"]"))
        .await;
    browser.wait_for_path("the run's page", &format!("/runs/{id}")).await;
    assert_eq!(browser.text("h1").await.as_deref().map(str::trim), Some("lookup"));
    assert_eq!(
        browser.attr("#run-status", "data-status").await.as_deref(),
        Some("succeeded")
    );
    let steps = browser
        .js(
            "return Array.from(document.querySelectorAll('#timeline tr.step')).map(r => r.innerText);",
            vec![],
        )
        .await;
    let steps: Vec<&str> = steps.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        steps.iter().any(|s| s.contains("cloudflare.get_user")),
        "no cloudflare.get_user step in the timeline: {steps:?}"
    );
    let result = browser.text("#result").await.unwrap_or_default();
    assert!(result.contains("user2@example.com"), "{result}");

    // The session works over plain HTTP too, until it is signed out.
    let http = raw_http();
    let with_old_cookie = || {
        http.get(format!("{}/runs", server.url))
            .header("Cookie", format!("runbook_session={session}"))
            .send()
    };
    assert_eq!(with_old_cookie().await.unwrap().status(), 200);

    browser.submit("#sign-out").await;
    browser
        .wait_for_path("the sign-in page after signing out", "/sign-in")
        .await;
    browser.goto("/runs").await;
    browser
        .wait_for_path("the sign-in page instead of the runs", "/sign-in")
        .await;
    let replayed = with_old_cookie().await.unwrap();
    assert_eq!(replayed.status(), 303, "the old session still opens /runs");
    assert!(
        replayed.headers()["location"].to_str().unwrap().ends_with("/sign-in"),
        "{replayed:?}"
    );

    browser.close().await;
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_person_approves_a_waiting_run_in_the_browser_and_it_is_applied_once() {
    let Some(driver) = Driver::start().await else { return };
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = workspace(&sims);
    let server = Server::start(&ws).await;
    let (alice, bob) = tokio::join!(driver.browser(&server.url), driver.browser(&server.url));
    alice.sign_in(ALICE, "alice").await;
    bob.sign_in(BOB, "bob").await;

    // Alice starts the offboarding with the run-now form built from the script's params.
    alice.click("nav a[href=\"/automations\"]").await;
    alice.wait_for_path("the automations", "/automations").await;
    alice
        .click("#automations tr[data-automation=\"offboard\"] a[href=\"/automations/offboard\"]")
        .await;
    alice.wait_for_path("the run-now form", "/automations/offboard").await;
    alice.type_into("#run-now input[name=\"param.match\"]", "user1").await;
    alice.submit("#run-now").await;
    let deadline = Instant::now() + PATIENCE;
    let id = loop {
        let path = alice.path().await;
        if let Some(id) = path.strip_prefix("/runs/") {
            break id.split('?').next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the run-now form led to {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Her page follows the run until it waits for someone else.
    alice
        .wait_for(
            "the run waiting for approval",
            "#run-status[data-status=awaiting_approval]",
        )
        .await;
    assert!(writes(&sims).is_empty(), "a plan sends nothing: {:?}", writes(&sims));

    // Bob finds it under "Waiting for me", with its plan, and approves with a comment.
    bob.click("nav a[href=\"/approvals\"]").await;
    bob.wait_for_path("Waiting for me", "/approvals").await;
    let article = format!("article.waiting[data-run-id=\"{id}\"]");
    bob.wait_for("the waiting run", &article).await;
    let shown = bob.text(&article).await.unwrap();
    assert!(
        shown.contains("user1@example.com"),
        "the plan names its target: {shown}"
    );
    bob.type_into(
        &format!("{article} form[data-action=approve] textarea[name=comment]"),
        "offboarding ticket SEC-42",
    )
    .await;
    bob.submit(&format!("{article} form[data-action=approve]")).await;
    bob.wait_for_path("the run's page after approving", &format!("/runs/{id}"))
        .await;
    bob.wait_for("the run applied", "#run-status[data-status=succeeded]")
        .await;
    let people = bob.text("#people").await.unwrap_or_default();
    assert!(
        people.contains("bob") && people.contains("offboarding ticket SEC-42"),
        "the approval and its comment are shown: {people}"
    );

    // Alice's page, left open, follows it to the end as well.
    alice
        .wait_for("the run applied on alice's page", "#run-status[data-status=succeeded]")
        .await;
    assert_eq!(
        writes(&sims),
        vec![format!(
            "DELETE /client/v4/accounts/{}/access/users/{}",
            sims.cf().account_id(),
            cf_id(1)
        )],
        "the change was sent exactly once"
    );
    bob.goto("/approvals").await;
    bob.wait_for("nothing left waiting", "#nothing-waiting").await;

    alice.close().await;
    bob.close().await;
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_is_offered_no_approval_and_a_forged_approval_is_refused() {
    let Some(driver) = Driver::start().await else { return };
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = workspace(&sims);
    let server = Server::start(&ws).await;
    let id = start_run(&server, ALICE, "offboard", json!({"match": "user1"})).await;
    wait_status(&server, &id, "awaiting_approval").await;

    let reader = driver.browser(&server.url).await;
    reader.sign_in(READER, "reader").await;
    assert!(
        !reader.exists("nav a[href=\"/approvals\"]").await,
        "a read token is offered Waiting for me"
    );
    reader.goto(&format!("/runs/{id}")).await;
    reader
        .wait_for("the waiting run", "#run-status[data-status=awaiting_approval]")
        .await;
    for action in ["approve", "reject"] {
        assert!(
            !reader.exists(&format!("form[data-action={action}]")).await,
            "a read token is offered to {action}"
        );
    }

    // What the page would have sent, sent anyway from the page itself: the session's cookie, its
    // valid _csrf, the server's own Origin. The scope decides.
    let csrf = reader.csrf().await;
    let answer = reader
        .js(
            "return fetch(arguments[0], {method: 'POST', body: new URLSearchParams({_csrf: arguments[1], comment: 'forged'})})\
             .then(async r => [r.status, await r.text()]);",
            vec![json!(format!("/runs/{id}/approve")), json!(csrf)],
        )
        .await;
    assert_eq!(answer[0], json!(403), "a read session's approval: {answer}");
    // Refused for the scope, so the origin and CSRF checks let it through: the scope decided.
    assert!(answer[1].as_str().unwrap().contains("approve scope"), "{}", answer[1]);
    assert_eq!(status_of(&server, &id).await, "awaiting_approval");
    assert!(writes(&sims).is_empty(), "{:?}", writes(&sims));

    reader.close().await;
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

/// A page on another origin: whatever it is asked for, it answers with `html`.
async fn serve_page(html: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_on_another_origin_cannot_approve_for_a_signed_in_approver() {
    let Some(driver) = Driver::start().await else { return };
    let sims = Sims::start(tenant(3, 0)).await;
    let ws = workspace(&sims);
    let server = Server::start(&ws).await;
    let id = start_run(&server, ALICE, "offboard", json!({"match": "user1"})).await;
    wait_status(&server, &id, "awaiting_approval").await;

    let bob = driver.browser(&server.url).await;
    bob.sign_in(BOB, "bob").await;

    // Bob, signed in, visits a page elsewhere that posts an approval at once. 127.0.0.1 on
    // another port is the same site, so the browser sends his SameSite=Strict cookie with it:
    // only the server's Origin and CSRF checks stand in the way.
    let evil = serve_page(format!(
        r#"<!doctype html><title>cat pictures</title>
<form id="f" method="post" action="{}/runs/{id}/approve">
<input type="hidden" name="_csrf" value="0123456789abcdef0123456789abcdef">
<input type="hidden" name="comment" value="approved by a stranger">
</form>
<script>document.getElementById("f").submit();</script>"#,
        server.url
    ))
    .await;
    bob.client.goto(&evil).await.unwrap();
    bob.wait_for_path("the forged form's answer", &format!("/runs/{id}/approve"))
        .await;
    bob.wait_for("the refusal", "p.flash.error").await;
    let refusal = bob.text("p.flash.error").await.unwrap();
    assert!(refusal.contains("another site"), "{refusal}");
    assert_eq!(status_of(&server, &id).await, "awaiting_approval");

    // Over plain HTTP, even the session's valid _csrf does not help a POST from another origin.
    let cookie = bob.client.get_named_cookie("runbook_session").await.unwrap();
    bob.goto(&format!("/runs/{id}")).await;
    let csrf = bob.csrf().await;
    let forged = raw_http()
        .post(format!("{}/runs/{id}/approve", server.url))
        .header("Cookie", format!("runbook_session={}", cookie.value()))
        .header("Origin", "http://evil.example")
        .form(&[("_csrf", csrf.as_str()), ("comment", "from elsewhere")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let refusal = forged.text().await.unwrap();
    assert!(refusal.contains("another site"), "{refusal}");
    assert_eq!(status_of(&server, &id).await, "awaiting_approval");

    // Bob's own click, from the console's page, is what approves it.
    bob.submit("form[data-action=approve]").await;
    bob.wait_for("the run applied", "#run-status[data-status=succeeded]")
        .await;
    assert_eq!(writes(&sims).len(), 1, "{:?}", writes(&sims));

    bob.close().await;
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}

/// Every page, with runs of several statuses in it, at a desktop's and a phone's width; the
/// screenshots in docs/screenshots come from here (`RUNBOOK_SCREENSHOTS=docs/screenshots`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_desktop_and_a_phone() {
    let Some(driver) = Driver::start().await else { return };
    let sims = Sims::start(tenant(5, 0)).await;
    let ws = workspace(&sims);
    let server = Server::start(&ws).await;
    for user in [1, 2, 3] {
        let id = start_run(&server, BOSS, "lookup", json!({"user_id": cf_id(user)})).await;
        wait_status(&server, &id, "succeeded").await;
    }
    let failed = start_run(&server, BOSS, "lookup", json!({"user_id": "no-such-user"})).await;
    wait_status(&server, &failed, "failed").await;
    let audit = start_run(&server, BOSS, "nightly-audit", json!({})).await;
    wait_status(&server, &audit, "succeeded").await;
    let waiting = start_run(&server, BOSS, "offboard", json!({"match": "user4"})).await;
    wait_status(&server, &waiting, "awaiting_approval").await;
    // An approved run: a plan, its approval with a comment, and the changes in the timeline.
    let done = start_run(&server, BOSS, "offboard", json!({"match": "user5"})).await;
    wait_status(&server, &done, "awaiting_approval").await;
    let (status, answer) = api(
        &server,
        BOB,
        &format!("/api/runs/{done}/approve"),
        Some(json!({"comment": "HR ticket 4711: left the company"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    wait_status(&server, &done, "succeeded").await;

    let browser = driver.browser(&server.url).await;
    let mut too_wide = Vec::new();
    browser.goto("/sign-in").await;
    browser.wait_for("the sign-in form", "#sign-in").await;
    too_wide.extend(browser.at_both_widths("sign-in").await);

    browser.sign_in(ALICE, "alice").await;
    browser
        .wait_for("the runs", &format!("#runs tr[data-run-id=\"{waiting}\"]"))
        .await;
    too_wide.extend(browser.at_both_widths("runs").await);

    browser.goto(&format!("/runs/{done}")).await;
    browser.wait_for("the timeline", "#timeline tr.step").await;
    browser.wait_for("the plan", "#plan tr.change").await;
    too_wide.extend(browser.at_both_widths("run").await);

    browser.goto(&format!("/runs/{failed}")).await;
    browser
        .wait_for("the failed run", "#run-status[data-status=failed]")
        .await;
    too_wide.extend(browser.at_both_widths("run-failed").await);

    browser.goto(&format!("/runs/{waiting}")).await;
    browser.wait_for("the approve form", "form[data-action=approve]").await;
    too_wide.extend(browser.at_both_widths("approve").await);

    browser.goto("/approvals").await;
    browser
        .wait_for(
            "the waiting run",
            &format!("article.waiting[data-run-id=\"{waiting}\"]"),
        )
        .await;
    too_wide.extend(browser.at_both_widths("approvals").await);

    browser.goto("/automations").await;
    browser
        .wait_for("the automations", "#automations tr[data-automation=\"offboard\"]")
        .await;
    too_wide.extend(browser.at_both_widths("automations").await);

    browser.goto("/automations/offboard").await;
    browser
        .wait_for("the run-now form", "#run-now input[name=\"param.match\"]")
        .await;
    too_wide.extend(browser.at_both_widths("run-now").await);
    assert!(
        too_wide.is_empty(),
        "pages a phone must scroll sideways:\n{}",
        too_wide.join("\n")
    );

    browser.close().await;
    assert_eq!(server.stop().await, Some(0));
    sims.shutdown().await;
}
