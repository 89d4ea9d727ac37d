//! The formats a host knows, as an immutable snapshot swapped atomically.
//!
//! A request takes one `Arc` of the current entry and keeps it for the whole call,
//! so a swap never disturbs calls in flight: they finish on the version they
//! started with, and the next lookup sees the new one. Writers (the watcher that
//! follows FormatPlugins or the local directory) are serialized; readers never
//! wait for them.
//!
//! This module decides what is servable ([`breaker`] decides when a version is
//! broken); it does not load plugins or speak HTTP.

pub mod breaker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::handler::{HandlerError, SharedHandler};
use crate::plugin::Digest;
use crate::runtime::{CallLimits, Compilation};
use breaker::{Admit, Breaker, Transition};

/// Where a format's handler comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Plugin { name: String, version: String },
}

/// Whether a format can serve calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    Disabled,
    /// It never loaded; there is no previous version to serve.
    Failed,
    /// It failed repeatedly by itself; see [`breaker`] for when it serves again.
    Quarantined,
    /// Its FormatPlugin went and another that declares the key takes it over:
    /// known, not serving for the moment.
    ChangingHands,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Disabled => "disabled",
            State::Failed => "failed",
            State::Quarantined => "quarantined",
            State::ChangingHands => "changing-hands",
        }
    }
}

/// One format in a snapshot. Never modified once published, except its fault
/// record.
#[derive(Debug)]
pub struct Format {
    pub key: String,
    pub origin: Origin,
    pub digest: Option<Digest>,
    pub limits: Option<CallLimits>,
    /// How a plugin's code was compiled; `None` for builtins.
    pub compilation: Option<Compilation>,
    pub enabled: bool,
    /// Why the last attempt to change this format failed, or why it is
    /// quarantined; the version described here may still be serving.
    pub last_error: Option<String>,
    /// The load that `last_error` is about, when a load failed.
    pub failed_load: Option<FailedLoad>,
    /// What the plugin's author should know and the host accepted: fields of
    /// plugin.toml that no rule reads.
    pub warnings: Vec<String>,
    health: Health,
    handler: Option<SharedHandler>,
    /// Shared by the snapshots of this version, so that a disable or a new
    /// snapshot keeps its record.
    breaker: Arc<Mutex<Breaker>>,
}

/// A load of a new version that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedLoad {
    /// The plugin.wasm digest that failed to load (`None` for a builtin).
    pub digest: Option<Digest>,
    /// Whether the host tries it again by itself (a download failed).
    pub retrying: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Healthy,
    Failed,
    ChangingHands,
}

impl Format {
    pub fn state(&self) -> State {
        match (self.enabled, self.health) {
            (false, _) => State::Disabled,
            (true, Health::Failed) => State::Failed,
            (true, Health::ChangingHands) => State::ChangingHands,
            (true, Health::Healthy) if self.quarantine_reason().is_some() => State::Quarantined,
            (true, Health::Healthy) => State::Active,
        }
    }

    /// Why the format is not serving, or why its last change failed: the
    /// quarantine's reason while quarantined, else [`Format::last_error`].
    pub fn problem(&self) -> Option<String> {
        self.quarantine_reason().or_else(|| self.last_error.clone())
    }

    fn quarantine_reason(&self) -> Option<String> {
        self.breaker().quarantine_reason().map(str::to_owned)
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self, edit: impl FnOnce(&mut Format)) -> Format {
        let mut next = Format {
            key: self.key.clone(),
            origin: self.origin.clone(),
            digest: self.digest,
            limits: self.limits,
            compilation: self.compilation.clone(),
            enabled: self.enabled,
            last_error: self.last_error.clone(),
            failed_load: self.failed_load,
            warnings: self.warnings.clone(),
            health: self.health,
            handler: self.handler.clone(),
            breaker: self.breaker.clone(),
        };
        edit(&mut next);
        next
    }
}

/// A new version of a format, ready to serve.
#[derive(Debug)]
pub struct Install {
    pub key: String,
    pub origin: Origin,
    pub digest: Option<Digest>,
    pub limits: Option<CallLimits>,
    pub compilation: Option<Compilation>,
    pub enabled: bool,
    /// See [`Format::warnings`].
    pub warnings: Vec<String>,
    pub handler: SharedHandler,
}

/// The formats at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    formats: BTreeMap<String, Arc<Format>>,
}

impl Snapshot {
    pub fn formats(&self) -> impl Iterator<Item = &Arc<Format>> {
        self.formats.values()
    }

    pub fn get(&self, key: &str) -> Option<&Arc<Format>> {
        self.formats.get(key)
    }
}

/// A format that can serve a call, held for the duration of that call.
#[derive(Clone, Debug)]
pub struct Serving {
    pub format: Arc<Format>,
    handler: SharedHandler,
    admitted: Admit,
}

impl Serving {
    pub fn handler(&self) -> &SharedHandler {
        &self.handler
    }
}

/// Why a lookup found nothing to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("unknown format {key:?}; GET /v1/formats lists the formats this host serves")]
    Unknown { key: String },
    #[error("format {key:?} is unavailable: it is {}{}", state.as_str(), reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    NotServing { key: String, state: State, reason: Option<String> },
}

/// The registry of formats. Share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
    /// Signalled on every change of what a listing shows (one waiter: the
    /// host's record of what it serves).
    changed: tokio::sync::Notify,
    /// Formats installed since start (each load or reload counts); also the
    /// `wasmplug_host_installs_total` metric.
    installs: prometheus_client::metrics::counter::Counter,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// How many times a format was installed (loaded or reloaded) since start.
    pub fn installs(&self) -> &prometheus_client::metrics::counter::Counter {
        &self.installs
    }

    /// The current snapshot, for listing.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Completes when what a listing shows may have changed since the last
    /// time this completed (or since start). For a single waiter.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The handler to serve `key` with, if the format is active (or, after a
    /// quarantine's cool-down, for its one trial call).
    pub fn serving(&self, key: &str) -> Result<Serving, Unavailable> {
        let snapshot = self.current.load();
        let (format, handler) = Self::servable(&snapshot, key)?;
        let admitted = format.breaker().admit(Instant::now()).map_err(|why| Unavailable::NotServing {
            key: key.to_owned(),
            state: State::Quarantined,
            reason: Some(why),
        })?;
        Ok(Serving { format: format.clone(), handler: handler.clone(), admitted })
    }

    /// Whether `key` is known, enabled and loaded now, without taking a call
    /// (or a quarantine's trial): for refusing a request before its body is
    /// read. The version that serves it is chosen by [`Registry::serving`] once
    /// the call may run.
    pub fn check(&self, key: &str) -> Result<(), Unavailable> {
        Self::servable(&self.current.load(), key).map(drop)
    }

    fn servable<'s>(snapshot: &'s Snapshot, key: &str) -> Result<(&'s Arc<Format>, &'s SharedHandler), Unavailable> {
        let format = snapshot.get(key).ok_or_else(|| Unavailable::Unknown { key: key.to_owned() })?;
        match (&format.handler, format.enabled, format.health) {
            (Some(handler), true, Health::Healthy) => Ok((format, handler)),
            _ => Err(Unavailable::NotServing {
                key: key.to_owned(),
                state: format.state(),
                reason: format.last_error.clone(),
            }),
        }
    }

    /// Publishes a new version of a format (or a new format). Calls in flight on
    /// the previous version finish on it.
    pub fn install(&self, install: Install) {
        self.installs.inc();
        let format = Format {
            key: install.key.clone(),
            origin: install.origin,
            digest: install.digest,
            limits: install.limits,
            compilation: install.compilation,
            enabled: install.enabled,
            last_error: None,
            failed_load: None,
            warnings: install.warnings,
            health: Health::Healthy,
            handler: Some(install.handler),
            breaker: Arc::new(Mutex::new(Breaker::new(Instant::now()))),
        };
        self.update(|formats| {
            formats.insert(install.key, Arc::new(format));
        });
    }

    /// Records that a new version of `key` (`failed`) could not be loaded. A
    /// version that is serving keeps serving (last known good) and carries the
    /// error; otherwise the format is listed as failed.
    pub fn record_load_failure(&self, key: &str, origin: Origin, failed: FailedLoad, error: String) {
        self.update(|formats| {
            let next = match formats.get(key) {
                Some(current) if current.handler.is_some() => current.changed(|next| {
                    next.last_error = Some(error);
                    next.failed_load = Some(failed);
                }),
                _ => Format {
                    key: key.to_owned(),
                    origin,
                    digest: None,
                    limits: None,
                    compilation: None,
                    enabled: true,
                    last_error: Some(error),
                    failed_load: Some(failed),
                    warnings: Vec::new(),
                    health: Health::Failed,
                    handler: None,
                    breaker: Arc::new(Mutex::new(Breaker::new(Instant::now()))),
                },
            };
            formats.insert(key.to_owned(), Arc::new(next));
        });
    }

    /// Enables or disables `key`; the next lookup sees it. Enabling a disabled
    /// format also ends its quarantine. Returns false when the format is unknown.
    pub fn set_enabled(&self, key: &str, enabled: bool) -> bool {
        let mut found = false;
        self.update(|formats| {
            if let Some(current) = formats.get(key).filter(|current| current.enabled != enabled) {
                let next = current.changed(|next| {
                    next.enabled = enabled;
                    if enabled {
                        next.breaker = Arc::new(Mutex::new(Breaker::new(Instant::now())));
                    }
                });
                formats.insert(key.to_owned(), Arc::new(next));
            }
            found = formats.contains_key(key);
        });
        found
    }

    /// Ends the quarantine of `key` and forgets its faults (an operator's
    /// documented action). Returns whether it was quarantined.
    pub fn reset_quarantine(&self, key: &str) -> bool {
        let snapshot = self.current.load();
        let Some(format) = snapshot.get(key) else { return false };
        let mut breaker = format.breaker();
        let was = breaker.quarantine_reason().is_some();
        *breaker = Breaker::new(Instant::now());
        self.changed.notify_one();
        was
    }

    /// Forgets `key`. Calls in flight finish.
    /// Marks `key` as changing hands: what served it goes, and lookups answer
    /// that the format is unavailable for the moment (not unknown) until the
    /// next owner's version is installed or the key is removed.
    pub fn hand_over(&self, key: &str) {
        self.update(|formats| {
            let Some(current) = formats.get(key) else { return };
            let placeholder = Format {
                key: key.to_owned(),
                origin: current.origin.clone(),
                digest: None,
                limits: None,
                compilation: None,
                enabled: true,
                last_error: Some("its FormatPlugin is gone and another takes the key over; retry shortly".into()),
                failed_load: None,
                warnings: Vec::new(),
                health: Health::ChangingHands,
                handler: None,
                breaker: Arc::new(Mutex::new(Breaker::new(Instant::now()))),
            };
            formats.insert(key.to_owned(), Arc::new(placeholder));
        });
    }

    pub fn remove(&self, key: &str) -> bool {
        let mut removed = false;
        self.update(|formats| removed = formats.remove(key).is_some());
        removed
    }

    /// Records the outcome of a call on `input_bytes` of input against the
    /// version that served it (see [`breaker`]); says whether that quarantined
    /// the version or ended its quarantine.
    pub fn report<T>(&self, serving: &Serving, outcome: &Result<T, HandlerError>, input_bytes: usize) -> Transition {
        let memory = match serving.format.origin {
            Origin::Builtin => None,
            Origin::Plugin { .. } => Some(serving.format.limits.unwrap_or_default().memory_bytes),
        };
        let verdict = breaker::verdict(outcome, input_bytes, memory);
        let transition = serving.format.breaker().record(verdict, serving.admitted, Instant::now());
        if !matches!(transition, Transition::None) {
            self.changed.notify_one();
        }
        transition
    }

    fn update(&self, edit: impl FnOnce(&mut BTreeMap<String, Arc<Format>>)) {
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut formats = self.current.load().formats.clone();
        edit(&mut formats);
        self.current.store(Arc::new(Snapshot { formats }));
        self.changed.notify_one();
    }
}
