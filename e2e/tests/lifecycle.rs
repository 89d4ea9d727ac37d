//! The lifecycle rules of PRODUCT.md on the real control plane, with the operator
//! and a host as processes: update (calls in flight finish on the old version; a
//! failed update keeps it serving), disable and enable without restarts, delete
//! (unload, store collection) and format-key conflicts.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{apply, format_plugin, status, store_contents, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{
    FileServer, Served, Stack, control_plane, eventually, example_files, with_custom_section, with_version, zip,
};

const SOON: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_update_swaps_versions_without_failing_a_call_and_a_bad_update_keeps_the_old_one() {
    let ns = control_plane().namespace("update").await;
    let stack = Arc::new(Stack::start(ns.name(), &[]).await.expect("operator and host start"));
    let files = FileServer::start().await.expect("file server starts");
    let (manifest, v1) = example_files("misbehaving");
    let v2 = with_custom_section(&v1, "wasmplug-test", b"v2");
    let url_v1 = files.put("/v1.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &v1)])));
    let manifest_v2 = with_version(&manifest, "0.2.0");
    let url_v2 = files.put("/v2.zip", Served::File(zip(&[("plugin.toml", &manifest_v2), ("plugin.wasm", &v2)])));

    let source = |url: &str| format!("source:\n  url:\n    url: {url}");
    apply(ns.name(), &format_plugin("misbehaving", &source(&url_v1))).await;
    wait_ready(ns.name(), "misbehaving", SOON).await;
    eventually("v1 to be served", SOON, || async {
        let answer = stack.validate("misbehaving", "ok", b"").await.map_err(|e| e.to_string())?;
        if answer.status == 204 { Ok(()) } else { Err(format!("{answer:?}")) }
    })
    .await;

    // Keep slow calls (300 ms each) coming on four connections through the
    // update; after it, each caller goes on until v2 has answered it (calls of
    // one format may queue for their slot: at most half the host's CPUs run).
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (stack, stop) = (stack.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers: Vec<wasmplug_e2e::HostAnswer> = Vec::new();
                let on_v2 = |answers: &[wasmplug_e2e::HostAnswer]| {
                    answers.last().and_then(|a| a.served_by.as_deref()).is_some_and(|s| s.contains("@0.2.0"))
                };
                while !(stop.load(Ordering::Relaxed) && on_v2(&answers)) && answers.len() < 500 {
                    answers.push(stack.validate("misbehaving", "slow", b"").await.expect("the host answers"));
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    apply(ns.name(), &format_plugin("misbehaving", &source(&url_v2))).await;
    wait_condition(&ns.api::<FormatPlugin>(), "misbehaving", "True", "Succeeded").await;
    eventually("v2 to be served", SOON, || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        let version = formats["misbehaving"]["origin"]["version"].as_str().unwrap_or_default().to_owned();
        if version == "0.2.0" { Ok(()) } else { Err(version) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let mut served = Vec::new();
    let mut last = Vec::new();
    for caller in callers {
        let answers = caller.await.expect("caller");
        last.extend(answers.last().cloned());
        served.extend(answers);
    }
    assert!(served.iter().all(|a| a.status == 204), "every call succeeded: {served:?}");
    let by =
        |version: &str| served.iter().filter(|a| a.served_by.as_deref().is_some_and(|s| s.contains(version))).count();
    assert!(by("misbehaving@0.1.0") > 0 && by("misbehaving@0.2.0") > 0, "calls on both versions: {served:?}");
    assert!(last.iter().all(|a| a.served_by.as_deref().is_some_and(|s| s.contains("@0.2.0"))), "{last:?}");

    // An update that fails validation leaves v2 serving, and the status says both.
    let (_, wrong_world) = example_files("wrong-world");
    let broken =
        files.put("/broken.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wrong_world)])));
    apply(ns.name(), &format_plugin("misbehaving", &source(&broken))).await;
    let api = ns.api::<FormatPlugin>();
    let message = wait_condition(&api, "misbehaving", "False", "ValidationFailed").await;
    assert!(message.contains("does not export") && message.contains("still serving misbehaving 0.2.0"), "{message}");
    assert_eq!(status(&api, "misbehaving").await.plugin.expect("last good").version, "0.2.0");
    let answer = stack.validate("misbehaving", "ok", b"").await.expect("call");
    assert!(answer.status == 204 && answer.served_by.is_some_and(|s| s.contains("@0.2.0")), "v2 still serves");
}

#[tokio::test]
async fn disable_and_enable_take_effect_within_seconds_without_restarts() {
    let ns = control_plane().namespace("disable").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    apply(ns.name(), &format_plugin("npm", "source:\n  builtin:\n    format: npm")).await;
    wait_ready(ns.name(), "npm", SOON).await;
    let npm_status = || async { stack.validate("npm", "x/-/x-1.0.0.tgz", b"not a tarball").await.map(|a| a.status) };
    eventually("npm to be served", SOON, || async {
        match npm_status().await {
            Ok(422) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let kubectl = control_plane().kubectl();
    let disabled_at = Instant::now();
    kubectl.succeed(&["patch", "fp/npm", "-n", ns.name(), "--type=merge", "-p", r#"{"spec":{"enabled":false}}"#]).await;
    eventually("npm to be unavailable", Duration::from_secs(5), || async {
        match npm_status().await {
            Ok(409) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("disable → format unavailable in {:?}", disabled_at.elapsed());
    let api = ns.api::<FormatPlugin>();
    let message = wait_condition(&api, "npm", "True", "Disabled").await;
    assert!(message.contains("disabled"), "{message}");

    kubectl.succeed(&["patch", "fp/npm", "-n", ns.name(), "--type=merge", "-p", r#"{"spec":{"enabled":true}}"#]).await;
    eventually("npm to be served again", Duration::from_secs(5), || async {
        match npm_status().await {
            Ok(422) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    wait_condition(&api, "npm", "True", "Succeeded").await;

    // Suspended: a spec change is not acted on, and what was published keeps serving.
    let patch = |spec: &str| format!(r#"{{"spec":{spec}}}"#);
    kubectl.succeed(&["patch", "fp/npm", "-n", ns.name(), "--type=merge", "-p", &patch(r#"{"suspend":true}"#)]).await;
    let suspended = patch(r#"{"source":{"builtin":{"format":"no-such-format"}}}"#);
    kubectl.succeed(&["patch", "fp/npm", "-n", ns.name(), "--type=merge", "-p", &suspended]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let plugin = api.get("npm").await.expect("get");
    let observed = plugin.status.as_ref().and_then(|s| s.observed_generation);
    assert!(observed < plugin.metadata.generation, "a suspended object is not reconciled: {observed:?}");
    assert_eq!(npm_status().await.expect("call"), 422, "npm still serves");
    kubectl.succeed(&["patch", "fp/npm", "-n", ns.name(), "--type=merge", "-p", &patch(r#"{"suspend":false}"#)]).await;
    let message = wait_condition(&api, "npm", "False", "ValidationFailed").await;
    assert!(
        message.contains("unknown builtin format \"no-such-format\"") && message.contains("still serving"),
        "{message}"
    );
    assert_eq!(npm_status().await.expect("call"), 422, "the last good version still serves");

    let events = kubectl.succeed(&["get", "events", "-n", ns.name(), "-o", "jsonpath={.items[*].reason}"]).await;
    for reason in ["Installed", "Disabled", "Enabled"] {
        assert!(events.contains(reason), "an Event with reason {reason}: {events}");
    }
    assert_eq!(stack.host.log().matches("serving; try").count(), 1, "the host did not restart");
}

#[tokio::test]
async fn delete_unloads_the_format_and_collects_the_store_entry_no_one_references() {
    let ns = control_plane().namespace("delete").await;
    let stack = Stack::start(ns.name(), &["--gc-grace=1s", "--gc-interval=1s"]).await.expect("stack starts");
    let files = FileServer::start().await.expect("file server starts");
    let (manifest, wasm) = example_files("unity-format");
    let url = files.put("/unity.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    // Two objects reference one store entry: only the second delete frees it.
    let (other_manifest, _) = example_files("misbehaving");
    let shared =
        files.put("/shared.zip", Served::File(zip(&[("plugin.toml", &other_manifest), ("plugin.wasm", &wasm)])));
    apply(ns.name(), &format_plugin("unity", &format!("source:\n  url:\n    url: {url}"))).await;
    wait_ready(ns.name(), "unity", SOON).await;
    apply(ns.name(), &format_plugin("shared", &format!("source:\n  url:\n    url: {shared}"))).await;
    let api = ns.api::<FormatPlugin>();
    // The same component under another key fails validation (its format-key is unity).
    wait_condition(&api, "shared", "False", "ValidationFailed").await;
    eventually("the host to serve unity", SOON, || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        if formats.contains_key("unity") { Ok(()) } else { Err(format!("{formats:?}")) }
    })
    .await;
    assert_eq!(store_contents(&stack.store()).0.len(), 1);

    let kubectl = control_plane().kubectl();
    kubectl.succeed(&["delete", "fp/unity", "-n", ns.name(), "--wait=true", "--timeout=30s"]).await;
    eventually("the host to unload unity", Duration::from_secs(5), || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        if formats.contains_key("unity") { Err(format!("{formats:?}")) } else { Ok(()) }
    })
    .await;
    let answer = stack.validate("unity", "x.unitypackage", b"").await.expect("call");
    assert_eq!(answer.status, 404, "{answer:?}");
    eventually("the unreferenced store entry to be collected", Duration::from_secs(20), || async {
        let (published, _) = store_contents(&stack.store());
        if published.is_empty() { Ok(()) } else { Err(format!("{published:?}")) }
    })
    .await;
    let events = kubectl.succeed(&["get", "events", "-n", ns.name(), "-o", "jsonpath={.items[*].reason}"]).await;
    assert!(events.contains("Removed"), "a Removed Event: {events}");
}

#[tokio::test]
async fn a_second_plugin_for_an_owned_key_is_refused_naming_the_owner_until_the_owner_goes() {
    let ns = control_plane().namespace("conflict").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    apply(ns.name(), &format_plugin("npm-builtin", "source:\n  builtin:\n    format: npm")).await;
    wait_ready(ns.name(), "npm-builtin", SOON).await;

    // The npm example plugin, repackaged to claim the key npm.
    let (manifest, wasm) = example_files("npm-format");
    let manifest = String::from_utf8_lossy(&manifest).replace("key = \"npm-wasm\"", "key = \"npm\"");
    let url = files.put("/npm.zip", Served::File(zip(&[("plugin.toml", manifest.as_bytes()), ("plugin.wasm", &wasm)])));
    apply(ns.name(), &format_plugin("npm-plugin", &format!("source:\n  url:\n    url: {url}"))).await;
    let api = ns.api::<FormatPlugin>();
    let message = wait_condition(&api, "npm-plugin", "False", "ValidationFailed").await;
    // The example component says its key is npm-wasm, so it cannot claim npm.
    assert!(message.contains("npm-wasm"), "{message}");

    apply(ns.name(), &format_plugin("npm-again", "source:\n  builtin:\n    format: npm")).await;
    let message = wait_condition(&api, "npm-again", "False", "FormatConflict").await;
    assert!(message.contains(&format!("FormatPlugin {}/npm-builtin", ns.name())), "{message}");
    let formats = stack.formats().await.expect("formats");
    assert_eq!(formats["npm"]["origin"]["kind"], "builtin", "the owner keeps serving: {formats:?}");

    // While the key changes hands, callers are told it is unavailable (409),
    // never that it is unknown (404).
    let stack = std::sync::Arc::new(stack);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = {
        let (stack, done) = (stack.clone(), done.clone());
        tokio::spawn(async move {
            let mut answers = std::collections::BTreeMap::<u16, usize>::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = stack.validate("npm", "left-pad-1.0.0.tgz", b"").await.expect("the host answers");
                *answers.entry(answer.status).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        })
    };
    control_plane().kubectl().succeed(&["delete", "fp/npm-builtin", "-n", ns.name()]).await;
    wait_condition(&api, "npm-again", "True", "Succeeded").await;
    eventually("npm to be served by the new owner", SOON, || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        if formats.get("npm").is_some_and(|f| f["state"] == "active") { Ok(()) } else { Err(format!("{formats:?}")) }
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = caller.await.expect("the caller finishes");
    assert!(!answers.contains_key(&404), "no caller was told npm is unknown during the handover: {answers:?}");
}
