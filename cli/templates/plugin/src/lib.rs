//! The `{{key}}` format, as a wasmplug plugin: an Artifact Keeper format
//! plugin, built as a WebAssembly component for wasm32-wasip2.
//!
//! A `{{extension}}` artifact starts with a header of `Field: value` lines (Name and
//! Version required), then a blank line, then anything; it is stored as
//! `<name>-<version>{{extension}}`. Put your format's own rules in `header.rs`
//! (or beside it) and keep this file's shape.

mod header;
{{request_module}}
wit_bindgen::generate!({
    path: "wit",
    world: "{{world}}",
});

use exports::artifact_keeper::format::handler::{Guest, Metadata};

/// Must equal `[format].key` in plugin.toml.
const FORMAT_KEY: &str = "{{key}}";
/// What artifact paths end with.
const EXTENSION: &str = "{{extension}}";
/// The MIME type artifacts are served with.
const CONTENT_TYPE: &str = "{{content_type}}";

struct Plugin;

impl Guest for Plugin {
    fn format_key() -> String {
        FORMAT_KEY.to_owned()
    }

    fn parse_metadata(path: String, data: Vec<u8>) -> Result<Metadata, String> {
        let header = header::check(&path, &data)?;
        Ok(Metadata {
            path,
            version: Some(header.version),
            content_type: CONTENT_TYPE.to_owned(),
            size_bytes: data.len() as u64,
            // Left out: the host computes the SHA-256, natively.
            checksum_sha256: None,
        })
    }

    fn validate(path: String, data: Vec<u8>) -> Result<(), String> {
        header::check(&path, &data).map(drop)
    }

    fn generate_index(artifacts: Vec<Metadata>) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Ok(Some(vec![("index.json".to_owned(), index(&artifacts))]))
    }
}

/// index.json: the path, version, size and SHA-256 of every artifact.
fn index(artifacts: &[Metadata]) -> Vec<u8> {
    let artifacts: Vec<serde_json::Value> = artifacts
        .iter()
        .map(|artifact| {
            serde_json::json!({
                "path": artifact.path,
                "version": artifact.version,
                "size": artifact.size_bytes,
                "sha256": artifact.checksum_sha256,
            })
        })
        .collect();
    let index = serde_json::json!({ "format": FORMAT_KEY, "artifacts": artifacts });
    serde_json::to_vec_pretty(&index).unwrap_or_default()
}

export!(Plugin);
