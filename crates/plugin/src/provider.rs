//! [`PluginProvider`]: the engine's provider for one plugin process, restarted when it dies.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use runbook_core::{ActionError, ActionErrorKind, ActionSpec, CallContext, Probed, Provider, async_trait};
use serde_json::{Value, json};

use crate::PluginError;
use crate::conn::{Conn, Failure};
use crate::describe::{self, Described, PROTOCOL_VERSION};
use crate::settings::PluginSettings;

/// The first wait before starting a crashed plugin again; doubled per crash in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a plugin may take to finish after `shutdown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a killed process is waited for before another is started.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Every process started, so that the program can shut them down before it exits.
static RUNNING: Mutex<Vec<Weak<Conn>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks every plugin process still running to shut down, and waits for them, all at once (at
/// most a couple of seconds in all). Call it before the program exits.
pub async fn shutdown_all() {
    let running: Vec<Arc<Conn>> = lock(&RUNNING).drain(..).filter_map(|w| w.upgrade()).collect();
    let mut all = tokio::task::JoinSet::new();
    for conn in running {
        all.spawn(async move { conn.shutdown(SHUTDOWN_GRACE).await });
    }
    while all.join_next().await.is_some() {}
}

/// Remembers, before the process starts (`check` and `actions` start it too), the values of its
/// variables whose names say they hold a secret, so that no output of runbook shows one. Every
/// value handed to the plugin is also scrubbed from what the plugin itself prints (see
/// `conn::Scrub`), secret-looking name or not.
fn remember_settings(settings: &PluginSettings) {
    for (name, value) in &settings.env {
        let upper = name.to_ascii_uppercase();
        if [
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "KEY",
            "CREDENTIAL",
            "AUTH",
            "PASS",
        ]
        .iter()
        .any(|w| upper.contains(w))
        {
            runbook_core::remember(value);
        }
    }
}

/// Starts the process and says hello: `initialize` and `describe`.
async fn handshake(settings: &PluginSettings, label: &str) -> Result<(Arc<Conn>, Described), PluginError> {
    remember_settings(settings);
    let conn = Arc::new(Conn::spawn(settings, label)?);
    lock(&RUNNING).retain(|w| w.strong_count() > 0);
    lock(&RUNNING).push(Arc::downgrade(&conn));
    let ask = |method: &'static str, params: Value| {
        let conn = conn.clone();
        async move {
            match conn.request(method, params, settings.timeout, None, false).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(PluginError(format!(
                    "{label}: `{method}` failed: {}",
                    error_text(&error, &conn)
                ))),
                Err(Failure::NotSent(why) | Failure::Gone(why) | Failure::Violation(why)) => {
                    Err(PluginError(format!("{label}: `{method}` got no answer: {why}")))
                }
            }
        }
    };
    let hello = ask(
        "initialize",
        json!({"protocol": PROTOCOL_VERSION, "engine": "runbook", "version": env!("CARGO_PKG_VERSION")}),
    )
    .await?;
    let theirs = hello.get("protocol").and_then(Value::as_u64);
    if theirs != Some(PROTOCOL_VERSION) {
        conn.kill("protocol mismatch");
        let said = theirs.map_or_else(|| "no protocol version".to_owned(), |v| format!("protocol {v}"));
        return Err(PluginError(format!(
            "{label}: it speaks {said}, and this runbook speaks protocol {PROTOCOL_VERSION} (docs/plugins.md); \
             update the plugin or runbook"
        )));
    }
    let described = describe::build(label, ask("describe", json!({})).await?);
    match described {
        Ok(d) => Ok((conn, d)),
        Err(e) => {
            conn.kill("describe refused");
            Err(e)
        }
    }
}

/// Starts a plugin for its `describe` alone, then shuts it down: for commands that send nothing
/// (`check`, `actions`). No `configure`, so no secret is needed.
pub async fn describe_only(settings: &PluginSettings) -> Result<Described, PluginError> {
    let (conn, described) = handshake(settings, &settings.label).await?;
    conn.shutdown(SHUTDOWN_GRACE).await;
    Ok(described)
}

/// Starts a plugin: `initialize`, `describe`, then `configure` with its table (the fields its
/// describe marks secret are redacted from every output from then on).
pub async fn start(settings: PluginSettings) -> Result<Arc<PluginProvider>, PluginError> {
    start_checked(settings, |_| Ok(())).await
}

/// [`start`], with `check` deciding, after `describe` and before `configure` (so before any
/// secret is handed over), whether the plugin may be used (its namespace is free, say).
pub async fn start_checked(
    settings: PluginSettings,
    check: impl FnOnce(&Described) -> Result<(), PluginError>,
) -> Result<Arc<PluginProvider>, PluginError> {
    let (conn, described) = handshake(&settings, &settings.label).await?;
    if let Err(e) = check(&described) {
        conn.shutdown(SHUTDOWN_GRACE).await;
        return Err(e);
    }
    let label = format!("plugin `{}` ({})", described.namespace, settings.command.join(" "));
    let provider = PluginProvider {
        label,
        described,
        settings,
        state: tokio::sync::Mutex::new(State {
            conn: None,
            crashes: 0,
            last_crash: None,
        }),
    };
    provider.remember_secrets();
    provider.configure(&conn).await?;
    provider.state.lock().await.conn = Some(conn);
    Ok(Arc::new(provider))
}

struct State {
    conn: Option<Arc<Conn>>,
    /// Crashes (or failed starts) in a row.
    crashes: u32,
    last_crash: Option<Instant>,
}

/// One plugin as an engine provider.
pub struct PluginProvider {
    label: String,
    described: Described,
    settings: PluginSettings,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for PluginProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProvider")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// The plugin's error message, with secrets and what it was handed scrubbed.
fn error_text(error: &Value, conn: &Conn) -> String {
    let message = error.get("message").and_then(Value::as_str).unwrap_or("(no message)");
    conn.clean(message)
}

impl PluginProvider {
    /// What the plugin described.
    pub fn described(&self) -> &Described {
        &self.described
    }

    /// The process id of the running process, if one runs.
    pub async fn pid(&self) -> Option<u32> {
        self.state.lock().await.conn.as_ref().and_then(|c| c.pid())
    }

    /// Remembers the configuration fields the describe marks secret (`token`, or a dotted path
    /// into a table, `auth.token`), beside every value [`remember_settings`] took already.
    fn remember_secrets(&self) {
        for field in &self.described.secret_fields {
            let mut parts = field.split('.');
            let mut value = parts.next().and_then(|first| self.settings.config.get(first));
            for part in parts {
                value = value.and_then(|v| v.get(part));
            }
            if let Some(value) = value {
                remember_all(value);
            }
        }
        remember_settings(&self.settings);
    }

    async fn configure(&self, conn: &Conn) -> Result<(), PluginError> {
        let params = json!({
            "config": Value::Object(self.settings.config.clone()),
            "secret_fields": self.described.secret_fields,
        });
        match conn
            .request("configure", params, self.settings.timeout, None, false)
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                conn.kill("configure refused");
                Err(PluginError(format!(
                    "{}: its configuration was refused: {}",
                    self.label,
                    error_text(&error, conn)
                )))
            }
            Err(Failure::NotSent(why) | Failure::Gone(why) | Failure::Violation(why)) => {
                Err(PluginError(format!("{}: `configure` got no answer: {why}", self.label)))
            }
        }
    }

    /// The running process, started again (after a wait that grows with crashes in a row) when
    /// the last one died. A failure here means nothing was sent. The wait ends when `cancel`
    /// fires; a new process starts only once the old one has exited, so nothing the old one
    /// still held (a call given up on) runs beside the new one's calls (a probe of that call).
    async fn connection(&self, cancel: &runbook_core::CancellationToken) -> Result<Arc<Conn>, ActionError> {
        let mut state = tokio::select! {
            state = self.state.lock() => state,
            () = cancel.cancelled() => return Err(self.cancelled_before_sending()),
        };
        if let Some(conn) = &state.conn {
            if !conn.is_dead() {
                return Ok(conn.clone());
            }
            let old = state.conn.take();
            state.crashes += 1;
            state.last_crash = Some(Instant::now());
            if let Some(old) = old {
                old.kill("it is replaced");
                old.exited(EXIT_WAIT).await;
            }
        }
        if state.crashes > 0 {
            let shift = (state.crashes - 1).min(16);
            let wait = FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
            let since = state.last_crash.map_or(wait, |t| t.elapsed());
            if since < wait {
                tokio::select! {
                    () = tokio::time::sleep(wait - since) => {}
                    () = cancel.cancelled() => return Err(self.cancelled_before_sending()),
                }
            }
        }
        tracing::info!(plugin = %self.label, "starting the plugin again");
        let started = async {
            let (conn, described) = handshake(&self.settings, &self.label).await?;
            if described.raw != self.described.raw {
                conn.kill("describe changed");
                return Err(PluginError(format!(
                    "{}: after a restart it describes other actions than when runbook started; restart runbook to \
                     use the new ones",
                    self.label
                )));
            }
            self.configure(&conn).await?;
            Ok::<_, PluginError>(conn)
        }
        .await;
        match started {
            Ok(conn) => {
                state.conn = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                state.crashes += 1;
                state.last_crash = Some(Instant::now());
                Err(ActionError::new(
                    ActionErrorKind::Refused,
                    format!("{e}; the call was not sent"),
                ))
            }
        }
    }

    fn cancelled_before_sending(&self) -> ActionError {
        ActionError::new(
            ActionErrorKind::Refused,
            format!("{}: the run was cancelled before the call was sent", self.label),
        )
    }

    async fn send(&self, ctx: &CallContext, method: &str, params: Value, mutating: bool) -> Result<Value, ActionError> {
        let conn = self.connection(ctx.cancel_token()).await?;
        ctx.note_attempt();
        let answer = conn
            .request(
                method,
                params,
                self.settings.timeout,
                Some(ctx.cancel_token()),
                mutating,
            )
            .await;
        match answer {
            Ok(Ok(value)) => {
                self.state.lock().await.crashes = 0;
                Ok(value)
            }
            Ok(Err(error)) => Err(action_error(&error, &conn)),
            Err(Failure::NotSent(why)) => Err(ActionError::new(
                ActionErrorKind::Refused,
                format!(
                    "{}: the call was not sent: {why}; the plugin starts again on the next call",
                    self.label
                ),
            )),
            Err(Failure::Gone(why)) if ctx.cancel_token().is_cancelled() => {
                let _ = why;
                Err(ActionError::cancelled())
            }
            Err(Failure::Gone(why)) => Err(ActionError::transport(format!(
                "{} gave no answer: {why}; if the call was a change, it is in doubt (it may have taken effect)",
                self.label
            ))),
            Err(Failure::Violation(why)) => Err(ActionError::invalid_response(format!(
                "{} gave no usable answer: {why}; runbook stopped the plugin, which starts again on the next call; \
                 if the call was a change, it is in doubt (it may have taken effect)",
                self.label
            ))),
        }
    }

    fn params(ctx: &CallContext, spec: &ActionSpec, args: Value) -> Value {
        json!({
            "action": spec.name,
            "args": args,
            "run_id": ctx.run_id(),
            "step_key": ctx.step(),
            "attempt": ctx.attempts() + 1,
        })
    }
}

fn remember_all(value: &Value) {
    match value {
        Value::String(s) => runbook_core::remember(s),
        Value::Array(items) => items.iter().for_each(remember_all),
        Value::Object(map) => map.values().for_each(remember_all),
        _ => {}
    }
}

/// The plugin's JSON-RPC error as an action error scripts can catch.
fn action_error(error: &Value, conn: &Conn) -> ActionError {
    let message = error_text(error, conn);
    let code = error.get("code").cloned();
    let data = error
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let status = data
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok());
    let kind = match data.get("kind").and_then(Value::as_str) {
        Some("transport") => ActionErrorKind::Transport,
        Some("invalid_response") => ActionErrorKind::InvalidResponse,
        Some("not_configured") => ActionErrorKind::NotConfigured,
        Some("invalid_args") => ActionErrorKind::InvalidArgs,
        _ if code.as_ref().and_then(Value::as_i64) == Some(-32602) => ActionErrorKind::InvalidArgs,
        _ => ActionErrorKind::Api,
    };
    let mut e = ActionError::new(kind, message);
    if let Some(status) = status {
        e = e.with_status(status);
    }
    if let Some(code) = data.get("code").cloned().or(code) {
        e = e.with_code(code);
    }
    if let Some(retryable) = data.get("retryable").and_then(Value::as_bool) {
        e = e.with_field("retryable", retryable);
    }
    e
}

#[async_trait]
impl Provider for PluginProvider {
    fn namespace(&self) -> &str {
        self.described.namespace
    }

    fn actions(&self) -> &[ActionSpec] {
        self.described.actions
    }

    fn planned_result(&self, action: &ActionSpec, _args: &Value) -> Value {
        self.described.planned_result(action.name)
    }

    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        if action.effect.is_mutating() && (ctx.is_plan() || ctx.is_stopping()) {
            // The engine never hands a planned change to a provider; should it, it is not sent.
            return Err(ActionError::new(
                ActionErrorKind::Refused,
                format!(
                    "{}.{} was not sent: the run sends no change now",
                    self.namespace(),
                    action.name
                ),
            ));
        }
        if action.effect.is_mutating() && action.count_targets(&args) == 0 {
            // The guard counted no target for it: a change it did not count is not sent.
            return Err(ActionError::invalid_args(format!(
                "{}.{} was not sent: it names no target (the guard counts the targets of every change); \
                 pass at least one",
                self.namespace(),
                action.name
            )));
        }
        let params = Self::params(ctx, action, args);
        self.send(ctx, "call", params, action.effect.is_mutating()).await
    }

    async fn probe(&self, ctx: &CallContext, action: &ActionSpec, args: &Value) -> Result<Probed, ActionError> {
        let params = Self::params(ctx, action, args.clone());
        let answer = self.send(ctx, "probe", params, false).await?;
        match answer.get("found").and_then(Value::as_bool) {
            Some(true) => Ok(Probed::Found(answer.get("result").cloned().unwrap_or(Value::Null))),
            Some(false) => Ok(Probed::NotFound),
            None => Err(ActionError::invalid_response(format!(
                "{}: its probe of {} answered without `found: true|false`",
                self.label, action.name
            ))),
        }
    }
}
