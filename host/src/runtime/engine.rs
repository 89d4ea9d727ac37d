//! The wasmtime Engine: one per process, configured for untrusted plugins.
//!
//! Pooling allocator sized for the concurrency cap, epoch interruption for
//! timeouts, optional fuel metering, and an identifier of the exact engine build
//! and configuration, so that a precompiled plugin is only ever loaded by an
//! engine that can run it.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Plugins loaded at once in one process. Loading calls `format-key`, so the
/// instance pool has this many instances beyond the call slots; loaders (the
/// host's watcher, the operator's validation) must not run more at once.
pub const MAX_CONCURRENT_LOADS: u32 = 4;

/// How much of each linear memory a call leaves resident for the next call on
/// its slot by default (zeroed in place rather than unmapped): what a call on
/// a small artifact touches. Every page kept is zeroed again after every later
/// call on the slot (the kernel cannot tell it from a written one), so more
/// makes large uploads cheaper and every call after one dearer
/// (docs/performance.md).
const KEEP_RESIDENT: u64 = 256 << 10;

/// How much of each table a call leaves resident (tables are a few KiB).
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// How often the epoch advances; timeouts are measured in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Engine settings. All but `keep_resident_bytes` must be equal for a
/// precompiled plugin to be usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// The largest linear memory any plugin may have (the cluster maximum).
    pub max_memory_bytes: u64,
    /// How many calls may run at once; sizes the instance pool.
    pub max_concurrent_calls: u32,
    /// Whether calls are fuel-metered (needed for any fuel limit; costs speed).
    pub fuel_metering: bool,
    /// How much of a linear memory a call dirtied stays resident, zeroed, for
    /// the next call on its slot (where the kernel can tell which pages were
    /// dirtied); calls on artifacts that fit in it fault in no fresh pages.
    /// Costs up to this much memory per warm slot; does not change compiled code.
    pub keep_resident_bytes: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_memory_bytes: 64 << 20,
            max_concurrent_calls: 64,
            fuel_metering: false,
            keep_resident_bytes: KEEP_RESIDENT,
        }
    }
}

/// Builds the engine. Precompilation and loading must use engines built from
/// equal settings.
pub fn build(settings: &EngineSettings) -> anyhow::Result<Engine> {
    let max_memory = usize::try_from(settings.max_memory_bytes)?;
    let keep_resident = usize::try_from(settings.keep_resident_bytes)?.min(max_memory);
    let calls = settings.max_concurrent_calls.max(1) + MAX_CONCURRENT_LOADS;
    // A Rust wasm32-wasip2 component has a handful of core instances (the
    // program and the WASI adapter's shims); leave room for more.
    const CORE_INSTANCES_PER_CALL: u32 = 16;
    const MEMORIES_PER_CALL: u32 = 4;
    const TABLES_PER_CALL: u32 = 8;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(calls)
        .total_core_instances(calls * CORE_INSTANCES_PER_CALL)
        .max_core_instances_per_component(CORE_INSTANCES_PER_CALL)
        .total_memories(calls * MEMORIES_PER_CALL)
        .max_memories_per_component(MEMORIES_PER_CALL)
        .total_tables(calls * TABLES_PER_CALL)
        .max_tables_per_component(TABLES_PER_CALL)
        .max_memory_size(max_memory)
        .total_stacks(calls)
        .max_unused_warm_slots(calls);
    // A fresh instance per call, made cheap: where the kernel can say which
    // pages a call dirtied (PAGEMAP_SCAN, Linux 6.7+), those of the first
    // keep_resident bytes of each memory (and 1 MiB of each table) are zeroed
    // in place instead of unmapped and faulted in again by the next call.
    // Elsewhere all of it would be zeroed after every call, which costs more
    // than it saves. At most as many slots as instances may be live at once
    // stay warm between calls, so an idle host keeps at most that many times
    // keep_resident of plugin memory (docs/performance.md has the numbers).
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
    }

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(settings.fuel_metering)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| anyhow::anyhow!("failed to build the wasmtime engine: {e:#}"))
}

/// Identifies the engine build and configuration, e.g.
/// `wasmtime-x86_64-9c1e…` (the hash covers the wasmtime version and settings). Equal identifiers mean a component precompiled by
/// one engine can be loaded by the other.
pub fn identifier(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("wasmtime-{}-{:016x}", std::env::consts::ARCH, hasher.finish())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as the engine
/// lives: the thread holds only a weak reference and ends with the last clone of
/// the engine (plugins keep it alive, so their deadlines keep working).
pub fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new().name("wasmplug-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    })?;
    Ok(())
}

/// The epoch deadline, in ticks, for a call that may take `timeout`.
pub fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}
