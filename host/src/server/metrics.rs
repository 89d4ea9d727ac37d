//! Prometheus metrics of the host: calls by format, operation and outcome, call
//! latency, the formats known by state, how often formats were installed,
//! artifact downloads ([`crate::download`]), writes of the host's record
//! ([`crate::format_host`]) and large calls by pool ([`crate::runtime`]).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;

use crate::download::DownloadMetrics;
use crate::format_host::RecordMetrics;
use crate::registry::{Registry, State};
use crate::runtime::LargeCallMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    format: String,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    format: String,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: PromRegistry,
    calls: Family<CallLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    formats: Family<StateLabels, Gauge>,
    pub downloads: Arc<DownloadMetrics>,
    pub records: Arc<RecordMetrics>,
}

impl Metrics {
    /// `large_calls`: the plugin runtime's large-call pool use, where it has one.
    pub fn new(formats: &Registry, large_calls: Option<&LargeCallMetrics>) -> Self {
        let mut registry = PromRegistry::with_prefix("wasmplug_host");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register("calls", "Handler calls by format, operation and outcome", calls.clone());
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
        });
        registry.register("call_duration_seconds", "Handler call latency, body read excluded", latency.clone());
        registry.register("installs", "Formats installed (loaded or reloaded) since start", formats.installs().clone());
        let states = Family::<StateLabels, Gauge>::default();
        registry.register("formats", "Formats this host knows, by state", states.clone());
        let downloads = Arc::new(DownloadMetrics::default());
        downloads.register(&mut registry);
        let records = Arc::new(RecordMetrics::default());
        records.register(&mut registry);
        if let Some(large_calls) = large_calls {
            large_calls.register(&mut registry);
        }
        Metrics { registry, calls, latency, formats: states, downloads, records }
    }

    /// Counts one call; `outcome` is "ok" or an error code.
    pub fn observe_call(&self, format: &str, operation: &'static str, outcome: &'static str, took: Duration) {
        let format = format.to_owned();
        self.calls.get_or_create(&CallLabels { format: format.clone(), operation, outcome }).inc();
        self.latency.get_or_create(&LatencyLabels { format, operation }).observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition, with the format gauges refreshed from `formats`.
    pub fn render(&self, formats: &Registry) -> String {
        let snapshot = formats.snapshot();
        for state in [State::Active, State::Disabled, State::Failed, State::Quarantined, State::ChangingHands] {
            let count = snapshot.formats().filter(|f| f.state() == state).count();
            self.formats.get_or_create(&StateLabels { state: state.as_str() }).set(count as i64);
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "failed to encode metrics");
        }
        text
    }
}
