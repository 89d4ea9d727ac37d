//! The egress gate: a forward proxy on 127.0.0.1 that lives for one fetch, for
//! HTTP clients that take no resolver or redirect policy of ours (oci-client
//! builds its own). The client is pointed at the gate for both HTTP and HTTPS,
//! so every connection it makes, on every redirect hop and to every token
//! service or blob store a registry names, is opened by the gate, which:
//!
//! - reads the target with the parser that checks sources and applies the host
//!   allowlist to it (trust invariant 4);
//! - resolves the name itself and connects only to addresses the policy permits,
//!   so no answer can change between the check and the connection;
//! - counts every byte that comes back, over all connections of the fetch, and
//!   cuts them when the fetch's download limit is passed (trust invariant 3:
//!   manifests, tag lists and error bodies are capped, not only blobs).
//!
//! HTTPS goes through as a CONNECT tunnel (the gate never sees the TLS session);
//! plain HTTP, for `insecure` registries, is forwarded request by request. The
//! gate closes every connection when it is dropped.
//!
//! It asks for no password: a client drops `Proxy-Authorization` from a
//! forwarded request when a redirect leaves the origin, and the gate adds no
//! reach. It listens on the operator's loopback only and opens only
//! connections the source policy allows, which any process of the operator's
//! pod could open directly.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::policy::{DestinationDenied, SourcePolicy};
use crate::source_url::SourceKind;

/// Longest wait for one TCP connection to a destination.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, io::Error>;

/// A running gate. Dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct EgressGate {
    address: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    policy: Arc<SourcePolicy>,
    /// Bytes the destinations may still send.
    remaining: AtomicU64,
    exceeded: AtomicBool,
    /// The first refusal, for the fetch's error message.
    denied: Mutex<Option<String>>,
    /// Cancelled when the gate is dropped: ends every task it started.
    stop: CancellationToken,
}

impl Drop for EgressGate {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl EgressGate {
    /// Starts a gate on 127.0.0.1 that lets its client receive at most
    /// `max_bytes` in all.
    pub async fn open(policy: Arc<SourcePolicy>, max_bytes: u64) -> io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            policy,
            remaining: AtomicU64::new(max_bytes),
            exceeded: AtomicBool::new(false),
            denied: Mutex::new(None),
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept(listener, shared.clone()));
        Ok(EgressGate { address, shared })
    }

    /// The proxy URL to give the client.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Why the gate refused a connection, if it did.
    pub fn denied(&self) -> Option<String> {
        self.shared.denied.lock().map_or(None, |denied| denied.clone())
    }

    /// Whether the destinations sent more than the gate lets through.
    pub fn exceeded(&self) -> bool {
        self.shared.exceeded.load(Ordering::SeqCst)
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = tokio::select! {
            _ = shared.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: wait rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A response goes out as head and body writes; with Nagle's algorithm the
        // second waits for the client's delayed ACK (40 ms a response).
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = shared.stop.clone();
        tokio::spawn(stop.run_until_cancelled_owned(async move {
            let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            // A client that goes away is no concern of the gate's.
            let _ = connection.await;
        }));
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match request.method() == Method::CONNECT {
        true => tunnel(shared, request).await,
        false => forward(shared, request).await,
    })
}

/// HTTPS: a tunnel to the checked destination.
async fn tunnel(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let Some(authority) = request.uri().authority().map(|a| a.as_str().to_owned()) else {
        return answer(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let target = match shared.connect("https", &authority).await {
        Ok(target) => target,
        Err(refusal) => return refusal,
    };
    let stop = shared.stop.clone();
    tokio::spawn(stop.run_until_cancelled_owned(async move {
        if let Ok(upgraded) = hyper::upgrade::on(request).await {
            relay(TokioIo::new(upgraded), target, &shared).await;
        }
    }));
    Response::new(empty())
}

/// Plain HTTP: the request, sent on to the checked destination.
async fn forward(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let uri = request.uri().clone();
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return answer(StatusCode::BAD_REQUEST, "the egress gate forwards only absolute http:// requests");
    };
    let target = match shared.connect("http", authority.as_str()).await {
        Ok(target) => target,
        Err(refusal) => return refusal,
    };
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(target)).await else {
        return answer(StatusCode::BAD_GATEWAY, "the destination did not speak HTTP");
    };
    tokio::spawn(shared.stop.clone().run_until_cancelled_owned(connection));
    let (mut parts, body) = request.into_parts();
    parts.uri = uri.path_and_query().map_or("/", |p| p.as_str()).parse().unwrap_or_default();
    parts.headers.remove(header::PROXY_AUTHORIZATION);
    parts.headers.remove("proxy-connection");
    let response = match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(error) => return answer(StatusCode::BAD_GATEWAY, &format!("the destination failed: {error}")),
    };
    let (parts, body) = response.into_parts();
    let charged = BodyStream::new(body).map(move |frame| {
        let frame = frame.map_err(io::Error::other)?;
        if let Some(data) = frame.data_ref() {
            shared.charge(data.len() as u64)?;
        }
        Ok(frame)
    });
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(charged)))
}

impl Shared {
    /// Opens a connection to `authority` for a `scheme` request, when the source
    /// policy lets sources reach it; otherwise the answer that says why not.
    async fn connect(&self, scheme: &str, authority: &str) -> Result<TcpStream, Response<Body>> {
        let url = match self.policy.url(&format!("{scheme}://{authority}/"), SourceKind::Url) {
            Ok(url) => url,
            Err(denied) => return Err(self.refuse(denied.to_string())),
        };
        let host = url.host();
        let port = url.port().unwrap_or(443);
        let addresses = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addresses) => addresses.collect::<Vec<_>>(),
            Err(error) => return Err(answer(StatusCode::BAD_GATEWAY, &format!("cannot resolve {host}: {error}"))),
        };
        let reachable: Vec<SocketAddr> =
            addresses.into_iter().filter(|address| self.policy.destinations.permits(address.ip())).collect();
        if reachable.is_empty() {
            return Err(self.refuse(DestinationDenied { host }.to_string()));
        }
        let mut last_error = None;
        for address in reachable {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(error)) => last_error = Some(error.to_string()),
                Err(_) => last_error = Some(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
            }
        }
        let reason = last_error.unwrap_or_default();
        Err(answer(StatusCode::BAD_GATEWAY, &format!("cannot connect to {host}:{port}: {reason}")))
    }

    fn refuse(&self, reason: String) -> Response<Body> {
        if let Ok(mut denied) = self.denied.lock() {
            denied.get_or_insert_with(|| reason.clone());
        }
        answer(StatusCode::FORBIDDEN, &reason)
    }

    /// Takes `bytes` from what the destinations may still send.
    fn charge(&self, bytes: u64) -> io::Result<()> {
        let taken = self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(bytes));
        if taken.is_err() {
            self.exceeded.store(true, Ordering::SeqCst);
            self.stop.cancel();
            return Err(io::Error::other("the fetch's download limit is exceeded"));
        }
        Ok(())
    }
}

/// Copies both ways between the client and the destination, charging what the
/// destination sends; ends when either side closes or the limit is passed.
async fn relay(client: TokioIo<hyper::upgrade::Upgraded>, target: TcpStream, shared: &Shared) {
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut target_read, mut target_write) = target.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut client_read, &mut target_write).await;
        let _ = target_write.shutdown().await;
    };
    let downstream = async {
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let read = match target_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if shared.charge(read as u64).is_err() || client_write.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

fn answer(status: StatusCode, message: &str) -> Response<Body> {
    let mut response =
        Response::new(Full::new(Bytes::from(message.to_owned())).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Destinations;

    /// A server on 127.0.0.1 that answers every connection with `body_bytes`
    /// bytes of HTTP response, then closes it.
    async fn server(body_bytes: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_bytes}\r\nconnection: close\r\n\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&vec![b'x'; body_bytes]).await;
                });
            }
        });
        address
    }

    fn policy(loopback_allowed: bool) -> Arc<SourcePolicy> {
        let allowed = if loopback_allowed { vec!["127.0.0.0/8".parse().unwrap()] } else { Vec::new() };
        Arc::new(SourcePolicy { destinations: Destinations::new(allowed, Vec::new()), ..SourcePolicy::default() })
    }

    fn client(proxy: &str) -> reqwest::Client {
        reqwest::Client::builder().proxy(reqwest::Proxy::all(proxy).unwrap()).build().unwrap()
    }

    #[tokio::test]
    async fn a_destination_the_policy_refuses_is_never_connected_and_the_reason_is_kept() {
        let target = server(10).await;
        let gate = EgressGate::open(policy(false), 1 << 20).await.unwrap();
        let response = client(&gate.proxy_url()).get(format!("http://{target}/v2/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let denied = gate.denied().expect("the refusal is kept");
        assert!(denied.contains("\"127.0.0.1\" is not reachable"), "{denied}");
    }

    #[tokio::test]
    async fn what_comes_back_is_counted_across_connections_and_cut_at_the_limit() {
        let target = server(600).await;
        let gate = EgressGate::open(policy(true), 1000).await.unwrap();
        let client = client(&gate.proxy_url());
        let first = client.get(format!("http://{target}/a")).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(first.len(), 600);
        assert!(!gate.exceeded());
        let second = async { client.get(format!("http://{target}/b")).send().await?.bytes().await };
        assert!(second.await.is_err(), "the second 600 bytes pass the limit of 1000");
        assert!(gate.exceeded());
    }

    #[tokio::test]
    async fn a_tunnel_is_checked_and_counted_like_a_forwarded_request() {
        let target = server(5000).await;
        let gate = EgressGate::open(policy(true), 1000).await.unwrap();
        let mut stream = TcpStream::connect(gate.address).await.unwrap();
        let connect = format!("CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n");
        stream.write_all(connect.as_bytes()).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut received = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(received.len() < 2000, "the tunnel is cut near the limit, not after 5000 bytes: {}", received.len());
        assert!(gate.exceeded());
    }

    #[tokio::test]
    async fn a_redirect_to_another_origin_is_followed_through_the_gate_and_a_dropped_gate_is_closed() {
        let target = server(10).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let moved = format!("HTTP/1.1 302 Found\r\nlocation: http://{target}/\r\ncontent-length: 0\r\n\r\n");
                let _ = stream.write_all(moved.as_bytes()).await;
            }
        });
        let gate = EgressGate::open(policy(true), 1 << 20).await.unwrap();
        let response = client(&gate.proxy_url()).get(format!("http://{front}/")).send().await.unwrap();
        assert_eq!((response.status(), response.url().port()), (StatusCode::OK, Some(target.port())));
        let address = gate.address;
        drop(gate);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(address).await.is_err(), "a dropped gate stops listening");
    }
}
