//! The FormatPlugin controller: a short driver around [`apply`] (fetch → validate
//! → store → status) and [`cleanup`], with the Context holding everything
//! IO-shaped, the error policy, and the background store collector.
//!
//! Errors a user must fix are reported in status and wait for a change (or the
//! next interval, for sources that move); network, store and API errors are
//! retried with per-object exponential backoff.

mod apply;
pub(crate) mod collector;
mod report;
mod source;
mod trust;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store as Reflection};
use kube::runtime::{finalizer, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;
use wasmplug_crds::FormatPlugin;
use wasmplug_crds::conditions::{ConditionType, Reason};
use wasmplug_host::runtime::{CallLimits, MAX_CONCURRENT_LOADS, Runtime};

use crate::fetch::{FetchError, FetchLimits};
use crate::metrics::Metrics;
use crate::policy::{NamespaceNotAllowed, PublishingNamespaces, SourceDenied, SourcePolicy};
use crate::store::{Store, StoreError};
use crate::validate::ValidateError;
use crate::verify::{SignaturePolicy, VerifyError};

/// The finalizer that lets the operator record a plugin's removal.
pub const FINALIZER: &str = "wasmplug.dev/cleanup";
/// The field manager of every status the operator writes.
pub const FIELD_MANAGER: &str = "wasmplug-operator";

/// Operator settings that are not per object.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where fetches may write temporary files (removed when each fetch ends).
    pub scratch_dir: PathBuf,
    /// How often moving sources (branches, URLs) are re-checked when a
    /// FormatPlugin sets no `interval`.
    pub default_interval: Duration,
    /// Size limits of every fetch; the timeout comes from each object's spec.
    pub fetch_limits: FetchLimits,
    /// How long an unreferenced store entry is kept before it is removed.
    pub gc_grace: Duration,
    /// How often the store is checked for unreferenced entries.
    pub gc_interval: Duration,
    /// What sources may reach (the webhook checks the same).
    pub sources: SourcePolicy,
    /// The namespaces whose FormatPlugins may publish formats.
    pub namespaces: PublishingNamespaces,
    /// Fetches running at once (each may hold a whole download and its
    /// unpacked files in memory); more wait.
    pub max_concurrent_fetches: usize,
    /// The artifact server's address as hosts reach it, for `status.artifact.url`.
    pub artifact_url: Option<url::Url>,
    /// Which plugins must be signed, and the cluster-wide trusted keys.
    pub signatures: SignaturePolicy,
    /// The cluster's per-call maximum (`--max-memory`, `--max-call-ms`,
    /// `--max-fuel`, shared with the hosts): a plugin is validated under the
    /// limits hosts will grant it.
    pub max_limits: CallLimits,
}

/// Everything a reconcile needs from the outside world.
pub struct Context {
    pub client: Client,
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub http: reqwest::Client,
    pub recorder: Recorder,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Every FormatPlugin, as the controller last saw it (for format-key ownership).
    /// Held untyped: see [`Guarded`].
    plugins: Reflection<Guarded>,
    /// Consecutive failures per object, for backoff.
    failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
    /// What each object's last finished reconcile handled (by UID): see
    /// [`apply::Handled`].
    handled: Mutex<HashMap<String, apply::Handled>>,
    /// Validation compiles components and already uses every core (wasmtime
    /// compiles functions in parallel); more at once only adds memory. At most
    /// the runtime's `MAX_CONCURRENT_LOADS`, which its instance pool has room for.
    compiling: tokio::sync::Semaphore,
    /// A fetch holds up to a whole download and its unpacked files in memory;
    /// at most `Config::max_concurrent_fetches` run at once.
    fetching: tokio::sync::Semaphore,
}

/// FormatPlugins are watched untyped, and each is read into a [`FormatPlugin`]
/// when it is reconciled. A typed watch fails its whole list when one stored
/// object cannot be read (a spec the API server's rules let through), stalling
/// every object; this way that one object is reported and the rest carry on.
pub type Guarded = DynamicObject;

fn resource() -> ApiResource {
    ApiResource::erase::<FormatPlugin>(&())
}

impl Context {
    /// Every FormatPlugin the controller has seen that can be read.
    fn readable_plugins(&self) -> Vec<FormatPlugin> {
        self.plugins.state().iter().filter_map(|object| read(object).ok()).collect()
    }
}

/// Reads an untyped object as a FormatPlugin.
fn read(object: &Guarded) -> Result<FormatPlugin, kube::core::dynamic::ParseDynamicObjectError> {
    object.clone().try_parse()
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("store", &self.store).field("config", &self.config).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    SourceNotAllowed(#[from] SourceDenied),
    #[error(transparent)]
    NamespaceNotAllowed(#[from] NamespaceNotAllowed),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "format key {key:?} is already served by FormatPlugin {owner}; delete one of them or change its format key"
    )]
    Conflict { key: String, owner: String },
    #[error("{0}; builtin formats are: {builtins}", builtins = wasmplug_host::builtin::KEYS.join(", "))]
    UnknownBuiltin(String),
    #[error("exactly one source must be set: git, url, oci, local or builtin")]
    NoSource,
    #[error("failed to {action}: {source}")]
    Kube { action: &'static str, source: kube::Error },
    #[error("failed to run a background task: {0}")]
    Task(String),
    /// A failure already written into status; retried with backoff.
    #[error("{0}")]
    Retry(String),
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
}

/// Runs the controller until `shutdown` completes; calls in progress finish first.
pub async fn run(client: Client, settings: Settings, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let resource = resource();
    let api = wasmplug_host::watch::api(client.clone(), settings.namespace.as_deref());
    let watch = || watcher::Config::default().any_semantic();
    let controller = Controller::new_with(api.clone(), watch(), resource.clone());
    let plugins = controller.store();
    let claims = plugins.clone();
    let controller = controller
        .watches_with(api.clone(), resource, watch(), move |changed| contenders(&changed, &claims))
        .graceful_shutdown_on(shutdown);
    let collect_garbage = settings.collect_garbage;
    let ctx = Arc::new(Context {
        plugins,
        failures: Mutex::default(),
        handled: Mutex::default(),
        fetching: tokio::sync::Semaphore::new(settings.config.max_concurrent_fetches.max(1)),
        compiling: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, usize::from).min(MAX_CONCURRENT_LOADS as usize),
        ),
        client: client.clone(),
        store: settings.store,
        runtime: settings.runtime,
        http: settings.http,
        recorder: Recorder::new(client, settings.reporter),
        config: settings.config,
        metrics: settings.metrics,
    });
    let collector = collect_garbage.then(|| tokio::spawn(collector::collect_garbage(ctx.clone(), api.clone())));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        })
        .await;
    if let Some(collector) = collector {
        collector.abort();
    }
}

/// The objects whose claim to a format key may change when `changed` changes (is
/// published, fails or is deleted): others claiming its key, and every object
/// that was refused a key.
fn contenders(changed: &Guarded, plugins: &Reflection<Guarded>) -> Vec<ObjectRef<Guarded>> {
    let Ok(changed) = read(changed) else { return Vec::new() };
    let key = changed.claimed_format_key();
    plugins
        .state()
        .iter()
        .filter_map(|other| read(other).ok())
        .filter(|other| other.uid() != changed.uid())
        .filter(|other| {
            let refused = other
                .condition(ConditionType::Ready)
                .is_some_and(|ready| ready.status == "False" && ready.reason == Reason::FormatConflict.as_str());
            refused || (key.is_some() && other.claimed_format_key() == key)
        })
        .map(|other| ObjectRef::from_obj(&other).erase())
        .collect()
}

/// What [`run`] needs besides the client.
#[derive(Debug)]
pub struct Settings {
    /// Only this namespace, or every namespace.
    pub namespace: Option<String>,
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub http: reqwest::Client,
    /// The controller name (and instance) that Events are reported by.
    pub reporter: kube::runtime::events::Reporter,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Whether the leader collects the store's garbage (a shared store); a
    /// replica with a store of its own collects it in its mirror.
    pub collect_garbage: bool,
}

async fn reconcile(object: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let reference = ObjectRef::from_obj_with(&*object, resource());
    let namespace = object.namespace().unwrap_or_default();
    let span = tracing::info_span!("reconcile", namespace, plugin = object.name_any());
    let result = match read(&object) {
        Ok(plugin) => {
            let api: Api<FormatPlugin> = Api::namespaced(ctx.client.clone(), &namespace);
            finalizer(&api, FINALIZER, Arc::new(plugin), |event| async {
                match event {
                    finalizer::Event::Apply(plugin) => apply::apply(plugin, &ctx).await,
                    finalizer::Event::Cleanup(plugin) => report::cleanup(plugin, &ctx).await,
                }
            })
            .instrument(span)
            .await
            .map_err(|e| Error::Finalizer(Box::new(e)))
        }
        Err(error) => report::unreadable(&object, &error.to_string(), &ctx).instrument(span).await,
    };
    if result.is_ok() {
        ctx.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&reference);
    }
    result
}

/// Exponential backoff per object: 1 s, 2 s, 4 s, … up to 5 minutes.
fn error_policy(object: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let count = failures.entry(ObjectRef::from_obj_with(&*object, resource())).or_insert(0);
    *count = count.saturating_add(1);
    let delay = Duration::from_secs(1u64 << (*count - 1).min(8)).min(Duration::from_secs(300));
    tracing::warn!(
        namespace = object.namespace().unwrap_or_default(), name = object.name_any(),
        %error, retry_in_s = delay.as_secs(), "reconcile failed; retrying"
    );
    Action::requeue(delay)
}
