//! The HTTP client every provider sends its requests through.
//!
//! One [`HttpClient`] per provider instance: one rate budget, and one connection pool for each
//! lane its calls run on (see `crate::lane`: a script thread's calls run on its lane, whose
//! connections it drives itself). Each request
//! passes, in order: the plan-mode check (a mutating request is refused outright when the run is
//! a plan — the second line of defence behind the host, which never calls a mutating action in
//! plan mode), the rate limiter, the send, and the retry policy. The whole exchange, retries and
//! waits included, is abandoned as soon as the run is cancelled (timeout, Ctrl-C).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use backon::Retryable;
use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use tracing::Instrument;

use super::rate_limit::{Limiter, RateLimit, SharedBudget};
use super::retry::{RetryPolicy, is_retryable_status, retry_after, should_retry};
use crate::context::CallContext;
use crate::error::{ActionError, ActionErrorKind};
use crate::lane::LANE_IDLE_CONNECTION;
use crate::secret::{Secret, redact};

/// Characters escaped in one path segment: everything that could end the segment or the path,
/// and `;`, which starts a path parameter (Java servers read `..;x` as `..`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b';')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// Builds a path from segments, percent-encoding each: `path(&["users", "a/b"])` is `/users/a%2Fb`.
pub fn path(segments: &[&str]) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.extend(utf8_percent_encode(segment, SEGMENT));
    }
    out
}

/// The user agent every provider sends.
pub const USER_AGENT: &str = concat!("runbook/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone)]
enum Body {
    Json(Bytes),
    Form(Bytes),
    /// Sent as it is; the caller sets its content type.
    Raw(Bytes),
}

/// One request, ready to be sent (and resent: the body is kept as bytes).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Body>,
    /// Set by the provider; otherwise a reading request is idempotent and a changing one is
    /// as idempotent as its action.
    idempotent: Option<bool>,
    mutating: bool,
}

impl HttpRequest {
    /// A request with this method to `path` (relative to the client's base URL; build it with
    /// [`path`] so that ids are escaped). Everything but GET, HEAD and OPTIONS counts as a change,
    /// and a change is resent after an ambiguous failure only when its action's spec says the
    /// action is idempotent ([`CallContext::is_idempotent`]).
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        HttpRequest {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            idempotent: None,
            mutating,
        }
    }

    /// A GET request.
    pub fn get(path: impl Into<String>) -> Self {
        HttpRequest::new(Method::GET, path)
    }

    /// A POST request.
    pub fn post(path: impl Into<String>) -> Self {
        HttpRequest::new(Method::POST, path)
    }

    /// A PUT request.
    pub fn put(path: impl Into<String>) -> Self {
        HttpRequest::new(Method::PUT, path)
    }

    /// A DELETE request.
    pub fn delete(path: impl Into<String>) -> Self {
        HttpRequest::new(Method::DELETE, path)
    }

    /// Adds a query parameter.
    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_owned(), value.to_string()));
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Adds a header whose value is a secret: marked sensitive so that no layer prints it.
    pub fn secret_header(mut self, name: HeaderName, value: &Secret<String>) -> Result<Self, ActionError> {
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
            ActionError::new(
                ActionErrorKind::NotConfigured,
                format!("the credential for the {name} header contains characters a header cannot carry"),
            )
        })?;
        value.set_sensitive(true);
        self.headers.insert(name, value);
        Ok(self)
    }

    /// `Authorization: Bearer <token>`, marked sensitive.
    pub fn bearer(mut self, token: &Secret<String>) -> Result<Self, ActionError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
            ActionError::new(
                ActionErrorKind::NotConfigured,
                "the token contains characters a header cannot carry",
            )
        })?;
        value.set_sensitive(true);
        self.headers.insert(reqwest::header::AUTHORIZATION, value);
        Ok(self)
    }

    /// A JSON body.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, ActionError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ActionError::invalid_args(format!("the request body is not JSON: {e}")))?;
        self.body = Some(Body::Json(Bytes::from(bytes)));
        Ok(self)
    }

    /// An `application/x-www-form-urlencoded` body.
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.body = Some(Body::Form(Bytes::from(encoded)));
        self
    }

    /// A body sent exactly as given (set its `content-type` with [`header`](Self::header)): for a
    /// caller that must know the bytes on the wire, e.g. to sign them.
    pub fn raw_body(mut self, bytes: impl Into<Bytes>) -> Self {
        self.body = Some(Body::Raw(bytes.into()));
        self
    }

    /// Declares whether this request may be resent after an ambiguous failure, whatever its
    /// action's spec says (a provider that knows better for one request of several).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Whether the request may be resent after an ambiguous failure in `ctx`'s call.
    fn resendable(&self, ctx: &CallContext) -> bool {
        self.idempotent.unwrap_or(!self.mutating || ctx.is_idempotent())
    }

    /// Declares a POST that changes nothing (a search, a token request): allowed in plan mode
    /// and resent after failures.
    pub fn read_only(mut self) -> Self {
        self.mutating = false;
        self.idempotent = Some(true);
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// An answer from the service, whatever its status.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, read whole.
    pub body: Bytes,
}

impl HttpResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of the body as text, for error messages: at most `max` characters, on one line.
    /// Secrets are redacted before the cut, so none leaves its start behind.
    pub fn excerpt(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let flat = redact(&flat);
        let mut out: String = flat.chars().take(max).collect();
        if flat.chars().nth(max).is_some() {
            out.push('…');
        }
        out
    }

    /// Whether the body looks like HTML (a proxy's or load balancer's error page).
    pub fn is_html(&self) -> bool {
        let content_type_html = self
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("html"));
        let start = self.body.iter().skip_while(|b| b.is_ascii_whitespace()).take(15);
        let start: Vec<u8> = start.map(|b| b.to_ascii_lowercase()).collect();
        content_type_html || start.starts_with(b"<!doctype") || start.starts_with(b"<html")
    }
}

/// Settings for an [`HttpClient`].
#[derive(Debug)]
pub struct HttpClientBuilder {
    name: String,
    base_url: String,
    timeout: Duration,
    connect_timeout: Duration,
    rate_limit: Option<RateLimit>,
    shared_budget: Option<(Arc<dyn SharedBudget>, String)>,
    retry: RetryPolicy,
    ca_certs: Vec<reqwest::Certificate>,
    cookies: bool,
    certificate_hint: Option<String>,
    redirects: bool,
    max_body: usize,
}

/// The largest response body a client reads unless told otherwise.
pub const DEFAULT_MAX_BODY: usize = 256 << 20;

impl HttpClientBuilder {
    /// Sets the largest response body read (default [`DEFAULT_MAX_BODY`]): a larger answer
    /// fails the call, and is never held in memory whole.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets the whole-request timeout (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the client-side rate budget (default: none, only the service's headers are followed).
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Draws the rate budget from `budget` (when there is one) as the account `key`, so that
    /// every process using the same account stays inside the budget together. `key` names the
    /// account, never its secret: e.g. `cloudflare https://api.cloudflare.com/client/v4 account 01a7…`.
    /// Applies only with a [`rate_limit`](Self::rate_limit).
    pub fn shared_budget(mut self, budget: Option<Arc<dyn SharedBudget>>, key: impl Into<String>) -> Self {
        self.shared_budget = budget.map(|b| (b, key.into()));
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Trusts the CA certificate(s) in this PEM text, in addition to the public roots.
    pub fn add_ca_pem(mut self, pem: &[u8]) -> Result<Self, String> {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
        if certs.is_empty() {
            return Err("no certificate found in the PEM text".to_owned());
        }
        self.ca_certs.extend(certs);
        Ok(self)
    }

    /// Keeps cookies between requests (an HA deployment's node affinity).
    pub fn cookie_store(mut self, on: bool) -> Self {
        self.cookies = on;
        self
    }

    /// Whether redirects are followed (default: yes, up to 10). Without, a 3xx answer is returned
    /// like any other, for the provider to judge where it points.
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.redirects = follow;
        self
    }

    /// What to tell the user when the server's certificate is not trusted.
    pub fn certificate_hint(mut self, hint: impl Into<String>) -> Self {
        self.certificate_hint = Some(hint.into());
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<HttpClient, String> {
        let base = self.base_url.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base).map_err(|e| format!("\"{base}\" is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("\"{base}\" is not an http(s) URL"));
        }
        let recipe = ClientRecipe {
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            cookies: self.cookies.then(|| Arc::new(reqwest::cookie::Jar::default())),
            ca_certs: self.ca_certs,
            redirects: self.redirects,
        };
        let client = recipe
            .build(None)
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))?;
        Ok(HttpClient {
            inner: Arc::new(Inner {
                id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
                client,
                recipe,
                base,
                name: self.name,
                limiter: match (self.rate_limit, self.shared_budget) {
                    (Some(limit), Some((shared, key))) => Limiter::with_shared(limit, shared, key),
                    (limit, _) => Limiter::new(limit),
                },
                retry: self.retry,
                timeout: self.timeout,
                certificate_hint: self.certificate_hint,
                max_body: self.max_body,
            }),
        })
    }
}

/// Tells clients apart in a lane's pools.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(0);

/// How to make a connection pool: the one for calls outside lanes, and one on each lane
/// (`crate::lane`); all of them share the cookie jar.
#[derive(Debug)]
struct ClientRecipe {
    timeout: Duration,
    connect_timeout: Duration,
    cookies: Option<Arc<reqwest::cookie::Jar>>,
    ca_certs: Vec<reqwest::Certificate>,
    redirects: bool,
}

impl ClientRecipe {
    fn build(&self, idle: Option<Duration>) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(idle) = idle {
            builder = builder.pool_idle_timeout(idle);
        }
        if let Some(jar) = &self.cookies {
            builder = builder.cookie_provider(jar.clone());
        }
        for cert in &self.ca_certs {
            builder = builder.add_root_certificate(cert.clone());
        }
        if !self.redirects {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        builder.build()
    }
}

#[derive(Debug)]
struct Inner {
    id: u64,
    /// The pool for calls that run outside lanes.
    client: reqwest::Client,
    recipe: ClientRecipe,
    base: String,
    name: String,
    limiter: Limiter,
    retry: RetryPolicy,
    timeout: Duration,
    certificate_hint: Option<String>,
    max_body: usize,
}

/// A provider's HTTP client: base URL, connection pool, rate budget, retries.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

/// Why an attempt did not produce a final answer.
enum Failure {
    /// The service answered a status worth retrying.
    Status {
        response: HttpResponse,
        retry_after: Option<Duration>,
    },
    /// The run stopped taking changes before this one was sent.
    Stopped,
    /// The exchange did not complete.
    Transport {
        error: reqwest::Error,
        /// The connection was never made, so the request was certainly not received.
        not_sent: bool,
    },
    /// The service answered, with a body larger than the client reads.
    TooLarge { status: u16, limit: usize },
}

/// Why an exchange gave no whole answer.
enum Exchange {
    Transport(reqwest::Error),
    TooLarge { status: u16 },
}

impl From<reqwest::Error> for Exchange {
    fn from(error: reqwest::Error) -> Self {
        Exchange::Transport(error)
    }
}

impl HttpClient {
    /// Settings for a client named after its provider (`cloudflare`), talking to `base_url`.
    pub fn builder(name: &str, base_url: &str) -> HttpClientBuilder {
        HttpClientBuilder {
            name: name.to_owned(),
            base_url: base_url.to_owned(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            rate_limit: None,
            shared_budget: None,
            retry: RetryPolicy::default(),
            ca_certs: Vec::new(),
            cookies: false,
            certificate_hint: None,
            redirects: true,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The base URL requests are relative to.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Sends a request: refused in plan mode when it would change something, paced by the rate
    /// limiter, retried per the policy, abandoned when the run is cancelled. Any answer the
    /// service gives is returned as `Ok`, error statuses included, for the provider to read its
    /// error body; `Err` means there was no usable answer.
    ///
    /// While the service has asked for a longer pause than the policy's `max_retry_after`
    /// (a 429 with a long `retry-after`), requests fail at once without being sent, saying
    /// until when: the run neither stalls silently nor draws another 429.
    pub async fn send(&self, ctx: &CallContext, request: HttpRequest) -> Result<HttpResponse, ActionError> {
        if ctx.is_plan() && request.mutating {
            return Err(ActionError::new(
                ActionErrorKind::Refused,
                format!("plan mode refused to send {} {}", request.method, request.path),
            ));
        }
        if let Some(left) = self.inner.limiter.paused_longer_than(self.inner.retry.max_retry_after) {
            return Err(ActionError::new(
                ActionErrorKind::Refused,
                format!(
                    "{} asked for a pause of {} more before any further request (a 429 with retry-after); \
                     {} {} was not sent. Run again after the pause",
                    self.inner.name,
                    humantime::format_duration(Duration::from_secs(left.as_secs().max(1))),
                    request.method,
                    request.path
                ),
            )
            .with_code("rate_limited"));
        }
        let cancel = ctx.cancel_token().clone();
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ActionError::cancelled()),
            result = self.send_with_retries(ctx, &request) => result,
        }
    }

    async fn send_with_retries(&self, ctx: &CallContext, request: &HttpRequest) -> Result<HttpResponse, ActionError> {
        let attempt = AtomicU32::new(0);
        let max_retry_after = self.inner.retry.max_retry_after;
        let resendable = request.resendable(ctx);
        let outcome = (|| async {
            let n = attempt.fetch_add(1, Ordering::Relaxed) + 1;
            ctx.note_attempt();
            self.attempt(ctx, request, n).await
        })
        .retry(self.inner.retry.backoff())
        .sleep(tokio::time::sleep)
        .when(|failure: &Failure| match failure {
            // A 429 was refused, not received: resending it cannot act twice.
            Failure::Status { response, .. } => resendable || response.status == 429,
            Failure::Transport { error, not_sent } => !is_certificate_error(error) && (resendable || *not_sent),
            Failure::Stopped | Failure::TooLarge { .. } => false,
        })
        .adjust(|failure: &Failure, backoff: Option<Duration>| {
            let backoff = backoff?;
            match failure {
                Failure::Status {
                    retry_after: Some(wait),
                    ..
                } => (*wait <= max_retry_after).then_some(*wait),
                _ => Some(backoff),
            }
        })
        .await;
        let attempts = attempt.load(Ordering::Relaxed);
        match outcome {
            Ok(response) => Ok(response),
            Err(Failure::Status { response, .. }) => Ok(response),
            Err(Failure::Transport { error, .. }) => Err(self.transport_error(request, &error, attempts)),
            Err(Failure::TooLarge { status, limit }) => Err(ActionError::invalid_response(format!(
                "{} answered {status} to {} {} with a body larger than {} (the most runbook reads); nothing of it \
                 was kept. Ask for less (a page, a filter), or raise the limit (`max_body`) if the answer is \
                 meant to be that large",
                self.inner.name,
                request.method,
                request.path,
                size_text(limit)
            ))
            .with_status(status)
            .with_code("body_too_large")),
            Err(Failure::Stopped) => Err(ActionError::new(
                ActionErrorKind::Refused,
                format!(
                    "{} {} was not sent: the run stopped taking changes while it waited",
                    request.method, request.path
                ),
            )),
        }
    }

    async fn attempt(&self, ctx: &CallContext, request: &HttpRequest, attempt: u32) -> Result<HttpResponse, Failure> {
        let inner = &self.inner;
        let permit = inner.limiter.acquire().await;
        // The wait may have been long (a rate budget, a backoff): a change is not sent for a run
        // that has stopped meanwhile.
        if request.mutating && ctx.is_stopping() {
            return Err(Failure::Stopped);
        }
        let url = format!("{}{}", inner.base, request.path);
        let span = tracing::debug_span!(
            "http",
            provider = %inner.name,
            method = %request.method,
            path = %request.path,
            attempt,
            status = tracing::field::Empty,
            ms = tracing::field::Empty,
        );
        let started = Instant::now();
        // A call on a lane uses the lane's connections: they are tasks of the lane's runtime.
        let client = match ctx.lane() {
            None => inner.client.clone(),
            Some(lane) => match lane.client(inner.id, || inner.recipe.build(Some(LANE_IDLE_CONNECTION))) {
                Ok(client) => client,
                Err(error) => return Err(Failure::Transport { error, not_sent: true }),
            },
        };
        let mut builder = client
            .request(request.method.clone(), &url)
            .headers(request.headers.clone());
        if !request.query.is_empty() {
            builder = builder.query(&request.query);
        }
        builder = match &request.body {
            None => builder,
            Some(Body::Json(bytes)) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Some(Body::Form(bytes)) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(bytes.clone()),
            Some(Body::Raw(bytes)) => builder.body(bytes.clone()),
        };
        let step = request.mutating.then(|| ctx.step()).flatten();
        let max_body = inner.max_body;
        let exchange = async {
            let response = builder.send().await?;
            if let Some(step) = step {
                crate::fault::point("after-send", step);
            }
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = read_body(response, max_body).await.map_err(|e| match e {
                Exchange::TooLarge { .. } => Exchange::TooLarge { status },
                other => other,
            })?;
            Ok::<_, Exchange>(HttpResponse { status, headers, body })
        }
        .instrument(span.clone());
        let result = match ctx.lane() {
            Some(lane) => lane.exchange(exchange).await,
            None => exchange.await,
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        span.record("ms", ms);
        match result {
            Ok(response) => {
                span.record("status", response.status);
                tracing::debug!(parent: &span, status = response.status, ms, "http request");
                inner.limiter.observe(permit, &response.headers);
                let retry_after = retry_after(&response.headers, SystemTime::now());
                if response.status == 429
                    && let Some(wait) = retry_after
                {
                    inner.limiter.pause_for(wait);
                }
                // The service's own word on whether to try again wins over the status of a failure,
                // as in the services' official SDKs; a success is never sent again.
                if response.is_success()
                    || !should_retry(&response.headers).unwrap_or_else(|| is_retryable_status(response.status))
                {
                    return Ok(response);
                }
                Err(Failure::Status { response, retry_after })
            }
            Err(Exchange::TooLarge { status }) => {
                tracing::debug!(parent: &span, ms, status, "http answer larger than max_body");
                inner.limiter.observe(permit, &HeaderMap::new());
                Err(Failure::TooLarge {
                    status,
                    limit: max_body,
                })
            }
            Err(Exchange::Transport(error)) => {
                tracing::debug!(parent: &span, ms, error = %redact(&error_chain(&error)), "http request failed");
                let not_sent = error.is_connect() && !is_certificate_error(&error);
                Err(Failure::Transport { error, not_sent })
            }
        }
    }

    fn transport_error(&self, request: &HttpRequest, error: &reqwest::Error, attempts: u32) -> ActionError {
        let inner = &self.inner;
        let target = format!("{} {}{}", request.method, inner.base, request.path);
        let tries = if attempts > 1 {
            format!(" (after {attempts} attempts)")
        } else {
            String::new()
        };
        let message = if is_certificate_error(error) {
            let hint = inner
                .certificate_hint
                .as_deref()
                .map(|h| format!(": {h}"))
                .unwrap_or_default();
            format!(
                "the server's TLS certificate is not trusted ({}){hint}",
                root_cause(error)
            )
        } else if error.is_timeout() {
            format!(
                "{target} timed out after {}{tries}",
                humantime::format_duration(inner.timeout)
            )
        } else if error.is_connect() {
            format!("cannot connect for {target}: {}{tries}", root_cause(error))
        } else {
            format!("{target} failed: {}{tries}", root_cause(error))
        };
        let mut out = ActionError::transport(redact(&message).into_owned());
        if is_certificate_error(error) {
            out = out.with_code("certificate");
        }
        out
    }
}

/// Reads a body chunk by chunk, failing as soon as it passes `max` bytes.
async fn read_body(mut response: reqwest::Response, max: usize) -> Result<Bytes, Exchange> {
    let status = response.status().as_u16();
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(Exchange::TooLarge { status });
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(Exchange::TooLarge { status });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A size in words: `8 MiB`, `300 KiB`, `12 bytes`.
fn size_text(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        cause = e.to_string();
        source = e.source();
    }
    cause
}

/// Whether the failure is a TLS certificate the client does not trust.
fn is_certificate_error(error: &reqwest::Error) -> bool {
    let chain = error_chain(error).to_ascii_lowercase();
    chain.contains("certificate") || chain.contains("unknownissuer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(
            path(&["accounts", "a b", "users", "x/../y?z#"]),
            "/accounts/a%20b/users/x%2F..%2Fy%3Fz%23"
        );
        assert_eq!(path(&["users", "..;x"]), "/users/..%3Bx");
    }

    #[test]
    fn an_excerpt_cut_inside_a_secret_shows_none_of_it() {
        crate::secret::remember("excerpt-secret-0123456789");
        let response = HttpResponse {
            status: 500,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"error: token excerpt-secret-0123456789 refused"),
        };
        // The cut falls inside the secret: its first characters must not show.
        let cut = response.excerpt(24);
        assert!(!cut.contains("excerpt-sec"), "{cut}");
        assert!(cut.starts_with("error: token ***"), "{cut}");
    }
}
