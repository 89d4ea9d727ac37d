//! The host's builtin npm format as a `format-plugin` component: the same
//! `wasmplug-formats` source, compiled for wasm32-wasip2. It serves under the key
//! `npm-wasm` so that it can run beside the builtin `npm`, and the benchmarks can
//! compare native and WebAssembly on identical work.

wit_bindgen::generate!({
    path: "../../wit",
    world: "format-plugin",
});

use exports::artifact_keeper::format::handler::{Guest, Metadata};
use wasmplug_formats::{Budget, Format, Limits, Npm};

struct NpmFormat;

wasmplug_formats::metadata_conversions!(Metadata);

impl Guest for NpmFormat {
    fn format_key() -> String {
        "npm-wasm".to_owned()
    }

    fn parse_metadata(path: String, data: Vec<u8>) -> Result<Metadata, String> {
        Npm.parse_metadata(&path, &data, &budget()).map(to_abi).map_err(|e| e.to_string())
    }

    fn validate(path: String, data: Vec<u8>) -> Result<(), String> {
        Npm.validate(&path, &data, &budget()).map_err(|e| e.to_string())
    }

    fn generate_index(artifacts: Vec<Metadata>) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        let artifacts: Vec<_> = artifacts.iter().map(from_abi).collect();
        Npm.generate_index(&artifacts, &budget()).map_err(|e| e.to_string())
    }
}

/// What one call may spend inside the plugin; the host bounds its time.
fn budget() -> Budget {
    Budget::new(Limits::IN_PLUGIN)
}

export!(NpmFormat);
