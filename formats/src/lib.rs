//! Package-format knowledge with no runtime attached: for each format, how to
//! validate an artifact and its path, extract its metadata, and generate the
//! index its clients read.
//!
//! Pure functions of bytes, with no IO and no host dependencies, so the same
//! source compiles into the host (the builtin formats) and into a WebAssembly
//! plugin (`examples/npm-format`), which lets benchmarks compare the two on
//! identical work.

mod archive;
pub mod budget;
mod cargo;
mod common;
mod generic;
mod maven;
mod npm;
mod nuget;
mod path;
mod pypi;
mod rubygems;
#[cfg(feature = "test-support")]
pub mod test_support;
mod xml;

pub use budget::{Budget, Exceeded, Limits, Refusal};
pub use cargo::Cargo;
pub use generic::Generic;
pub use maven::Maven;
pub use npm::Npm;
pub use nuget::Nuget;
pub use pypi::Pypi;
pub use rubygems::Rubygems;

use serde::{Deserialize, Serialize};

/// What a registry stores about one artifact; the same fields as the plugin ABI's
/// `metadata` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub path: String,
    pub version: Option<String>,
    pub content_type: String,
    pub size_bytes: u64,
    pub checksum_sha256: Option<String>,
}

/// Defines `to_abi(Metadata) -> $abi` and `from_abi(&$abi) -> Metadata`, where
/// `$abi` is the `metadata` record that WIT bindings generate (on the host or in a
/// guest): the one place that maps the ABI record's fields.
#[macro_export]
macro_rules! metadata_conversions {
    ($abi:path) => {
        fn to_abi(metadata: $crate::Metadata) -> $abi {
            let $crate::Metadata { path, version, content_type, size_bytes, checksum_sha256 } = metadata;
            $abi { path, version, content_type, size_bytes, checksum_sha256 }
        }

        fn from_abi(metadata: &$abi) -> $crate::Metadata {
            $crate::Metadata {
                path: metadata.path.clone(),
                version: metadata.version.clone(),
                content_type: metadata.content_type.clone(),
                size_bytes: metadata.size_bytes,
                checksum_sha256: metadata.checksum_sha256.clone(),
            }
        }
    };
}

/// Index files: (path, contents).
pub type IndexFiles = Vec<(String, Vec<u8>)>;

/// What a format found out about an accepted artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    pub version: Option<String>,
    pub content_type: &'static str,
}

/// One package format. Each call spends from a [`Budget`]; a [`Refusal`] is a
/// rejection whose text says what is wrong, or the budget running out.
pub trait Format: Send + Sync + std::fmt::Debug {
    /// Checks an artifact and its path, and says what it is. Validation and
    /// metadata extraction are both this one check.
    fn inspect(&self, path: &str, data: &[u8], budget: &Budget) -> Result<Inspection, Refusal>;

    /// The index files the format's clients read, or `None` when it has none.
    fn generate_index(&self, artifacts: &[Metadata], budget: &Budget) -> Result<Option<IndexFiles>, Refusal>;

    fn validate(&self, path: &str, data: &[u8], budget: &Budget) -> Result<(), Refusal> {
        self.inspect(path, data, budget).map(drop)
    }

    fn parse_metadata(&self, path: &str, data: &[u8], budget: &Budget) -> Result<Metadata, Refusal> {
        let Inspection { version, content_type } = self.inspect(path, data, budget)?;
        Ok(common::metadata(path, version, content_type, data))
    }
}

/// The keys of every format this crate knows.
pub const KEYS: [&str; 7] = ["cargo", "generic", "maven", "npm", "nuget", "pypi", "rubygems"];

/// The format with key `key`.
pub fn by_key(key: &str) -> Option<&'static dyn Format> {
    let format: &'static dyn Format = match key {
        "cargo" => &Cargo,
        "generic" => &Generic,
        "maven" => &Maven,
        "npm" => &Npm,
        "nuget" => &Nuget,
        "pypi" => &Pypi,
        "rubygems" => &Rubygems,
        _ => return None,
    };
    Some(format)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_has_a_format() {
        for key in super::KEYS {
            assert!(super::by_key(key).is_some(), "{key}");
        }
        assert!(super::by_key("unity").is_none());
    }
}
