//! Replicas mirror each other by digest (docs/architecture.md, "Distribution"):
//! when each replica has a store of its own, every replica, leader or not,
//! keeps in its store every package a FormatPlugin's status names, downloading
//! what it lacks from its peers' artifact servers and checking it against
//! status like a host does. So a standby that takes over, or a pod that
//! replaces one in a rolling update, serves every published package, also
//! those whose source is gone; and a replica is ready only once its first
//! pass is done. Each stored file is checked against its digest once per
//! process (published files never change), so a store damaged while its
//! replica was down is repaired from the others before the replica is ready.
//!
//! Each replica also collects its own store's garbage here, by the same rule
//! as the shared store's collector.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use url::Url;
use wasmplug_crds::{Artifact, FormatPlugin};
use wasmplug_host::artifact;
use wasmplug_host::download::{Downloader, is_intact};
use wasmplug_host::plugin::{Digest, MANIFEST_FILE, WASM_FILE};

use crate::metrics::Metrics;
use crate::store::{Published, Store};

/// Where a replica finds the other replicas' artifact servers.
#[derive(Debug)]
pub enum Peers {
    /// These base URLs; a name that resolves to several addresses (a headless
    /// Service) stands for each of them.
    Urls(Vec<Url>),
    /// The ready endpoints of a Service (its EndpointSlices), on `port`:
    /// needs no cluster DNS, and lists exactly the replicas that are ready.
    Service { slices: Box<Api<EndpointSlice>>, name: String, port: u16 },
}

/// What a replica mirrors from whom.
#[derive(Debug)]
pub struct Mirror {
    pub store: Store,
    pub downloader: Downloader,
    pub peers: Peers,
    /// This replica's own artifact server addresses, left out of the peers.
    pub own: Vec<SocketAddr>,
    /// How often a pass runs when nothing changes.
    pub interval: Duration,
    /// How long an unreferenced entry is kept.
    pub grace: Duration,
    pub metrics: Arc<Metrics>,
}

impl Mirror {
    /// Mirrors until the task is dropped: a pass at start, on every change to
    /// a FormatPlugin, and every interval. Calls `on_first_pass` once the
    /// first pass is done.
    pub async fn run(self, api: Api<DynamicObject>, on_first_pass: impl FnOnce()) {
        let mut on_first_pass = Some(on_first_pass);
        let mut verified = HashSet::new();
        let changes = watcher::watcher(api.clone(), watcher::Config::default().any_semantic()).default_backoff();
        futures::pin_mut!(changes);
        loop {
            match api.list(&Default::default()).await {
                Ok(list) => {
                    verified = self.pass(&list.items, verified).await;
                    if let Some(ready) = on_first_pass.take() {
                        tracing::info!("first mirror pass done");
                        ready();
                    }
                }
                Err(error) => tracing::warn!(%error, "failed to list FormatPlugins; mirroring nothing this round"),
            }
            tokio::select! {
                _ = changes.next() => {
                    // Let a burst of changes settle into one pass.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Fetches every package `objects` name that the store lacks or holds
    /// damaged, then collects unreferenced entries. `verified` are the files
    /// found intact before (published files never change); returns them.
    async fn pass(&self, objects: &[DynamicObject], verified: HashSet<String>) -> HashSet<String> {
        let artifacts: Vec<Artifact> = objects
            .iter()
            .filter_map(|object| object.clone().try_parse::<FormatPlugin>().ok()?.status?.artifact)
            .collect();
        let (store, listed) = (self.store.clone(), artifacts.clone());
        let checked = tokio::task::spawn_blocking(move || {
            let mut verified = verified;
            let missing: Vec<Artifact> =
                listed.into_iter().filter(|artifact| !holds(&store, artifact, &mut verified)).collect();
            (missing, verified)
        })
        .await;
        let Ok((missing, verified)) = checked else {
            tracing::warn!("the mirror's store check failed; checking again next pass");
            return HashSet::new();
        };
        if !missing.is_empty() {
            let peers = self.resolve_peers().await;
            for artifact in &missing {
                self.fetch(&peers, artifact).await;
            }
        }
        let referenced: HashSet<Digest> = artifacts.iter().filter_map(|a| a.digest.parse().ok()).collect();
        crate::controller::collector::collect_round(&self.store, referenced, self.grace, &self.metrics).await;
        verified
    }

    /// Downloads `artifact` from `peers` into a staging directory and
    /// publishes it into the store as the operator publishes a package.
    async fn fetch(&self, peers: &[Url], artifact: &Artifact) {
        let Ok(digest) = artifact.digest.parse::<Digest>() else { return };
        let staging = match self.store.staging_dir(&digest) {
            Ok(staging) => staging,
            Err(error) => return tracing::warn!(%error, "failed to mirror a package"),
        };
        let fetched = self.downloader.fetch_package(peers, staging.path(), artifact, None).await;
        if let Err(error) = fetched {
            return tracing::warn!(%digest, %error, "failed to mirror a package from the other replicas; trying again");
        }
        let (store, dir) = (self.store.clone(), staging.path().join(&artifact.path));
        let precompiled = artifact.precompiled.as_ref().map(|p| p.file.clone());
        let published = tokio::task::spawn_blocking(move || publish_from(&store, &digest, &dir, precompiled)).await;
        match published {
            Ok(Ok(())) => tracing::info!(%digest, "mirrored a package from another replica"),
            Ok(Err(error)) => tracing::warn!(%digest, %error, "failed to publish a mirrored package"),
            Err(error) => tracing::warn!(%digest, %error, "mirror task failed"),
        }
    }

    /// The peers' artifact servers, one URL per address, this replica's own
    /// addresses left out.
    async fn resolve_peers(&self) -> Vec<Url> {
        let urls = match &self.peers {
            Peers::Urls(urls) => urls.clone(),
            Peers::Service { slices, name, port } => service_endpoints(slices, name, *port).await,
        };
        let mut resolved = Vec::new();
        for peer in &urls {
            let (Some(host), Some(port)) = (peer.host_str(), peer.port_or_known_default()) else { continue };
            let addresses = match tokio::net::lookup_host((host, port)).await {
                Ok(addresses) => addresses.collect::<Vec<_>>(),
                Err(error) => {
                    tracing::debug!(peer = %peer, %error, "failed to resolve a mirror peer");
                    continue;
                }
            };
            for address in addresses.into_iter().filter(|address| !self.own.contains(address)) {
                let mut url = peer.clone();
                if url.set_ip_host(address.ip()).is_ok() && url.set_port(Some(address.port())).is_ok() {
                    resolved.push(url);
                }
            }
        }
        resolved
    }
}

/// Whether `store` holds every file `artifact` names, intact ([`is_intact`]),
/// each checked once per process: `verified` records those found intact. A
/// file that fails its check is removed, to be mirrored again.
fn holds(store: &Store, artifact: &Artifact, verified: &mut HashSet<String>) -> bool {
    let Ok(listing) = artifact::listing(artifact, None) else { return true };
    let Ok(digest) = artifact.digest.parse::<Digest>() else { return true };
    let files = [Some(listing.wasm), listing.manifest, listing.precompiled.ok()];
    files.iter().flatten().all(|file| {
        let key = format!("{}/{}", digest.hex(), file.name);
        if verified.contains(&key) {
            return true;
        }
        let intact = is_intact(&store.path_of(&digest).join(&file.name), file);
        if intact {
            verified.insert(key);
        }
        intact
    })
}

/// `http://<address>:<port>` of every ready endpoint of Service `name`.
async fn service_endpoints(slices: &Api<EndpointSlice>, name: &str, port: u16) -> Vec<Url> {
    let selector = format!("kubernetes.io/service-name={name}");
    let list = match slices.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(service = name, %error, "failed to list the peers' endpoints");
            return Vec::new();
        }
    };
    let ready = |endpoint: &&Endpoint| endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
    list.items
        .iter()
        .flat_map(|slice| slice.endpoints.iter().filter(ready).flat_map(|endpoint| endpoint.addresses.iter()))
        .filter_map(|address| {
            let ip: std::net::IpAddr = address.parse().ok()?;
            Url::parse(&format!("http://{}", SocketAddr::new(ip, port))).ok()
        })
        .collect()
}

/// Publishes the verified files in `dir` as the entry for `digest` (or puts
/// back those an existing entry lacks), the precompiled file (when there is
/// one) joining it.
fn publish_from(
    store: &Store,
    digest: &Digest,
    dir: &std::path::Path,
    precompiled: Option<String>,
) -> Result<(), crate::store::StoreError> {
    let read = |name: &str| -> Result<Vec<u8>, crate::store::StoreError> {
        let path: PathBuf = dir.join(name);
        std::fs::read(&path).map_err(|source| crate::store::StoreError::Io { action: "read", path, source })
    };
    let (manifest, wasm) = (read(MANIFEST_FILE)?, read(WASM_FILE)?);
    let files = [(MANIFEST_FILE, manifest.as_slice()), (WASM_FILE, wasm.as_slice())];
    if store.publish(digest, &files)? == Published::AlreadyPresent {
        // The entry was there with a file missing or damaged: put it back.
        for (name, contents) in files {
            store.add_file(digest, name, contents)?;
        }
    }
    if let Some(name) = precompiled.filter(|name| dir.join(name).is_file()) {
        store.add_file(digest, &name, &read(&name)?)?;
    }
    Ok(())
}
