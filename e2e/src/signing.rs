//! Signing plugins the way a publisher does, with the `openssl` command line:
//! an Ed25519 key pair, and detached signatures of plugin.wasm in Artifact
//! Keeper's format (the base64 of the 64 signature bytes).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// An Ed25519 key pair made by `openssl genpkey`, kept in a temporary directory.
#[derive(Debug)]
pub struct SigningKey {
    dir: tempfile::TempDir,
}

impl SigningKey {
    /// A new key pair.
    pub fn generate() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = SigningKey { dir };
        key.openssl(&["genpkey", "-algorithm", "ed25519", "-out", &key.private()])?;
        Ok(key)
    }

    fn private(&self) -> String {
        self.dir.path().join("key.pem").display().to_string()
    }

    fn openssl(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let output = Command::new("openssl").args(args).output().context("openssl runs")?;
        if !output.status.success() {
            bail!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        }
        Ok(output.stdout)
    }

    /// The private key as PEM (PKCS#8, as `openssl genpkey` writes it).
    pub fn private_pem(&self) -> String {
        std::fs::read_to_string(self.private()).expect("the key file openssl wrote")
    }

    /// The public key as PEM (`openssl pkey -pubout`).
    pub fn public_pem(&self) -> String {
        let pem = self.openssl(&["pkey", "-in", &self.private(), "-pubout"]).expect("openssl pkey");
        String::from_utf8(pem).expect("PEM is text")
    }

    /// The public key as the base64 of its 32 bytes, Artifact Keeper's
    /// `PLUGINS_TRUSTED_PUBKEY` (the last 32 bytes of its DER form).
    pub fn public_base64(&self) -> String {
        let der = self.openssl(&["pkey", "-in", &self.private(), "-pubout", "-outform", "DER"]).expect("openssl pkey");
        STANDARD.encode(&der[der.len() - 32..])
    }

    /// plugin.wasm.sig for `wasm`: `openssl pkeyutl -sign -rawin`, in base64.
    pub fn sign(&self, wasm: &[u8]) -> Vec<u8> {
        let input: PathBuf = self.dir.path().join("plugin.wasm");
        std::fs::write(&input, wasm).expect("write plugin.wasm");
        let input = input.display().to_string();
        let signature =
            self.openssl(&["pkeyutl", "-sign", "-rawin", "-inkey", &self.private(), "-in", &input]).expect("sign");
        assert_eq!(signature.len(), 64, "an Ed25519 signature");
        format!("{}\n", STANDARD.encode(signature)).into_bytes()
    }
}
