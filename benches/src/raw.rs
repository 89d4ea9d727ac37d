//! The baselines for host overhead: bare wasmtime with the pooling allocator and
//! epoch interruption, instantiating the component and calling `validate` (or
//! `parse-metadata`), with nothing of wasmplug in between — once through the
//! synchronous API with only an epoch deadline (how the host called plugins
//! before the wall-clock limit), once through the async API under a tokio
//! deadline (how it calls them now).

use std::time::Duration;

use wasmplug_host::runtime::Metadata;
use wasmtime::component::{
    Component, ComponentNamedList, Instance, InstancePre, Lift, Linker, Lower, ResourceTable, TypedFunc,
};
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

/// Bare wasmtime, linked once for sync calls and once for async calls.
pub struct Raw {
    engine: Engine,
    sync: InstancePre<State>,
    asynchronous: InstancePre<State>,
    timers: tokio::runtime::Runtime,
}

const HANDLER: &str = "artifact-keeper:format/handler@1.0.0";
/// A deadline far away, in epoch ticks (the engine's epoch never advances here).
const DEADLINE_TICKS: u64 = 1_000_000;

impl Raw {
    pub fn new(wasm: &[u8]) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(PoolingAllocationConfig::default()));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let component = Component::new(&engine, wasm).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut sync = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut sync).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut asynchronous = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut asynchronous).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let timers = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build()?;
        Ok(Raw {
            sync: sync.instantiate_pre(&component).map_err(|e| anyhow::anyhow!("{e:#}"))?,
            asynchronous: asynchronous.instantiate_pre(&component).map_err(|e| anyhow::anyhow!("{e:#}"))?,
            engine,
            timers,
        })
    }

    fn store(&self) -> Store<State> {
        let mut store =
            Store::new(&self.engine, State { wasi: WasiCtx::builder().build(), table: ResourceTable::new() });
        store.set_epoch_deadline(DEADLINE_TICKS);
        store.epoch_deadline_trap();
        store
    }

    /// One fresh instance and one synchronous `validate(path, data)` call.
    pub fn validate(&self, path: &str, data: &[u8]) -> Result<(), String> {
        let mut store = self.store();
        let instance = self.sync.instantiate(&mut store).map_err(|e| e.to_string())?;
        let validate: Validate = handler_func(&mut store, &instance, "validate")?;
        let (answer,) = validate.call(&mut store, (path, data)).map_err(|e| e.to_string())?;
        answer
    }

    /// One fresh instance and one synchronous `parse-metadata(path, data)` call.
    pub fn parse_metadata(&self, path: &str, data: &[u8]) -> Result<Metadata, String> {
        let mut store = self.store();
        let instance = self.sync.instantiate(&mut store).map_err(|e| e.to_string())?;
        let parse: ParseMetadata = handler_func(&mut store, &instance, "parse-metadata")?;
        let (answer,) = parse.call(&mut store, (path, data)).map_err(|e| e.to_string())?;
        answer
    }

    /// The same through the async API, on this thread, under a 5 s deadline
    /// armed only if the call waits (as the host does).
    pub fn validate_async(&self, path: &str, data: &[u8]) -> Result<(), String> {
        let mut store = self.store();
        let call = async {
            let instance = self.asynchronous.instantiate_async(&mut store).await.map_err(|e| e.to_string())?;
            let validate: Validate = handler_func(&mut store, &instance, "validate")?;
            let (answer,) = validate.call_async(&mut store, (path, data)).await.map_err(|e| e.to_string())?;
            answer
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let bounded = async move {
            let mut call = std::pin::pin!(call);
            if let std::task::Poll::Ready(answer) = futures::poll!(call.as_mut()) {
                return Ok(answer);
            }
            tokio::time::timeout_at(deadline, call).await
        };
        self.timers.handle().block_on(bounded).map_err(|_| "deadline passed".to_owned())?
    }
}

type Validate<'a> = TypedFunc<(&'a str, &'a [u8]), (Result<(), String>,)>;
type ParseMetadata<'a> = TypedFunc<(&'a str, &'a [u8]), (Result<Metadata, String>,)>;

/// The handler interface's function `name`, typed.
fn handler_func<P, R>(store: &mut Store<State>, instance: &Instance, name: &str) -> Result<TypedFunc<P, R>, String>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    let interface = instance.get_export_index(&mut *store, None, HANDLER).ok_or("no handler export")?;
    let func = instance.get_export_index(&mut *store, Some(&interface), name).ok_or_else(|| format!("no {name}"))?;
    instance.get_typed_func(&mut *store, func).map_err(|e| e.to_string())
}
