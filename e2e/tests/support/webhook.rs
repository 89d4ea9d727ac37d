//! An operator and host with the admission webhook served and registered with
//! the chart's own ValidatingWebhookConfiguration (rendered by helm, pointed at
//! the operator by URL, scoped to the test's namespace).

use std::time::Duration;

use base64::Engine as _;
use wasmplug_e2e::{ClientCredentials, Helm, Stack, control_plane, eventually, free_ports};

use super::format_plugin;

const SOON: Duration = Duration::from_secs(60);

/// An operator and host with the webhook served on a free port, and the
/// webhook's certificate files (which a test may replace).
pub struct Webhooked {
    pub stack: Stack,
    pub port: u16,
    pub certificate: ClientCredentials,
}

pub async fn start(namespace: &str, extra: &[&str]) -> Webhooked {
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
    pub async fn register(&self) {
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
