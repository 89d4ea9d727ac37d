//! A compiled, linked plugin, and one call into it: a fresh instance from the
//! pool, a store with the call's limits, run under its deadline by the
//! [`Driver`], the guest's output logged afterwards, and every failure turned
//! into a [`CallError`].

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::{Instance, ResourceTableError};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{HttpRequest, HttpResponse, Metadata, RepoContext, handler};
use super::check::World;
use super::driver::{Driver, within};
use super::engine::deadline_ticks;
use super::error::CallError;
use super::limits::CallLimits;
use super::pool::{LargeSlots, Linked};
use super::state::{CallState, MAX_HOST_RESOURCES, MemoryLimitExceeded};
use crate::handler::{Answer, Call, IndexFiles};

/// A plugin ready to serve. Cloning is cheap; calls may run concurrently.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Linked in the ordinary pool, where every call may run.
    ordinary: Linked,
    /// Linked in the large-upload pool, where there is one.
    large: Option<(Linked, Arc<LargeSlots>)>,
    world: World,
    limits: CallLimits,
    /// Whether the engine meters fuel; then every store needs some.
    fuel_metered: bool,
    driver: Arc<Driver>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("world", &self.world).field("limits", &self.limits).finish()
    }
}

impl LoadedPlugin {
    pub(super) fn new(
        ordinary: Linked,
        large: Option<(Linked, Arc<LargeSlots>)>,
        world: World,
        limits: CallLimits,
        fuel_metered: bool,
        driver: Arc<Driver>,
    ) -> Self {
        LoadedPlugin { ordinary, large, world, limits, fuel_metered, driver }
    }

    pub fn world(&self) -> World {
        self.world
    }

    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    pub fn format_key(&self) -> Result<String, CallError> {
        self.call_handler(0, async |guest, store| guest.call_format_key(store).await)
    }

    pub fn parse_metadata(&self, path: &str, data: &[u8]) -> Result<Result<Metadata, String>, CallError> {
        self.call_handler(data.len(), async |guest, store| guest.call_parse_metadata(store, path, data).await)
    }

    pub fn validate(&self, path: &str, data: &[u8]) -> Result<Result<(), String>, CallError> {
        self.call_handler(data.len(), async |guest, store| guest.call_validate(store, path, data).await)
    }

    /// `validate`, then — when it accepts — `parse-metadata`, on one fresh
    /// instance: both calls are for the same caller and the same artifact, so
    /// nothing crosses callers, and the instance and the copy of the artifact
    /// are paid for once less than by two calls.
    pub fn accept(&self, path: &str, data: &[u8]) -> Result<Result<Metadata, String>, CallError> {
        self.call_handler(data.len(), async |guest, store| accept(guest, store, path, data).await)
    }

    pub fn generate_index(&self, artifacts: &[Metadata]) -> Result<Result<Option<IndexFiles>, String>, CallError> {
        self.call_handler(0, async |guest, store| guest.call_generate_index(store, artifacts).await)
    }

    pub fn handle_request(
        &self,
        request: &HttpRequest,
        context: &RepoContext,
        artifacts: &[Metadata],
    ) -> Result<Result<HttpResponse, String>, CallError> {
        let call = Call::Request { request, context, artifacts };
        self.supports(&call)?;
        self.call(call.input_bytes(), async |store, instance, linked| {
            let guest = linked.request_handler()?.load(&mut *store, instance)?;
            guest.call_handle_request(store, request, context, artifacts).await
        })
    }

    fn call_handler<R>(
        &self,
        input_bytes: usize,
        f: impl AsyncFnOnce(&handler::Guest, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.call(input_bytes, async |store, instance, linked| {
            let guest = linked.handler.load(&mut *store, instance)?;
            f(&guest, store).await
        })
    }

    /// One call from an async task, run as a future on that task's thread
    /// instead of taking a blocking thread: the same fresh instance and limits
    /// as the blocking calls, and a computing guest yields to the executor at
    /// every epoch tick, so it holds the thread at most one tick at a time.
    /// Needs a tokio runtime with timers.
    pub async fn answer(&self, call: Call<'_>) -> Result<Result<Answer, String>, CallError> {
        self.supports(&call)?;
        let (linked, _large_slot) = self.pool_for(call.input_bytes());
        let mut store = self.store(linked)?;
        let run = instantiate_and(linked, &mut store, async |store, instance, linked| {
            // Every world exports the handler interface.
            let guest = linked.handler.load(&mut *store, instance)?;
            Ok(match call {
                Call::Metadata { path, data } => {
                    guest.call_parse_metadata(store, path, data).await?.map(Answer::Metadata)
                }
                Call::Validate { path, data } => guest.call_validate(store, path, data).await?.map(|()| Answer::Valid),
                Call::Accept { path, data } => accept(&guest, store, path, data).await?.map(Answer::Metadata),
                Call::Index(artifacts) => guest.call_generate_index(store, artifacts).await?.map(Answer::Index),
                Call::Request { request, context, artifacts } => {
                    let guest = linked.request_handler()?.load(&mut *store, instance)?;
                    guest.call_handle_request(store, request, context, artifacts).await?.map(Answer::Response)
                }
            })
        });
        let outcome = within(self.limits.timeout, run).await;
        self.finish(&store, outcome)
    }

    /// Refuses a call of a function this plugin's world lacks.
    fn supports(&self, call: &Call<'_>) -> Result<(), CallError> {
        match (call, self.world) {
            (Call::Request { .. }, World::FormatPlugin) => Err(CallError::Unsupported { function: "handle-request" }),
            _ => Ok(()),
        }
    }

    /// Where a call on `input_bytes` runs: in a large-upload slot when the
    /// input is large and one is free (held until the call's store is
    /// dropped: declare it before the store), otherwise in the ordinary pool.
    fn pool_for(&self, input_bytes: usize) -> (&Linked, Option<OwnedSemaphorePermit>) {
        if let Some((linked, slots)) = &self.large
            && let Some(slot) = slots.take(input_bytes)
        {
            return (linked, Some(slot));
        }
        (&self.ordinary, None)
    }

    /// Runs `f` against a fresh instance under this plugin's limits, blocking
    /// this thread (the driver keeps the deadline).
    fn call<R>(
        &self,
        input_bytes: usize,
        f: impl AsyncFnOnce(&mut Store<CallState>, &Instance, &Linked) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let (linked, _large_slot) = self.pool_for(input_bytes);
        let mut store = self.store(linked)?;
        let outcome = self.driver.run(self.limits.timeout, instantiate_and(linked, &mut store, f));
        self.finish(&store, outcome)
    }

    /// A store for one call on `linked`'s engine under this plugin's limits:
    /// memory by the store's limiter; computation by epoch ticks, at each of
    /// which the guest yields to the executor until its ticks run out (then it
    /// traps); fuel where the engine meters it. The wall-clock limit, waiting
    /// in WASI included, is the caller's deadline on the call's future.
    fn store(&self, linked: &Linked) -> Result<Store<CallState>, CallError> {
        let mut store = Store::new(linked.pre.engine(), CallState::new(self.limits.memory_bytes));
        store.limiter(|state| &mut state.limiter);
        let mut ticks_left = deadline_ticks(self.limits.timeout);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            ticks_left = ticks_left.saturating_sub(1);
            Ok(match ticks_left {
                0 => UpdateDeadline::Interrupt,
                // tokio's own yield lets the worker run its other tasks and
                // poll for I/O before it resumes this one (a plain wake-up
                // would run it again at once).
                _ => UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())),
            })
        });
        if self.fuel_metered {
            let fuel = self.limits.fuel.unwrap_or(u64::MAX);
            store.set_fuel(fuel).map_err(|e| CallError::Crashed { message: format!("failed to set fuel: {e}") })?;
        }
        Ok(store)
    }

    /// Logs the guest's output and turns the outcome (`None`: the wall-clock
    /// limit passed) into the call's result.
    fn finish<R>(&self, store: &Store<CallState>, outcome: Option<wasmtime::Result<R>>) -> Result<R, CallError> {
        let stderr = log_output(store);
        match outcome {
            Some(result) => result.map_err(|error| classify(&error, &self.limits, &stderr)),
            None => Err(CallError::Timeout { limit: self.limits.timeout }),
        }
    }
}

/// A fresh instance of `linked` in `store`, then `f` on it.
async fn instantiate_and<R>(
    linked: &Linked,
    store: &mut Store<CallState>,
    f: impl AsyncFnOnce(&mut Store<CallState>, &Instance, &Linked) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let instance = linked.pre.instantiate_async(&mut *store).await?;
    f(store, &instance, linked).await
}

/// `validate`, then — when it accepts — `parse-metadata`, on one instance.
async fn accept(
    guest: &handler::Guest,
    store: &mut Store<CallState>,
    path: &str,
    data: &[u8],
) -> wasmtime::Result<Result<Metadata, String>> {
    match guest.call_validate(&mut *store, path, data).await? {
        Ok(()) => guest.call_parse_metadata(store, path, data).await,
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Logs what the guest printed; returns stderr (it explains crashes).
fn log_output(store: &Store<CallState>) -> String {
    let state = store.data();
    let (stdout, stdout_dropped) = state.stdout.take();
    let (stderr, stderr_dropped) = state.stderr.take();
    if !stdout.is_empty() {
        tracing::info!(target: "wasmplug::guest", stream = "stdout", dropped = stdout_dropped, "{}", stdout.trim_end());
    }
    if !stderr.is_empty() {
        tracing::info!(target: "wasmplug::guest", stream = "stderr", dropped = stderr_dropped, "{}", stderr.trim_end());
    }
    stderr
}

fn classify(error: &wasmtime::Error, limits: &CallLimits, stderr: &str) -> CallError {
    if error.downcast_ref::<MemoryLimitExceeded>().is_some() {
        return CallError::MemoryLimit { limit_bytes: limits.memory_bytes };
    }
    if matches!(error.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full)) {
        return CallError::HostResourceLimit { limit: MAX_HOST_RESOURCES };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout { limit: limits.timeout },
        Some(Trap::OutOfFuel) => CallError::FuelExhausted { limit: limits.fuel.unwrap_or(u64::MAX) },
        Some(trap) => {
            let mut message = trap.to_string();
            // A Rust guest prints its panic message to stderr before it aborts.
            if let Some(panic) = stderr.lines().find(|line| line.contains("panicked at")) {
                let detail = stderr.lines().skip_while(|line| *line != panic).take(2).collect::<Vec<_>>().join(" ");
                message = format!("{message} ({})", detail.trim());
            }
            CallError::Crashed { message }
        }
        None => CallError::Crashed { message: format!("{error:#}") },
    }
}
