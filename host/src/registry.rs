//! The formats a host knows, as an immutable snapshot swapped atomically.
//!
//! A request takes one `Arc` of the current entry and keeps it for the whole call,
//! so a swap never disturbs calls in flight: they finish on the version they
//! started with, and the next lookup sees the new one. Writers (the watcher that
//! follows FormatPlugins or the local directory) are serialized; readers never
//! wait for them.
//!
//! This module decides what is servable; it does not load plugins or speak HTTP.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::handler::{HandlerError, SharedHandler};
use crate::plugin::Digest;
use crate::runtime::{CallLimits, Compilation};

/// Consecutive limit failures after which a plugin is quarantined.
pub const QUARANTINE_AFTER: u32 = 5;

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
    /// It exceeded its limits repeatedly; it serves again once it changes.
    Quarantined,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Disabled => "disabled",
            State::Failed => "failed",
            State::Quarantined => "quarantined",
        }
    }
}

/// One format in a snapshot. Never modified once published, except its failure
/// counter.
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
    health: Health,
    handler: Option<SharedHandler>,
    consecutive_limit_failures: AtomicU32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Healthy,
    Failed,
    Quarantined,
}

impl Format {
    pub fn state(&self) -> State {
        match (self.enabled, self.health) {
            (false, _) => State::Disabled,
            (true, Health::Healthy) => State::Active,
            (true, Health::Failed) => State::Failed,
            (true, Health::Quarantined) => State::Quarantined,
        }
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
            health: self.health,
            handler: self.handler.clone(),
            consecutive_limit_failures: AtomicU32::new(0),
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

    /// The handler to serve `key` with, if the format is active.
    pub fn serving(&self, key: &str) -> Result<Serving, Unavailable> {
        let snapshot = self.current.load();
        let format = snapshot.get(key).ok_or_else(|| Unavailable::Unknown { key: key.to_owned() })?;
        match (&format.handler, format.state()) {
            (Some(handler), State::Active) => Ok(Serving { format: format.clone(), handler: handler.clone() }),
            (_, state) => {
                Err(Unavailable::NotServing { key: key.to_owned(), state, reason: format.last_error.clone() })
            }
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
            health: Health::Healthy,
            handler: Some(install.handler),
            consecutive_limit_failures: AtomicU32::new(0),
        };
        self.update(|formats| {
            formats.insert(install.key, Arc::new(format));
        });
    }

    /// Records that a new version of `key` could not be loaded. A version that is
    /// serving keeps serving (last known good) and carries the error; otherwise the
    /// format is listed as failed.
    pub fn record_load_failure(&self, key: &str, origin: Origin, error: String) {
        self.update(|formats| {
            let next = match formats.get(key) {
                Some(current) if current.handler.is_some() => current.changed(|next| next.last_error = Some(error)),
                _ => Format {
                    key: key.to_owned(),
                    origin,
                    digest: None,
                    limits: None,
                    compilation: None,
                    enabled: true,
                    last_error: Some(error),
                    health: Health::Failed,
                    handler: None,
                    consecutive_limit_failures: AtomicU32::new(0),
                },
            };
            formats.insert(key.to_owned(), Arc::new(next));
        });
    }

    /// Enables or disables `key`; the next lookup sees it. Returns false when the
    /// format is unknown.
    pub fn set_enabled(&self, key: &str, enabled: bool) -> bool {
        let mut found = false;
        self.update(|formats| {
            if let Some(current) = formats.get(key).filter(|current| current.enabled != enabled) {
                let next = current.changed(|next| next.enabled = enabled);
                formats.insert(key.to_owned(), Arc::new(next));
            }
            found = formats.contains_key(key);
        });
        found
    }

    /// Forgets `key`. Calls in flight finish.
    pub fn remove(&self, key: &str) -> bool {
        let mut removed = false;
        self.update(|formats| removed = formats.remove(key).is_some());
        removed
    }

    /// Counts the outcome of a call against the version that served it. After
    /// [`QUARANTINE_AFTER`] consecutive limit failures that version is
    /// quarantined; a success resets the count. Returns true when this outcome
    /// quarantined the format.
    pub fn report<T>(&self, serving: &Serving, outcome: &Result<T, HandlerError>) -> bool {
        let counter = &serving.format.consecutive_limit_failures;
        let exceeded = match outcome {
            Err(HandlerError::Failed(error)) if error.is_limit() => error,
            _ => {
                counter.store(0, Ordering::Relaxed);
                return false;
            }
        };
        if counter.fetch_add(1, Ordering::Relaxed) + 1 != QUARANTINE_AFTER {
            return false;
        }
        let reason = format!("quarantined after {QUARANTINE_AFTER} calls in a row exceeded a limit; last: {exceeded}");
        let mut quarantined = false;
        self.update(|formats| {
            // Only the version that failed; a newer one may already have replaced it.
            if let Some(current) = formats.get(&serving.format.key).filter(|c| Arc::ptr_eq(c, &serving.format)) {
                let next = current.changed(|next| {
                    next.health = Health::Quarantined;
                    next.last_error = Some(reason);
                });
                formats.insert(serving.format.key.clone(), Arc::new(next));
                quarantined = true;
            }
        });
        quarantined
    }

    fn update(&self, edit: impl FnOnce(&mut BTreeMap<String, Arc<Format>>)) {
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut formats = self.current.load().formats.clone();
        edit(&mut formats);
        self.current.store(Arc::new(Snapshot { formats }));
    }
}
