//! `push`: a package published to an OCI registry as the artifact an `oci`
//! source pulls: plugin.wasm (`application/wasm`), plugin.toml
//! (`application/toml`) and plugin.wasm.sig when there is one, each titled
//! with its file name, as `oras push` lays them out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use wasmplug_host::cli::EngineArgs;
use wasmplug_host::plugin::{MANIFEST_FILE, WASM_FILE};
use wasmplug_operator::fetch::{self, ARTIFACT_TYPE, MANIFEST_LAYER, SIGNATURE_LAYER, WASM_LAYER};
use wasmplug_operator::verify::SIGNATURE_FILE;

use crate::checked;

/// The empty config blob of an artifact (the OCI image spec's `{}`).
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The annotation oras records a layer's file name in.
const TITLE: &str = "org.opencontainers.image.title";

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The package: a directory or a ZIP file.
    package: PathBuf,
    /// Where to: oci://<registry>/<repository>[:<tag>]. The tag defaults to the
    /// plugin's version.
    to: String,
    /// Plain HTTP, for a registry without TLS (one on localhost).
    #[arg(long)]
    plain_http: bool,
    /// PEM certificates to trust besides the system's roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The registry user, when it needs a login; the password is read from
    /// WASMPLUG_REGISTRY_PASSWORD.
    #[arg(long)]
    username: Option<String>,
    #[arg(long, env = "WASMPLUG_REGISTRY_PASSWORD", hide_env_values = true, requires = "username")]
    password: Option<String>,
    /// Give up when the whole push has not finished in this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn push(args: &PushArgs) -> anyhow::Result<String> {
    let checked = checked(&args.package, None, &args.engine)?;
    let manifest = &checked.validated.package.manifest;
    let (registry, repository, tag) = destination(&args.to)?;
    let tag = tag.unwrap_or_else(|| manifest.version.to_string());
    let reference = Reference::with_tag(registry.clone(), repository.clone(), tag.clone());
    let layer = |file: &str, media_type: &str, bytes: &[u8]| {
        let title = BTreeMap::from([(TITLE.to_owned(), file.to_owned())]);
        ImageLayer::new(bytes.to_vec(), media_type.to_owned(), Some(title))
    };
    let mut layers = vec![
        layer(WASM_FILE, WASM_LAYER, &checked.validated.package.wasm),
        layer(MANIFEST_FILE, MANIFEST_LAYER, &checked.validated.manifest_file),
    ];
    if let Some(signature) = &checked.signature {
        layers.push(layer(SIGNATURE_FILE, SIGNATURE_LAYER, signature));
    }
    let config = Config::new(b"{}".to_vec(), EMPTY_CONFIG.to_owned(), None);
    let mut artifact = OciImageManifest::build(&layers, &config, None);
    artifact.artifact_type = Some(ARTIFACT_TYPE.to_owned());

    let ca = match &args.ca_file {
        Some(file) => Some(std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?),
        None => None,
    };
    fetch::ensure_crypto_provider();
    let ca = ca.map(|pem| Certificate { encoding: CertificateEncoding::Pem, data: pem });
    let client = Client::try_from(ClientConfig {
        protocol: if args.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
        tls_certs_only: fetch::system_roots().iter().cloned().chain(ca).collect(),
        user_agent: concat!("wasmplug/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    })?;
    let auth = match (&args.username, &args.password) {
        (Some(username), Some(password)) => RegistryAuth::Basic(username.clone(), password.clone()),
        (Some(_), None) => bail!("--username needs the password in WASMPLUG_REGISTRY_PASSWORD"),
        _ => RegistryAuth::Anonymous,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let pushed = async {
        client.push(&reference, &layers, config, &auth, Some(artifact)).await?;
        client.fetch_manifest_digest(&reference, &auth).await
    };
    let timeout = args.timeout_secs;
    let digest = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(timeout), pushed).await })
        .map_err(|_| anyhow::anyhow!("timed out after {timeout}s; a slow registry needs a larger --timeout-secs"))
        .and_then(|pushed| Ok(pushed?))
        .with_context(|| format!("failed to push to {}", args.to))?;
    Ok(format!(
        "pushed {} {} to oci://{registry}/{repository}:{tag}{}\n  manifest {digest} (spec.source.oci.ref.digest)\n  \
         plugin.wasm {} (spec.sha256)",
        manifest.name,
        manifest.version,
        if checked.signature.is_some() { ", signed" } else { "" },
        checked.validated.package.digest
    ))
}

/// The registry, repository and tag of `oci://<registry>/<repository>[:<tag>]`.
fn destination(to: &str) -> anyhow::Result<(String, String, Option<String>)> {
    let usage = || format!("{to:?} is not oci://<registry>/<repository>[:<tag>]");
    let rest = to.strip_prefix("oci://").with_context(usage)?;
    let (registry, path) = rest.split_once('/').filter(|(r, p)| !r.is_empty() && !p.is_empty()).with_context(usage)?;
    let (repository, tag) = match path.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag.to_owned())),
        _ => (path, None),
    };
    Ok((registry.to_ascii_lowercase(), repository.to_owned(), tag))
}

#[cfg(test)]
mod tests {
    use super::destination;

    #[test]
    fn destinations_name_a_registry_a_repository_and_maybe_a_tag() {
        let parts = |to: &str| destination(to).map_err(|e| e.to_string());
        assert_eq!(
            parts("oci://Registry:5000/team/acme:1.2.0"),
            Ok(("registry:5000".into(), "team/acme".into(), Some("1.2.0".into())))
        );
        assert_eq!(parts("oci://127.0.0.1:5000/acme"), Ok(("127.0.0.1:5000".into(), "acme".into(), None)));
        for refused in ["127.0.0.1/acme", "oci://registry", "oci:///acme", "oci://registry/"] {
            assert!(parts(refused).is_err_and(|e| e.contains("is not oci://")), "{refused}");
        }
    }
}
