//! The baseline for host overhead: bare wasmtime, pooling allocator, instantiate
//! the component and call `validate`, with nothing of wasmplug in between.

use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

pub struct Raw {
    engine: Engine,
    pre: InstancePre<State>,
}

const HANDLER: &str = "artifact-keeper:format/handler@1.0.0";

impl Raw {
    pub fn new(wasm: &[u8]) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(PoolingAllocationConfig::default()));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let component = Component::new(&engine, wasm).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Raw { engine, pre })
    }

    /// One fresh instance and one `validate(path, data)` call.
    pub fn validate(&self, path: &str, data: &[u8]) -> Result<(), String> {
        let mut store =
            Store::new(&self.engine, State { wasi: WasiCtx::builder().build(), table: ResourceTable::new() });
        let instance = self.pre.instantiate(&mut store).map_err(|e| e.to_string())?;
        let interface = instance.get_export_index(&mut store, None, HANDLER).ok_or("no handler export")?;
        let func = instance.get_export_index(&mut store, Some(&interface), "validate").ok_or("no validate")?;
        let validate = instance
            .get_typed_func::<(&str, &[u8]), (Result<(), String>,)>(&mut store, &func)
            .map_err(|e| e.to_string())?;
        let (answer,) = validate.call(&mut store, (path, data)).map_err(|e| e.to_string())?;
        answer
    }
}
