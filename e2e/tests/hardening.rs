//! The host's trust invariants against the real binaries: what a store writer,
//! a hostile plugin or an anonymous HTTP caller tries, and what the host does
//! instead (PRODUCT.md, "Trust invariants"; docs/architecture.md, "Threat model").

mod support;

use std::time::Duration;

use support::{apply, format_plugin, wait_ready};
use wasmplug_crds::{FormatPlugin, Precompiled};
use wasmplug_e2e::{FileServer, Served, Stack, control_plane, eventually, example_files, zip};

const SOON: Duration = Duration::from_secs(60);

/// Invariant 1: a store writer who replaces a plugin's precompiled native code
/// does not get it run; the host compiles plugin.wasm and says so.
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
