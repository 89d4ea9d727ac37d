//! The wasmplug Kubernetes API: the `FormatPlugin` custom resource
//! (`wasmplug.dev/v1alpha1`), its status contract, the hosts' `FormatHost` records
//! and the generator for the CRD YAML.
//!
//! This crate depends on nothing else of wasmplug's; the operator, the host and the
//! tests all read the API from here. It holds types, the rules the API server can
//! enforce, and the stable words of the status contract, but no IO.

pub mod conditions;
mod duration;
pub mod generate;
mod host;
pub mod ownership;
mod spec;
mod status;
mod verify;

pub use duration::{Duration, DurationError};
pub use host::{FormatHost, FormatHostSpec, HostFormat, MAX_HOST_FORMATS, MAX_HOST_MESSAGE, PodReference};
pub use spec::{
    BuiltinSource, FormatPlugin, FormatPluginSpec, GitRef, GitSource, Limits, LocalSource, OciRef, OciSource,
    SecretReference, Source, SourceKind, UrlSource, parse_memory,
};
pub use status::{
    Artifact, Capabilities, FileDigest, FormatPluginStatus, HostReport, HostsStatus, PluginInfo, Precompiled,
    REQUESTED_AT_ANNOTATION,
};
pub use verify::{SignatureInfo, SignatureProvider, Verification};

/// The syntax of a format key, as a regular expression: lowercase letters and digits
/// in runs joined by single hyphens (`npm`, `unity-package`). Used by the CRD's CEL
/// rules; [`is_valid_format_key`] is the same rule in Rust.
pub const FORMAT_KEY_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

/// Longest format key, so that a key fits in a Kubernetes label value.
pub const FORMAT_KEY_MAX_LEN: usize = 63;

/// Whether `key` is a valid format key (see [`FORMAT_KEY_PATTERN`]).
pub fn is_valid_format_key(key: &str) -> bool {
    key.len() <= FORMAT_KEY_MAX_LEN
        && key
            .split('-')
            .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_keys() {
        for key in ["npm", "unity-package", "a", "p3", "x-1-y"] {
            assert!(is_valid_format_key(key), "{key} should be valid");
        }
        for key in ["", "Npm", "-npm", "npm-", "a--b", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_valid_format_key(key), "{key} should be invalid");
        }
    }
}
