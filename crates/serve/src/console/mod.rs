//! The operator's console: server-rendered pages at `/` for the people who watch and approve
//! runs — the runs, a run's timeline and plan, what waits for their approval, the automations
//! and a "run now" form.
//!
//! Everything is rendered on the server from the store (templates and assets are compiled into
//! the binary: no CDN, works offline); a small script refreshes the live part of a page and is
//! not needed to read it. A page shows what its viewer's token's scopes allow, and every change
//! goes through the same checks as the API (scopes, approvers, four eyes), posted as a form with
//! the session's CSRF token from this server's own origin.

mod forms;
mod pages;
mod session;
mod view;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::config::Scope;
use crate::server::{App, host_allowed, request_host};
use session::Viewer;

/// The console's routes, behind its Host check and security headers.
pub(crate) fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/", get(pages::home))
        .route("/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/sign-out", post(session::sign_out))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/{action}", post(forms::run_action))
        .route("/approvals", get(pages::approvals))
        .route("/automations", get(pages::automations))
        .route("/automations/{name}", get(pages::run_now))
        .route("/automations/{name}/run", post(forms::run_now))
        .route("/assets/{file}", get(asset))
        .layer(middleware::from_fn_with_state(app, console_guard))
}

/// Refuses a Host this server does not answer to (DNS rebinding), and gives every answer the
/// headers that keep it out of other sites' frames, caches and script.
async fn console_guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let host = request_host(&request);
    if !host_allowed(&app, &host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers for its listen address and public_url only; if it is reached under another name, set [serve] public_url",
        )
            .into_response();
    }
    let is_asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // Published over https: browsers that reached it there keep to https for a year.
    if session::secure(&app)
        && app
            .config
            .settings
            .public_url
            .as_ref()
            .is_some_and(|p| p.hosts.contains(&host.trim().to_ascii_lowercase()))
    {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("macros.html", include_str!("templates/macros.html")),
            ("sign_in.html", include_str!("templates/sign_in.html")),
            ("error.html", include_str!("templates/error.html")),
            ("runs.html", include_str!("templates/runs.html")),
            ("run.html", include_str!("templates/run.html")),
            ("approvals.html", include_str!("templates/approvals.html")),
            ("automations.html", include_str!("templates/automations.html")),
            ("run_now.html", include_str!("templates/run_now.html")),
            ("runs_live.html", include_str!("templates/runs_live.html")),
            ("run_live.html", include_str!("templates/run_live.html")),
            ("approvals_live.html", include_str!("templates/approvals_live.html")),
        ] {
            // The templates are part of the binary and tested: one that does not parse is a
            // build defect, shown on every page that uses it.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "a console template does not parse");
            }
        }
        env
    })
}

/// What every page's frame shows: its title, and the viewer's name, scopes and CSRF token.
#[derive(Serialize)]
struct Page {
    title: String,
    who: Option<String>,
    csrf: Option<String>,
    can_read: bool,
    can_run: bool,
    can_approve: bool,
    can_admin: bool,
    /// The navigation entry this page belongs to.
    nav: &'static str,
}

impl Page {
    /// A page with no viewer (sign-in, errors before sign-in).
    fn plain(title: &str) -> Page {
        Page {
            title: title.to_owned(),
            who: None,
            csrf: None,
            can_read: false,
            can_run: false,
            can_approve: false,
            can_admin: false,
            nav: "",
        }
    }

    /// A page for `viewer`.
    fn of(title: impl Into<String>, viewer: &Viewer, nav: &'static str) -> Page {
        Page {
            title: title.into(),
            who: Some(viewer.token.name.clone()),
            csrf: Some(viewer.session.csrf.clone()),
            can_read: viewer.token.allows(Scope::Read),
            can_run: viewer.token.allows(Scope::Run),
            can_approve: viewer.token.allows(Scope::Approve),
            can_admin: viewer.token.allows(Scope::Admin),
            nav,
        }
    }
}

/// Renders template `name` with `context`; with `fragment`, only its live part (`NAME_live.html`,
/// what the page's script swaps in while runs progress).
fn render_part(status: StatusCode, name: &str, context: minijinja::Value, fragment: bool) -> Response {
    let live;
    let name = match name.strip_suffix(".html") {
        Some(stem) if fragment => {
            live = format!("{stem}_live.html");
            live.as_str()
        }
        _ => name,
    };
    let rendered = templates()
        .get_template(name)
        .and_then(|template| template.render(context));
    match rendered {
        Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "a console page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "this page could not be rendered; the server's log says why",
            )
                .into_response()
        }
    }
}

/// Renders a whole page.
fn render(status: StatusCode, name: &str, context: minijinja::Value) -> Response {
    render_part(status, name, context, false)
}

/// A page that says what went wrong and what to do.
fn page_error(status: StatusCode, message: &str) -> Response {
    error_page(
        status,
        message,
        Page::plain(status.canonical_reason().unwrap_or("Error")),
    )
}

/// [`page_error`] for a signed-in viewer: with the navigation and sign-out.
fn viewer_error(viewer: &Viewer, status: StatusCode, message: &str) -> Response {
    error_page(
        status,
        message,
        Page::of(status.canonical_reason().unwrap_or("Error"), viewer, ""),
    )
}

fn error_page(status: StatusCode, message: &str, page: Page) -> Response {
    render(
        status,
        "error.html",
        minijinja::context! {
            page => page,
            status => status.as_u16(),
            message => message,
        },
    )
}

/// The page for a store that failed or did not answer: its cause, shortened and with secrets
/// scrubbed, and when to try again.
fn store_down(e: &crate::store::StoreError) -> Response {
    let mut response = page_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "the run store did not answer ({}); reload the page in a moment",
            crate::server::short_cause(e)
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// A 303 to `to` (after a form post, and to the sign-in page).
fn redirect(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses() {
        let env = super::templates();
        for name in [
            "base.html",
            "macros.html",
            "sign_in.html",
            "error.html",
            "runs.html",
            "runs_live.html",
            "run.html",
            "run_live.html",
            "approvals.html",
            "approvals_live.html",
            "automations.html",
            "run_now.html",
        ] {
            if let Err(e) = env.get_template(name) {
                panic!("{name}: {e}");
            }
        }
    }
}
