//! Packages reach hosts over HTTP (PRODUCT.md, "Store and distribution"): the
//! operator serves its store to the hosts' ServiceAccount only, each host keeps
//! a cache of its own and checks every file against status before use, and
//! hosts keep serving what they have while the operator is away.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{apply, format_plugin, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{
    Distribution, FileServer, Served, Stack, control_plane, eventually, example_files, formats_of, metric_value,
    service_account_token, with_custom_section, zip,
};

const SOON: Duration = Duration::from_secs(60);

/// The unity example's files; `variant` changes plugin.wasm's digest.
fn unity_files(variant: &str) -> (Vec<u8>, Vec<u8>) {
    let (manifest, wasm) = example_files("unity-format");
    (manifest, with_custom_section(&wasm, "variant", variant.as_bytes()))
}

/// [`unity_files`] as a ZIP.
fn unity_zip(variant: &str) -> Vec<u8> {
    let (manifest, wasm) = unity_files(variant);
    zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])
}

/// Serves [`unity_zip`] of `variant` from `files` and applies FormatPlugin
/// unity with that URL as its source.
async fn apply_unity(namespace: &str, files: &FileServer, variant: &str) {
    let url = files.put("/unity.zip", Served::File(unity_zip(variant)));
    apply(namespace, &format_plugin("unity", &format!("source:\n  url:\n    url: {url}"))).await;
}

/// [`apply_unity`] of variant 1; returns the digest published for it.
async fn install_unity(namespace: &str, files: &FileServer) -> String {
    apply_unity(namespace, files, "1").await;
    published_digest(namespace, "unity").await
}

/// Serves `variant` instead, asks for a fetch now, and returns the digest
/// published for it once it replaces `from`.
async fn update_unity(namespace: &str, files: &FileServer, variant: &str, from: &str) -> String {
    files.put("/unity.zip", Served::File(unity_zip(variant)));
    let requested = format!("wasmplug.dev/requested-at={variant}");
    control_plane().kubectl().succeed(&["annotate", "fp/unity", "-n", namespace, &requested, "--overwrite"]).await;
    eventually("the update to be published", SOON, || async {
        let digest = published_digest(namespace, "unity").await;
        (digest != from).then_some(digest.clone()).ok_or(digest)
    })
    .await
}

/// The published digest of FormatPlugin `name`, once it is Ready.
async fn published_digest(namespace: &str, name: &str) -> String {
    wait_ready(namespace, name, SOON).await;
    let api = kube::Api::<FormatPlugin>::namespaced(control_plane().client().await, namespace);
    let plugin = api.get(name).await.expect("the FormatPlugin exists");
    plugin.status.and_then(|s| s.artifact).expect("an artifact is published").digest
}

/// Waits until the host at `url` lists format `key` as `state` with `digest`.
async fn serves(url: &str, key: &str, state: &str, digest: Option<&str>) {
    let what = format!("{url} to list {key} as {state} ({digest:?})");
    eventually(&what, SOON, || async {
        let formats = formats(url).await?;
        let format = formats.get(key).ok_or(format!("{formats:?}"))?;
        let matches = format["state"] == state && digest.is_none_or(|digest| format["digest"] == digest);
        matches.then_some(()).ok_or(format!("{format}"))
    })
    .await;
}

async fn formats(url: &str) -> Result<std::collections::BTreeMap<String, serde_json::Value>, String> {
    formats_of(url).await.map_err(|e| e.to_string())
}

/// The value of the metric line starting with `series` (name and labels), 0 when absent.
async fn metric(url: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics")).await.expect("metrics answer").text().await.expect("text");
    metric_value(&text, series).unwrap_or(0.0)
}

/// The package directories in a host's cache.
fn cached(cache: &std::path::Path) -> Vec<String> {
    let dir = cache.join(wasmplug_crds::Artifact::PACKAGES_DIR);
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| format!("sha256:{}", e.file_name().to_string_lossy())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

#[tokio::test]
async fn two_hosts_with_caches_of_their_own_follow_install_update_disable_and_delete() {
    let ns = control_plane().namespace("two-hosts").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let (second, second_url) = stack.another_host("host-2").await.expect("a second host starts");
    let files = FileServer::start().await.expect("file server starts");
    let hosts = [(stack.host_url.clone(), stack.cache("host")), (second_url.clone(), stack.cache("host-2"))];

    let first = install_unity(ns.name(), &files).await;
    for (url, cache) in &hosts {
        serves(url, "unity", "active", Some(&first)).await;
        assert_eq!(cached(cache), std::slice::from_ref(&first), "each host caches what it serves");
        assert_eq!(metric(url, "wasmplug_host_artifact_downloads_total{result=\"ok\"}").await, 3.0, "three files");
    }
    let served = metric(&stack.operator.url, "wasmplug_operator_artifact_served_bytes_total").await;
    assert!(served > 0.0, "the operator counts the bytes it sent");

    let second_digest = update_unity(ns.name(), &files, "2", &first).await;
    for (url, cache) in &hosts {
        serves(url, "unity", "active", Some(&second_digest)).await;
        eventually("the old version to leave the cache", SOON, || async {
            let entries = cached(cache);
            (entries == [second_digest.clone()]).then_some(()).ok_or(format!("{entries:?}"))
        })
        .await;
    }

    let kubectl = control_plane().kubectl();
    kubectl
        .succeed(&["patch", "fp/unity", "-n", ns.name(), "--type=merge", "-p", r#"{"spec":{"enabled":false}}"#])
        .await;
    for (url, _) in &hosts {
        serves(url, "unity", "disabled", Some(&second_digest)).await;
    }
    kubectl.succeed(&["delete", "fp/unity", "-n", ns.name(), "--wait=true"]).await;
    for (url, cache) in &hosts {
        eventually("the format to be gone", SOON, || async {
            let formats = formats(url).await?;
            (!formats.contains_key("unity") && cached(cache).is_empty()).then_some(()).ok_or(format!("{formats:?}"))
        })
        .await;
    }
    drop(second);
}

/// Invariant 1 over HTTP: a plugin.wasm changed in the operator's store after
/// it was published is refused by the host that downloads it, which says so in
/// its log, its metrics and `/v1/formats`, keeps the last good version serving,
/// and takes the right bytes once the store holds them again.
#[tokio::test]
async fn a_package_tampered_with_on_the_server_is_refused_and_the_last_good_version_keeps_serving() {
    let ns = control_plane().namespace("tampered").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let good = install_unity(ns.name(), &files).await;
    serves(&stack.host_url, "unity", "active", Some(&good)).await;

    // The host sleeps through the update, so that the file can be changed on
    // the server before it downloads it.
    let pid = stack.host.pid().expect("the host runs").to_string();
    signal("STOP", &pid);
    let update = update_unity(ns.name(), &files, "2", &good).await;
    let wasm = stack.store().join(wasmplug_crds::Artifact::path_for(&update)).join("plugin.wasm");
    let original = std::fs::read(&wasm).expect("published");
    let mut tampered = original.clone();
    *tampered.last_mut().expect("not empty") ^= 1;
    std::fs::write(&wasm, &tampered).expect("tamper");
    signal("CONT", &pid);

    let unity = eventually("the host to refuse the tampered file", SOON, || async {
        let formats = formats(&stack.host_url).await?;
        let unity = formats.get("unity").filter(|f| f["last_error"].is_string()).ok_or(format!("{formats:?}"))?;
        Ok(unity.clone())
    })
    .await;
    assert_eq!((&unity["state"], &unity["digest"]), (&"active".into(), &good.clone().into()), "{unity}");
    let error = unity["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("plugin.wasm") && error.contains("status says") && error.contains("refused"), "{error}");
    let mismatch = "wasmplug_host_artifact_downloads_total{result=\"digest_mismatch\"}";
    assert!(metric(&stack.host_url, mismatch).await >= 1.0, "counted");
    assert!(stack.host.log().contains("failed to download the package; trying again later"), "the log says so");
    let answer = stack.validate("unity", "Assets/x.unitypackage", b"not a unity package").await.expect("answers");
    assert_eq!(answer.status, 422, "the last good version answers: {answer:?}");
    let unverified = stack.cache("host").join(wasmplug_crds::Artifact::path_for(&update)).join("plugin.wasm");
    assert!(!unverified.exists(), "nothing unverified is in the cache under its name");

    std::fs::write(&wasm, &original).expect("repair");
    serves(&stack.host_url, "unity", "active", Some(&update)).await;
}

/// The operator away: hosts keep serving, a host restarted meanwhile serves
/// from its cache, and what is applied meanwhile is served once it is back.
#[tokio::test]
async fn hosts_serve_from_their_caches_while_the_operator_is_away() {
    let ns = control_plane().namespace("operator-away").await;
    let mut stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let digest = install_unity(ns.name(), &files).await;
    serves(&stack.host_url, "unity", "active", Some(&digest)).await;

    stack.operator.process.kill().await;
    let answer = stack.validate("unity", "Assets/x.unitypackage", b"not a unity package").await.expect("answers");
    assert_eq!(answer.status, 422, "{answer:?}");
    stack.restart_host().await.expect("the host restarts without the operator");
    serves(&stack.host_url, "unity", "active", Some(&digest)).await;
    let hits = metric(&stack.host_url, "wasmplug_host_artifact_cache_hits_total").await;
    assert_eq!(hits, 3.0, "all three files came from the cache");

    apply(ns.name(), &format_plugin("npm", "source:\n  builtin:\n    format: npm")).await;
    let (manifest, wasm) = example_files("misbehaving");
    let url = files.put("/misbehaving.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    apply(ns.name(), &format_plugin("misbehaving", &format!("source:\n  url:\n    url: {url}"))).await;
    stack.operator = stack.another_operator(&[]).expect("the operator comes back");
    let misbehaving = published_digest(ns.name(), "misbehaving").await;
    serves(&stack.host_url, "misbehaving", "active", Some(&misbehaving)).await;
    serves(&stack.host_url, "npm", "active", None).await;
    serves(&stack.host_url, "unity", "active", Some(&digest)).await;
}

/// Only the configured readers download: no token, another ServiceAccount's
/// token and a token for another audience are refused; a reader's token gets
/// exactly the published bytes; nothing but package files can be named.
#[tokio::test]
async fn only_the_hosts_service_account_may_download() {
    let ns = control_plane().namespace("readers").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let (manifest, wasm) = example_files("unity-format");
    let url = files.put("/unity.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    apply(ns.name(), &format_plugin("unity", &format!("source:\n  url:\n    url: {url}"))).await;
    wait_ready(ns.name(), "unity", SOON).await;
    let api = ns.api::<FormatPlugin>();
    let artifact = api.get("unity").await.expect("exists").status.and_then(|s| s.artifact).expect("published");
    let base = artifact.url.clone().expect("status names the URL");
    assert!(base.ends_with(&artifact.path), "{base}");
    let manifest_digest = artifact.manifest.expect("plugin.toml's digest");
    assert_eq!(manifest_digest.digest, format!("sha256:{}", support::sha256_hex(&manifest)));

    let kubectl = control_plane().kubectl();
    kubectl.succeed(&["create", "serviceaccount", "stranger", "-n", ns.name()]).await;
    let stranger = service_account_token(ns.name(), "stranger").await.expect("a token");
    let host = service_account_token(ns.name(), wasmplug_e2e::HOST_SERVICE_ACCOUNT).await.expect("a token");
    let other_audience =
        kubectl.succeed(&["create", "token", wasmplug_e2e::HOST_SERVICE_ACCOUNT, "-n", ns.name()]).await;
    let client = reqwest::Client::new();
    let get = async |url: &str, token: Option<&str>| {
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token.trim());
        }
        let response = request.send().await.expect("the artifact server answers");
        (response.status().as_u16(), response.bytes().await.expect("a body").to_vec())
    };
    let wasm_url = format!("{base}/plugin.wasm");
    let (status, body) = get(&wasm_url, None).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("no bearer token"));
    let (status, body) = get(&wasm_url, Some(&other_audience)).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, body) = get(&wasm_url, Some(&stranger)).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains(&format!("system:serviceaccount:{}:stranger", ns.name())));
    assert_eq!(get(&wasm_url, Some(&host)).await, (200, wasm.clone()), "a reader gets the published bytes");
    assert_eq!(get(&format!("{base}/plugin.toml"), Some(&host)).await, (200, manifest.clone()));

    let server = base.strip_suffix(&artifact.path).expect("the path ends the URL");
    for path in [
        "artifacts/sha256/".to_owned(),
        format!("{}/", artifact.path),
        format!("{}/../../../etc/passwd", artifact.path),
        format!("{}/%2e%2e/plugin.wasm", artifact.path),
        ".staging/".to_owned(),
    ] {
        let (status, _) = get(&format!("{server}{path}"), Some(&host)).await;
        assert_eq!(status, 404, "{path}");
    }
    let forbidden =
        metric(&stack.operator.url, "wasmplug_operator_artifact_requests_total{result=\"Forbidden\"}").await;
    assert_eq!(forbidden, 1.0);
}

fn signal(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), pid]).status().expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Whether operator run `run`'s store holds the package with `digest`
/// (plugin.toml, plugin.wasm and a precompiled file).
fn store_holds(stack: &Stack, run: usize, digest: &str) -> bool {
    let dir = stack.store_of(run).join(wasmplug_crds::Artifact::path_for(digest));
    let files = std::fs::read_dir(&dir).map(|entries| entries.flatten().count()).unwrap_or(0);
    files == 3 && dir.join("plugin.wasm").is_file() && dir.join("plugin.toml").is_file()
}

async fn ready(operator: &wasmplug_e2e::Operator) {
    eventually("the replica to be ready", SOON, || async {
        operator.is_ready().await.then_some(()).ok_or("not ready".to_owned())
    })
    .await;
}

/// Availability with a store per replica: the standby mirrors what the leader
/// publishes; with the source gone and the leader dead, a host with an empty
/// cache gets the package from the new leader; a replacement replica mirrors
/// it before it is ready, and keeps it available when the other one dies too.
#[tokio::test]
async fn a_package_whose_source_is_gone_survives_the_loss_of_any_one_replica() {
    let ns = control_plane().namespace("mirrored").await;
    let mut stack = Stack::start_with(ns.name(), &[], Distribution::Mirrored).await.expect("operator and host start");
    let mut standby = stack.another_operator(&[]).expect("a standby starts");
    ready(&standby).await;
    let files = FileServer::start().await.expect("file server starts");
    let digest = install_unity(ns.name(), &files).await;
    serves(&stack.host_url, "unity", "active", Some(&digest)).await;
    eventually("the standby to mirror the package", SOON, || async {
        store_holds(&stack, 1, &digest).then_some(()).ok_or("not yet".to_owned())
    })
    .await;
    let mirrored = metric(&standby.url, "wasmplug_operator_artifact_downloads_total{result=\"ok\"}").await;
    assert_eq!(mirrored, 3.0, "the standby downloaded the three files");

    drop(files);
    stack.operator.process.kill().await;
    eventually("the standby to lead", SOON, || async {
        standby.is_leading().await.then_some(()).ok_or("standing by".to_owned())
    })
    .await;
    let (_fresh, fresh_url) = stack.another_host("host-2").await.expect("a host with an empty cache starts");
    serves(&fresh_url, "unity", "active", Some(&digest)).await;

    let third = stack.another_operator(&[]).expect("a replacement replica starts");
    ready(&third).await;
    assert!(store_holds(&stack, 2, &digest), "ready only once it holds every published package");
    standby.process.kill().await;
    let (_last, last_url) = stack.another_host("host-3").await.expect("another host with an empty cache starts");
    serves(&last_url, "unity", "active", Some(&digest)).await;
    let api = ns.api::<FormatPlugin>();
    let status = api.get("unity").await.expect("exists").status.expect("status");
    assert_eq!(status.artifact.map(|a| a.digest), Some(digest), "the last good version is still published");
}

/// A rolling update of the operator (each new replica ready before an old one
/// goes, as a Deployment rolls) with clients fetching throughout: at every
/// moment some replica serves the package.
#[tokio::test]
async fn a_rolling_update_of_the_operator_never_leaves_the_package_unavailable() {
    let ns = control_plane().namespace("rolling").await;
    let mut stack = Stack::start_with(ns.name(), &[], Distribution::Mirrored).await.expect("operator and host start");
    let second = stack.another_operator(&[]).expect("a second replica starts");
    let files = FileServer::start().await.expect("file server starts");
    let digest = install_unity(ns.name(), &files).await;
    let api = ns.api::<FormatPlugin>();
    let artifact = api.get("unity").await.expect("exists").status.and_then(|s| s.artifact).expect("published");
    let token = service_account_token(ns.name(), wasmplug_e2e::HOST_SERVICE_ACCOUNT).await.expect("a token");
    let servers = stack.artifact_servers();
    let (stop, rounds) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let fetching = tokio::spawn({
        let (stop, rounds) = (stop.clone(), rounds.clone());
        let (wasm_path, expected) = (format!("{}/plugin.wasm", artifact.path), digest.clone());
        async move {
            let client = reqwest::Client::new();
            let mut unavailable = 0;
            while !stop.load(Ordering::Relaxed) && rounds.load(Ordering::Relaxed) < 5_000 {
                let mut served = false;
                for server in &servers {
                    let response = client.get(format!("{server}/{wasm_path}")).bearer_auth(&token).send().await;
                    let Ok(response) = response.and_then(|r| r.error_for_status()) else { continue };
                    let body = response.bytes().await.unwrap_or_default();
                    served = format!("sha256:{}", support::sha256_hex(&body)) == expected;
                    if served {
                        break;
                    }
                }
                rounds.fetch_add(1, Ordering::Relaxed);
                unavailable += usize::from(!served);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            unavailable
        }
    });
    // Each step of the roll waits for a few more rounds of fetching.
    let fetched_more = async || {
        let from = rounds.load(Ordering::Relaxed);
        eventually("the clients to fetch again", SOON, || async {
            let now = rounds.load(Ordering::Relaxed);
            (now >= from + 3).then_some(()).ok_or(format!("{now} rounds"))
        })
        .await;
    };

    fetched_more().await;
    let replacement = stack.another_operator(&[]).expect("a new replica");
    let mut old = vec![std::mem::replace(&mut stack.operator, replacement), second];
    ready(&stack.operator).await;
    old.remove(0).process.terminate().await;
    fetched_more().await;
    let newer = stack.another_operator(&[]).expect("another new replica");
    ready(&newer).await;
    old.remove(0).process.terminate().await;
    fetched_more().await;
    let (_fresh, fresh_url) = stack.another_host("host-2").await.expect("a host with an empty cache starts");
    serves(&fresh_url, "unity", "active", Some(&digest)).await;
    stop.store(true, Ordering::Relaxed);
    let unavailable = fetching.await.expect("the fetching task ends");
    let rounds = rounds.load(Ordering::Relaxed);
    assert_eq!(unavailable, 0, "{unavailable} of {rounds} rounds found no replica serving the package");
}

/// The leader dies in the middle of an install: the standby finishes it, and
/// every host, old or new, ends up with the package.
#[tokio::test]
async fn a_leader_failover_during_an_install_leaves_every_host_with_the_package() {
    let ns = control_plane().namespace("failover-install").await;
    let mut stack = Stack::start_with(ns.name(), &[], Distribution::Mirrored).await.expect("operator and host start");
    let standby = stack.another_operator(&[]).expect("a standby starts");
    ready(&standby).await;
    let files = FileServer::start().await.expect("file server starts");
    apply_unity(ns.name(), &files, "1").await;
    eventually("the leader to start the install", SOON, || async {
        let fetched = files.received().iter().any(|r| r.path == "/unity.zip");
        fetched.then_some(()).ok_or("not fetched yet".to_owned())
    })
    .await;
    stack.operator.process.kill().await;
    let digest = published_digest(ns.name(), "unity").await;
    serves(&stack.host_url, "unity", "active", Some(&digest)).await;
    let (_fresh, fresh_url) = stack.another_host("host-2").await.expect("a host with an empty cache starts");
    serves(&fresh_url, "unity", "active", Some(&digest)).await;
    assert!(standby.is_leading().await, "the standby took over");
}

/// Upgrading from an operator that wrote no plugin.toml digest and no URL: the
/// new operator describes what its store holds for downloads without fetching
/// the source again (here gone), and hosts then download it.
#[tokio::test]
async fn an_older_operators_status_is_described_for_downloads_without_fetching_again() {
    let ns = control_plane().namespace("older-status").await;
    let mut stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let url = files.put("/unity.zip", Served::File(unity_zip("1")));
    // Pinned, so that the source cannot move and need not be fetched again.
    let pin = support::sha256_hex(&unity_files("1").1);
    apply(ns.name(), &format_plugin("unity", &format!("source:\n  url:\n    url: {url}\nsha256: {pin}"))).await;
    let digest = published_digest(ns.name(), "unity").await;

    // The status as an older operator wrote it, the source gone, hosts gone.
    stack.operator.process.kill().await;
    stack.host.kill().await;
    drop(files);
    let api = ns.api::<FormatPlugin>();
    let mut status = api.get_status("unity").await.expect("exists").status.expect("status");
    let artifact = status.artifact.as_mut().expect("published");
    (artifact.manifest, artifact.url) = (None, None);
    let patch = serde_json::json!({"apiVersion": "wasmplug.dev/v1alpha1", "kind": "FormatPlugin", "status": status});
    let params = kube::api::PatchParams::apply("wasmplug-operator").force();
    api.patch_status("unity", &params, &kube::api::Patch::Apply(&patch)).await.expect("older status written");

    stack.operator = stack.another_operator(&[]).expect("the new operator starts");
    let described = eventually("the artifact to be described for downloads", SOON, || async {
        let status = api.get_status("unity").await.map_err(|e| e.to_string())?.status.ok_or("no status")?;
        let artifact = status.artifact.ok_or("no artifact")?;
        artifact.manifest.is_some().then_some(artifact.clone()).ok_or(format!("{artifact:?}"))
    })
    .await;
    assert_eq!(described.digest, digest, "the same package");
    assert!(described.url.is_some_and(|url| url.ends_with(&described.path)));
    let ready = api.get("unity").await.expect("exists");
    assert!(ready.is_ready_at_current_generation(), "still Ready: nothing was fetched, so nothing failed");
    let (_host, host_url) = stack.another_host("host-2").await.expect("a host with an empty cache starts");
    serves(&host_url, "unity", "active", Some(&digest)).await;
}

/// A replica whose store was damaged while it was down (a file changed in its
/// volume) finds it when it starts, before it is ready: the file is mirrored
/// again from the other replica, and served intact.
#[tokio::test]
async fn a_replica_repairs_a_damaged_store_from_the_others_before_it_is_ready() {
    let ns = control_plane().namespace("repair").await;
    let mut stack = Stack::start_with(ns.name(), &[], Distribution::Mirrored).await.expect("operator and host start");
    let mut standby = stack.another_operator(&[]).expect("a standby starts");
    let files = FileServer::start().await.expect("file server starts");
    let digest = install_unity(ns.name(), &files).await;
    eventually("the standby to mirror the package", SOON, || async {
        store_holds(&stack, 1, &digest).then_some(()).ok_or("not yet".to_owned())
    })
    .await;

    standby.process.kill().await;
    let wasm = stack.store_of(1).join(wasmplug_crds::Artifact::path_for(&digest)).join("plugin.wasm");
    let original = std::fs::read(&wasm).expect("mirrored");
    let mut damaged = original.clone();
    *damaged.last_mut().expect("not empty") ^= 1;
    std::fs::write(&wasm, &damaged).expect("damage");
    let restarted = stack.another_operator_on_store_of(1).expect("the standby restarts on its store");
    ready(&restarted).await;
    assert_eq!(std::fs::read(&wasm).expect("repaired"), original, "repaired before it was ready");
    let log = restarted.process.log();
    assert!(log.contains("failed its check; it is removed and fetched again") && log.contains("status.artifact says"));
}
