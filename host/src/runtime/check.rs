//! What a component must import and export to be a format plugin, and whether
//! its memory fits the limit it is granted, decided before anything runs.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{HANDLER_INTERFACE, REQUEST_HANDLER_INTERFACE};
use super::error::LoadError;
use super::limits::CallLimits;

/// Which plugin world a component implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `format-plugin`: the handler interface.
    FormatPlugin,
    /// `format-plugin-v2`: the handler and request-handler interfaces.
    FormatPluginV2,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::FormatPlugin => "format-plugin",
            World::FormatPluginV2 => "format-plugin-v2",
        }
    }
}

/// Checks the imports against the allow-list (WASI only) and finds the world from
/// the exports.
pub fn world_of(engine: &Engine, component: &Component) -> Result<World, LoadError> {
    let ty = component.component_type();
    if let Some((import, _)) = ty.imports(engine).find(|(name, _)| !name.starts_with("wasi:")) {
        return Err(LoadError::ForbiddenImport { import: import.to_owned() });
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    if !exports.contains(&HANDLER_INTERFACE) {
        let found = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
        return Err(LoadError::MissingHandler { expected: HANDLER_INTERFACE, found });
    }
    Ok(if exports.contains(&REQUEST_HANDLER_INTERFACE) { World::FormatPluginV2 } else { World::FormatPlugin })
}

/// Refuses a component whose core modules' memories start larger, together,
/// than `limits` allow: no instance of it could be made. Checked on
/// plugin.wasm before it is compiled or its native code loaded, so the answer
/// is the same whatever the engine's pool holds.
pub fn initial_memory_fits(wasm: &[u8], limits: &CallLimits) -> Result<(), LoadError> {
    let initial_bytes = initial_memory_bytes(wasm).map_err(|e| LoadError::NotAComponent { reason: e.to_string() })?;
    match initial_bytes > limits.memory_bytes {
        true => Err(LoadError::InitialMemoryTooLarge { initial_bytes, limit_bytes: limits.memory_bytes }),
        false => Ok(()),
    }
}

/// The initial sizes of the linear memories the component's core modules
/// define, added up.
fn initial_memory_bytes(wasm: &[u8]) -> Result<u64, wasmparser::BinaryReaderError> {
    let mut total = 0u64;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::MemorySection(memories) = payload? {
            for memory in memories {
                let memory = memory?;
                let page_bytes = 1u64 << memory.page_size_log2.unwrap_or(16);
                total = total.saturating_add(memory.initial.saturating_mul(page_bytes));
            }
        }
    }
    Ok(total)
}
