//! Signature verification: whether a FormatPlugin's package must be signed (the
//! operator's cluster-wide policy, or `spec.verify`), and whether its detached
//! Ed25519 signature (`plugin.wasm.sig`, Artifact Keeper's format: the base64 of
//! the 64 signature bytes over plugin.wasm's exact bytes) is made by a trusted key.
//!
//! It runs after the fetch and before validation, so nothing of an unsigned or
//! badly signed package is parsed, compiled or published. Pure apart from reading
//! the cluster's key directory; the controller brings a Secret's keys.

pub mod cosign;
pub mod keys;

use std::fmt;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signature;
use wasmplug_crds::FormatPluginSpec;

pub use keys::{KeyError, PublicKey, TrustedKey};

/// The detached signature's file name, beside plugin.wasm.
pub const SIGNATURE_FILE: &str = "plugin.wasm.sig";

/// Largest signature file read: 64 bytes are 88 in base64.
pub const MAX_SIGNATURE_BYTES: usize = 1024;

/// The operator's cluster-wide signature settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// Every plugin that is not builtin must be signed (`--require-signatures`).
    pub required: bool,
    /// The directory of cluster-wide trusted keys (`--trusted-keys-dir`).
    pub keys_dir: Option<PathBuf>,
}

/// Who asks for a signature, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Required {
    /// The operator's policy (`--require-signatures`, the chart's `signatures.required`).
    ByCluster,
    /// The object's `spec.verify`.
    ByObject,
}

impl fmt::Display for Required {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Required::ByCluster => "the operator requires every plugin to be signed (signatures.required)",
            Required::ByObject => "spec.verify requires a signature",
        })
    }
}

impl SignaturePolicy {
    /// Whether a plugin with `spec` must be signed, and who asks. Builtin
    /// formats are compiled into the host and never are.
    pub fn requirement(&self, spec: &FormatPluginSpec) -> Option<Required> {
        if spec.source.builtin.is_some() {
            None
        } else if spec.verify.is_some() {
            Some(Required::ByObject)
        } else if self.required {
            Some(Required::ByCluster)
        } else {
            None
        }
    }

    /// Refuses, at apply time, a `spec` that must be signed but that no key
    /// could verify: no cluster-wide key, and no Secret of its own.
    pub fn check(&self, spec: &FormatPluginSpec) -> Result<(), Unverifiable> {
        let Some(required) = self.requirement(spec) else { return Ok(()) };
        let own_keys = spec.verify.as_ref().is_some_and(|v| v.secret_ref.is_some());
        // A key directory that cannot be read is the operator's to report.
        let cluster_keys = self.cluster_keys().map_or(true, |keys| !keys.is_empty());
        if own_keys || cluster_keys { Ok(()) } else { Err(Unverifiable { required }) }
    }

    /// The cluster-wide trusted keys, as the key directory holds them now.
    pub fn cluster_keys(&self) -> Result<Vec<TrustedKey>, KeyError> {
        self.keys_dir.as_deref().map_or(Ok(Vec::new()), keys::read_dir)
    }
}

/// A FormatPlugin that must be signed, with no key to verify it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{required}, but no key could verify this plugin: the operator trusts no cluster-wide key \
     (signatures.trustedKeys) and spec.verify.secretRef names no Secret; set spec.verify.secretRef to a \
     Secret holding the publisher's public keys"
)]
pub struct Unverifiable {
    pub required: Required,
}

/// Why a package's signature does not do, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{at} has no {what}, and {required}; {how}")]
    Missing { at: String, required: Required, what: String, how: &'static str },
    #[error(
        "{SIGNATURE_FILE} in {at} is not an Ed25519 signature ({problem}); it must hold the base64 of the \
         64 signature bytes"
    )]
    Malformed { at: String, problem: String },
    #[error(
        "{what} does not verify {subject} with any trusted key ({}): {subject} changed after it was \
         signed, or another key signed it; sign it again, or trust that key",
        keys.join(", ")
    )]
    Invalid { what: String, subject: &'static str, keys: Vec<String> },
    #[error(
        "{required}, but no trusted {kind} key is configured: name a Secret of public keys in \
         spec.verify.secretRef, or set the chart's signatures.trustedKeys"
    )]
    NoKeys { required: Required, kind: &'static str },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(
        "{at} is not an OCI artifact, and only those carry {provider} signatures; set spec.verify.provider to ed25519"
    )]
    Unsupported { at: String, provider: &'static str },
}

/// The key among `keys` whose signature `signature` (the contents of
/// plugin.wasm.sig, if the package has one) is over `wasm`.
pub fn verify<'k>(
    at: &str,
    wasm: &[u8],
    signature: Option<&[u8]>,
    keys: &'k [TrustedKey],
    required: Required,
) -> Result<&'k TrustedKey, VerifyError> {
    let keys: Vec<_> = keys.iter().filter_map(|trusted| Some((trusted, trusted.ed25519()?))).collect();
    if keys.is_empty() {
        return Err(VerifyError::NoKeys { required, kind: "Ed25519" });
    }
    let signature = signature.ok_or_else(|| VerifyError::Missing {
        at: at.to_owned(),
        required,
        what: SIGNATURE_FILE.to_owned(),
        how: "sign plugin.wasm with a trusted key and publish plugin.wasm.sig beside it \
              (docs/plugin-authoring.md, \"Sign it\")",
    })?;
    let signature =
        parse_signature(signature).map_err(|problem| VerifyError::Malformed { at: at.to_owned(), problem })?;
    keys.iter().find(|(_, key)| key.verify_strict(wasm, &signature).is_ok()).map(|(trusted, _)| *trusted).ok_or_else(
        || VerifyError::Invalid {
            what: format!("{SIGNATURE_FILE} in {at}"),
            subject: "plugin.wasm",
            keys: keys.iter().map(|(trusted, _)| trusted.id.clone()).collect(),
        },
    )
}

fn parse_signature(text: &[u8]) -> Result<Signature, String> {
    if text.len() > MAX_SIGNATURE_BYTES {
        return Err(format!("{} bytes, more than {MAX_SIGNATURE_BYTES}", text.len()));
    }
    let bytes = STANDARD.decode(text.trim_ascii()).map_err(|e| format!("base64: {e}"))?;
    let bytes: [u8; 64] =
        bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes where a signature has 64", b.len()))?;
    Ok(Signature::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Signer;

    use super::keys::tests::key_pair;
    use super::*;

    const WASM: &[u8] = b"\0asm plugin bytes";

    fn trusted(seed: u8, id: &str) -> TrustedKey {
        keys::parse(id.into(), key_pair(seed).1.as_bytes()).unwrap()
    }

    fn signed(seed: u8, wasm: &[u8]) -> Vec<u8> {
        STANDARD.encode(key_pair(seed).0.sign(wasm).to_bytes()).into_bytes()
    }

    #[test]
    fn a_trusted_signature_names_its_key() {
        let keys = [trusted(1, "cluster/old.pub"), trusted(2, "secret/keys/new.pub")];
        let mut signature = signed(2, WASM);
        signature.push(b'\n');
        let key = verify("https://x/p.zip", WASM, Some(&signature), &keys, Required::ByObject).expect("verifies");
        assert_eq!(key.id, "secret/keys/new.pub");
    }

    #[test]
    fn one_flipped_byte_is_invalid() {
        let keys = [trusted(1, "cluster/release.pub")];
        let signature = signed(1, WASM);
        let mut tampered = WASM.to_vec();
        tampered[5] ^= 1;
        let error = verify("p", &tampered, Some(&signature), &keys, Required::ByCluster).unwrap_err();
        assert!(matches!(&error, VerifyError::Invalid { keys, .. } if keys == &["cluster/release.pub"]), "{error}");
        assert!(error.to_string().starts_with("plugin.wasm.sig in p does not verify plugin.wasm"), "{error}");
        // Signed by a key that is not trusted.
        let error = verify("p", WASM, Some(&signed(3, WASM)), &keys, Required::ByCluster).unwrap_err();
        assert!(error.to_string().contains("another key signed it"), "{error}");
    }

    #[test]
    fn missing_malformed_and_keyless_are_told_apart() {
        let keys = [trusted(1, "cluster/release.pub")];
        let error = verify("p", WASM, None, &keys, Required::ByCluster).unwrap_err();
        assert!(matches!(error, VerifyError::Missing { .. }));
        assert!(error.to_string().contains("signatures.required"), "{error}");
        for bad in [&b"%%%"[..], STANDARD.encode([0u8; 63]).as_bytes(), &[b'A'; 2000]] {
            let error = verify("p", WASM, Some(bad), &keys, Required::ByObject).unwrap_err();
            assert!(matches!(error, VerifyError::Malformed { .. }), "{error}");
        }
        let error = verify("p", WASM, Some(&signed(1, WASM)), &[], Required::ByObject).unwrap_err();
        assert!(matches!(error, VerifyError::NoKeys { required: Required::ByObject, .. }), "{error}");
    }

    #[test]
    fn builtins_are_never_required_to_be_signed() {
        let policy = SignaturePolicy { required: true, keys_dir: None };
        let spec = |source: &str| -> FormatPluginSpec {
            serde_json::from_str(&format!(r#"{{"source": {source}}}"#)).expect("spec")
        };
        assert_eq!(policy.requirement(&spec(r#"{"builtin": {"format": "npm"}}"#)), None);
        assert_eq!(policy.requirement(&spec(r#"{"url": {"url": "https://x/p.zip"}}"#)), Some(Required::ByCluster));
        let open = SignaturePolicy::default();
        assert_eq!(open.requirement(&spec(r#"{"url": {"url": "https://x/p.zip"}}"#)), None);
        let mut asked = spec(r#"{"url": {"url": "https://x/p.zip"}}"#);
        asked.verify = Some(Default::default());
        assert_eq!(open.requirement(&asked), Some(Required::ByObject));
    }

    #[test]
    fn a_required_signature_needs_a_key_somewhere() {
        let spec = |verify: serde_json::Value| -> FormatPluginSpec {
            serde_json::from_value(serde_json::json!({"source": {"url": {"url": "https://x/p.zip"}}, "verify": verify}))
                .expect("spec")
        };
        let dir = tempfile::tempdir().unwrap();
        let keyless = SignaturePolicy { required: true, keys_dir: Some(dir.path().into()) };
        let refused = keyless.check(&spec(serde_json::Value::Null)).unwrap_err();
        assert_eq!(refused.required, Required::ByCluster);
        assert!(refused.to_string().contains("set spec.verify.secretRef"), "{refused}");
        assert!(keyless.check(&spec(serde_json::json!({"secretRef": {"name": "keys"}}))).is_ok());
        assert!(SignaturePolicy::default().check(&spec(serde_json::json!({}))).is_err(), "verify without keys");
        std::fs::write(dir.path().join("release.pub"), keys::tests::key_pair(1).1).unwrap();
        assert!(keyless.check(&spec(serde_json::Value::Null)).is_ok());
    }
}
