//! Where a call's fresh instance comes from.
//!
//! Each call gets a fresh instance from a pooling allocator whose slots keep,
//! zeroed, up to `keep_resident` bytes of what their last call touched, and
//! zero all of those pages again after every later call (the kernel cannot
//! tell a zeroed page from a written one). No one size serves both a small
//! call and a large upload, so there are two pools: the ordinary one, which
//! keeps what a small call touches, and a few slots for calls on inputs larger
//! than that, which keep what a large upload touches. A large call runs in the
//! ordinary pool when every large slot is busy. wasmtime ties a pool to its
//! engine, so each pool has one, and each plugin's native code is loaded into
//! both (docs/performance.md has the numbers).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use super::bindings::{HANDLER_INTERFACE, REQUEST_HANDLER_INTERFACE, handler, request_handler};
use super::check::World;
use super::engine::{self, EngineSettings, PoolShape};
use super::error::LoadError;
use super::reset::MemoryReset;
use super::state::CallState;

/// An engine with its instance pool, and the deny-all WASI linker for it.
pub(super) struct Pool {
    pub(super) engine: Engine,
    linker: Linker<CallState>,
}

impl Pool {
    pub(super) fn new(settings: &EngineSettings, shape: PoolShape, reset: &MemoryReset) -> anyhow::Result<Self> {
        let engine = engine::build(settings, shape, reset)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Ok(Pool { engine, linker })
    }

    /// Links `component` (compiled for this pool's engine) as a `world` plugin.
    pub(super) fn link(&self, component: &Component, world: World) -> Result<Linked, LoadError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::UnsatisfiedImport { reason: format!("{e:#}") })?;
        Linked::new(pre, world)
    }
}

/// A plugin linked in one pool: what a fresh instance of it is made from, and
/// where its exports are.
#[derive(Clone)]
pub(super) struct Linked {
    pub(super) pre: InstancePre<CallState>,
    pub(super) handler: handler::GuestIndices,
    request_handler: Option<request_handler::GuestIndices>,
}

impl Linked {
    fn new(pre: InstancePre<CallState>, world: World) -> Result<Self, LoadError> {
        let handler = handler::GuestIndices::new(&pre)
            .map_err(|e| LoadError::WrongInterface { interface: HANDLER_INTERFACE, reason: format!("{e:#}") })?;
        let request_handler = match world {
            World::FormatPlugin => None,
            World::FormatPluginV2 => Some(request_handler::GuestIndices::new(&pre).map_err(|e| {
                LoadError::WrongInterface { interface: REQUEST_HANDLER_INTERFACE, reason: format!("{e:#}") }
            })?),
        };
        Ok(Linked { pre, handler, request_handler })
    }

    /// Where the request-handler interface is; callers have checked that the
    /// plugin's world has one.
    pub(super) fn request_handler(&self) -> wasmtime::Result<&request_handler::GuestIndices> {
        self.request_handler.as_ref().ok_or_else(|| wasmtime::Error::msg("checked before the call: a v2 plugin"))
    }
}

/// The large-upload pool's free slots, and which calls may take one.
#[derive(Debug)]
pub(super) struct LargeSlots {
    free: Arc<Semaphore>,
    /// Calls on inputs of more bytes than this are large: what an ordinary
    /// slot keeps resident.
    above_bytes: usize,
    metrics: LargeCallMetrics,
}

impl LargeSlots {
    pub(super) fn new(settings: &EngineSettings, large: PoolShape) -> Self {
        let above_bytes = usize::try_from(settings.keep_resident_bytes).unwrap_or(usize::MAX);
        LargeSlots {
            free: Arc::new(Semaphore::new(large.instances as usize)),
            above_bytes,
            metrics: LargeCallMetrics::default(),
        }
    }

    /// A large slot for a call on `input_bytes`, if the input is large and a
    /// slot is free; the call must hold it until its store is dropped.
    pub(super) fn take(&self, input_bytes: usize) -> Option<OwnedSemaphorePermit> {
        if input_bytes <= self.above_bytes {
            return None;
        }
        let slot = self.free.clone().try_acquire_owned().ok();
        self.metrics.count(if slot.is_some() { "large" } else { "ordinary" });
        slot
    }

    pub(super) fn metrics(&self) -> &LargeCallMetrics {
        &self.metrics
    }
}

/// Calls on large inputs by the pool they ran in, for `/metrics`: a call
/// counted under `ordinary` found every large-call slot busy.
#[derive(Debug, Default)]
pub struct LargeCallMetrics {
    calls: Family<PoolLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

impl LargeCallMetrics {
    /// Registers the metrics in `registry` (under its prefix).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "large_calls",
            "Plugin calls on inputs larger than --keep-resident, by the pool they ran in (ordinary: every large-call slot was busy)",
            self.calls.clone(),
        );
    }

    fn count(&self, pool: &'static str) {
        self.calls.get_or_create(&PoolLabels { pool }).inc();
    }
}
