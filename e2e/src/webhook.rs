//! An operator and host with the admission webhook served and registered with
//! the chart's own ValidatingWebhookConfiguration: its template rendered by
//! helm, pointed at the operator by URL (there is no cluster network to reach a
//! Service) and scoped to one namespace, so that tests sharing a control plane
//! do not see each other's webhooks.

use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;

use crate::certs::ClientCredentials;
use crate::control_plane::{control_plane, free_ports};
use crate::helm::Helm;
use crate::wasmplug::{Stack, eventually};

/// A [`Stack`] whose operator serves the webhook on `port`, with certificate
/// files of its own (which a test may replace, as a renewal would).
#[derive(Debug)]
pub struct Webhooked {
    pub stack: Stack,
    pub port: u16,
    pub certificate: ClientCredentials,
    /// Holds the certificate files for as long as the operator runs.
    _files: tempfile::TempDir,
}

impl Webhooked {
    /// Starts the stack for `namespace` with the webhook on a free port;
    /// `extra` is added to the operator's command line.
    pub async fn start(namespace: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let [port] = free_ports()?;
        let issued = control_plane().certificates().server(&format!("webhook-{namespace}"))?;
        let dir = tempfile::Builder::new().prefix("wasmplug-webhook-").tempdir()?;
        let certificate = ClientCredentials { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
        std::fs::copy(&issued.cert, &certificate.cert).context("failed to copy the webhook certificate")?;
        std::fs::copy(&issued.key, &certificate.key).context("failed to copy the webhook key")?;
        let mut args = vec![
            format!("--webhook-listen=127.0.0.1:{port}"),
            format!("--webhook-cert-file={}", certificate.cert.display()),
            format!("--webhook-key-file={}", certificate.key.display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stack = Stack::start(namespace, &args).await?;
        Ok(Webhooked { stack, port, certificate, _files: dir })
    }

    /// Registers the webhook with the chart's template, for this namespace only,
    /// and waits until the API server calls it.
    pub async fn register(&self) -> anyhow::Result<()> {
        let ns = &self.stack.namespace;
        let ca = std::fs::read(control_plane().certificates().ca_cert())?;
        let values = [
            "--show-only=templates/webhook.yaml".to_owned(),
            format!("--set=webhook.url=https://127.0.0.1:{}/validate", self.port),
            "--set=webhook.certificate.existingSecret=supplied".to_owned(),
            format!("--set=webhook.certificate.caBundle={}", base64::engine::general_purpose::STANDARD.encode(ca)),
            format!("--set=webhook.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={ns}"),
        ];
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let manifest = Helm::locate()?.template("wasmplug", ns, &values).await?;
        let kubectl = control_plane().kubectl();
        kubectl.run_with_stdin(&["apply", "-f", "-"], &manifest).await?.success()?;
        // The API server picks up a new configuration within a moment; probe with
        // dry runs until the operator logs that it reviewed one.
        let probe = "apiVersion: wasmplug.dev/v1alpha1\nkind: FormatPlugin\nmetadata:\n  name: webhook-probe\n\
                     spec:\n  source:\n    builtin:\n      format: maven\n";
        eventually("the API server calls the webhook", Duration::from_secs(60), || async {
            let args = ["apply", "--dry-run=server", "-n", ns, "-f", "-"];
            kubectl.run_with_stdin(&args, probe).await.map_err(|e| e.to_string())?;
            let log = self.stack.operator.process.log();
            log.contains("webhook-probe").then_some(()).ok_or_else(|| "no review logged yet".to_owned())
        })
        .await;
        Ok(())
    }
}
