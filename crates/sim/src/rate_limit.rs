//! The fixed-window limiter behind [`RateLimit`](crate::RateLimit).

use std::time::{Duration, Instant};

use crate::RateLimit;

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
    fn seconds_round_up_and_never_reach_zero() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds_up(Duration::from_millis(3001)), 4);
    }
}
