//! Pacing requests so that a run stays inside a service's rate budget.
//!
//! Two mechanisms work together:
//!
//! * the configured budget (`"1200/300s"`) as a sliding window: never more than that many
//!   requests in any stretch of that length, whatever the service says or does not say. A
//!   request holds its place in the window from the moment it is sent until one window after its
//!   answer came back (or its failure was seen): the service counted it at some moment in between,
//!   so however the network delayed it, no window the service looks at holds more than the budget.
//!   A burst may use the whole budget at once; after that requests go as places free up. (A GCRA
//!   whose burst is the whole budget lets almost twice the budget into one window: Cloudflare
//!   answers that with five minutes of 429s for every tool sharing the account.)
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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The configured budget as a sliding window over the requests sent.
#[derive(Debug)]
struct SlidingWindow {
    limit: RateLimit,
    /// When each answered request leaves the window: one window after its answer. Requests not
    /// answered yet ([`ServerView::in_flight`]) are in the window too.
    leaving: BinaryHeap<Reverse<Instant>>,
}

impl SlidingWindow {
    /// When the next request may be sent, or `None` for now. When every place is held by a
    /// request in flight, the wait ends with an answer (or, at the latest, a window from now).
    fn wait_until(&mut self, in_flight: i64, now: Instant) -> Option<Instant> {
        while self.leaving.peek().is_some_and(|Reverse(at)| *at <= now) {
            self.leaving.pop();
        }
        let held = u64::try_from(in_flight).unwrap_or(0) + self.leaving.len() as u64;
        if held < u64::from(self.limit.requests) {
            return None;
        }
        Some(self.leaving.peek().map_or(now + self.limit.per, |Reverse(at)| *at))
    }

    /// A request sent at some moment up to now has been answered or has failed.
    fn done(&mut self, now: Instant) {
        self.leaving.push(Reverse(now + self.limit.per));
    }
}

#[derive(Debug, Default)]
struct ServerView {
    account: Option<ServerAccount>,
    paused_until: Option<Instant>,
    /// Requests sent and not answered yet.
    in_flight: i64,
    window: Option<SlidingWindow>,
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
            if let Some(window) = &mut view.window {
                window.done(Instant::now());
            }
            drop(view);
            self.limiter.changed.notify_waiters();
        }
    }
}

/// A provider instance's pacing: the configured budget plus the service's own account.
pub struct Limiter {
    shared: Option<SharedAccount>,
    server: Mutex<ServerView>,
    /// Signalled when an answer (or its absence) changes the account.
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("client_budget", &self.lock().window.as_ref().map(|w| w.limit))
            .field("shared_budget", &self.shared.as_ref().map(|s| &s.key))
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter at `budget` (or only following the service's headers when `None`).
    pub fn new(budget: Option<RateLimit>) -> Self {
        let window = budget.map(|limit| SlidingWindow {
            limit,
            leaving: BinaryHeap::new(),
        });
        Limiter {
            shared: None,
            server: Mutex::new(ServerView {
                window,
                ..ServerView::default()
            }),
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

    /// Waits until a request may be sent. The shared budget is drawn from exactly once per
    /// request: when the service's account or the window says to wait after the draw, the
    /// request waits holding its reservation instead of drawing again.
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        while let Err(until) = self.check() {
            self.wait(until).await;
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
        if let Some(window) = &mut view.window {
            window.done(now);
        }
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
        let in_flight = view.in_flight;
        if let Some(until) = view.window.as_mut().and_then(|w| w.wait_until(in_flight, now)) {
            return Some(until);
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

    /// A small deterministic generator, so the simulations below are the same every run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// One simulated request: waits for the limiter, is counted by the service at some moment
    /// between its send and its answer, is answered after up to `max_latency`. Returns the
    /// moment the service counted it.
    async fn one_request(limiter: Arc<Limiter>, seed: u64, max_latency: Duration) -> Instant {
        let mut rng = Lcg(seed);
        let permit = limiter.acquire().await;
        let sent = Instant::now();
        let latency = Duration::from_millis(rng.below(max_latency.as_millis() as u64 + 1));
        let counted = sent + latency.mul_f64(rng.below(1001) as f64 / 1000.0);
        tokio::time::sleep(latency).await;
        limiter.observe(permit, &HeaderMap::new());
        counted
    }

    /// The most moments in any half-open stretch `[t, t + window)`.
    fn most_in_any_window(mut moments: Vec<Instant>, window: Duration) -> usize {
        moments.sort();
        let mut most = 0;
        let mut start = 0;
        for end in 0..moments.len() {
            while moments[end] >= moments[start] + window {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }

    const BUDGET: RateLimit = RateLimit {
        requests: 100,
        per: Duration::from_secs(5),
    };

    #[tokio::test(start_paused = true)]
    async fn a_burst_never_puts_more_than_the_budget_in_any_window() {
        let limiter = Arc::new(Limiter::new(Some(BUDGET)));
        let start = Instant::now();
        // 64 at a time, like `--concurrency 64`, each worker sending request after request.
        let tasks: Vec<_> = (0..64u64)
            .map(|worker| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut counted = Vec::new();
                    for n in 0..10 {
                        counted.push(one_request(limiter.clone(), worker * 1000 + n, Duration::from_millis(300)).await);
                    }
                    counted
                })
            })
            .collect();
        let mut counted = Vec::new();
        for task in tasks {
            counted.extend(task.await.unwrap());
        }
        assert_eq!(counted.len(), 640);
        assert_eq!(most_in_any_window(counted.clone(), BUDGET.per), 100);
        // The old limiter (a GCRA with the whole budget as burst) let 199 into one window.
        let first_window = counted.iter().filter(|t| **t < start + BUDGET.per).count();
        assert!(first_window <= 100, "{first_window} requests in the first window");
    }

    #[tokio::test(start_paused = true)]
    async fn steady_load_above_the_budget_is_held_to_it() {
        let limiter = Arc::new(Limiter::new(Some(BUDGET)));
        // Arrivals every 40 ms: a quarter above the budget's rate, for a minute.
        let mut tasks = Vec::new();
        for n in 0..1500u64 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(40 * n)).await;
                one_request(limiter, n, Duration::from_millis(2000)).await
            }));
        }
        let mut counted = Vec::new();
        for task in tasks {
            counted.push(task.await.unwrap());
        }
        assert_eq!(most_in_any_window(counted, BUDGET.per), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_slower_than_the_window_keep_their_place_until_they_come() {
        let budget = RateLimit::new(10, Duration::from_secs(1));
        let limiter = Arc::new(Limiter::new(Some(budget)));
        let tasks: Vec<_> = (0..64u64)
            .map(|n| {
                let limiter = limiter.clone();
                tokio::spawn(one_request(limiter, n, Duration::from_secs(3)))
            })
            .collect();
        let mut counted = Vec::new();
        for task in tasks {
            counted.push(task.await.unwrap());
        }
        assert!(most_in_any_window(counted, budget.per) <= 10);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_lets_the_whole_budget_go_at_once() {
        let limiter = Limiter::new(Some(BUDGET));
        let start = Instant::now();
        let permits: Vec<_> = futures::future::join_all((0..100).map(|_| limiter.acquire())).await;
        assert_eq!(Instant::now(), start, "no wait for the first 100");
        for permit in permits {
            limiter.observe(permit, &HeaderMap::new());
        }
        let _next = limiter.acquire().await;
        assert_eq!(
            Instant::now(),
            start + BUDGET.per,
            "the 101st waits one window after the first answers"
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
