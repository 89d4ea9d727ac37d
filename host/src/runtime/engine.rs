//! The wasmtime engines, configured for untrusted plugins: one per instance
//! pool (wasmtime ties a pooling allocator to its engine), all compiling the
//! same code.
//!
//! Pooling allocator sized for its calls, epoch interruption for timeouts,
//! optional fuel metering, and an identifier of the exact engine build and
//! configuration, so that a precompiled plugin is only ever loaded by an engine
//! that can run it.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::reset::MemoryReset;

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

/// Slots of the large-upload pool by default: large uploads are rarer than
/// small calls, and each warm slot may keep [`LARGE_KEEP_RESIDENT`].
const LARGE_CALL_SLOTS: u32 = 2;

/// What a large-upload slot keeps resident by default: what a call on a
/// 10 MiB artifact touches.
const LARGE_KEEP_RESIDENT: u64 = 16 << 20;

/// How much of each table a call leaves resident (tables are a few KiB).
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// How often the epoch advances; timeouts are measured in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Engine settings. All but the pools' sizes (`keep_resident_bytes` and the
/// `large_*` settings) must be equal for a precompiled plugin to be usable.
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
    /// Calls on an input larger than `keep_resident_bytes` run, while one of
    /// these slots is free, in a pool of their own whose slots keep
    /// `large_keep_resident_bytes`; so a small call never zeroes what a large
    /// one left. 0: every call runs in the one pool.
    pub large_call_slots: u32,
    /// What each slot of the large-upload pool keeps resident.
    pub large_keep_resident_bytes: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_memory_bytes: 64 << 20,
            max_concurrent_calls: 64,
            fuel_metering: false,
            keep_resident_bytes: KEEP_RESIDENT,
            large_call_slots: LARGE_CALL_SLOTS,
            large_keep_resident_bytes: LARGE_KEEP_RESIDENT,
        }
    }
}

/// The instance pool of one engine: how many instances it holds at once, and
/// how much of each memory a call leaves resident for the next.
#[derive(Clone, Copy, Debug)]
pub struct PoolShape {
    pub instances: u32,
    pub keep_resident_bytes: u64,
}

impl EngineSettings {
    /// The pool every call may run in: the call slots and the load slots.
    pub fn ordinary_pool(&self) -> PoolShape {
        PoolShape {
            instances: self.max_concurrent_calls.max(1) + MAX_CONCURRENT_LOADS,
            keep_resident_bytes: self.keep_resident_bytes,
        }
    }

    /// The pool of large uploads, if there is one: only where slots keep
    /// memory resident (with `reset`), since that is all it changes.
    pub fn large_call_pool(&self, reset: &MemoryReset) -> Option<PoolShape> {
        (self.large_call_slots > 0 && *reset == MemoryReset::PageScan).then_some(PoolShape {
            instances: self.large_call_slots,
            keep_resident_bytes: self.large_keep_resident_bytes,
        })
    }
}

/// Builds an engine with the pool `shape`, resetting memory with `reset`.
/// Precompilation and loading must use engines built from equal settings (the
/// shape and the reset change no compiled code).
pub fn build(settings: &EngineSettings, shape: PoolShape, reset: &MemoryReset) -> anyhow::Result<Engine> {
    let max_memory = usize::try_from(settings.max_memory_bytes)?;
    let keep_resident = usize::try_from(shape.keep_resident_bytes)?.min(max_memory);
    let calls = shape.instances;
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
    // pages a call dirtied (PAGEMAP_SCAN, Linux 6.7+) and none can be in swap
    // (`MemoryReset`), those of the first keep_resident bytes of each memory
    // (and 1 MiB of each table) are zeroed in place instead of unmapped and
    // faulted in again by the next call. Elsewhere all of it would be zeroed
    // after every call, which costs more than it saves. At most as many slots
    // as instances may be live at once stay warm between calls, so an idle
    // host keeps at most that many times keep_resident of plugin memory
    // (docs/performance.md has the numbers).
    if *reset == MemoryReset::PageScan {
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

/// Advances the engines' epochs every [`EPOCH_TICK`] for as long as any of
/// them lives: the thread holds only weak references and ends with the last
/// clone of the last engine (plugins keep theirs alive, so their deadlines
/// keep working).
pub fn start_epoch_ticker(engines: &[&Engine]) -> std::io::Result<()> {
    let engines: Vec<_> = engines.iter().map(|engine| engine.weak()).collect();
    std::thread::Builder::new().name("wasmplug-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            let mut alive = false;
            for engine in engines.iter().filter_map(|engine| engine.upgrade()) {
                engine.increment_epoch();
                alive = true;
            }
            if !alive {
                break;
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
