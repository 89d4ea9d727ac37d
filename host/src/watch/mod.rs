//! Cluster mode: follow FormatPlugins and keep the registry serving what their
//! status says ([`wanted`] decides what that is; [`load`] downloads it into the
//! host's cache, or finds it in the read-only shared store, and loads it
//! through [`crate::artifact`]'s checks).
//!
//! A package that cannot be downloaded (the operator is away, or served bytes
//! that failed their check) is tried again with backoff while whatever served
//! the key before keeps serving. The cache keeps only the packages that keys
//! serve or are loading.
//!
//! The watch loop never waits for a load. Enabling, disabling and removing a
//! format take effect as soon as an event shows them; a load runs as its own
//! task and installs its result only if the key still wants exactly what was
//! loaded. Readiness waits for the loads of the first sync to finish, succeed
//! or fail (a load that times out has failed).

mod load;
mod wanted;

pub use load::{Loader, Packages};
pub use wanted::RESET_QUARANTINE_ANNOTATION;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::task::{AbortHandle, JoinSet};
use wasmplug_crds::{Artifact, FormatPlugin};

use crate::registry::{FailedLoad, Install, Origin, Registry};
use load::LoadError;
use wanted::{Wanted, What};

/// A finished load: the key, what was loaded, and the outcome.
type Loaded = (String, Wanted, Result<Install, LoadError>);

/// The first retry of a download that failed waits this long; each further
/// one twice as long as the one before, up to [`MAX_RETRY_DELAY`]. Short,
/// because the common failure is brief: a replica asked before it mirrored a
/// package the leader has just published.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Keeps a registry in step with the FormatPlugins a client can see.
///
/// Objects are watched untyped and read one by one: a typed watch fails its whole
/// list when one stored object cannot be read, and would stop following all of
/// them. An object that cannot be read serves nothing and is logged.
#[derive(Debug)]
pub struct ClusterSource {
    api: Api<DynamicObject>,
    loader: Loader,
    registry: Arc<Registry>,
    /// What the registry serves for each key (the last load that finished).
    applied: HashMap<String, Wanted>,
    /// Loads in flight, by key, with what they load (enabled as last seen).
    loading: HashMap<String, Wanted>,
    /// Keys whose owner went while another object declares them: listed as
    /// changing hands (409, not 404) until the next owner's load.
    handing_over: HashSet<String>,
    /// Keys whose first load readiness waits for; `None` once ready.
    first_sync: Option<HashSet<String>>,
    /// Keys whose download is to be tried again: how often it failed, and the
    /// waiting retry (aborted when the key wants something else).
    retries: HashMap<String, (u32, AbortHandle)>,
}

impl ClusterSource {
    pub fn new(api: Api<DynamicObject>, loader: Loader, registry: Arc<Registry>) -> Self {
        ClusterSource {
            api,
            loader,
            registry,
            applied: HashMap::new(),
            loading: HashMap::new(),
            handing_over: HashSet::new(),
            first_sync: None,
            retries: HashMap::new(),
        }
    }

    /// Follows FormatPlugins until the watch ends (it retries with backoff, so in
    /// practice forever). Calls `on_first_sync` once every object listed at start
    /// has been applied and each of their loads has finished.
    pub async fn run(mut self, on_first_sync: impl FnOnce()) {
        let writer = reflector::store::Writer::new(ApiResource::erase::<FormatPlugin>(&()));
        let reader = writer.as_reader();
        let events =
            reflector::reflector(writer, watcher::watcher(self.api.clone(), watcher::Config::default().any_semantic()))
                .default_backoff();
        futures::pin_mut!(events);
        let mut on_first_sync = Some(on_first_sync);
        let mut listed = false;
        let mut loads: JoinSet<Loaded> = JoinSet::new();
        loop {
            tokio::select! {
                event = events.next() => match event {
                    None => break,
                    Some(Ok(Event::InitDone)) => {
                        self.sync(&reader, &mut loads);
                        if !listed {
                            listed = true;
                            self.first_sync = Some(self.loading.keys().cloned().collect());
                        }
                    }
                    Some(Ok(Event::Apply(_) | Event::Delete(_))) if listed => self.sync(&reader, &mut loads),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => tracing::warn!(%error, "FormatPlugin watch failed; retrying"),
                },
                Some(done) = loads.join_next(), if !loads.is_empty() => match done {
                    Ok((key, loaded, outcome)) => self.finish(key, &loaded, outcome, &mut loads),
                    Err(error) if error.is_cancelled() => {}
                    Err(error) => tracing::error!(%error, "a load task failed"),
                },
            }
            if self.first_sync.as_ref().is_some_and(|keys| keys.iter().all(|key| !self.loading.contains_key(key))) {
                self.first_sync = None;
                if let Some(ready) = on_first_sync.take() {
                    tracing::info!(formats = self.applied.len(), "first sync done");
                    ready();
                }
            }
        }
    }

    /// Brings the registry towards what the objects in `reader` ask for:
    /// removals and enabled flags now, loads as tasks on `loads`.
    fn sync(&mut self, reader: &Store<DynamicObject>, loads: &mut JoinSet<Loaded>) {
        let plugins: Vec<FormatPlugin> = reader
            .state()
            .iter()
            .filter_map(|object| match DynamicObject::clone(object).try_parse::<FormatPlugin>() {
                Ok(plugin) => Some(plugin),
                Err(error) => {
                    let name = format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
                    tracing::warn!(formatplugin = name, %error, "cannot read this FormatPlugin; it serves nothing");
                    None
                }
            })
            .collect();
        let wanted = wanted::wanted(&plugins);
        let declared = wanted::declared_keys(&plugins);
        let gone: Vec<String> =
            self.applied.keys().chain(self.loading.keys()).filter(|key| !wanted.contains_key(*key)).cloned().collect();
        for key in gone {
            self.stop_retrying(&key);
            self.loading.remove(&key);
            if self.applied.remove(&key).is_none() {
                continue;
            }
            if declared.contains(&key) {
                self.registry.hand_over(&key);
                self.handing_over.insert(key.clone());
                tracing::info!(format = key, "changing hands: its FormatPlugin is gone and another declares the key");
            } else {
                self.registry.remove(&key);
                tracing::info!(format = key, "unloaded: no FormatPlugin serves it any more");
            }
        }
        // A key stops changing hands when its next owner asks to be loaded (the
        // load replaces the placeholder), or when no one declares it any more.
        let settled: Vec<String> = self
            .handing_over
            .iter()
            .filter(|key| wanted.contains_key(*key) || !declared.contains(*key))
            .cloned()
            .collect();
        for key in settled {
            self.handing_over.remove(&key);
            if !wanted.contains_key(&key) {
                self.registry.remove(&key);
                tracing::info!(format = key, "unloaded: no FormatPlugin declares it any more");
            }
        }
        for (key, want) in wanted {
            // Whatever serves the key now follows the enabled flag at once, even
            // while a new version loads.
            if let Some(applied) = self.applied.get_mut(&key).filter(|applied| applied.enabled != want.enabled) {
                applied.enabled = want.enabled;
                self.registry.set_enabled(&key, want.enabled);
                let change = if want.enabled { "enabled" } else { "disabled" };
                tracing::info!(format = key, enabled = want.enabled, owner = want.owner, "{change}");
            }
            if let Some(applied) =
                self.applied.get_mut(&key).filter(|applied| applied.quarantine_reset != want.quarantine_reset)
            {
                applied.quarantine_reset = want.quarantine_reset.clone();
                if self.registry.reset_quarantine(&key) {
                    tracing::info!(format = key, owner = want.owner, "quarantine reset by annotation");
                }
            }
            let current = self.loading.get(&key).or_else(|| self.applied.get(&key));
            if current.is_some_and(|current| current.same_load(&want)) {
                if let Some(loading) = self.loading.get_mut(&key) {
                    loading.enabled = want.enabled;
                    loading.quarantine_reset = want.quarantine_reset.clone();
                }
                continue;
            }
            self.stop_retrying(&key);
            self.loading.insert(key.clone(), want.clone());
            self.spawn_load(loads, key, want, Duration::ZERO);
        }
        self.prune_cache();
    }

    /// Loads `want` for `key` after `delay`, as a task on `loads`.
    fn spawn_load(&self, loads: &mut JoinSet<Loaded>, key: String, want: Wanted, delay: Duration) -> AbortHandle {
        let loader = self.loader.clone();
        loads.spawn(async move {
            tokio::time::sleep(delay).await;
            let outcome = loader.load(key.clone(), want.clone()).await;
            (key, want, outcome)
        })
    }

    /// Forgets the failed downloads of `key` and aborts its waiting retry.
    fn stop_retrying(&mut self, key: &str) {
        if let Some((_, retry)) = self.retries.remove(key) {
            retry.abort();
        }
    }

    /// Removes the cached packages that no key serves or is loading.
    fn prune_cache(&self) {
        let Some(cache) = self.loader.cache() else { return };
        let kept: HashSet<String> = self
            .applied
            .values()
            .chain(self.loading.values())
            .filter_map(|want| match &want.what {
                What::Artifact(artifact) => Some(artifact.path.clone()),
                What::Builtin => None,
            })
            .collect();
        let dir = cache.join(Artifact::PACKAGES_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let path = Artifact::path_for(&entry.file_name().to_string_lossy());
            if !kept.contains(&path) {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => tracing::debug!(path, "removed from the cache: nothing serves it any more"),
                    Err(error) => tracing::warn!(path, %error, "failed to remove a package from the cache"),
                }
            }
        }
    }

    /// Installs a finished load, unless the key has since asked for something
    /// else; a download that failed is tried again later.
    fn finish(
        &mut self,
        key: String,
        loaded: &Wanted,
        outcome: Result<Install, LoadError>,
        loads: &mut JoinSet<Loaded>,
    ) {
        let Some(want) = self.loading.get(&key).filter(|want| want.same_load(loaded)).cloned() else {
            tracing::debug!(format = key, "dropping a load the key no longer wants");
            return;
        };
        let origin = match &want.what {
            What::Builtin => Origin::Builtin,
            What::Artifact(_) => Origin::Plugin { name: want.owner.clone(), version: String::new() },
        };
        let failed = |retrying| FailedLoad { digest: want.digest(), retrying };
        if let Err(LoadError::Unavailable(error)) = &outcome {
            let failures = self.retries.get(&key).map_or(0, |(failures, _)| *failures) + 1;
            let delay = retry_delay(failures);
            tracing::warn!(
                format = key, owner = want.owner, %error, retry_in = ?delay,
                "failed to download the package; trying again later, and the previous version keeps serving"
            );
            self.registry.record_load_failure(&key, origin, failed(true), error.clone());
            self.registry.set_enabled(&key, want.enabled);
            // Readiness waits for the first attempt only: a host whose operator is
            // away serves what it has.
            if let Some(first_sync) = &mut self.first_sync {
                first_sync.remove(&key);
            }
            let retry = self.spawn_load(loads, key.clone(), want, delay);
            self.retries.insert(key, (failures, retry));
            return;
        }
        self.retries.remove(&key);
        self.loading.remove(&key);
        match outcome {
            Ok(install) => {
                let install = Install { enabled: want.enabled, ..install };
                tracing::info!(
                    format = key,
                    owner = want.owner,
                    digest = install.digest.map(tracing::field::display),
                    enabled = want.enabled,
                    "loaded"
                );
                self.registry.install(install);
            }
            Err(error) => {
                tracing::error!(
                    format = key, owner = want.owner, %error, "failed to load; the previous version keeps serving"
                );
                self.registry.record_load_failure(&key, origin, failed(false), error.to_string());
                self.registry.set_enabled(&key, want.enabled);
            }
        }
        self.applied.insert(key, want);
        self.prune_cache();
    }
}

/// How long to wait before the next try of a download that failed `failures` times.
fn retry_delay(failures: u32) -> Duration {
    FIRST_RETRY_DELAY.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(MAX_RETRY_DELAY)
}

/// The (untyped) API for FormatPlugins in `namespace`, or in every namespace.
pub fn api(client: kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<FormatPlugin>(&());
    match namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, &resource),
        None => Api::all_with(client, &resource),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_a_limit() {
        let delays: Vec<u128> = (1..=10).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
