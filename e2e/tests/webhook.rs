//! The admission webhook with the real API server calling it: the operator
//! serves it over TLS, and the chart's own ValidatingWebhookConfiguration (its
//! template rendered with helm, pointed at the operator by URL and scoped to
//! the test's namespace) registers it. Every refusal is what `kubectl` prints.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use support::{apply, format_plugin, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{ClientCredentials, GitServer, Helm, Stack, control_plane, eventually, free_ports, numbered_plugin};

const SOON: Duration = Duration::from_secs(60);

/// An operator and host with the webhook served on a free port, and the
/// webhook's certificate files (which a test may replace).
struct Webhooked {
    stack: Stack,
    port: u16,
    certificate: ClientCredentials,
}

async fn start(namespace: &str, extra: &[&str]) -> Webhooked {
    let [port] = free_ports().expect("a free port");
    let issued = control_plane().certificates().server(&format!("webhook-{namespace}")).expect("certificate");
    // Files of its own, so that replacing them is this test's business.
    let dir = tempfile::tempdir().expect("temporary directory").keep();
    let certificate = ClientCredentials { cert: dir.join("tls.crt"), key: dir.join("tls.key") };
    std::fs::copy(&issued.cert, &certificate.cert).expect("copy certificate");
    std::fs::copy(&issued.key, &certificate.key).expect("copy key");
    let mut args = vec![
        format!("--webhook-listen=127.0.0.1:{port}"),
        format!("--webhook-cert-file={}", certificate.cert.display()),
        format!("--webhook-key-file={}", certificate.key.display()),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stack = Stack::start(namespace, &args).await.expect("operator and host start");
    Webhooked { stack, port, certificate }
}

impl Webhooked {
    /// Registers the webhook with the chart's template, for this namespace only.
    async fn register(&self) {
        let ns = &self.stack.namespace;
        let ca = std::fs::read(control_plane().certificates().ca_cert()).expect("CA");
        let values = [
            "--show-only=templates/webhook.yaml".to_owned(),
            format!("--set=webhook.url=https://127.0.0.1:{}/validate", self.port),
            "--set=webhook.certificate.existingSecret=supplied".to_owned(),
            format!("--set=webhook.certificate.caBundle={}", base64::engine::general_purpose::STANDARD.encode(ca)),
            format!("--set=webhook.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={ns}"),
        ];
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let helm = Helm::locate().expect("helm is available");
        let manifest = helm.template("wasmplug", ns, &values).await.expect("the webhook template renders");
        let kubectl = control_plane().kubectl();
        kubectl
            .run_with_stdin(&["apply", "-f", "-"], &manifest)
            .await
            .expect("kubectl runs")
            .success()
            .expect("applied");
        // The API server picks up a new configuration within a moment; probe with
        // dry runs until the operator logs that it reviewed one.
        let probe = format_plugin("webhook-probe", "source:\n  builtin:\n    format: maven");
        eventually("the API server calls the webhook", SOON, || async {
            let args = ["apply", "--dry-run=server", "-n", ns, "-f", "-"];
            kubectl.run_with_stdin(&args, &probe).await.map_err(|e| e.to_string())?;
            let log = self.stack.operator.process.log();
            log.contains("webhook-probe").then_some(()).ok_or_else(|| "no review logged yet".to_owned())
        })
        .await;
    }
}

/// `kubectl <args>` that must fail; returns what kubectl printed.
async fn refused(args: &[&str], stdin: &str) -> String {
    let output = control_plane().kubectl().run_with_stdin(args, stdin).await.expect("kubectl runs");
    output.failure().unwrap_or_else(|e| panic!("{e:#}"))
}

const NPM: &str = "source:\n  builtin:\n    format: npm";
const PYPI: &str = "source:\n  builtin:\n    format: pypi";

#[tokio::test]
async fn the_last_enabled_format_can_be_neither_disabled_nor_deleted() {
    let ns = control_plane().namespace("webhook-last").await;
    let webhook = start(ns.name(), &[]).await;
    apply(ns.name(), &format_plugin("npm", NPM)).await;
    wait_ready(ns.name(), "npm", SOON).await;
    webhook.register().await;

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
    let webhook = start(ns.name(), &[]).await;
    webhook.register().await;
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
    let webhook = start(ns.name(), &["--allowed-source-hosts=127.0.0.1,*.plugins.example.org"]).await;
    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("plugin").expect("repository");
    let (manifest, wasm) = numbered_plugin(5);
    repo.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)], "plugin").expect("commit");
    let elsewhere = "source:\n  url:\n    url: https://downloads.example.com/plugin.zip";

    // Stored before the webhook was registered: the operator refuses to fetch it.
    apply(ns.name(), &format_plugin("early", elsewhere)).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "early", "False", "SourceNotAllowed").await;
    assert!(message.contains("source host \"downloads.example.com\" is not allowed"), "{message}");

    webhook.register().await;
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
    let webhook = start(ns.name(), &[]).await;
    webhook.register().await;
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
