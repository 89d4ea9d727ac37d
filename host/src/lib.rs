//! The wasmplug host: what a valid plugin is, how plugins run, and (as it grows)
//! the registry that hot-swaps them and the HTTP server in front of it.
//!
//! [`plugin`] is the single definition of a valid plugin package; the operator uses
//! it too, so a package the operator publishes is one every host can load.

pub mod artifact;
pub mod builtin;
pub mod cli;
pub mod download;
pub mod format_host;
pub mod handler;
pub mod local;
pub mod plugin;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod untrusted_file;
pub mod watch;
