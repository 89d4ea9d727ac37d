//! Shared by the host's integration tests: the example plugins built from
//! `examples/` (built once per test binary) and real package files.

#![allow(dead_code)]

pub mod http;

use wasmplug_host::plugin::Package;

pub use wasmplug_e2e::example_package;

pub fn read_example(name: &str) -> Package {
    Package::read_dir(&example_package(name)).expect("example packages are valid")
}
