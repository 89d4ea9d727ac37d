//! What a plugin's store holds for one call: a deny-all WASI context, captured
//! output, and the memory limiter.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::CappedOutput;

/// Most host-side resources (streams, pollables, …) one call may hold at once.
/// A plugin needs a handful; each costs host memory outside its linear memory.
pub const MAX_HOST_RESOURCES: usize = 1024;

/// Most random bytes one call may ask the host for at once (WASI's own default
/// is 64 MiB of host memory).
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The data of one call's `Store`.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) stdout: CappedOutput,
    pub(super) stderr: CappedOutput,
}

impl CallState {
    /// No preopened directories, no environment, no arguments, no stdin, no
    /// network; stdout and stderr are captured; host-side resources and random
    /// bytes are capped.
    pub fn new(memory_limit: u64) -> Self {
        let (stdout, stderr) = (CappedOutput::default(), CappedOutput::default());
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        CallState { wasi, table, limiter: MemoryLimiter::new(memory_limit), stdout, stderr }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Raised (as the trap's cause) when a call grows its memory past the limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (wanted {wanted} bytes)")]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub wanted: u64,
}

/// Caps the total linear memory of all memories of one instance.
#[derive(Debug)]
pub(super) struct MemoryLimiter {
    limit: u64,
    in_use: u64,
}

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        MemoryLimiter { limit, in_use: 0 }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let wanted = self.in_use - current as u64 + desired as u64;
        if wanted > self.limit {
            return Err(MemoryLimitExceeded { limit: self.limit, wanted }.into());
        }
        self.in_use = wanted;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's slot size.
        Ok(desired <= 100_000)
    }
}
