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

use crate::store::{NewRun, Params, Store};

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
        scheduled_for: Some(tick),
        params: params.clone(),
        event: None,
        max_retries: retries,
        retry_of: None,
        script: script.to_owned(),
    }
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// Offers `automation`'s ticks to the store until `stop`: first the catch-up (the most recent
/// tick missed since the last one in the store, when the cadence catches up), then every tick as
/// it falls. Each run is pinned to `script`. `wake` is told about each new run.
#[allow(clippy::too_many_arguments)]
pub async fn run_ticks(
    store: Arc<dyn Store>,
    automation: String,
    params: Params,
    retries: u32,
    script: String,
    cadence: Cadence,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let offer = |tick: i64| {
        let store = store.clone();
        let wake = wake.clone();
        let run = tick_run(&automation, &params, retries, &script, tick);
        async move {
            match store.enqueue(run).await {
                Ok(outcome) => {
                    if outcome.created {
                        tracing::info!(automation = %outcome.automation, run_id = %outcome.run_id, tick, "schedule fired");
                        wake.notify_one();
                    }
                }
                Err(e) => tracing::error!(error = %e, tick, "could not enqueue a scheduled run"),
            }
        }
    };

    let start = now_ms();
    if cadence.catches_up() {
        match store.last_tick(&automation).await {
            Ok(Some(last)) => {
                if let Some(missed) = cadence.last_at_or_before(start).filter(|m| *m > last) {
                    offer(missed).await;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, %automation, "could not read the last tick"),
        }
    }

    let mut after = start;
    loop {
        let Some(tick) = cadence.next_after(after) else {
            tracing::warn!(%automation, "the schedule has no further tick");
            return;
        };
        let wait = Duration::from_millis(u64::try_from(tick - now_ms()).unwrap_or(0));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let now = now_ms();
        // Woken late (a long pause, a suspended machine): the ticks in between are missed ones.
        let latest = cadence.last_at_or_before(now).unwrap_or(tick).max(tick);
        if latest > tick && !cadence.catches_up() {
            after = latest;
            continue;
        }
        offer(latest).await;
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
