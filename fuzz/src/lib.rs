//! Fuzz targets: each takes arbitrary bytes, feeds them to one parser that
//! reads anonymous input, and panics only when that parser breaks an invariant
//! (or panics itself). The same functions run under libFuzzer (`fuzz/libfuzzer/`, nightly,
//! `fuzz/run.sh`) and, on stable, in this crate's tests, which replay the
//! committed corpora in `fuzz/corpus/<target>/` and a bounded number of
//! seeded mutations of them (the short run in CI).
//!
//! Input layouts are documented per target; `src/bin/seeds.rs` writes seeds in
//! them.

use wasmplug_formats::{Budget, Limits, Metadata, Refusal};
use wasmplug_host::plugin::Manifest;
use wasmplug_host::server::wire::{RequestCall, path_param};

/// A fuzz target: arbitrary bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus directory and libFuzzer binary.
pub const TARGETS: [(&str, Target); 5] = [
    ("builtin", builtin),
    ("builtin_index", builtin_index),
    ("manifest", manifest),
    ("wire_request", wire_request),
    ("wire_query", wire_query),
];

/// The builtin format a first byte selects.
fn format_of(selector: u8) -> &'static str {
    let keys = wasmplug_formats::KEYS;
    keys[usize::from(selector) % keys.len()]
}

/// An input of the `builtin` target: the format's key, the artifact's path and
/// bytes (`[format selector][artifact path]\n[artifact bytes]`).
pub fn builtin_input(data: &[u8]) -> Option<(&'static str, String, &[u8])> {
    let (&selector, rest) = data.split_first()?;
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    Some((format_of(selector), String::from_utf8_lossy(path).into_owned(), body))
}

/// Validation and metadata extraction by one builtin format.
pub fn builtin(data: &[u8]) {
    let Some((key, path, body)) = builtin_input(data) else { return };
    let format = wasmplug_formats::by_key(key).expect("every key has a format");
    let validated = format.validate(&path, body, &Budget::new(Limits::DEFAULT));
    let described = format.parse_metadata(&path, body, &Budget::new(Limits::DEFAULT));
    match (&validated, &described) {
        (Ok(()), Ok(metadata)) => {
            assert_eq!(metadata.size_bytes, body.len() as u64, "{key}: the size is the artifact's");
            assert_eq!(metadata.path, path, "{key}: the path is the artifact's");
        }
        (Err(Refusal::Exceeded(_)), _) | (_, Err(Refusal::Exceeded(_))) => {}
        (Err(a), Err(b)) => assert_eq!(a, b, "{key}: validation and metadata agree"),
        _ => panic!("{key}: validation ({validated:?}) and metadata ({described:?}) disagree"),
    }
}

/// `[format selector][JSON list of metadata]`: index generation.
pub fn builtin_index(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(artifacts) = serde_json::from_slice::<Vec<Metadata>>(rest) else { return };
    let format = wasmplug_formats::by_key(format_of(selector)).expect("every key has a format");
    let _ = format.generate_index(&artifacts, &Budget::new(Limits::DEFAULT));
}

/// A plugin.toml.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(manifest) = Manifest::parse(text) {
        assert!(wasmplug_crds::is_valid_format_key(&manifest.name), "{:?}", manifest.name);
        assert!(wasmplug_crds::is_valid_format_key(&manifest.format_key), "{:?}", manifest.format_key);
    }
}

/// The body of `POST /v1/formats/{key}/request`.
pub fn wire_request(data: &[u8]) {
    let _ = RequestCall::parse(data);
}

/// A query string, for `?path=`.
pub fn wire_query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    if let Ok(Some(path)) = path_param(Some(&query)) {
        assert!(query.contains("path"), "a path parameter came from nowhere: {query:?}");
        let _ = path;
    }
}
