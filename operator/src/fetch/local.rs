//! Local sources: a package directory or ZIP file on the operator's filesystem
//! (for development, or packages baked into the operator's image).
//!
//! The path has been resolved under the operator's local source roots
//! ([`crate::policy::LocalRoots`]) before it gets here; still, each file is read
//! as something planted: regular files only, no links followed, never more than
//! the limits, and never blocking on a FIFO or device.

use std::path::Path;

use wasmplug_host::plugin::Digest;
use wasmplug_host::untrusted_file::{self, Size};

use super::{FetchError, FetchLimits, Fetched, PACKAGE_FILES, archive};

/// Reads the package at the resolved path `path`: a directory holding the
/// package files, or a ZIP. Blocking; run it off the async executor.
pub fn fetch(path: &Path, limits: &FetchLimits) -> Result<Fetched, FetchError> {
    let shown = path.display().to_string();
    let fail = |reason: String| FetchError::Local { path: shown.clone(), reason };
    let metadata = std::fs::symlink_metadata(path).map_err(|e| fail(e.to_string()))?;
    if metadata.is_dir() {
        let mut files = Vec::new();
        for name in PACKAGE_FILES {
            let file = path.join(name);
            if std::fs::symlink_metadata(&file).is_err() {
                continue; // Validation says which file is missing.
            }
            let bytes = untrusted_file::read(&file, Size::AtMost(limits.archive.max_unpacked_bytes))
                .map_err(|e| fail(format!("{name}: {}", e.problem)))?;
            files.push((name.to_owned(), bytes));
        }
        return Ok(Fetched::from_files(shown.clone(), format!("file://{shown}"), files));
    }
    let bytes = untrusted_file::read(path, Size::AtMost(limits.max_download_bytes)).map_err(|e| fail(e.problem))?;
    if !archive::is_zip(&bytes) {
        return Err(fail("it is neither a package directory nor a ZIP file".into()));
    }
    let revision = format!("file://{shown}@{}", Digest::of(&bytes));
    archive::unpack(&shown, revision, &bytes, &limits.archive)
}

#[cfg(test)]
mod tests {
    use wasmplug_host::plugin::WASM_FILE;

    use super::*;

    fn refusal(path: &Path) -> String {
        fetch(path, &FetchLimits::default()).expect_err("refused").to_string()
    }

    #[test]
    fn devices_fifos_and_links_are_not_read() {
        assert!(refusal(Path::new("/dev/zero")).contains("not a regular file"));
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success());
        assert!(refusal(&fifo).contains("not a regular file"));
        // Inside a package directory, a link is refused, not followed.
        std::fs::create_dir(dir.path().join("package")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("package").join(WASM_FILE)).unwrap();
        assert!(refusal(&dir.path().join("package")).contains("plugin.wasm: it is a link"));
        std::fs::remove_file(dir.path().join("package").join(WASM_FILE)).unwrap();
        std::fs::rename(&fifo, dir.path().join("package").join(WASM_FILE)).unwrap();
        assert!(refusal(&dir.path().join("package")).contains("plugin.wasm: it is not a regular file"));
    }

    #[test]
    fn a_package_directory_brings_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [("plugin.toml", &b"toml"[..]), ("plugin.wasm", b"wasm"), ("plugin.wasm.sig", b"c2ln")] {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        std::fs::write(dir.path().join("README.md"), "not read").unwrap();
        let fetched = fetch(dir.path(), &FetchLimits::default()).expect("read");
        assert_eq!(fetched.signature.as_deref(), Some(&b"c2ln"[..]));
        assert_eq!(fetched.wasm.as_deref(), Some(&b"wasm"[..]));
    }

    #[test]
    fn files_past_the_limits_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let limits = FetchLimits { max_download_bytes: 10, ..FetchLimits::default() };
        std::fs::write(dir.path().join("big.zip"), [0u8; 11]).unwrap();
        let error = fetch(&dir.path().join("big.zip"), &limits).unwrap_err().to_string();
        assert!(error.contains("more than the 10 allowed"), "{error}");
    }
}
