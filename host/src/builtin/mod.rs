//! Formats compiled into the host: the formats of `wasmplug-formats` behind the
//! same [`FormatHandler`] trait as WebAssembly plugins, so the registry and the
//! HTTP layer cannot tell them apart.

use std::sync::Arc;

use wasmplug_formats::Format;

use crate::handler::{FormatHandler, HandlerError, IndexFiles, SharedHandler};
use crate::registry::{Install, Origin, Registry};
use crate::runtime::{CallError, HttpRequest, HttpResponse, Metadata, RepoContext};

/// The keys of every builtin format.
pub const KEYS: [&str; 7] = wasmplug_formats::KEYS;

/// The builtin handler for `key`, if there is one.
pub fn handler(key: &str) -> Option<SharedHandler> {
    wasmplug_formats::by_key(key).map(|format| Arc::new(Builtin(format)) as SharedHandler)
}

/// Installs the builtin formats named in `keys` ("all" for every one) into
/// `registry`, enabled.
pub fn install(registry: &Registry, keys: &[String]) -> Result<(), String> {
    let keys: Vec<&str> =
        if keys.iter().any(|k| k == "all") { KEYS.to_vec() } else { keys.iter().map(String::as_str).collect() };
    for key in keys {
        let handler =
            handler(key).ok_or_else(|| format!("unknown builtin format {key:?}; builtins are: {}", KEYS.join(", ")))?;
        registry.install(Install {
            key: key.to_owned(),
            origin: Origin::Builtin,
            digest: None,
            limits: None,
            compilation: None,
            enabled: true,
            handler,
        });
    }
    Ok(())
}

/// A compiled-in format.
#[derive(Debug)]
pub struct Builtin(&'static dyn Format);

wasmplug_formats::metadata_conversions!(Metadata);

impl FormatHandler for Builtin {
    fn parse_metadata(&self, path: &str, data: &[u8]) -> Result<Metadata, HandlerError> {
        self.0.parse_metadata(path, data).map(to_abi).map_err(HandlerError::Rejected)
    }

    fn validate(&self, path: &str, data: &[u8]) -> Result<(), HandlerError> {
        self.0.validate(path, data).map_err(HandlerError::Rejected)
    }

    fn generate_index(&self, artifacts: &[Metadata]) -> Result<Option<IndexFiles>, HandlerError> {
        let artifacts: Vec<_> = artifacts.iter().map(from_abi).collect();
        self.0.generate_index(&artifacts).map_err(HandlerError::Rejected)
    }

    fn handle_request(&self, _: &HttpRequest, _: &RepoContext, _: &[Metadata]) -> Result<HttpResponse, HandlerError> {
        Err(CallError::Unsupported { function: "handle-request" }.into())
    }
}
