//! Telling the world what a reconcile found: the status (by server-side apply,
//! only when it changed), Events and the matching structured log lines, for
//! readable objects, unreadable ones and removals.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use wasmplug_crds::conditions::Reason;
use wasmplug_crds::{Artifact, FileDigest, FormatPlugin, FormatPluginStatus};
use wasmplug_host::plugin::{Digest, MANIFEST_FILE};

use super::{Context, Error, FIELD_MANAGER, FINALIZER, Guarded, resource};
use crate::events;
use crate::metrics::ReconcileResult;
use crate::status::{self, Failure, Notice, Outcome, Step, Subject};

/// Writes the status `outcome` leads to (when it differs) and records its Events.
///
/// What changed is judged against the status as the API server has it now, not
/// as the watch cache last showed it: right after a status write the cache may
/// still hold the one before, and a quick disable-then-enable would otherwise
/// lose its Enabled Event.
pub async fn report(plugin: &FormatPlugin, outcome: &Outcome, ctx: &Context) -> Result<(), Error> {
    let (namespace, name) = (plugin.namespace().unwrap_or_default(), plugin.name_any());
    let current = api_in(ctx, &namespace)
        .get_status(&name)
        .await
        .map_err(|source| Error::Kube { action: "read status", source })?;
    let previous = status_of(&current);
    let subject = Subject { previous: previous.as_ref(), ..Subject::from(plugin) };
    let (mut next, notices) = status::next(subject, outcome, Time(Timestamp::now()));
    if let Some(artifact) = &mut next.artifact {
        describe_for_download(artifact, ctx).await;
    }
    if previous.as_ref() != Some(&next) {
        write_status(ctx, &namespace, &name, &next).await?;
    }
    for notice in notices {
        record(&plugin.object_ref(&()), notice, ctx).await;
    }
    Ok(())
}

/// Where the package at `path` is served, as `status.artifact.url` says it.
pub(super) fn artifact_url(ctx: &Context, path: &str) -> Option<String> {
    let base = ctx.config.artifact_url.as_ref()?;
    Some(format!("{}/{path}", base.as_str().trim_end_matches('/')))
}

/// Completes what hosts need to download `artifact`, whatever status it is
/// written with (also the last good version a failure keeps): its URL as
/// configured now, and plugin.toml's digest, from the store, when an older
/// operator published it without one.
async fn describe_for_download(artifact: &mut Artifact, ctx: &Context) {
    artifact.url = artifact_url(ctx, &artifact.path);
    if artifact.manifest.is_some() {
        return;
    }
    let Ok(digest) = artifact.digest.parse::<Digest>() else { return };
    let path = ctx.store.path_of(&digest).join(MANIFEST_FILE);
    match tokio::fs::read(&path).await {
        Ok(manifest) => artifact.manifest = Some(file_digest(&manifest)),
        Err(error) => tracing::warn!(path = %path.display(), %error, "cannot describe plugin.toml for downloads"),
    }
}

/// The digest and size of a file's `contents`, as status gives them.
pub(super) fn file_digest(contents: &[u8]) -> FileDigest {
    FileDigest { digest: Digest::of(contents).to_string(), size: i64::try_from(contents.len()).unwrap_or(i64::MAX) }
}

/// The untyped API for FormatPlugins in `namespace`.
fn api_in(ctx: &Context, namespace: &str) -> Api<Guarded> {
    wasmplug_host::watch::api(ctx.client.clone(), Some(namespace))
}

/// The part of the status `object` carries that the reconciler writes (the
/// host rollup writes the rest), if it can be read.
fn status_of(object: &Guarded) -> Option<FormatPluginStatus> {
    let status = object.data.get("status").and_then(|status| serde_json::from_value(status.clone()).ok());
    status.map(crate::fleet::without_rollup)
}

/// Writes `status` by server-side apply with the operator's field manager.
async fn write_status(ctx: &Context, namespace: &str, name: &str, status: &FormatPluginStatus) -> Result<(), Error> {
    let api = api_in(ctx, namespace);
    let patch = serde_json::json!({"apiVersion": "wasmplug.dev/v1alpha1", "kind": "FormatPlugin", "status": status});
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map(drop)
        .map_err(|source| Error::Kube { action: "write status", source })
}

/// Records an Event about `regarding` and the matching structured log line (the
/// audit trail).
async fn record(regarding: &ObjectReference, notice: Notice, ctx: &Context) {
    events::log(regarding, &notice);
    events::publish(&ctx.recorder, regarding, &notice, "Reconcile").await;
}

/// Reports an object that cannot be read as a FormatPlugin (Ready=False,
/// ValidationFailed, once) and, when it is being deleted, lets it go.
pub async fn unreadable(object: &Guarded, error: &str, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let api = api_in(ctx, &namespace);
    let name = object.name_any();
    if object.metadata.deletion_timestamp.is_some() {
        let finalizers: Vec<&String> = object.finalizers().iter().filter(|f| *f != FINALIZER).collect();
        let patch = serde_json::json!({"metadata": {"finalizers": finalizers}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Kube { action: "remove the finalizer", source })?;
        return Ok(Action::await_change());
    }
    let previous = status_of(object);
    let failure = Failure {
        step: Step::Validate,
        reason: Reason::ValidationFailed,
        message: format!("failed to read the FormatPlugin: {error}; correct its spec"),
        transient: false,
        withdraw: false,
    };
    let subject = Subject {
        previous: previous.as_ref(),
        generation: object.metadata.generation,
        enabled: true,
        requested_at: None,
    };
    let (next, notices) = status::next(subject, &Outcome::Failed(failure), Time(Timestamp::now()));
    ctx.metrics.reconciled(ReconcileResult::Failed);
    if previous.as_ref() != Some(&next) {
        write_status(ctx, &namespace, &name, &next).await?;
    }
    for notice in notices {
        record(&object.object_ref(&resource()), notice, ctx).await;
    }
    Ok(Action::await_change())
}

/// Records the removal; hosts unload the format when the object is gone. (Objects
/// that were refused its key are reconciled again by the controller's watch.)
pub async fn cleanup(plugin: Arc<FormatPlugin>, ctx: &Arc<Context>) -> Result<Action, Error> {
    super::apply::Handled::forget(&plugin, ctx);
    if let Some(key) = plugin.claimed_format_key() {
        let note = format!("removed format {key}; hosts unload it");
        let notice = Notice { type_: EventType::Normal, reason: Reason::Removed, note };
        record(&plugin.object_ref(&()), notice, ctx).await;
    }
    Ok(Action::await_change())
}
