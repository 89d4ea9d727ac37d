//! Fetching plugin packages from where a FormatPlugin says they are: Git, an HTTP(S)
//! URL, an OCI registry or the operator's filesystem. (Builtin sources have nothing to fetch.)
//!
//! A fetch yields the package's two files as bytes, where they came from and the
//! source revision; it decides nothing about whether they make a valid plugin (that
//! is [`crate::validate`]). Every fetch runs under a deadline and size limits, and
//! anything it writes to disk lives in a temporary directory removed when the fetch
//! ends, however it ends.

mod archive;
mod credentials;
mod egress;
mod git;
mod local;
mod oci;
mod url;

use std::time::Duration;

pub use archive::ArchiveLimits;
pub use credentials::{Credentials, DOCKER_CONFIG_KEY, RegistryLogin};
pub use egress::EgressGate;
pub use git::{GitRequest, fetch as git};
pub use local::fetch as local;
pub use oci::{
    ARTIFACT_TYPE, MANIFEST_LAYER, OciRequest, OciTarget, SIGNATURE_LAYER, WASM_LAYER, ensure_crypto_provider,
    fetch as oci, system_roots,
};
pub use url::{client as http_client, fetch as url};

use wasmplug_host::plugin::{MANIFEST_FILE, WASM_FILE};

use crate::verify::SIGNATURE_FILE;
use crate::verify::cosign::CosignSignatures;

/// The files of a package a fetch reads; nothing else of a directory or ZIP is.
const PACKAGE_FILES: [&str; 3] = [MANIFEST_FILE, WASM_FILE, SIGNATURE_FILE];

/// A package's files as fetched. Any may be missing; validation (or, for the
/// signature, verification) says which.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    /// Where the package was found, for messages (URL, Git URL and path, file path).
    pub at: String,
    /// What was fetched, for `status.artifact.revision`.
    pub revision: String,
    pub manifest: Option<Vec<u8>>,
    pub wasm: Option<Vec<u8>>,
    /// plugin.wasm.sig: a detached signature of plugin.wasm.
    pub signature: Option<Vec<u8>>,
    /// An OCI artifact's cosign signatures, when they were asked for.
    pub cosign: Option<CosignSignatures>,
}

impl Fetched {
    /// Takes the package files from `(name, contents)` pairs, ignoring others.
    fn from_files(at: String, revision: String, files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let mut fetched = Fetched { at, revision, ..Fetched::default() };
        for (name, contents) in files {
            match name.as_str() {
                MANIFEST_FILE => fetched.manifest = Some(contents),
                WASM_FILE => fetched.wasm = Some(contents),
                SIGNATURE_FILE => fetched.signature = Some(contents),
                _ => {}
            }
        }
        fetched
    }
}

/// How much one fetch may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// Longest time the whole fetch may take.
    pub timeout: Duration,
    /// Largest download (a ZIP, or a Git transfer) in bytes.
    pub max_download_bytes: u64,
    /// What a ZIP package may unpack to.
    pub archive: ArchiveLimits,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            timeout: Duration::from_secs(60),
            max_download_bytes: 64 << 20,
            archive: ArchiveLimits::default(),
        }
    }
}

/// Why a fetch failed. [`FetchError::is_transient`] says whether trying again
/// later can help without the user changing anything.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("failed to reach {url}: {reason}; the operator retries with backoff")]
    Unreachable { url: String, reason: String },
    #[error("failed to fetch {url}: the server answered {status}{hint}")]
    Status { url: String, status: u16, hint: &'static str },
    #[error("failed to fetch {url}: {reason}")]
    NotAllowed { url: String, reason: String },
    #[error("failed to fetch {url} within {}s; raise spec.timeout if the source is slow", timeout.as_secs())]
    TimedOut { url: String, timeout: Duration },
    #[error("failed to fetch {url}: the download exceeds {max} bytes; a plugin package must be smaller")]
    TooLarge { url: String, max: u64 },
    #[error("failed to fetch {url}: {reason}")]
    Oci { url: String, reason: String, transient: bool },
    #[error(
        "failed to fetch {url}: {detail}; the registry (or something between it and the operator) served \
         other bytes than the digest names"
    )]
    ContentDigest { url: String, detail: String },
    #[error("{at} is not a wasmplug plugin artifact: {problem}")]
    ArtifactShape { at: String, problem: String },
    #[error("failed to find {what} in {url}; check spec.source.git.ref")]
    RefNotFound { url: String, what: String },
    #[error("failed to find {path:?} in {url} at {revision}; check spec.source.git.path")]
    PathNotFound { url: String, revision: String, path: String },
    #[error("failed to fetch {url}: {reason}")]
    Git { url: String, reason: String, transient: bool },
    #[error("failed to unpack {at}: {reason}")]
    Archive { at: String, reason: String },
    #[error("failed to read {path}: {reason}; the path is on the operator's filesystem")]
    Local { path: String, reason: String },
    #[error("failed to read Secret {secret}: {reason}")]
    Credentials { secret: String, reason: String },
    #[error(
        "failed to read Secret {namespace}/{secret}: the operator may not read it; \
         its role names the Secrets sources may use: add this one to the chart's operator.sourceSecrets \
         (retrying until then)"
    )]
    SecretForbidden { namespace: String, secret: String },
}

impl FetchError {
    /// Whether the same request may succeed later (network trouble, server errors,
    /// timeouts) rather than needing a change by the user.
    pub fn is_transient(&self) -> bool {
        match self {
            // Fixed outside the object (RBAC), so worth retrying.
            FetchError::Unreachable { .. } | FetchError::TimedOut { .. } | FetchError::SecretForbidden { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 429,
            FetchError::Git { transient, .. } | FetchError::Oci { transient, .. } => *transient,
            _ => false,
        }
    }
}
