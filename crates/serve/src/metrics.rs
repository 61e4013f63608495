//! `/metrics`: Prometheus text.
//!
//! Run counts by automation and status, and the queue depth, are read from the store at each
//! scrape (so several instances sharing a store agree); durations, action calls and webhook
//! outcomes are counted by this instance as they happen.

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
struct DeliveryLabels {
    automation: String,
    result: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Gauge>,
    queue_depth: Gauge,
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
        let runs = Family::<RunLabels, Gauge>::default();
        registry.register("runs", "Runs in the store, by automation and status", runs.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Runs waiting to start", queue_depth.clone());
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
            runs,
            queue_depth,
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

    /// The exposition, with the store's counts as of now.
    pub fn render(&self, stats: &Stats) -> String {
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
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
