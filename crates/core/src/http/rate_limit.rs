//! Pacing requests so that a run stays inside a service's rate budget.
//!
//! Two mechanisms work together:
//!
//! * a client-side GCRA limiter (governor) at the configured budget (`"1200/300s"`): a run that
//!   has been idle may burst, a long run is held to the budget's average rate;
//! * the service's own account, read from every response's `Ratelimit: "default";r=R;t=T` header
//!   (R requests remain, the window resets in T seconds). The budget is often shared with other
//!   clients (Cloudflare counts the dashboard too), so only the service knows what is left. When
//!   the lowest remaining count reported in the window, less every request still unanswered,
//!   reaches zero, new requests wait — for answers, which may show that requests in flight had
//!   already been counted, or for the reset — instead of drawing a 429. A 429's `retry-after`
//!   pauses every request of the provider, not just the one that drew it.
//!
//! When several processes use one credential (several `runbook serve` instances), each one's
//! limiter only sees its own requests. A [`SharedBudget`] — kept where they all can reach it,
//! such as the PostgreSQL store they share — then reserves every request in one account for all
//! of them.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
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

/// A rate budget that several processes draw from, such as several `runbook serve` instances
/// holding one API token.
#[async_trait::async_trait]
pub trait SharedBudget: Send + Sync + std::fmt::Debug {
    /// Reserves one request in the budget `key` (at most `limit`, counted over every process);
    /// answers how long to wait before sending it. The request must not be sent earlier.
    async fn reserve(&self, key: &str, limit: RateLimit) -> Result<Duration, BudgetError>;
}

/// The shared budget could not be reached or updated.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared rate budget is unavailable: {reason}")]
#[non_exhaustive]
pub struct BudgetError {
    /// What went wrong.
    pub reason: String,
}

impl BudgetError {
    /// An error saying why.
    pub fn new(reason: impl Into<String>) -> Self {
        BudgetError { reason: reason.into() }
    }
}

/// A shared budget and the name of the account this client draws from.
#[derive(Debug, Clone)]
struct SharedAccount {
    budget: Arc<dyn SharedBudget>,
    key: String,
    limit: RateLimit,
}

/// What the service said about its budget in the current window.
#[derive(Debug, Clone, Copy)]
struct ServerAccount {
    /// The lowest remaining count it reported, less the requests sent whose answer never came.
    reported: i64,
    reset_at: Instant,
}

#[derive(Debug, Default)]
struct ServerView {
    account: Option<ServerAccount>,
    paused_until: Option<Instant>,
    /// Requests sent and not answered yet.
    in_flight: i64,
}

/// Permission to send one request; hand it back with the answer's headers.
#[derive(Debug)]
#[must_use = "hand the permit back with `Limiter::observe`, or drop it if no answer came"]
pub struct Permit<'a> {
    limiter: &'a Limiter,
    answered: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.answered {
            // No answer: the service may have counted the request.
            let mut view = self.limiter.lock();
            view.in_flight -= 1;
            if let Some(account) = &mut view.account {
                account.reported -= 1;
            }
            drop(view);
            self.limiter.changed.notify_waiters();
        }
    }
}

/// A provider instance's pacing: the configured budget plus the service's own account.
pub struct Limiter {
    gcra: Option<DefaultDirectRateLimiter>,
    shared: Option<SharedAccount>,
    server: Mutex<ServerView>,
    /// Signalled when an answer (or its absence) changes the account.
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("client_budget", &self.gcra.is_some())
            .field("shared_budget", &self.shared.as_ref().map(|s| &s.key))
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
            shared: None,
            server: Mutex::new(ServerView::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// A limiter at `budget` that also reserves every request in `shared` under `key`, so that
    /// every process drawing from that account together stays inside `budget`.
    pub fn with_shared(budget: RateLimit, shared: Arc<dyn SharedBudget>, key: impl Into<String>) -> Self {
        let mut limiter = Limiter::new(Some(budget));
        limiter.shared = Some(SharedAccount {
            budget: shared,
            key: key.into(),
            limit: budget,
        });
        limiter
    }

    /// Waits for the shared budget's reservation. While the shared budget cannot be reached,
    /// requests wait (and say so) rather than risk overrunning what other processes count on;
    /// the run's timeout still bounds the wait.
    async fn reserve_shared(shared: &SharedAccount) {
        let mut failures = 0u32;
        loop {
            match shared.budget.reserve(&shared.key, shared.limit).await {
                Ok(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return;
                }
                Err(e) => {
                    if failures.is_multiple_of(10) {
                        tracing::warn!(budget = %shared.key, error = %e, "the shared rate budget cannot be reached; requests wait for it");
                    }
                    failures += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Waits until a request may be sent. The configured budget (and the shared one) is drawn
    /// from exactly once per request: when the service's account says to wait after the draw,
    /// the request waits holding its place instead of drawing again.
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        while let Err(until) = self.check() {
            self.wait(until).await;
        }
        if let Some(gcra) = &self.gcra {
            gcra.until_ready().await;
        }
        if let Some(shared) = &self.shared {
            Self::reserve_shared(shared).await;
        }
        // The service's account may have changed while we waited on the budget.
        while let Err(until) = self.try_issue() {
            self.wait(until).await;
        }
        Permit {
            limiter: self,
            answered: false,
        }
    }

    /// How much longer the service's pause (a 429's `retry-after`) lasts, when that is more
    /// than `limit`.
    pub fn paused_longer_than(&self, limit: Duration) -> Option<Duration> {
        let view = self.lock();
        let left = view.paused_until?.saturating_duration_since(Instant::now());
        (left > limit).then_some(left)
    }

    /// Sleeps until `until`, or until an answer changes the account (a request in flight may
    /// turn out to have been counted already).
    async fn wait(&self, until: Instant) {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if self.check().is_ok() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = changed => {}
        }
    }

    fn check(&self) -> Result<(), Instant> {
        let mut view = self.lock();
        match Self::wait_locked(&mut view) {
            Some(until) => Err(until),
            None => Ok(()),
        }
    }

    fn try_issue(&self) -> Result<(), Instant> {
        let mut view = self.lock();
        if let Some(until) = Self::wait_locked(&mut view) {
            return Err(until);
        }
        view.in_flight += 1;
        Ok(())
    }

    /// Reads the service's `Ratelimit` header from the answer to the request sent under `permit`.
    ///
    /// Answers can come back in another order than their requests were received, so the count
    /// is kept conservative: within one window the lowest remaining count and the earliest reset
    /// win (the reset is rounded up to whole seconds by the service), and every request still in
    /// flight is assumed not yet counted in it.
    pub fn observe(&self, mut permit: Permit<'_>, headers: &HeaderMap) {
        permit.answered = true;
        let figures = headers
            .get("ratelimit")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_ratelimit_header);
        let now = Instant::now();
        let mut view = self.lock();
        view.in_flight -= 1;
        let Some((remaining, reset)) = figures else {
            // An answer without figures (an error page from a proxy, say) may still have been
            // counted: keep it counted.
            if let Some(account) = &mut view.account {
                account.reported -= 1;
            }
            drop(view);
            self.changed.notify_waiters();
            return;
        };
        let reported = i64::try_from(remaining).unwrap_or(i64::MAX);
        let reset_at = now + reset;
        view.account = Some(match view.account {
            Some(known) if known.reset_at > now => ServerAccount {
                reported: known.reported.min(reported),
                reset_at: known.reset_at.min(reset_at),
            },
            _ => ServerAccount { reported, reset_at },
        });
        drop(view);
        self.changed.notify_waiters();
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

    fn wait_locked(view: &mut ServerView) -> Option<Instant> {
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
        (account.reported - view.in_flight <= 0).then_some(account.reset_at)
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

    /// A shared budget that counts reservations and makes each one wait a little.
    #[derive(Debug, Default)]
    struct CountingBudget {
        reservations: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SharedBudget for CountingBudget {
        async fn reserve(&self, _: &str, _: RateLimit) -> Result<Duration, BudgetError> {
            self.reservations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Duration::from_millis(100))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_held_back_by_the_service_draws_the_budget_only_once() {
        let budget = Arc::new(CountingBudget::default());
        let limiter = Arc::new(Limiter::with_shared(
            RateLimit::new(1000, Duration::from_secs(1)),
            budget.clone(),
            "account",
        ));
        let first = limiter.acquire().await;
        let waiting = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let permit = limiter.acquire().await;
                drop(permit);
                Instant::now()
            })
        };
        // While the second request waits on its reservation, the service says nothing is left.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit", HeaderValue::from_static("\"default\";r=0;t=5"));
        let start = Instant::now();
        limiter.observe(first, &headers);
        let sent_at = waiting.await.unwrap();
        assert!(sent_at >= start + Duration::from_secs(4), "it waited for the reset");
        assert_eq!(
            budget.reservations.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "two requests, two reservations: the wait drew nothing more from the budget other instances share"
        );
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
        let second = limiter.acquire().await;
        assert_eq!(Instant::now(), start);
        drop(second);
        let _third = limiter.acquire().await;
        assert!(Instant::now() >= start + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_still_in_flight_are_assumed_uncounted() {
        let limiter = Limiter::new(None);
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit", HeaderValue::from_static("\"default\";r=3;t=5"));
        let a = limiter.acquire().await;
        let b = limiter.acquire().await;
        let c = limiter.acquire().await;
        // `a` is answered first with 3 left, but `b` and `c` may not have been counted yet.
        limiter.observe(a, &headers);
        let start = Instant::now();
        let _d = limiter.acquire().await;
        assert_eq!(Instant::now(), start, "3 - 2 in flight leaves one");
        drop((b, c));
        let _e = limiter.acquire().await;
        assert!(
            Instant::now() >= start + Duration::from_secs(5),
            "then the window must reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_without_figures_stays_counted() {
        let limiter = Limiter::new(None);
        let a = limiter.acquire().await;
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit", HeaderValue::from_static("\"default\";r=2;t=5"));
        limiter.observe(a, &headers);
        let start = Instant::now();
        let b = limiter.acquire().await;
        let _c = limiter.acquire().await;
        assert_eq!(Instant::now(), start, "two remain");
        // `b` comes back as a proxy's error page, without the header: it may have been counted.
        limiter.observe(b, &HeaderMap::new());
        let _d = limiter.acquire().await;
        assert!(
            Instant::now() >= start + Duration::from_secs(5),
            "a third request must wait for the reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_show_which_requests_in_flight_were_already_counted() {
        let limiter = Limiter::new(None);
        let header = |r: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("ratelimit", HeaderValue::from_str(r).unwrap());
            headers
        };
        let a = limiter.acquire().await;
        let b = limiter.acquire().await;
        let c = limiter.acquire().await;
        // `a` was counted last (3 left) but answered first: `b` and `c` might still count.
        limiter.observe(a, &header("\"default\";r=3;t=5"));
        let start = Instant::now();
        let d = limiter.acquire().await;
        assert_eq!(Instant::now(), start, "3 - 2 in flight leaves one");
        assert!(
            tokio::time::timeout(Duration::from_millis(100), limiter.acquire())
                .await
                .is_err(),
            "a fourth request now could be one too many"
        );
        // `b` and `c` were counted before `a` (more were left then): nothing else is uncounted.
        limiter.observe(b, &header("\"default\";r=5;t=5"));
        limiter.observe(c, &header("\"default\";r=4;t=5"));
        // 3 left, `d` unanswered: two more go at once, the third waits for the reset.
        let e = limiter.acquire().await;
        let f = limiter.acquire().await;
        assert!(Instant::now() < start + Duration::from_secs(1));
        assert!(
            tokio::time::timeout(Duration::from_millis(100), limiter.acquire())
                .await
                .is_err(),
            "the account is used up"
        );
        drop((d, e, f));
        let _g = limiter.acquire().await;
        assert!(Instant::now() >= start + Duration::from_secs(5));
    }
}
