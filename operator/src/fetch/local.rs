//! Local sources: a package directory or ZIP file on the operator's filesystem
//! (for development, or packages baked into the operator's image).

use std::path::Path;

use wasmplug_host::plugin::{Digest, MANIFEST_FILE, WASM_FILE};

use super::{FetchError, FetchLimits, Fetched, archive};

/// Reads the package at `path`: a directory holding the package files, or a ZIP.
/// Blocking; run it off the async executor.
pub fn fetch(path: &str, limits: &FetchLimits) -> Result<Fetched, FetchError> {
    let fail = |reason: String| FetchError::Local { path: path.to_owned(), reason };
    let metadata = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if metadata.is_dir() {
        let dir = Path::new(path);
        let mut files = Vec::new();
        for name in [MANIFEST_FILE, WASM_FILE] {
            let file = dir.join(name);
            let Ok(metadata) = std::fs::symlink_metadata(&file) else { continue };
            if metadata.len() > limits.archive.max_unpacked_bytes {
                return Err(fail(format!("{name} is larger than {} bytes", limits.archive.max_unpacked_bytes)));
            }
            files.push((name.to_owned(), std::fs::read(&file).map_err(|e| fail(format!("{name}: {e}")))?));
        }
        return Ok(Fetched::from_files(path.to_owned(), format!("file://{path}"), files));
    }
    if metadata.len() > limits.max_download_bytes {
        return Err(fail(format!("the file is larger than {} bytes", limits.max_download_bytes)));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if !archive::is_zip(&bytes) {
        return Err(fail("it is neither a package directory nor a ZIP file".into()));
    }
    let revision = format!("file://{path}@{}", Digest::of(&bytes));
    archive::unpack(path, revision, &bytes, &limits.archive)
}
