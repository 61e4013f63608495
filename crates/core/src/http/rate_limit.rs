//! Pacing requests so that a run stays inside a service's rate budget.
//!
//! Two mechanisms work together:
//!
//! * a client-side GCRA limiter (governor) at the configured budget (`"1200/300s"`): a run that
//!   has been idle may burst, a long run is held to the budget's average rate;
//! * the service's own account, read from every response's `Ratelimit: "default";r=R;t=T` header
//!   (R requests remain, the window resets in T seconds). The budget is often shared with other
//!   clients (Cloudflare counts the dashboard too), so only the service knows what is left. When
//!   the remaining count, less what was sent after the answer that reported it, reaches zero,
//!   new requests wait for the reset instead of drawing a 429. A 429's `retry-after` pauses every
//!   request of the provider, not just the one that drew it.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// A rate budget: at most `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in one period.
    pub requests: u32,
    /// The period.
    pub per: Duration,
}

impl RateLimit {
    /// `requests` per `per`.
    pub fn new(requests: u32, per: Duration) -> Self {
        RateLimit { requests, per }
    }

    /// The average gap between requests at this budget.
    pub fn interval(&self) -> Duration {
        self.per / self.requests.max(1)
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests, humantime::format_duration(self.per))
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// Parses `"1200/300s"`, `"200/s"`, `"10/1m"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("\"{s}\" is not a rate budget; write requests/period, e.g. \"1200/300s\" or \"200/s\"");
        let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let requests: u32 = count.trim().parse().map_err(|_| bad())?;
        if requests == 0 {
            return Err(format!("\"{s}\": a budget of zero requests would block every call"));
        }
        let period = period.trim();
        let period = if period.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            period.to_owned()
        } else {
            format!("1{period}")
        };
        let per = humantime::parse_duration(&period).map_err(|_| bad())?;
        if per.is_zero() {
            return Err(bad());
        }
        Ok(RateLimit { requests, per })
    }
}

/// What the service last said about its budget.
#[derive(Debug, Clone, Copy)]
struct ServerAccount {
    /// The permit of the request whose answer carried the figures.
    seq: u64,
    remaining: u64,
    reset_at: Instant,
}

#[derive(Debug, Default)]
struct ServerView {
    account: Option<ServerAccount>,
    paused_until: Option<Instant>,
}

/// Permission to send one request; hand it back with the answer's headers.
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    seq: u64,
}

/// A provider instance's pacing: the configured budget plus the service's own account.
pub struct Limiter {
    gcra: Option<DefaultDirectRateLimiter>,
    server: Mutex<ServerView>,
    issued: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("client_budget", &self.gcra.is_some())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter at `budget` (or only following the service's headers when `None`).
    pub fn new(budget: Option<RateLimit>) -> Self {
        let gcra = budget.and_then(|b| {
            let burst = NonZeroU32::new(b.requests)?;
            let quota = Quota::with_period(b.interval())?.allow_burst(burst);
            Some(RateLimiter::direct(quota))
        });
        Limiter {
            gcra,
            server: Mutex::new(ServerView::default()),
            issued: AtomicU64::new(0),
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) -> Permit {
        loop {
            if let Some(until) = self.server_wait() {
                tokio::time::sleep_until(until).await;
                continue;
            }
            if let Some(gcra) = &self.gcra {
                gcra.until_ready().await;
            }
            // The service's account may have changed while we waited on the local budget.
            match self.try_issue() {
                Ok(permit) => return permit,
                Err(until) => tokio::time::sleep_until(until).await,
            }
        }
    }

    fn try_issue(&self) -> Result<Permit, Instant> {
        let mut view = self.lock();
        if let Some(until) = self.wait_locked(&mut view) {
            return Err(until);
        }
        let seq = self.issued.fetch_add(1, Ordering::SeqCst);
        Ok(Permit { seq })
    }

    /// Reads the service's `Ratelimit` header from an answer to the request sent under `permit`.
    pub fn observe(&self, permit: Permit, headers: &HeaderMap) {
        let Some((remaining, reset)) = headers
            .get("ratelimit")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_ratelimit_header)
        else {
            return;
        };
        let now = Instant::now();
        let mut view = self.lock();
        let newer = match view.account {
            None => true,
            Some(known) => permit.seq >= known.seq || known.reset_at <= now,
        };
        if newer {
            view.account = Some(ServerAccount {
                seq: permit.seq,
                remaining,
                reset_at: now + reset,
            });
        }
    }

    /// Holds every request back for `delay` (a 429's `retry-after`).
    pub fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut view = self.lock();
        if view.paused_until.is_none_or(|p| p < until) {
            view.paused_until = Some(until);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerView> {
        // A poisoned lock only means another request panicked mid-update; the figures are still usable.
        self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn server_wait(&self) -> Option<Instant> {
        let mut view = self.lock();
        self.wait_locked(&mut view)
    }

    fn wait_locked(&self, view: &mut ServerView) -> Option<Instant> {
        let now = Instant::now();
        if let Some(until) = view.paused_until {
            if until > now {
                return Some(until);
            }
            view.paused_until = None;
        }
        let account = view.account?;
        if account.reset_at <= now {
            view.account = None;
            return None;
        }
        let sent_since = self.issued.load(Ordering::SeqCst).saturating_sub(account.seq + 1);
        (sent_since >= account.remaining).then_some(account.reset_at)
    }
}

/// Parses `"default";r=50;t=30` into (remaining, reset). Only the first list item is read.
pub fn parse_ratelimit_header(value: &str) -> Option<(u64, Duration)> {
    let first = value.split(',').next()?;
    let mut remaining = None;
    let mut reset = None;
    for param in first.split(';').skip(1) {
        let (key, val) = param.trim().split_once('=')?;
        let val = val.trim().trim_matches('"');
        match key.trim() {
            "r" => remaining = val.parse::<u64>().ok(),
            "t" => reset = val.parse::<u64>().ok().map(Duration::from_secs),
            _ => {}
        }
    }
    Some((remaining?, reset?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn budgets_parse_in_the_usual_spellings() {
        assert_eq!(
            "1200/300s".parse::<RateLimit>().unwrap(),
            RateLimit::new(1200, Duration::from_secs(300))
        );
        assert_eq!(
            "200/s".parse::<RateLimit>().unwrap(),
            RateLimit::new(200, Duration::from_secs(1))
        );
        assert_eq!(
            "10/5m".parse::<RateLimit>().unwrap(),
            RateLimit::new(10, Duration::from_secs(300))
        );
        assert!("fast".parse::<RateLimit>().unwrap_err().contains("\"fast\""));
        assert!("0/s".parse::<RateLimit>().is_err());
    }

    #[test]
    fn the_ratelimit_header_gives_remaining_and_reset() {
        assert_eq!(
            parse_ratelimit_header("\"default\";r=50;t=30"),
            Some((50, Duration::from_secs(30)))
        );
        assert_eq!(parse_ratelimit_header("\"default\";q=100;w=60"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_server_account_holds_requests_until_the_reset() {
        let limiter = Limiter::new(None);
        let first = limiter.acquire().await;
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit", HeaderValue::from_static("\"default\";r=1;t=5"));
        limiter.observe(first, &headers);
        // One request remains: the next goes at once, the one after waits for the reset.
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(Instant::now(), start);
        limiter.acquire().await;
        assert!(Instant::now() >= start + Duration::from_secs(5));
    }
}
