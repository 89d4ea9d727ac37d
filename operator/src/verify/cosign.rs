//! cosign signatures of OCI artifacts, as `cosign sign --key` stores them: in
//! the artifact's repository under the tag `sha256-<hex>.sig`, one layer per
//! signature, each a "simple signing" JSON payload naming the signed manifest's
//! digest, with the base64 of an ECDSA P-256 (SHA-256, DER) signature of that
//! payload in the layer's `dev.cosignproject.cosign/signature` annotation.
//!
//! Key-based only: keyless signatures need Fulcio's certificates and Rekor's
//! log, public services a cluster may not reach.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use serde::Deserialize;

use super::{Required, TrustedKey, VerifyError};

/// The media type of a cosign signature layer.
pub const SIGNATURE_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation that holds the signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Largest signature payload read (cosign's are a few hundred bytes).
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 10;
/// Most signatures of one artifact looked at.
pub const MAX_SIGNATURES: usize = 16;
/// What `critical.type` says in a cosign payload.
const PAYLOAD_TYPE: &str = "cosign container image signature";

/// The cosign signatures found for one artifact.
#[derive(Clone, Debug, Default)]
pub struct CosignSignatures {
    /// The digest of the artifact's manifest, which a payload must name.
    pub manifest_digest: String,
    /// The tag they were read from (`sha256-<hex>.sig`).
    pub tag: String,
    /// Whether the tag exists.
    pub tag_found: bool,
    pub signatures: Vec<CosignSignature>,
    /// Signature layers of the tag that were not read, and why.
    pub ignored: Vec<String>,
}

/// One signature: the payload (a layer's bytes) and its annotation.
#[derive(Clone, Debug)]
pub struct CosignSignature {
    pub payload: Vec<u8>,
    /// The base64 DER signature from the layer annotation.
    pub signature: String,
}

/// The tag cosign stores the signatures of the manifest `digest` (`sha256:<hex>`) under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    type_: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    manifest_digest: String,
}

/// The trusted key that signed a payload naming `found.manifest_digest`.
pub fn verify<'k>(
    at: &str,
    found: &CosignSignatures,
    keys: &'k [TrustedKey],
    required: Required,
) -> Result<&'k TrustedKey, VerifyError> {
    let keys: Vec<_> = keys.iter().filter_map(|trusted| Some((trusted, trusted.ecdsa_p256()?))).collect();
    if keys.is_empty() {
        return Err(VerifyError::NoKeys { required, kind: "ECDSA P-256 (cosign.pub)" });
    }
    if found.signatures.is_empty() {
        let why = match (found.tag_found, found.ignored.as_slice()) {
            (false, _) => format!("no tag {} in its repository", found.tag),
            (true, []) => format!("tag {} holds no {SIGNATURE_LAYER} layer", found.tag),
            (true, ignored) => format!("tag {} holds none that can be read: {}", found.tag, ignored.join("; ")),
        };
        return Err(VerifyError::Missing {
            at: at.to_owned(),
            required,
            what: format!("cosign signature ({why})"),
            how: "sign it with cosign sign --key (docs/plugin-authoring.md, \"Sign it\")",
        });
    }
    let signer = found.signatures.iter().find_map(|candidate| {
        let signature = STANDARD.decode(candidate.signature.trim()).ok()?;
        let signature = p256::ecdsa::Signature::from_der(&signature).ok()?;
        let (trusted, _) = keys.iter().find(|(_, key)| key.verify(&candidate.payload, &signature).is_ok())?;
        // Signed by a trusted key, but of this artifact? The payload names the digest.
        let payload: Payload = serde_json::from_slice(&candidate.payload).ok()?;
        let names_this =
            payload.critical.type_ == PAYLOAD_TYPE && payload.critical.image.manifest_digest == found.manifest_digest;
        names_this.then_some(*trusted)
    });
    signer.ok_or_else(|| VerifyError::Invalid {
        what: format!("the cosign signature tag {} of {at}", found.tag),
        subject: "its manifest digest",
        keys: keys.iter().map(|(trusted, _)| trusted.id.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn key(seed: u8) -> (p256::ecdsa::SigningKey, TrustedKey) {
        let signing = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("a P-256 scalar");
        let pem = signing.verifying_key().to_public_key_pem(Default::default()).expect("PEM");
        let trusted = super::super::keys::parse(format!("cluster/cosign-{seed}.pub"), pem.as_bytes()).expect("key");
        (signing, trusted)
    }

    fn signed(signing: &p256::ecdsa::SigningKey, digest: &str) -> CosignSignature {
        let payload = serde_json::json!({
            "critical": {
                "identity": {"docker-reference": "127.0.0.1:5000/plugins/unity"},
                "image": {"docker-manifest-digest": digest},
                "type": PAYLOAD_TYPE,
            },
            "optional": null,
        })
        .to_string()
        .into_bytes();
        let signature: p256::ecdsa::Signature = signing.sign(&payload);
        CosignSignature { payload, signature: STANDARD.encode(signature.to_der().as_bytes()) }
    }

    fn found(signatures: Vec<CosignSignature>) -> CosignSignatures {
        CosignSignatures {
            manifest_digest: DIGEST.into(),
            tag: signature_tag(DIGEST),
            tag_found: true,
            signatures,
            ignored: Vec::new(),
        }
    }

    #[test]
    fn the_tag_is_cosigns() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }

    #[test]
    fn a_trusted_signature_of_this_digest_verifies() {
        let (signing, trusted) = key(1);
        let (_, other) = key(2);
        let keys = [other, trusted];
        let key = verify("r", &found(vec![signed(&signing, DIGEST)]), &keys, Required::ByObject).expect("verifies");
        assert_eq!(key.id, "cluster/cosign-1.pub");
    }

    #[test]
    fn another_digest_another_key_or_a_changed_payload_is_refused() {
        let (signing, trusted) = key(1);
        let keys = [trusted];
        let elsewhere = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
        let error = verify("r", &found(vec![signed(&signing, elsewhere)]), &keys, Required::ByObject).unwrap_err();
        assert!(error.to_string().starts_with("the cosign signature tag sha256-"), "{error}");
        assert!(error.to_string().contains(".sig of r does not verify its manifest digest"), "{error}");
        let (untrusted, _) = key(3);
        let error = verify("r", &found(vec![signed(&untrusted, DIGEST)]), &keys, Required::ByObject).unwrap_err();
        assert!(matches!(error, VerifyError::Invalid { .. }), "{error}");
        let mut changed = signed(&signing, elsewhere);
        changed.payload = String::from_utf8(changed.payload).unwrap().replace(elsewhere, DIGEST).into_bytes();
        let error = verify("r", &found(vec![changed]), &keys, Required::ByObject).unwrap_err();
        assert!(matches!(error, VerifyError::Invalid { .. }), "{error}");
    }

    #[test]
    fn none_found_or_no_cosign_key_is_told_apart() {
        let (_, trusted) = key(1);
        let keys = std::slice::from_ref(&trusted);
        let missing = |found: CosignSignatures| {
            let error = verify("r", &found, keys, Required::ByCluster).unwrap_err();
            assert!(matches!(error, VerifyError::Missing { .. }), "{error}");
            error.to_string()
        };
        let tag = signature_tag(DIGEST);
        let untagged = missing(CosignSignatures { tag_found: false, ..found(vec![]) });
        assert!(untagged.contains(&format!("no tag {tag} in its repository")), "{untagged}");
        let empty = missing(found(vec![]));
        assert!(empty.contains(&format!("tag {tag} holds no {SIGNATURE_LAYER} layer")), "{empty}");
        // Layers the fetch could not read are named, not passed over in silence.
        let ignored = vec!["layer sha256:aa has no dev.cosignproject.cosign/signature annotation".to_owned()];
        let unreadable = missing(CosignSignatures { ignored, ..found(vec![]) });
        assert!(unreadable.contains("holds none that can be read: layer sha256:aa has no dev.cosign"), "{unreadable}");
        let ed25519 =
            super::super::keys::parse("cluster/e.pub".into(), super::super::keys::tests::key_pair(1).1.as_bytes());
        let error = verify("r", &found(vec![]), &[ed25519.unwrap()], Required::ByObject).unwrap_err();
        assert!(matches!(error, VerifyError::NoKeys { kind, .. } if kind.contains("cosign")), "{error}");
    }
}
