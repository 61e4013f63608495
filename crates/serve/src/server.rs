//! The server: the HTTP endpoints (webhooks, health, metrics, the runs API), the tick tasks, the
//! workers, and an orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runbook_core::{Engine, Resolution};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{ApiToken, Scope, ServeConfig, Trigger, sha256};
use crate::metrics::Metrics;
use crate::redact::{redact_value, redacted};
use crate::store::{
    CancelError, Cancelled, DecideError, Decision, NewRun, ResolveError, RunFilter, RunStatus, RunSummary, Store,
    TIMED_OUT, TimedStore,
};
use crate::webhook;
use crate::worker::{self, Pool};

/// The largest webhook body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// The server failed to start or to run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("the run store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// How to start.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct StartOptions {
    /// Every run still marked running belongs to a process that is gone (a store only this
    /// server uses): queue them again at once instead of waiting for their leases to expire.
    pub recover_all_running: bool,
}

impl StartOptions {
    /// With `recover_all_running` set.
    pub fn recovering_all_running(mut self) -> Self {
        self.recover_all_running = true;
        self
    }
}

pub(crate) struct App {
    pub(crate) config: Arc<ServeConfig>,
    /// The store with `store_timeout` on every call: what every request uses.
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) intake_open: AtomicBool,
    /// Bytes of webhook bodies that may be read at once (`intake_memory`).
    pub(crate) intake_budget: Arc<tokio::sync::Semaphore>,
    /// The store's gauges as last read for `/metrics`, and when.
    pub(crate) stats: tokio::sync::Mutex<Option<(std::time::Instant, crate::store::Stats)>>,
    /// The worker pool (its engine checks the params of runs started through the API).
    pub(crate) pool: Arc<Pool>,
    /// Where this server listens, as bound (port 0 resolved).
    pub(crate) bound: SocketAddr,
    /// Each webhook automation's queued runs as last read from the store, plus this instance's
    /// intakes since (see [`queued_runs`]).
    pub(crate) queued: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: CancellationToken,
    done: JoinHandle<()>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts down in order: intake closes (webhooks answer 503), no new run starts, running runs
    /// get the grace period to finish, then are stopped and queued again; queued runs stay
    /// queued. Returns when everything has stopped.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.done.await;
    }
}

/// Starts serving `config`'s automations with `engine`, keeping runs in `store`.
pub async fn start(
    config: ServeConfig,
    engine: Engine,
    store: Arc<dyn Store>,
    options: StartOptions,
) -> Result<ServerHandle, ServeError> {
    let config = Arc::new(config);
    let listen = config.settings.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen { addr: listen, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Listen { addr: listen, source })?;

    let recovered = store.recover(options.recover_all_running).await?;
    if recovered > 0 {
        tracing::warn!(
            runs = recovered,
            "runs left running by a stopped process are queued again"
        );
    }

    let metrics = Arc::new(Metrics::new());
    let wake = Arc::new(Notify::new());
    let pool = Pool::new(store.clone(), engine, config.clone(), metrics.clone(), wake.clone());
    let app = Arc::new(App {
        config: config.clone(),
        store: Arc::new(TimedStore::new(
            store.clone(),
            config.settings.store_timeout,
            metrics.clone(),
        )),
        metrics: metrics.clone(),
        wake: wake.clone(),
        intake_open: AtomicBool::new(true),
        intake_budget: Arc::new(tokio::sync::Semaphore::new(config.settings.intake_memory)),
        stats: tokio::sync::Mutex::new(None),
        pool: pool.clone(),
        bound: addr,
        queued: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    if config.settings.tokens.is_empty() {
        tracing::warn!(
            "no API token is configured: /api/* answers 401 to every request; add [[serve.tokens]] (name, token = \"${{VAR}}\", scopes) or api_token = \"${{RUNBOOK_API_TOKEN}}\" to [serve] (make a token with `openssl rand -hex 32`)"
        );
    }
    let shutdown = CancellationToken::new();
    let ticks_stop = CancellationToken::new();
    let http_stop = CancellationToken::new();

    for automation in &config.automations {
        if let Trigger::Webhook(w) = &automation.trigger {
            tracing::info!(automation = %automation.name, path = %w.path, scheme = w.scheme.as_str(), expects = %webhook::describe(w), "webhook armed");
            if w.timestamp_header.is_none() && w.scheme == crate::config::Scheme::HmacSha256 {
                tracing::warn!(automation = %automation.name, path = %w.path, "require_timestamp = false: a captured delivery re-sent under a new id starts a new run (only the id deduplicates)");
            }
        }
    }
    let mut tickers = Vec::new();
    for automation in &config.automations {
        if let Trigger::Schedule(cadence) = &automation.trigger {
            tracing::info!(automation = %automation.name, schedule = %cadence, "schedule armed");
            tickers.push(tokio::spawn(crate::schedule::run_ticks(crate::schedule::Ticker {
                store: store.clone(),
                automation: automation.clone(),
                cadence: cadence.clone(),
                queue_limit: config.settings.queue_limit,
                metrics: metrics.clone(),
                wake: wake.clone(),
                stop: ticks_stop.clone(),
            })));
        }
    }
    let housekeeping = tokio::spawn(housekeeping(store.clone(), config.clone(), metrics.clone()));
    let expiry = config
        .automations
        .iter()
        .any(|a| a.approval.is_some())
        .then(|| tokio::spawn(expire_approvals(store.clone(), metrics.clone())));
    let workers = tokio::spawn(worker::run(pool.clone()));

    let router = router(app.clone());
    let http = tokio::spawn(crate::connections::serve(
        listener,
        router,
        crate::connections::Limits::of(&config.settings),
        http_stop.clone(),
    ));
    tracing::info!(%addr, automations = config.automations.len(), "runbook serve is listening");

    let signal = shutdown.clone();
    let grace = config.settings.grace;
    // Once runs are told to stop, how long handing them back may take: a stalled store must not
    // keep the process alive (their leases lapse instead, and they are queued again).
    let hand_back = config.settings.store_timeout;
    let done = tokio::spawn(async move {
        signal.cancelled().await;
        tracing::info!(
            "shutting down: intake closed, waiting for running runs (grace), then for open connections (drain)"
        );
        app.intake_open.store(false, Ordering::SeqCst);
        ticks_stop.cancel();
        pool.stop_claiming.cancel();
        let mut workers = workers;
        if tokio::time::timeout(grace, &mut workers).await.is_err() {
            tracing::warn!(grace = %humantime::format_duration(grace), "runs still running after the grace period are stopped and queued again");
            pool.abort_runs.cancel();
            if tokio::time::timeout(hand_back, &mut workers).await.is_err() {
                tracing::warn!(
                    "the store did not take the stopped runs back within store_timeout; their leases lapse and they are queued again"
                );
                workers.abort();
            }
        }
        let ticks_until = tokio::time::Instant::now() + hand_back;
        for mut t in tickers {
            if tokio::time::timeout_at(ticks_until, &mut t).await.is_err() {
                tracing::warn!("a schedule tick was still waiting on the store at shutdown");
                t.abort();
            }
        }
        housekeeping.abort();
        if let Some(expiry) = expiry {
            expiry.abort();
        }
        http_stop.cancel();
        let _ = http.await;
        tracing::info!("stopped");
    });
    Ok(ServerHandle { addr, shutdown, done })
}

/// Unix ms `age` ago.
fn ago(age: std::time::Duration) -> i64 {
    jiff::Timestamp::now().as_millisecond() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Re-queues runs whose lease expired (a crashed instance's), prunes old runs and compacts the
/// journals of finished runs past `journal_retention`.
async fn housekeeping(store: Arc<dyn Store>, config: Arc<ServeConfig>, metrics: Arc<Metrics>) {
    let settings = &config.settings;
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        if let Err(e) = store.recover(false).await {
            metrics.store_error("recover");
            tracing::error!(error = %e, "could not re-queue expired runs");
        }
        if last_prune.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3600)) {
            match store.prune(ago(settings.keep)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "old runs pruned"),
                Err(e) => tracing::error!(error = %e, "could not prune old runs"),
            }
            match store.prune_deliveries(ago(settings.dedup_keep)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "webhook dedup keys past dedup_keep pruned"),
                Err(e) => tracing::error!(error = %e, "could not prune old webhook dedup keys"),
            }
            match store
                .session_prune(ago(settings.console_idle_timeout), ago(settings.console_session_max))
                .await
            {
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "could not forget expired console sessions"),
            }
            match store.compact_journals(ago(settings.journal_retention)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(steps = n, "journals past journal_retention compacted"),
                Err(e) => tracing::error!(error = %e, "could not compact old journals"),
            }
            last_prune = Some(std::time::Instant::now());
        }
        tokio::time::sleep(settings.lease).await;
    }
}

/// Ends runs whose approval expired, every second (a decision after the expiry is refused
/// whether or not this has run: the store checks the time itself).
async fn expire_approvals(store: Arc<dyn Store>, metrics: Arc<Metrics>) {
    loop {
        match store.expire_approvals().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "runs whose approval expired are expired; nothing was sent"),
            Err(e) => {
                metrics.store_error("expire_approvals");
                tracing::error!(error = %e, "could not expire runs past their approval's expiry");
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/retry", post(retry_run))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .route("/api/runs/{id}/resolve", post(resolve_run))
        .route("/api/runs/{id}/approve", post(approve_run))
        .route("/api/runs/{id}/reject", post(reject_run))
        .route("/api/automations", get(list_automations))
        .route("/api/automations/{name}/runs", post(start_run))
        .route("/api/automations/{name}/pause", post(pause_automation))
        .route("/api/automations/{name}/resume", post(resume_automation))
        .layer(middleware::from_fn_with_state(app.clone(), guard));
    Router::new()
        .route("/hooks/{*path}", post(hook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(crate::console::router(app.clone()))
        .layer(middleware::from_fn_with_state(app.clone(), body_deadline))
        .with_state(app)
}

/// Bounds the time a client may take to send a request's body: `body_timeout` from its headers,
/// for every read of it (webhooks, API bodies). A body still unfinished then is answered 408
/// and the connection closed.
async fn body_deadline(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    use futures::StreamExt as _;
    let limit = app.config.settings.body_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let expired = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let flag = expired.clone();
    let stream = futures::stream::unfold(Some(body.into_data_stream()), move |state| {
        let flag = flag.clone();
        async move {
            let mut stream = state?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
                Ok(Some(Err(e))) => Some((Err(axum::BoxError::from(e)), None)),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::SeqCst);
                    Some((
                        Err(axum::BoxError::from("the body did not arrive within body_timeout")),
                        None,
                    ))
                }
            }
        }
    });
    let request = Request::from_parts(parts, axum::body::Body::from_stream(stream));
    let response = next.run(request).await;
    if !expired.load(Ordering::SeqCst) {
        return response;
    }
    app.metrics.rejected("body_timeout");
    closing(error(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the body did not arrive within {} (body_timeout)",
            humantime::format_duration(limit)
        ),
    ))
}

/// How long a count of an automation's queued runs is used before the store is asked again.
const QUEUE_COUNT_FRESH: std::time::Duration = std::time::Duration::from_millis(200);

/// `automation`'s queued runs, for `queue_limit`: counted in the store at most every
/// [`QUEUE_COUNT_FRESH`], and in between by this instance's own intakes, so that a burst of
/// deliveries does not count the queue once per delivery. (Instances sharing a store see each
/// other's intakes at the next count: together they may pass the limit by what they accept in
/// that time.)
async fn queued_runs(app: &App, automation: &str) -> Result<u64, crate::store::StoreError> {
    {
        let counts = app.queued.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, n)) = counts.get(automation)
            && at.elapsed() < QUEUE_COUNT_FRESH
        {
            return Ok(*n);
        }
    }
    let n = app.store.backlog(automation).await?.queued;
    app.queued
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(automation.to_owned(), (std::time::Instant::now(), n));
    Ok(n)
}

/// This instance queued one more run of `automation`.
fn one_more_queued(app: &App, automation: &str) {
    if let Some((_, n)) = app.queued.lock().unwrap_or_else(|p| p.into_inner()).get_mut(automation) {
        *n += 1;
    }
}

/// 503 with `Retry-After`, for a store that failed or did not answer in time.
pub(crate) fn store_unavailable(message: &str) -> Response {
    retry_after(error(StatusCode::SERVICE_UNAVAILABLE, message), "5")
}

/// `response` telling its client to send again after `seconds`.
fn retry_after(mut response: Response, seconds: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static(seconds));
    response
}

/// A store error fit to show anyone: redacted, and short.
pub(crate) fn short_cause(e: &crate::store::StoreError) -> String {
    let text = runbook_core::redact(&e.0).into_owned();
    match text.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// A larger body than [`MAX_BODY`] is still read to its end and thrown away, up to this many
/// bytes and for at most [`DRAIN_TIME`], so that its sender reads the 413 instead of a broken pipe.
const DRAIN_LIMIT: usize = 16 * MAX_BODY;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a webhook body was not read.
enum BodyRefused {
    /// Larger than [`MAX_BODY`]; `drained` says whether the rest was read, so the connection can
    /// carry another request.
    TooLarge { drained: bool },
    /// The client stopped sending or sent a malformed body.
    Unreadable,
}

/// Reads a webhook body of at most [`MAX_BODY`] bytes, keeping nothing past that limit and
/// handing every kept byte to `mac` as it arrives.
async fn read_body(
    declared: Option<usize>,
    body: axum::body::Body,
    mac: &mut webhook::Pending,
) -> Result<Body, BodyRefused> {
    use futures::StreamExt as _;
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(BodyRefused::TooLarge { drained: false });
    }
    let mut stream = body.into_data_stream();
    // The chunks as the HTTP server hands them over, not copied into one buffer until the MAC
    // matched: a forged body costs no allocation of its own (a large one per body is what the
    // allocator keeps around after a flood).
    let mut kept: Vec<axum::body::Bytes> = Vec::new();
    let mut seen = 0usize;
    // A body declared larger than the limit is only drained, from its first byte: it holds no
    // share of the intake budget, so none of it may be kept.
    let oversize = declared.is_some_and(|n| n > MAX_BODY);
    let mut deadline = oversize.then(|| tokio::time::Instant::now() + DRAIN_TIME);
    loop {
        let next = match deadline {
            None => stream.next().await,
            Some(at) => match tokio::time::timeout_at(at, stream.next()).await {
                Ok(next) => next,
                Err(_) => return Err(BodyRefused::TooLarge { drained: false }),
            },
        };
        match next {
            None if seen > MAX_BODY || oversize => return Err(BodyRefused::TooLarge { drained: true }),
            None => return Ok(Body(kept)),
            Some(Err(_)) if seen > MAX_BODY || oversize => return Err(BodyRefused::TooLarge { drained: false }),
            Some(Err(_)) => return Err(BodyRefused::Unreadable),
            Some(Ok(chunk)) => {
                seen = seen.saturating_add(chunk.len());
                if seen <= MAX_BODY && !oversize {
                    mac.update(&chunk);
                    kept.push(chunk);
                } else if seen > DRAIN_LIMIT {
                    return Err(BodyRefused::TooLarge { drained: false });
                } else if deadline.is_none() {
                    kept = Vec::new();
                    deadline = Some(tokio::time::Instant::now() + DRAIN_TIME);
                }
            }
        }
    }
}

/// A webhook body as it arrived, in chunks.
struct Body(Vec<axum::body::Bytes>);

impl Body {
    /// The whole body in one piece (copied only when it came in several chunks).
    fn whole(self) -> axum::body::Bytes {
        match <[axum::body::Bytes; 1]>::try_from(self.0) {
            Ok([one]) => one,
            Err(chunks) => chunks.concat().into(),
        }
    }
}

/// How long a delivery waits for its share of `intake_memory` before it is told to come back.
const INTAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `response` with `Connection: close`: the request's body was not read, so the connection
/// cannot carry another request.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

/// The 413 answer. When the rest of the body was not read, the connection is closed: it cannot carry
/// another request (a client that reused it would see its next request cut off).
fn too_large(drained: bool) -> Response {
    let response = error(StatusCode::PAYLOAD_TOO_LARGE, "the body is larger than 1 MiB");
    if !drained {
        return closing(response);
    }
    response
}

async fn hook(State(app): State<Arc<App>>, headers: HeaderMap, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some((automation, trigger)) = app.config.automations.iter().find_map(|a| match &a.trigger {
        Trigger::Webhook(w) if w.path == path => Some((a, w)),
        _ => None,
    }) else {
        app.metrics.rejected("unknown_path");
        return error(StatusCode::NOT_FOUND, format!("no webhook at {path}"));
    };
    if !app.intake_open.load(Ordering::SeqCst) {
        app.metrics.rejected("shutting_down");
        return retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down; send again shortly",
            ),
            "5",
        );
    }
    // The headers first: a request without a well-formed signature or with a stale timestamp
    // is answered before a byte of its body is read.
    let now = jiff::Timestamp::now();
    let mut pending = match webhook::precheck(trigger, &headers, now.as_second()) {
        Ok(p) => p,
        Err(rejection) => {
            app.metrics.rejected(rejection.reason());
            return closing(error(StatusCode::UNAUTHORIZED, rejection.message(trigger)));
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Then the memory to read it into, from the budget every webhook shares: a flood of
    // deliveries waits here (or is told to come back) instead of growing the process. A body
    // declared larger than the limit is refused without keeping any of it: it needs none.
    let wanted = declared.unwrap_or(MAX_BODY).clamp(1, MAX_BODY);
    let permit = if declared.is_some_and(|n| n > MAX_BODY) {
        None
    } else {
        match tokio::time::timeout(
            INTAKE_WAIT,
            app.intake_budget
                .clone()
                .acquire_many_owned(u32::try_from(wanted).unwrap_or(u32::MAX)),
        )
        .await
        {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                app.metrics.rejected("busy");
                return retry_after(
                    closing(error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many webhook bodies are being read at once; send again shortly",
                    )),
                    "2",
                );
            }
        }
    };
    let body = match read_body(declared, request.into_body(), &mut pending).await {
        Ok(b) => b,
        Err(BodyRefused::TooLarge { drained }) => {
            app.metrics.rejected("too_large");
            return too_large(drained);
        }
        Err(BodyRefused::Unreadable) => {
            app.metrics.rejected("unreadable");
            return error(StatusCode::BAD_REQUEST, "the body could not be read");
        }
    };
    let verified = match pending.finish() {
        Ok(v) => v,
        Err(rejection) => {
            app.metrics.rejected(rejection.reason());
            return error(StatusCode::UNAUTHORIZED, rejection.message(trigger));
        }
    };
    let body = body.whole();
    let (idem_key, dedup) = verified.keys();
    let delivery = idem_key
        .clone()
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))));
    let event = webhook::event(trigger, &headers, &body, &delivery, &now.to_string());
    let queue_limit = app.config.settings.queue_limit;
    match queued_runs(&app, &automation.name).await {
        Ok(queued) if queued >= queue_limit => {
            // A delivery stored before is answered as the duplicate it is, full queue or not.
            match app.store.known_delivery(&automation.name, &dedup).await {
                Ok(Some(run_id)) => {
                    app.metrics.delivered(&automation.name, "duplicate");
                    return (StatusCode::OK, axum::Json(json!({"run_id": run_id, "duplicate": true}))).into_response();
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not look a delivery up");
                    app.metrics.rejected("store_unavailable");
                    return store_unavailable("the store is unavailable: the delivery was not stored; send it again");
                }
            }
            app.metrics.rejected("queue_full");
            return retry_after(
                error(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "automation \"{}\" has {queued} queued runs (queue_limit {queue_limit}): nothing was stored; send it again later",
                        automation.name
                    ),
                ),
                "30",
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "could not count the queue for a delivery");
            app.metrics.rejected("store_unavailable");
            return store_unavailable("the store is unavailable: the delivery was not stored; send it again");
        }
    }
    drop(body);
    let run = NewRun {
        automation: automation.name.clone(),
        trigger: "webhook".to_owned(),
        idem_key,
        dedup,
        scheduled_for: None,
        params: automation.params.clone(),
        event: Some(event),
        max_retries: automation.retries,
        retry_of: None,
        script: automation.source.clone(),
        started_by: "webhook".to_owned(),
    };
    // The body's budget is held until the delivery is stored: its event is still in memory.
    let _permit = permit;
    match app.store.enqueue(run).await {
        Ok(queued) if queued.created => {
            one_more_queued(&app, &automation.name);
            app.metrics.delivered(&automation.name, "accepted");
            app.wake.notify_one();
            (StatusCode::ACCEPTED, axum::Json(json!({"run_id": queued.run_id}))).into_response()
        }
        Ok(queued) => {
            app.metrics.delivered(&automation.name, "duplicate");
            (
                StatusCode::OK,
                axum::Json(json!({"run_id": queued.run_id, "duplicate": true})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store a delivery");
            app.metrics.rejected("store_unavailable");
            store_unavailable(
                "the store is unavailable: the delivery may not be stored; send it again (a delivery sent again is not run twice)",
            )
        }
    }
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.intake_open.load(Ordering::SeqCst) {
        (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "stopping"})),
        )
            .into_response()
    }
}

/// Whether this instance can do its work: the store answers (a write would be taken) within
/// `store_timeout`. 503 with the reason otherwise, and while stopping.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if !app.intake_open.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "stopping", "reason": "the server is shutting down"})),
        )
            .into_response();
    }
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response(),
        Err(e) => {
            let reason = if e.0.starts_with(TIMED_OUT) {
                e.0.clone()
            } else {
                format!("the store failed: {}", short_cause(&e))
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "reason": reason})),
            )
                .into_response()
        }
    }
}

/// This instance's metrics, always; the store's gauges only when it answers in time
/// (`runbook_store_up` says which).
/// How long the store's gauges are reused: `/metrics` is open, and each fresh read scans the
/// runs; a flood of scrapes must not take the store from webhook intake.
const STATS_FRESH: std::time::Duration = std::time::Duration::from_millis(500);

async fn metrics(State(app): State<Arc<App>>) -> Response {
    // One read at a time; scrapes meanwhile wait for it and share its answer.
    let mut cached = app.stats.lock().await;
    let stats = match &*cached {
        Some((at, stats)) if at.elapsed() < STATS_FRESH => Some(stats.clone()),
        _ => match app.store.stats().await {
            Ok(stats) => {
                *cached = Some((std::time::Instant::now(), stats.clone()));
                Some(stats)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the store's gauges are left out of /metrics");
                *cached = None;
                None
            }
        },
    };
    drop(cached);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.metrics.render(stats.as_ref()),
    )
        .into_response()
}

/// The host a request names: its Host header, or the authority of its URI.
pub(crate) fn request_host(request: &Request) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
}

/// The Host header values `/api/*` answers: the listen address as bound (and `localhost:PORT`
/// on loopback), and `public_url`'s host. A name that resolves to this machine only through an
/// attacker's DNS (rebinding) is refused. On an unspecified address (`0.0.0.0`), any IP literal
/// with the right port is accepted too: a literal cannot be rebound.
pub(crate) fn host_allowed(app: &App, host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let port = app.bound.port();
    if let Some(public) = &app.config.settings.public_url
        && public.hosts.contains(&host)
    {
        return true;
    }
    let ip = app.bound.ip();
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return addr.port() == port && (addr.ip() == ip || ip.is_unspecified());
    }
    host == format!("localhost:{port}") && (ip.is_loopback() || ip.is_unspecified())
}

/// Whether `origin` (the Origin header) is this server's own: its listen address, or
/// `public_url`'s origin.
pub(crate) fn origin_allowed(app: &App, origin: &str) -> bool {
    let origin = origin.trim().to_ascii_lowercase();
    if app
        .config
        .settings
        .public_url
        .as_ref()
        .is_some_and(|p| p.origin == origin)
    {
        return true;
    }
    // A plain-http origin is the listen address's; the public name is reached over https only
    // when public_url says so (someone on the network could serve its http:// origin).
    let public_https = app
        .config
        .settings
        .public_url
        .as_ref()
        .filter(|p| p.origin.starts_with("https://"));
    origin
        .strip_prefix("http://")
        .is_some_and(|host| host_allowed(app, host) && !public_https.is_some_and(|p| p.hosts.iter().any(|h| h == host)))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Every `/api/*` request passes here: the Host header (DNS rebinding), the Origin (another
/// site's page), the content type of a change (a cross-origin form cannot send JSON), then the
/// bearer token, compared by SHA-256 in constant time. The token found rides along as the
/// request's actor; each endpoint checks its scope.
async fn guard(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let host = request_host(&request);
    let headers = request.headers();
    if !host_allowed(&app, &host) {
        let mut known = vec![app.bound.to_string()];
        if let Some(public) = &app.config.settings.public_url {
            known.push(public.hosts[0].clone());
        }
        let shown: String = host.chars().take(100).collect();
        tracing::warn!(host = %shown, "an API request for a foreign Host was refused");
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this server's API answers requests for {} only, not Host \"{shown}\"; if it is reached under that name, set [serve] public_url",
                known.join(" or ")
            ),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(&app, origin) {
            let shown: String = origin.chars().take(100).collect();
            tracing::warn!(origin = %shown, "a cross-origin API request was refused");
            return error(
                StatusCode::FORBIDDEN,
                format!("cross-origin requests are refused: Origin \"{shown}\" is not this server's"),
            );
        }
    }
    let changes = !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    // The console's forms post to the console's own routes, with a session and its CSRF token;
    // the API takes JSON alone, which a cross-origin form cannot send.
    if changes && !is_json(headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a change through the API must be sent as Content-Type: application/json",
        );
    }
    let tokens = &app.config.settings.tokens;
    if tokens.is_empty() {
        return error(
            StatusCode::UNAUTHORIZED,
            "this server has no API token: add [[serve.tokens]] with a name, token = \"${SOME_VAR}\" and scopes \
             (or api_token = \"${RUNBOOK_API_TOKEN}\") to [serve] in runbook.toml, make the token with \
             `openssl rand -hex 32`, and restart runbook serve",
        );
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return error(StatusCode::UNAUTHORIZED, "send Authorization: Bearer <token>");
    };
    let digest = sha256(given.as_bytes());
    let mut found: Option<&ApiToken> = None;
    for token in tokens {
        // Every token is compared, each in constant time.
        if bool::from(subtle::ConstantTimeEq::ct_eq(&token.sha256[..], &digest[..])) {
            found = Some(token);
        }
    }
    let Some(actor) = found.cloned() else {
        return error(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not one of this server's API tokens",
        );
    };
    request.extensions_mut().insert(actor);
    next.run(request).await
}

/// `None` when `actor` may act in `scope`; else the 403 answer, naming the scope needed.
fn refused(actor: &ApiToken, scope: Scope, what: &str) -> Option<Response> {
    if actor.allows(scope) {
        return None;
    }
    let or_admin = if matches!(scope, Scope::Read | Scope::Run) {
        " (or admin)"
    } else {
        ""
    };
    let message = format!(
        "the token \"{}\" may not {what}: that needs a token with the {} scope{or_admin}",
        actor.name,
        scope.as_str()
    );
    Some(
        (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": message, "scope": scope.as_str()})),
        )
            .into_response(),
    )
}

#[derive(Deserialize)]
struct ListQuery {
    automation: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

/// What a listing shows of a run, with remembered secrets scrubbed.
pub fn summary(r: &RunSummary) -> Value {
    redact_value(json!({
        "id": r.id,
        "automation": r.automation,
        "trigger": r.trigger,
        "status": r.status,
        "attempts": r.attempts,
        "created_at": ms_time(Some(r.created_at)),
        "started_at": ms_time(r.started_at),
        "finished_at": ms_time(r.finished_at),
        "error": r.error,
        "retry_of": r.retry_of,
        "started_by": r.started_by,
        "cancelled_by": r.cancelled_by,
    }))
}

/// A unix-ms time as RFC 3339.
pub fn ms_time(ms: Option<i64>) -> Value {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| Value::String(t.to_string()))
        .unwrap_or(Value::Null)
}

async fn list_runs(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Some(refused) = refused(&actor, Scope::Read, "read run history") {
        return refused;
    }
    let status = match q.status.as_deref().map(str::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let filter = RunFilter {
        automation: q.automation,
        status,
        limit: q.limit.unwrap_or(50).min(1000),
        ..RunFilter::default()
    };
    match app.store.list_summaries(&filter).await {
        Ok(runs) => axum::Json(runs.iter().map(summary).collect::<Vec<_>>()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_run(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refused(&actor, Scope::Read, "read run history") {
        return refused;
    }
    match app.store.get(&id).await {
        Ok(Some(run)) => axum::Json(redacted(run)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(crate) async fn retry_run(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refused(&actor, Scope::Run, "retry runs") {
        return refused;
    }
    let original = match app.store.get(&id).await {
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Ok(Some(run)) => run,
    };
    let Some(automation) = app.config.automation(&original.automation) else {
        return error(
            StatusCode::CONFLICT,
            format!(
                "run {id}'s automation \"{}\" is not in this server's runbook.toml: it cannot be retried here",
                original.automation
            ),
        );
    };
    match app.store.retry(&id, automation.source.clone(), &actor.name).await {
        Ok(queued) => {
            tracing::info!(run_id = %queued.run_id, retry_of = %id, by = %actor.name, "run retried");
            app.wake.notify_one();
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"run_id": queued.run_id, "retry_of": id, "started_by": actor.name})),
            )
                .into_response()
        }
        Err(e) if e.0.contains("can be retried") || e.0.starts_with("no run") => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, run_id = %id, "could not record a retry");
            store_unavailable(&format!(
                "the store did not confirm the retry ({}): it may have been queued; check `runbook runs list --automation {}` before retrying again",
                short_cause(&e),
                original.automation
            ))
        }
    }
}

pub(crate) async fn cancel_run(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refused(&actor, Scope::Run, "cancel runs") {
        return refused;
    }
    match app.store.cancel(&id, &actor.name).await {
        Ok(outcome) => {
            let status = match outcome {
                Cancelled::Now => "cancelled",
                Cancelled::Stopping => "cancelling",
            };
            tracing::info!(run_id = %id, by = %actor.name, status, "run cancelled");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"run_id": id, "status": status, "cancelled_by": actor.name})),
            )
                .into_response()
        }
        Err(e @ CancelError::NoRun(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ CancelError::Finished { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartBody {
    #[serde(default)]
    params: serde_json::Map<String, Value>,
}

/// The longest `Idempotency-Key` a start takes.
const MAX_IDEMPOTENCY_KEY: usize = 200;

pub(crate) async fn start_run(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = refused(&actor, Scope::Run, "start runs") {
        return refused;
    }
    // A start sent again with the same key (a client that did not hear the first answer) is
    // the first start: one run, whoever sends it.
    let idem_key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.trim().is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => {
            Some(format!("api:{}", key.trim()))
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters, e.g. a UUID"),
            );
        }
    };
    let Some(automation) = app.config.automation(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no automation \"{name}\" in this server's runbook.toml"),
        );
    };
    let body: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("{e}; send JSON {{\"params\": {{\"name\": value}}}}"),
                );
            }
        }
    };
    let mut params = automation.params.clone();
    params.extend(body.params);
    let names = runbook_core::SettingNames::new(
        format!("max_changes of automation \"{name}\" in runbook.toml"),
        format!("timeout of automation \"{name}\" in runbook.toml"),
        "params.{name} in the request",
    );
    let problems: Vec<String> = app
        .pool
        .engine
        .check_run(&automation.source, &params, &names)
        .iter()
        .map(ToString::to_string)
        .collect();
    if !problems.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error": format!("automation \"{name}\" cannot start with these params: {}", problems.join("; ")),
                "problems": problems,
            })),
        )
            .into_response();
    }
    let run = NewRun {
        automation: name.clone(),
        trigger: "api".to_owned(),
        idem_key,
        dedup: Vec::new(),
        scheduled_for: None,
        params,
        event: None,
        max_retries: automation.retries,
        retry_of: None,
        script: automation.source.clone(),
        started_by: actor.name.clone(),
    };
    match app.store.enqueue(run).await {
        Ok(queued) if !queued.created => (
            StatusCode::OK,
            axum::Json(json!({"run_id": queued.run_id, "automation": name, "duplicate": true})),
        )
            .into_response(),
        Ok(queued) => {
            tracing::info!(run_id = %queued.run_id, automation = %name, by = %actor.name, "run started through the API");
            app.wake.notify_one();
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"run_id": queued.run_id, "automation": name, "started_by": actor.name})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, automation = %name, "could not record a run started through the API");
            store_unavailable(&format!(
                "the store did not confirm the run ({}): it may have been queued; send it again with the same Idempotency-Key (runbook runs start does), or check `runbook runs list --automation {name}` before starting it again",
                short_cause(&e)
            ))
        }
    }
}

async fn list_automations(State(app): State<Arc<App>>, Extension(actor): Extension<ApiToken>) -> Response {
    if let Some(refused) = refused(&actor, Scope::Read, "list automations") {
        return refused;
    }
    let switches = match app.store.automations().await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let rows: Vec<Value> = app
        .config
        .automations
        .iter()
        .map(|a| {
            let switch = switches.iter().find(|s| s.name == a.name);
            json!({
                "name": a.name,
                "trigger": trigger_text(&a.trigger),
                "paused": switch.is_some_and(|s| s.paused),
                "changed_by": switch.map(|s| s.changed_by.clone()),
                "changed_at": ms_time(switch.map(|s| s.changed_at)),
            })
        })
        .collect();
    axum::Json(rows).into_response()
}

/// An automation's trigger in a few words: `webhook /hooks/siem`, `schedule 0 * * * * *`.
pub fn trigger_text(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Webhook(w) => format!("webhook {}", w.path),
        Trigger::Schedule(cadence) => format!("schedule {cadence}"),
    }
}

async fn pause_automation(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(name): Path<String>,
) -> Response {
    switch_automation(&app, &actor, &name, true).await
}

async fn resume_automation(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(name): Path<String>,
) -> Response {
    switch_automation(&app, &actor, &name, false).await
}

async fn switch_automation(app: &App, actor: &ApiToken, name: &str, paused: bool) -> Response {
    let verb = if paused { "pause" } else { "resume" };
    if let Some(refused) = refused(actor, Scope::Admin, &format!("{verb} automations")) {
        return refused;
    }
    if app.config.automation(name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no automation \"{name}\" in this server's runbook.toml"),
        );
    }
    match app.store.set_paused(name, paused, &actor.name).await {
        Ok(()) => {
            tracing::info!(automation = %name, by = %actor.name, paused, "automation {verb}d");
            if !paused {
                app.wake.notify_one();
            }
            axum::Json(json!({"automation": name, "paused": paused, "changed_by": actor.name})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveBody {
    /// The step's key.
    pub(crate) step: String,
    /// Whether the change took effect.
    pub(crate) sent: bool,
}

pub(crate) async fn resolve_run(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(id): Path<String>,
    body: Result<axum::Json<ResolveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = refused(&actor, Scope::Approve, "resolve changes in doubt") {
        return refused;
    }
    let by = actor.name.clone();
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{}; send JSON {{\"step\": \"3\", \"sent\": true}}", e.body_text()),
            );
        }
    };
    let resolution = if body.sent {
        Resolution::Sent
    } else {
        Resolution::NotSent
    };
    match app.store.resolve(&id, &body.step, resolution, &by).await {
        Ok(()) => {
            tracing::info!(run_id = %id, step = %body.step, resolution = resolution.as_str(), by = %by, "step in doubt resolved; the run is queued again");
            app.wake.notify_one();
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "run_id": id,
                    "step": body.step,
                    "resolution": resolution.as_str(),
                    "resolved_by": by,
                    "status": "queued",
                })),
            )
                .into_response()
        }
        Err(e @ (ResolveError::NoRun(_) | ResolveError::NoStep { .. })) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (ResolveError::NotInDoubt { .. } | ResolveError::NotWaiting { .. })) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    /// Why (recorded with the decision).
    #[serde(default)]
    comment: String,
    /// The effects digest the approver reviewed: a decision on another plan is refused.
    #[serde(default)]
    effects_sha256: Option<String>,
}

/// The longest comment a decision keeps.
const MAX_COMMENT: usize = 2000;

async fn approve_run(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    decide(&app, &actor, &id, Decision::Approve, &body).await
}

async fn reject_run(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<ApiToken>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    decide(&app, &actor, &id, Decision::Reject, &body).await
}

/// A 403 answer.
fn forbidden(message: String) -> Response {
    error(StatusCode::FORBIDDEN, message)
}

/// Records an approver's decision: the `approve` scope (which `admin` does not imply), a name
/// among the automation's approvers, and not the run's own requester.
pub(crate) async fn decide(app: &App, actor: &ApiToken, id: &str, decision: Decision, body: &[u8]) -> Response {
    let verb = decision.as_str();
    if let Some(refused) = refused(actor, Scope::Approve, &format!("{verb} runs")) {
        return refused;
    }
    let body: DecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
        DecisionBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{e}; send JSON {{\"comment\": \"why\"}} (and optionally \"effects_sha256\" of the plan you reviewed)"
                    ),
                );
            }
        }
    };
    if body.comment.len() > MAX_COMMENT {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the comment is {} bytes long; keep it under {MAX_COMMENT}",
                body.comment.len()
            ),
        );
    }
    let run = match app.store.get(id).await {
        Ok(Some(run)) => run,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => {
            return store_unavailable(&format!(
                "the store did not answer ({}): nothing was recorded; send it again",
                short_cause(&e)
            ));
        }
    };
    let Some(rule) = app.config.automation(&run.automation).and_then(|a| a.approval.as_ref()) else {
        return error(
            StatusCode::CONFLICT,
            format!(
                "automation \"{}\" has no approval in this server's runbook.toml: its runs are not approved",
                run.automation
            ),
        );
    };
    if !rule.approvers.contains(&actor.name) {
        return forbidden(format!(
            "the token \"{}\" may not {verb} runs of automation \"{}\": its approvers are {}",
            actor.name,
            run.automation,
            rule.approvers.join(", ")
        ));
    }
    if run.started_by == actor.name {
        return forbidden(format!(
            "\"{}\" started run {id} and may not {verb} it: another approver must decide (four eyes)",
            actor.name
        ));
    }
    let required = rule.required;
    match app
        .store
        .decide(
            id,
            &actor.name,
            decision,
            &body.comment,
            body.effects_sha256.as_deref(),
            required,
        )
        .await
    {
        Ok(decided) => {
            tracing::info!(run_id = %id, by = %actor.name, decision = verb, approvals = decided.approvals, required, effects_sha256 = %decided.effects_sha256, "approval decision recorded");
            if decided.status == RunStatus::Queued {
                app.wake.notify_one();
            }
            (
                StatusCode::OK,
                axum::Json(json!({
                    "run_id": id,
                    "decision": verb,
                    "by": actor.name,
                    "status": decided.status,
                    "approvals": decided.approvals,
                    "required": required,
                    "effects_sha256": decided.effects_sha256,
                })),
            )
                .into_response()
        }
        Err(e @ DecideError::NoRun(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(
            e @ (DecideError::NotWaiting { .. }
            | DecideError::Expired(_)
            | DecideError::AlreadyDecided { .. }
            | DecideError::PlanChanged { .. }),
        ) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => store_unavailable(&format!(
            "the store did not confirm the decision ({}): check `runbook runs show {id}` before sending it again",
            short_cause(&match e {
                DecideError::Store(s) => s,
                other => crate::store::StoreError(other.to_string()),
            })
        )),
    }
}
