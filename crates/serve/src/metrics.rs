//! `/metrics`: Prometheus text.
//!
//! Run counts by automation and status, the queue depth and the oldest queued run's age are
//! read from the store at each scrape (so several instances sharing a store agree); durations,
//! action calls, webhook outcomes, lost leases, failed completions, store errors and ticks are
//! counted by this instance as they happen. When the store does not answer, the page is still
//! served with this instance's own metrics and `runbook_store_up 0`, without the store's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::Stats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    automation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AutomationLabels {
    automation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TickLabels {
    automation: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    automation: String,
    result: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// The gauges read from the store, left out when it does not answer.
    store_registry: Registry,
    runs: Family<RunLabels, Gauge>,
    queue_depth: Gauge,
    oldest_queued: Gauge<f64, std::sync::atomic::AtomicU64>,
    store_up: Gauge,
    lost_leases: Family<AutomationLabels, Counter>,
    failed_completions: Family<AutomationLabels, Counter>,
    store_errors: Family<OperationLabels, Counter>,
    missed_ticks: Family<AutomationLabels, Counter>,
    skipped_ticks: Family<TickLabels, Counter>,
    finished: Family<RunLabels, Counter>,
    durations: Family<AutomationLabels, Histogram>,
    calls: Family<CallLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("runbook");
        let mut store_registry = Registry::with_prefix("runbook");
        let runs = Family::<RunLabels, Gauge>::default();
        store_registry.register("runs", "Runs in the store, by automation and status", runs.clone());
        let queue_depth = Gauge::default();
        store_registry.register("queue_depth", "Runs waiting to start", queue_depth.clone());
        let oldest_queued = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        store_registry.register(
            "oldest_queued_seconds",
            "How long the oldest queued run whose time has come has waited (0: none waits)",
            oldest_queued.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 when the store answered this scrape within store_timeout, else 0 (and the store's gauges are left out)",
            store_up.clone(),
        );
        let lost_leases = Family::<AutomationLabels, Counter>::default();
        registry.register(
            "leases_lost",
            "Attempts stopped because their run's lease was lost, by automation",
            lost_leases.clone(),
        );
        let failed_completions = Family::<AutomationLabels, Counter>::default();
        registry.register(
            "completions_failed",
            "Attempts whose end could not be recorded (the run is queued again when its lease lapses), by automation",
            failed_completions.clone(),
        );
        let store_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Store calls that failed or did not answer in time, by operation",
            store_errors.clone(),
        );
        let missed_ticks = Family::<AutomationLabels, Counter>::default();
        registry.register(
            "ticks_missed",
            "Schedule ticks that could not be queued before the next tick fell (store down, process stalled), by automation",
            missed_ticks.clone(),
        );
        let skipped_ticks = Family::<TickLabels, Counter>::default();
        registry.register(
            "ticks_skipped",
            "Schedule ticks skipped by policy, by automation and reason (overlap, queue_full)",
            skipped_ticks.clone(),
        );
        let finished = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs_finished",
            "Runs this instance finished, by automation and status",
            finished.clone(),
        );
        let durations = Family::<AutomationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 18))
        });
        registry.register(
            "run_duration_seconds",
            "How long runs took, by automation",
            durations.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register("action_calls", "Action calls, by provider and outcome", calls.clone());
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "webhook_rejections",
            "Webhook deliveries refused, by reason",
            rejections.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries accepted, by automation and result",
            deliveries.clone(),
        );
        Metrics {
            registry,
            store_registry,
            runs,
            queue_depth,
            oldest_queued,
            store_up,
            lost_leases,
            failed_completions,
            store_errors,
            missed_ticks,
            skipped_ticks,
            finished,
            durations,
            calls,
            rejections,
            deliveries,
        }
    }

    /// A run finished with `status` after `seconds`.
    pub fn run_finished(&self, automation: &str, status: &str, seconds: f64) {
        self.finished
            .get_or_create(&RunLabels {
                automation: automation.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        self.durations
            .get_or_create(&AutomationLabels {
                automation: automation.to_owned(),
            })
            .observe(seconds);
    }

    /// An action call of `provider` ended with `outcome` (`ok`, `error`, ...).
    pub fn action_call(&self, provider: &str, outcome: &str) {
        self.calls
            .get_or_create(&CallLabels {
                provider: provider.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A webhook delivery was refused.
    pub fn rejected(&self, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A webhook delivery was accepted (`accepted` or `duplicate`).
    pub fn delivered(&self, automation: &str, result: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                automation: automation.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// An attempt of `automation` lost its lease.
    pub fn lease_lost(&self, automation: &str) {
        self.lost_leases
            .get_or_create(&AutomationLabels {
                automation: automation.to_owned(),
            })
            .inc();
    }

    /// An attempt of `automation` could not record how it ended.
    pub fn completion_failed(&self, automation: &str) {
        self.failed_completions
            .get_or_create(&AutomationLabels {
                automation: automation.to_owned(),
            })
            .inc();
    }

    /// A store call (`operation`: enqueue, claim, heartbeat, ...) failed or timed out.
    pub fn store_error(&self, operation: &str) {
        self.store_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
            })
            .inc();
    }

    /// `n` ticks of `automation` were missed.
    pub fn ticks_missed(&self, automation: &str, n: u64) {
        self.missed_ticks
            .get_or_create(&AutomationLabels {
                automation: automation.to_owned(),
            })
            .inc_by(n);
    }

    /// A tick of `automation` was skipped for `reason`.
    pub fn tick_skipped(&self, automation: &str, reason: &str) {
        self.skipped_ticks
            .get_or_create(&TickLabels {
                automation: automation.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The exposition, with the store's counts as of now, or (`None`: the store did not answer)
    /// without them and with `runbook_store_up 0`.
    pub fn render(&self, stats: Option<&Stats>) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        self.store_up.set(i64::from(stats.is_some()));
        let mut out = String::new();
        let mut written = encode_registry(&mut out, &self.registry);
        if let Some(stats) = stats {
            self.runs.clear();
            for ((automation, status), n) in &stats.runs {
                self.runs
                    .get_or_create(&RunLabels {
                        automation: automation.clone(),
                        status: status.as_str().to_owned(),
                    })
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
            self.queue_depth.set(i64::try_from(stats.queued()).unwrap_or(i64::MAX));
            self.oldest_queued
                .set(stats.oldest_queued_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
            written = written.and_then(|()| encode_registry(&mut out, &self.store_registry));
        }
        if written.and_then(|()| encode_eof(&mut out)).is_err() {
            out.clear();
        }
        out
    }
}
