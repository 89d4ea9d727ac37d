//! The certificate set an API server needs: a CA, a serving certificate for its
//! addresses, client certificates for users and components, and a
//! service-account signing key.
//!
//! Everything is generated fresh per control plane with rcgen (ECDSA P-256), written
//! as PEM files into the control plane's directory. Nothing here talks to a server.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Paths of the PEM files a control plane was started with, and the CA that can
/// issue further client certificates (for testing RBAC as another identity).
pub struct Certificates {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificates {
    /// Generates the CA, the serving certificate (for `addresses` and the
    /// `kubernetes` Service's names) and the service-account key into `dir`.
    pub fn generate(dir: &Path, addresses: &[IpAddr]) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "wasmplug-e2e-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        write(&dir.join("ca.crt"), &ca.pem())?;

        let certs = Certificates { dir: dir.to_owned(), ca };
        let names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"];
        let sans = addresses.iter().map(IpAddr::to_string).chain(names.map(String::from));
        let mut serving = CertificateParams::new(sans.collect::<Vec<_>>())?;
        serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        certs.issue("apiserver", serving)?;

        let service_accounts = KeyPair::generate()?;
        write(&dir.join("service-account.key"), &service_accounts.serialize_pem())?;
        write(&dir.join("service-account.pub"), &service_accounts.public_key_pem())?;
        Ok(certs)
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn serving(&self) -> ClientCredentials {
        ClientCredentials { cert: self.dir.join("apiserver.crt"), key: self.dir.join("apiserver.key") }
    }

    /// The private key the API server signs service-account tokens with.
    pub fn service_account_signing_key(&self) -> PathBuf {
        self.dir.join("service-account.key")
    }

    /// The public key the API server verifies service-account tokens with.
    pub fn service_account_public_key(&self) -> PathBuf {
        self.dir.join("service-account.pub")
    }

    /// Issues a client certificate for `user`, optionally in `group` (the API server
    /// reads the user from CN and the group from O). `system:masters` is cluster admin.
    pub fn client(&self, user: &str, group: Option<&str>) -> anyhow::Result<ClientCredentials> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params.distinguished_name.push(DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let file_stem: String = user.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        self.issue(&format!("client-{file_stem}"), params)
    }

    /// Issues a serving certificate for 127.0.0.1 and localhost (for a webhook the
    /// API server calls), named `name`; every call makes a new key and serial.
    pub fn server(&self, name: &str) -> anyhow::Result<ClientCredentials> {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(name, params)
    }

    fn issue(&self, name: &str, params: CertificateParams) -> anyhow::Result<ClientCredentials> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let credentials =
            ClientCredentials { cert: self.dir.join(format!("{name}.crt")), key: self.dir.join(format!("{name}.key")) };
        write(&credentials.cert, &cert.pem())?;
        write(&credentials.key, &key.serialize_pem())?;
        Ok(credentials)
    }
}

fn write(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("failed to write {}", path.display()))
}
