//! The reconcile steps: publish a FormatPlugin's spec (fetch → validate → claim the
//! format key → store), decide whether there is anything to do, and classify what
//! went wrong for the status.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use wasmplug_crds::conditions::Reason;
use wasmplug_crds::{Artifact, Capabilities, FormatPlugin, GitRef, PluginInfo, Precompiled, SourceKind, ownership};
use wasmplug_host::plugin::Digest;
use wasmplug_host::runtime::requested_by;

use super::{Context, Error, source, trust};
use crate::fetch::FetchError;
use crate::metrics::ReconcileResult;
use crate::status::{Failure, Outcome, Step};
use crate::validate::{self, Expected, ValidateError, Validated};
use crate::verify::VerifyError;

pub async fn apply(plugin: Arc<FormatPlugin>, ctx: &Arc<Context>) -> Result<Action, Error> {
    // Before anything else, suspended or not: an object that may not publish
    // has what it published withdrawn.
    if let Err(refused) = ctx.config.namespaces.check(&plugin.namespace().unwrap_or_default()) {
        finish(&plugin, ctx, Err(refused.into())).await?;
        return Ok(Action::await_change());
    }
    if plugin.spec.suspend {
        tracing::info!("suspended: nothing is fetched; what was published keeps serving");
        return Ok(Action::await_change());
    }
    let Some(kind) = plugin.spec.source.kind() else {
        finish(&plugin, ctx, Err(Error::NoSource)).await?;
        return Ok(Action::await_change());
    };
    match freshness(&plugin, kind, ctx) {
        Freshness::UpToDate => {
            ctx.metrics.reconciled(ReconcileResult::UpToDate);
            return Ok(next_check(&plugin, kind, ctx));
        }
        // Published by an older operator, in the store, but not described for
        // downloads: describe it (the reporter does), fetching nothing.
        Freshness::Undescribed(artifact, info) => {
            finish(&plugin, ctx, Ok((Some(*artifact), info))).await?;
            return Ok(next_check(&plugin, kind, ctx));
        }
        Freshness::Stale => {}
    }
    if let Some(wait) = Handled::recently(&plugin, ctx) {
        ctx.metrics.reconciled(ReconcileResult::UpToDate);
        return Ok(if moves(&plugin, kind) { Action::requeue(wait) } else { Action::await_change() });
    }
    let published = publish(&plugin, kind, ctx).await;
    if finish(&plugin, ctx, published).await? {
        Handled::record(&plugin, ctx);
    }
    Ok(next_check(&plugin, kind, ctx))
}

/// The generation and fetch request of an object that a reconcile finished
/// handling (published, or failed in a way only a change fixes), and when.
///
/// Reconciles also follow changes that are not the user's (the host rollup
/// writes status; labels change): one that finds the same generation and
/// request handled less than the source's interval ago fetches nothing. So a
/// moving source is fetched once per interval, and a failed fixed one once per
/// change (or interval), whatever else happens to the object.
#[derive(Debug)]
pub(super) struct Handled {
    generation: Option<i64>,
    requested_at: Option<String>,
    at: Instant,
}

impl Handled {
    /// How long until `plugin`'s handling is due again, if it was handled recently.
    fn recently(plugin: &FormatPlugin, ctx: &Context) -> Option<std::time::Duration> {
        let handled = ctx.handled.lock().unwrap_or_else(|p| p.into_inner());
        let last = handled.get(&plugin.uid()?)?;
        let same =
            last.generation == plugin.metadata.generation && last.requested_at.as_deref() == plugin.requested_at();
        interval(plugin, ctx).checked_sub(last.at.elapsed()).filter(|_| same)
    }

    fn record(plugin: &FormatPlugin, ctx: &Context) {
        let Some(uid) = plugin.uid() else { return };
        let handled = Handled {
            generation: plugin.metadata.generation,
            requested_at: plugin.requested_at().map(str::to_owned),
            at: Instant::now(),
        };
        ctx.handled.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, handled);
    }

    /// Forgets `plugin` (it is gone).
    pub(super) fn forget(plugin: &FormatPlugin, ctx: &Context) {
        if let Some(uid) = plugin.uid() {
            ctx.handled.lock().unwrap_or_else(|p| p.into_inner()).remove(&uid);
        }
    }
}

/// Reports `published`; says whether that settled the object until it (or its
/// source) changes: published, or failed in a way no other object can fix.
/// Errors are those to retry with backoff.
async fn finish(
    plugin: &FormatPlugin,
    ctx: &Arc<Context>,
    published: Result<(Option<Artifact>, PluginInfo), Error>,
) -> Result<bool, Error> {
    let outcome = match published {
        Ok((artifact, info)) => Outcome::Published { artifact, plugin: info },
        Err(error) => match failure_of(&error) {
            Some(failure) => Outcome::Failed(failure),
            None => {
                ctx.metrics.reconciled(ReconcileResult::Error);
                return Err(error);
            }
        },
    };
    super::report::report(plugin, &outcome, ctx).await?;
    match outcome {
        Outcome::Published { .. } => {
            ctx.metrics.reconciled(ReconcileResult::Published);
            Ok(true)
        }
        Outcome::Failed(failure) if failure.transient => {
            ctx.metrics.reconciled(ReconcileResult::Retrying);
            Err(Error::Retry(failure.message))
        }
        Outcome::Failed(failure) => {
            ctx.metrics.reconciled(ReconcileResult::Failed);
            // A conflict ends when the key's owner goes, which reconciles this one.
            Ok(failure.reason != Reason::FormatConflict)
        }
    }
}

/// Fetches, validates, claims the key and stores; returns what status will say.
async fn publish(
    plugin: &FormatPlugin,
    kind: SourceKind<'_>,
    ctx: &Arc<Context>,
) -> Result<(Option<Artifact>, PluginInfo), Error> {
    if let SourceKind::Builtin(builtin) = kind {
        let key = &builtin.format;
        if !wasmplug_host::builtin::is_builtin(key) {
            return Err(Error::UnknownBuiltin(format!("unknown builtin format {key:?}")));
        }
        claim(plugin, key, ctx)?;
        return Ok((None, builtin_info(key)));
    }
    let fetching = ctx.fetching.acquire().await.map_err(|e| Error::Task(e.to_string()))?;
    let started = Instant::now();
    let fetched = source::fetch(plugin, kind, ctx).await;
    ctx.metrics.fetched(kind.name(), started.elapsed());
    let fetched = fetched?;
    drop(fetching);
    tracing::debug!(source = kind.name(), took = ?started.elapsed(), revision = fetched.revision, "fetched");
    let signature = trust::verify(plugin, &fetched, ctx).await?;
    let revision = fetched.revision.clone();
    let (runtime, spec) = (ctx.runtime.clone(), plugin.spec.clone());
    let limits = ctx.config.max_limits.grant([&requested_by(plugin)]);
    let _compiling = ctx.compiling.acquire().await.map_err(|e| Error::Task(e.to_string()))?;
    let validated = tokio::task::spawn_blocking(move || {
        let expected = Expected { sha256: spec.sha256.as_deref(), format_key: spec.format_key.as_deref(), limits };
        validate::validate(fetched, expected, &runtime)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    tracing::debug!(took = ?started.elapsed(), digest = %validated.package.digest, "validated and precompiled");
    claim(plugin, &validated.package.manifest.format_key, ctx)?;
    let info = plugin_info(&validated);
    let artifact = store(ctx, validated, revision).await?;
    Ok((Some(Artifact { signature, ..artifact }), info))
}

/// Refuses a key that another FormatPlugin holds (see `wasmplug_crds::ownership`).
fn claim(plugin: &FormatPlugin, key: &str, ctx: &Context) -> Result<(), Error> {
    let all = ctx.readable_plugins();
    ownership::may_claim(plugin, key, &all)
        .map_err(|owner| Error::Conflict { key: key.to_owned(), owner: owner.qualified_name() })
}

/// Publishes the validated package and its precompiled form into the store.
async fn store(ctx: &Arc<Context>, validated: Validated, revision: String) -> Result<Artifact, Error> {
    let store = ctx.store.clone();
    let digest = validated.package.digest;
    let precompiled = Precompiled {
        file: Precompiled::file_for(&validated.engine),
        engine: validated.engine.clone(),
        digest: Some(validated.precompiled.digest().to_string()),
        size: Some(i64::try_from(validated.precompiled.bytes().len()).unwrap_or(i64::MAX)),
    };
    let precompiled_file = precompiled.file.clone();
    let size = validated.package.wasm.len();
    let manifest = super::report::file_digest(&validated.manifest_file);
    tokio::task::spawn_blocking(move || {
        store.publish(
            &digest,
            &[
                (wasmplug_host::plugin::MANIFEST_FILE, &validated.manifest_file),
                (wasmplug_host::plugin::WASM_FILE, &validated.package.wasm),
            ],
        )?;
        store.add_file(&digest, &precompiled_file, validated.precompiled.bytes())
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    Ok(Artifact {
        digest: digest.to_string(),
        path: Artifact::path_for(&digest.to_string()),
        // The reporter describes every artifact it writes for downloads.
        url: None,
        revision,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        last_update_time: Time(Timestamp::now()),
        manifest: Some(manifest),
        precompiled: Some(precompiled),
        signature: None,
    })
}

fn plugin_info(validated: &Validated) -> PluginInfo {
    let manifest = &validated.package.manifest;
    PluginInfo {
        name: manifest.name.clone(),
        version: manifest.version.to_string(),
        format_key: manifest.format_key.clone(),
        display_name: manifest.display_name.clone(),
        extensions: manifest.extensions.clone(),
        capabilities: manifest.capabilities,
    }
}

fn builtin_info(key: &str) -> PluginInfo {
    PluginInfo {
        name: key.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        format_key: key.to_owned(),
        display_name: None,
        extensions: Vec::new(),
        capabilities: Capabilities {
            parse_metadata: true,
            validate_artifact: true,
            generate_index: true,
            handle_request: false,
        },
    }
}

/// The status step and reason for an error a user must see; `None` for errors that
/// are only retried (API errors).
fn failure_of(error: &Error) -> Option<Failure> {
    let failure =
        |step, reason, transient| Failure { step, reason, message: error.to_string(), transient, withdraw: false };
    Some(match error {
        Error::Fetch(FetchError::NotAllowed { .. }) => failure(Step::Fetch, Reason::SourceNotAllowed, false),
        Error::Fetch(FetchError::ContentDigest { .. }) => failure(Step::Fetch, Reason::DigestMismatch, false),
        // The registry holds an artifact, but not one of a shape wasmplug takes.
        Error::Fetch(FetchError::ArtifactShape { .. }) => failure(Step::Validate, Reason::ValidationFailed, false),
        Error::Fetch(fetch) => failure(Step::Fetch, Reason::FetchFailed, fetch.is_transient()),
        Error::SourceNotAllowed(_) => failure(Step::Fetch, Reason::SourceNotAllowed, false),
        Error::Verify(VerifyError::Missing { .. }) => failure(Step::Verify, Reason::SignatureMissing, false),
        Error::Verify(
            VerifyError::Malformed { .. } | VerifyError::Invalid { .. } | VerifyError::Unsupported { .. },
        ) => failure(Step::Verify, Reason::SignatureInvalid, false),
        // The keys live outside the object (a ConfigMap, a Secret): retried.
        Error::Verify(VerifyError::NoKeys { .. } | VerifyError::Keys(_)) => {
            failure(Step::Verify, Reason::TrustedKeysInvalid, true)
        }
        Error::Validate(ValidateError::DigestMismatch { .. }) => failure(Step::Validate, Reason::DigestMismatch, false),
        Error::Validate(_) | Error::UnknownBuiltin(_) | Error::NoSource => {
            failure(Step::Validate, Reason::ValidationFailed, false)
        }
        // A conflicting object serves nothing, not even a last good version of the key.
        Error::Conflict { .. } => Failure { withdraw: true, ..failure(Step::Publish, Reason::FormatConflict, false) },
        Error::NamespaceNotAllowed(_) => {
            Failure { withdraw: true, ..failure(Step::Publish, Reason::NamespaceNotAllowed, false) }
        }
        Error::Store(_) => failure(Step::Publish, Reason::StoreFailed, true),
        Error::Kube { .. } | Error::Task(_) | Error::Retry(_) | Error::Finalizer(_) => return None,
    })
}

/// Whether a FormatPlugin's status is current.
enum Freshness {
    /// The status reflects this spec and its source cannot have moved: nothing to do.
    UpToDate,
    /// Like [`Freshness::UpToDate`], but the artifact lacks what hosts need to
    /// download it (plugin.toml's digest, the URL as configured now).
    Undescribed(Box<Artifact>, PluginInfo),
    /// Fetch and publish.
    Stale,
}

/// Whether the published status already reflects this spec and its source cannot
/// have moved: nothing to fetch.
fn freshness(plugin: &FormatPlugin, kind: SourceKind<'_>, ctx: &Context) -> Freshness {
    if moves(plugin, kind) || !plugin.is_ready_at_current_generation() || plugin.has_unhandled_request() {
        return Freshness::Stale;
    }
    let Some(status) = &plugin.status else { return Freshness::Stale };
    match (&status.artifact, kind, &status.plugin) {
        (None, SourceKind::Builtin(_), _) => Freshness::UpToDate,
        (Some(artifact), _, Some(info)) => {
            let stored = artifact.digest.parse::<Digest>().is_ok_and(|d| ctx.store.path_of(&d).is_dir());
            // A precompiled file described without its digest (an older operator's)
            // is republished with one, or hosts would compile plugin.wasm.
            let compiled = artifact
                .precompiled
                .as_ref()
                .is_some_and(|p| p.engine == ctx.runtime.engine_id() && p.digest.is_some());
            let described =
                artifact.manifest.is_some() && artifact.url == super::report::artifact_url(ctx, &artifact.path);
            // Published before a signature was required (the policy or
            // spec.verify came later): verified now.
            let verified = artifact.signature.is_some() || ctx.config.signatures.requirement(&plugin.spec).is_none();
            match (stored && compiled && verified, described) {
                (true, true) => Freshness::UpToDate,
                (true, false) => Freshness::Undescribed(Box::new(artifact.clone()), info.clone()),
                (false, _) => Freshness::Stale,
            }
        }
        _ => Freshness::Stale,
    }
}

/// Whether the source can change without the object changing: a branch (or the
/// default branch), a URL without a sha256 pin, or an OCI tag or semver range.
fn moves(plugin: &FormatPlugin, kind: SourceKind<'_>) -> bool {
    match kind {
        SourceKind::Git(git) => {
            !matches!(git.reference, Some(GitRef { tag: Some(_), .. } | GitRef { commit: Some(_), .. }))
        }
        SourceKind::Url(_) => plugin.spec.sha256.is_none(),
        SourceKind::Oci(oci) => oci.reference.as_ref().is_none_or(|r| r.digest.is_none()),
        SourceKind::Local(_) | SourceKind::Builtin(_) => false,
    }
}

fn next_check(plugin: &FormatPlugin, kind: SourceKind<'_>, ctx: &Context) -> Action {
    if !moves(plugin, kind) {
        return Action::await_change();
    }
    Action::requeue(interval(plugin, ctx))
}

/// How often `plugin`'s source is checked again when it moves.
fn interval(plugin: &FormatPlugin, ctx: &Context) -> std::time::Duration {
    plugin.spec.interval.as_ref().map_or(ctx.config.default_interval, wasmplug_crds::Duration::as_std)
}
