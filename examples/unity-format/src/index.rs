//! `index.json`: every package of a repository, sorted by path.

use serde::Serialize;

use crate::exports::artifact_keeper::format::handler::Metadata;

#[derive(Serialize)]
struct Entry<'a> {
    path: &'a str,
    version: Option<&'a str>,
    size: u64,
    sha256: Option<&'a str>,
}

pub fn render(artifacts: &[Metadata]) -> Vec<u8> {
    let mut entries: Vec<Entry> = artifacts
        .iter()
        .map(|a| Entry {
            path: &a.path,
            version: a.version.as_deref(),
            size: a.size_bytes,
            sha256: a.checksum_sha256.as_deref(),
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(b.path));
    let index = serde_json::json!({ "format": crate::FORMAT_KEY, "packages": entries });
    serde_json::to_vec_pretty(&index).expect("an index of strings and numbers serializes")
}
