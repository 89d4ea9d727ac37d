//! Unity package handler, as a `format-plugin` WebAssembly component.
//!
//! A `.unitypackage` is a gzipped tar of `<guid>/asset`, `<guid>/asset.meta` and
//! `<guid>/pathname` entries (plus an optional `<guid>/preview.png`). This plugin
//! validates that layout, reads the version from the file name or path, and
//! generates an `index.json` listing the repository's packages.

mod archive;
mod index;
mod version;

wit_bindgen::generate!({
    path: "../../wit",
    world: "format-plugin",
});

use exports::artifact_keeper::format::handler::{Guest, Metadata};

const FORMAT_KEY: &str = "unity";
const CONTENT_TYPE: &str = "application/x-unitypackage";
const EXTENSION: &str = ".unitypackage";

struct UnityFormat;

impl Guest for UnityFormat {
    fn format_key() -> String {
        FORMAT_KEY.to_owned()
    }

    fn parse_metadata(path: String, data: Vec<u8>) -> Result<Metadata, String> {
        Self::validate(path.clone(), data.clone())?;
        Ok(Metadata {
            version: version::from_path(&path),
            content_type: CONTENT_TYPE.to_owned(),
            size_bytes: data.len() as u64,
            // The host calculates SHA-256 (natively) when a plugin leaves it
            // out, as Artifact Keeper's host does.
            checksum_sha256: None,
            path,
        })
    }

    fn validate(path: String, data: Vec<u8>) -> Result<(), String> {
        if !path.ends_with(EXTENSION) {
            return Err(format!("path {path:?} must end with {EXTENSION}"));
        }
        let assets = archive::read(&data)?;
        if assets.is_empty() {
            return Err("the package holds no assets".to_owned());
        }
        Ok(())
    }

    fn generate_index(artifacts: Vec<Metadata>) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Ok(Some(vec![("index.json".to_owned(), index::render(&artifacts))]))
    }
}

export!(UnityFormat);
