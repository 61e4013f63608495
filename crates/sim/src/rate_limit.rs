//! The limiters behind [`RateLimit`](crate::RateLimit): a fixed window, or a silent sliding one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{RateLimit, RateLimitMode};

/// A simulator's limiter, counted as its [`RateLimitMode`] says.
#[derive(Debug)]
pub(crate) enum Limiter {
    Fixed(FixedWindow),
    Sliding(SlidingWindow),
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit, mode: RateLimitMode) -> Limiter {
        match mode {
            RateLimitMode::FixedWindow => Limiter::Fixed(FixedWindow::new(limit)),
            RateLimitMode::SlidingWindowSilent => Limiter::Sliding(SlidingWindow::new(limit)),
        }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admission {
        match self {
            Limiter::Fixed(window) => window.admit(now),
            Limiter::Sliding(window) => window.admit(now),
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        match self {
            Limiter::Fixed(window) => window.limit,
            Limiter::Sliding(window) => window.limit,
        }
    }

    /// Whether answers may carry `Ratelimit` headers.
    pub(crate) fn advertises(&self) -> bool {
        matches!(self, Limiter::Fixed(_))
    }
}

/// Counts the requests admitted in the last `window` at each arrival; a refused request does not
/// count.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    limit: RateLimit,
    admitted: VecDeque<Instant>,
}

impl SlidingWindow {
    pub(crate) fn new(limit: RateLimit) -> SlidingWindow {
        SlidingWindow {
            limit,
            admitted: VecDeque::new(),
        }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admission {
        let window = self.limit.window;
        while self.admitted.front().is_some_and(|at| *at + window <= now) {
            self.admitted.pop_front();
        }
        let oldest = self.admitted.front().copied().unwrap_or(now);
        let resets_in = (oldest + window).saturating_duration_since(now);
        if self.admitted.len() >= self.limit.requests as usize {
            return Admission::Limited {
                limit: self.limit,
                resets_in,
            };
        }
        self.admitted.push_back(now);
        Admission::Allowed {
            limit: self.limit,
            remaining: self.limit.requests - self.admitted.len() as u32,
            resets_in,
        }
    }
}

/// A fixed window that opens with the first request after the previous window closed.
#[derive(Debug)]
pub(crate) struct FixedWindow {
    limit: RateLimit,
    opened: Option<Instant>,
    admitted: u32,
}

/// The limiter's verdict on one request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Admission {
    /// Within budget: `remaining` requests are left until the window closes in `resets_in`.
    Allowed {
        limit: RateLimit,
        remaining: u32,
        resets_in: Duration,
    },
    /// Over budget: blocked until the window closes in `resets_in`.
    Limited { limit: RateLimit, resets_in: Duration },
}

impl FixedWindow {
    pub(crate) fn new(limit: RateLimit) -> FixedWindow {
        FixedWindow {
            limit,
            opened: None,
            admitted: 0,
        }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admission {
        let window = self.limit.window;
        let opened = match self.opened {
            Some(opened) if now < opened + window => opened,
            _ => {
                self.opened = Some(now);
                self.admitted = 0;
                now
            }
        };
        let resets_in = (opened + window).saturating_duration_since(now);
        if self.admitted >= self.limit.requests {
            return Admission::Limited {
                limit: self.limit,
                resets_in,
            };
        }
        self.admitted += 1;
        Admission::Allowed {
            limit: self.limit,
            remaining: self.limit.requests - self.admitted,
            resets_in,
        }
    }
}

/// Whole seconds, rounded up and at least 1: what `retry-after` and `Ratelimit: t=` carry, since
/// a client told "0" would retry at once and be blocked again.
pub(crate) fn whole_seconds_up(duration: Duration) -> u64 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_blocks_until_it_closes_then_reopens() {
        let limit = RateLimit {
            requests: 2,
            window: Duration::from_secs(10),
        };
        let mut window = FixedWindow::new(limit);
        let start = Instant::now();
        assert!(matches!(window.admit(start), Admission::Allowed { remaining: 1, .. }));
        assert!(matches!(
            window.admit(start + Duration::from_secs(1)),
            Admission::Allowed { remaining: 0, .. }
        ));
        match window.admit(start + Duration::from_millis(2500)) {
            Admission::Limited { resets_in, .. } => {
                assert_eq!(resets_in, Duration::from_millis(7500));
                assert_eq!(whole_seconds_up(resets_in), 8);
            }
            other => panic!("expected a 429, got {other:?}"),
        }
        assert!(matches!(
            window.admit(start + Duration::from_secs(10)),
            Admission::Allowed { remaining: 1, .. }
        ));
    }

    #[test]
    fn the_sliding_window_counts_the_last_window_at_each_arrival() {
        let limit = RateLimit {
            requests: 2,
            window: Duration::from_secs(10),
        };
        let mut window = SlidingWindow::new(limit);
        let start = Instant::now();
        assert!(matches!(window.admit(start), Admission::Allowed { .. }));
        assert!(matches!(
            window.admit(start + Duration::from_secs(6)),
            Admission::Allowed { .. }
        ));
        // A fixed window would reopen at 10 s and admit two more; this one frees one place then.
        match window.admit(start + Duration::from_secs(9)) {
            Admission::Limited { resets_in, .. } => assert_eq!(resets_in, Duration::from_secs(1)),
            other => panic!("expected a 429, got {other:?}"),
        }
        assert!(matches!(
            window.admit(start + Duration::from_secs(10)),
            Admission::Allowed { .. }
        ));
        assert!(matches!(
            window.admit(start + Duration::from_secs(11)),
            Admission::Limited { .. }
        ));
        assert!(matches!(
            window.admit(start + Duration::from_secs(16)),
            Admission::Allowed { .. }
        ));
    }

    #[test]
    fn seconds_round_up_and_never_reach_zero() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds_up(Duration::from_millis(3001)), 4);
    }
}
