//! Cluster mode: follow FormatPlugins and keep the registry serving what their
//! status says, loading artifacts from the read-only store.
//!
//! The serving rule (PRODUCT.md, "Status contract"; docs/architecture.md): a host
//! serves, for each format key, the owner of that key (`wasmplug_crds::ownership`)
//! among objects that are not being deleted and whose status names something to
//! serve: `status.artifact` (a plugin in the store) or, without an artifact, the
//! builtin format `status.plugin.formatKey`. The operator replaces `status.artifact`
//! only with a version that passed validation, so a failed update keeps the last
//! good version serving. `spec.enabled` and `spec.limits` apply as soon as the host
//! sees them. What status names is read and verified by [`crate::artifact`]
//! before anything of it runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use wasmplug_crds::{Artifact, Duration, FormatPlugin, ownership};

use crate::artifact::{self, Verified};
use crate::builtin;
use crate::plugin::ResourceRequest;
use crate::registry::{Install, Origin, Registry};
use crate::runtime::{CallLimits, Runtime};

/// What one format key should serve.
#[derive(Clone, Debug, PartialEq)]
struct Wanted {
    /// `namespace/name` of the FormatPlugin that owns the key.
    owner: String,
    what: What,
    enabled: bool,
    limits: ResourceRequest,
}

#[derive(Clone, Debug, PartialEq)]
enum What {
    Builtin,
    Artifact(Box<Artifact>),
}

/// Keeps a registry in step with the FormatPlugins a client can see.
///
/// Objects are watched untyped and read one by one: a typed watch fails its whole
/// list when one stored object cannot be read, and would stop following all of
/// them. An object that cannot be read serves nothing and is logged.
#[derive(Debug)]
pub struct ClusterSource {
    api: Api<DynamicObject>,
    store_root: PathBuf,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    max_limits: CallLimits,
    /// What each key was last set to serve.
    applied: HashMap<String, Wanted>,
}

impl ClusterSource {
    pub fn new(
        api: Api<DynamicObject>,
        store_root: PathBuf,
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        max_limits: CallLimits,
    ) -> Self {
        ClusterSource { api, store_root, runtime, registry, max_limits, applied: HashMap::new() }
    }

    /// Follows FormatPlugins until the watch ends (it retries with backoff, so in
    /// practice forever). Calls `on_first_sync` once every object listed at start
    /// has been applied.
    pub async fn run(mut self, on_first_sync: impl FnOnce()) {
        let writer = reflector::store::Writer::new(ApiResource::erase::<FormatPlugin>(&()));
        let reader = writer.as_reader();
        let events =
            reflector::reflector(writer, watcher::watcher(self.api.clone(), watcher::Config::default().any_semantic()))
                .default_backoff();
        futures::pin_mut!(events);
        let mut on_first_sync = Some(on_first_sync);
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::InitDone) => {
                    self.sync(&reader).await;
                    if let Some(ready) = on_first_sync.take() {
                        tracing::info!(formats = self.applied.len(), "first sync done");
                        ready();
                    }
                }
                Ok(Event::Apply(_) | Event::Delete(_)) if on_first_sync.is_none() => self.sync(&reader).await,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "FormatPlugin watch failed; retrying"),
            }
        }
    }

    /// Brings the registry to what the objects in `reader` ask for.
    async fn sync(&mut self, reader: &Store<DynamicObject>) {
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
        let wanted = wanted(&plugins);
        let gone: Vec<String> = self.applied.keys().filter(|key| !wanted.contains_key(*key)).cloned().collect();
        for key in gone {
            self.applied.remove(&key);
            self.registry.remove(&key);
            tracing::info!(format = key, "unloaded: no FormatPlugin serves it any more");
        }
        for (key, want) in wanted {
            match self.applied.get(&key) {
                Some(applied) if *applied == want => continue,
                Some(applied)
                    if applied.what == want.what && applied.limits == want.limits && applied.owner == want.owner =>
                {
                    self.registry.set_enabled(&key, want.enabled);
                    tracing::info!(
                        format = key,
                        enabled = want.enabled,
                        owner = want.owner,
                        "{}",
                        if want.enabled { "enabled" } else { "disabled" }
                    );
                }
                _ => self.load(&key, &want).await,
            }
            self.applied.insert(key, want);
        }
    }

    /// Loads what `want` names for `key` and installs it; on failure the previous
    /// version (if any) keeps serving.
    async fn load(&self, key: &str, want: &Wanted) {
        let (runtime, root, max) = (self.runtime.clone(), self.store_root.clone(), self.max_limits);
        let (task_key, task_want) = (key.to_owned(), want.clone());
        let loaded = tokio::task::spawn_blocking(move || load(&runtime, &root, max, &task_key, &task_want)).await;
        let origin = || match &want.what {
            What::Builtin => Origin::Builtin,
            What::Artifact { .. } => Origin::Plugin { name: want.owner.clone(), version: String::new() },
        };
        match loaded {
            Ok(Ok(install)) => {
                tracing::info!(format = key, owner = want.owner, digest = ?install.digest, enabled = want.enabled, "loaded");
                self.registry.install(install);
            }
            Ok(Err(error)) => {
                tracing::error!(format = key, owner = want.owner, %error, "failed to load; the previous version keeps serving");
                self.registry.record_load_failure(key, origin(), error);
            }
            Err(error) => {
                tracing::error!(format = key, %error, "load task failed");
                self.registry.record_load_failure(key, origin(), error.to_string());
            }
        }
    }
}

/// For every format key, what its owner asks to serve.
fn wanted(plugins: &[FormatPlugin]) -> BTreeMap<String, Wanted> {
    let servable: Vec<&FormatPlugin> = plugins.iter().filter(|p| what_to_serve(p).is_some()).collect();
    let mut wanted = BTreeMap::new();
    for plugin in &servable {
        let Some(key) = plugin.claimed_format_key() else { continue };
        if wanted.contains_key(key) {
            continue;
        }
        let Some(owner) = ownership::owner_of(key, servable.iter().copied()) else { continue };
        let Some(what) = what_to_serve(owner) else { continue };
        wanted.insert(
            key.to_owned(),
            Wanted {
                owner: owner.qualified_name(),
                what,
                enabled: owner.spec.enabled,
                limits: requested_limits(owner),
            },
        );
    }
    wanted
}

fn what_to_serve(plugin: &FormatPlugin) -> Option<What> {
    let status = plugin.status.as_ref()?;
    let key = plugin.claimed_format_key()?;
    match &status.artifact {
        Some(artifact) => Some(What::Artifact(Box::new(artifact.clone()))),
        None => builtin::handler(key).map(|_| What::Builtin),
    }
}

fn requested_limits(plugin: &FormatPlugin) -> ResourceRequest {
    let limits = plugin.spec.limits.as_ref();
    ResourceRequest {
        max_memory_bytes: limits.and_then(|l| l.memory_bytes()),
        max_execution: limits.and_then(|l| l.timeout.as_ref()).map(Duration::as_std),
        max_fuel: limits.and_then(|l| l.fuel),
        ..ResourceRequest::default()
    }
}

/// Loads a format from the store (or the builtins). Blocking.
fn load(runtime: &Runtime, root: &Path, max: CallLimits, key: &str, want: &Wanted) -> Result<Install, String> {
    let artifact = match &want.what {
        What::Builtin => {
            let handler = builtin::handler(key).ok_or_else(|| format!("{key:?} is not a builtin format"))?;
            return Ok(Install {
                key: key.to_owned(),
                origin: Origin::Builtin,
                digest: None,
                limits: None,
                compilation: None,
                enabled: want.enabled,
                handler,
            });
        }
        What::Artifact(artifact) => artifact,
    };
    let Verified { package, precompiled } =
        artifact::read(root, artifact, runtime.engine_id()).map_err(|e| e.to_string())?;
    let limits = max.grant([&package.manifest.resources, &want.limits]);
    let (plugin, compilation) = runtime.load_verified(&package, precompiled, limits).map_err(|e| e.to_string())?;
    Ok(Install {
        key: key.to_owned(),
        origin: Origin::Plugin { name: package.manifest.name.clone(), version: package.manifest.version.to_string() },
        digest: Some(package.digest),
        limits: Some(limits),
        compilation: Some(compilation),
        enabled: want.enabled,
        handler: Arc::new(plugin),
    })
}

/// The (untyped) API for FormatPlugins in `namespace`, or in every namespace.
pub fn api(client: kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<FormatPlugin>(&());
    match namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, &resource),
        None => Api::all_with(client, &resource),
    }
}
