//! A plugin package on disk: a directory holding plugin.toml and plugin.wasm
//! (and optionally plugin.wasm.sig, not checked yet).

use std::path::{Path, PathBuf};

use super::{Digest, MANIFEST_FILE, Manifest, ManifestError};

/// The file name of the WebAssembly component inside a package.
pub const WASM_FILE: &str = "plugin.wasm";

/// A package whose manifest is valid. Whether its component is valid is decided
/// when it is compiled (see the runtime).
#[derive(Clone, Debug)]
pub struct Package {
    pub manifest: Manifest,
    pub wasm: Vec<u8>,
    pub digest: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("failed to read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the package at {at} has no {file}; a package holds {MANIFEST_FILE} and {WASM_FILE}")]
    Missing { at: String, file: &'static str },
    #[error("{at}: {source}")]
    Manifest { at: String, source: ManifestError },
}

impl Package {
    /// Reads and checks the package in `dir`. Both missing files are reported by
    /// name; the manifest is checked before plugin.wasm is read.
    pub fn read_dir(dir: &Path) -> Result<Self, PackageError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let wasm_path = dir.join(WASM_FILE);
        let at = || dir.display().to_string();
        for (path, file) in [(&manifest_path, MANIFEST_FILE), (&wasm_path, WASM_FILE)] {
            if !path.is_file() {
                return Err(PackageError::Missing { at: at(), file });
            }
        }
        let read =
            |path: &Path| std::fs::read(path).map_err(|source| PackageError::Read { path: path.to_owned(), source });
        let manifest = Self::check_manifest(&at(), &read(&manifest_path)?)?;
        let wasm = read(&wasm_path)?;
        Ok(Package { digest: Digest::of(&wasm), manifest, wasm })
    }

    /// Checks a package whose files were read from elsewhere (an archive, a Git
    /// tree, a download); `at` says where, for error messages.
    pub fn from_files(at: &str, manifest: &[u8], wasm: Vec<u8>) -> Result<Self, PackageError> {
        let manifest = Self::check_manifest(at, manifest)?;
        Ok(Package { digest: Digest::of(&wasm), manifest, wasm })
    }

    fn check_manifest(at: &str, bytes: &[u8]) -> Result<Manifest, PackageError> {
        let manifest_error = |source| PackageError::Manifest { at: at.to_owned(), source };
        let text = std::str::from_utf8(bytes)
            .map_err(|e| manifest_error(ManifestError::Syntax(format!("the file is not UTF-8 ({e})"))))?;
        Manifest::parse(text).map_err(manifest_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "[plugin]\nname = \"p\"\nversion = \"1.0.0\"\n[format]\nkey = \"p\"\n";

    #[test]
    fn reads_a_package_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(MANIFEST_FILE), MANIFEST).expect("write");
        std::fs::write(dir.path().join(WASM_FILE), b"\0asm").expect("write");
        let package = Package::read_dir(dir.path()).expect("valid package");
        assert_eq!(package.manifest.format_key, "p");
        assert_eq!(package.digest, Digest::of(b"\0asm"));
    }

    #[test]
    fn names_the_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = Package::read_dir(dir.path()).expect_err("empty directory");
        assert!(error.to_string().contains("has no plugin.toml"), "{error}");

        std::fs::write(dir.path().join(MANIFEST_FILE), MANIFEST).expect("write");
        let error = Package::read_dir(dir.path()).expect_err("no wasm");
        assert!(error.to_string().contains("has no plugin.wasm"), "{error}");
    }

    #[test]
    fn an_invalid_manifest_names_the_directory_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(MANIFEST_FILE), "[plugin]\nname = \"p\"\n[format]\nkey = \"p\"\n")
            .expect("write");
        std::fs::write(dir.path().join(WASM_FILE), b"\0asm").expect("write");
        let error = Package::read_dir(dir.path()).expect_err("no version");
        let message = error.to_string();
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        assert!(message.contains("plugin.toml is invalid: [plugin].version is required"), "{message}");
    }
}
