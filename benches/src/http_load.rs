//! A closed-loop HTTP load generator on loopback: `connections` keep-alive
//! connections, each sending the same request back to back for `duration`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Requests completed per second, and how many failed.
pub async fn run(addr: SocketAddr, path: &str, body: Bytes, connections: usize, duration: Duration) -> (f64, usize) {
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (path, body) = (path.to_owned(), body.clone());
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the host");
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
                tokio::spawn(connection);
                let (mut ok, mut failed) = (0usize, 0usize);
                while Instant::now() < deadline {
                    let request = Request::post(&path)
                        .header("host", "localhost")
                        .body(Full::new(body.clone()))
                        .expect("request");
                    match sender.send_request(request).await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.into_body().collect().await;
                            ok += 1;
                        }
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let started = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    for worker in workers {
        let (o, f) = worker.await.expect("load worker");
        ok += o;
        failed += f;
    }
    (ok as f64 / started.elapsed().as_secs_f64(), failed)
}
