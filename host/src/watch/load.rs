//! Loading what a format key should serve: download it into the cache when the
//! host downloads packages, then read and verify it (or take the builtin),
//! compile or deserialize it and call its `format-key`, all on the blocking
//! pool and bounded by a timeout, so that no load holds up the watch loop,
//! another key, a disable or readiness. A load that times out has failed; its
//! thread finishes in the background and its result is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::wanted::{Wanted, What};
use crate::artifact::{self, Verified};
use crate::builtin;
use crate::download::Downloader;
use crate::registry::{Install, Origin};
use crate::runtime::{CallLimits, MAX_CONCURRENT_LOADS, Runtime};

/// Where a host finds the packages status names.
#[derive(Clone, Debug)]
pub enum Packages {
    /// A store volume shared with the operator, mounted read-only.
    SharedStore(PathBuf),
    /// Downloaded from the operator's artifact servers (tried in order) into a
    /// local cache directory (laid out like the store) that only this host writes.
    Downloaded { servers: Vec<url::Url>, cache: PathBuf, downloader: Arc<Downloader> },
}

impl Packages {
    /// The store-shaped directory packages are read from.
    fn root(&self) -> &PathBuf {
        match self {
            Packages::SharedStore(root) | Packages::Downloaded { cache: root, .. } => root,
        }
    }
}

/// Why a load did not install anything.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LoadError {
    /// The package could not be downloaded (yet): tried again with backoff.
    Unavailable(String),
    /// The package or the plugin is unusable as it is.
    Failed(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unavailable(message) | LoadError::Failed(message) => f.write_str(message),
        }
    }
}

/// Loads formats for a [`super::ClusterSource`].
#[derive(Clone, Debug)]
pub struct Loader {
    runtime: Arc<Runtime>,
    packages: Packages,
    max_limits: CallLimits,
    timeout: Duration,
    /// At most [`MAX_CONCURRENT_LOADS`] at once (each compiles and instantiates).
    running: Arc<Semaphore>,
}

impl Loader {
    /// Loads from `packages`, granting at most `max_limits`; each load may take
    /// up to `timeout` once its package is at hand.
    pub fn new(runtime: Arc<Runtime>, packages: Packages, max_limits: CallLimits, timeout: Duration) -> Self {
        let running = Arc::new(Semaphore::new(MAX_CONCURRENT_LOADS as usize));
        if let Packages::Downloaded { cache, .. } = &packages {
            Downloader::remove_partial(cache);
        }
        Loader { runtime, packages, max_limits, timeout, running }
    }

    /// Loads what `want` names for `key`: downloads it first when needed
    /// (without a load slot: waiting on the network holds up no other load),
    /// then loads it once one of the load slots is free; the timeout counts
    /// from then.
    pub(super) async fn load(&self, key: String, want: Wanted) -> Result<Install, LoadError> {
        let mut precompiled_problem = None;
        if let (Packages::Downloaded { servers, cache, downloader }, What::Artifact(artifact)) =
            (&self.packages, &want.what)
        {
            let engine = Some(self.runtime.engine_id());
            let fetched = downloader.fetch_package(servers, cache, artifact, engine).await.map_err(|error| {
                let message = error.to_string();
                if error.is_retryable() { LoadError::Unavailable(message) } else { LoadError::Failed(message) }
            })?;
            precompiled_problem = fetched.precompiled_problem;
        }
        let slot = self.running.clone().acquire_owned().await.map_err(|e| LoadError::Failed(e.to_string()))?;
        let loader = self.clone();
        // The slot moves with the work: a load that timed out still holds it
        // until its thread is done.
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            loader.load_blocking(&key, &want, precompiled_problem)
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(loaded)) => loaded.map_err(LoadError::Failed),
            Ok(Err(error)) => Err(LoadError::Failed(format!("the load task failed: {error}"))),
            Err(_) => Err(LoadError::Failed(format!(
                "loading took longer than {:?}; the host gave up (the operator validated this package: \
                 check the host's CPU and the plugin's size)",
                self.timeout
            ))),
        }
    }

    /// The cache directory, when packages are downloaded.
    pub(super) fn cache(&self) -> Option<&PathBuf> {
        match &self.packages {
            Packages::Downloaded { cache, .. } => Some(cache),
            Packages::SharedStore(_) => None,
        }
    }

    fn load_blocking(&self, key: &str, want: &Wanted, precompiled_problem: Option<String>) -> Result<Install, String> {
        let artifact = match &want.what {
            What::Builtin => {
                let limits = self.max_limits.grant([&want.limits]);
                let handler =
                    builtin::handler(key, &limits).ok_or_else(|| format!("{key:?} is not a builtin format"))?;
                return Ok(Install {
                    key: key.to_owned(),
                    origin: Origin::Builtin,
                    digest: None,
                    limits: None,
                    compilation: None,
                    enabled: want.enabled,
                    warnings: Vec::new(),
                    handler,
                });
            }
            What::Artifact(artifact) => artifact,
        };
        let Verified { package, mut precompiled } =
            artifact::read(self.packages.root(), artifact, self.runtime.engine_id()).map_err(|e| e.to_string())?;
        // Why the download left it out says more than "no such file".
        if let (Err(_), Some(problem)) = (&precompiled, precompiled_problem) {
            precompiled = Err(problem);
        }
        let limits = self.max_limits.grant([&package.manifest.resources, &want.limits]);
        let (plugin, compilation) =
            self.runtime.load_verified(&package, precompiled, limits).map_err(|e| e.to_string())?;
        Ok(Install {
            key: key.to_owned(),
            origin: Origin::Plugin {
                name: package.manifest.name.clone(),
                version: package.manifest.version.to_string(),
            },
            digest: Some(package.digest),
            limits: Some(limits),
            compilation: Some(compilation),
            enabled: want.enabled,
            warnings: package.manifest.warnings(),
            handler: Arc::new(plugin),
        })
    }
}
