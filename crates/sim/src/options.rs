//! Start-up options shared by both simulators.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How a simulator behaves beyond its tenant state. Every knob can also be changed while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimOptions {
    /// Added before every answer (including faults and 429s). Default: none.
    pub latency: Duration,
    /// A request budget; `None` (the default) means unlimited.
    pub rate_limit: Option<RateLimit>,
    /// How the budget is counted and whether answers say what is left.
    pub rate_limit_mode: RateLimitMode,
    /// Serve HTTPS with a CA generated at start. PrivX only: the Cloudflare simulator ignores it,
    /// as the Cloudflare API is always reached through public TLS that a base-URL override replaces.
    pub tls: bool,
}

/// How a simulator counts its [`RateLimit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RateLimitMode {
    /// Cloudflare's documented behaviour: a fixed window that opens with the first request; once
    /// the budget is spent every request until the window ends is answered 429; every answer
    /// carries `Ratelimit` / `Ratelimit-Policy` (where the API documents them).
    #[default]
    FixedWindow,
    /// A service (or a proxy in front of it) that counts the requests of the last window at each
    /// arrival and answers 429 beyond the budget, with `retry-after` but without any
    /// `Ratelimit` header: a client learns nothing of the budget until it overruns it.
    SlidingWindowSilent,
}

/// A budget: at most `requests` requests per `window` (see [`RateLimitMode`] for how it is counted).
///
/// The window starts with the first request after the previous window ended; once the budget is
/// spent, every request until the window ends is answered 429 (Cloudflare's documented behaviour:
/// "all calls blocked for the rest of the window").
///
/// Parses from `"200/1s"`, `"1200/300s"`, `"100/s"`, `"10/500ms"`, `"60/1m"`, `"5000/1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window; must be at least 1.
    pub requests: u32,
    /// The window's length; must not be zero.
    pub window: Duration,
}

impl RateLimit {
    /// Cloudflare's documented account budget: 1200 requests per 5 minutes.
    pub const CLOUDFLARE_ACCOUNT: RateLimit = RateLimit {
        requests: 1200,
        window: Duration::from_secs(300),
    };
}

/// Why a rate-limit text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rate limit {text:?}: {reason} (expected REQUESTS/WINDOW, e.g. \"200/1s\", \"1200/300s\" or \"100/s\")"
)]
pub struct ParseRateLimitError {
    text: String,
    reason: &'static str,
}

impl FromStr for RateLimit {
    type Err = ParseRateLimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseRateLimitError {
            text: text.to_owned(),
            reason,
        };
        let (requests, window) = text.trim().split_once('/').ok_or_else(|| fail("no '/'"))?;
        let requests: u32 = requests
            .trim()
            .parse()
            .map_err(|_| fail("the request count is not a whole number"))?;
        if requests == 0 {
            return Err(fail("the request count must be at least 1"));
        }
        let window = window.trim();
        let unit_at = window
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| fail("the window has no unit (ms, s, m or h)"))?;
        let (amount, unit) = window.split_at(unit_at);
        let amount: u64 = if amount.is_empty() {
            1
        } else {
            amount
                .parse()
                .map_err(|_| fail("the window length is not a whole number"))?
        };
        let per_unit = match unit {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(fail("the window's unit is not ms, s, m or h")),
        };
        let window = u32::try_from(amount)
            .ok()
            .and_then(|n| per_unit.checked_mul(n))
            .ok_or_else(|| fail("the window is too long"))?;
        if window.is_zero() {
            return Err(fail("the window must not be zero"));
        }
        Ok(RateLimit { requests, window })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = self.window;
        if window.subsec_nanos() == 0 {
            write!(f, "{}/{}s", self.requests, window.as_secs())
        } else {
            write!(f, "{}/{}ms", self.requests, window.as_millis())
        }
    }
}
