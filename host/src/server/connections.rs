//! Accepting HTTP/1 connections under limits, for every server wasmplug runs
//! (the host's API, the operator's webhook and metrics endpoint).
//!
//! No connection can hold the server: open connections are capped (more wait
//! in the kernel's backlog), a TLS handshake and a request's head must arrive in
//! time (the head's timer also closes idle keep-alive connections), a peer that
//! stops reading our response is dropped, and running out of file descriptors
//! backs the accept loop off instead of spinning. Reading request bodies in time
//! is the service's business ([`ConnectionLimits::body_read_timeout`]).
//!
//! It must not know what the services do.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

/// Limits of one server's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for a request's head to arrive, counted from when the connection is
    /// ready for it (so also how long an idle keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// Time for a request's whole body to arrive (applied by the service).
    pub body_read_timeout: Duration,
    /// Time a response may wait for the peer to read some of it.
    pub write_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// The part of a connection before HTTP: nothing, or TLS.
pub trait Handshake: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn handshake(&self, stream: Guarded) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// A TCP stream whose writes time out when the peer stops reading.
pub type Guarded = Pin<Box<TimeoutStream<TcpStream>>>;

/// Plain HTTP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = Guarded;

    async fn handshake(&self, stream: Guarded) -> io::Result<Guarded> {
        Ok(stream)
    }
}

/// How long connections get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after the process ran out of file descriptors (or memory) to accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `service` on `listener` under `limits` until `shutdown` completes,
/// then lets open connections finish (up to 10 s).
pub async fn serve_connections<H, S, F, B>(
    listener: TcpListener,
    limits: ConnectionLimits,
    handshake: H,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    H: Handshake,
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &open) => accepted,
            () = &mut shutdown => break,
        };
        let (stream, permit) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_resource_exhaustion(&error) => {
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(%error, "failed to accept a connection; backing off");
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "failed to accept a connection");
                continue;
            }
        };
        let mut guarded = TimeoutStream::new(stream);
        guarded.set_write_timeout(Some(limits.write_timeout));
        let (handshake, service) = (handshake.clone(), service.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let io = match tokio::time::timeout(limits.handshake_timeout, handshake.handshake(Box::pin(guarded))).await
            {
                Ok(Ok(io)) => io,
                Ok(Err(error)) => return tracing::debug!(%error, "handshake failed"),
                Err(_) => return tracing::debug!("handshake timed out"),
            };
            let service = service_fn(move |request| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service(request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(io), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Waits for room for one more connection, then accepts it.
async fn accept(
    listener: &TcpListener,
    open: &Arc<Semaphore>,
) -> io::Result<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let permit = open.clone().acquire_owned().await.map_err(io::Error::other)?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, permit))
}

/// Errors that mean the process (or system) is out of something accepting
/// needs; retrying at once would spin.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
