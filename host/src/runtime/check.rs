//! What a component must import and export to be a format plugin, decided from its
//! type alone (before anything runs).

use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{HANDLER_INTERFACE, REQUEST_HANDLER_INTERFACE};
use super::error::LoadError;

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
