//! Plugin packages: the manifest rules and reading a package from disk.

mod digest;
mod manifest;
mod package;

pub use digest::{Digest, DigestParseError};
pub use manifest::{MANIFEST_FILE, Manifest, ManifestError, ManifestProblem, ResourceRequest};
pub use package::{Package, PackageError, WASM_FILE};
