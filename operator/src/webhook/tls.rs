//! The webhook's serving certificate, read from PEM files and re-read whenever
//! they change, so that a rotated certificate (a renewed Secret, which the kubelet
//! swaps into the mounted volume) is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "failed to read the webhook certificate {path}: {message}; check --webhook-cert-file and --webhook-key-file"
    )]
    Read { path: PathBuf, message: String },
    #[error("the webhook certificate {cert} does not suit its key {key}: {source}")]
    Key { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("failed to configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain and key on disk.
#[derive(Clone, Debug)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Serves the certificate loaded last; before each handshake, reloads it if either
/// file's modification time changed. A reload that fails keeps the previous
/// certificate and logs why.
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamp: Stamp,
    key: Arc<CertifiedKey>,
}

/// The files' modification times when they were read.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl ReloadingCertificate {
    /// Loads the files once; fails if they cannot be read now.
    pub fn load(files: CertificateFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = stamp_of(&files);
        let key = Arc::new(read(&files, &provider)?);
        Ok(ReloadingCertificate { files, provider, loaded: Mutex::new(Loaded { stamp, key }) })
    }

    /// A server configuration (HTTP/1.1) that serves this certificate.
    pub fn server_config(self: Arc<Self>) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The certificate being served now, reloaded first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = stamp_of(&self.files);
        if stamp != loaded.stamp {
            match read(&self.files, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "reloaded the webhook certificate");
                    *loaded = Loaded { stamp, key: Arc::new(key) };
                }
                // Halfway through an update the files may not match yet; the next
                // handshake tries again.
                Err(error) => tracing::warn!(%error, "kept the previous webhook certificate"),
            }
        }
        loaded.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp_of(files: &CertificateFiles) -> Stamp {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(&files.cert), modified(&files.key))
}

fn read(files: &CertificateFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let failed = |path: &Path, message: String| TlsError::Read { path: path.to_owned(), message };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| failed(&files.cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(&files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(failed(&files.cert, "no CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| failed(&files.key, e.to_string()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}
