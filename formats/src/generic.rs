//! `generic`: any file, stored as it is. Checks the path, guesses the content type
//! from the extension, and records the size and SHA-256. No version, no index.

use sha2::{Digest as _, Sha256};

use crate::path;
use crate::{Format, IndexFiles, Metadata};

#[derive(Clone, Copy, Debug, Default)]
pub struct Generic;

impl Format for Generic {
    fn parse_metadata(&self, path: &str, data: &[u8]) -> Result<Metadata, String> {
        self.validate(path, data)?;
        Ok(Metadata {
            path: path.to_owned(),
            version: None,
            content_type: mime_guess::from_path(path).first_or_octet_stream().essence_str().to_owned(),
            size_bytes: data.len() as u64,
            checksum_sha256: Some(Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()),
        })
    }

    fn validate(&self, path: &str, _data: &[u8]) -> Result<(), String> {
        path::check(path)
    }

    fn generate_index(&self, _artifacts: &[Metadata]) -> Result<Option<IndexFiles>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_any_file() {
        let metadata = Generic.parse_metadata("docs/guide.pdf", b"%PDF-1.7").expect("accepted");
        assert_eq!(metadata.content_type, "application/pdf");
        assert_eq!(metadata.size_bytes, 8);
        assert_eq!(metadata.version, None);
        assert_eq!(metadata.checksum_sha256.as_deref().map(str::len), Some(64));
        let unknown = Generic.parse_metadata("blob.xyz123", b"").expect("accepted");
        assert_eq!(unknown.content_type, "application/octet-stream");
    }

    #[test]
    fn rejects_unsafe_paths() {
        let error = Generic.validate("../secrets", b"").expect_err("rejected");
        assert!(error.contains("must not contain .."), "{error}");
    }
}
