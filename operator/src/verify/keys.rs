//! Trusted public keys: read from the operator's cluster-wide key directory (a
//! mounted ConfigMap) and from a FormatPlugin's `spec.verify.secretRef`, each
//! named so that status can say which one verified a plugin. Ed25519 keys check
//! detached plugin.wasm.sig signatures; ECDSA P-256 keys (cosign.pub) check
//! cosign signatures.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};

/// Largest key file or Secret value read: a PEM public key is about 110 bytes.
const MAX_KEY_BYTES: u64 = 16 << 10;

/// One trusted public key.
#[derive(Clone)]
pub struct TrustedKey {
    /// Where it comes from and its name there: `cluster/<file>` or
    /// `secret/<Secret>/<key>`.
    pub id: String,
    pub key: PublicKey,
}

/// The kinds of key signatures are checked with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// For detached plugin.wasm.sig signatures (Artifact Keeper's scheme).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// For cosign signatures (`cosign generate-key-pair` makes these).
    EcdsaP256(p256::ecdsa::VerifyingKey),
}

impl TrustedKey {
    /// The key, when it is an Ed25519 key.
    pub fn ed25519(&self) -> Option<&ed25519_dalek::VerifyingKey> {
        match &self.key {
            PublicKey::Ed25519(key) => Some(key),
            PublicKey::EcdsaP256(_) => None,
        }
    }

    /// The key, when it is an ECDSA P-256 key.
    pub fn ecdsa_p256(&self) -> Option<&p256::ecdsa::VerifyingKey> {
        match &self.key {
            PublicKey::EcdsaP256(key) => Some(key),
            PublicKey::Ed25519(_) => None,
        }
    }

    /// `SHA256:` and the unpadded base64 of the SHA-256 of the key's DER
    /// SubjectPublicKeyInfo (`openssl pkey -pubin -outform DER | sha256sum`).
    pub fn fingerprint(&self) -> String {
        let der = match &self.key {
            PublicKey::Ed25519(key) => key.to_public_key_der(),
            PublicKey::EcdsaP256(key) => key.to_public_key_der(),
        };
        let der = der.map(|der| der.as_bytes().to_vec()).unwrap_or_default();
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(der)))
    }
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.fingerprint())
    }
}

/// A key that is not one: names it and says what it should be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "trusted key {id} is not a public key wasmplug reads ({problem}); give an Ed25519 or ECDSA P-256 \
     key as PEM (openssl pkey -pubout, or cosign.pub), or an Ed25519 key as the base64 of its 32 bytes"
)]
pub struct KeyError {
    pub id: String,
    pub problem: String,
}

/// Reads one key: PEM (`-----BEGIN PUBLIC KEY-----`, as openssl and cosign
/// write it), Ed25519 or ECDSA P-256; or an Ed25519 key as the base64 of its
/// 32 bytes (as Artifact Keeper's `PLUGINS_TRUSTED_PUBKEY`).
pub fn parse(id: String, text: &[u8]) -> Result<TrustedKey, KeyError> {
    let fail = |problem: String| KeyError { id: id.clone(), problem };
    let text = std::str::from_utf8(text).map_err(|_| fail("it is not text".into()))?.trim();
    let key = if text.starts_with("-----BEGIN") {
        match ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            Ok(key) => PublicKey::Ed25519(key),
            Err(ed25519) => match p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
                Ok(key) => PublicKey::EcdsaP256(key),
                Err(p256) => return Err(fail(format!("PEM: not Ed25519 ({ed25519}), not ECDSA P-256 ({p256})"))),
            },
        }
    } else {
        let bytes = STANDARD.decode(text).map_err(|e| fail(format!("base64: {e}")))?;
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|b: Vec<u8>| fail(format!("{} bytes where a key has 32", b.len())))?;
        PublicKey::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| fail(e.to_string()))?)
    };
    Ok(TrustedKey { id, key })
}

/// The cluster-wide keys: every file of `dir` whose name does not start with a
/// dot (a mounted ConfigMap keeps its bookkeeping in dot files, and its keys are
/// links into them), read again for each verification so that a changed
/// ConfigMap applies without a restart. No directory means no keys.
pub fn read_dir(dir: &Path) -> Result<Vec<TrustedKey>, KeyError> {
    let fail = |problem: String| KeyError { id: format!("directory {}", dir.display()), problem };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(fail(error.to_string())),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let id = format!("cluster/{name}");
        let text = read_small(&path).map_err(|problem| KeyError { id: id.clone(), problem })?;
        keys.push(parse(id, &text)?);
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(keys)
}

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    file.take(MAX_KEY_BYTES + 1).read_to_end(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_KEY_BYTES {
        return Err(format!("it is larger than {MAX_KEY_BYTES} bytes"));
    }
    Ok(text)
}

/// The keys of a Secret's data, each named `secret/<secret>/<key>`.
pub fn from_secret<'a>(
    secret: &str,
    data: impl IntoIterator<Item = (&'a String, &'a [u8])>,
) -> Result<Vec<TrustedKey>, KeyError> {
    data.into_iter().map(|(name, text)| parse(format!("secret/{secret}/{name}"), text)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key pair from a fixed seed, and its public half as base64 of 32 bytes.
    pub(crate) fn key_pair(seed: u8) -> (ed25519_dalek::SigningKey, String) {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let public = STANDARD.encode(signing.verifying_key().as_bytes());
        (signing, public)
    }

    #[test]
    fn reads_base64_and_pem_keys() {
        let (signing, base64) = key_pair(1);
        let from_base64 = parse("cluster/a".into(), format!("{base64}\n").as_bytes()).expect("base64 key");
        assert_eq!(from_base64.key, PublicKey::Ed25519(signing.verifying_key()));
        // The same key as openssl writes it: the SubjectPublicKeyInfo of RFC 8410.
        let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        der.extend_from_slice(signing.verifying_key().as_bytes());
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(&der));
        let from_pem = parse("cluster/b".into(), pem.as_bytes()).expect("PEM key");
        assert_eq!(from_pem.key, PublicKey::Ed25519(signing.verifying_key()));
        assert_eq!(from_pem.fingerprint(), from_base64.fingerprint());
        let expected = STANDARD_NO_PAD.encode(Sha256::digest(&der));
        assert_eq!(from_pem.fingerprint(), format!("SHA256:{expected}"));
    }

    #[test]
    fn reads_a_cosign_public_key() {
        use p256::pkcs8::EncodePublicKey as _;
        let signing = p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("a P-256 scalar");
        let pem = signing.verifying_key().to_public_key_pem(Default::default()).expect("PEM");
        let key = parse("secret/cosign/cosign.pub".into(), pem.as_bytes()).expect("cosign.pub");
        assert_eq!(key.key, PublicKey::EcdsaP256(*signing.verifying_key()));
        assert!(key.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn names_what_is_not_a_key() {
        let error = parse("secret/keys/x.pub".into(), b"not base64!").unwrap_err();
        assert_eq!(error.id, "secret/keys/x.pub");
        assert!(error.to_string().contains("base64"), "{error}");
        let error = parse("cluster/short".into(), STANDARD.encode([1u8; 31]).as_bytes()).unwrap_err();
        assert!(error.problem.contains("31 bytes where a key has 32"), "{error}");
        let error =
            parse("cluster/pem".into(), b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").unwrap_err();
        assert!(error.problem.starts_with("PEM: not Ed25519"), "{error}");
    }

    #[test]
    fn reads_a_mounted_config_map() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_dir(&dir.path().join("absent")).unwrap().is_empty());
        // The layout kubelet writes: keys are links to files in a dot directory.
        let data = dir.path().join("..2026_11_30");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("release.pub"), key_pair(2).1).unwrap();
        std::os::unix::fs::symlink(&data, dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/release.pub", dir.path().join("release.pub")).unwrap();
        let keys = read_dir(dir.path()).unwrap();
        assert_eq!(keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["cluster/release.pub"]);
        std::fs::write(dir.path().join("broken.pub"), "nope").unwrap();
        assert_eq!(read_dir(dir.path()).unwrap_err().id, "cluster/broken.pub");
    }
}
