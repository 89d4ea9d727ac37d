//! Steps shared by the operator and lifecycle tests: apply a FormatPlugin as a
//! user would, wait for its conditions, read its status.

#![allow(dead_code)]

use std::time::Duration;

use kube::Api;
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{Kubectl, control_plane, eventually};

/// `kubectl apply -f -` of `yaml` in `namespace`.
pub async fn apply(namespace: &str, yaml: &str) {
    let kubectl = control_plane().kubectl();
    let output = kubectl.run_with_stdin(&["apply", "-n", namespace, "-f", "-"], yaml).await.expect("kubectl runs");
    output.success().unwrap_or_else(|e| panic!("kubectl apply failed: {e:#}\n{yaml}"));
}

/// A FormatPlugin manifest named `name` whose spec is the YAML `spec` (indented by
/// two spaces under `spec:`).
pub fn format_plugin(name: &str, spec: &str) -> String {
    let spec: String = spec.trim().lines().map(|line| format!("  {line}\n")).collect();
    format!("apiVersion: wasmplug.dev/v1alpha1\nkind: FormatPlugin\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// `kubectl wait --for=condition=Ready fp/<name>`, as a pipeline would.
pub async fn wait_ready(namespace: &str, name: &str, timeout: Duration) {
    let kubectl: Kubectl = control_plane().kubectl();
    let timeout = format!("--timeout={}s", timeout.as_secs());
    let fp = format!("fp/{name}");
    let output =
        kubectl.run(&["wait", "-n", namespace, "--for=condition=Ready", &fp, &timeout]).await.expect("kubectl runs");
    if let Err(error) = output.success() {
        let dump =
            kubectl.run(&["get", "-n", namespace, &fp, "-o", "yaml"]).await.map(|o| o.stdout).unwrap_or_default();
        panic!("{error:#}\n{dump}");
    }
}

/// Waits until the Ready condition of `name` has `status` and `reason`; returns its message.
pub async fn wait_condition(api: &Api<FormatPlugin>, name: &str, status: &str, reason: &str) -> String {
    eventually(&format!("{name} Ready={status} reason {reason}"), Duration::from_secs(60), || async {
        let plugin = api.get(name).await.map_err(|e| e.to_string())?;
        let ready = plugin.condition(wasmplug_crds::conditions::ConditionType::Ready).cloned();
        let current = plugin.status.as_ref().and_then(|s| s.observed_generation) == plugin.metadata.generation;
        match ready {
            Some(c) if current && c.status == status && c.reason == reason => Ok(c.message),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Reasons of the Events about `name`, oldest first.
pub async fn event_reasons(namespace: &str, name: &str) -> Vec<String> {
    let jsonpath =
        format!("-o=jsonpath={{range .items[?(@.regarding.name==\"{name}\")]}}{{.reason}}{{\"\\n\"}}{{end}}");
    let args = ["get", "events.events.k8s.io", "-n", namespace, "--sort-by=.metadata.creationTimestamp", &jsonpath];
    control_plane().kubectl().succeed(&args).await.lines().map(str::to_owned).collect()
}

/// The object's status, which must be set.
pub async fn status(api: &Api<FormatPlugin>, name: &str) -> wasmplug_crds::FormatPluginStatus {
    api.get(name).await.expect("the FormatPlugin exists").status.expect("the FormatPlugin has a status")
}

/// Entries published in the store (`artifacts/sha256/*`) and anything left in staging.
pub fn store_contents(store: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let list = |dir: std::path::PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    (list(store.join("artifacts/sha256")), list(store.join(".staging")))
}

/// `kubectl <args>` (with `stdin`) that must fail; returns what kubectl printed.
pub async fn refused(args: &[&str], stdin: &str) -> String {
    let output = control_plane().kubectl().run_with_stdin(args, stdin).await.expect("kubectl runs");
    output.failure().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The SHA-256 of `bytes` as 64 lowercase hex digits (the form spec.sha256 takes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
