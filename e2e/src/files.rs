//! A real HTTP server on 127.0.0.1 serving files a test puts there: ZIP packages
//! for URL sources, and downloads that trickle (to catch a fetch in the act).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// How a path answers.
#[derive(Clone, Debug)]
pub enum Served {
    /// The bytes, at once.
    File(Vec<u8>),
    /// The bytes, one chunk of `chunk` bytes every `every`.
    Trickle { bytes: Vec<u8>, chunk: usize, every: Duration },
    /// Only a status code.
    Status(u16),
    /// A status code with a body.
    Answer(u16, Vec<u8>),
    /// The bytes, to requests whose `Authorization` header equals `authorization`
    /// (e.g. `Basic dXNlcjpwYXNz` or `Bearer t0ken`); 401 to others.
    Protected { bytes: Vec<u8>, authorization: String },
    /// A 302 redirect to this URL.
    Redirect(String),
}

/// A request the server received: its path and `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
}

/// A file server for one test; stops when dropped.
#[derive(Debug)]
pub struct FileServer {
    addr: SocketAddr,
    files: Arc<Mutex<HashMap<String, Served>>>,
    received: Arc<Mutex<Vec<Received>>>,
    trickling: Arc<Trickling>,
    task: tokio::task::JoinHandle<()>,
}

/// Trickled responses being sent now, and the most ever sent at once.
#[derive(Debug, Default)]
struct Trickling {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Counts one trickled response for as long as its body is being sent.
struct Sending(Arc<Trickling>);

impl Sending {
    fn start(trickling: &Arc<Trickling>) -> Self {
        let now = trickling.now.fetch_add(1, Ordering::SeqCst) + 1;
        trickling.most.fetch_max(now, Ordering::SeqCst);
        Sending(trickling.clone())
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FileServer {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Serves on `address`, e.g. the real node's bridge address (for pods).
    pub async fn start_on(address: IpAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((address, 0)).await?;
        let addr = listener.local_addr()?;
        let files: Arc<Mutex<HashMap<String, Served>>> = Arc::default();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let trickling: Arc<Trickling> = Arc::default();
        let (served, log, counts) = (files.clone(), received.clone(), trickling.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (files, log, counts) = (served.clone(), log.clone(), counts.clone());
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let answer = files.lock().unwrap_or_else(|p| p.into_inner()).get(request.uri().path()).cloned();
                    let authorization = request.headers().get(hyper::header::AUTHORIZATION).cloned();
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(Received {
                        path: request.uri().path().to_owned(),
                        authorization: authorization.as_ref().and_then(|v| v.to_str().ok()).map(str::to_owned),
                    });
                    let answer = match answer {
                        Some(Served::Protected { bytes, authorization: expected }) => {
                            if authorization.is_some_and(|given| given.as_bytes() == expected.as_bytes()) {
                                Some(Served::File(bytes))
                            } else {
                                Some(Served::Status(401))
                            }
                        }
                        other => other,
                    };
                    let response = respond(answer, &counts);
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Ok(FileServer { addr, files, received, trickling, task })
    }

    /// Serves `served` at `path` (e.g. "/unity.zip") and returns its URL.
    pub fn put(&self, path: &str, served: Served) -> String {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned(), served);
        self.url(path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The most trickled responses that were being sent at once.
    pub fn most_trickling_at_once(&self) -> usize {
        self.trickling.most.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(answer: Option<Served>, trickling: &Arc<Trickling>) -> Response<BoxBody<Bytes, Infallible>> {
    let (status, body) = match answer {
        None => (StatusCode::NOT_FOUND, Full::new(Bytes::from_static(b"not found")).boxed()),
        Some(Served::Protected { .. }) => (StatusCode::UNAUTHORIZED, Full::new(Bytes::new()).boxed()),
        Some(Served::Status(code)) => {
            (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Full::new(Bytes::new()).boxed())
        }
        Some(Served::File(bytes)) => (StatusCode::OK, Full::new(Bytes::from(bytes)).boxed()),
        Some(Served::Answer(code, bytes)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Full::new(Bytes::from(bytes)).boxed(),
        ),
        Some(Served::Redirect(location)) => {
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            *response.status_mut() = StatusCode::FOUND;
            if let Ok(location) = hyper::header::HeaderValue::from_str(&location) {
                response.headers_mut().insert(hyper::header::LOCATION, location);
            }
            return response;
        }
        Some(Served::Trickle { bytes, chunk, every }) => {
            let chunks: Vec<Bytes> = bytes.chunks(chunk.max(1)).map(Bytes::copy_from_slice).collect();
            let sending = Sending::start(trickling);
            let stream = futures::stream::iter(chunks).then(move |chunk| async move {
                tokio::time::sleep(every).await;
                Ok::<_, Infallible>(Frame::data(chunk))
            });
            // Counted until the body ends or the client goes away.
            let stream = stream.map(move |frame| {
                let _ = &sending;
                frame
            });
            (StatusCode::OK, BodyExt::boxed(StreamBody::new(stream)))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// A ZIP archive of `entries` (name, contents), as a release tool makes one.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, contents) in entries {
        writer.start_file(*name, options).expect("a ZIP entry can be started");
        writer.write_all(contents).expect("a ZIP entry can be written");
    }
    writer.finish().expect("a ZIP archive can be finished").into_inner()
}
