//! The knobs and records every simulator has: latency, rate limit, faults, request log and the
//! in-flight gauge.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::lock::lock;
use crate::rate_limit::{Admission, Limiter};
use crate::{Fault, LoggedRequest, RateLimit, RateLimitMode, SimOptions};

/// Shared by the gate (which applies the knobs per request) and the public handle (which turns
/// them).
#[derive(Debug)]
pub(crate) struct Control {
    latency: Mutex<Duration>,
    limiter: Mutex<Option<Limiter>>,
    mode: Mutex<RateLimitMode>,
    faults: Mutex<VecDeque<Fault>>,
    /// Completed requests keyed by arrival number, kept sorted so the log reads in arrival order
    /// even when a slow request finishes after a later fast one.
    log: Mutex<Vec<(u64, LoggedRequest)>>,
    /// Requests that arrived before the last `clear_requests` stay out of the log, even when
    /// they finish after it.
    log_floor: AtomicU64,
    arrivals: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Holds a request's place in the in-flight gauge until it is answered or its connection drops.
pub(crate) struct InFlight<'a>(&'a Control);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Control {
    pub(crate) fn new(opts: &SimOptions) -> Control {
        Control {
            latency: Mutex::new(opts.latency),
            limiter: Mutex::new(opts.rate_limit.map(|l| Limiter::new(l, opts.rate_limit_mode))),
            mode: Mutex::new(opts.rate_limit_mode),
            faults: Mutex::new(VecDeque::new()),
            log: Mutex::new(Vec::new()),
            log_floor: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// Registers an arriving request: its arrival number and its place in the in-flight gauge.
    pub(crate) fn arrive(&self) -> (u64, InFlight<'_>) {
        let number = self.arrivals.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        (number, InFlight(self))
    }

    pub(crate) fn take_fault(&self) -> Option<Fault> {
        lock(&self.faults).pop_front()
    }

    /// `None` when no limit is set; with the verdict, whether the answer may say what is left.
    pub(crate) fn admit(&self, now: Instant) -> Option<(Admission, bool)> {
        lock(&self.limiter)
            .as_mut()
            .map(|limiter| (limiter.admit(now), limiter.advertises()))
    }

    pub(crate) fn latency(&self) -> Duration {
        *lock(&self.latency)
    }

    pub(crate) fn record(&self, number: u64, request: LoggedRequest) {
        let mut log = lock(&self.log);
        if number < self.log_floor.load(Ordering::SeqCst) {
            return;
        }
        let at = log.partition_point(|(n, _)| *n < number);
        log.insert(at, (number, request));
    }

    pub(crate) fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.log).iter().map(|(_, r)| r.clone()).collect()
    }

    pub(crate) fn clear_requests(&self) {
        let mut log = lock(&self.log);
        self.log_floor
            .store(self.arrivals.load(Ordering::SeqCst), Ordering::SeqCst);
        log.clear();
        self.max_in_flight
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    pub(crate) fn inject(&self, fault: Fault, count: usize) {
        lock(&self.faults).extend(std::iter::repeat_n(fault, count));
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    /// Replacing the limit also starts a fresh window.
    pub(crate) fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let mode = *lock(&self.mode);
        *lock(&self.limiter) = limit.map(|l| Limiter::new(l, mode));
    }

    /// Changes how the limit is counted (starting a fresh window).
    pub(crate) fn set_rate_limit_mode(&self, mode: RateLimitMode) {
        *lock(&self.mode) = mode;
        let mut limiter = lock(&self.limiter);
        if let Some(limit) = limiter.as_ref().map(Limiter::limit) {
            *limiter = Some(Limiter::new(limit, mode));
        }
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}
