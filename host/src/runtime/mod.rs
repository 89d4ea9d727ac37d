//! Running plugins: one wasmtime engine, a deny-all WASI linker, and components
//! compiled once into [`LoadedPlugin`]s that run each call in a fresh instance
//! under its memory, time and fuel limits.

mod bindings;
mod check;
mod engine;
mod error;
mod limits;
mod output;
mod plugin;
mod state;

pub use bindings::{HttpRequest, HttpResponse, Metadata, RepoContext};
pub use check::World;
pub use engine::{EPOCH_TICK, EngineSettings};
pub use error::{CallError, LoadError};
pub use limits::CallLimits;
pub use plugin::LoadedPlugin;
pub use state::MemoryLimitExceeded;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::plugin::Package;
use state::CallState;

/// The process's plugin runtime. Cheap to share behind an `Arc`.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    settings: EngineSettings,
    engine_id: String,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("settings", &self.settings).field("engine_id", &self.engine_id).finish()
    }
}

impl Runtime {
    pub fn new(settings: EngineSettings) -> anyhow::Result<Self> {
        let engine = engine::build(&settings)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let engine_id = engine::identifier(&engine);
        engine::start_epoch_ticker(&engine)?;
        Ok(Runtime { engine, linker, settings, engine_id })
    }

    /// Identifies this engine build and configuration (see [`EngineSettings`]).
    pub fn engine_id(&self) -> &str {
        &self.engine_id
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Compiles `package`'s component and checks that it is a valid plugin for
    /// its manifest: WASI-only imports, a plugin world, and a format key equal to
    /// the manifest's. CPU-heavy: call it off the request path.
    pub fn load(&self, package: &Package, limits: CallLimits) -> Result<LoadedPlugin, LoadError> {
        let component = Component::new(&self.engine, &package.wasm)
            .map_err(|e| LoadError::NotAComponent { reason: format!("{e:#}") })?;
        self.link(component, package, limits)
    }

    /// Compiles `wasm` ahead of time for this engine. The result is valid only for
    /// engines whose [`engine_id`](Self::engine_id) equals this one's.
    pub fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, LoadError> {
        self.engine.precompile_component(wasm).map_err(|e| LoadError::NotAComponent { reason: format!("{e:#}") })
    }

    /// Like [`load`](Self::load), but from `precompiled` bytes made by
    /// [`precompile`](Self::precompile) on an engine identified by `engine_id`.
    /// When that is not this engine, `plugin.wasm` is compiled instead, so a
    /// stale or foreign artifact costs time, never correctness.
    ///
    /// The precompiled bytes must come from a trusted writer (the operator, via
    /// the read-only store): native code in them is not verified.
    pub fn load_precompiled(
        &self,
        package: &Package,
        precompiled: &[u8],
        engine_id: &str,
        limits: CallLimits,
    ) -> Result<LoadedPlugin, LoadError> {
        if engine_id != self.engine_id {
            tracing::info!(
                ours = %self.engine_id, theirs = engine_id,
                "precompiled plugin is for another engine; compiling plugin.wasm"
            );
            return self.load(package, limits);
        }
        // SAFETY: wasmtime requires that the bytes were produced by a compatible
        // `Engine::precompile_component`; it checks the engine compatibility
        // header itself. The caller guarantees the writer is trusted (the
        // operator publishing into the store that hosts mount read-only).
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, precompiled) }
            .map_err(|e| LoadError::NotAComponent { reason: format!("precompiled artifact: {e:#}") })?;
        self.link(component, package, limits)
    }

    fn link(&self, component: Component, package: &Package, limits: CallLimits) -> Result<LoadedPlugin, LoadError> {
        let world = check::world_of(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::UnsatisfiedImport { reason: format!("{e:#}") })?;
        let plugin = LoadedPlugin::new(pre, world, limits, self.settings.fuel_metering)?;
        let key = plugin.format_key().map_err(LoadError::FormatKeyCall)?;
        if key != package.manifest.format_key {
            return Err(LoadError::FormatKeyMismatch { plugin: key, manifest: package.manifest.format_key.clone() });
        }
        Ok(plugin)
    }
}
