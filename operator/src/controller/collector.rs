//! The store collector: removes entries no FormatPlugin references once their
//! grace period has passed, and keeps the store-size metric current.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::Api;
use wasmplug_host::plugin::Digest;

use super::{Context, Guarded};
use crate::metrics::Metrics;
use crate::store::Store;

/// Removes store entries no FormatPlugin references, after the grace period, and
/// keeps the store-size metric current. Runs until aborted.
///
/// Each round lists the FormatPlugins afresh rather than reading the controller's
/// cache: a list is complete by construction, so an entry is never collected
/// because the cache had not seen its object yet.
pub async fn collect_garbage(ctx: Arc<Context>, api: Api<Guarded>) {
    if let Err(error) = ctx.store.remove_partial() {
        tracing::warn!(%error, "failed to remove partial store entries");
    }
    loop {
        tokio::time::sleep(ctx.config.gc_interval).await;
        let referenced = match api.list(&Default::default()).await {
            Ok(list) => referenced_digests(&list.items),
            Err(error) => {
                tracing::warn!(%error, "failed to list FormatPlugins; collecting nothing this round");
                continue;
            }
        };
        collect_round(&ctx.store, referenced, ctx.config.gc_grace, &ctx.metrics).await;
    }
}

/// One round: removes the entries of `store` not in `referenced` and older than
/// `grace`, logs each, and sets the store-size metric.
pub(crate) async fn collect_round(store: &Store, referenced: HashSet<Digest>, grace: Duration, metrics: &Metrics) {
    let store = store.clone();
    let collected = tokio::task::spawn_blocking(move || {
        let removed = store.collect_garbage(&referenced, grace, SystemTime::now());
        (removed, store.count())
    })
    .await;
    match collected {
        Ok((Ok(removed), count)) => {
            for digest in removed {
                tracing::info!(%digest, "removed an unreferenced store entry");
            }
            metrics.set_artifacts(count);
        }
        Ok((Err(error), _)) => tracing::warn!(%error, "failed to collect unreferenced store entries"),
        Err(error) => tracing::warn!(%error, "store collection task failed"),
    }
}

/// The digests some FormatPlugin's status references (read untyped: an object
/// whose spec cannot be read still protects its artifact).
fn referenced_digests(objects: &[Guarded]) -> HashSet<Digest> {
    let digest = |o: &Guarded| o.data.get("status")?.get("artifact")?.get("digest")?.as_str()?.parse().ok();
    objects.iter().filter_map(digest).collect()
}
