//! The verify step of a reconcile: when the operator's policy or `spec.verify`
//! asks for a signature, gathers the trusted keys (the cluster's, and those of
//! the Secret `spec.verify.secretRef` names) and checks the fetched package's
//! signature with them, before anything of it is validated.

use std::sync::Arc;

use kube::ResourceExt;
use wasmplug_crds::{FormatPlugin, SignatureInfo, SignatureProvider};

use super::{Context, Error, source};
use crate::fetch::Fetched;
use crate::verify::{self, TrustedKey, VerifyError};

/// The signature that verified `fetched`, or `None` when none is asked for.
pub async fn verify(
    plugin: &FormatPlugin,
    fetched: &Fetched,
    ctx: &Arc<Context>,
) -> Result<Option<SignatureInfo>, Error> {
    let Some(required) = ctx.config.signatures.requirement(&plugin.spec) else { return Ok(None) };
    // Without plugin.wasm there is nothing to verify; validation names the missing file.
    let Some(wasm) = &fetched.wasm else { return Ok(None) };
    let keys = trusted_keys(plugin, ctx).await?;
    let provider = plugin.spec.verify.as_ref().map_or(SignatureProvider::default(), |v| v.provider);
    let key = match (provider, &fetched.cosign) {
        (SignatureProvider::Ed25519, _) => {
            verify::verify(&fetched.at, wasm, fetched.signature.as_deref(), &keys, required)?
        }
        (SignatureProvider::Cosign, Some(found)) => verify::cosign::verify(&fetched.at, found, &keys, required)?,
        // The API server's rule keeps cosign to OCI sources, which read the signatures.
        (SignatureProvider::Cosign, None) => {
            let at = fetched.at.clone();
            return Err(VerifyError::Unsupported { at, provider: provider.as_str() }.into());
        }
    };
    let signed_by =
        SignatureInfo { provider: provider.as_str().to_owned(), key: key.id.clone(), fingerprint: key.fingerprint() };
    tracing::info!(
        provider = signed_by.provider,
        key = signed_by.key,
        fingerprint = signed_by.fingerprint,
        "verified the signature"
    );
    Ok(Some(signed_by))
}

/// The cluster's keys, as its key directory holds them now, and the object's own.
async fn trusted_keys(plugin: &FormatPlugin, ctx: &Arc<Context>) -> Result<Vec<TrustedKey>, Error> {
    let mut keys = ctx.config.signatures.cluster_keys().map_err(VerifyError::from)?;
    if let Some(reference) = plugin.spec.verify.as_ref().and_then(|v| v.secret_ref.as_ref()) {
        let data = source::secret_data(ctx, &plugin.namespace().unwrap_or_default(), reference).await?;
        let entries = data.iter().map(|(name, value)| (name, value.0.as_slice()));
        keys.extend(verify::keys::from_secret(&reference.name, entries).map_err(VerifyError::from)?);
    }
    Ok(keys)
}
