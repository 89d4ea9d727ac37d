//! Shared by the host's integration tests: the example plugins built from
//! `examples/` (built once per test binary) and real package files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wasmplug_formats::test_support::{gzip, tar};
use wasmplug_host::plugin::Package;

/// The package directory of the example plugin `name` (plugin.toml + plugin.wasm),
/// working or broken, built by `examples/build.sh` on first use.
pub fn example_package(name: &str) -> PathBuf {
    static PACKAGES: OnceLock<PathBuf> = OnceLock::new();
    let packages = PACKAGES.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/build.sh");
        let output = Command::new("bash").arg(&script).output().expect("examples/build.sh runs");
        assert!(output.status.success(), "examples/build.sh failed:\n{}", String::from_utf8_lossy(&output.stderr));
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    });
    let broken = packages.with_file_name("broken-packages");
    [packages.join(name), broken.join(name)]
        .into_iter()
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("examples/build.sh built no package {name} in {}", packages.display()))
}

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
