//! # runbook-serve
//!
//! Event-triggered automations: `runbook serve` runs scripts when a signed webhook arrives, on a
//! cron schedule, or at a fixed interval (polling, with a cursor kept through `state::`).
//!
//! ## Guarantees
//! * **A 2xx is a promise.** A webhook delivery is answered only after its run (and event) is
//!   committed to the store; the same delivery again is answered `200` with the first run's id
//!   and creates nothing.
//! * **A tick fires once.** A schedule's fire time is part of its run's unique key, so a tick is
//!   queued once across restarts (and across instances sharing a store). After downtime the most
//!   recent missed tick runs once (`catch_up = "once"`) or not at all (`"skip"`).
//! * **Nothing queued is lost.** Workers claim runs under a lease they renew; a run whose
//!   process died goes back to the queue when its lease expires. A failed run is retried with
//!   exponential backoff up to `retries`, and the retry is in the store, so it survives restarts.
//!   An attempt after a crash resumes from the run's journal (the pinned script replayed,
//!   recorded steps answered from the journal), so a change is not sent twice; one in doubt is
//!   sent again only when idempotent, else probed or left to a person (`needs_attention`).
//! * **A lost lease stops its attempt.** Heartbeats, completions and journal writes carry the
//!   attempt's lease epoch; an attempt whose lease was not renewed is cancelled and its late
//!   writes are refused.
//! * **Bounded, and honest about the store.** Connections, header and body read times, queued runs
//!   per automation and every store call on the request path are bounded; a stalled store is
//!   answered `503` at once, `/readyz` says so, `/metrics` keeps serving, and a schedule's tick is
//!   queued, skipped by policy or counted as missed — never dropped silently.
//! * **Nothing changes without its approvers, when an automation has them.** A run of an
//!   automation with `approval` plans first and waits (`awaiting_approval`, holding no lease and
//!   no slot) until enough named approvers — never its requester — approve that plan; the apply
//!   re-plans, and sends exactly the approved effects or, when the services changed, nothing: the
//!   fresh plan waits for approval again. A rejection, or no approval before the expiry, ends it
//!   having sent nothing.
//! * **Every run can be inspected.** Each keeps its params, event, result, error, log lines and
//!   audit calls (secrets redacted) and its journal's steps until the retention (`keep`)
//!   expires; journals of finished runs lose their arguments and results after
//!   `journal_retention`.
//! * **Every change has an actor.** `/api/*` always needs a named token ([`ApiToken`]) with the
//!   [`Scope`] the endpoint asks for; the token's name is recorded on the runs it starts, retries
//!   or cancels and on the automations it pauses. The Host and Origin headers are checked and
//!   changes must be JSON, so a browser page cannot use an operator's loopback server.
//!
//! ## Pieces
//! [`ServeConfig`] parses `[serve]` and `[[automation]]`; [`store::Store`] is the durable queue
//! and history (SQLite here, behind a trait); [`start`] runs the HTTP endpoints (`/hooks/*`,
//! `/healthz`, `/readyz`, `/metrics`, `/api/*`) behind a connection limit and header and body
//! timeouts, the tick tasks and the workers, and [`ServerHandle::shutdown`] stops them in order,
//! within `grace` + `drain`.

mod approval;
mod config;
mod connections;
mod console;
mod metrics;
mod notify;
mod policy;
mod redact;
mod schedule;
mod server;
pub mod store;
pub mod webhook;
mod worker;

pub use config::{
    ApiToken, ApprovalRule, Automation, ConfigError, MIN_TOKEN_LEN, Overlap, Policy, PublicUrl, Scheme, Scope,
    ServeConfig, ServeSettings, Trigger, WebhookTrigger, resolve_store, sha256,
};
pub use redact::{is_secret_field, redact_value, redacted};
pub use schedule::Cadence;
pub use server::{MAX_BODY, ServeError, ServerHandle, StartOptions, ms_time, start, summary, trigger_text};
