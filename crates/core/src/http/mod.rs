//! The HTTP layer providers share: one client per provider instance, with timeouts, a rate
//! limiter, retries for idempotent requests, `retry-after`, and a tracing span per request.

mod client;
mod rate_limit;
mod retry;

pub use client::{HttpClient, HttpClientBuilder, HttpRequest, HttpResponse, USER_AGENT, path};
pub use rate_limit::{Limiter, Permit, RateLimit, SharedBudget, parse_ratelimit_header};
pub use reqwest::Method;
pub use reqwest::header;
pub use retry::{RetryPolicy, is_retryable_status, parse_retry_after};
