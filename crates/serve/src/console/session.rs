//! Console sessions: a named token exchanged for a session cookie, kept in the store (so that
//! every instance sharing it knows the session, and sign-out ends it everywhere), and the checks
//! every form passes — its Origin, and the session's CSRF token.
//!
//! The cookie's value is 32 random bytes; the store keeps only its SHA-256. A session lasts while
//! it is used within `console_idle_timeout`, for at most `console_session_max`, and only while its
//! token is still configured with the same value: removing or rotating a token signs its
//! sessions out.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::{Page, page_error, redirect, render, store_down};
use crate::config::{ApiToken, sha256};
use crate::server::{App, origin_allowed};
use crate::store::ConsoleSession;

/// The session cookie's name; with an https `public_url` the `__Host-` prefix binds it to this
/// host, over TLS, for the whole site.
pub(super) fn cookie_name(app: &App) -> &'static str {
    if secure(app) {
        "__Host-runbook_session"
    } else {
        "runbook_session"
    }
}

/// The cookie that carries the sign-in form's CSRF token (double submit): there is no session yet.
const SIGN_IN_COOKIE: &str = "runbook_signin";

/// A session's `last_seen` is written again only after this long (or a quarter of the idle
/// timeout, when that is shorter): a page view is not a write.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Whether the console is published over https (`public_url`), so its cookies are `Secure`.
pub(super) fn secure(app: &App) -> bool {
    app.config
        .settings
        .public_url
        .as_ref()
        .is_some_and(|p| p.origin.starts_with("https://"))
}

/// The address to open instead, when the console is published over https but this request
/// reached it under another name (the listen address itself, perhaps over plain http, where the
/// browser would never send the `Secure` cookie back and signing in would go round in circles).
/// Only a hint: a proxy that does not pass the Host header on looks the same.
fn elsewhere(app: &App, headers: &HeaderMap) -> Option<String> {
    let public = app.config.settings.public_url.as_ref().filter(|_| secure(app))?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (!public.hosts.contains(&host)).then(|| public.url.clone())
}

fn use_public_url(url: &str) -> String {
    format!(
        "this console is published at {url} (public_url) and its session cookie is Secure: if you opened this page over plain http, signing in will not stick — open {url} instead"
    )
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The value of cookie `name` in the request, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn set_cookie(app: &App, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let mut text = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/");
    if secure(app) {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("runbook_session=; Max-Age=0"))
}

fn equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Who is looking: the token a session was opened with, and the session.
#[derive(Clone)]
pub(super) struct Viewer {
    pub(super) token: ApiToken,
    pub(super) session: ConsoleSession,
}

/// The SHA-256 of the request's session cookie, if it sent one.
fn session_id(app: &App, headers: &HeaderMap) -> Option<String> {
    cookie(headers, cookie_name(app))
        .filter(|v| !v.is_empty())
        .map(|value| hex::encode(sha256(value.as_bytes())))
}

/// The signed-in viewer of a request; `Ok(None)` when the request has no live session (never
/// signed in, signed out, idle too long, too old, or its token is gone or rotated). A request a
/// page's script makes by itself (`X-Console-Fragment`) does not count as use: an open tab
/// alone does not keep a session alive.
pub(super) async fn viewer(app: &App, headers: &HeaderMap) -> Result<Option<Viewer>, Response> {
    let Some(id) = session_id(app, headers) else {
        return Ok(None);
    };
    let session = match app.store.session_get(&id).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return Err(store_down(&e)),
    };
    let settings = &app.config.settings;
    let now = now_ms();
    let idle = i64::try_from(settings.console_idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let max = i64::try_from(settings.console_session_max.as_millis()).unwrap_or(i64::MAX);
    let token = settings
        .tokens
        .iter()
        .find(|t| t.name == session.token_name && equal(&hex::encode(t.sha256), &session.token_sha256));
    let (Some(token), true, true) = (
        token,
        now.saturating_sub(session.last_seen) <= idle,
        now.saturating_sub(session.created_at) <= max,
    ) else {
        if let Err(e) = app.store.session_delete(&id).await {
            tracing::warn!(error = %e, "could not forget an expired console session");
        }
        return Ok(None);
    };
    let by_itself = headers.contains_key("x-console-fragment");
    if !by_itself
        && now - session.last_seen > TOUCH_EVERY_MS.min(idle / 4)
        && let Err(e) = app.store.session_touch(&id, now).await
    {
        tracing::warn!(error = %e, "could not record a console session's use");
    }
    Ok(Some(Viewer {
        token: token.clone(),
        session,
    }))
}

/// Refuses a form post another site's page could have sent: an `Origin` that is not this
/// server's, or a fetch the browser marks cross-site. Requests without those headers (not from a
/// browser) still need the CSRF token.
pub(super) fn cross_site(app: &App, headers: &HeaderMap) -> Option<Response> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(app, origin) {
            let shown: String = origin.chars().take(100).collect();
            tracing::warn!(origin = %shown, "a cross-origin console form was refused");
            return Some(page_error(
                StatusCode::FORBIDDEN,
                "this form was sent from another site's page and was refused; nothing was changed",
            ));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        tracing::warn!(sec_fetch_site = site, "a cross-site console form was refused");
        return Some(page_error(
            StatusCode::FORBIDDEN,
            "this form was sent from another site's page and was refused; nothing was changed",
        ));
    }
    None
}

/// The checks of a signed-in form post: same origin, and the session's CSRF token.
pub(super) fn check_form(app: &App, viewer: &Viewer, headers: &HeaderMap, csrf: Option<&str>) -> Option<Response> {
    if let Some(refused) = cross_site(app, headers) {
        return Some(refused);
    }
    if !csrf.is_some_and(|given| equal(given, &viewer.session.csrf)) {
        tracing::warn!(token = %viewer.token.name, "a console form without its session's CSRF token was refused");
        return Some(page_error(
            StatusCode::FORBIDDEN,
            "this form's security token is missing or out of date (the page may be from an earlier session); reload the page and send it again — nothing was changed",
        ));
    }
    None
}

#[derive(Deserialize)]
pub(super) struct SignInQuery {
    signed_out: Option<String>,
}

/// `GET /sign-in`.
pub(super) async fn sign_in_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Response {
    match viewer(&app, &headers).await {
        Ok(Some(v)) => return redirect(super::pages::first_page(&v.token)),
        Ok(None) => {}
        Err(page) => return page,
    }
    let notice = query.signed_out.map(|_| "You are signed out.");
    let problem = elsewhere(&app, &headers).map(|url| use_public_url(&url));
    sign_in_form(&app, StatusCode::OK, problem.as_deref(), notice)
}

fn sign_in_form(app: &App, status: StatusCode, problem: Option<&str>, notice: Option<&str>) -> Response {
    let csrf = random_token();
    let mut response = render(
        status,
        "sign_in.html",
        minijinja::context! {
            page => Page::plain("Sign in"),
            csrf => csrf,
            problem => problem,
            notice => notice,
            no_tokens => app.config.settings.tokens.is_empty(),
        },
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(app, SIGN_IN_COOKIE, &csrf, Some(3600)));
    response
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// `POST /sign-in`: a named token for a session cookie.
pub(super) async fn sign_in(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignInForm>,
) -> Response {
    if let Some(refused) = cross_site(&app, &headers) {
        return refused;
    }
    if !cookie(&headers, SIGN_IN_COOKIE).is_some_and(|c| !form.csrf.is_empty() && equal(c, &form.csrf)) {
        return sign_in_form(
            &app,
            StatusCode::FORBIDDEN,
            Some("the sign-in form had expired; sign in again"),
            None,
        );
    }
    let digest = sha256(form.token.trim().as_bytes());
    let mut found: Option<&ApiToken> = None;
    for token in &app.config.settings.tokens {
        // Every token is compared, each in constant time.
        if bool::from(token.sha256[..].ct_eq(&digest[..])) {
            found = Some(token);
        }
    }
    let Some(token) = found.filter(|_| !form.token.trim().is_empty()) else {
        tracing::warn!("a console sign-in with an unknown token was refused");
        return sign_in_form(
            &app,
            StatusCode::UNAUTHORIZED,
            Some("that is not one of this server's tokens"),
            None,
        );
    };
    // Signing in again (as anyone) ends the session this browser had: one browser, one session.
    if let Some(old) = session_id(&app, &headers)
        && let Err(e) = app.store.session_delete(&old).await
    {
        tracing::warn!(error = %e, "could not end the session a new sign-in replaces");
    }
    let value = random_token();
    let now = now_ms();
    let session = ConsoleSession {
        id_sha256: hex::encode(sha256(value.as_bytes())),
        token_name: token.name.clone(),
        token_sha256: hex::encode(token.sha256),
        csrf: random_token(),
        created_at: now,
        last_seen: now,
    };
    if let Err(e) = app.store.session_create(&session).await {
        return store_down(&e);
    }
    tracing::info!(token = %token.name, "signed in to the console");
    let mut response = redirect(super::pages::first_page(token));
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(&app, cookie_name(&app), &value, None));
    headers.append(header::SET_COOKIE, set_cookie(&app, SIGN_IN_COOKIE, "", Some(0)));
    response
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// `POST /sign-out`: ends the session in the store (every instance), and clears the cookie.
pub(super) async fn sign_out(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Response {
    let viewer = match viewer(&app, &headers).await {
        Ok(Some(v)) => v,
        Ok(None) => return signed_out(&app),
        Err(page) => return page,
    };
    if let Some(refused) = check_form(&app, &viewer, &headers, Some(&form.csrf)) {
        return refused;
    }
    if let Err(e) = app.store.session_delete(&viewer.session.id_sha256).await {
        return store_down(&e);
    }
    tracing::info!(token = %viewer.token.name, "signed out of the console");
    signed_out(&app)
}

/// To the sign-in page, with the session cookie cleared.
fn signed_out(app: &App) -> Response {
    let mut response = redirect("/sign-in?signed_out=1");
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(app, cookie_name(app), "", Some(0)));
    response.into_response()
}
