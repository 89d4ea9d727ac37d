//! The admission webhook with the real API server calling it: the operator
//! serves it over TLS, and the chart's own ValidatingWebhookConfiguration (its
//! template rendered with helm, pointed at the operator by URL and scoped to
//! the test's namespace) registers it. Every refusal is what `kubectl` prints.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use support::{apply, format_plugin, refused, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{GitServer, Webhooked, control_plane, eventually, numbered_plugin};

const SOON: Duration = Duration::from_secs(60);

const NPM: &str = "source:\n  builtin:\n    format: npm";
const PYPI: &str = "source:\n  builtin:\n    format: pypi";

#[tokio::test]
async fn the_last_enabled_format_can_be_neither_disabled_nor_deleted() {
    let ns = control_plane().namespace("webhook-last").await;
    let webhook = Webhooked::start(ns.name(), &[]).await.expect("operator and host start");
    apply(ns.name(), &format_plugin("npm", NPM)).await;
    wait_ready(ns.name(), "npm", SOON).await;
    webhook.register().await.expect("the webhook is registered");

    let disable = r#"{"spec":{"enabled":false}}"#;
    let stderr = refused(&["patch", "fp", "npm", "-n", ns.name(), "--type=merge", "-p", disable], "").await;
    assert!(stderr.contains("at least one format must remain enabled"), "{stderr}");
    assert!(stderr.contains(&format!("{}/npm is the last enabled FormatPlugin", ns.name())), "{stderr}");
    let stderr = refused(&["delete", "fp", "npm", "-n", ns.name()], "").await;
    assert!(stderr.contains("at least one format must remain enabled"), "{stderr}");
    // Refused changes lose nothing: npm is still enabled and served.
    let formats = webhook.stack.formats().await.expect("formats");
    assert_eq!(formats["npm"]["state"], "active", "{formats:?}");

    // With another format enabled, both are allowed.
    apply(ns.name(), &format_plugin("pypi", PYPI)).await;
    let kubectl = control_plane().kubectl();
    kubectl.succeed(&["patch", "fp", "npm", "-n", ns.name(), "--type=merge", "-p", disable]).await;
    kubectl.succeed(&["delete", "fp", "npm", "-n", ns.name()]).await;

    // The annotation lets the last one go on purpose.
    let stderr = refused(&["delete", "fp", "pypi", "-n", ns.name()], "").await;
    assert!(stderr.contains("wasmplug.dev/allow-last-removal=true"), "{stderr}");
    kubectl.succeed(&["annotate", "fp", "pypi", "-n", ns.name(), "wasmplug.dev/allow-last-removal=true"]).await;
    kubectl.succeed(&["delete", "fp", "pypi", "-n", ns.name()]).await;
}

#[tokio::test]
async fn a_second_plugin_for_an_owned_key_is_refused_naming_the_owner() {
    let ns = control_plane().namespace("webhook-owned").await;
    let webhook = Webhooked::start(ns.name(), &[]).await.expect("operator and host start");
    webhook.register().await.expect("the webhook is registered");
    apply(ns.name(), &format_plugin("npm", NPM)).await;
    wait_ready(ns.name(), "npm", SOON).await;

    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("npm-again", NPM)).await;
    let owner = format!("format key \"npm\" is already owned by FormatPlugin {}/npm", ns.name());
    assert!(stderr.contains(&owner), "{stderr}");

    // A plugin declares its key with spec.formatKey; the operator holds the
    // package to it.
    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("plugin").expect("repository");
    let (manifest, wasm) = numbered_plugin(4);
    repo.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)], "plugin").expect("commit");
    let source = format!("source:\n  git:\n    url: {}\n    ref:\n      branch: main", repo.url());
    let stderr = refused(
        &["apply", "-n", ns.name(), "-f", "-"],
        &format_plugin("claims-npm", &format!("{source}\nformatKey: npm")),
    )
    .await;
    assert!(stderr.contains(&owner), "{stderr}");
    apply(ns.name(), &format_plugin("mislabelled", &format!("{source}\nformatKey: unity"))).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "mislabelled", "False", "ValidationFailed").await;
    assert!(message.contains("failed to match spec.formatKey"), "{message}");
    assert!(message.contains("declares format key \"numbered-000004\""), "{message}");
}

#[tokio::test]
async fn sources_outside_the_allowlist_are_refused_at_apply_time_and_never_fetched() {
    let ns = control_plane().namespace("webhook-hosts").await;
    let webhook = Webhooked::start(ns.name(), &["--allowed-source-hosts=127.0.0.1,*.plugins.example.org"])
        .await
        .expect("operator and host start");
    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("plugin").expect("repository");
    let (manifest, wasm) = numbered_plugin(5);
    repo.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)], "plugin").expect("commit");
    let elsewhere = "source:\n  url:\n    url: https://downloads.example.com/plugin.zip";

    // Stored before the webhook was registered: the operator refuses to fetch it.
    apply(ns.name(), &format_plugin("early", elsewhere)).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "early", "False", "SourceNotAllowed").await;
    assert!(message.contains("source host \"downloads.example.com\" is not allowed"), "{message}");

    webhook.register().await.expect("the webhook is registered");
    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("late", elsewhere)).await;
    assert!(stderr.contains("source host \"downloads.example.com\" is not allowed"), "{stderr}");
    assert!(stderr.contains("127.0.0.1, *.plugins.example.org"), "{stderr}");

    let allowed = format!("source:\n  git:\n    url: {}\n    ref:\n      branch: main", repo.url());
    apply(ns.name(), &format_plugin("allowed", &allowed)).await;
    wait_ready(ns.name(), "allowed", SOON).await;
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let ns = control_plane().namespace("webhook-rotation").await;
    let webhook = Webhooked::start(ns.name(), &[]).await.expect("operator and host start");
    webhook.register().await.expect("the webhook is registered");
    let first = served_certificate(webhook.port).await;
    assert_eq!(first, der_of(&webhook.certificate.cert));

    // What the kubelet does when the Secret is renewed: new files in place.
    let renewed =
        control_plane().certificates().server(&format!("webhook-{}-renewed", ns.name())).expect("certificate");
    std::fs::copy(&renewed.key, &webhook.certificate.key).expect("replace key");
    std::fs::copy(&renewed.cert, &webhook.certificate.cert).expect("replace certificate");
    let expected = der_of(&renewed.cert);
    eventually("the renewed certificate is served", SOON, || async {
        let served = served_certificate(webhook.port).await;
        (served == expected).then_some(()).ok_or_else(|| "the old certificate".to_owned())
    })
    .await;
    assert!(webhook.stack.operator.process.log().contains("reloaded the webhook certificate"));

    // The API server still reaches the webhook through the new certificate.
    apply(ns.name(), &format_plugin("npm", NPM)).await;
    wait_ready(ns.name(), "npm", SOON).await;
    let stderr = refused(&["delete", "fp", "npm", "-n", ns.name()], "").await;
    assert!(stderr.contains("at least one format must remain enabled"), "{stderr}");
}

/// Trust invariant 3 for the operator: a client that opens the webhook's port
/// and never completes a TLS handshake (or sends half a request) is dropped,
/// and the webhook keeps answering.
#[tokio::test]
async fn a_stalled_handshake_or_request_is_dropped_and_the_webhook_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ns = control_plane().namespace("webhook-stall").await;
    let webhook = Webhooked::start(ns.name(), &["--header-read-timeout-ms=500", "--max-connections=4"])
        .await
        .expect("operator and host start");
    let address = format!("127.0.0.1:{}", webhook.port);
    let mut stalled = Vec::new();
    for hello in [&b""[..], b"\x16\x03\x01\x00"] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
        stream.write_all(hello).await.expect("write");
        stalled.push(stream);
    }
    for stream in &mut stalled {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the operator closes a connection that does not finish its handshake");
    }
    // More stalled connections than --max-connections wait in the backlog; the
    // API server's next call gets through once they are dropped.
    let crowd: Vec<_> =
        futures::future::join_all((0..8).map(|_| tokio::net::TcpStream::connect(address.clone()))).await;
    assert_eq!(served_certificate(webhook.port).await, der_of(&webhook.certificate.cert));
    drop(crowd);
}

/// The DER of the certificate the webhook serves now.
async fn served_certificate(port: u16) -> Vec<u8> {
    let ca = std::fs::read(control_plane().certificates().ca_cert()).expect("CA");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA parses"))
        .tls_info(true)
        .build()
        .expect("client");
    let response = client.get(format!("https://127.0.0.1:{port}/validate")).send().await.expect("the webhook answers");
    assert_eq!(response.status(), 405, "GET is not how the API server calls");
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS information");
    info.peer_certificate().expect("a certificate").to_vec()
}

fn der_of(pem: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(pem).expect("PEM");
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("base64")
}

#[tokio::test]
async fn a_plugin_that_must_be_signed_but_no_key_could_verify_is_refused() {
    let ns = control_plane().namespace("webhook-signed").await;
    let webhook = Webhooked::start(ns.name(), &["--require-signatures"]).await.expect("operator and host start");
    webhook.register().await.expect("the webhook is registered");
    let unity = "source:\n  url:\n    url: https://plugins.example.com/unity.zip";

    // The cluster requires signatures and trusts no key: nothing could verify it.
    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("unity", unity)).await;
    assert!(stderr.contains("the operator requires every plugin to be signed"), "{stderr}");
    assert!(stderr.contains("set spec.verify.secretRef to a Secret holding the publisher's public keys"), "{stderr}");
    // Builtins are not signed, and an object that brings its own keys may try.
    apply(ns.name(), &format_plugin("npm", NPM)).await;
    let with_keys = format!("{unity}\nverify:\n  secretRef:\n    name: plugin-keys");
    apply(ns.name(), &format_plugin("unity", &with_keys)).await;
    // Taking the keys away again is refused as well.
    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("unity", unity)).await;
    assert!(stderr.contains("no key could verify this plugin"), "{stderr}");
}
