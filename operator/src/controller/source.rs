//! From a FormatPlugin's `spec.source` to fetched package files: checks the
//! source against the operator's [`SourcePolicy`](crate::policy::SourcePolicy),
//! reads the referenced Secret, then runs the fetch for the source's kind under
//! its limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use wasmplug_crds::{FormatPlugin, OciRef, SecretReference, SignatureProvider, SourceKind};

use super::{Context, Error};
use crate::fetch::{self, Credentials, FetchError, FetchLimits, Fetched, OciRequest, OciTarget, RegistryLogin};
use crate::policy::SourceDenied;
use crate::source_url;

/// Fetches the package `plugin` names. Builtin sources are not fetched.
pub async fn fetch(plugin: &FormatPlugin, kind: SourceKind<'_>, ctx: &Arc<Context>) -> Result<Fetched, Error> {
    let limits = FetchLimits { timeout: plugin.spec.timeout.as_std(), ..ctx.config.fetch_limits };
    let namespace = plugin.namespace().unwrap_or_default();
    match kind {
        SourceKind::Git(git) => {
            let url = ctx.config.sources.url(&git.url, source_url::SourceKind::Git)?;
            ctx.config.sources.resolve(&url).await?;
            let credentials = credentials(ctx, &namespace, git.secret_ref.as_ref()).await?;
            let (ctx, git) = (ctx.clone(), git.clone());
            blocking(&git.url.clone(), limits.timeout, move || {
                let request = fetch::GitRequest {
                    url: &url,
                    reference: git.reference.as_ref(),
                    path: git.path.as_deref(),
                    credentials: credentials.as_ref(),
                };
                fetch::git(&request, &ctx.config.scratch_dir, &limits)
            })
            .await
        }
        SourceKind::Url(source) => {
            let url = ctx.config.sources.url(&source.url, source_url::SourceKind::Url)?;
            let credentials = credentials(ctx, &namespace, source.secret_ref.as_ref()).await?;
            Ok(fetch::url(&ctx.http, &url, credentials.as_ref(), &limits).await?)
        }
        SourceKind::Oci(oci) => {
            let url = ctx.config.sources.url(&oci.url, source_url::SourceKind::Oci)?;
            let registry = url.oci_repository().map(|(registry, _)| registry).unwrap_or_default();
            let login = match &oci.secret_ref {
                Some(reference) => {
                    let data = secret_data(ctx, &namespace, reference).await?;
                    Some(RegistryLogin::from_docker_config(&reference.name, &data, &registry)?)
                }
                None => None,
            };
            let ca = match &oci.cert_secret_ref {
                Some(reference) => Some(certificates(&secret_data(ctx, &namespace, reference).await?, reference)?),
                None => None,
            };
            let target = match &oci.reference {
                Some(OciRef { digest: Some(digest), .. }) => OciTarget::Digest(digest),
                Some(OciRef { semver: Some(range), .. }) => OciTarget::Semver(range),
                Some(OciRef { tag: Some(tag), .. }) => OciTarget::Tag(tag),
                _ => OciTarget::Tag("latest"),
            };
            let cosign = plugin.spec.verify.as_ref().is_some_and(|v| v.provider == SignatureProvider::Cosign);
            let request = OciRequest {
                url: &url,
                target,
                login: login.as_ref(),
                ca: ca.as_deref(),
                insecure: oci.insecure,
                cosign,
            };
            Ok(fetch::oci(Arc::new(ctx.config.sources.clone()), &request, &limits).await?)
        }
        SourceKind::Local(local) => {
            let path = ctx.config.sources.local_roots.resolve(&local.path).map_err(SourceDenied::from)?;
            blocking(&local.path, limits.timeout, move || fetch::local(&path, &limits)).await
        }
        SourceKind::Builtin(_) => unreachable!("builtin sources are published without a fetch"),
    }
}

async fn credentials(
    ctx: &Context,
    namespace: &str,
    reference: Option<&SecretReference>,
) -> Result<Option<Credentials>, Error> {
    let Some(reference) = reference else { return Ok(None) };
    let data = secret_data(ctx, namespace, reference).await?;
    Ok(Some(Credentials::from_secret(&reference.name, &data)?))
}

/// The key of a CA Secret that holds PEM certificates, as cert-manager writes it.
const CA_KEY: &str = "ca.crt";

/// The PEM certificates in a CA Secret's `ca.crt`.
fn certificates(data: &BTreeMap<String, ByteString>, reference: &SecretReference) -> Result<Vec<u8>, Error> {
    match data.get(CA_KEY) {
        Some(pem) if !pem.0.is_empty() => Ok(pem.0.clone()),
        _ => Err(FetchError::Credentials {
            secret: reference.name.clone(),
            reason: format!("it has no key {CA_KEY} with PEM certificates (spec.source.oci.certSecretRef)"),
        }
        .into()),
    }
}

/// The data of Secret `reference` in `namespace`.
pub(super) async fn secret_data(
    ctx: &Context,
    namespace: &str,
    reference: &SecretReference,
) -> Result<BTreeMap<String, ByteString>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = match secrets.get_opt(&reference.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(FetchError::Credentials {
                secret: reference.name.clone(),
                reason: format!("it does not exist in namespace {namespace}"),
            }
            .into());
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            let (namespace, secret) = (namespace.to_owned(), reference.name.clone());
            return Err(FetchError::SecretForbidden { namespace, secret }.into());
        }
        Err(error) => return Err(Error::Kube { action: "read the source Secret", source: error }),
    };
    Ok(secret.data.unwrap_or_default())
}

/// Runs a blocking fetch of `url` on its own thread, and gives up on it after
/// `timeout` (the fetch has its own deadlines too; this one holds whatever
/// blocks where those are not checked).
async fn blocking(
    url: &str,
    timeout: Duration,
    fetch: impl FnOnce() -> Result<Fetched, FetchError> + Send + 'static,
) -> Result<Fetched, Error> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(fetch)).await {
        Ok(joined) => Ok(joined.map_err(|e| Error::Task(e.to_string()))??),
        Err(_) => Err(FetchError::TimedOut { url: url.to_owned(), timeout }.into()),
    }
}
