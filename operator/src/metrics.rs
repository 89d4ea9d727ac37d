//! The operator's Prometheus metrics: reconciles by result, fetch duration by
//! source kind, entries in the store, whether this replica leads, and the
//! artifact server's requests by result and bytes sent, and the host rollup's
//! status writes. Labels
//! are fixed, low-cardinality words.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ReconcileResult {
    /// The spec was (re)published.
    Published,
    /// Nothing to do: the status already reflects the spec.
    UpToDate,
    /// A permanent failure, reported in status.
    Failed,
    /// A transient failure, reported in status and retried.
    Retrying,
    /// An API error; retried.
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: ReconcileResult,
}

/// How a request to the artifact server ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ArtifactRequest {
    /// The file was sent.
    Served,
    /// No such path, or not in this replica's store.
    NotFound,
    /// No token, or one the API server did not accept.
    Unauthenticated,
    /// A valid token of a ServiceAccount that is not a reader.
    Forbidden,
    /// Not a GET.
    BadRequest,
    /// The token could not be checked, or the file not read.
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArtifactLabels {
    result: ArtifactRequest,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// The metrics, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    reconciles: Family<ResultLabels, Counter>,
    fetch_duration: Family<SourceLabels, Histogram>,
    artifacts: Gauge,
    leader: Gauge,
    artifact_requests: Family<ArtifactLabels, Counter>,
    artifact_bytes: Counter,
    rollup_writes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasmplug_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let fetch_duration = Family::<SourceLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        let artifacts = Gauge::default();
        registry.register("reconciles", "FormatPlugin reconciles by result", reconciles.clone());
        registry.register(
            "fetch_duration_seconds",
            "Time to fetch a plugin package, by source kind",
            fetch_duration.clone(),
        );
        registry.register("store_artifacts", "Entries published in the store", artifacts.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the Lease and reconciles, else 0", leader.clone());
        let artifact_requests = Family::<ArtifactLabels, Counter>::default();
        registry.register("artifact_requests", "Artifact server requests by result", artifact_requests.clone());
        let artifact_bytes = Counter::default();
        registry.register("artifact_served_bytes", "Bytes of artifact files sent", artifact_bytes.clone());
        let rollup_writes = Counter::default();
        registry.register(
            "host_rollup_writes",
            "Writes of FormatPlugins' status.hosts and Serving condition",
            rollup_writes.clone(),
        );
        Metrics {
            registry: std::sync::Mutex::new(registry),
            reconciles,
            fetch_duration,
            artifacts,
            leader,
            artifact_requests,
            artifact_bytes,
            rollup_writes,
        }
    }

    /// Counts one write of a FormatPlugin's host rollup.
    pub fn rollup_written(&self) {
        self.rollup_writes.inc();
    }

    /// Adds the mirror's download metrics (`wasmplug_operator_artifact_downloads_total`, …).
    pub fn register_downloads(&self, downloads: &wasmplug_host::download::DownloadMetrics) {
        downloads.register(&mut self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn artifact_request(&self, result: ArtifactRequest) {
        self.artifact_requests.get_or_create(&ArtifactLabels { result }).inc();
    }

    pub fn artifact_bytes_served(&self, bytes: usize) {
        self.artifact_bytes.inc_by(bytes as u64);
    }

    pub fn reconciled(&self, result: ReconcileResult) {
        self.reconciles.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn fetched(&self, source: &'static str, took: Duration) {
        self.fetch_duration.get_or_create(&SourceLabels { source }).observe(took.as_secs_f64());
    }

    pub fn set_artifacts(&self, count: usize) {
        self.artifacts.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn set_leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Whether this replica leads, as last set.
    pub fn is_leading(&self) -> bool {
        self.leader.get() == 1
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}
