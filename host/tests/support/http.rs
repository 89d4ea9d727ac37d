//! A host's HTTP server in this process, on 127.0.0.1, and a plain HTTP client.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use wasmplug_host::builtin;
use wasmplug_host::local::LocalSource;
use wasmplug_host::registry::Registry;
use wasmplug_host::runtime::{CallLimits, EngineSettings, Runtime};
use wasmplug_host::server::{App, SERVED_BY, ServerConfig, serve};

/// A host serving the packages in `dir` (polled every 50 ms) and the generic builtin.
pub struct Host {
    pub addr: std::net::SocketAddr,
    pub registry: Arc<Registry>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub async fn start_host(dir: &Path, limits: CallLimits, config: ServerConfig) -> Host {
    let runtime = Arc::new(Runtime::new(EngineSettings::default()).expect("engine"));
    let registry = Arc::new(Registry::new());
    let app = App::new(registry.clone(), config, runtime.large_call_metrics());
    builtin::install(&registry, &["generic".to_owned()], &limits).expect("generic is builtin");
    let source = LocalSource::new(dir.to_owned(), runtime, registry.clone(), limits);
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let ready = app.clone();
    tokio::spawn(source.run(Duration::from_millis(50), move || {
        ready.set_ready();
        let _ = synced_tx.send(());
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async {
        let _ = stop.await;
    }));
    synced_rx.await.expect("the first sync completes");
    Host { addr, registry, _shutdown: shutdown }
}

pub struct Answer {
    pub status: StatusCode,
    pub served_by: Option<String>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub async fn call(addr: std::net::SocketAddr, method: Method, path: &str, body: impl Into<Bytes>) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(body.into()))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let served_by = response.headers().get(SERVED_BY).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Answer { status, served_by, body }
}

pub async fn post(host: &Host, path: &str, body: impl Into<Bytes>) -> Answer {
    call(host.addr, Method::POST, path, body).await
}

pub fn copy_package(name: &str, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for file in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(super::example_package(name).join(file), to.join(file)).expect("copy package file");
    }
}
