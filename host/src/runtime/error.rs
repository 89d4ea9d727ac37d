//! How loading a plugin and calling it can fail.
//!
//! A guest failure is data: it becomes a [`CallError`] for that one call, which
//! the HTTP layer maps to a status code and a stable error code.

use std::time::Duration;

/// Why a component is not a valid plugin. These are permanent: the package must
/// change.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to compile plugin.wasm: it is not a valid WebAssembly component ({reason})")]
    NotAComponent { reason: String },
    #[error(
        "plugin.wasm imports `{import}`, which is outside WASI 0.2 and the format-plugin worlds; \
         plugins may import only wasi:* interfaces"
    )]
    ForbiddenImport { import: String },
    #[error(
        "plugin.wasm's linear memory starts at {initial_bytes} bytes, more than the memory limit of \
         {limit_bytes} bytes it is granted, so no call could run: link it with a smaller initial memory \
         (`--initial-memory` in its .cargo/config.toml), or raise the limit (max_memory_bytes in \
         plugin.toml's [resources], and spec.limits.memory if set) within the cluster's maximum"
    )]
    InitialMemoryTooLarge { initial_bytes: u64, limit_bytes: u64 },
    #[error("plugin.wasm needs an import this host does not provide: {reason}")]
    UnsatisfiedImport { reason: String },
    #[error(
        "plugin.wasm does not export `{expected}`; a format plugin must target the world \
         format-plugin or format-plugin-v2 of artifact-keeper:format@1.0.0 (it exports: {found})"
    )]
    MissingHandler { expected: &'static str, found: String },
    #[error("plugin.wasm exports `{interface}` with the wrong shape: {reason}")]
    WrongInterface { interface: &'static str, reason: String },
    #[error("plugin.wasm says its format key is {plugin:?} but plugin.toml says {manifest:?}; make them equal")]
    FormatKeyMismatch { plugin: String, manifest: String },
    #[error("failed to call format-key while validating the plugin: {0}")]
    FormatKeyCall(#[source] CallError),
}

/// Why one call into a plugin failed (the plugin's own `Err` answers are not
/// errors here; they are the call's result).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallError {
    #[error("plugin crashed: {message}")]
    Crashed { message: String },
    #[error("plugin exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: u64 },
    #[error("plugin exceeded its time limit of {limit:?}")]
    Timeout { limit: Duration },
    #[error("plugin exceeded its fuel limit of {limit}")]
    FuelExhausted { limit: u64 },
    #[error("plugin exceeded the limit of {limit} host resources (streams, pollables) held at once")]
    HostResourceLimit { limit: usize },
    #[error("the input is too large to inspect: {reason}")]
    InputTooLarge { reason: String },
    #[error("plugin does not implement {function} (it targets the world format-plugin)")]
    Unsupported { function: &'static str },
}

impl CallError {
    /// A stable, low-cardinality name, for metrics and error codes.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Crashed { .. } => "crashed",
            CallError::MemoryLimit { .. } => "memory_limit",
            CallError::Timeout { .. } => "time_limit",
            CallError::FuelExhausted { .. } => "fuel_limit",
            CallError::HostResourceLimit { .. } => "resource_limit",
            CallError::InputTooLarge { .. } => "input_too_large",
            CallError::Unsupported { .. } => "unsupported",
        }
    }

    /// Whether the failure was an exceeded limit (these count towards quarantine).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CallError::MemoryLimit { .. }
                | CallError::Timeout { .. }
                | CallError::FuelExhausted { .. }
                | CallError::HostResourceLimit { .. }
        )
    }
}
