//! The one place where a FormatPlugin's `status.artifact` becomes bytes a host
//! may run (trust invariant 1 of PRODUCT.md).
//!
//! Status is written by the operator; the store is a volume that anything with
//! write access to it could change. So nothing named in status is used as a free
//! path: the package directory must be the content address of the digest, and
//! the precompiled file must be exactly `<this host's engine>.cwasm`. Files are
//! opened without following a final link and without blocking, must be regular
//! files of the size status names, are read with that size as the cap, and are
//! checked against their digest before anything uses them. A precompiled file
//! that is missing, foreign or fails a check is reported, never used: the
//! runtime compiles plugin.wasm instead.
//!
//! This module reads and verifies; it does not compile or run anything.

use std::path::{Path, PathBuf};

use wasmplug_crds::{Artifact, Precompiled as PrecompiledStatus};

use crate::plugin::{Digest, MANIFEST_FILE, Package, PackageError, WASM_FILE};
use crate::runtime::Precompiled;
pub use crate::untrusted_file::FileError;
use crate::untrusted_file::{Size, read as read_file};

/// Largest plugin.wasm or precompiled file a host reads, whatever status says.
pub const MAX_FILE_BYTES: u64 = 512 << 20;
/// Largest plugin.toml a host reads.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Why a published artifact cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("failed to use status.artifact: digest {0:?} is not sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    #[error("failed to use status.artifact: path {path:?} is not the content address of its digest ({expected:?})")]
    NotContentAddressed { path: String, expected: String },
    #[error("failed to use status.artifact: size {0} is not a size between 0 and {MAX_FILE_BYTES} bytes")]
    InvalidSize(i64),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("failed to use {}: it has digest {actual}, but status.artifact.digest is {expected}", path.display())]
    DigestMismatch { path: PathBuf, expected: Digest, actual: Digest },
    #[error(transparent)]
    Package(PackageError),
}

/// A published package whose plugin.wasm has the digest status names, and the
/// outcome of looking for its precompiled form.
#[derive(Debug)]
pub struct Verified {
    pub package: Package,
    /// The precompiled file for this engine, or why there is none to use.
    pub precompiled: Result<Precompiled, String>,
}

/// Reads the package `artifact` names from the store at `root`, for an engine
/// identified by `engine_id`.
pub fn read(root: &Path, artifact: &Artifact, engine_id: &str) -> Result<Verified, ArtifactError> {
    let digest: Digest = artifact.digest.parse().map_err(|_| ArtifactError::InvalidDigest(artifact.digest.clone()))?;
    let expected = Artifact::path_for(&digest.to_string());
    if artifact.path != expected {
        return Err(ArtifactError::NotContentAddressed { path: artifact.path.clone(), expected });
    }
    let size = u64::try_from(artifact.size)
        .ok()
        .filter(|size| *size <= MAX_FILE_BYTES)
        .ok_or(ArtifactError::InvalidSize(artifact.size))?;
    let dir = root.join(&expected);
    let wasm_path = dir.join(WASM_FILE);
    let wasm = read_file(&wasm_path, Size::Exactly(size))?;
    let actual = Digest::of(&wasm);
    if actual != digest {
        return Err(ArtifactError::DigestMismatch { path: wasm_path, expected: digest, actual });
    }
    let manifest = read_file(&dir.join(MANIFEST_FILE), Size::AtMost(MAX_MANIFEST_BYTES))?;
    let package = Package::from_files(&dir.display().to_string(), &manifest, wasm).map_err(ArtifactError::Package)?;
    let precompiled = read_precompiled(&dir, artifact.precompiled.as_ref(), engine_id);
    Ok(Verified { package, precompiled })
}

/// The precompiled file for `engine_id`, verified, or why it cannot be used.
fn read_precompiled(dir: &Path, status: Option<&PrecompiledStatus>, engine_id: &str) -> Result<Precompiled, String> {
    let status = status.ok_or("the operator published no precompiled file")?;
    if status.engine != engine_id {
        return Err(format!("the precompiled file is for engine {}, this host runs {engine_id}", status.engine));
    }
    let file = PrecompiledStatus::file_for(engine_id);
    if status.file != file {
        return Err(format!(
            "status names the precompiled file {:?}; for this engine it must be {file:?}",
            status.file
        ));
    }
    let (Some(digest), Some(size)) = (status.digest.as_deref(), status.size) else {
        return Err("status gives no digest and size for the precompiled file".to_owned());
    };
    let digest: Digest = digest.parse().map_err(|_| format!("the precompiled file's digest {digest:?} is invalid"))?;
    let size = u64::try_from(size)
        .ok()
        .filter(|size| *size <= MAX_FILE_BYTES)
        .ok_or_else(|| format!("the precompiled file's size {size} is invalid"))?;
    let path = dir.join(&file);
    let bytes = read_file(&path, Size::Exactly(size)).map_err(|e| e.to_string())?;
    Precompiled::checked(bytes, digest).map_err(|actual| {
        format!("{} has digest {actual}, but status says {digest}; it is not the operator's file", path.display())
    })
}
