//! Shared by the host's integration tests: the example plugins built from
//! `examples/` (built once per test binary) and real package files.

#![allow(dead_code)]

pub mod http;

use wasmplug_formats::test_support::{gzip, tar};
use wasmplug_host::plugin::Package;

pub use wasmplug_e2e::example_package;

pub fn read_example(name: &str) -> Package {
    Package::read_dir(&example_package(name)).expect("example packages are valid")
}

/// A real `.unitypackage`: a gzipped tar of `<guid>/asset`, `<guid>/asset.meta` and
/// `<guid>/pathname` for each `(guid, pathname, contents)`.
pub fn unity_package(assets: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (guid, pathname, contents) in assets {
        files.push((format!("{guid}/asset"), contents.to_vec()));
        files.push((format!("{guid}/asset.meta"), format!("fileFormatVersion: 2\nguid: {guid}\n").into_bytes()));
        files.push((format!("{guid}/pathname"), format!("{pathname}\n").into_bytes()));
    }
    gzip(&tar(&files))
}
