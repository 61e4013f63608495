//! The HTTP layer providers share: one client per provider instance, with timeouts, a rate
//! limiter, retries for idempotent requests, `retry-after`, and a tracing span per request.

mod client;
mod rate_limit;
mod retry;

pub use client::{DEFAULT_MAX_BODY, HttpClient, HttpClientBuilder, HttpRequest, HttpResponse, path};
pub use rate_limit::{BudgetError, RateLimit, SharedBudget};
pub use reqwest::Method;
pub use reqwest::header;
pub use retry::RetryPolicy;
