//! What a plugin's store holds for one call: a deny-all WASI context, captured
//! output, and the memory limiter.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::CappedOutput;

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
    /// network; stdout and stderr are captured.
    pub fn new(memory_limit: u64) -> Self {
        let (stdout, stderr) = (CappedOutput::default(), CappedOutput::default());
        let wasi = WasiCtx::builder().stdout(stdout.clone()).stderr(stderr.clone()).allow_ip_name_lookup(false).build();
        CallState { wasi, table: ResourceTable::new(), limiter: MemoryLimiter::new(memory_limit), stdout, stderr }
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
