//! Schedules and polling intervals: when ticks fall, and the task that turns each tick into
//! exactly one queued run.
//!
//! A tick's time is part of its run's idempotency key (`schedule:<unix ms>`), so a tick is
//! enqueued at most once however many times it is offered: after a restart, or by several
//! instances sharing a store. Interval ticks fall on multiples of the interval since the Unix
//! epoch, so that every instance agrees on them.

use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use croner::parser::CronParser;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio_util::sync::CancellationToken;

use crate::config::{Automation, Overlap};
use crate::metrics::Metrics;
use crate::store::{CancelError, NewRun, Params, RunFilter, RunStatus, Store};

/// When an automation's ticks fall.
#[derive(Debug, Clone)]
pub struct Cadence {
    kind: Kind,
    catch_up_once: bool,
    text: String,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<Cron>, TimeZone),
    Every(i64),
}

impl Cadence {
    /// A cron schedule (seconds optional: `"0 */15 * * * *"` or `"*/15 * * * *"`), in `tz` (UTC by
    /// default). `catch_up_once`: after downtime, the most recent missed tick runs once.
    pub fn cron(expr: &str, tz: Option<&str>, catch_up_once: bool) -> Result<Cadence, String> {
        let cron = CronParser::new().parse(expr).map_err(|e| {
            format!(
                "schedule \"{expr}\" is not a cron expression ({e}); write [seconds] minutes hours day-of-month month \
                 day-of-week, e.g. \"0 */15 * * * *\""
            )
        })?;
        let zone = match tz {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                format!("tz = \"{name}\" is not a time zone; write an IANA name such as \"Europe/Helsinki\"")
            })?,
        };
        let text = match tz {
            Some(name) => format!("{expr} ({name})"),
            None => format!("{expr} (UTC)"),
        };
        Ok(Cadence {
            kind: Kind::Cron(Box::new(cron), zone),
            catch_up_once,
            text,
        })
    }

    /// A fixed interval (at least one second).
    pub fn every(period: Duration, catch_up_once: bool) -> Result<Cadence, String> {
        if period < Duration::from_secs(1) {
            return Err("every must be at least 1s".to_owned());
        }
        Ok(Cadence {
            kind: Kind::Every(i64::try_from(period.as_millis()).unwrap_or(i64::MAX)),
            catch_up_once,
            text: format!("every {}", humantime::format_duration(period)),
        })
    }

    /// Whether missed ticks are made up (once) after downtime.
    pub fn catches_up(&self) -> bool {
        self.catch_up_once
    }

    /// The first tick strictly after `after` (unix milliseconds).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        match &self.kind {
            Kind::Every(period) => Some((after.div_euclid(*period) + 1) * period),
            Kind::Cron(cron, tz) => {
                let at = Timestamp::from_millisecond(after).ok()?.to_zoned(tz.clone());
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Some(next.timestamp().as_millisecond())
            }
        }
    }

    /// The last tick at or before `at`.
    pub fn last_at_or_before(&self, at: i64) -> Option<i64> {
        match &self.kind {
            Kind::Every(period) => Some(at.div_euclid(*period) * period),
            Kind::Cron(cron, tz) => {
                let when = Timestamp::from_millisecond(at).ok()?.to_zoned(tz.clone());
                let prev = cron.find_previous_occurrence(&when, true).ok()?;
                Some(prev.timestamp().as_millisecond())
            }
        }
    }
}

impl std::fmt::Display for Cadence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The run a tick becomes, pinned to `script`.
pub fn tick_run(automation: &str, params: &Params, retries: u32, script: &str, tick: i64) -> NewRun {
    NewRun {
        automation: automation.to_owned(),
        trigger: "schedule".to_owned(),
        idem_key: Some(format!("schedule:{tick}")),
        dedup: Vec::new(),
        scheduled_for: Some(tick),
        params: params.clone(),
        event: None,
        max_retries: retries,
        retry_of: None,
        script: script.to_owned(),
        started_by: "schedule".to_owned(),
    }
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// What a tick task needs.
pub(crate) struct Ticker {
    /// The store (without the request path's deadline: a tick waits for its enqueue).
    pub store: Arc<dyn Store>,
    /// The automation.
    pub automation: Automation,
    /// Its cadence.
    pub cadence: Cadence,
    /// `[serve] queue_limit`.
    pub queue_limit: u64,
    /// Where missed and skipped ticks are counted.
    pub metrics: Arc<Metrics>,
    /// Told about each new run.
    pub wake: Arc<tokio::sync::Notify>,
    /// Shutdown.
    pub stop: CancellationToken,
}

/// How an offered tick ended.
enum Offered {
    /// Queued (or already queued).
    Stored,
    /// Skipped by policy, with the reason.
    Skipped(&'static str),
}

impl Ticker {
    /// One attempt at queueing `tick`: the overlap policy and the queue limit first.
    async fn try_offer(&self, tick: i64) -> Result<Offered, crate::store::StoreError> {
        let name = &self.automation.name;
        let backlog = self.store.backlog(name).await?;
        if self.automation.overlap == Overlap::Skip && backlog.queued + backlog.running > 0 {
            return Ok(Offered::Skipped("overlap"));
        }
        if self.automation.overlap == Overlap::Cancel && backlog.queued + backlog.running > 0 {
            self.cancel_overlapping(tick).await?;
        } else if backlog.queued >= self.queue_limit {
            return Ok(Offered::Skipped("queue_full"));
        }
        let a = &self.automation;
        let outcome = self
            .store
            .enqueue(tick_run(name, &a.params, a.retries, &a.source, tick))
            .await?;
        if outcome.created {
            tracing::info!(automation = %outcome.automation, run_id = %outcome.run_id, tick, "schedule fired");
            self.wake.notify_one();
        }
        Ok(Offered::Stored)
    }

    /// `overlap = "cancel"`: cancels the automation's queued and running runs (recorded as
    /// cancelled by `schedule`) before `tick` is queued.
    async fn cancel_overlapping(&self, tick: i64) -> Result<(), crate::store::StoreError> {
        let name = &self.automation.name;
        for status in [RunStatus::Queued, RunStatus::Running] {
            let filter = RunFilter {
                automation: Some(name.clone()),
                status: Some(status),
                limit: usize::try_from(self.queue_limit)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1000),
                ..RunFilter::default()
            };
            for run in self.store.list_summaries(&filter).await? {
                match self.store.cancel(&run.id, "schedule").await {
                    Ok(_) => {
                        tracing::info!(automation = %name, run_id = %run.id, tick, "a run overlapping the next tick is cancelled (overlap = \"cancel\")")
                    }
                    // It finished meanwhile: nothing to cancel.
                    Err(CancelError::Finished { .. } | CancelError::NoRun(_)) => {}
                    Err(CancelError::Store(e)) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Offers `tick` until it is stored or skipped, retrying a failing store with backoff until
    /// the next tick falls: then the tick is counted as missed and said so in the log.
    async fn offer(&self, tick: i64) {
        let name = &self.automation.name;
        let next = self.cadence.next_after(tick).unwrap_or(i64::MAX);
        let mut delay = Duration::from_millis(200);
        loop {
            match self.try_offer(tick).await {
                Ok(Offered::Stored) => return,
                Ok(Offered::Skipped(reason)) => {
                    tracing::info!(automation = %name, tick, reason, "schedule tick skipped");
                    self.metrics.tick_skipped(name, reason);
                    return;
                }
                Err(e) => {
                    self.metrics.store_error("tick");
                    let retry_at = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                    if retry_at >= next {
                        tracing::warn!(automation = %name, tick, error = %e, "schedule tick missed: the store did not take it before the next tick fell");
                        self.metrics.ticks_missed(name, 1);
                        return;
                    }
                    tracing::warn!(automation = %name, tick, error = %e, "could not queue a schedule tick; trying again");
                    tokio::select! {
                        () = self.stop.cancelled() => {
                            tracing::warn!(automation = %name, tick, "schedule tick missed: shutdown began before the store took it");
                            self.metrics.ticks_missed(name, 1);
                            return;
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Offers the automation's ticks to the store until `stop`: first the catch-up (the most recent
/// tick missed since the last one in the store, when the cadence catches up), then every tick as
/// it falls. A tick is never lost silently: it is queued, skipped by policy (overlap, a full
/// queue) or counted as missed (the store did not take it before the next tick fell, or the task
/// was still waiting on the store when it fell), each with its metric.
pub(crate) async fn run_ticks(ticker: Ticker) {
    let name = ticker.automation.name.clone();
    let cadence = ticker.cadence.clone();
    let start = now_ms();
    if cadence.catches_up() {
        match ticker.store.last_tick(&name).await {
            Ok(Some(last)) => {
                if let Some(missed) = cadence.last_at_or_before(start).filter(|m| *m > last) {
                    ticker.offer(missed).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                ticker.metrics.store_error("last_tick");
                tracing::error!(error = %e, automation = %name, "could not read the last tick");
            }
        }
    }

    let mut after = start;
    loop {
        let Some(tick) = cadence.next_after(after) else {
            tracing::warn!(automation = %name, "the schedule has no further tick");
            return;
        };
        let wait = Duration::from_millis(u64::try_from(tick - now_ms()).unwrap_or(0));
        tokio::select! {
            () = ticker.stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let now = now_ms();
        // Woken late (a store that took long to answer, a long pause, a suspended machine): the
        // ticks in between fell while none could be offered; they are counted as missed.
        let latest = cadence.last_at_or_before(now).unwrap_or(tick).max(tick);
        if latest > tick {
            let mut passed = 0u64;
            let mut t = tick;
            while t < latest && passed < 1_000_000 {
                passed += 1;
                t = cadence.next_after(t).unwrap_or(latest);
            }
            if !cadence.catches_up() {
                passed += 1;
            }
            tracing::warn!(automation = %name, ticks = passed, "schedule ticks missed: they fell while the previous tick was still waiting on the store (or the process was paused)");
            ticker.metrics.ticks_missed(&name, passed);
            if !cadence.catches_up() {
                after = latest;
                continue;
            }
        }
        ticker.offer(latest).await;
        after = latest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_ticks_honour_seconds_and_time_zones() {
        let every_15_min = Cadence::cron("0 */15 * * * *", None, true).unwrap();
        let t = Timestamp::from_second(1_795_255_205).unwrap().as_millisecond(); // 2026-11-21T10:00:05Z
        assert_eq!(every_15_min.next_after(t), Some((1_795_255_200 + 900) * 1000));
        assert_eq!(every_15_min.last_at_or_before(t), Some(1_795_255_200 * 1000));
        // 09:00 in Helsinki is 07:00 UTC in November.
        let nine = Cadence::cron("0 0 9 * * *", Some("Europe/Helsinki"), true).unwrap();
        let next = nine.next_after(t).unwrap();
        assert_eq!(
            Timestamp::from_millisecond(next).unwrap().to_string(),
            "2026-11-22T07:00:00Z"
        );
        assert!(
            Cadence::cron("every tuesday", None, true)
                .unwrap_err()
                .contains("not a cron expression")
        );
        assert!(
            Cadence::cron("* * * * *", Some("Mars/Olympus"), true)
                .unwrap_err()
                .contains("not a time zone")
        );
    }

    #[test]
    fn intervals_fall_on_multiples_of_the_period() {
        let five = Cadence::every(Duration::from_secs(300), true).unwrap();
        assert_eq!(five.next_after(1_000), Some(300_000));
        assert_eq!(five.next_after(300_000), Some(600_000));
        assert_eq!(five.last_at_or_before(599_999), Some(300_000));
    }
}
