//! Running plugins: wasmtime engines with their instance pools, a deny-all
//! WASI linker, and components compiled once into [`LoadedPlugin`]s that run
//! each call in a fresh instance under its memory, time and fuel limits.

mod bindings;
mod check;
mod driver;
mod engine;
mod error;
mod limits;
mod output;
mod plugin;
mod pool;
mod precompiled;
mod reset;
mod state;

pub use bindings::{HttpRequest, HttpResponse, Metadata, RepoContext};
pub use check::World;
pub use engine::{EPOCH_TICK, EngineSettings, MAX_CONCURRENT_LOADS};
pub use error::{CallError, LoadError};
pub use limits::{CallLimits, requested_by};
pub use plugin::LoadedPlugin;
pub use pool::LargeCallMetrics;
pub use precompiled::{Compilation, Precompiled};
pub use reset::MemoryReset;
pub use state::MemoryLimitExceeded;

use std::sync::Arc;

use wasmtime::component::Component;

use crate::plugin::Package;
use driver::Driver;
use pool::{LargeSlots, Pool};

/// The process's plugin runtime. Cheap to share behind an `Arc`.
pub struct Runtime {
    ordinary: Pool,
    /// The large-upload pool, where there is one (see [`pool`]).
    large: Option<(Pool, Arc<LargeSlots>)>,
    settings: EngineSettings,
    reset: MemoryReset,
    engine_id: String,
    driver: Arc<Driver>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("settings", &self.settings).field("engine_id", &self.engine_id).finish()
    }
}

impl Runtime {
    pub fn new(settings: EngineSettings) -> anyhow::Result<Self> {
        let reset = MemoryReset::for_this_process();
        if let MemoryReset::Unmap { reason } = &reset {
            tracing::warn!(
                reason,
                "plugin calls unmap the memory they touched instead of keeping it resident (slower)"
            );
        }
        let ordinary = Pool::new(&settings, settings.ordinary_pool(), &reset)?;
        let engine_id = engine::identifier(&ordinary.engine);
        let large = match settings.large_call_pool(&reset) {
            Some(shape) => {
                let pool = Pool::new(&settings, shape, &reset)?;
                // Each plugin's native code is loaded into both engines.
                anyhow::ensure!(
                    engine::identifier(&pool.engine) == engine_id,
                    "the large-upload pool's engine compiles different code from the ordinary pool's"
                );
                Some((pool, Arc::new(LargeSlots::new(&settings, shape))))
            }
            None => None,
        };
        let engines: Vec<_> =
            std::iter::once(&ordinary.engine).chain(large.as_ref().map(|(pool, _)| &pool.engine)).collect();
        engine::start_epoch_ticker(&engines)?;
        let driver = Arc::new(Driver::new()?);
        Ok(Runtime { ordinary, large, settings, reset, engine_id, driver })
    }

    /// Identifies this engine build and configuration (see [`EngineSettings`]).
    pub fn engine_id(&self) -> &str {
        &self.engine_id
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Where calls on large inputs are counted by the pool they ran in, if
    /// there is a large-call pool.
    pub fn large_call_metrics(&self) -> Option<&LargeCallMetrics> {
        self.large.as_ref().map(|(_, slots)| slots.metrics())
    }

    /// How calls' memory is reset here, and if slowly, why.
    pub fn memory_reset(&self) -> &MemoryReset {
        &self.reset
    }

    /// Compiles `package`'s component and checks that it is a valid plugin for
    /// its manifest: WASI-only imports, a plugin world, and a format key equal to
    /// the manifest's. CPU-heavy: call it off the request path.
    pub fn load(&self, package: &Package, limits: CallLimits) -> Result<LoadedPlugin, LoadError> {
        check::initial_memory_fits(&package.wasm, &limits)?;
        // Compiled once, loaded into each pool's engine.
        self.load_native(package, &self.precompile(&package.wasm)?, limits)
    }

    /// Compiles `wasm` ahead of time for this engine. The result is valid only for
    /// engines whose [`engine_id`](Self::engine_id) equals this one's.
    pub fn precompile(&self, wasm: &[u8]) -> Result<Precompiled, LoadError> {
        let bytes = self
            .ordinary
            .engine
            .precompile_component(wasm)
            .map_err(|e| LoadError::NotAComponent { reason: format!("{e:#}") })?;
        Ok(Precompiled::made_here(bytes))
    }

    /// Like [`load`](Self::load), but from native code made by
    /// [`precompile`](Self::precompile), here or (read back through
    /// [`crate::artifact`]) by the operator for an engine with this engine's
    /// identifier. wasmtime refuses bytes made for another engine build.
    pub fn load_precompiled(
        &self,
        package: &Package,
        precompiled: &Precompiled,
        limits: CallLimits,
    ) -> Result<LoadedPlugin, LoadError> {
        // SAFETY: wasmtime requires bytes produced by a compatible
        // `Engine::precompile_component`, and checks the compatibility header
        // itself. A `Precompiled` holds either bytes this process compiled, or
        // bytes whose SHA-256 equals the digest the operator wrote into the
        // FormatPlugin's status for what it compiled (trust invariant 1); never
        // bytes merely found in the store.
        check::initial_memory_fits(&package.wasm, &limits)?;
        self.load_native(package, precompiled, limits)
    }

    /// Loads `precompiled` into each pool's engine and links it; `package`'s
    /// memory was checked against `limits`.
    fn load_native(
        &self,
        package: &Package,
        precompiled: &Precompiled,
        limits: CallLimits,
    ) -> Result<LoadedPlugin, LoadError> {
        let deserialize = |pool: &Pool| {
            #[allow(unsafe_code)]
            unsafe { Component::deserialize(&pool.engine, precompiled.bytes()) }
                .map_err(|e| LoadError::NotAComponent { reason: format!("precompiled artifact: {e:#}") })
        };
        let component = deserialize(&self.ordinary)?;
        let large = match &self.large {
            Some((pool, _)) => Some(deserialize(pool)?),
            None => None,
        };
        self.link(&component, large.as_ref(), package, limits)
    }

    /// Loads `package` from its precompiled form when there is a usable one, and
    /// otherwise compiles plugin.wasm: a precompiled file that is missing, foreign
    /// or fails its check (`Err` says why) costs time, never correctness. Says
    /// which it did.
    pub fn load_verified(
        &self,
        package: &Package,
        precompiled: Result<Precompiled, String>,
        limits: CallLimits,
    ) -> Result<(LoadedPlugin, Compilation), LoadError> {
        let reason = match precompiled.map(|p| self.load_precompiled(package, &p, limits)) {
            Ok(Ok(plugin)) => return Ok((plugin, Compilation::Precompiled)),
            Ok(Err(error)) => format!("the precompiled file did not load: {error}"),
            Err(reason) => reason,
        };
        tracing::info!(plugin = package.manifest.name, reason, "compiling plugin.wasm on this host");
        let plugin = self.load(package, limits)?;
        Ok((plugin, Compilation::Compiled { reason }))
    }

    /// Links `component` (and the same code loaded into the large-upload
    /// pool's engine, where there is one) and checks its format key.
    fn link(
        &self,
        component: &Component,
        large: Option<&Component>,
        package: &Package,
        limits: CallLimits,
    ) -> Result<LoadedPlugin, LoadError> {
        let world = check::world_of(&self.ordinary.engine, component)?;
        let ordinary = self.ordinary.link(component, world)?;
        let large = match (large, &self.large) {
            (Some(component), Some((pool, slots))) => Some((pool.link(component, world)?, slots.clone())),
            _ => None,
        };
        let plugin =
            LoadedPlugin::new(ordinary, large, world, limits, self.settings.fuel_metering, self.driver.clone());
        let key = plugin.format_key().map_err(LoadError::FormatKeyCall)?;
        if key != package.manifest.format_key {
            return Err(LoadError::FormatKeyMismatch { plugin: key, manifest: package.manifest.format_key.clone() });
        }
        Ok(plugin)
    }
}
