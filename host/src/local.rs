//! Local mode: a directory of plugin packages (one subdirectory each, holding
//! plugin.toml and plugin.wasm), or one package directory itself, kept in sync
//! with the registry without Kubernetes.
//!
//! The directory is polled: a package whose files changed is loaded again and
//! swapped in, a new one is added, a removed one is unloaded. A package that fails
//! to read or load leaves the previous version serving and is reported in the log
//! and in `GET /v1/formats` (the current error: each failure replaces the last),
//! under its format key, or under its directory's name when it never loaded.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::plugin::{MANIFEST_FILE, Package, WASM_FILE};
use crate::registry::{FailedLoad, Install, Origin, Registry};
use crate::runtime::{CallLimits, Compilation, Runtime};

/// How a package directory looked when it was last loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    manifest: (SystemTime, u64),
    wasm: (SystemTime, u64),
}

fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let stat = |file: &str| {
        let metadata = std::fs::metadata(dir.join(file)).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    };
    Some(Fingerprint { manifest: stat(MANIFEST_FILE)?, wasm: stat(WASM_FILE)? })
}

/// Keeps a registry in step with a package directory.
#[derive(Debug)]
pub struct LocalSource {
    dir: PathBuf,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    max_limits: CallLimits,
    /// Package directory → what was seen there and the key it serves, if any.
    packages: HashMap<PathBuf, (Option<Fingerprint>, Option<String>)>,
}

impl LocalSource {
    pub fn new(dir: PathBuf, runtime: Arc<Runtime>, registry: Arc<Registry>, max_limits: CallLimits) -> Self {
        LocalSource { dir, runtime, registry, max_limits, packages: HashMap::new() }
    }

    /// One pass: load new and changed packages, unload removed ones. Blocking
    /// (compiles components); run it off the async executor.
    pub fn sync(&mut self) {
        let found = self.package_dirs();
        let gone: Vec<PathBuf> = self.packages.keys().filter(|dir| !found.contains_key(*dir)).cloned().collect();
        for dir in gone {
            if let Some((_, Some(key))) = self.packages.remove(&dir) {
                self.registry.remove(&key);
                tracing::info!(format = key, dir = %dir.display(), "unloaded: package removed");
            }
        }
        for (dir, seen) in found {
            let known = self.packages.get(&dir);
            if known.is_some_and(|(fingerprint, _)| *fingerprint == seen) {
                continue;
            }
            let previous_key = known.and_then(|(_, key)| key.clone());
            let key = self.load(&dir, previous_key.as_deref());
            self.packages.insert(dir, (seen, key));
        }
    }

    /// Loads the package in `dir`; returns the format key it now serves.
    fn load(&self, dir: &Path, previous_key: Option<&str>) -> Option<String> {
        let package = match Package::read_dir(dir) {
            Ok(package) => package,
            Err(error) => {
                tracing::error!(dir = %dir.display(), %error, "failed to read package; previous version keeps serving");
                // Shown in GET /v1/formats: under the key the package serves,
                // or, before it ever loaded, under its directory's name.
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let key = match previous_key {
                    Some(key) => key.to_owned(),
                    // Never over a format something else serves (a builtin, another package).
                    None if self.registry.snapshot().get(&name).is_some() || self.owner_of(&name, dir).is_some() => {
                        return None;
                    }
                    None => name.clone(),
                };
                let origin = Origin::Plugin { name, version: "unknown".to_owned() };
                let failed = FailedLoad { digest: None, retrying: false };
                self.registry.record_load_failure(&key, origin, failed, error.to_string());
                return Some(key);
            }
        };
        let key = package.manifest.format_key.clone();
        if let Some(owner) = self.owner_of(&key, dir) {
            tracing::error!(
                format = key, dir = %dir.display(), owner = %owner.display(),
                "format key conflict: {key:?} is already served from {}", owner.display()
            );
            return previous_key.map(str::to_owned);
        }
        if let Some(previous) = previous_key.filter(|previous| *previous != key) {
            self.registry.remove(previous);
        }
        let origin =
            Origin::Plugin { name: package.manifest.name.clone(), version: package.manifest.version.to_string() };
        let limits = self.max_limits.grant([&package.manifest.resources]);
        match self.runtime.load(&package, limits) {
            Ok(plugin) => {
                tracing::info!(format = key, digest = %package.digest, dir = %dir.display(), "loaded");
                self.registry.install(Install {
                    key: key.clone(),
                    origin,
                    digest: Some(package.digest),
                    limits: Some(limits),
                    compilation: Some(Compilation::Compiled {
                        reason: "a local package has no precompiled file".to_owned(),
                    }),
                    enabled: true,
                    warnings: package.manifest.warnings(),
                    handler: Arc::new(plugin),
                });
            }
            Err(error) => {
                tracing::error!(format = key, dir = %dir.display(), %error, "failed to load plugin");
                let failed = FailedLoad { digest: Some(package.digest), retrying: false };
                self.registry.record_load_failure(&key, origin, failed, error.to_string());
            }
        }
        Some(key)
    }

    fn owner_of(&self, key: &str, except: &Path) -> Option<&PathBuf> {
        self.packages
            .iter()
            .find(|(dir, (_, owned))| *dir != except && owned.as_deref() == Some(key))
            .map(|(dir, _)| dir)
    }

    /// The package directories: the directory itself when it holds package
    /// files, else its subdirectories that do, sorted so that the first
    /// directory claiming a key keeps it.
    fn package_dirs(&self) -> BTreeMap<PathBuf, Option<Fingerprint>> {
        let is_package = |path: &Path| path.join(MANIFEST_FILE).exists() || path.join(WASM_FILE).exists();
        if is_package(&self.dir) {
            return BTreeMap::from([(self.dir.clone(), fingerprint(&self.dir))]);
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            tracing::warn!(dir = %self.dir.display(), "failed to read the plugin directory");
            return BTreeMap::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_dir() && is_package(path))
            .map(|path| {
                let seen = fingerprint(&path);
                (path, seen)
            })
            .collect()
    }

    /// Syncs now and then every `interval`, forever. Calls `on_first_sync` once
    /// the first pass is done.
    pub async fn run(mut self, interval: Duration, on_first_sync: impl FnOnce()) {
        self = sync_off_executor(self).await;
        on_first_sync();
        loop {
            tokio::time::sleep(interval).await;
            self = sync_off_executor(self).await;
        }
    }
}

async fn sync_off_executor(mut source: LocalSource) -> LocalSource {
    match tokio::task::spawn_blocking(move || {
        source.sync();
        source
    })
    .await
    {
        Ok(source) => source,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}
