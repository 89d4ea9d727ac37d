//! The host's HTTP server (hyper 1): the JSON API over the registry, with
//! connection limits ([`connections`]), admission of bodies and calls
//! ([`admission`]), health, readiness and metrics.
//!
//! Handler calls run on the blocking pool: they are CPU-bound and may run until
//! their time limit.

mod admission;
mod body;
pub mod connections;
mod error;
mod metrics;
mod routes;
pub mod wire;

pub use connections::{ConnectionLimits, serve_connections};
pub use error::ApiError;
pub use metrics::Metrics;
pub use routes::SERVED_BY;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::{Request, Response};
use tokio::net::TcpListener;

use crate::registry::Registry;
use admission::Admission;

/// Limits of the HTTP layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once, read or being read; a request waits
    /// for room before its body is read.
    pub max_body_bytes_in_flight: usize,
    /// Handler calls running at once.
    pub max_concurrent_calls: usize,
    /// Handler calls of one format running at once.
    pub max_calls_per_format: usize,
    /// Longest wait for body room or a call slot (503 `busy` beyond).
    pub queue_timeout: Duration,
    pub connections: ConnectionLimits,
}

impl ServerConfig {
    /// The default of [`ServerConfig::max_calls_per_format`]: half the call
    /// slots or half the CPUs, whichever is fewer (at least 1). Calls are
    /// CPU-bound, so one format keeps its hands off the other half.
    pub fn default_calls_per_format(max_concurrent_calls: usize) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        (max_concurrent_calls / 2).min(cpus / 2).max(1)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 32 << 20,
            max_body_bytes_in_flight: 8 * (32 << 20),
            max_concurrent_calls: 8,
            max_calls_per_format: ServerConfig::default_calls_per_format(8),
            queue_timeout: Duration::from_secs(10),
            connections: ConnectionLimits::default(),
        }
    }
}

/// Everything a request needs.
#[derive(Debug)]
pub struct App {
    registry: Arc<Registry>,
    config: ServerConfig,
    admission: Admission,
    metrics: Metrics,
    ready: AtomicBool,
}

impl App {
    /// `large_calls`: the plugin runtime's (see
    /// [`Runtime::large_call_metrics`](crate::runtime::Runtime::large_call_metrics)),
    /// shown in `/metrics`.
    pub fn new(
        registry: Arc<Registry>,
        config: ServerConfig,
        large_calls: Option<&crate::runtime::LargeCallMetrics>,
    ) -> Arc<Self> {
        Arc::new(App {
            metrics: Metrics::new(&registry, large_calls),
            registry,
            admission: Admission::new(
                config.max_body_bytes_in_flight,
                config.max_concurrent_calls,
                config.max_calls_per_format,
                config.queue_timeout,
            ),
            config,
            ready: AtomicBool::new(false),
        })
    }

    /// Marks the first full sync as done; `/readyz` answers ok from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Where writes of the host's record are counted, for `/metrics`.
    pub fn record_metrics(&self) -> Arc<crate::format_host::RecordMetrics> {
        self.metrics.records.clone()
    }

    /// Where artifact downloads are counted, for `/metrics`.
    pub fn download_metrics(&self) -> Arc<crate::download::DownloadMetrics> {
        self.metrics.downloads.clone()
    }

    /// Answers one request.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        routes::route(self, request).await
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then refuses new calls
/// and lets open connections finish (up to 10 s).
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.config.connections;
    let handler = app.clone();
    let service = move |request| handler.clone().handle(request);
    let shutdown = async {
        shutdown.await;
        app.admission.close();
    };
    serve_connections(listener, limits, connections::Plain, service, shutdown).await;
}
