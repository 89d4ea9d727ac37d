//! Formats compiled into the host: the formats of `wasmplug-formats` behind the
//! same [`FormatHandler`] trait as WebAssembly plugins, so the registry and the
//! HTTP layer cannot tell them apart.
//!
//! Each call spends from a fresh [`Budget`]: the call time plugins get (the
//! cluster maximum, or less where a FormatPlugin asks), and the fixed caps of
//! [`wasmplug_formats::Limits`] on what archives may unpack to. Running out of
//! it is a limit error like a plugin's, never a crash of the host.

use std::sync::Arc;

use wasmplug_formats::{Budget, Exceeded, Format, Limits, Refusal};

use crate::handler::{FormatHandler, HandlerError, IndexFiles, SharedHandler};
use crate::registry::{Install, Origin, Registry};
use crate::runtime::{CallError, CallLimits, HttpRequest, HttpResponse, Metadata, RepoContext};

/// The keys of every builtin format.
pub const KEYS: [&str; 7] = wasmplug_formats::KEYS;

/// Whether `key` is a builtin format.
pub fn is_builtin(key: &str) -> bool {
    wasmplug_formats::by_key(key).is_some()
}

/// The builtin handler for `key`, if there is one, whose calls take at most
/// `limits.timeout`.
pub fn handler(key: &str, limits: &CallLimits) -> Option<SharedHandler> {
    let limits = Limits { time: Some(limits.timeout), ..Limits::DEFAULT };
    wasmplug_formats::by_key(key).map(|format| Arc::new(Builtin { format, limits }) as SharedHandler)
}

/// Installs the builtin formats named in `keys` ("all" for every one) into
/// `registry`, enabled, under `limits`.
pub fn install(registry: &Registry, keys: &[String], limits: &CallLimits) -> Result<(), String> {
    let keys: Vec<&str> =
        if keys.iter().any(|k| k == "all") { KEYS.to_vec() } else { keys.iter().map(String::as_str).collect() };
    for key in keys {
        let handler = handler(key, limits)
            .ok_or_else(|| format!("unknown builtin format {key:?}; builtins are: {}", KEYS.join(", ")))?;
        registry.install(Install {
            key: key.to_owned(),
            origin: Origin::Builtin,
            digest: None,
            limits: None,
            compilation: None,
            enabled: true,
            warnings: Vec::new(),
            handler,
        });
    }
    Ok(())
}

/// A compiled-in format and the limits of its calls.
#[derive(Debug)]
pub struct Builtin {
    format: &'static dyn Format,
    limits: Limits,
}

wasmplug_formats::metadata_conversions!(Metadata);

impl Builtin {
    fn budget(&self) -> Budget {
        Budget::new(self.limits)
    }
}

/// A builtin's refusal as the handler error a plugin's would be.
fn handler_error(refusal: Refusal) -> HandlerError {
    match refusal {
        Refusal::Rejected(reason) => HandlerError::Rejected(reason),
        Refusal::Exceeded(Exceeded::Time(limit)) => CallError::Timeout { limit }.into(),
        Refusal::Exceeded(exceeded) => CallError::InputTooLarge { reason: exceeded.to_string() }.into(),
    }
}

impl FormatHandler for Builtin {
    fn parse_metadata(&self, path: &str, data: &[u8]) -> Result<Metadata, HandlerError> {
        self.format.parse_metadata(path, data, &self.budget()).map(to_abi).map_err(handler_error)
    }

    fn validate(&self, path: &str, data: &[u8]) -> Result<(), HandlerError> {
        self.format.validate(path, data, &self.budget()).map_err(handler_error)
    }

    /// A builtin format checks and describes an artifact in one inspection,
    /// so accepting one is extracting its metadata.
    fn accept(&self, path: &str, data: &[u8]) -> Result<Metadata, HandlerError> {
        self.parse_metadata(path, data)
    }

    fn generate_index(&self, artifacts: &[Metadata]) -> Result<Option<IndexFiles>, HandlerError> {
        let budget = self.budget();
        let artifacts: Vec<_> = artifacts.iter().map(from_abi).collect();
        self.format.generate_index(&artifacts, &budget).map_err(handler_error)
    }

    fn handle_request(&self, _: &HttpRequest, _: &RepoContext, _: &[Metadata]) -> Result<HttpResponse, HandlerError> {
        Err(CallError::Unsupported { function: "handle-request" }.into())
    }
}
