//! A TCP proxy in front of the API server that a test can stall: bytes stop
//! flowing both ways (connections stay open) until it is resumed. This is the
//! one fault the real API server cannot be made to produce on demand: a
//! request that is sent and never answered.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::control_plane::control_plane;

/// A proxy to the control plane's API server, on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct StallingProxy {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    pub async fn start() -> anyhow::Result<Self> {
        let server = control_plane().server().trim_start_matches("https://").to_owned();
        let target: SocketAddr = server.parse().with_context(|| format!("the API server address {server}"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(target).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (upstream_read, upstream_write) = upstream.into_split();
                tokio::spawn(forward(client_read, upstream_write, flag.clone()));
                tokio::spawn(forward(upstream_read, client_write, flag.clone()));
            }
        });
        Ok(StallingProxy { addr, stalled, task })
    }

    /// Stops forwarding bytes (each way) until [`StallingProxy::resume`].
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// A copy of the control plane's kubeconfig, in `dir`, that goes through
    /// this proxy (the API server's certificate names 127.0.0.1, so TLS holds).
    pub fn kubeconfig(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let original = std::fs::read_to_string(control_plane().kubeconfig())?;
        let path = dir.join("kubeconfig-stalling");
        std::fs::write(&path, original.replace(control_plane().server(), &format!("https://{}", self.addr)))?;
        Ok(path)
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 << 10];
    loop {
        let Ok(read) = from.read(&mut buffer).await else { return };
        if read == 0 {
            return;
        }
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
