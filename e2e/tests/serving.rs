//! Which hosts serve what, as the FormatPlugin tells it: every host writes its
//! own FormatHost record, and the operator rolls the records up into
//! `status.hosts`, the Serving condition and Events (docs/operations.md,
//! "Which hosts serve a plugin"). Real operator and hosts as processes, a real
//! API server; the kubelet's part (pod readiness) is played by the test where
//! no node runs the pods (tests/node.rs has the real one).

mod support;

use std::time::Duration;

use kube::api::{Patch, PatchParams, PostParams};
use support::{apply, event_reasons, format_plugin, status, wait_ready};
use wasmplug_crds::conditions::ConditionType;
use wasmplug_crds::{FormatHost, FormatPlugin};
use wasmplug_e2e::{
    FileServer, Served, Stack, control_plane, eventually, example_files, metric_value, with_custom_section, zip,
};

const SOON: Duration = Duration::from_secs(60);

/// Waits until `name`'s Serving condition has `reason` and `status.hosts` says
/// `summary` (serving/expected); returns the object.
async fn wait_serving(namespace: &str, name: &str, reason: &str, summary: &str) -> FormatPlugin {
    let api: kube::Api<FormatPlugin> = kube::Api::namespaced(control_plane().client().await, namespace);
    eventually(&format!("{name} Serving reason {reason}, {summary}"), SOON, || async {
        let plugin = api.get(name).await.map_err(|e| e.to_string())?;
        let serving = plugin.condition(ConditionType::Serving).map(|c| (c.reason.clone(), c.message.clone()));
        let hosts = plugin.status.as_ref().and_then(|s| s.hosts.clone());
        match (&serving, &hosts) {
            (Some((r, _)), Some(h)) if r == reason && h.summary == summary => Ok(plugin),
            _ => Err(format!("{serving:?} {hosts:?}")),
        }
    })
    .await
}

/// A zipped package of example `example`, with `marker` making its plugin.wasm
/// (and so its digest) its own.
fn package(example: &str, marker: &[u8]) -> Vec<u8> {
    let (manifest, wasm) = example_files(example);
    zip(&[("plugin.toml", &manifest), ("plugin.wasm", &with_custom_section(&wasm, "wasmplug-test", marker))])
}

#[tokio::test]
async fn every_host_serving_the_published_version_counts_and_a_stopped_host_leaves() {
    let ns = control_plane().namespace("serving").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let (mut host_b, _) = stack.another_host("host-b").await.expect("a second host starts");
    let files = FileServer::start().await.expect("file server starts");
    let source = |url: &str| format!("source:\n  url:\n    url: {url}");

    for version in ["v1", "v2"] {
        let url = files.put(&format!("/{version}.zip"), Served::File(package("unity-format", version.as_bytes())));
        apply(ns.name(), &format_plugin("unity", &source(&url))).await;
        wait_ready(ns.name(), "unity", SOON).await;
        let digest = status(&ns.api(), "unity").await.artifact.expect("published").digest;
        let plugin = eventually(&format!("both hosts to serve {version}"), SOON, || async {
            let plugin = wait_serving(ns.name(), "unity", "AllHostsServing", "2/2").await;
            let message = plugin.condition(ConditionType::Serving).map(|c| c.message.clone()).unwrap_or_default();
            message.contains(&digest).then_some(plugin).ok_or(message)
        })
        .await;
        let hosts = plugin.status.and_then(|s| s.hosts).expect("hosts");
        assert_eq!((hosts.expected, hosts.serving), (2, 2));
        assert!(hosts.not_serving.is_empty(), "{hosts:?}");
    }

    // The rollup's status writes reach the controller too, and fetch nothing:
    // one fetch per version applied.
    let metrics = stack.operator.metrics().await.expect("operator metrics");
    let fetches = metric_value(&metrics, "wasmplug_operator_fetch_duration_seconds_count{source=\"url\"}");
    assert_eq!(fetches, Some(2.0), "one fetch per apply");

    // kubectl answers which hosts serve what, without calling a host.
    let kubectl = control_plane().kubectl();
    let wide = kubectl.succeed(&["get", "fp/unity", "-n", ns.name(), "-o", "wide"]).await;
    assert!(wide.contains("SERVING") && wide.contains("2/2") && wide.contains("all 2 hosts serve"), "{wide}");
    let described = kubectl.succeed(&["describe", "fp/unity", "-n", ns.name()]).await;
    let summary = described.lines().any(|line| line.trim().strip_prefix("Summary:").is_some_and(|s| s.trim() == "2/2"));
    assert!(described.contains("AllHostsServing") && summary, "{described}");
    let records = kubectl.succeed(&["get", "formathosts", "-n", ns.name()]).await;
    assert!(records.contains("host-b") && records.contains("1/1 serving"), "{records}");

    // A host that stops deletes its record and is no longer expected.
    host_b.terminate().await.expect("host-b stops");
    wait_serving(ns.name(), "unity", "AllHostsServing", "1/1").await;
    let hosts = ns.api::<FormatHost>();
    assert!(hosts.get_opt("host-b").await.expect("read").is_none(), "host-b's record went with it");
}

#[tokio::test]
async fn a_host_that_cannot_load_the_version_is_named_with_its_error_until_it_can() {
    let ns = control_plane().namespace("load-failed").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let url = files.put("/unity.zip", Served::File(package("unity-format", b"v1")));
    apply(ns.name(), &format_plugin("unity", &format!("source:\n  url:\n    url: {url}"))).await;
    wait_ready(ns.name(), "unity", SOON).await;
    wait_serving(ns.name(), "unity", "AllHostsServing", "1/1").await;

    // host-b downloads from a server whose copy of plugin.wasm is damaged.
    let artifact = status(&ns.api(), "unity").await.artifact.expect("published");
    let published = stack.store().join(&artifact.path);
    let read = |file: &str| std::fs::read(published.join(file)).expect("published file");
    let mut damaged = read("plugin.wasm");
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let broken = FileServer::start().await.expect("file server starts");
    broken.put(&format!("/{}/plugin.toml", artifact.path), Served::File(read("plugin.toml")));
    let wasm_path = format!("/{}/plugin.wasm", artifact.path);
    broken.put(&wasm_path, Served::File(damaged));
    let server = format!("--artifact-server={}", broken.url(""));
    let (_host_b, _) = stack.another_host_with("host-b", &[&server]).await.expect("host-b starts");

    let plugin = wait_serving(ns.name(), "unity", "LoadFailed", "1/2").await;
    let hosts = plugin.status.as_ref().and_then(|s| s.hosts.clone()).expect("hosts");
    let report = &hosts.not_serving[0];
    assert_eq!(report.host, "host-b");
    let message = report.message.clone().unwrap_or_default();
    assert!(message.contains("plugin.wasm") && message.contains("(retrying)"), "{message}");
    let condition = plugin.condition(ConditionType::Serving).expect("Serving").clone();
    assert_eq!(condition.status, "False");
    assert!(condition.message.contains("1 of 2 hosts failed to load") && condition.message.contains("host-b"));
    let reasons = event_reasons(ns.name(), "unity").await;
    assert_eq!(reasons.iter().filter(|r| *r == "LoadFailed").count(), 1, "one Event: {reasons:?}");

    // Fixed: host-b's next try succeeds, and the FormatPlugin says so.
    broken.put(&wasm_path, Served::File(read("plugin.wasm")));
    wait_serving(ns.name(), "unity", "AllHostsServing", "2/2").await;
    let reasons = eventually("a Recovered Event", SOON, || async {
        let reasons = event_reasons(ns.name(), "unity").await;
        reasons.iter().any(|r| r == "Recovered").then_some(reasons.clone()).ok_or(format!("{reasons:?}"))
    })
    .await;
    assert_eq!(reasons.iter().filter(|r| *r == "LoadFailed").count(), 1, "no duplicates: {reasons:?}");
}

#[tokio::test]
async fn a_quarantine_on_one_host_shows_on_the_format_plugin_until_it_is_reset() {
    let ns = control_plane().namespace("serving-quarantine").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let (_host_b, _) = stack.another_host("host-b").await.expect("a second host starts");
    let files = FileServer::start().await.expect("file server starts");
    let url = files.put("/misbehaving.zip", Served::File(package("misbehaving", b"q")));
    let spec = format!("source:\n  url:\n    url: {url}\nlimits:\n  timeout: 100ms");
    apply(ns.name(), &format_plugin("misbehaving", &spec)).await;
    wait_ready(ns.name(), "misbehaving", SOON).await;
    wait_serving(ns.name(), "misbehaving", "AllHostsServing", "2/2").await;

    for _ in 0..5 {
        let answer = stack.validate("misbehaving", "loop", b"").await.expect("answers");
        assert_eq!(answer.status, 504, "{answer:?}");
    }
    let plugin = wait_serving(ns.name(), "misbehaving", "Quarantined", "1/2").await;
    let report = plugin.status.and_then(|s| s.hosts).expect("hosts").not_serving[0].clone();
    assert_eq!((report.host.as_str(), report.state.as_str()), ("host", "quarantined"), "{report:?}");
    assert!(report.message.unwrap_or_default().contains("quarantined: 5 of its last"));
    eventually("a Quarantined Event", SOON, || async {
        let reasons = event_reasons(ns.name(), "misbehaving").await;
        reasons.iter().any(|r| r == "Quarantined").then_some(()).ok_or(format!("{reasons:?}"))
    })
    .await;

    let annotate = ["annotate", "fp/misbehaving", "-n", ns.name(), "wasmplug.dev/reset-quarantine=1", "--overwrite"];
    control_plane().kubectl().succeed(&annotate).await;
    wait_serving(ns.name(), "misbehaving", "AllHostsServing", "2/2").await;
    eventually("a Recovered Event", SOON, || async {
        let reasons = event_reasons(ns.name(), "misbehaving").await;
        reasons.iter().any(|r| r == "Recovered").then_some(()).ok_or(format!("{reasons:?}"))
    })
    .await;
}

/// A record that names a pod counts while that pod is Ready: the kubelet says
/// when a host died or hung, with no heartbeat from the host. (No kubelet runs
/// here, so the test writes the pod's Ready condition as one would.)
#[tokio::test]
async fn a_host_whose_pod_is_not_ready_or_gone_is_not_counted() {
    let ns = control_plane().namespace("serving-pods").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "host-in-pod"},
        "spec": {"containers": [{"name": "host", "image": "wasmplug:test"}]}
    }))
    .expect("a pod");
    let uid = pods.create(&PostParams::default(), &pod).await.expect("pod created").metadata.uid.expect("uid");
    let set_ready = |ready: &'static str| {
        let pods = pods.clone();
        async move {
            let patch = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": ready}]}});
            pods.patch_status("host-in-pod", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("status");
        }
    };
    set_ready("True").await;
    let pod_uid = format!("--pod-uid={uid}");
    let (_host, _) = stack.another_host_with("host-in-pod", &[&pod_uid]).await.expect("the host starts");
    apply(ns.name(), &format_plugin("npm", "source:\n  builtin:\n    format: npm")).await;
    wait_ready(ns.name(), "npm", SOON).await;
    wait_serving(ns.name(), "npm", "AllHostsServing", "2/2").await;
    let record = ns.api::<FormatHost>().get("host-in-pod").await.expect("the host's record");
    let owner = record.metadata.owner_references.unwrap_or_default();
    assert_eq!(owner.first().map(|o| (o.kind.as_str(), o.uid.as_str())), Some(("Pod", uid.as_str())));

    set_ready("False").await;
    wait_serving(ns.name(), "npm", "AllHostsServing", "1/1").await;
    set_ready("True").await;
    wait_serving(ns.name(), "npm", "AllHostsServing", "2/2").await;
    pods.delete("host-in-pod", &Default::default()).await.expect("pod deleted");
    wait_serving(ns.name(), "npm", "AllHostsServing", "1/1").await;
}
