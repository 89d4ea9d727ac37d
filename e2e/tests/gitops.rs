//! What GitOps tools read from a FormatPlugin: the Argo CD health check in
//! docs/gitops/argocd-health.lua, run (as Lua 5.1, Argo CD's dialect) against
//! real objects the operator has reported on, in each state a user meets.

mod support;

use std::time::Duration;

use support::{apply, format_plugin, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{Stack, control_plane, eventually, free_ports, repository_root};

const SOON: Duration = Duration::from_secs(60);

/// Argo CD's verdict on `object`: (status, message).
fn argo_health(object: &serde_json::Value) -> (String, String) {
    let lua = mlua::Lua::new();
    let options = mlua::SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false);
    let value = mlua::LuaSerdeExt::to_value_with(&lua, object, options).expect("the object converts to Lua");
    lua.globals().set("obj", value).expect("obj is set");
    let path = repository_root().join("docs/gitops/argocd-health.lua");
    let script = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hs: mlua::Table = lua.load(&script).set_name("argocd-health.lua").eval().expect("the health check runs");
    (hs.get("status").expect("hs.status"), hs.get("message").expect("hs.message"))
}

async fn object(namespace: &str, name: &str) -> serde_json::Value {
    let json = control_plane().kubectl().succeed(&["get", "fp", name, "-n", namespace, "-o", "json"]).await;
    serde_json::from_str(&json).expect("kubectl prints JSON")
}

#[tokio::test]
async fn the_argo_cd_health_check_reads_each_state_as_argo_cd_should() {
    let ns = control_plane().namespace("argocd-health").await;
    let _stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let api = ns.api::<FormatPlugin>();
    let [closed] = free_ports().expect("a free port");

    apply(ns.name(), &format_plugin("ready", "source:\n  builtin:\n    format: npm")).await;
    apply(ns.name(), &format_plugin("disabled", "source:\n  builtin:\n    format: pypi\nenabled: false")).await;
    apply(ns.name(), &format_plugin("broken", "source:\n  builtin:\n    format: no-such-format")).await;
    let unreachable = format!("source:\n  url:\n    url: http://127.0.0.1:{closed}/plugin.zip");
    apply(ns.name(), &format_plugin("retrying", &unreachable)).await;
    wait_ready(ns.name(), "ready", SOON).await;
    wait_condition(&api, "disabled", "True", "Disabled").await;
    wait_condition(&api, "broken", "False", "ValidationFailed").await;
    wait_condition(&api, "retrying", "False", "FetchFailed").await;

    let ready = object(ns.name(), "ready").await;
    let (status, message) = argo_health(&ready);
    assert_eq!(status, "Healthy", "{message}");
    // The same object just after a spec change, before the operator observed it.
    let mut changed = ready.clone();
    changed["metadata"]["generation"] =
        serde_json::json!(ready["metadata"]["generation"].as_i64().expect("generation") + 1);
    let (status, message) = argo_health(&changed);
    assert_eq!(status, "Progressing", "{message}");
    // Disabled is a state the user asked for, and it is in effect.
    let (status, message) = argo_health(&object(ns.name(), "disabled").await);
    assert_eq!(status, "Healthy", "{message}");
    assert!(message.contains("disabled"), "{message}");
    let (status, message) = argo_health(&object(ns.name(), "broken").await);
    assert_eq!(status, "Degraded", "{message}");
    assert!(message.contains("unknown builtin format"), "{message}");
    let (status, message) = argo_health(&object(ns.name(), "retrying").await);
    assert_eq!(status, "Progressing", "{message}");

    // Suspended, whatever its status says.
    let suspend = r#"{"spec":{"suspend":true}}"#;
    control_plane().kubectl().succeed(&["patch", "fp", "ready", "-n", ns.name(), "--type=merge", "-p", suspend]).await;
    let (status, _) = argo_health(&object(ns.name(), "ready").await);
    assert_eq!(status, "Suspended");

    // A change the operator has not observed yet is progress, not health: an
    // object in a namespace no operator follows never gets that far.
    let elsewhere = control_plane().namespace("argocd-health-unwatched").await;
    apply(elsewhere.name(), &format_plugin("waiting", "source:\n  builtin:\n    format: npm")).await;
    let (status, message) = argo_health(&object(elsewhere.name(), "waiting").await);
    assert_eq!(status, "Progressing", "{message}");

    // Enabling the disabled one: Healthy again once the operator reports.
    let enable = r#"{"spec":{"enabled":true}}"#;
    control_plane()
        .kubectl()
        .succeed(&["patch", "fp", "disabled", "-n", ns.name(), "--type=merge", "-p", enable])
        .await;
    eventually("the enabled object to be Healthy", SOON, || async {
        let (status, message) = argo_health(&object(ns.name(), "disabled").await);
        (status == "Healthy" && !message.contains("disabled")).then_some(()).ok_or(format!("{status}: {message}"))
    })
    .await;
}
