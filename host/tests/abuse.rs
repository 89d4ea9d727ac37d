//! Trust invariants 2 and 3 over HTTP: what an anonymous caller can try against
//! a host's server (in this process, on 127.0.0.1, over real sockets) and why it
//! does not take the host down or change what others get.

mod support;

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use support::http::{Host, call, copy_package, post, start_host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmplug_host::builtin;
use wasmplug_host::runtime::CallLimits;
use wasmplug_host::server::{ConnectionLimits, ServerConfig};

/// Short timeouts, so that the tests see them pass.
fn quick() -> ServerConfig {
    ServerConfig {
        queue_timeout: Duration::from_millis(500),
        connections: ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            body_read_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        },
        ..ServerConfig::default()
    }
}

async fn host(config: ServerConfig) -> (Host, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("misbehaving", &dir.path().join("misbehaving"));
    let limits = CallLimits { timeout: Duration::from_secs(2), ..CallLimits::DEFAULT };
    (start_host(dir.path(), limits, config).await, dir)
}

/// Reads until the server closes the connection; what it sent meanwhile.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    read.expect("the server closes the connection").expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn healthy(host: &Host) {
    let answer = call(host.addr, Method::GET, "/healthz", "").await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_its_head_slowly_or_not_at_all_is_disconnected() {
    let (host, _dir) = host(quick()).await;
    let mut silent = TcpStream::connect(host.addr).await.expect("connect");
    let mut trickling = TcpStream::connect(host.addr).await.expect("connect");
    trickling.write_all(b"POST /v1/formats/generic/validate?path=a HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    read_to_close(&mut silent).await;
    read_to_close(&mut trickling).await;

    // An idle keep-alive connection is closed the same way after its last answer.
    let mut idle = TcpStream::connect(host.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    assert!(read_to_close(&mut idle).await.starts_with("HTTP/1.1 200"));
    healthy(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408() {
    let (host, _dir) = host(quick()).await;
    let mut stream = TcpStream::connect(host.addr).await.expect("connect");
    let head = "POST /v1/formats/generic/validate?path=a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&[0u8; 10]).await.expect("write");
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped_and_the_rest_wait_their_turn() {
    let config = ServerConfig {
        connections: ConnectionLimits { max_connections: 2, ..ConnectionLimits::default() },
        ..ServerConfig::default()
    };
    let (host, _dir) = host(config).await;
    let holders =
        [TcpStream::connect(host.addr).await.expect("connect"), TcpStream::connect(host.addr).await.expect("c")];
    let waiting = tokio::spawn(call(host.addr, Method::GET, "/healthz", ""));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a third connection waits while two are open");
    drop(holders);
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("answered").expect("no panic");
    assert_eq!(answer.status, StatusCode::OK);
}

/// Bodies in flight have a byte budget taken before they are read: a caller
/// who opens many large uploads waits for room instead of filling memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_are_bounded_by_a_budget_taken_before_reading() {
    let config = ServerConfig { max_body_bytes: 1 << 20, max_body_bytes_in_flight: 2 << 20, ..quick() };
    let config = ServerConfig {
        connections: ConnectionLimits { body_read_timeout: Duration::from_secs(30), ..config.connections },
        ..config
    };
    let (host, _dir) = host(config).await;
    let head = "POST /v1/formats/generic/validate?path=a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n";
    let mut uploads = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(host.addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&[0u8; 1024]).await.expect("write");
        uploads.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(host.addr).await.expect("connect");
    third.write_all(head.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":\"busy\"") && answer.contains("room for the request body"), "{answer}");

    // Uploads that declare no length hold room only for what they sent: two
    // idle chunked uploads do not starve a small request.
    drop(uploads);
    let chunked =
        "POST /v1/formats/generic/validate?path=a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut uploads = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(host.addr).await.expect("connect");
        stream.write_all(chunked.as_bytes()).await.expect("write");
        stream.write_all(b"400\r\n").await.expect("write");
        stream.write_all(&[0u8; 1024]).await.expect("write");
        uploads.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = post(&host, "/v1/formats/generic/validate?path=a.txt", vec![b'x'; 512 << 10]).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:?}", answer.body);

    // A declared length over the limit is refused before anything is read.
    let mut large = TcpStream::connect(host.addr).await.expect("connect");
    let head = "POST /v1/formats/generic/validate?path=a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n";
    large.write_all(head.as_bytes()).await.expect("write");
    assert!(read_to_close(&mut large).await.starts_with("HTTP/1.1 413"));
    drop(uploads);
    healthy(&host).await;
}

/// Invariant 2 (concurrency): calls of one format never take every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_format_whose_calls_all_wait_leaves_slots_for_the_others() {
    let config = ServerConfig { max_concurrent_calls: 4, max_calls_per_format: 2, ..ServerConfig::default() };
    let (host, _dir) = host(config).await;
    let sleepers: Vec<_> = (0..6)
        .map(|_| tokio::spawn(call(host.addr, Method::POST, "/v1/formats/misbehaving/validate?path=sleep", "")))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let answer = post(&host, "/v1/formats/generic/validate?path=docs/a.txt", "text").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "the builtin answers");
    assert!(sleepers.iter().all(|sleeper| !sleeper.is_finished()), "while every sleeping call is still in flight");
    eprintln!("builtin answered in {:?} beside 6 sleeping plugin calls", started.elapsed());
    for sleeper in sleepers {
        let answer = sleeper.await.expect("no panic");
        let code = answer.code();
        assert!(code == "time_limit" || code == "busy", "{code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_path_is_refused() {
    let (host, _dir) = host(quick()).await;
    for query in ["path=a.txt&path=b.txt", "path=a.txt&pa%74h=b.txt", "path=%FF.txt"] {
        let answer = post(&host, &format!("/v1/formats/generic/validate?{query}"), "x").await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.code(), "bad_request", "{query}");
    }
    let answer = post(&host, "/v1/formats/generic/validate?path=docs%2Fa+b.txt&other=1", "x").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
}

/// Finding 3: builtins run on anonymous uploads under the same kind of limits
/// as plugins. A gzip bomb is refused at the unpacked-bytes cap (413) and a
/// 60 MiB nested POM at the depth cap (422), and the host answers on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_refuse_bombs_within_their_limits() {
    let config = ServerConfig { max_body_bytes: 64 << 20, ..ServerConfig::default() };
    let (host, _dir) = host(config).await;
    builtin::install(&host.registry, &["npm".to_owned(), "maven".to_owned()], &CallLimits::DEFAULT).expect("builtins");
    let bomb = {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut builder = tar::Builder::new(encoder);
        let mut header = tar::Header::new_gnu();
        header.set_size(256 << 20);
        header.set_cksum();
        builder
            .append_data(&mut header, "package/zeros", std::io::Read::take(std::io::repeat(0), 256 << 20))
            .expect("tar");
        builder.into_inner().expect("tar").finish().expect("gzip")
    };
    let answer = post(&host, "/v1/formats/npm/validate?path=x/-/x-1.0.0.tgz", bomb).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.code(), "input_too_large");
    assert!(answer.json()["message"].as_str().is_some_and(|m| m.contains("unpacks to more than 134217728 bytes")));

    let pom = format!("<project>{}", "<a>".repeat(20_000_000));
    let answer = post(&host, "/v1/formats/maven/validate?path=com/x/lib/1.0/lib-1.0.pom", pom).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.json()["message"].as_str().is_some_and(|m| m.contains("more than 64 deep")));
    healthy(&host).await;
}

/// Finding 4: an anonymous caller whose inputs are too large for a plugin's
/// memory makes only its own calls fail; the plugin is not quarantined for
/// everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_inputs_do_not_quarantine_a_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("misbehaving", &dir.path().join("misbehaving"));
    let limits = CallLimits { memory_bytes: 16 << 20, ..CallLimits::DEFAULT };
    let host = start_host(dir.path(), limits, ServerConfig::default()).await;
    let oversized = vec![b'x'; 20 << 20];
    for _ in 0..10 {
        let answer = post(&host, "/v1/formats/misbehaving/validate?path=fine", oversized.clone()).await;
        assert_eq!((answer.status, answer.code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "memory_limit"));
    }
    let answer = post(&host, "/v1/formats/misbehaving/validate?path=fine", "small").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "everyone else is still served");
    let formats = call(host.addr, Method::GET, "/v1/formats", "").await.json();
    assert_eq!(formats["formats"][1]["state"], "active");
}
