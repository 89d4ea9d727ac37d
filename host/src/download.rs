//! Downloading a published package from the operator's artifact server into a
//! directory laid out like the store: a host's cache, or a replica's own store
//! when it mirrors another (PRODUCT.md, "Store and distribution").
//!
//! Nothing unverified is ever in that directory under a file's real name: a
//! download is written to a temporary file beside it, checked against the
//! digest and size status names, and only then renamed into place. A file that
//! is already there and still verifies is kept (a cache hit); one that does not
//! is removed and downloaded again. Reading it back for use verifies it once
//! more ([`crate::artifact::read`]), so a cache disk that changes under the host
//! costs a download, never correctness.
//!
//! File names and the package directory come from [`crate::artifact::listing`],
//! never from a URL in status: hosts fetch from the artifact server they were
//! configured with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;
use url::Url;
use wasmplug_crds::Artifact;

use crate::artifact::{self, FileRef, Listing};
use crate::plugin::Digest;

/// Where temporary downloads are written, relative to the directory's root.
const PARTIAL_DIR: &str = ".partial";
/// Most bytes of an error answer's body that are read (and quoted).
const MAX_ERROR_BODY: usize = 512;

/// How a download ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DownloadResult {
    /// Downloaded and verified.
    Ok,
    /// The bytes (or their number) were not what status says; refused.
    DigestMismatch,
    /// No server could be reached, or none answered in time, or one failed (5xx).
    Unreachable,
    /// A server refused the request (401, 403, 404, …), or status names nothing usable.
    Refused,
    /// The local directory could not be written, or the token read.
    Error,
}

impl DownloadResult {
    /// The metric's `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadResult::Ok => "ok",
            DownloadResult::DigestMismatch => "digest_mismatch",
            DownloadResult::Unreachable => "unreachable",
            DownloadResult::Refused => "refused",
            DownloadResult::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Downloads by result, cache hits and bytes downloaded.
#[derive(Debug, Default)]
pub struct DownloadMetrics {
    downloads: Family<ResultLabels, Counter>,
    cache_hits: Counter,
    bytes: Counter,
}

impl DownloadMetrics {
    /// Registers the metrics in `registry` (under its prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("artifact_downloads", "Artifact file downloads by result", self.downloads.clone());
        registry.register(
            "artifact_cache_hits",
            "Artifact files found verified in the local directory, not downloaded",
            self.cache_hits.clone(),
        );
        registry.register(
            "artifact_downloaded_bytes",
            "Bytes of verified artifact files downloaded",
            self.bytes.clone(),
        );
    }

    fn count(&self, result: DownloadResult) {
        self.downloads.get_or_create(&ResultLabels { result: result.as_str() }).inc();
    }
}

/// Why a package could not be downloaded. Messages name the file, the server
/// and what to check.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Status(#[from] artifact::ArtifactError),
    #[error(
        "status.artifact gives no digest for plugin.toml (an older operator wrote it); \
         waiting for the operator to publish it again"
    )]
    NoManifestDigest,
    #[error("failed to download {url}: {problem} (is the operator's artifact server running and reachable?)")]
    Unreachable { url: String, problem: String },
    #[error("failed to download {url}: the server answered {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("failed to download {url}: {problem}; the file was refused and nothing of it is used")]
    DigestMismatch { url: String, problem: String },
    #[error("failed to read the artifact token {}: {source} (it is the host's projected ServiceAccount token)", path.display())]
    Token { path: PathBuf, source: std::io::Error },
    #[error("failed to {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl DownloadError {
    /// Whether trying again later may succeed without status changing: all but
    /// a status that names nothing usable (a new status brings a new load).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, DownloadError::Status(_))
    }

    /// Whether this error says more about the file than `other` (of another
    /// server): bytes that failed their check, then an answer, then the rest.
    fn tells_more_than(&self, other: &DownloadError) -> bool {
        let weight = |error: &DownloadError| match error {
            DownloadError::DigestMismatch { .. } => 2,
            DownloadError::Refused { .. } => 1,
            _ => 0,
        };
        weight(self) > weight(other)
    }

    /// The metric label for this error.
    pub fn result(&self) -> DownloadResult {
        match self {
            DownloadError::DigestMismatch { .. } => DownloadResult::DigestMismatch,
            DownloadError::Unreachable { .. } => DownloadResult::Unreachable,
            DownloadError::Refused { .. } | DownloadError::Status(_) | DownloadError::NoManifestDigest => {
                DownloadResult::Refused
            }
            DownloadError::Token { .. } | DownloadError::Io { .. } => DownloadResult::Error,
        }
    }
}

/// How to talk to artifact servers.
#[derive(Clone, Debug)]
pub struct DownloadSettings {
    /// A bearer token file sent with every request, re-read each time (kubelet
    /// rotates projected tokens).
    pub token_file: Option<PathBuf>,
    /// Longest time to connect to a server.
    pub connect_timeout: Duration,
    /// Longest time one file's download may take.
    pub timeout: Duration,
}

/// What became of a package's optional precompiled file.
#[derive(Debug)]
pub struct Fetched {
    /// Why the precompiled file is not in the directory, when it is not (the
    /// host then compiles plugin.wasm itself).
    pub precompiled_problem: Option<String>,
}

/// Downloads packages from artifact servers into store-shaped directories.
#[derive(Debug)]
pub struct Downloader {
    client: reqwest::Client,
    settings: DownloadSettings,
    metrics: Arc<DownloadMetrics>,
}

impl Downloader {
    pub fn new(settings: DownloadSettings, metrics: Arc<DownloadMetrics>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Downloader { client, settings, metrics })
    }

    /// Makes `root` hold the package `artifact` names, verified: plugin.toml,
    /// plugin.wasm and the precompiled file for `engine` (see
    /// [`artifact::listing`]), each downloaded from the first of `servers`
    /// (base URLs: `<base>/<package dir>/<file>`) that has it. A precompiled
    /// file that cannot be had is reported in [`Fetched`], not an error.
    pub async fn fetch_package(
        &self,
        servers: &[Url],
        root: &Path,
        artifact: &Artifact,
        engine: Option<&str>,
    ) -> Result<Fetched, DownloadError> {
        let Listing { dir, wasm, manifest, precompiled } = artifact::listing(artifact, engine)?;
        let manifest = manifest.ok_or(DownloadError::NoManifestDigest)?;
        // The three files at once: a package's fetch costs its largest file.
        let precompiled = async {
            match precompiled {
                Err(why) => Some(why),
                Ok(file) => self.fetch_file(servers, root, &dir, &file).await.err().map(|error| error.to_string()),
            }
        };
        let required = async {
            futures::try_join!(
                self.fetch_file(servers, root, &dir, &manifest),
                self.fetch_file(servers, root, &dir, &wasm)
            )
        };
        let (required, precompiled_problem) = futures::join!(required, precompiled);
        required?;
        Ok(Fetched { precompiled_problem })
    }

    /// Makes `root/dir/<file>` the verified file: kept if it is there and
    /// verifies, else downloaded from the first server that has it.
    async fn fetch_file(&self, servers: &[Url], root: &Path, dir: &str, file: &FileRef) -> Result<(), DownloadError> {
        let target = root.join(dir).join(&file.name);
        if holds(&target, file).await {
            self.metrics.cache_hits.inc();
            return Ok(());
        }
        // Of several servers' errors, the one that says most: a server that
        // answered says more than one that could not be reached.
        let mut telling: Option<DownloadError> = None;
        for server in servers {
            match self.download(server, root, dir, file, &target).await {
                Ok(()) => {
                    self.metrics.count(DownloadResult::Ok);
                    self.metrics.bytes.inc_by(file.size);
                    return Ok(());
                }
                Err(error) => {
                    self.metrics.count(error.result());
                    tracing::warn!(%error, "artifact download failed");
                    if telling.as_ref().is_none_or(|told| error.tells_more_than(told)) {
                        telling = Some(error);
                    }
                }
            }
        }
        Err(telling.unwrap_or_else(|| DownloadError::Unreachable {
            url: format!("{dir}/{}", file.name),
            problem: "no artifact server is configured".to_owned(),
        }))
    }

    async fn download(
        &self,
        server: &Url,
        root: &Path,
        dir: &str,
        file: &FileRef,
        target: &Path,
    ) -> Result<(), DownloadError> {
        let url = file_url(server, dir, &file.name);
        let unreachable = |problem: String| DownloadError::Unreachable { url: url.to_string(), problem };
        let mut request = self.client.get(url.clone());
        if let Some(path) = &self.settings.token_file {
            let token = tokio::fs::read_to_string(path)
                .await
                .map_err(|source| DownloadError::Token { path: path.clone(), source })?;
            request = request.bearer_auth(token.trim());
        }
        let response = request.send().await.map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(unreachable(format!("the server answered {status}")));
        }
        if !status.is_success() {
            let body = String::from_utf8_lossy(&first_bytes(response, MAX_ERROR_BODY).await).trim().to_owned();
            return Err(DownloadError::Refused { url: url.to_string(), status: status.as_u16(), body });
        }
        let mismatch = |problem: String| DownloadError::DigestMismatch { url: url.to_string(), problem };
        if let Some(length) = response.content_length().filter(|length| *length != file.size) {
            return Err(mismatch(format!("the server sends {length} bytes, but status says {}", file.size)));
        }
        let partial_dir = root.join(PARTIAL_DIR);
        create_dir(&partial_dir).await?;
        let partial = tempfile::Builder::new()
            .prefix(&format!("{}-", file.digest.hex()))
            .tempfile_in(&partial_dir)
            .map_err(|source| DownloadError::Io { action: "create a file in", path: partial_dir.clone(), source })?;
        let io = |action, source| DownloadError::Io { action, path: partial.path().to_owned(), source };
        let mut out = tokio::fs::File::from_std(partial.reopen().map_err(|e| io("open", e))?);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| unreachable(error_chain(&e)))?;
            received += chunk.len() as u64;
            if received > file.size {
                return Err(mismatch(format!("it is longer than the {} bytes status says", file.size)));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(|e| io("write", e))?;
        }
        if received != file.size {
            return Err(mismatch(format!("it has {received} bytes, but status says {}", file.size)));
        }
        let actual = Digest::of_hashed(hasher);
        if actual != file.digest {
            return Err(mismatch(format!("it has digest {actual}, but status says {}", file.digest)));
        }
        // Not synced: a file lost or damaged in a crash fails its check when
        // it is next read, and is downloaded again.
        out.flush().await.map_err(|e| io("write", e))?;
        drop(out);
        let parent = target.parent().unwrap_or(root);
        create_dir(parent).await?;
        partial.persist(target).map_err(|e| DownloadError::Io {
            action: "rename into place",
            path: target.to_owned(),
            source: e.error,
        })?;
        tracing::info!(url = %url, digest = %file.digest, size = file.size, "downloaded and verified");
        Ok(())
    }

    /// Removes temporary downloads that an earlier run left behind.
    pub fn remove_partial(root: &Path) {
        let _ = std::fs::remove_dir_all(root.join(PARTIAL_DIR));
    }
}

/// At most the first `max` bytes of `response`'s body; the rest is not read.
async fn first_bytes(response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    while bytes.len() < max {
        match body.next().await {
            Some(Ok(chunk)) => bytes.extend_from_slice(&chunk[..chunk.len().min(max - bytes.len())]),
            _ => break,
        }
    }
    bytes
}

/// `<server>/<dir>/<name>`, whatever path the server's URL has.
fn file_url(server: &Url, dir: &str, name: &str) -> Url {
    let mut url = server.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/{dir}/{name}"));
    url
}

/// Whether the file at `target` is there and verifies against `file`, checked
/// off the async threads ([`is_intact`]).
async fn holds(target: &Path, file: &FileRef) -> bool {
    let (path, expected) = (target.to_owned(), file.clone());
    tokio::task::spawn_blocking(move || is_intact(&path, &expected)).await.unwrap_or(false)
}

/// Whether the file at `path` is there and is the one `file` describes. One
/// that is there but fails its check is removed (and logged), so that it is
/// fetched again.
pub fn is_intact(path: &Path, file: &FileRef) -> bool {
    match artifact::read_checked(path, file) {
        Ok(_) => true,
        Err(error) if !path.exists() => {
            tracing::trace!(%error, "not there");
            false
        }
        Err(error) => {
            tracing::warn!(%error, "an artifact file failed its check; it is removed and fetched again");
            let _ = std::fs::remove_file(path);
            false
        }
    }
}

async fn create_dir(path: &Path) -> Result<(), DownloadError> {
    tokio::fs::create_dir_all(path).await.map_err(|source| DownloadError::Io {
        action: "create",
        path: path.to_owned(),
        source,
    })
}

/// The error and its sources, so that "connection refused" is not hidden
/// behind "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_keep_the_servers_path() {
        let dir = "artifacts/sha256/ab";
        for (server, expected) in [
            ("http://op:8081", "http://op:8081/artifacts/sha256/ab/plugin.wasm"),
            ("http://op:8081/", "http://op:8081/artifacts/sha256/ab/plugin.wasm"),
            ("http://op:8081/store/", "http://op:8081/store/artifacts/sha256/ab/plugin.wasm"),
        ] {
            let server = Url::parse(server).expect("a URL");
            assert_eq!(file_url(&server, dir, "plugin.wasm").as_str(), expected);
        }
    }
}
