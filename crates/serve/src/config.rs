//! `[serve]` and `[[automation]]` in `runbook.toml`, checked at start: every mistake is reported
//! with the file, the line and what to fix, before anything listens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runbook_core::Secret;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use crate::schedule::Cadence;

/// A configuration problem, with where it is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// How `runbook serve` runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeSettings {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// Where runs are kept: `sqlite://PATH` (relative to the configuration file) or `postgres://...`.
    pub store: String,
    /// Runs executed at once by this instance.
    pub workers: usize,
    /// The API's tokens (`[[serve.tokens]]`, and `api_token` as one named `admin`); without
    /// any, `/api/*` answers 401 to every request.
    pub tokens: Vec<ApiToken>,
    /// Where people and tools reach this server (`https://runbook.example.com`), when not at
    /// `listen`: its host is accepted in the Host header, its origin in Origin.
    pub public_url: Option<PublicUrl>,
    /// How long finished runs are kept.
    pub keep: Duration,
    /// How long the journals of finished runs keep their steps' arguments and results (they
    /// hold personal data); after that only the list of steps remains.
    pub journal_retention: Duration,
    /// How long a claimed run stays claimed without a heartbeat.
    pub lease: Duration,
    /// On shutdown, how long running runs may take to finish.
    pub grace: Duration,
    /// How often an idle worker looks for queued runs (new local events wake it at once).
    pub poll_interval: Duration,
    /// Connections served at once; beyond it, new connections wait in the listen backlog
    /// until one closes.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (from its first byte; an idle
    /// kept-alive connection is closed after this too).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's whole body, from its headers.
    pub body_timeout: Duration,
    /// Queued runs one automation may have; a webhook delivery beyond it is answered 429.
    pub queue_limit: u64,
    /// On shutdown, after `grace`: how long open connections get to finish before the
    /// process exits regardless.
    pub drain: Duration,
    /// How long a store call on the request path may take before the request is answered 503.
    pub store_timeout: Duration,
    /// How long webhook deliveries' dedup keys (ids, signatures) are kept: longer than run
    /// history (`keep`), so that a delivery replayed after its run was pruned is still known.
    pub dedup_keep: Duration,
    /// Bytes of webhook bodies being read at once, across every webhook: what bounds the memory
    /// a flood of deliveries can take before their signatures are checked.
    pub intake_memory: usize,
    /// A console session unused this long is signed out.
    pub console_idle_timeout: Duration,
    /// A console session this old is signed out however busy it is.
    pub console_session_max: Duration,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read run history and the automations.
    Read,
    /// Start, retry and cancel runs.
    Run,
    /// Resolve changes in doubt; approve or reject plans of automations that name the token among
    /// their approvers.
    Approve,
    /// Pause and resume automations; implies `read` and `run` (not `approve`).
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Run, Scope::Approve, Scope::Admin];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Approve => "approve",
            Scope::Admin => "admin",
        }
    }
}

/// Minimum length of an API token, in bytes.
pub const MIN_TOKEN_LEN: usize = 32;

/// One API token: its name (the actor recorded on every change it makes), the SHA-256 of its
/// value, and its scopes.
#[derive(Clone)]
#[non_exhaustive]
pub struct ApiToken {
    /// The name: letters, digits, `-`, `_`.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// What it may do, as configured.
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// A token named `name` with `scopes`, given its value.
    pub fn new(name: impl Into<String>, token: &str, scopes: Vec<Scope>) -> ApiToken {
        ApiToken {
            name: name.into(),
            sha256: sha256(token.as_bytes()),
            scopes,
        }
    }

    /// Whether it may act in `scope` (`admin` implies `read` and `run`).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
            || (matches!(scope, Scope::Read | Scope::Run) && self.scopes.contains(&Scope::Admin))
    }
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// `public_url`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublicUrl {
    /// As written.
    pub url: String,
    /// `https://host[:port]`, as browsers send it in Origin.
    pub origin: String,
    /// The Host header values it stands for (`host` and `host:port`).
    pub hosts: Vec<String>,
}

impl PublicUrl {
    /// Parses `http(s)://host[:port][/path]`.
    pub fn parse(text: &str) -> Result<PublicUrl, String> {
        let bad = || {
            format!("[serve] public_url = \"{text}\" is not an http(s) URL; write e.g. \"https://runbook.example.com\"")
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(bad()),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("").to_ascii_lowercase();
        if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (host, port_text) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (inner, after) = v6.split_once(']').ok_or_else(bad)?;
                (format!("[{inner}]"), after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.clone(), None),
            },
        };
        let port = match port_text {
            None => default_port,
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        };
        if host.is_empty() || host == "[]" {
            return Err(bad());
        }
        let origin = if port == default_port {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        let mut hosts = vec![format!("{host}:{port}")];
        if port == default_port {
            hosts.push(host);
        }
        Ok(PublicUrl {
            url: text.to_owned(),
            origin,
            hosts,
        })
    }
}

/// What starts an automation's runs.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// A signed HTTP delivery to `path`.
    Webhook(WebhookTrigger),
    /// A cron schedule or a fixed interval.
    Schedule(Cadence),
}

/// How a webhook's deliveries are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `"{timestamp}.{body}"` signed with HMAC-SHA256, sent as `sha256=<hex>` (or `<hex>`) in
    /// `X-Signature-256`, the time in `X-Timestamp`; the timestamp may be waived
    /// (`require_timestamp = false`), which gives up replay protection.
    HmacSha256,
    /// GitHub's: `X-Hub-Signature-256: sha256=<hex>` of the body, `X-GitHub-Delivery` its id.
    Github,
    /// The Standard Webhooks specification: `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,<base64>` of `"{id}.{timestamp}.{body}"`.
    StandardWebhooks,
}

impl Scheme {
    /// The name used in `runbook.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::Github => "github",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }
}

/// A webhook's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookTrigger {
    /// `/hooks/...`.
    pub path: String,
    /// The shared secret (for `standard-webhooks`, a `whsec_` secret is the base64 of the key).
    pub secret: Secret<String>,
    /// How deliveries are signed.
    pub scheme: Scheme,
    /// The header carrying the signature (lower case).
    pub signature_header: String,
    /// The header carrying the delivery id (lower case).
    pub id_header: Option<String>,
    /// The header carrying the sending time in unix seconds (lower case); the signature covers
    /// it and deliveries outside the replay window are refused. `None` only for `github` (which
    /// sends no time) and for `hmac-sha256` with `require_timestamp = false`.
    pub timestamp_header: Option<String>,
    /// How old (or how far in the future) a timestamped delivery may be.
    pub replay_window: Duration,
    /// Headers kept in the event besides the scheme's own (lower case).
    pub keep_headers: Vec<String>,
}

/// One automation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Automation {
    /// Unique name.
    pub name: String,
    /// The script's path.
    pub script: PathBuf,
    /// The script's text, read at start.
    pub source: String,
    /// Parameters every run gets.
    pub params: Map<String, Value>,
    /// The blast-radius guard per run.
    pub max_changes: u64,
    /// The most targets this automation's runs together may change in 24 hours.
    pub max_changes_per_day: Option<u64>,
    /// Runs of this automation at once (across instances sharing a store).
    pub concurrency: usize,
    /// Retries of a failed run.
    pub retries: u32,
    /// The first retry's delay; it doubles with each retry (with jitter).
    pub retry_delay: Duration,
    /// Wall-clock limit per run.
    pub timeout: Duration,
    /// What starts runs.
    pub trigger: Trigger,
    /// For schedule triggers: what a tick does while a run of the automation is queued or
    /// running.
    pub overlap: Overlap,
    /// Who must approve its runs' plans before anything is sent (`approval = {...}`).
    pub approval: Option<ApprovalRule>,
    /// A URL told (a plain POST of a JSON summary) when a run waits for approval, needs a
    /// person, or its plan went stale.
    pub notify: Option<String>,
    /// The line of `[[automation]]`, for messages.
    pub line: usize,
}

/// `approval = { approvers = ["alice", "bob"], required = 1, expires = "24h" }`: each run plans
/// first and waits as `awaiting_approval` until `required` of the `approvers` approve it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovalRule {
    /// Names of API tokens (`[[serve.tokens]]`) with the `approve` scope.
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub required: u32,
    /// How long a plan waits for them before the run ends `expired`.
    pub expires: Duration,
}

/// What a schedule's tick does while a run of its automation is queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overlap {
    /// The tick is skipped and counted (`runbook_ticks_skipped_total{reason="overlap"}`).
    #[default]
    Skip,
    /// The tick is queued anyway, to run after the others.
    Queue,
    /// The queued and running runs are cancelled (a running one stops within a heartbeat,
    /// letting its calls in flight finish), then the tick is queued.
    Cancel,
}

impl Overlap {
    /// The configuration's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Cancel => "cancel",
        }
    }
}

/// Everything `runbook serve` needs from the configuration file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The file it came from.
    pub file: PathBuf,
    /// `[serve]`.
    pub settings: ServeSettings,
    /// `[[automation]]`, in file order.
    pub automations: Vec<Automation>,
    /// `[policy]` (read by the binary, which sets it): targets no run may touch, and the most
    /// targets all automations together may change in 24 hours.
    pub policy: Policy,
}

/// `[policy]` as serve applies it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Policy {
    /// `protect`.
    pub protect: std::sync::Arc<runbook_core::Policy>,
    /// `max_changes_per_day`, across automations.
    pub max_changes_per_day: Option<u64>,
}

impl Policy {
    /// A policy of these rules and this budget.
    pub fn new(protect: std::sync::Arc<runbook_core::Policy>, max_changes_per_day: Option<u64>) -> Policy {
        Policy {
            protect,
            max_changes_per_day,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaw {
    #[serde(default)]
    #[allow(dead_code)] // read by the binary
    providers: Option<toml::Table>,
    #[serde(default)]
    serve: Option<Spanned<ServeRaw>>,
    #[serde(default)]
    automation: Vec<Spanned<AutomationRaw>>,
    #[serde(default)]
    #[allow(dead_code)] // read by the binary
    policy: Option<toml::Table>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServeRaw {
    listen: Option<String>,
    store: Option<String>,
    workers: Option<usize>,
    api_token: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    tokens: Vec<TokenRaw>,
    keep: Option<String>,
    journal_retention: Option<String>,
    lease: Option<String>,
    grace: Option<String>,
    poll_interval: Option<String>,
    max_connections: Option<usize>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    queue_limit: Option<u64>,
    drain: Option<String>,
    store_timeout: Option<String>,
    dedup_keep: Option<String>,
    intake_memory: Option<String>,
    console_idle_timeout: Option<String>,
    console_session_max: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRaw {
    name: String,
    token: Option<String>,
    token_sha256: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AutomationRaw {
    name: Spanned<String>,
    script: Spanned<String>,
    #[serde(default)]
    params: toml::Table,
    max_changes: Option<u64>,
    max_changes_per_day: Option<u64>,
    concurrency: Option<usize>,
    retries: Option<u32>,
    retry_delay: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    overlap: Option<Spanned<String>>,
    approval: Option<Spanned<ApprovalRaw>>,
    notify: Option<Spanned<String>>,
    trigger: Spanned<TriggerRaw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalRaw {
    approvers: Vec<String>,
    required: Option<u32>,
    expires: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerRaw {
    schedule: Option<String>,
    tz: Option<String>,
    catch_up: Option<String>,
    every: Option<String>,
    webhook: Option<String>,
    secret: Option<String>,
    signature_header: Option<String>,
    id_header: Option<String>,
    timestamp_header: Option<String>,
    replay_window: Option<String>,
    scheme: Option<String>,
    require_timestamp: Option<bool>,
    keep_headers: Option<Vec<String>>,
}

/// The default budget of webhook bodies being read at once.
pub const DEFAULT_INTAKE_MEMORY: usize = 64 * 1024 * 1024;
const MAX_INTAKE_MEMORY: usize = 4 * 1024 * 1024 * 1024 - 1;

/// A webhook secret's least length in bytes (the Standard Webhooks minimum).
pub const MIN_SECRET_BYTES: usize = 24;

pub use runbook_core::parse_size;

/// Headers a webhook's event never keeps, whatever `keep_headers` says: credentials and
/// signatures (lower case). Names that say they hold a secret ([`crate::redact::is_secret_field`])
/// are refused as well.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-gitlab-token",
    "x-hub-signature",
    "x-hub-signature-256",
    "webhook-signature",
    "x-signature",
    "x-signature-256",
];

/// Whether a header (lower case) may hold a credential.
pub fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name)
        || crate::redact::is_secret_field(name)
        // `X-Auth-Key`, `X-Auth-User` and the like: for a header, an `auth` part is enough.
        || name.split(['-', '_']).any(|part| part == "auth")
}

/// Lines of a text, to turn byte offsets into line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn of(&self, offset: usize) -> usize {
        self.0[..offset.min(self.0.len())].matches('\n').count() + 1
    }
}

impl ServeConfig {
    /// Parses `text` (already `${VAR}`-expanded) from `file`. `check` is called with each
    /// automation's script text and its `params` table and returns their problems (e.g. the
    /// engine's `check_run`: the script's checks, and the params against its declarations),
    /// which stop the start like any other mistake.
    pub fn parse(
        file: &Path,
        text: &str,
        check: impl Fn(&str, &Map<String, Value>) -> Vec<String>,
    ) -> Result<ServeConfig, ConfigError> {
        let shown = file.display().to_string();
        let lines = Lines(text);
        let err = |line: usize, message: String| ConfigError {
            file: shown.clone(),
            line,
            message,
        };
        let raw: FileRaw = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| lines.of(s.start)).unwrap_or(1);
            err(line, e.message().to_owned())
        })?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();

        let (serve, serve_line) = match raw.serve {
            Some(s) => {
                let line = lines.of(s.span().start);
                (s.into_inner(), line)
            }
            None => (ServeRaw::default(), 1),
        };
        let duration = |value: &Option<String>, key: &str, default: Duration| -> Result<Duration, ConfigError> {
            match value {
                None => Ok(default),
                Some(v) => runbook_core::parse_duration(v).map_err(|e| err(serve_line, format!("[serve] {key}: {e}"))),
            }
        };
        let listen_text = serve.listen.clone().unwrap_or_else(|| "127.0.0.1:8787".to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            err(
                serve_line,
                format!("[serve] listen = \"{listen_text}\" is not an address; write e.g. \"127.0.0.1:8787\""),
            )
        })?;
        let tokens = parse_tokens(serve.api_token.as_deref(), &serve.tokens).map_err(|m| err(serve_line, m))?;
        let public_url = serve
            .public_url
            .as_deref()
            .map(PublicUrl::parse)
            .transpose()
            .map_err(|m| err(serve_line, m))?;
        let workers = serve.workers.unwrap_or(4);
        if workers == 0 {
            return Err(err(serve_line, "[serve] workers must be at least 1".to_owned()));
        }
        let settings = ServeSettings {
            listen,
            store: serve.store.clone().unwrap_or_else(|| "sqlite://runbook.db".to_owned()),
            workers,
            tokens,
            public_url,
            keep: duration(&serve.keep, "keep", Duration::from_secs(30 * 24 * 3600))?,
            journal_retention: duration(
                &serve.journal_retention,
                "journal_retention",
                Duration::from_secs(30 * 24 * 3600),
            )?,
            lease: duration(&serve.lease, "lease", Duration::from_secs(30))?,
            grace: duration(&serve.grace, "grace", Duration::from_secs(30))?,
            poll_interval: duration(&serve.poll_interval, "poll_interval", Duration::from_millis(500))?,
            max_connections: serve.max_connections.unwrap_or(512),
            header_timeout: duration(&serve.header_timeout, "header_timeout", Duration::from_secs(10))?,
            body_timeout: duration(&serve.body_timeout, "body_timeout", Duration::from_secs(30))?,
            queue_limit: serve.queue_limit.unwrap_or(1000),
            drain: duration(&serve.drain, "drain", Duration::from_secs(5))?,
            store_timeout: duration(&serve.store_timeout, "store_timeout", Duration::from_secs(5))?,
            dedup_keep: duration(&serve.dedup_keep, "dedup_keep", Duration::from_secs(400 * 24 * 3600))?,
            intake_memory: match &serve.intake_memory {
                None => DEFAULT_INTAKE_MEMORY,
                Some(v) => parse_size(v).map_err(|e| err(serve_line, format!("[serve] intake_memory: {e}")))?,
            },
            console_idle_timeout: duration(
                &serve.console_idle_timeout,
                "console_idle_timeout",
                Duration::from_secs(30 * 60),
            )?,
            console_session_max: duration(
                &serve.console_session_max,
                "console_session_max",
                Duration::from_secs(12 * 3600),
            )?,
        };
        if settings.console_idle_timeout < Duration::from_secs(1)
            || settings.console_session_max < settings.console_idle_timeout
        {
            return Err(err(
                serve_line,
                "[serve] console_idle_timeout must be at least 1s, and console_session_max at least console_idle_timeout"
                    .to_owned(),
            ));
        }
        if settings.lease < Duration::from_secs(1) {
            return Err(err(serve_line, "[serve] lease must be at least 1s".to_owned()));
        }
        if settings.max_connections == 0 || settings.queue_limit == 0 {
            return Err(err(
                serve_line,
                "[serve] max_connections and queue_limit must be at least 1".to_owned(),
            ));
        }
        for (key, value) in [
            ("header_timeout", settings.header_timeout),
            ("body_timeout", settings.body_timeout),
            ("store_timeout", settings.store_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return Err(err(serve_line, format!("[serve] {key} must be at least 100ms")));
            }
        }
        if settings.dedup_keep < settings.keep {
            return Err(err(
                serve_line,
                format!(
                    "[serve] dedup_keep ({}) is shorter than keep ({}): a delivery replayed after its run was pruned would start a new run; make dedup_keep at least keep",
                    humantime::format_duration(settings.dedup_keep),
                    humantime::format_duration(settings.keep)
                ),
            ));
        }
        if settings.intake_memory < crate::server::MAX_BODY || settings.intake_memory > MAX_INTAKE_MEMORY {
            return Err(err(
                serve_line,
                "[serve] intake_memory must be between 1MiB (one whole body) and 4GiB; write e.g. \"64MiB\"".to_owned(),
            ));
        }

        let mut automations: Vec<Automation> = Vec::new();
        for spanned in raw.automation {
            let line = lines.of(spanned.span().start);
            let a = spanned.into_inner();
            let name_line = lines.of(a.name.span().start);
            let name = a.name.into_inner();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(err(
                    name_line,
                    format!("automation name \"{name}\" must be letters, digits, - or _"),
                ));
            }
            if let Some(other) = automations.iter().find(|o| o.name == name) {
                return Err(err(
                    name_line,
                    format!("automation name \"{name}\" is already used on line {}", other.line),
                ));
            }
            let script_line = lines.of(a.script.span().start);
            let script = dir.join(a.script.get_ref());
            let source = std::fs::read_to_string(&script).map_err(|e| {
                err(
                    script_line,
                    format!(
                        "automation \"{name}\": cannot read the script {}: {e}",
                        script.display()
                    ),
                )
            })?;
            let params = match serde_json::to_value(&a.params) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            let problems = check(&source, &params);
            if !problems.is_empty() {
                return Err(err(
                    script_line,
                    format!(
                        "automation \"{name}\": the script {} has problems: {}",
                        script.display(),
                        problems.join("; ")
                    ),
                ));
            }
            let spanned_duration =
                |v: &Option<Spanned<String>>, key: &str, default: Duration| -> Result<Duration, ConfigError> {
                    match v {
                        None => Ok(default),
                        Some(s) => runbook_core::parse_duration(s.get_ref())
                            .map_err(|e| err(lines.of(s.span().start), format!("automation \"{name}\": {key}: {e}"))),
                    }
                };
            let timeout = spanned_duration(&a.timeout, "timeout", Duration::from_secs(600))?;
            let retry_delay = spanned_duration(&a.retry_delay, "retry_delay", Duration::from_secs(30))?;
            let concurrency = a.concurrency.unwrap_or(1);
            if concurrency == 0 {
                return Err(err(
                    line,
                    format!("automation \"{name}\": concurrency must be at least 1"),
                ));
            }
            let trigger_line = lines.of(a.trigger.span().start);
            let trigger = parse_trigger(&name, a.trigger.into_inner()).map_err(|m| err(trigger_line, m))?;
            let overlap = match &a.overlap {
                None => Overlap::Skip,
                Some(o) => {
                    let at = lines.of(o.span().start);
                    if !matches!(trigger, Trigger::Schedule(_)) {
                        return Err(err(
                            at,
                            format!("automation \"{name}\": overlap applies to schedule triggers"),
                        ));
                    }
                    match o.get_ref().as_str() {
                        "skip" => Overlap::Skip,
                        "queue" => Overlap::Queue,
                        "cancel" => Overlap::Cancel,
                        other => {
                            return Err(err(
                                at,
                                format!(
                                    "automation \"{name}\": overlap = \"{other}\"; write \"skip\", \"queue\" or \"cancel\""
                                ),
                            ));
                        }
                    }
                }
            };
            if let Trigger::Webhook(w) = &trigger
                && let Some(other) = automations
                    .iter()
                    .find(|o| matches!(&o.trigger, Trigger::Webhook(x) if x.path == w.path))
            {
                return Err(err(
                    trigger_line,
                    format!(
                        "webhook path {} is already used by automation \"{}\"",
                        w.path, other.name
                    ),
                ));
            }
            let approval = match a.approval {
                None => None,
                Some(raw) => {
                    let at = lines.of(raw.span().start);
                    Some(parse_approval(&name, raw.into_inner(), &settings.tokens).map_err(|m| err(at, m))?)
                }
            };
            let notify = match a.notify {
                None => None,
                Some(url) => {
                    let at = lines.of(url.span().start);
                    Some(parse_notify(&name, url.into_inner()).map_err(|m| err(at, m))?)
                }
            };
            automations.push(Automation {
                name,
                approval,
                notify,
                script,
                source,
                params,
                max_changes: a.max_changes.unwrap_or(runbook_core::DEFAULT_MAX_CHANGES),
                max_changes_per_day: a.max_changes_per_day,
                concurrency,
                retries: a.retries.unwrap_or(3),
                retry_delay,
                timeout,
                trigger,
                overlap,
                line,
            });
        }
        Ok(ServeConfig {
            file: file.to_path_buf(),
            settings,
            automations,
            policy: Policy::default(),
        })
    }

    /// One automation by name.
    pub fn automation(&self, name: &str) -> Option<&Automation> {
        self.automations.iter().find(|a| a.name == name)
    }

    /// The store location with a relative SQLite path resolved against the configuration file.
    pub fn store_url(&self) -> String {
        resolve_store(&self.settings.store, self.file.parent())
    }

    /// Each automation's concurrency limit.
    pub fn concurrency(&self) -> BTreeMap<String, usize> {
        self.automations
            .iter()
            .map(|a| (a.name.clone(), a.concurrency))
            .collect()
    }
}

/// The default time a plan waits for its approvers.
pub const DEFAULT_APPROVAL_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Checks `approval = {...}` against the tokens the server knows.
fn parse_approval(automation: &str, raw: ApprovalRaw, tokens: &[ApiToken]) -> Result<ApprovalRule, String> {
    let at = format!("automation \"{automation}\": approval");
    if raw.approvers.is_empty() {
        return Err(format!(
            "{at}: approvers is empty; name the [[serve.tokens]] whose holders may approve, e.g. approvers = [\"alice\", \"bob\"]"
        ));
    }
    let mut approvers: Vec<String> = Vec::new();
    for name in &raw.approvers {
        if approvers.contains(name) {
            return Err(format!("{at}: \"{name}\" is listed twice in approvers"));
        }
        let Some(token) = tokens.iter().find(|t| &t.name == name) else {
            let known: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
            return Err(format!(
                "{at}: approver \"{name}\" is not the name of a [[serve.tokens]] entry (known: {}); approvers are token names",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        if !token.scopes.contains(&Scope::Approve) {
            return Err(format!(
                "{at}: the token \"{name}\" lacks the approve scope, so it could never approve; add \"approve\" to its scopes"
            ));
        }
        approvers.push(name.clone());
    }
    let required = raw.required.unwrap_or(1);
    if required == 0 || usize::try_from(required).unwrap_or(usize::MAX) > approvers.len() {
        return Err(format!(
            "{at}: required = {required}, and there are {} approver(s): write a number from 1 to {}",
            approvers.len(),
            approvers.len()
        ));
    }
    let expires = match &raw.expires {
        None => DEFAULT_APPROVAL_EXPIRY,
        Some(text) => runbook_core::parse_duration(text).map_err(|e| format!("{at}: expires: {e}"))?,
    };
    if expires < Duration::from_secs(1) {
        return Err(format!("{at}: expires must be at least 1s"));
    }
    Ok(ApprovalRule {
        approvers,
        required,
        expires,
    })
}

/// Checks `notify = "https://..."`.
fn parse_notify(automation: &str, url: String) -> Result<String, String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or("");
    if rest.is_empty() || rest.starts_with('/') || url.contains(char::is_whitespace) {
        return Err(format!(
            "automation \"{automation}\": notify = \"{url}\" is not an http(s) URL; write e.g. \"https://chat.example.com/hooks/runbook\""
        ));
    }
    Ok(url)
}

/// How to make a token, for messages.
const MAKE_TOKEN: &str =
    "make one with `openssl rand -hex 32` (its SHA-256 for token_sha256: `printf %s \"$TOKEN\" | sha256sum`)";

/// `[[serve.tokens]]` and the `api_token` shorthand.
fn parse_tokens(api_token: Option<&str>, raw: &[TokenRaw]) -> Result<Vec<ApiToken>, String> {
    let mut tokens: Vec<ApiToken> = Vec::new();
    let short = |what: &str, len: usize| {
        format!("{what} is {len} bytes long; an API token needs at least {MIN_TOKEN_LEN}: {MAKE_TOKEN}")
    };
    for t in raw {
        let name = &t.name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!(
                "[[serve.tokens]] name = \"{name}\" must be letters, digits, - or _"
            ));
        }
        if tokens.iter().any(|o| &o.name == name) {
            return Err(format!(
                "[[serve.tokens]] name \"{name}\" is used twice: names are the actors runs record"
            ));
        }
        let sha256 = match (&t.token, &t.token_sha256) {
            (Some(token), None) => {
                if token.len() < MIN_TOKEN_LEN {
                    return Err(short(&format!("the token of \"{name}\""), token.len()));
                }
                // Remembered so that logs and answers never show it.
                let _ = Secret::new(token.clone());
                self::sha256(token.as_bytes())
            }
            (None, Some(hex_text)) => {
                let bytes = hex::decode(hex_text.trim()).ok().filter(|b| b.len() == 32).ok_or_else(|| {
                    format!(
                        "[[serve.tokens]] \"{name}\": token_sha256 must be 64 hex digits, the SHA-256 of the token ({MAKE_TOKEN})"
                    )
                })?;
                let mut out = [0u8; 32];
                out.copy_from_slice(&bytes);
                out
            }
            _ => {
                return Err(format!(
                    "[[serve.tokens]] \"{name}\" needs exactly one of token = \"${{SOME_VAR}}\" or token_sha256 = \"<64 hex digits>\""
                ));
            }
        };
        if t.scopes.is_empty() {
            return Err(format!(
                "[[serve.tokens]] \"{name}\" has no scopes: write e.g. scopes = [\"read\"] (read, run, approve, admin)"
            ));
        }
        let mut scopes = Vec::new();
        for s in &t.scopes {
            let scope = Scope::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
                format!("[[serve.tokens]] \"{name}\": \"{s}\" is not a scope; write read, run, approve or admin")
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        tokens.push(ApiToken {
            name: name.clone(),
            sha256,
            scopes,
        });
    }
    if let Some(token) = api_token {
        if token.len() < MIN_TOKEN_LEN {
            return Err(short("[serve] api_token", token.len()));
        }
        if tokens.iter().any(|t| t.name == "admin") {
            return Err(
                "[serve] api_token is shorthand for a token named \"admin\", and [[serve.tokens]] has one: keep one of them"
                    .to_owned(),
            );
        }
        let _ = Secret::new(token.to_owned());
        tokens.push(ApiToken::new("admin", token, Scope::ALL.to_vec()));
    }
    Ok(tokens)
}

/// Resolves `sqlite://relative.db` against `dir`; other URLs are returned as they are.
pub fn resolve_store(store: &str, dir: Option<&Path>) -> String {
    match store.strip_prefix("sqlite://") {
        Some(path) if !Path::new(path).is_absolute() => {
            let base = dir.map(Path::to_path_buf).unwrap_or_default();
            format!("sqlite://{}", base.join(path).display())
        }
        _ => store.to_owned(),
    }
}

/// The length of the HMAC key a secret gives: for `standard-webhooks`, a `whsec_` secret is the
/// base64 of the key; otherwise the secret's bytes are the key.
fn webhook_key_len(scheme: Scheme, secret: &str) -> Result<usize, String> {
    if scheme == Scheme::StandardWebhooks
        && let Some(encoded) = secret.strip_prefix("whsec_")
    {
        use base64::Engine as _;
        return base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(|k| k.len())
            .map_err(|_| {
                "the secret starts with whsec_ but the rest is not base64; copy it whole from the sender".to_owned()
            });
    }
    Ok(secret.len())
}

fn parse_trigger(name: &str, t: TriggerRaw) -> Result<Trigger, String> {
    let kinds = [t.schedule.is_some(), t.every.is_some(), t.webhook.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(format!(
            "automation \"{name}\": the trigger needs exactly one of schedule = \"CRON\", every = \"5m\" or webhook = \"/hooks/NAME\""
        ));
    }
    let catch_up_once = match t.catch_up.as_deref() {
        None | Some("once") => true,
        Some("skip") => false,
        Some(other) => {
            return Err(format!(
                "automation \"{name}\": catch_up = \"{other}\"; write \"once\" or \"skip\""
            ));
        }
    };
    if let Some(path) = t.webhook {
        if t.schedule.is_some() || t.tz.is_some() || t.catch_up.is_some() {
            return Err(format!(
                "automation \"{name}\": a webhook trigger takes no tz or catch_up"
            ));
        }
        let valid = path.starts_with("/hooks/") && path.len() > "/hooks/".len() && !path.contains(char::is_whitespace);
        if !valid {
            return Err(format!(
                "automation \"{name}\": webhook = \"{path}\" must be a path under /hooks/, e.g. \"/hooks/siem\""
            ));
        }
        let secret = t.secret.filter(|s| !s.is_empty()).ok_or_else(|| {
            format!("automation \"{name}\": a webhook needs secret = \"${{SOME_SECRET}}\" to verify deliveries")
        })?;
        let replay_window = match t.replay_window {
            None => std::time::Duration::from_secs(300),
            Some(w) => {
                runbook_core::parse_duration(&w).map_err(|e| format!("automation \"{name}\": replay_window: {e}"))?
            }
        };
        let scheme = match t.scheme.as_deref() {
            None | Some("hmac-sha256") => Scheme::HmacSha256,
            Some("github") => Scheme::Github,
            Some("standard-webhooks") => Scheme::StandardWebhooks,
            Some(other) => {
                return Err(format!(
                    "automation \"{name}\": scheme = \"{other}\" is not a webhook scheme; write \"hmac-sha256\" (the default), \"github\" or \"standard-webhooks\""
                ));
            }
        };
        let lower = |h: Option<String>| h.map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty());
        if scheme != Scheme::HmacSha256 {
            if t.signature_header.is_some() || t.id_header.is_some() || t.timestamp_header.is_some() {
                return Err(format!(
                    "automation \"{name}\": scheme = \"{}\" fixes its headers; signature_header, id_header and timestamp_header belong to scheme = \"hmac-sha256\"",
                    scheme.as_str()
                ));
            }
            if t.require_timestamp.is_some() {
                return Err(format!(
                    "automation \"{name}\": require_timestamp belongs to scheme = \"hmac-sha256\""
                ));
            }
        }
        let key_len = webhook_key_len(scheme, &secret).map_err(|e| format!("automation \"{name}\": {e}"))?;
        if key_len < MIN_SECRET_BYTES {
            return Err(format!(
                "automation \"{name}\": the webhook secret is {key_len} bytes; it must be at least {MIN_SECRET_BYTES} (make one with `openssl rand -hex 32`{}, give it to the sender, and write secret = \"${{SOME_SECRET}}\")",
                if scheme == Scheme::StandardWebhooks {
                    ", or a Standard Webhooks secret: \"whsec_\" followed by `openssl rand -base64 32`"
                } else {
                    ""
                }
            ));
        }
        let (signature_header, id_header, timestamp_header) = match scheme {
            Scheme::Github => (
                "x-hub-signature-256".to_owned(),
                Some("x-github-delivery".to_owned()),
                None,
            ),
            Scheme::StandardWebhooks => (
                "webhook-signature".to_owned(),
                Some("webhook-id".to_owned()),
                Some("webhook-timestamp".to_owned()),
            ),
            Scheme::HmacSha256 => {
                let timestamp_header = match (t.require_timestamp, lower(t.timestamp_header)) {
                    (Some(false), Some(_)) => {
                        return Err(format!(
                            "automation \"{name}\": require_timestamp = false waives the timestamp, yet timestamp_header names one; remove one of them"
                        ));
                    }
                    (Some(false), None) => None,
                    (_, Some(h)) => Some(h),
                    (_, None) => Some("x-timestamp".to_owned()),
                };
                (
                    lower(t.signature_header).unwrap_or_else(|| "x-signature-256".to_owned()),
                    Some(lower(t.id_header).unwrap_or_else(|| "x-delivery-id".to_owned())),
                    timestamp_header,
                )
            }
        };
        let mut keep_headers = Vec::new();
        for h in t.keep_headers.unwrap_or_default() {
            let h = h.trim().to_ascii_lowercase();
            if h == signature_header || is_credential_header(&h) {
                return Err(format!(
                    "automation \"{name}\": keep_headers names \"{h}\", which may carry a credential or the signature: events never keep those"
                ));
            }
            if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(format!(
                    "automation \"{name}\": keep_headers: \"{h}\" is not a header name"
                ));
            }
            keep_headers.push(h);
        }
        return Ok(Trigger::Webhook(WebhookTrigger {
            path,
            secret: Secret::new(secret),
            scheme,
            signature_header,
            id_header,
            timestamp_header,
            replay_window,
            keep_headers,
        }));
    }
    if t.secret.is_some()
        || t.signature_header.is_some()
        || t.id_header.is_some()
        || t.timestamp_header.is_some()
        || t.scheme.is_some()
        || t.require_timestamp.is_some()
        || t.keep_headers.is_some()
    {
        return Err(format!(
            "automation \"{name}\": secret, scheme, require_timestamp, keep_headers and the *_header settings belong to webhook triggers"
        ));
    }
    if let Some(expr) = t.schedule {
        let cadence =
            Cadence::cron(&expr, t.tz.as_deref(), catch_up_once).map_err(|e| format!("automation \"{name}\": {e}"))?;
        return Ok(Trigger::Schedule(cadence));
    }
    if t.tz.is_some() {
        return Err(format!("automation \"{name}\": tz applies to schedule triggers"));
    }
    let every = t.every.unwrap_or_default();
    let period = runbook_core::parse_duration(&every).map_err(|e| format!("automation \"{name}\": every: {e}"))?;
    let cadence = Cadence::every(period, catch_up_once).map_err(|e| format!("automation \"{name}\": {e}"))?;
    Ok(Trigger::Schedule(cadence))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.rhai"), "1").unwrap();
        ServeConfig::parse(&dir.path().join("runbook.toml"), text, |_, _| Vec::new())
    }

    #[test]
    fn a_full_configuration_parses() {
        let config = parse(
            r#"
[serve]
listen = "127.0.0.1:0"
workers = 2
journal_retention = "7d"

[[automation]]
name = "sweep"
script = "s.rhai"
params = { threshold = 3 }
trigger = { schedule = "0 */15 * * * *", tz = "Europe/Helsinki" }

[[automation]]
name = "siem"
script = "s.rhai"
trigger = { webhook = "/hooks/siem", secret = "s3cret-value-at-least-24-bytes", id_header = "X-Delivery-Id" }
"#,
        )
        .unwrap();
        assert_eq!(config.automations.len(), 2);
        assert_eq!(config.settings.journal_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.automations[0].params["threshold"], 3);
        assert!(
            matches!(&config.automations[1].trigger, Trigger::Webhook(w) if w.id_header.as_deref() == Some("x-delivery-id"))
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        let e =
            parse("[[automation]]\nname = \"a\"\nscript = \"s.rhai\"\ntrigger = { schedule = \"every tuesday\" }\n")
                .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("not a cron expression"), "{e}");
        let e = parse("[[automation]]\nname = \"a\"\nscript = \"missing.rhai\"\ntrigger = { every = \"5m\" }\n")
            .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("cannot read the script"), "{e}");
        let e = parse("[serve]\nworkers = 2\nlisen = \"x\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("unknown field `lisen`"), "{e}");
        let e = parse("[[automation]]\nname = \"a\"\nscript = \"s.rhai\"\ntrigger = { webhook = \"/hooks/a\" }\n")
            .unwrap_err();
        assert!(e.message.contains("needs secret"), "{e}");
        let e = parse("[serve]\napi_token = \"short\"\n").unwrap_err();
        assert!(e.message.contains("openssl rand -hex 32"), "{e}");
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_have_names_scopes_and_no_secret_in_the_file_when_hashed() {
        let hashed = hex::encode(sha256(b"another-token-that-is-long-enough-0000"));
        let config = parse(&format!(
            "[serve]\npublic_url = \"https://runbook.example.com/\"\n\
             [[serve.tokens]]\nname = \"ci\"\ntoken = \"{TOKEN}\"\nscopes = [\"read\", \"run\"]\n\
             [[serve.tokens]]\nname = \"ops-admin\"\ntoken_sha256 = \"{hashed}\"\nscopes = [\"admin\"]\n"
        ))
        .unwrap();
        let tokens = &config.settings.tokens;
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].sha256, sha256(TOKEN.as_bytes()));
        assert!(tokens[0].allows(Scope::Run) && !tokens[0].allows(Scope::Approve));
        assert!(tokens[1].allows(Scope::Read) && tokens[1].allows(Scope::Run) && tokens[1].allows(Scope::Admin));
        assert!(!tokens[1].allows(Scope::Approve), "admin does not imply approve");
        let public = config.settings.public_url.unwrap();
        assert_eq!(public.origin, "https://runbook.example.com");
        assert!(public.hosts.contains(&"runbook.example.com".to_owned()));
        assert!(public.hosts.contains(&"runbook.example.com:443".to_owned()));
        assert!(!format!("{tokens:?}").contains(TOKEN));

        let admin = parse(&format!("[serve]\napi_token = \"{TOKEN}\"\n")).unwrap();
        assert_eq!(admin.settings.tokens[0].name, "admin");
        assert!(Scope::ALL.iter().all(|s| admin.settings.tokens[0].allows(*s)));

        for (text, expected) in [
            (
                format!(
                    "[serve]\napi_token = \"{TOKEN}\"\n[[serve.tokens]]\nname = \"admin\"\ntoken = \"{TOKEN}x\"\nscopes = [\"read\"]\n"
                ),
                "keep one of them",
            ),
            (
                format!(
                    "[[serve.tokens]]\nname = \"a\"\ntoken = \"{TOKEN}\"\nscopes = [\"read\"]\n[[serve.tokens]]\nname = \"a\"\ntoken = \"{TOKEN}y\"\nscopes = [\"read\"]\n"
                ),
                "used twice",
            ),
            (
                "[[serve.tokens]]\nname = \"a\"\ntoken = \"short\"\nscopes = [\"read\"]\n".to_owned(),
                "at least 32",
            ),
            (
                "[[serve.tokens]]\nname = \"a\"\ntoken_sha256 = \"abc\"\nscopes = [\"read\"]\n".to_owned(),
                "64 hex digits",
            ),
            (
                format!("[[serve.tokens]]\nname = \"a\"\ntoken = \"{TOKEN}\"\nscopes = [\"write\"]\n"),
                "not a scope",
            ),
            (
                format!("[[serve.tokens]]\nname = \"a b\"\ntoken = \"{TOKEN}\"\nscopes = [\"read\"]\n"),
                "letters, digits",
            ),
            (
                "[serve]\npublic_url = \"runbook.example.com\"\n".to_owned(),
                "not an http(s) URL",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.message.contains(expected), "{text}: {e}");
        }
    }

    fn webhook(trigger: &str) -> Result<WebhookTrigger, ConfigError> {
        let config = parse(&format!(
            "[[automation]]\nname = \"a\"\nscript = \"s.rhai\"\ntrigger = {{ webhook = \"/hooks/a\", {trigger} }}\n"
        ))?;
        match &config.automations[0].trigger {
            Trigger::Webhook(w) => Ok(w.clone()),
            Trigger::Schedule(_) => panic!("not a webhook"),
        }
    }

    const LONG: &str = "a-webhook-secret-of-24-bytes";

    #[test]
    fn webhook_schemes_fix_or_default_their_headers() {
        // An existing trigger without a scheme or timestamp header: hmac-sha256, X-Timestamp expected.
        let w = webhook(&format!("secret = \"{LONG}\", id_header = \"X-Delivery-Id\"")).unwrap();
        assert_eq!(w.scheme, Scheme::HmacSha256);
        assert_eq!(w.timestamp_header.as_deref(), Some("x-timestamp"));
        assert_eq!(w.signature_header, "x-signature-256");
        let w = webhook(&format!("secret = \"{LONG}\", require_timestamp = false")).unwrap();
        assert_eq!(w.timestamp_header, None);
        let w = webhook(&format!("secret = \"{LONG}\", scheme = \"github\"")).unwrap();
        assert_eq!(
            (
                w.signature_header.as_str(),
                w.id_header.as_deref(),
                w.timestamp_header.as_deref()
            ),
            ("x-hub-signature-256", Some("x-github-delivery"), None)
        );
        let w = webhook("secret = \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\", scheme = \"standard-webhooks\"").unwrap();
        assert_eq!(w.timestamp_header.as_deref(), Some("webhook-timestamp"));
        for (trigger, expected) in [
            (
                format!("secret = \"{LONG}\", scheme = \"svix\""),
                "is not a webhook scheme",
            ),
            (
                format!("secret = \"{LONG}\", scheme = \"github\", id_header = \"X-Id\""),
                "fixes its headers",
            ),
            (
                format!("secret = \"{LONG}\", require_timestamp = false, timestamp_header = \"X-T\""),
                "remove one of them",
            ),
            (
                format!("secret = \"{LONG}\", keep_headers = [\"X-Gitlab-Token\"]"),
                "may carry a credential",
            ),
            (
                format!("secret = \"{LONG}\", keep_headers = [\"x-signature-256\"]"),
                "may carry a credential",
            ),
            ("secret = \"short-secret\"".to_owned(), "openssl rand -hex 32"),
            // 24 characters of base64 are 18 bytes of key.
            (
                "secret = \"whsec_C2FVsBQIhrscChlQIMV+\", scheme = \"standard-webhooks\"".to_owned(),
                "must be at least 24",
            ),
            (
                "secret = \"whsec_not base64!\", scheme = \"standard-webhooks\"".to_owned(),
                "not base64",
            ),
        ] {
            let e = webhook(&trigger).unwrap_err();
            assert!(e.message.contains(expected), "{trigger}: {e}");
        }
    }

    #[test]
    fn dedup_keys_outlive_history_and_the_intake_budget_holds_a_body() {
        let config = parse("[serve]\nkeep = \"7d\"\nintake_memory = \"16MiB\"\n").unwrap();
        assert_eq!(config.settings.dedup_keep, Duration::from_secs(400 * 24 * 3600));
        assert_eq!(config.settings.intake_memory, 16 * 1024 * 1024);
        let e = parse("[serve]\nkeep = \"30d\"\ndedup_keep = \"7d\"\n").unwrap_err();
        assert!(e.message.contains("make dedup_keep at least keep"), "{e}");
        let e = parse("[serve]\nintake_memory = \"512KiB\"\n").unwrap_err();
        assert!(e.message.contains("between 1MiB"), "{e}");
        let e = parse("[serve]\nintake_memory = \"lots\"\n").unwrap_err();
        assert!(e.message.contains("is not a size"), "{e}");
    }

    fn with_approval(approval: &str, notify: &str) -> Result<ServeConfig, ConfigError> {
        parse(&format!(
            r#"
[serve]
listen = "127.0.0.1:0"

[[serve.tokens]]
name = "alice"
token = "alice-token-0c3e5a7b9d1f2e4c6a8b0d2f4e6a"
scopes = ["read", "run", "approve"]

[[serve.tokens]]
name = "bob"
token = "bob-token-7d9f1b3c5e7a9c1e3b5d7f9a1c3e5b"
scopes = ["approve"]

[[serve.tokens]]
name = "ops"
token = "ops-token-2e4a6c8e0b2d4f6a8c0e2b4d6f8a0c"
scopes = ["admin"]

[[automation]]
name = "offboard"
script = "s.rhai"
{approval}
{notify}
trigger = {{ schedule = "0 0 * * * *" }}
"#
        ))
    }

    #[test]
    fn an_approval_names_approvers_among_the_tokens_and_defaults_to_one_within_a_day() {
        let config = with_approval(
            r#"approval = { approvers = ["alice", "bob"] }"#,
            r#"notify = "https://chat.example.com/hooks/x""#,
        )
        .unwrap();
        let rule = config.automations[0].approval.clone().unwrap();
        assert_eq!(rule.approvers, ["alice", "bob"]);
        assert_eq!((rule.required, rule.expires), (1, DEFAULT_APPROVAL_EXPIRY));
        assert_eq!(
            config.automations[0].notify.as_deref(),
            Some("https://chat.example.com/hooks/x")
        );
        let config = with_approval(
            r#"approval = { approvers = ["alice", "bob"], required = 2, expires = "2s" }"#,
            "",
        )
        .unwrap();
        let rule = config.automations[0].approval.clone().unwrap();
        assert_eq!((rule.required, rule.expires), (2, Duration::from_secs(2)));
        assert!(config.automations[0].notify.is_none());
    }

    #[test]
    fn an_approval_that_could_never_be_given_is_a_configuration_error() {
        for (approval, expected) in [
            (
                r#"approval = { approvers = ["mallory"] }"#,
                "approver \"mallory\" is not the name of a [[serve.tokens]]",
            ),
            (r#"approval = { approvers = ["ops"] }"#, "lacks the approve scope"),
            (r#"approval = { approvers = [] }"#, "approvers is empty"),
            (r#"approval = { approvers = ["bob", "bob"] }"#, "listed twice"),
            (
                r#"approval = { approvers = ["alice", "bob"], required = 3 }"#,
                "required = 3, and there are 2",
            ),
            (r#"approval = { approvers = ["bob"], required = 0 }"#, "required = 0"),
            (r#"approval = { approvers = ["bob"], expires = "soon" }"#, "expires"),
            (
                r#"approval = { approvers = ["bob"], quorum = 1 }"#,
                "unknown field `quorum`",
            ),
        ] {
            let err = with_approval(approval, "").unwrap_err();
            assert!(err.message.contains(expected), "{approval}: {err}");
            assert!(err.line > 1, "{err}");
        }
        let err = with_approval("", r#"notify = "chat.example.com""#).unwrap_err();
        assert!(err.message.contains("is not an http(s) URL"), "{err}");
    }
}
