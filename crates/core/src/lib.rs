//! # runbook-core
//!
//! The engine behind `runbook`: scripts (Rhai) call **actions**; actions come from
//! **providers**, plugins that each wrap one service's API.
//!
//! ## The pieces
//! * [`ActionSpec`] — static data describing one action: parameters, [`Effect`] (`Read`,
//!   `Write`, `Destructive`), idempotency, and how to count the [`Targets`] a call touches.
//! * [`Provider`] — the async trait a provider implements: a namespace, its specs, and
//!   `call(ctx, action, args) -> JSON`. Providers register a [`ProviderDescriptor`] with
//!   [`inventory`]; embedders may instead hand providers to [`EngineBuilder::provider`].
//! * [`http`] — what providers share for talking to services: one client per provider instance
//!   with timeouts, a rate limiter (the configured budget plus the service's own `Ratelimit`
//!   header), retries with backoff for idempotent requests honouring `retry-after`, and a
//!   tracing span per request. [`Secret`] keeps credentials out of every output.
//! * [`Engine`] — the Rhai host. Each provider becomes a module (`cloudflare::list_users()`),
//!   built once per engine; each run gets a cheap Rhai engine with the sandbox applied (no
//!   `eval`, no `import`, explicit limits) and runs on a blocking thread. Each script thread makes
//!   its calls on a lane (a runtime it drives itself, with its own connections, reused across
//!   `parallel` calls and runs); the provider's code runs in the caller's Tokio runtime context.
//!   `parallel(items, |x| ...)` fans a closure out over threads; [`RunOptions::concurrency`]
//!   bounds the calls in flight for the whole run, nested `parallel`s included.
//!
//! ## Safety rails
//! Every action call passes through one call pipeline (Rhai-free, tested on its own):
//! * **Argument checks**: an unknown option key, a missing argument or a wrong type stops the run
//!   before anything is sent ([`RunErrorKind::InvalidArgs`]).
//! * **Blast-radius guard** ([`RunOptions::max_changes`]): the targets of all mutating calls of
//!   a run are counted; the call that would pass the cap is refused before it is sent and the
//!   run ends with [`RunErrorKind::Guard`]. Calls already in flight finish and are reported.
//! * **Plan mode** ([`RunOptions::plan`]): `Read` actions run; `Write` and `Destructive` actions
//!   are recorded as [`PlannedChange`]s and never reach the provider. Should a provider send a
//!   mutating request anyway, the HTTP layer refuses it.
//! * **Audit trail**: every call yields an [`AuditRecord`] (arguments with secrets redacted,
//!   outcome, attempts, duration); a sink that cannot write stops the run.
//!
//! Messages that point the user at a setting name it as the caller does ([`SettingNames`]):
//! the engine knows nothing of command lines or configuration files.
//!
//! ## Example
//! ```no_run
//! use std::sync::Arc;
//! use runbook_core::{Engine, RunOptions};
//!
//! # async fn demo(provider: Arc<dyn runbook_core::Provider>) -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().provider(provider).build()?;
//! let outcome = engine
//!     .run(r#"let users = tickets::list_tickets(); users.len()"#, RunOptions::new().plan(true))
//!     .await?;
//! println!("{} -> {}", outcome.run_id, outcome.result);
//! # Ok(()) }
//! ```

mod action;
mod audit;
mod config;
mod context;
mod engine;
mod error;
mod fault;
mod host;
pub mod http;
pub mod journal;
mod lane;
mod pipeline;
pub mod plan;
pub mod policy;
mod provider;
mod registry;
mod run;
mod secret;
mod state;

pub use action::{Action, ActionSpec, Effect, ParamSpec, ParamType, Record, Records, Targets};
pub use audit::{AuditError, AuditRecord, AuditSink, CallOutcome, JsonlAuditSink};
pub use config::{ProviderConfig, parse_duration, parse_size};
pub use context::CallContext;
pub use engine::{Engine, EngineBuilder};
pub use error::{ActionError, ActionErrorKind, ConfigError};
pub use host::{Diagnostic, Limits, ScriptParam, ScriptParamType};
pub use journal::{
    Fence, Journal, JournalEntry, JournalError, JournalLimits, MemoryJournal, Resolution, StepKind, StepStatus,
};
pub use plan::{Expectation, PlanDiff, PlanMismatch, SavedPlan, TargetRef};
pub use policy::{Budget, ChangeCount, Policy};
pub use provider::{Probed, Provider, ProviderDescriptor, registered_providers};
pub use registry::{EngineError, RegisteredProvider, Registry};
pub use run::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_CHANGES, LogLine, PlannedChange, RunError, RunErrorKind, RunObserver, RunOptions,
    RunOutcome, RunRecords, SettingNames,
};
pub use secret::{Secret, redact, remember};
pub use state::{MemoryState, StateError, StateStore};

pub use async_trait::async_trait;
pub use inventory;
pub use serde_json;
pub use tokio_util::sync::CancellationToken;
