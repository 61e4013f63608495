//! In-memory simulators of the Cloudflare Zero Trust (Access) API — users, the authentication
//! log, token revocation, seats and groups — and the PrivX role-store users API.
//!
//! The simulators serve real HTTP on loopback so that tests, benchmarks and `runbook --simulate`
//! exercise the very code paths a real deployment does: URL building, auth headers, JSON field
//! names, paging, error envelopes, retries and rate limiting.
//!
//! # Written from the API documentation, not from the providers
//! This crate depends on no other crate of the workspace. Its behaviour comes from the API notes in
//! `shared/api/` and, for Cloudflare, from what Cloudflare's official Python SDK expects on the
//! wire (the workspace's end-to-end tests run `tests/sdk/cloudflare_sdk_check.py` against
//! `runbook sim`: the SDK cannot tell the simulator from the service). A provider that gets a field name wrong therefore fails its tests instead of agreeing
//! with a simulator that makes the same mistake.
//!
//! # Design
//! - One [`Fixture`] JSON document seeds both simulators. Objects (users, sessions, identities,
//!   roles) are kept as free-form JSON, exactly as the APIs return them, so unknown fields and
//!   large integers survive a round trip.
//! - Each simulator is an axum router behind one shared gate (`gate.rs`) that, for every request
//!   and in arrival order: claims an injected [`Fault`], applies the fixed-window [`RateLimit`],
//!   reads the body, sleeps the configured latency, checks credentials, and finally records a
//!   [`LoggedRequest`] with the status the client got. Faulted and rate-limited requests never
//!   reach the handlers, so they cannot change state.
//! - Tenant state lives behind a `std::sync::Mutex` that is never held across an `.await`.
//! - Every bad input is answered with the API's own error shape (Cloudflare's envelope, PrivX's
//!   `error_code` body, OAuth's `error` body); nothing panics on what a client sends.
//! - PrivX can serve HTTPS with a CA generated at start ([`PrivxSim::ca_cert_pem`]), because
//!   PrivX is usually reached through a private CA and the provider must support that.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use runbook_sim::{Fixture, SimOptions, Simulators};
//! let sims = Simulators::start(Fixture::default(), SimOptions::default()).await?;
//! println!("CLOUDFLARE_BASE_URL={}", sims.cloudflare.base_url());
//! println!("PRIVX_API_BASE_URL={}", sims.privx.base_url());
//! sims.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod cloudflare;
mod control;
mod fault;
mod fixture;
mod gate;
mod lock;
mod options;
mod privx;
mod rate_limit;
mod request_log;
mod server;
mod tls;

pub use cloudflare::CloudflareSim;
pub use fault::Fault;
pub use fixture::{CloudflareFixture, Fixture, FixtureError, PrivxFixture};
pub use options::{ParseRateLimitError, RateLimit, RateLimitMode, SimOptions};
pub use privx::PrivxSim;
pub use request_log::{AuthUsed, LoggedRequest};

/// Both simulators, started together from one [`Fixture`].
#[derive(Debug)]
pub struct Simulators {
    /// The Cloudflare Zero Trust users API simulator.
    pub cloudflare: CloudflareSim,
    /// The PrivX role-store users API simulator.
    pub privx: PrivxSim,
}

impl Simulators {
    /// Starts both simulators on `127.0.0.1` with ephemeral ports and the same options
    /// (`opts.tls` applies to PrivX only).
    pub async fn start(fixture: Fixture, opts: SimOptions) -> std::io::Result<Simulators> {
        let cloudflare = CloudflareSim::start(fixture.cloudflare, opts.clone()).await?;
        let privx = match PrivxSim::start(fixture.privx, opts).await {
            Ok(privx) => privx,
            Err(error) => {
                cloudflare.shutdown().await;
                return Err(error);
            }
        };
        Ok(Simulators { cloudflare, privx })
    }

    /// Stops both simulators and releases their ports.
    pub async fn shutdown(self) {
        self.cloudflare.shutdown().await;
        self.privx.shutdown().await;
    }
}
