//! The HTTP API as a registry calls it: a real server on 127.0.0.1, real plugin
//! packages in a watched directory, real HTTP requests.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use support::http::{call, copy_package, post, start_host};
use wasmplug_formats::test_support::unity_package;
use wasmplug_host::runtime::{CallLimits, EngineSettings, MemoryReset};
use wasmplug_host::server::ServerConfig;

const GUID: &str = "0123456789abcdef0123456789abcdef";

/// Rewrites `version = "…"` in a package's manifest, as a plugin release would.
fn set_version(package: &Path, version: &str) {
    let manifest = std::fs::read_to_string(package.join("plugin.toml")).expect("read manifest");
    let manifest: String = manifest
        .lines()
        .map(|line| if line.starts_with("version = ") { format!("version = \"{version}\"") } else { line.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    // Write under a temporary name and rename, as a deployment would.
    std::fs::write(package.join("plugin.toml.tmp"), manifest).expect("write manifest");
    std::fs::rename(package.join("plugin.toml.tmp"), package.join("plugin.toml")).expect("rename manifest");
}

async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finding 8 of issue 10: a plugin's fuel limit is listed as enforced only when
/// the host meters fuel; otherwise the listing says it is not, and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuel_limit_the_host_does_not_meter_is_listed_as_not_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("unity");
    copy_package("unity-format", &package);
    let manifest = std::fs::read_to_string(package.join("plugin.toml")).expect("read");
    std::fs::write(package.join("plugin.toml"), format!("{manifest}max_fuel = 1000000\n")).expect("write");
    let host = start_host(dir.path(), CallLimits::DEFAULT, ServerConfig::default()).await;
    let formats = call(host.addr, Method::GET, "/v1/formats", "").await.json();
    let limits = &formats["formats"][1]["limits"];
    assert_eq!(limits.get("fuel"), None, "{limits}");
    assert_eq!(limits["fuel_not_enforced"]["requested"], 1_000_000);
    let reason = limits["fuel_not_enforced"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("without fuel metering") && reason.contains("--max-fuel"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_builtin_and_plugin_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("unity-format", &dir.path().join("unity"));
    let host = start_host(dir.path(), CallLimits::DEFAULT, ServerConfig::default()).await;

    let formats = call(host.addr, Method::GET, "/v1/formats", "").await.json();
    let keys: Vec<&str> =
        formats["formats"].as_array().expect("list").iter().filter_map(|f| f["key"].as_str()).collect();
    assert_eq!(keys, ["generic", "unity"]);
    let unity = &formats["formats"][1];
    assert_eq!(unity["origin"], serde_json::json!({"kind": "plugin", "name": "unity-format", "version": "0.1.0"}));
    assert_eq!(unity["state"], "active");
    assert_eq!(unity["limits"]["memory_bytes"], 32 << 20);
    assert!(unity["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")));

    let package = unity_package(&[(GUID, "Assets/A.cs", b"class A {}")]);
    let answer = post(&host, "/v1/formats/unity/metadata?path=pkgs/Tools-2.0.1.unitypackage", package.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["version"], "2.0.1");
    // The plugin leaves the checksum out, as Artifact Keeper's do: the host fills it in.
    let sha256 = wasmplug_host::plugin::Digest::of(&package).hex();
    assert_eq!(answer.json()["checksum_sha256"], sha256.as_str());
    assert!(answer.served_by.as_deref().is_some_and(|s| s.starts_with("unity-format@0.1.0 sha256:")));

    let answer = post(&host, "/v1/formats/unity/validate?path=a%20b.unitypackage", package).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    // A refusal is the handler's answer too, and says which version gave it.
    let answer = post(&host, "/v1/formats/unity/validate?path=x.unitypackage", "not gzip").await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.served_by.as_deref().is_some_and(|s| s.starts_with("unity-format@0.1.0 sha256:")));

    let answer = post(&host, "/v1/formats/generic/metadata?path=docs/readme.txt", "hello").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["content_type"], "text/plain");
    assert_eq!(answer.served_by.as_deref(), Some("builtin"));

    let metadata = serde_json::json!([{"path": "a-1.0.unitypackage", "version": "1.0", "content_type": "x/y", "size_bytes": 3, "checksum_sha256": sha256}]);
    let answer = post(&host, "/v1/formats/unity/index", metadata.to_string()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["files"][0]["name"], "index.json");
    assert_eq!(post(&host, "/v1/formats/generic/index", "[]").await.status, StatusCode::NO_CONTENT);

    let health = call(host.addr, Method::GET, "/healthz", "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(call(host.addr, Method::GET, "/readyz", "").await.status, StatusCode::OK);
    let metrics = call(host.addr, Method::GET, "/metrics", "").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains(r#"wasmplug_host_calls_total{format="unity",operation="metadata",outcome="ok"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"wasmplug_host_formats{state="active"} 2"#), "{metrics}");
}

/// Issue 15: a registry uploads an artifact once and learns both whether it is
/// valid and its metadata, answered by one fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_upload_validates_and_describes_an_artifact_in_one_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("unity-format", &dir.path().join("unity"));
    copy_package("misbehaving", &dir.path().join("misbehaving"));
    let host = start_host(dir.path(), CallLimits::DEFAULT, ServerConfig::default()).await;

    let package = unity_package(&[(GUID, "Assets/A.cs", b"class A {}")]);
    let answer = post(&host, "/v1/formats/unity/artifacts?path=pkgs/Tools-2.0.1.unitypackage", package.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let metadata = answer.json();
    assert_eq!(
        (metadata["path"].as_str(), metadata["version"].as_str()),
        (Some("pkgs/Tools-2.0.1.unitypackage"), Some("2.0.1"))
    );
    assert_eq!(metadata["checksum_sha256"], wasmplug_host::plugin::Digest::of(&package).hex().as_str());
    assert!(answer.served_by.as_deref().is_some_and(|s| s.starts_with("unity-format@0.1.0 sha256:")));
    // What the two separate calls answer, the one upload answers too.
    let described = post(&host, "/v1/formats/unity/metadata?path=pkgs/Tools-2.0.1.unitypackage", package).await;
    assert_eq!(described.json(), metadata);

    // Invalid: the plugin's reason, and no metadata.
    let answer = post(&host, "/v1/formats/unity/artifacts?path=x.unitypackage", "not gzip").await;
    assert_eq!((answer.status, answer.code().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "rejected"));
    let answer = post(&host, "/v1/formats/unity/artifacts", "").await;
    assert_eq!((answer.status, answer.code().as_str()), (StatusCode::BAD_REQUEST, "bad_request"));
    let answer = post(&host, "/v1/formats/misbehaving/artifacts?path=trap", "").await;
    assert_eq!((answer.status, answer.code().as_str()), (StatusCode::BAD_GATEWAY, "crashed"));

    // The plugin counts the calls its instance served: validate, then metadata,
    // in the upload's one instance; a fresh instance for every request.
    for _ in 0..2 {
        let answer = post(&host, "/v1/formats/misbehaving/artifacts?path=fine", "").await;
        assert_eq!(answer.json()["version"], "2", "validate and metadata ran in one instance");
        let answer = post(&host, "/v1/formats/misbehaving/metadata?path=fine", "").await;
        assert_eq!(answer.json()["version"], "1", "each request has a fresh instance");
    }
    // Builtin formats answer the same endpoint.
    let answer = post(&host, "/v1/formats/generic/artifacts?path=docs/readme.txt", "hello").await;
    assert_eq!((answer.status, answer.json()["content_type"].as_str()), (StatusCode::OK, Some("text/plain")));

    // An upload larger than an ordinary slot keeps resident takes a
    // large-call slot, where the host has them (memory that cannot be swapped).
    let large = vec![0u8; EngineSettings::default().keep_resident_bytes as usize + 1];
    let answer = post(&host, "/v1/formats/misbehaving/artifacts?path=fine", large).await;
    assert_eq!(answer.status, StatusCode::OK);

    let metrics = call(host.addr, Method::GET, "/metrics", "").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains(r#"wasmplug_host_calls_total{format="unity",operation="artifacts",outcome="ok"} 1"#),
        "{metrics}"
    );
    let large_calls = r#"wasmplug_host_large_calls_total{pool="large"} 1"#;
    match MemoryReset::for_this_process() {
        MemoryReset::PageScan => assert!(metrics.contains(large_calls), "{metrics}"),
        MemoryReset::Unmap { .. } => assert!(!metrics.contains("large_calls"), "no large-call pool: {metrics}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_failure_has_its_status_and_stable_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("unity-format", &dir.path().join("unity"));
    copy_package("misbehaving", &dir.path().join("misbehaving"));
    let limits = CallLimits { memory_bytes: 16 << 20, timeout: Duration::from_secs(1), fuel: None, ignored_fuel: None };
    let host =
        start_host(dir.path(), limits, ServerConfig { max_body_bytes: 64 << 10, ..ServerConfig::default() }).await;

    let cases: [(&str, Bytes, StatusCode, &str, &str); 9] = [
        (
            "/v1/formats/npm/metadata?path=a",
            Bytes::new(),
            StatusCode::NOT_FOUND,
            "unknown_format",
            "unknown format \"npm\"",
        ),
        (
            "/v1/formats/unity/validate?path=a.zip",
            Bytes::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "rejected",
            "must end with .unitypackage",
        ),
        (
            "/v1/formats/misbehaving/validate?path=trap",
            Bytes::new(),
            StatusCode::BAD_GATEWAY,
            "crashed",
            "asked to trap",
        ),
        (
            "/v1/formats/misbehaving/validate?path=alloc",
            Bytes::new(),
            StatusCode::SERVICE_UNAVAILABLE,
            "memory_limit",
            "memory limit of 16777216 bytes",
        ),
        (
            "/v1/formats/misbehaving/validate?path=loop",
            Bytes::new(),
            StatusCode::GATEWAY_TIMEOUT,
            "time_limit",
            "time limit of 1s",
        ),
        (
            "/v1/formats/unity/validate?path=a",
            Bytes::from(vec![0u8; 65 << 10]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "limit of 65536 bytes",
        ),
        ("/v1/formats/unity/validate", Bytes::new(), StatusCode::BAD_REQUEST, "bad_request", "missing ?path="),
        (
            "/v1/formats/unity/index",
            Bytes::from("not json"),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "JSON list of metadata",
        ),
        (
            "/v1/formats/unity/frobnicate",
            Bytes::new(),
            StatusCode::NOT_FOUND,
            "not_found",
            "use artifacts, metadata, validate, index or request",
        ),
    ];
    for (path, body, status, code, message) in cases {
        let answer = post(&host, path, body).await;
        assert_eq!((answer.status, answer.code().as_str()), (status, code), "{path}: {:?}", answer.body);
        let text = answer.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(text.contains(message), "{path}: expected {message:?} in {text:?}");
    }

    assert!(host.registry.set_enabled("unity", false));
    let answer = post(&host, "/v1/formats/unity/validate?path=a.unitypackage", "").await;
    assert_eq!((answer.status, answer.code().as_str()), (StatusCode::CONFLICT, "format_unavailable"));
    assert_eq!(answer.json()["message"], "format \"unity\" is unavailable: it is disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runaway_plugin_does_not_slow_down_or_fail_other_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("unity-format", &dir.path().join("unity"));
    copy_package("misbehaving", &dir.path().join("misbehaving"));
    let limits = CallLimits { timeout: Duration::from_millis(500), ..CallLimits::DEFAULT };
    let host = Arc::new(start_host(dir.path(), limits, ServerConfig::default()).await);

    let runaway: Vec<_> = (0..3)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { post(&host, "/v1/formats/misbehaving/validate?path=loop", "").await.status })
        })
        .collect();
    let package = Bytes::from(unity_package(&[(GUID, "Assets/A.cs", b"class A {}")]));
    for _ in 0..50 {
        let answer = post(&host, "/v1/formats/unity/validate?path=a-1.0.0.unitypackage", package.clone()).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:?}", answer.body);
    }
    for call in runaway {
        assert_eq!(call.await.expect("runaway call task"), StatusCode::GATEWAY_TIMEOUT);
    }
}

/// Issue 15: plugin calls run on the server's own workers; a guest that spins
/// yields its worker at every epoch tick, so even a server with a single worker
/// thread answers everything else while the call runs, and still stops the
/// call at its time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_spinning_plugin_call_leaves_the_only_worker_to_other_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("misbehaving", &dir.path().join("misbehaving"));
    let limits = CallLimits { timeout: Duration::from_secs(2), ..CallLimits::DEFAULT };
    let host = Arc::new(start_host(dir.path(), limits, ServerConfig::default()).await);

    let spinning = {
        let host = host.clone();
        tokio::spawn(async move { post(&host, "/v1/formats/misbehaving/validate?path=loop", "").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        let answer = post(&host, "/v1/formats/generic/validate?path=a.txt", "text").await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT);
        assert!(!spinning.is_finished(), "answered while the spinning call still runs");
    }
    let answer = spinning.await.expect("the spinning call's task");
    assert_eq!((answer.status, answer.code().as_str()), (StatusCode::GATEWAY_TIMEOUT, "time_limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_swap_under_load_loses_no_request_and_in_flight_calls_finish_on_v1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("misbehaving");
    copy_package("misbehaving", &package);
    // The load must run beside the slow in-flight call: give the format more
    // than the one slot a two-CPU machine's default would.
    let config = ServerConfig { max_calls_per_format: 8, ..ServerConfig::default() };
    let host = Arc::new(start_host(dir.path(), CallLimits::DEFAULT, config).await);
    let in_flight = {
        let host = host.clone();
        tokio::spawn(async move { post(&host, "/v1/formats/misbehaving/validate?path=slow", "").await })
    };

    // Continuous load for the whole swap; every answer's version is recorded.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served: Arc<std::sync::Mutex<BTreeSet<String>>> = Arc::default();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (host, stop, served) = (host.clone(), stop.clone(), served.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer = post(&host, "/v1/formats/misbehaving/validate?path=fine", "").await;
                    assert_eq!(answer.status, StatusCode::NO_CONTENT, "a request failed during the swap");
                    let version = answer.served_by.unwrap_or_default().split(' ').next().unwrap_or_default().to_owned();
                    served.lock().expect("served").insert(version);
                }
            })
        })
        .collect();
    let load_saw = async |version: &str| {
        wait_for(&format!("the load to be served by {version}"), async || {
            served.lock().expect("served").contains(version)
        })
        .await
    };
    load_saw("misbehaving@0.1.0").await;

    set_version(&package, "0.2.0");
    wait_for("v2 to be listed", async || {
        let formats = call(host.addr, Method::GET, "/v1/formats", "").await.json();
        formats["formats"].as_array().into_iter().flatten().any(|f| f["origin"]["version"] == "0.2.0")
    })
    .await;
    let first_after = post(&host, "/v1/formats/misbehaving/validate?path=fine", "").await;
    assert!(first_after.served_by.as_deref().is_some_and(|s| s.starts_with("misbehaving@0.2.0")));
    load_saw("misbehaving@0.2.0").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.expect("load task completes without a failed request");
    }

    let slow = in_flight.await.expect("in-flight task");
    assert_eq!(slow.status, StatusCode::NO_CONTENT);
    assert!(slow.served_by.as_deref().is_some_and(|s| s.starts_with("misbehaving@0.1.0")), "{:?}", slow.served_by);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn packages_are_unloaded_when_removed_and_a_broken_update_keeps_the_old_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("unity");
    copy_package("unity-format", &package);
    let host = start_host(dir.path(), CallLimits::DEFAULT, ServerConfig::default()).await;
    let validate = async || post(&host, "/v1/formats/unity/validate?path=a.zip", "").await;
    assert_eq!(validate().await.status, StatusCode::UNPROCESSABLE_ENTITY, "the plugin answers");

    // A broken update: plugin.wasm is not a component.
    std::fs::write(package.join("plugin.wasm"), b"\0asm\x01\0\0\0").expect("break the package");
    wait_for("the failed update to be reported", async || {
        let formats = call(host.addr, Method::GET, "/v1/formats", "").await.json();
        formats["formats"][1]["last_error"].as_str().is_some_and(|e| e.contains("not a valid WebAssembly component"))
    })
    .await;
    assert_eq!(validate().await.status, StatusCode::UNPROCESSABLE_ENTITY, "the last good version keeps serving");

    std::fs::remove_dir_all(&package).expect("remove the package");
    wait_for("the format to be unloaded", async || validate().await.status == StatusCode::NOT_FOUND).await;
}

/// The entry `GET /v1/formats` lists for `key`, if any.
async fn listed(host: &support::http::Host, key: &str) -> Option<serde_json::Value> {
    let formats = call(host.addr, Method::GET, "/v1/formats", "").await.json();
    formats["formats"].as_array()?.iter().find(|f| f["key"] == key).cloned()
}

/// The `last_error` `GET /v1/formats` shows for `key`, if any.
async fn last_error(host: &support::http::Host, key: &str) -> Option<String> {
    listed(host, key).await?["last_error"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manifest_problems_show_in_the_format_list_and_each_replaces_the_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("unity");
    copy_package("unity-format", &package);
    let manifest = std::fs::read_to_string(package.join("plugin.toml")).expect("read");
    let host = start_host(dir.path(), CallLimits::DEFAULT, ServerConfig::default()).await;
    let validate = async || post(&host, "/v1/formats/unity/validate?path=a.zip", "").await;
    assert_eq!(validate().await.status, StatusCode::UNPROCESSABLE_ENTITY, "the plugin answers");

    // A broken component, then a manifest that is not TOML: the list shows the
    // second error, not the first, and the last good version keeps serving.
    std::fs::write(package.join("plugin.wasm"), b"\0asm\x01\0\0\0").expect("break the component");
    wait_for("the component error", async || {
        last_error(&host, "unity").await.is_some_and(|e| e.contains("not a valid WebAssembly component"))
    })
    .await;
    std::fs::write(package.join("plugin.toml"), "[plugin\nname = ").expect("break the manifest");
    wait_for("the manifest error to replace it", async || {
        last_error(&host, "unity").await.is_some_and(|e| e.contains("plugin.toml") && !e.contains("WebAssembly"))
    })
    .await;
    assert_eq!(validate().await.status, StatusCode::UNPROCESSABLE_ENTITY, "the last good version keeps serving");

    // A package that never loaded is listed under its directory's name.
    let fresh = dir.path().join("my-format");
    std::fs::create_dir(&fresh).expect("mkdir");
    std::fs::write(fresh.join("plugin.toml"), manifest.replace("version = ", "versoin = ")).expect("write");
    std::fs::write(fresh.join("plugin.wasm"), b"\0asm").expect("write");
    wait_for("the new package's problem to be listed", async || {
        last_error(&host, "my-format").await.is_some_and(|e| e.contains("my-format") && e.contains("plugin.toml"))
    })
    .await;
    // Removed, its entry goes with it.
    std::fs::remove_dir_all(&fresh).expect("remove");
    wait_for("the placeholder to go", async || {
        let formats = call(host.addr, Method::GET, "/v1/formats", "").await.json();
        !formats.to_string().contains("\"my-format\"")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_misspelled_manifest_field_is_a_warning_in_the_format_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("unity");
    copy_package("unity-format", &package);
    let manifest = std::fs::read_to_string(package.join("plugin.toml")).expect("read");
    assert!(manifest.contains("extensions ="), "the example declares extensions");
    std::fs::write(package.join("plugin.toml"), manifest.replace("extensions =", "extension =")).expect("write");
    let host = start_host(dir.path(), CallLimits::DEFAULT, ServerConfig::default()).await;
    let unity = listed(&host, "unity").await.expect("unity is served: the field is not required");
    assert_eq!(unity["state"], "active", "{unity}");
    let warnings = unity["warnings"].to_string();
    assert!(warnings.contains("[format].extension is not a field wasmplug reads"), "{unity}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_limit_failures_quarantine_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("misbehaving", &dir.path().join("misbehaving"));
    let limits = CallLimits { timeout: Duration::from_millis(20), ..CallLimits::DEFAULT };
    let host = start_host(dir.path(), limits, ServerConfig::default()).await;
    for _ in 0..wasmplug_host::registry::breaker::MIN_FAULTS {
        assert_eq!(
            post(&host, "/v1/formats/misbehaving/validate?path=loop", "").await.status,
            StatusCode::GATEWAY_TIMEOUT
        );
    }
    let answer = post(&host, "/v1/formats/misbehaving/validate?path=fine", "").await;
    assert_eq!((answer.status, answer.code().as_str()), (StatusCode::CONFLICT, "format_unavailable"));
    assert!(answer.json()["message"].as_str().is_some_and(|m| m.contains("quarantined")));
    let formats = call(host.addr, Method::GET, "/v1/formats", "").await.json();
    assert_eq!(formats["formats"][1]["state"], "quarantined");
}

/// Issue 15: the host cannot compute the SHA-256 of artifacts it is not sent,
/// and an index without one is refused by the format's clients (an RPM
/// repository's `dnf`, say). Metadata passed back to `index` or `request`
/// without a checksum is refused, naming the artifact, before any plugin runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_passed_back_without_a_checksum_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("unity-format", &dir.path().join("unity"));
    copy_package("npm-registry", &dir.path().join("npm-registry"));
    let host = start_host(dir.path(), CallLimits::DEFAULT, ServerConfig::default()).await;
    let sha256 = "a".repeat(64);
    let artifact = |path: &str, checksum: Value| serde_json::json!({"path": path, "version": "1.0", "content_type": "x/y", "size_bytes": 3, "checksum_sha256": checksum});

    let complete = artifact("a-1.0.unitypackage", Value::from(sha256.as_str()));
    for (second, named) in [
        (artifact("b-1.0.unitypackage", Value::Null), "no checksum_sha256"),
        (artifact("b-1.0.unitypackage", Value::from("")), "no checksum_sha256"),
        (artifact("b-1.0.unitypackage", Value::from("ABC")), "not a lowercase hex SHA-256"),
    ] {
        let answer = post(&host, "/v1/formats/unity/index", serde_json::json!([complete, second]).to_string()).await;
        assert_eq!((answer.status, answer.code().as_str()), (StatusCode::BAD_REQUEST, "bad_request"));
        let message = answer.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("artifacts[1] (b-1.0.unitypackage)") && message.contains(named), "{message}");
        assert!(message.contains("as …/metadata or …/artifacts answered it"), "{message}");
    }
    let request = serde_json::json!({
        "request": {"method": "GET", "path": "/a"},
        "context": {"repo_key": "npm-local", "base_url": "https://reg.example/npm", "download_base_url": "https://dl.example/npm"},
        "artifacts": [artifact("a/-/a-1.0.tgz", Value::Null)],
    });
    let answer = post(&host, "/v1/formats/npm-registry/request", request.to_string()).await;
    assert_eq!((answer.status, answer.code().as_str()), (StatusCode::BAD_REQUEST, "bad_request"));
    assert!(answer.json()["message"].as_str().is_some_and(|m| m.contains("artifacts[0] (a/-/a-1.0.tgz)")));

    // Refused before a plugin ran: no call was counted.
    let metrics = call(host.addr, Method::GET, "/metrics", "").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(!metrics.contains(r#"operation="index""#) && !metrics.contains(r#"operation="request""#), "{metrics}");
    // With every checksum, the index is made.
    let answer = post(&host, "/v1/formats/unity/index", serde_json::json!([complete]).to_string()).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_v2_plugin_serves_the_npm_registry_protocol() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    copy_package("npm-registry", &dir.path().join("npm-registry"));
    copy_package("unity-format", &dir.path().join("unity"));
    let host = start_host(dir.path(), CallLimits::DEFAULT, ServerConfig::default()).await;

    let tarball = wasmplug_formats::test_support::npm_tarball("@acme/left-pad", "1.3.0");
    let metadata =
        post(&host, "/v1/formats/npm-registry/metadata?path=@acme/left-pad/-/left-pad-1.3.0.tgz", tarball).await;
    assert_eq!(metadata.status, StatusCode::OK, "{:?}", metadata.body);
    let artifacts = serde_json::json!([metadata.json()]);
    let client_request = |path: &str| {
        serde_json::json!({
            "request": {"method": "GET", "path": path, "headers": [["accept", "application/json"]]},
            "context": {"repo_key": "npm-local", "base_url": "https://reg.example/npm", "download_base_url": "https://dl.example/npm"},
            "artifacts": artifacts,
        })
        .to_string()
    };

    let answer = post(&host, "/v1/formats/npm-registry/request", client_request("/@acme%2fleft-pad")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let response = answer.json();
    assert_eq!(response["status"], 200);
    let body = base64::engine::general_purpose::STANDARD
        .decode(response["body_base64"].as_str().unwrap_or_default())
        .expect("base64");
    let packument: Value = serde_json::from_slice(&body).expect("a packument");
    assert_eq!(packument["dist-tags"]["latest"], "1.3.0");
    assert_eq!(
        packument["versions"]["1.3.0"]["dist"]["tarball"],
        "https://dl.example/npm/@acme/left-pad/-/left-pad-1.3.0.tgz"
    );

    let download =
        post(&host, "/v1/formats/npm-registry/request", client_request("/@acme/left-pad/-/left-pad-1.3.0.tgz"))
            .await
            .json();
    assert_eq!(download["status"], 302);
    assert_eq!(
        download["headers"][0],
        serde_json::json!(["location", "https://dl.example/npm/@acme/left-pad/-/left-pad-1.3.0.tgz"])
    );
    let missing = post(&host, "/v1/formats/npm-registry/request", client_request("/nope")).await.json();
    assert_eq!(missing["status"], 404);

    let v1 = post(&host, "/v1/formats/unity/request", client_request("/x")).await;
    assert_eq!((v1.status, v1.code().as_str()), (StatusCode::NOT_IMPLEMENTED, "unsupported"));
    let malformed = post(&host, "/v1/formats/npm-registry/request", "{}").await;
    assert_eq!((malformed.status, malformed.code().as_str()), (StatusCode::BAD_REQUEST, "bad_request"));
}
