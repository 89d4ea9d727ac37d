//! Signature verification: how a FormatPlugin asks for its plugin to be signed
//! (`spec.verify`), and how status names the key that verified it
//! (`status.artifact.signature`).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SecretReference;

/// Requires a valid signature of plugin.wasm before anything of the package is
/// validated or published. The operator's cluster-wide trusted keys (the chart's
/// signatures.trustedKeys) always count; secretRef adds this object's own.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// How the package is signed. ed25519 (the default): a detached Ed25519
    /// signature of plugin.wasm's exact bytes, base64, in plugin.wasm.sig beside
    /// plugin.wasm (Artifact Keeper's format; for OCI sources, a layer of media
    /// type application/vnd.wasmplug.signature.ed25519.v1). cosign (OCI sources
    /// only): a signature cosign sign --key stored in the registry, checked with
    /// ECDSA P-256 keys (cosign.pub). Keyless signing is not supported.
    #[serde(default)]
    pub provider: SignatureProvider,

    /// A Secret in this namespace whose every key holds one trusted public key,
    /// named by the key (e.g. release-2026.pub): an Ed25519 public key as PEM
    /// (openssl pkey -pubout) or as the base64 of its 32 bytes (Artifact
    /// Keeper's PLUGINS_TRUSTED_PUBKEY), or for cosign an ECDSA P-256 key as PEM
    /// (cosign.pub). Several keys may be trusted at once, to
    /// roll keys. The operator must be allowed to read it (the chart's
    /// operator.sourceSecrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// A signature scheme.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignatureProvider {
    /// A detached Ed25519 signature (plugin.wasm.sig), as Artifact Keeper checks.
    #[default]
    Ed25519,
    /// A cosign signature in the registry (key-based), for OCI sources.
    Cosign,
}

impl SignatureProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureProvider::Ed25519 => "ed25519",
            SignatureProvider::Cosign => "cosign",
        }
    }
}

/// The signature that verified a published plugin.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SignatureInfo {
    /// The scheme: ed25519 or cosign.
    #[schemars(length(max = 32))]
    pub provider: String,

    /// The trusted key that verified it: cluster/<name> for one of the operator's
    /// cluster-wide keys, or secret/<Secret name>/<key> for one of spec.verify's.
    #[schemars(length(max = 512))]
    pub key: String,

    /// The key's fingerprint: SHA256: and the unpadded base64 of the SHA-256 of
    /// its DER SubjectPublicKeyInfo.
    #[schemars(length(max = 64))]
    pub fingerprint: String,
}
