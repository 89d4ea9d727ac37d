//! Downloading packages from an artifact server that may be broken, slow or
//! hostile (trust invariants 1 and 3): a real HTTP server on 127.0.0.1 plays
//! the operator, and the cache is checked after every answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use url::Url;
use wasmplug_crds::{Artifact, FileDigest};
use wasmplug_e2e::{FileServer, Served, example_files};
use wasmplug_host::download::{DownloadError, DownloadMetrics, DownloadSettings, Downloader};
use wasmplug_host::plugin::Digest;

/// The unity example as status would name it (no precompiled file).
fn published() -> (Artifact, Vec<u8>, Vec<u8>) {
    let (manifest, wasm) = example_files("unity-format");
    let digest = Digest::of(&wasm).to_string();
    let artifact = Artifact {
        path: Artifact::path_for(&digest),
        digest,
        revision: "test".into(),
        size: wasm.len() as i64,
        url: None,
        manifest: Some(FileDigest { digest: Digest::of(&manifest).to_string(), size: manifest.len() as i64 }),
        last_update_time: Time(Timestamp::now()),
        precompiled: None,
        signature: None,
    };
    (artifact, manifest, wasm)
}

fn downloader(token_file: Option<&Path>) -> (Downloader, Arc<DownloadMetrics>) {
    let metrics = Arc::new(DownloadMetrics::default());
    let settings = DownloadSettings {
        token_file: token_file.map(Path::to_owned),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(1500),
    };
    (Downloader::new(settings, metrics.clone()).expect("a client"), metrics)
}

/// Serves `manifest` and `wasm` where the operator would.
fn serve(files: &FileServer, artifact: &Artifact, manifest: Served, wasm: Served) -> Url {
    files.put(&format!("/{}/plugin.toml", artifact.path), manifest);
    let url = files.put(&format!("/{}/plugin.wasm", artifact.path), wasm);
    let base = url.strip_suffix(&format!("/{}/plugin.wasm", artifact.path)).expect("the server's base");
    Url::parse(base).expect("a URL")
}

/// The metrics' text.
fn counted(metrics: &DownloadMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    text
}

fn cached(cache: &Path, artifact: &Artifact, file: &str) -> Option<Vec<u8>> {
    std::fs::read(cache.join(&artifact.path).join(file)).ok()
}

#[tokio::test]
async fn verified_files_are_kept_and_found_again() {
    let files = FileServer::start().await.expect("server");
    let (artifact, manifest, wasm) = published();
    let server = serve(&files, &artifact, Served::File(manifest.clone()), Served::File(wasm.clone()));
    let cache = tempfile::tempdir().expect("tempdir");
    let (downloader, metrics) = downloader(None);
    let fetched =
        downloader.fetch_package(std::slice::from_ref(&server), cache.path(), &artifact, None).await.expect("fetched");
    assert_eq!(fetched.precompiled_problem.as_deref(), Some("the operator published no precompiled file"));
    assert_eq!(cached(cache.path(), &artifact, "plugin.wasm"), Some(wasm.clone()));
    assert_eq!(cached(cache.path(), &artifact, "plugin.toml"), Some(manifest));
    downloader.fetch_package(&[server], cache.path(), &artifact, None).await.expect("again");
    let text = counted(&metrics);
    assert!(text.contains("artifact_downloads_total{result=\"ok\"} 2"), "{text}");
    assert!(text.contains("artifact_cache_hits_total 2"), "{text}");
    assert!(
        text.contains(&format!("artifact_downloaded_bytes_total {}", wasm.len() + artifact_manifest_size(&artifact)))
    );
    assert_eq!(files.received().len(), 2, "the second fetch asked the server nothing");
}

fn artifact_manifest_size(artifact: &Artifact) -> usize {
    artifact.manifest.as_ref().map_or(0, |m| m.size as usize)
}

/// A server that sends more than status says is cut off once it has; a file
/// of the right size with other bytes is refused; neither reaches the cache.
#[tokio::test]
async fn bytes_other_than_status_names_never_reach_the_cache() {
    let files = FileServer::start().await.expect("server");
    let (artifact, manifest, wasm) = published();
    let cache = tempfile::tempdir().expect("tempdir");
    let (downloader, metrics) = downloader(None);

    let mut endless = wasm.clone();
    endless.resize(wasm.len() + (64 << 20), 0);
    let server = serve(&files, &artifact, Served::File(manifest.clone()), Served::File(endless));
    let error = downloader.fetch_package(&[server], cache.path(), &artifact, None).await.expect_err("refused");
    assert!(matches!(error, DownloadError::DigestMismatch { .. }), "{error}");
    assert!(error.to_string().contains("plugin.wasm") && error.to_string().contains("bytes"), "{error}");

    let mut swapped = wasm.clone();
    *swapped.last_mut().expect("not empty") ^= 1;
    let server = serve(&files, &artifact, Served::File(manifest), Served::File(swapped));
    let error = downloader.fetch_package(&[server], cache.path(), &artifact, None).await.expect_err("refused");
    assert!(error.to_string().contains(&format!("but status says {}", artifact.digest)), "{error}");

    assert_eq!(cached(cache.path(), &artifact, "plugin.wasm"), None, "nothing unverified under the file's name");
    let partial: Vec<_> = std::fs::read_dir(cache.path().join(".partial")).expect("partial dir").flatten().collect();
    assert!(partial.is_empty(), "no temporary file is left: {partial:?}");
    assert!(counted(&metrics).contains("artifact_downloads_total{result=\"digest_mismatch\"} 2"));
}

/// A server that trickles is given up on at the download timeout; one that
/// refuses is reported with its answer; the token file is sent as the bearer
/// token, re-read for each download.
#[tokio::test]
async fn slow_refusing_and_protected_servers() {
    let files = FileServer::start().await.expect("server");
    let (artifact, manifest, wasm) = published();
    let cache = tempfile::tempdir().expect("tempdir");
    let token = cache.path().join("token");
    std::fs::write(&token, "t0ken\n").expect("token");
    let (downloader, metrics) = downloader(Some(&token));

    let trickle = Served::Trickle { bytes: wasm.clone(), chunk: 1, every: Duration::from_millis(200) };
    let server = serve(&files, &artifact, Served::File(manifest.clone()), trickle);
    let error = downloader.fetch_package(&[server], cache.path(), &artifact, None).await.expect_err("too slow");
    assert!(matches!(error, DownloadError::Unreachable { .. }), "{error}");

    // A refusal is quoted, cut short: its first few hundred bytes are all that is read.
    let mut answer = b"go away ".to_vec();
    answer.resize(64 << 20, b'!');
    let server = serve(&files, &artifact, Served::Answer(403, answer.clone()), Served::Answer(403, answer));
    let error = downloader.fetch_package(&[server], cache.path(), &artifact, None).await.expect_err("refused");
    let DownloadError::Refused { status: 403, body, .. } = &error else { panic!("{error}") };
    assert!(body.starts_with("go away") && body.len() <= 512, "{} bytes quoted", body.len());

    let protect = |bytes: &[u8]| Served::Protected { bytes: bytes.to_vec(), authorization: "Bearer t0ken".into() };
    let server = serve(&files, &artifact, protect(&manifest), protect(&wasm));
    downloader
        .fetch_package(std::slice::from_ref(&server), cache.path(), &artifact, None)
        .await
        .expect("the token is sent");
    let text = counted(&metrics);
    assert!(text.contains("result=\"unreachable\"") && text.contains("result=\"refused\""), "{text}");

    // A cache file damaged on disk is fetched again, with the token read anew.
    std::fs::write(&token, "rotated").expect("rotate");
    let server = serve(
        &files,
        &artifact,
        protect(&manifest),
        Served::Protected { bytes: wasm.clone(), authorization: "Bearer rotated".into() },
    );
    std::fs::write(cache.path().join(&artifact.path).join("plugin.wasm"), b"damaged").expect("damage");
    downloader.fetch_package(&[server], cache.path(), &artifact, None).await.expect("fetched again");
    assert_eq!(cached(cache.path(), &artifact, "plugin.wasm"), Some(wasm));
}
