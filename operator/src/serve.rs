//! The operator's small HTTP endpoint: `/metrics` (Prometheus text), `/healthz`
//! (the process runs) and `/readyz` (started: the admission webhook, when
//! enabled, listens). A standby replica is ready too: it serves the webhook, and
//! a Deployment's rolling update needs its new pods to become ready while the old
//! leader still holds the Lease. Which replica leads is the
//! `wasmplug_operator_leader` metric.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use wasmplug_host::server::connections::Plain;
use wasmplug_host::server::{ConnectionLimits, serve_connections};

use crate::metrics::Metrics;

/// What the endpoint reports.
#[derive(Debug)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    ready: AtomicBool,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Health { metrics, ready: AtomicBool::new(false) }
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// Serves under `limits` until the task is dropped.
pub async fn serve(listener: TcpListener, limits: ConnectionLimits, health: Arc<Health>) {
    let service = move |request: Request<Incoming>| {
        let health = health.clone();
        async move { respond(&health, &request) }
    };
    serve_connections(listener, limits, Plain, service, std::future::pending()).await;
}

fn respond<B>(health: &Health, request: &Request<B>) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, health.metrics.encode()),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if !health.ready.load(Ordering::Acquire) => {
            (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned())
        }
        "/readyz" if health.metrics.is_leading() => (StatusCode::OK, "ready, leading\n".to_owned()),
        "/readyz" => (StatusCode::OK, "ready, standing by: another replica leads\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found; try /metrics, /healthz or /readyz\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
