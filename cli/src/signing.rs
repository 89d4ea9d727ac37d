//! `sign` and `verify`: Artifact Keeper's detached Ed25519 signature, made
//! and checked as the operator checks it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use wasmplug_host::plugin::WASM_FILE;
use wasmplug_operator::verify::{self, PublicKey, Required, SIGNATURE_FILE, TrustedKey};

use crate::read;

pub fn sign(package: &Path, key_file: &Path) -> anyhow::Result<String> {
    if !package.is_dir() {
        bail!("{} is not a package directory; sign plugin.wasm before packing the ZIP", package.display());
    }
    let wasm_file = package.join(WASM_FILE);
    let wasm = std::fs::read(&wasm_file).with_context(|| format!("failed to read {}", wasm_file.display()))?;
    let (signature, signer) = signature(key_file, &wasm)?;
    let signature_file = package.join(SIGNATURE_FILE);
    std::fs::write(&signature_file, signature)
        .with_context(|| format!("failed to write {}", signature_file.display()))?;
    Ok(format!("wrote {}: signed with the key {}", signature_file.display(), signer.fingerprint()))
}

/// plugin.wasm.sig for `wasm`, signed with the Ed25519 private key (PEM) in
/// `key_file`, and the public key that verifies it.
pub fn signature(key_file: &Path, wasm: &[u8]) -> anyhow::Result<(Vec<u8>, TrustedKey)> {
    let pem = std::fs::read_to_string(key_file).with_context(|| format!("failed to read {}", key_file.display()))?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|error| {
        anyhow::anyhow!(
            "{} is not an Ed25519 private key in PEM ({error}); make one with openssl genpkey -algorithm ed25519",
            key_file.display()
        )
    })?;
    let signature = format!("{}\n", STANDARD.encode(key.sign(wasm).to_bytes()));
    let public = TrustedKey { id: key_file.display().to_string(), key: PublicKey::Ed25519(key.verifying_key()) };
    Ok((signature.into_bytes(), public))
}

pub fn verify(package: &Path, key_files: &[PathBuf]) -> anyhow::Result<String> {
    let fetched = read(package)?;
    let keys = key_files
        .iter()
        .map(|file| {
            let text = std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
            Ok(verify::keys::parse(file.display().to_string(), &text)?)
        })
        .collect::<anyhow::Result<Vec<TrustedKey>>>()?;
    let wasm = fetched.wasm.as_deref().with_context(|| format!("{} has no {WASM_FILE}", fetched.at))?;
    let key = verify::verify(&fetched.at, wasm, fetched.signature.as_deref(), &keys, Required::ByObject)?;
    Ok(format!("{}: {SIGNATURE_FILE} is signed by {} ({})", fetched.at, key.id, key.fingerprint()))
}
