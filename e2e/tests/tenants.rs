//! The operator's trust invariants against the real binaries and API server:
//! what a tenant who may create FormatPlugins tries, and what the operator does
//! instead (PRODUCT.md, "Trust invariants" 3–5; docs/operations.md, "Security").

mod support;

use support::{apply, format_plugin, refused, wait_condition};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{Webhooked, control_plane};

/// Invariant 4: `local` sources read only under the operator's roots. A path
/// outside them (a device, a link out, `..`) is refused without being opened,
/// whether the webhook sees it or only the controller does, and a FIFO inside
/// them is refused instead of hanging the fetch.
#[tokio::test]
async fn local_sources_read_only_regular_files_under_the_configured_roots() {
    let ns = control_plane().namespace("local-roots").await;
    let root = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/dev/zero", root.path().join("zero")).expect("link");
    let fifo = root.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
    let roots = format!("--local-source-roots={}", root.path().display());
    let mut webhook = Webhooked::start(ns.name(), &[&roots]).await.expect("operator and host start");
    let api = ns.api::<FormatPlugin>();
    let local = |path: &str| format!("source:\n  local:\n    path: {path}\ntimeout: 5s");

    // Stored before the webhook is registered: the controller refuses them.
    let escapes = [
        ("zero", "/dev/zero".to_owned()),
        ("link-out", root.path().join("zero").display().to_string()),
        ("dot-dot", root.path().join("../../proc/self/environ").display().to_string()),
    ];
    for (name, path) in &escapes {
        apply(ns.name(), &format_plugin(name, &local(path))).await;
    }
    for (name, path) in &escapes {
        let message = wait_condition(&api, name, "False", "SourceNotAllowed").await;
        assert!(message.contains(&format!("{path:?} is not a file or directory under")), "{message}");
    }
    apply(ns.name(), &format_plugin("fifo", &local(&fifo.display().to_string()))).await;
    let message = wait_condition(&api, "fifo", "False", "FetchFailed").await;
    assert!(message.contains("it is not a regular file"), "{message}");
    assert!(webhook.stack.operator.process.is_running(), "the operator survived");
    assert!(webhook.stack.operator.is_leading().await, "and still leads");

    // With the webhook, they are refused at apply time.
    webhook.register().await.expect("the webhook is registered");
    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("late", &local("/dev/zero"))).await;
    assert!(stderr.contains("\"/dev/zero\" is not a file or directory under"), "{stderr}");
    assert!(api.get_opt("late").await.expect("get").is_none(), "the refused object was not stored");
}

/// Invariant 4, the default: an operator started without roots reads no local
/// path at all, and says how to turn local sources on.
#[tokio::test]
async fn without_roots_local_sources_are_off() {
    let ns = control_plane().namespace("local-off").await;
    let webhook = Webhooked::start(ns.name(), &[]).await.expect("operator and host start");
    webhook.register().await.expect("the webhook is registered");
    let stderr = refused(
        &["apply", "-n", ns.name(), "-f", "-"],
        &format_plugin("dev", "source:\n  local:\n    path: /etc/hostname"),
    )
    .await;
    assert!(stderr.contains("local sources are turned off") && stderr.contains("--local-source-roots"), "{stderr}");
}
