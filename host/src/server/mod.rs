//! The host's HTTP server (hyper 1): the JSON API over the registry, with a body
//! size limit, a cap on concurrent handler calls, health, readiness and metrics.
//!
//! Handler calls run on the blocking pool: they are CPU-bound and may run until
//! their time limit.

mod error;
mod metrics;
mod routes;
mod wire;

pub use error::ApiError;
pub use metrics::Metrics;
pub use routes::SERVED_BY;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::registry::Registry;

/// Limits of the HTTP layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Handler calls running at once; more wait for a turn.
    pub max_concurrent_calls: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { max_body_bytes: 64 << 20, max_concurrent_calls: 64 }
    }
}

/// Everything a request needs.
#[derive(Debug)]
pub struct App {
    registry: Arc<Registry>,
    config: ServerConfig,
    calls: Semaphore,
    metrics: Metrics,
    ready: AtomicBool,
}

impl App {
    pub fn new(registry: Arc<Registry>, config: ServerConfig) -> Arc<Self> {
        Arc::new(App {
            metrics: Metrics::new(&registry),
            registry,
            calls: Semaphore::new(config.max_concurrent_calls.max(1)),
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

    /// Answers one request.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        routes::route(self, request).await
    }
}

/// How long connections get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// connections finish (up to [`DRAIN_TIMEOUT`]).
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "failed to accept a connection");
                        continue;
                    }
                };
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.handle(request).await) }
                });
                let connection = graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}
