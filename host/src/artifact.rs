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
    #[error("failed to use {}: it has digest {actual}, but status.artifact says {expected}", path.display())]
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

/// One file of a published package: its name in the package directory, and
/// the digest and size status gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub name: String,
    pub digest: Digest,
    pub size: u64,
}

/// What status says a host may fetch and must find: the package directory (the
/// content address of plugin.wasm's digest) and its files, every name checked.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The package directory relative to the store root, `artifacts/sha256/<hex>`.
    pub dir: String,
    pub wasm: FileRef,
    /// plugin.toml, when status gives its digest (an older operator's status does not).
    pub manifest: Option<FileRef>,
    /// The precompiled file for the engine asked about, or why there is none to use.
    pub precompiled: Result<FileRef, String>,
}

/// Checks what `artifact` says and names its files. `engine` is the engine the
/// precompiled file must be for (a host's own), or `None` for whichever engine
/// status names (a replica mirroring the store).
pub fn listing(artifact: &Artifact, engine: Option<&str>) -> Result<Listing, ArtifactError> {
    let digest: Digest = artifact.digest.parse().map_err(|_| ArtifactError::InvalidDigest(artifact.digest.clone()))?;
    let dir = Artifact::path_for(&digest.to_string());
    if artifact.path != dir {
        return Err(ArtifactError::NotContentAddressed { path: artifact.path.clone(), expected: dir });
    }
    let size = file_size(artifact.size).ok_or(ArtifactError::InvalidSize(artifact.size))?;
    let wasm = FileRef { name: WASM_FILE.to_owned(), digest, size };
    let manifest = match &artifact.manifest {
        None => None,
        Some(manifest) => Some(FileRef {
            name: MANIFEST_FILE.to_owned(),
            digest: manifest.digest.parse().map_err(|_| ArtifactError::InvalidDigest(manifest.digest.clone()))?,
            size: file_size(manifest.size)
                .filter(|size| *size <= MAX_MANIFEST_BYTES)
                .ok_or(ArtifactError::InvalidSize(manifest.size))?,
        }),
    };
    let precompiled = precompiled_file(artifact.precompiled.as_ref(), engine);
    Ok(Listing { dir, wasm, manifest, precompiled })
}

/// A size from status, if it is one a host reads.
fn file_size(size: i64) -> Option<u64> {
    u64::try_from(size).ok().filter(|size| *size <= MAX_FILE_BYTES)
}

/// The precompiled file status names for `engine`, or why there is none to use.
fn precompiled_file(status: Option<&PrecompiledStatus>, engine: Option<&str>) -> Result<FileRef, String> {
    let status = status.ok_or("the operator published no precompiled file")?;
    let engine = match engine {
        Some(engine) if status.engine != engine => {
            return Err(format!("the precompiled file is for engine {}, this host runs {engine}", status.engine));
        }
        Some(engine) => engine,
        None if PrecompiledStatus::is_valid_engine(&status.engine) => &status.engine,
        None => return Err(format!("status names an invalid engine {:?}", status.engine)),
    };
    let name = PrecompiledStatus::file_for(engine);
    if status.file != name {
        return Err(format!(
            "status names the precompiled file {:?}; for this engine it must be {name:?}",
            status.file
        ));
    }
    let (Some(digest), Some(size)) = (status.digest.as_deref(), status.size) else {
        return Err("status gives no digest and size for the precompiled file".to_owned());
    };
    let digest: Digest = digest.parse().map_err(|_| format!("the precompiled file's digest {digest:?} is invalid"))?;
    let size = file_size(size).ok_or_else(|| format!("the precompiled file's size {size} is invalid"))?;
    Ok(FileRef { name, digest, size })
}

/// Reads the package `artifact` names from the store at `root`, for an engine
/// identified by `engine_id`.
pub fn read(root: &Path, artifact: &Artifact, engine_id: &str) -> Result<Verified, ArtifactError> {
    let listing = listing(artifact, Some(engine_id))?;
    let dir = root.join(&listing.dir);
    let wasm = read_checked(&dir.join(WASM_FILE), &listing.wasm)?;
    let manifest = match &listing.manifest {
        None => read_file(&dir.join(MANIFEST_FILE), Size::AtMost(MAX_MANIFEST_BYTES))?,
        Some(expected) => read_checked(&dir.join(MANIFEST_FILE), expected)?,
    };
    let package = Package::from_files(&dir.display().to_string(), &manifest, wasm).map_err(ArtifactError::Package)?;
    let precompiled = listing.precompiled.and_then(|file| read_precompiled(&dir, &file));
    Ok(Verified { package, precompiled })
}

/// The file at `path`, which must be the one `file` describes: a regular file
/// of its size, with its digest.
pub fn read_checked(path: &Path, file: &FileRef) -> Result<Vec<u8>, ArtifactError> {
    let bytes = read_file(path, Size::Exactly(file.size))?;
    let actual = Digest::of(&bytes);
    if actual != file.digest {
        return Err(ArtifactError::DigestMismatch { path: path.to_owned(), expected: file.digest, actual });
    }
    Ok(bytes)
}

/// The precompiled `file` from `dir`, verified, or why it cannot be used.
fn read_precompiled(dir: &Path, file: &FileRef) -> Result<Precompiled, String> {
    let path = dir.join(&file.name);
    let bytes = read_file(&path, Size::Exactly(file.size)).map_err(|e| e.to_string())?;
    Precompiled::checked(bytes, file.digest).map_err(|actual| {
        format!(
            "{} has digest {actual}, but status says {}; it is not the operator's file",
            path.display(),
            file.digest
        )
    })
}
