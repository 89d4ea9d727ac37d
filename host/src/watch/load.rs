//! Loading what a format key should serve: read and verify it from the store
//! (or take the builtin), compile or deserialize it and call its `format-key`,
//! all on the blocking pool and bounded by a timeout, so that no load holds up
//! the watch loop, another key, a disable or readiness. A load that times out
//! has failed; its thread finishes in the background and its result is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::wanted::{Wanted, What};
use crate::artifact::{self, Verified};
use crate::builtin;
use crate::registry::{Install, Origin};
use crate::runtime::{CallLimits, MAX_CONCURRENT_LOADS, Runtime};

/// Loads formats for a [`super::ClusterSource`].
#[derive(Clone, Debug)]
pub struct Loader {
    runtime: Arc<Runtime>,
    store_root: PathBuf,
    max_limits: CallLimits,
    timeout: Duration,
    /// At most [`MAX_CONCURRENT_LOADS`] at once (each compiles and instantiates).
    running: Arc<Semaphore>,
}

impl Loader {
    /// Loads from the store at `store_root`, granting at most `max_limits`;
    /// each load may take up to `timeout`.
    pub fn new(runtime: Arc<Runtime>, store_root: PathBuf, max_limits: CallLimits, timeout: Duration) -> Self {
        let running = Arc::new(Semaphore::new(MAX_CONCURRENT_LOADS as usize));
        Loader { runtime, store_root, max_limits, timeout, running }
    }

    /// Loads what `want` names for `key`, once one of the load slots is free;
    /// the timeout counts from then.
    pub(super) async fn load(&self, key: String, want: Wanted) -> Result<Install, String> {
        let slot = self.running.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let loader = self.clone();
        // The slot moves with the work: a load that timed out still holds it
        // until its thread is done.
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            loader.load_blocking(&key, &want)
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(error)) => Err(format!("the load task failed: {error}")),
            Err(_) => Err(format!(
                "loading took longer than {:?}; the host gave up (the operator validated this package: \
                 check the host's CPU and the plugin's size)",
                self.timeout
            )),
        }
    }

    fn load_blocking(&self, key: &str, want: &Wanted) -> Result<Install, String> {
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
                    handler,
                });
            }
            What::Artifact(artifact) => artifact,
        };
        let Verified { package, precompiled } =
            artifact::read(&self.store_root, artifact, self.runtime.engine_id()).map_err(|e| e.to_string())?;
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
            handler: Arc::new(plugin),
        })
    }
}
