//! `wasmplug-host`: serves format handlers over HTTP.
//!
//! Local mode (no Kubernetes): `--plugins-dir` names a directory of plugin
//! packages that is watched for changes; `--builtin` picks compiled-in formats.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use wasmplug_host::cli::{ConnectionArgs, EngineArgs, LogArgs, parse_size, shutdown_signal};
use wasmplug_host::download::{DownloadSettings, Downloader};
use wasmplug_host::local::LocalSource;
use wasmplug_host::registry::Registry;
use wasmplug_host::runtime::Runtime;
use wasmplug_host::server::{App, ServerConfig, serve};
use wasmplug_host::watch::{self, ClusterSource, Loader, Packages};
use wasmplug_host::{builtin, format_host};

/// Serve artifact-registry format handlers (builtin and WebAssembly plugins) over HTTP.
#[derive(Debug, Parser)]
#[command(name = "wasmplug-host", version)]
struct Args {
    /// Address to serve the HTTP API on.
    #[arg(long, env = "WASMPLUG_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Local mode: a directory of plugin packages (one subdirectory each with
    /// plugin.toml and plugin.wasm), or one package directory itself, watched
    /// for changes. It must exist.
    #[arg(long, env = "WASMPLUG_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,

    /// Cluster mode: serve what the FormatPlugins' status says, downloading
    /// packages from --artifact-server into --cache-dir (or reading them from a
    /// shared --store-dir). Builtin formats are then enabled by FormatPlugins
    /// with a builtin source, not by --builtin.
    #[arg(long, env = "WASMPLUG_WATCH", conflicts_with_all = ["plugins_dir", "builtin"], requires = "packages")]
    watch: bool,

    /// Cluster mode: follow FormatPlugins in this namespace only; every namespace when unset.
    #[arg(long, env = "WASMPLUG_WATCH_NAMESPACE", requires = "watch")]
    watch_namespace: Option<String>,

    /// Cluster mode: the name of this host's FormatHost record (its pod's name),
    /// where it reports what it serves for the operator to roll up into each
    /// FormatPlugin's status. No record is written when unset.
    #[arg(long, env = "POD_NAME", requires = "watch")]
    host_name: Option<String>,

    /// Cluster mode: the namespace of this host's FormatHost record; defaults to
    /// the client's namespace (the pod's, in a cluster).
    #[arg(long, env = "POD_NAMESPACE", requires = "host_name")]
    host_namespace: Option<String>,

    /// Cluster mode: the UID of this host's pod. The record is then owned by the
    /// pod (removed with it) and counts only while the pod is Ready.
    #[arg(long, env = "POD_UID", requires = "host_name")]
    pod_uid: Option<String>,

    /// Cluster mode: the node this host runs on, shown in its record.
    #[arg(long, env = "NODE_NAME", requires = "host_name")]
    node_name: Option<String>,

    /// Cluster mode: the shared store's root, as the operator publishes it (a
    /// volume shared with the operator, instead of --artifact-server).
    #[arg(long, env = "WASMPLUG_STORE_DIR", group = "packages")]
    store_dir: Option<PathBuf>,

    /// Cluster mode: the operator's artifact server, e.g.
    /// http://wasmplug-operator-artifacts.wasmplug-system.svc:8081. Packages are
    /// downloaded from it into --cache-dir and checked against status before use.
    /// Several, comma-separated, are tried in order.
    #[arg(long, env = "WASMPLUG_ARTIFACT_SERVER", group = "packages", requires = "cache_dir", value_delimiter = ',')]
    artifact_server: Vec<url::Url>,

    /// Cluster mode: where downloaded packages are kept (only this host writes
    /// it); a restarted host loads from it what still verifies.
    #[arg(long, env = "WASMPLUG_CACHE_DIR", requires = "artifact_server")]
    cache_dir: Option<PathBuf>,

    /// Cluster mode: a token file sent as the bearer token of every download
    /// (the host's projected ServiceAccount token for the artifact server's
    /// audience); re-read for each download.
    #[arg(long, env = "WASMPLUG_ARTIFACT_TOKEN_FILE", requires = "artifact_server")]
    artifact_token_file: Option<PathBuf>,

    /// Longest time one file's download may take, in milliseconds.
    #[arg(long, env = "WASMPLUG_DOWNLOAD_TIMEOUT_MS", default_value_t = 120_000)]
    download_timeout_ms: u64,

    /// Local mode: builtin formats to serve, comma-separated, "all" (the default),
    /// or "" for none.
    #[arg(long, env = "WASMPLUG_BUILTINS", value_delimiter = ',')]
    builtin: Option<Vec<String>>,

    #[command(flatten)]
    engine: EngineArgs,

    /// Largest request body, in bytes with an optional Ki, Mi or Gi suffix.
    #[arg(long, env = "WASMPLUG_MAX_BODY", default_value = "32Mi", value_parser = parse_size)]
    max_body: u64,

    /// Bytes of request bodies held at once; a request waits for room before its
    /// body is read. Defaults to --max-concurrent-calls × --max-body.
    #[arg(long, env = "WASMPLUG_MAX_BODY_IN_FLIGHT", value_parser = parse_size)]
    max_body_in_flight: Option<u64>,

    /// Calls of one format running at once, so that no format takes every call
    /// slot. Defaults to half of --max-concurrent-calls or half the CPUs,
    /// whichever is smaller (at least 1).
    #[arg(long, env = "WASMPLUG_MAX_CALLS_PER_FORMAT")]
    max_calls_per_format: Option<u32>,

    /// Longest wait for room for a body or a call slot, in milliseconds; then
    /// 503 busy.
    #[arg(long, env = "WASMPLUG_QUEUE_TIMEOUT_MS", default_value_t = 10_000)]
    queue_timeout_ms: u64,

    #[command(flatten)]
    connections: ConnectionArgs,

    /// Longest time loading one plugin may take (reading and verifying it,
    /// compiling or deserializing it, and its format-key call), in milliseconds.
    /// A load that takes longer fails; the previous version keeps serving.
    #[arg(long, env = "WASMPLUG_MAX_LOAD_MS", default_value_t = 60_000)]
    max_load_ms: u64,

    /// How often the plugin directory is checked for changes, in milliseconds.
    #[arg(long, env = "WASMPLUG_POLL_MS", default_value_t = 500)]
    poll_ms: u64,

    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();

    let max_limits = args.engine.max_limits();
    let runtime = Arc::new(Runtime::new(args.engine.settings()).context("failed to start the WebAssembly runtime")?);
    let registry = Arc::new(Registry::new());
    let builtins: Vec<String> = match &args.builtin {
        Some(keys) => keys.iter().filter(|b| !b.is_empty()).cloned().collect(),
        None if args.watch => Vec::new(),
        None => vec!["all".to_owned()],
    };
    let app = App::new(registry.clone(), server_config(&args)?, runtime.large_call_metrics());

    builtin::install(&registry, &builtins, &max_limits).map_err(anyhow::Error::msg)?;
    let mut record = None;
    if args.watch {
        let client = kube::Client::try_default().await.context("failed to configure the Kubernetes client")?;
        if let Some(identity) = identity(&args, &client) {
            let api = kube::Api::namespaced(client.clone(), &identity.namespace);
            let metrics = app.record_metrics();
            let task = tokio::spawn(format_host::publish(api.clone(), identity.clone(), registry.clone(), metrics));
            record = Some((api, identity, task));
        }
        let api = watch::api(client, args.watch_namespace.as_deref());
        let packages = packages(&args, &app)?;
        let loader = Loader::new(runtime.clone(), packages, max_limits, Duration::from_millis(args.max_load_ms));
        let source = ClusterSource::new(api, loader, registry.clone());
        let ready = app.clone();
        tokio::spawn(source.run(move || ready.set_ready()));
    } else if let Some(dir) = &args.plugins_dir {
        // A mistyped or relative path would otherwise serve builtins only, silently.
        if !dir.is_dir() {
            anyhow::bail!(
                "the plugin directory {} does not exist (a relative path is read from {}); pass the \
                 directory that holds your package directories, or a package directory itself",
                dir.display(),
                std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
            );
        }
        let source = LocalSource::new(dir.clone(), runtime.clone(), registry.clone(), max_limits);
        let ready = app.clone();
        tokio::spawn(source.run(Duration::from_millis(args.poll_ms), move || ready.set_ready()));
    } else {
        app.set_ready();
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        plugins_dir = args.plugins_dir.as_ref().map(|dir| tracing::field::display(dir.display())),
        engine = runtime.engine_id(),
        "serving; try GET /v1/formats"
    );
    serve(listener, app, shutdown_signal("calls")).await;
    if let Some((api, identity, task)) = record {
        task.abort();
        format_host::withdraw(&api, &identity).await;
    }
    Ok(())
}

/// Who this host's FormatHost record says it is, when it writes one.
fn identity(args: &Args, client: &kube::Client) -> Option<format_host::Identity> {
    let Some(name) = &args.host_name else {
        tracing::info!("no --host-name: this host writes no FormatHost, and FormatPlugins do not count it");
        return None;
    };
    Some(format_host::Identity {
        namespace: args.host_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned()),
        name: name.clone(),
        pod_uid: args.pod_uid.clone().filter(|uid| !uid.is_empty()),
        // Empty when no node runs the pod.
        node: args.node_name.clone().filter(|node| !node.is_empty()),
        follows: args.watch_namespace.clone(),
    })
}

/// Where packages come from in cluster mode: downloaded (their metrics joining
/// the app's), or a shared store.
fn packages(args: &Args, app: &App) -> anyhow::Result<Packages> {
    if let (false, Some(cache)) = (args.artifact_server.is_empty(), &args.cache_dir) {
        std::fs::create_dir_all(cache)
            .with_context(|| format!("failed to create the cache directory {}", cache.display()))?;
        let settings = DownloadSettings {
            token_file: args.artifact_token_file.clone(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_millis(args.download_timeout_ms),
        };
        let downloader = Downloader::new(settings, app.download_metrics())
            .context("failed to build the artifact download client")?;
        let servers = args.artifact_server.clone();
        return Ok(Packages::Downloaded { servers, cache: cache.clone(), downloader: Arc::new(downloader) });
    }
    let store = args.store_dir.clone().context("cluster mode needs --artifact-server or --store-dir")?;
    Ok(Packages::SharedStore(store))
}

/// The HTTP layer's limits, with the defaults that depend on other flags.
fn server_config(args: &Args) -> anyhow::Result<ServerConfig> {
    let calls = args.engine.max_concurrent_calls.max(1);
    let max_body = usize::try_from(args.max_body)?;
    let in_flight = match args.max_body_in_flight {
        Some(bytes) => usize::try_from(bytes)?,
        None => max_body.saturating_mul(calls as usize),
    };
    Ok(ServerConfig {
        max_body_bytes: max_body,
        max_body_bytes_in_flight: in_flight,
        max_concurrent_calls: calls as usize,
        max_calls_per_format: args
            .max_calls_per_format
            .map_or_else(|| ServerConfig::default_calls_per_format(calls as usize), |cap| cap as usize),
        queue_timeout: Duration::from_millis(args.queue_timeout_ms),
        connections: args.connections.limits(),
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Args::command().debug_assert();
    }
}
