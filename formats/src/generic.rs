//! `generic`: any file, stored as it is. Checks the path, guesses the content type
//! from the extension, and records the size and SHA-256. No version, no index.

use crate::path;
use crate::{Budget, Format, IndexFiles, Inspection, Metadata, Refusal};

#[derive(Clone, Copy, Debug, Default)]
pub struct Generic;

impl Format for Generic {
    fn inspect(&self, path: &str, _data: &[u8], _budget: &Budget) -> Result<Inspection, Refusal> {
        path::check(path)?;
        let content_type = mime_guess::from_path(path).first_raw().unwrap_or("application/octet-stream");
        Ok(Inspection { version: None, content_type })
    }

    fn generate_index(&self, _artifacts: &[Metadata], _budget: &Budget) -> Result<Option<IndexFiles>, Refusal> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_any_file() {
        let metadata = Generic
            .parse_metadata("docs/guide.pdf", b"%PDF-1.7", &Budget::new(crate::Limits::DEFAULT))
            .expect("accepted");
        assert_eq!(metadata.content_type, "application/pdf");
        assert_eq!(metadata.size_bytes, 8);
        assert_eq!(metadata.version, None);
        assert_eq!(metadata.checksum_sha256, None, "the host fills it in");
        let unknown =
            Generic.parse_metadata("blob.xyz123", b"", &Budget::new(crate::Limits::DEFAULT)).expect("accepted");
        assert_eq!(unknown.content_type, "application/octet-stream");
    }

    #[test]
    fn rejects_unsafe_paths() {
        let error = Generic.validate("../secrets", b"", &Budget::new(crate::Limits::DEFAULT)).expect_err("rejected");
        assert!(error.to_string().contains("must not contain .."), "{error}");
    }
}
