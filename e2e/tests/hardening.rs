//! The host's trust invariants against the real binaries: what a store writer,
//! a hostile plugin or an anonymous HTTP caller tries, and what the host does
//! instead (PRODUCT.md, "Trust invariants"; docs/architecture.md, "Threat model").

mod support;

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use sha2::Digest as _;
use support::{apply, format_plugin, wait_ready};
use wasmplug_crds::{Artifact, FormatPlugin, Precompiled};
use wasmplug_e2e::{Distribution, FileServer, Served, Stack, control_plane, eventually, example_files, zip};

const SOON: Duration = Duration::from_secs(60);

/// Invariant 1: a store writer who replaces a plugin's precompiled native code
/// does not get it run; the host, downloading it afresh, refuses the file and
/// compiles plugin.wasm, and says so.
#[tokio::test]
async fn a_precompiled_file_swapped_in_the_store_is_never_run() {
    let ns = control_plane().namespace("swapped-cwasm").await;
    let mut stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    for (name, example) in [("unity", "unity-format"), ("misbehaving", "misbehaving")] {
        let (manifest, wasm) = example_files(example);
        let package = zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)]);
        let url = files.put(&format!("/{name}.zip"), Served::File(package));
        apply(ns.name(), &format_plugin(name, &format!("source:\n  url:\n    url: {url}"))).await;
        wait_ready(ns.name(), name, SOON).await;
    }
    let compilation = eventually("the host to load unity", SOON, || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        let unity = formats.get("unity").filter(|f| f["state"] == "active").ok_or(format!("{formats:?}"))?;
        Ok(unity["compilation"].clone())
    })
    .await;
    assert_eq!(compilation, serde_json::json!({"from": "precompiled"}), "the operator's verified file is used");

    // Replace unity's native code with another plugin's, compiled by the operator
    // for the same engine.
    let api = ns.api::<FormatPlugin>();
    let published = |plugin: FormatPlugin| {
        let artifact = plugin.status.and_then(|s| s.artifact).expect("published");
        let precompiled: Precompiled = artifact.precompiled.clone().expect("precompiled");
        stack.store().join(&artifact.path).join(precompiled.file)
    };
    let unity = published(api.get("unity").await.expect("exists"));
    let other = published(api.get("misbehaving").await.expect("exists"));
    std::fs::copy(&other, &unity).expect("swap the file");
    let file = unity.file_name().expect("a file").to_string_lossy().into_owned();

    std::fs::remove_dir_all(stack.cache("host")).expect("the host's cache goes");
    stack.restart_host().await.expect("the host restarts");
    let formats = stack.formats().await.expect("formats");
    let unity = &formats["unity"];
    assert_eq!(unity["state"], "active", "{unity}");
    assert_eq!(unity["compilation"]["from"], "plugin.wasm", "{unity}");
    let reason = unity["compilation"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&file) && reason.contains("status says"), "the reason names the file: {reason}");
    let answer = stack.validate("unity", "Assets/x.unitypackage", b"not a unity package").await.expect("answers");
    assert_eq!(answer.status, 422, "unity's own code answers: {answer:?}");
    assert!(stack.host.log().contains("compiling plugin.wasm on this host"), "the log says why");
}

/// Invariant 2: a plugin whose `format-key` sleeps (hosts call it while loading)
/// fails its load at the time limit, and meanwhile another tenant's disable and
/// the host's readiness go on without it. The test publishes the plugin itself
/// into a shared store, as the operator would if it had not refused it.
#[tokio::test]
async fn a_load_that_hangs_in_format_key_holds_up_no_other_change() {
    let ns = control_plane().namespace("slow-load").await;
    let mut stack =
        Stack::start_with(ns.name(), &[], Distribution::SharedVolume).await.expect("operator and host start");
    apply(ns.name(), &format_plugin("npm", "source:\n  builtin:\n    format: npm")).await;
    wait_ready(ns.name(), "npm", SOON).await;
    eventually("npm to be served", SOON, || npm_answers(&stack, 422)).await;

    // The operator refuses this plugin (its validation calls format-key too), so
    // it stops, and the test writes the store entry and the status itself.
    stack.operator.process.kill().await;
    let (manifest, wasm) = example_files("slow-format-key");
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(&wasm));
    let path = Artifact::path_for(&digest);
    let entry = stack.store().join(&path);
    std::fs::create_dir_all(&entry).expect("mkdir");
    std::fs::write(entry.join("plugin.toml"), &manifest).expect("write");
    std::fs::write(entry.join("plugin.wasm"), &wasm).expect("write");
    apply(ns.name(), &format_plugin("slow", "source:\n  builtin:\n    format: npm\nsuspend: true")).await;
    let status = serde_json::json!({
        "apiVersion": "wasmplug.dev/v1alpha1", "kind": "FormatPlugin",
        "status": {
            "artifact": {
                "digest": digest, "path": path, "revision": "by hand", "size": wasm.len(),
                "lastUpdateTime": "2026-11-29T10:00:00Z",
            },
            "plugin": {
                "name": "slow-format-key", "version": "0.1.0", "formatKey": "slow-format-key",
                "capabilities": {"validateArtifact": true},
            },
        },
    });
    let api = ns.api::<FormatPlugin>();
    api.patch_status("slow", &PatchParams::apply("wasmplug-operator").force(), &Patch::Apply(status))
        .await
        .expect("status written");

    // While the host loads it, another format is disabled: that takes effect at once.
    let kubectl = control_plane().kubectl();
    kubectl.succeed(&["patch", "fp/npm", "-n", ns.name(), "--type=merge", "-p", r#"{"spec":{"enabled":false}}"#]).await;
    let disabled = || npm_answers(&stack, 409);
    eventually("npm to be unavailable while the other load hangs", Duration::from_secs(5), disabled).await;
    let failed = eventually("the slow load to fail at the time limit", SOON, || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        let slow = formats.get("slow-format-key").filter(|f| f["state"] == "failed").ok_or(format!("{formats:?}"))?;
        Ok(slow["last_error"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    assert!(failed.contains("failed to call format-key") && failed.contains("time limit"), "{failed}");

    // A restarted host is ready once the hanging load has failed, and lists it so.
    stack.restart_host().await.expect("the host restarts and becomes ready");
    let formats = stack.formats().await.expect("formats");
    assert_eq!(formats["slow-format-key"]["state"], "failed", "{formats:?}");
    assert_eq!(formats["npm"]["state"], "disabled", "{formats:?}");
}

/// Whether the host answers an npm validation with `status`.
async fn npm_answers(stack: &Stack, status: u16) -> Result<(), String> {
    match stack.validate("npm", "x/-/x-1.0.0.tgz", b"not a tarball").await {
        Ok(answer) if answer.status == status => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// Invariant 3 (docs/operations.md, "Quarantine"): a plugin that keeps failing
/// by itself is quarantined on the host, and the documented actions end it —
/// the reset annotation, and disabling then enabling the FormatPlugin.
#[tokio::test]
async fn a_quarantine_ends_with_the_reset_annotation_or_a_disable_and_enable() {
    let ns = control_plane().namespace("quarantine").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let (manifest, wasm) = example_files("misbehaving");
    let url = files.put("/misbehaving.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    let spec = format!("source:\n  url:\n    url: {url}\nlimits:\n  timeout: 100ms");
    apply(ns.name(), &format_plugin("misbehaving", &spec)).await;
    wait_ready(ns.name(), "misbehaving", SOON).await;
    eventually("the host to serve the plugin", SOON, || async {
        let answer = stack.validate("misbehaving", "fine", b"").await.map_err(|e| e.to_string())?;
        (answer.status == 204).then_some(()).ok_or(format!("{answer:?}"))
    })
    .await;

    let quarantine = async || {
        for _ in 0..5 {
            let answer = stack.validate("misbehaving", "loop", b"").await.expect("answers");
            assert_eq!(answer.status, 504, "{answer:?}");
        }
        let answer = stack.validate("misbehaving", "fine", b"").await.expect("answers");
        assert_eq!(answer.status, 409, "quarantined after five faults: {answer:?}");
        assert!(answer.body.contains("quarantined: 5 of its last"), "{}", answer.body);
    };
    let served_again = || async {
        let answer = stack.validate("misbehaving", "fine", b"").await.map_err(|e| e.to_string())?;
        (answer.status == 204).then_some(()).ok_or(format!("{answer:?}"))
    };

    quarantine().await;
    let kubectl = control_plane().kubectl();
    let annotate = ["annotate", "fp/misbehaving", "-n", ns.name(), "wasmplug.dev/reset-quarantine=1", "--overwrite"];
    kubectl.succeed(&annotate).await;
    eventually("the annotation to end the quarantine", Duration::from_secs(10), served_again).await;
    // The host logs the reset just after making it, so a call may see it first.
    eventually("the host to log the reset", Duration::from_secs(5), || async {
        let log = stack.host.log();
        log.contains("quarantine reset by annotation").then_some(()).ok_or_else(|| "not logged yet".to_owned())
    })
    .await;

    quarantine().await;
    for enabled in ["false", "true"] {
        let patch = format!(r#"{{"spec":{{"enabled":{enabled}}}}}"#);
        kubectl.succeed(&["patch", "fp/misbehaving", "-n", ns.name(), "--type=merge", "-p", &patch]).await;
        if enabled == "false" {
            eventually("the disable to reach the host", Duration::from_secs(10), || async {
                let formats = stack.formats().await.map_err(|e| e.to_string())?;
                (formats["misbehaving"]["state"] == "disabled").then_some(()).ok_or(format!("{formats:?}"))
            })
            .await;
        }
    }
    eventually("re-enabling to end the quarantine", Duration::from_secs(10), served_again).await;
}
