//! Prometheus metrics, served on `GET /metrics` in the OpenMetrics text format.
//!
//! Labels are low-cardinality by construction: channel and rule names come from the
//! configuration, results from fixed sets. No label ever holds payload data.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::outbox::DeliveryState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub channel: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// Every metric herald exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub webhooks: Family<ResultLabel, Counter>,
    pub intake_seconds: Histogram,
    pub deliveries_planned: Family<ChannelLabel, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub send_seconds: Family<ChannelLabel, Histogram>,
    pub config_generation: Gauge,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub outbox_deliveries: Family<StateLabel, Gauge>,
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
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("herald");
        let webhooks = Family::<ResultLabel, Counter>::default();
        registry.register(
            "webhooks",
            "Webhooks received, by result: accepted, ignored, duplicate, rejected, unavailable",
            webhooks.clone(),
        );
        let intake_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "intake_seconds",
            "Time from request to durable commit",
            intake_seconds.clone(),
        );
        let deliveries_planned = Family::<ChannelLabel, Counter>::default();
        registry.register(
            "deliveries_planned",
            "Deliveries committed to the outbox",
            deliveries_planned.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts, by outcome: delivered, transient, permanent, expired",
            attempts.clone(),
        );
        let send_seconds = Family::<ChannelLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register("send_seconds", "Time one send took", send_seconds.clone());
        let config_generation = Gauge::default();
        registry.register(
            "config_generation",
            "Number of the configuration generation in use",
            config_generation.clone(),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result: success, failure",
            config_reloads.clone(),
        );
        let outbox_deliveries = Family::<StateLabel, Gauge>::default();
        registry.register(
            "outbox_deliveries",
            "Deliveries in the outbox, by state",
            outbox_deliveries.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            webhooks,
            intake_seconds,
            deliveries_planned,
            attempts,
            send_seconds,
            config_generation,
            config_reloads,
            outbox_deliveries,
        }
    }

    pub fn count_webhook(&self, result: &str) {
        self.webhooks
            .get_or_create_owned(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn count_reload(&self, result: &str) {
        self.config_reloads
            .get_or_create_owned(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn count_attempt(&self, channel: &str, outcome: &str) {
        self.attempts
            .get_or_create_owned(&AttemptLabels {
                channel: channel.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn set_outbox_counts(&self, counts: &[(DeliveryState, u64)]) {
        for (state, count) in counts {
            self.outbox_deliveries
                .get_or_create_owned(&StateLabel {
                    state: state.as_str().to_string(),
                })
                .set(*count as i64);
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
