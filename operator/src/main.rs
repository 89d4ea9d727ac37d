//! `wasmplug-operator`: reconciles FormatPlugins into the shared store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ipnet::IpNet;
use kube::Client;
use wasmplug_host::cli::{ConnectionArgs, EngineArgs, LogArgs, parse_size, shutdown_signal};
use wasmplug_host::download::{DownloadMetrics, DownloadSettings, Downloader};
use wasmplug_host::runtime::Runtime;
use wasmplug_operator::artifacts::auth::{Authenticator, Reader};
use wasmplug_operator::artifacts::{self, ArtifactServer};
use wasmplug_operator::controller::{self, Config, Settings};
use wasmplug_operator::fetch::{ArchiveLimits, FetchLimits};
use wasmplug_operator::fleet;
use wasmplug_operator::leader::LeaderElection;
use wasmplug_operator::metrics::Metrics;
use wasmplug_operator::mirror::{Mirror, Peers};
use wasmplug_operator::policy::{
    Destinations, LocalRoots, PublishingNamespaces, SourceHosts, SourcePolicy, parse_range,
};
use wasmplug_operator::serve::{Health, serve};
use wasmplug_operator::store::Store;
use wasmplug_operator::verify::SignaturePolicy;
use wasmplug_operator::webhook::{self, CertificateFiles, ReloadingCertificate, Webhook};

/// Reconcile FormatPlugins: fetch, validate and publish plugin packages into the
/// shared store, and report their status.
#[derive(Debug, Parser)]
#[command(name = "wasmplug-operator", version)]
struct Args {
    /// The shared store's root (the volume hosts mount read-only).
    #[arg(long, env = "WASMPLUG_STORE_DIR")]
    store_dir: PathBuf,

    /// Reconcile FormatPlugins in this namespace only; every namespace when unset.
    #[arg(long, env = "WASMPLUG_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Where fetches write temporary files (in a wasmplug-fetch directory that is
    /// cleared at start); defaults to the system's temp directory.
    #[arg(long, env = "WASMPLUG_SCRATCH_DIR")]
    scratch_dir: Option<PathBuf>,

    /// How often branches and URLs are re-checked when a FormatPlugin sets no interval.
    #[arg(long, env = "WASMPLUG_DEFAULT_INTERVAL", default_value = "10m")]
    default_interval: wasmplug_crds::Duration,

    /// Largest download of one fetch (a ZIP, a Git transfer, or the layers of an
    /// OCI artifact; its manifests and tokens may add 1 MiB).
    #[arg(long, env = "WASMPLUG_MAX_DOWNLOAD", default_value = "64Mi", value_parser = parse_size)]
    max_download: u64,

    /// Most bytes a ZIP package may unpack to.
    #[arg(long, env = "WASMPLUG_MAX_UNPACKED", default_value = "128Mi", value_parser = parse_size)]
    max_unpacked: u64,

    /// Fetches running at once; more wait. Each may hold a whole download
    /// (--max-download) and its unpacked files (--max-unpacked) in memory.
    #[arg(long, env = "WASMPLUG_MAX_CONCURRENT_FETCHES", default_value_t = 2)]
    max_concurrent_fetches: usize,

    /// How long an unreferenced store entry is kept before it is removed.
    #[arg(long, env = "WASMPLUG_GC_GRACE", default_value = "10m")]
    gc_grace: wasmplug_crds::Duration,

    /// How often the store is checked for unreferenced entries.
    #[arg(long, env = "WASMPLUG_GC_INTERVAL", default_value = "1m")]
    gc_interval: wasmplug_crds::Duration,

    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "WASMPLUG_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    metrics_listen: SocketAddr,

    /// Serve the store's packages to hosts (GET /artifacts/sha256/<hex>/<file>)
    /// on this address, e.g. 0.0.0.0:8081; every replica serves. Off when unset
    /// (hosts then read a shared store volume). Needs --artifact-readers.
    #[arg(long, env = "WASMPLUG_ARTIFACTS_LISTEN", requires = "artifact_readers")]
    artifacts_listen: Option<SocketAddr>,

    /// ServiceAccounts that may download packages, as namespace:name,
    /// comma-separated: the hosts', and the operator's own (replicas mirror
    /// each other). Each request's bearer token is checked with a TokenReview.
    #[arg(long, env = "WASMPLUG_ARTIFACT_READERS", value_delimiter = ',', requires = "artifacts_listen")]
    artifact_readers: Vec<Reader>,

    /// The audience artifact tokens must be issued for.
    #[arg(long, env = "WASMPLUG_ARTIFACT_TOKEN_AUDIENCE", default_value = "wasmplug-artifacts")]
    artifact_token_audience: String,

    /// The artifact server's URL as hosts reach it (its Service), written into
    /// status.artifact.url, e.g. http://wasmplug-operator-artifacts.wasmplug-system.svc:8081.
    #[arg(long, env = "WASMPLUG_ARTIFACT_URL")]
    artifact_url: Option<url::Url>,

    /// Other replicas' artifact servers, comma-separated base URLs (a name
    /// stands for every address it resolves to). Set this or --mirror-service
    /// when each replica has a store of its own: every replica then keeps every
    /// published package, downloading what it lacks from the others, and
    /// collects its own store's garbage. Needs --artifacts-listen and
    /// --artifact-token-file.
    #[arg(long, env = "WASMPLUG_MIRROR_PEERS", value_delimiter = ',', requires_all = ["artifacts_listen", "artifact_token_file"], conflicts_with = "mirror_service")]
    mirror_peers: Vec<url::Url>,

    /// Like --mirror-peers: the other replicas are the ready endpoints of this
    /// Service (namespace/name), on the --artifacts-listen port. Needs no
    /// cluster DNS.
    #[arg(long, env = "WASMPLUG_MIRROR_SERVICE", requires_all = ["artifacts_listen", "artifact_token_file"])]
    mirror_service: Option<String>,

    /// The token this replica downloads from its peers with (its projected
    /// ServiceAccount token for --artifact-token-audience); re-read for each download.
    #[arg(long, env = "WASMPLUG_ARTIFACT_TOKEN_FILE")]
    artifact_token_file: Option<PathBuf>,

    /// How often a replica checks that its store holds every published package,
    /// besides whenever a FormatPlugin changes.
    #[arg(long, env = "WASMPLUG_MIRROR_INTERVAL", default_value = "30s")]
    mirror_interval: wasmplug_crds::Duration,

    /// This pod's IP address, so that mirroring leaves this replica out of the peers.
    #[arg(long, env = "POD_IP")]
    pod_ip: Option<std::net::IpAddr>,

    /// Elect a leader through a Lease, so that only one replica reconciles.
    #[arg(long, env = "WASMPLUG_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,

    /// The namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "WASMPLUG_LEASE_NAMESPACE", default_value = "default")]
    lease_namespace: String,

    /// The name of the leader-election Lease.
    #[arg(long, env = "WASMPLUG_LEASE_NAME", default_value = "wasmplug-operator")]
    lease_name: String,

    /// How long a leader's Lease lasts without renewal.
    #[arg(long, env = "WASMPLUG_LEASE_DURATION", default_value = "15s")]
    lease_duration: wasmplug_crds::Duration,

    /// Serve the validating admission webhook (POST /validate, TLS) on this
    /// address, e.g. 0.0.0.0:9443; off when unset. Needs --webhook-cert-file and
    /// --webhook-key-file.
    #[arg(long, env = "WASMPLUG_WEBHOOK_LISTEN", requires_all = ["webhook_cert_file", "webhook_key_file"])]
    webhook_listen: Option<SocketAddr>,

    /// The webhook's serving certificate chain (PEM); re-read when it changes.
    #[arg(long, env = "WASMPLUG_WEBHOOK_CERT_FILE", requires = "webhook_listen")]
    webhook_cert_file: Option<PathBuf>,

    /// The webhook certificate's private key (PEM); re-read when it changes.
    #[arg(long, env = "WASMPLUG_WEBHOOK_KEY_FILE", requires = "webhook_listen")]
    webhook_key_file: Option<PathBuf>,

    /// Hosts that Git and URL sources may name, comma-separated: host names or
    /// wildcards such as *.example.com. Every host when unset. The webhook refuses
    /// other sources at apply time, and the operator does not fetch them.
    #[arg(long, env = "WASMPLUG_ALLOWED_SOURCE_HOSTS", value_delimiter = ',')]
    allowed_source_hosts: Vec<String>,

    /// Directories that `local` sources may read under, comma-separated; a
    /// source's path is resolved (links, `..`) before the check. Local sources
    /// are off when unset: they are for development, or for packages baked into
    /// the operator's image.
    #[arg(long, env = "WASMPLUG_LOCAL_SOURCE_ROOTS", value_delimiter = ',')]
    local_source_roots: Vec<PathBuf>,

    /// Addresses or ranges (10.1.0.0/16) that Git and URL sources may reach
    /// although they are loopback, link-local, private or denied, comma-separated:
    /// e.g. an in-cluster Git server's Service range. Sources reach none of those
    /// when unset.
    #[arg(long, env = "WASMPLUG_ALLOWED_DESTINATIONS", value_delimiter = ',', value_parser = parse_range)]
    allowed_destinations: Vec<IpNet>,

    /// More addresses or ranges sources may not reach, comma-separated: the
    /// cluster's Pod and Service ranges when they are public addresses (private
    /// ones are refused already).
    #[arg(long, env = "WASMPLUG_DENIED_DESTINATIONS", value_delimiter = ',', value_parser = parse_range)]
    denied_destinations: Vec<IpNet>,

    /// Namespaces whose FormatPlugins may publish formats, comma-separated;
    /// every namespace when unset. Format keys are cluster-wide, so creating a
    /// FormatPlugin is a cluster-level privilege: objects elsewhere are refused
    /// by the webhook and reported (NamespaceNotAllowed) by the operator.
    #[arg(long, env = "WASMPLUG_PUBLISHING_NAMESPACES", value_delimiter = ',')]
    publishing_namespaces: Vec<String>,

    /// Require every FormatPlugin that is not builtin to be signed by a trusted
    /// key (--trusted-keys-dir, or the object's spec.verify.secretRef). Unsigned
    /// plugins are not published (Ready=False, SignatureMissing), and the
    /// webhook refuses objects no key could verify.
    #[arg(long, env = "WASMPLUG_REQUIRE_SIGNATURES")]
    require_signatures: bool,

    /// A directory of cluster-wide trusted public keys, one per file (a mounted
    /// ConfigMap; files starting with a dot are skipped): Ed25519 keys as PEM or
    /// as the base64 of their 32 bytes. Read again for each verification, so a
    /// changed ConfigMap applies without a restart.
    #[arg(long, env = "WASMPLUG_TRUSTED_KEYS_DIR")]
    trusted_keys_dir: Option<PathBuf>,

    /// The namespace the hosts run in and write their FormatHost records to,
    /// rolled up into each FormatPlugin's status.hosts; defaults to the
    /// client's namespace (the operator pod's, in a cluster).
    #[arg(long, env = "WASMPLUG_HOSTS_NAMESPACE")]
    hosts_namespace: Option<String>,

    /// This replica's identity in the Lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    #[command(flatten)]
    engine: EngineArgs,

    #[command(flatten)]
    connections: ConnectionArgs,

    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();

    let client = Client::try_default().await.context("failed to configure the Kubernetes client")?;
    let runtime =
        Arc::new(Runtime::new(args.engine.validation_settings()).context("failed to start the WebAssembly runtime")?);
    std::fs::create_dir_all(&args.store_dir)
        .with_context(|| format!("failed to create the store directory {}", args.store_dir.display()))?;
    let identity = args.identity.clone().unwrap_or_else(|| format!("wasmplug-operator-{}", std::process::id()));
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(metrics.clone()));

    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.metrics_listen))?;
    tokio::spawn(serve(listener, args.connections.limits(), health.clone()));
    let namespaces = PublishingNamespaces::new(&args.publishing_namespaces);
    let signatures = SignaturePolicy { required: args.require_signatures, keys_dir: args.trusted_keys_dir.clone() };
    match signatures.cluster_keys() {
        Ok(keys) => tracing::info!(required = signatures.required, keys = ?keys, "signature policy"),
        Err(error) => {
            tracing::warn!(%error, "the cluster's trusted keys cannot be read; signed plugins fail until they can")
        }
    }
    let sources = SourcePolicy {
        hosts: SourceHosts::new(&args.allowed_source_hosts),
        local_roots: LocalRoots::new(&args.local_source_roots).map_err(anyhow::Error::msg)?,
        destinations: Destinations::new(args.allowed_destinations.clone(), args.denied_destinations.clone()),
    };
    if let (Some(address), Some(cert), Some(key)) =
        (args.webhook_listen, &args.webhook_cert_file, &args.webhook_key_file)
    {
        let files = CertificateFiles { cert: cert.clone(), key: key.clone() };
        let certificate = Arc::new(ReloadingCertificate::load(files)?);
        let listener =
            tokio::net::TcpListener::bind(address).await.with_context(|| format!("failed to listen on {address}"))?;
        let webhook = Webhook::new(
            client.clone(),
            args.watch_namespace.clone(),
            sources.clone(),
            namespaces.clone(),
            signatures.clone(),
        );
        tracing::info!(%address, "serving the admission webhook");
        tokio::spawn(webhook::serve(listener, args.connections.limits(), certificate, Arc::new(webhook)));
    }
    if let Some(address) = args.artifacts_listen {
        serve_artifacts(&args, address, &client, &metrics).await?;
    }
    // A replica with a store of its own is ready, and may lead, once its first
    // mirror pass is done: a leader without the published packages would fetch
    // their sources again, and fail for those whose source is gone.
    let (mirrored, first_pass) = tokio::sync::oneshot::channel::<()>();
    let mirroring = match mirror(&args, &client, &metrics)? {
        Some(mirror) => {
            let api = wasmplug_host::watch::api(client.clone(), args.watch_namespace.as_deref());
            let health = health.clone();
            tokio::spawn(mirror.run(api, move || {
                health.set_ready();
                let _ = mirrored.send(());
            }));
            true
        }
        None => {
            health.set_ready();
            let _ = mirrored.send(());
            false
        }
    };
    tokio::select! {
        _ = first_pass => {}
        () = shutdown_signal("the first mirror pass") => return Ok(()),
    }

    let election = args.leader_election.then(|| {
        LeaderElection::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
            args.lease_duration.into(),
        )
    });
    let acquired = match &election {
        Some(election) => tokio::select! {
            acquired = election.acquire() => acquired,
            () = shutdown_signal("reconciles") => return Ok(()),
        },
        None => tokio::time::Instant::now(),
    };
    // Fetches of an earlier run that was killed may have left files behind; this
    // replica leads now, so the scratch directory is its own.
    let scratch_dir = args.scratch_dir.clone().unwrap_or_else(std::env::temp_dir).join("wasmplug-fetch");
    if scratch_dir.exists() {
        std::fs::remove_dir_all(&scratch_dir)
            .with_context(|| format!("failed to clear the scratch directory {}", scratch_dir.display()))?;
    }
    std::fs::create_dir_all(&scratch_dir)
        .with_context(|| format!("failed to create the scratch directory {}", scratch_dir.display()))?;
    metrics.set_leading(true);
    tracing::info!(store = %args.store_dir.display(), engine = runtime.engine_id(), identity, "reconciling FormatPlugins");

    let settings = Settings {
        namespace: args.watch_namespace.clone(),
        store: Store::new(&args.store_dir),
        runtime,
        http: wasmplug_operator::fetch::http_client(Arc::new(sources.clone()))
            .context("failed to build the HTTP client")?,
        reporter: kube::runtime::events::Reporter { controller: "wasmplug-operator".into(), instance: Some(identity) },
        config: Config {
            scratch_dir,
            default_interval: args.default_interval.into(),
            fetch_limits: FetchLimits {
                max_download_bytes: args.max_download,
                archive: ArchiveLimits { max_unpacked_bytes: args.max_unpacked, ..ArchiveLimits::default() },
                ..FetchLimits::default()
            },
            gc_grace: args.gc_grace.into(),
            gc_interval: args.gc_interval.into(),
            sources,
            max_concurrent_fetches: args.max_concurrent_fetches,
            namespaces,
            artifact_url: args.artifact_url.clone(),
            signatures,
            max_limits: args.engine.max_limits(),
        },
        metrics,
        // With a store of its own, each replica's mirror collects it.
        collect_garbage: !mirroring,
    };
    let lost = async {
        match &election {
            Some(election) => election.hold(acquired).await,
            None => std::future::pending().await,
        }
    };
    let hosts = fleet::Settings {
        plugins_namespace: args.watch_namespace.clone(),
        hosts_namespace: args.hosts_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned()),
        reporter: settings.reporter.clone(),
        metrics: settings.metrics.clone(),
    };
    let rollup = tokio::spawn(fleet::run(client.clone(), hosts));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(client, settings, async {
        let _ = stopped.await;
    }));
    tokio::select! {
        () = lost => {
            // Another replica may take over soon: stop at once, without letting
            // reconciles in progress finish (fetches on other threads included),
            // so that no write of this replica can follow the new leader's.
            tracing::error!("lost the leader-election Lease; exiting so that this replica restarts as a standby");
            std::process::exit(1);
        }
        () = shutdown_signal("reconciles") => {}
    }
    rollup.abort();
    let _ = stop.send(());
    let _ = controller.await;
    if let Some(election) = &election {
        election.release().await;
    }
    Ok(())
}

/// Serves the store's packages on `address` (`--artifacts-listen`).
async fn serve_artifacts(
    args: &Args,
    address: SocketAddr,
    client: &Client,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(address).await.with_context(|| format!("failed to listen on {address}"))?;
    let server = ArtifactServer {
        store: Store::new(&args.store_dir),
        auth: Authenticator::new(client.clone(), args.artifact_token_audience.clone(), args.artifact_readers.clone()),
        metrics: metrics.clone(),
    };
    tracing::info!(%address, "serving artifacts");
    tokio::spawn(artifacts::serve(listener, args.connections.limits(), Arc::new(server)));
    Ok(())
}

/// The mirror of this replica's store, when it has peers (`--mirror-peers` or
/// `--mirror-service`); its staging area is cleared, the store being its own.
fn mirror(args: &Args, client: &Client, metrics: &Arc<Metrics>) -> anyhow::Result<Option<Mirror>> {
    let Some(address) = args.artifacts_listen else { return Ok(None) };
    let peers = match &args.mirror_service {
        Some(service) => {
            let (namespace, name) = service
                .split_once('/')
                .with_context(|| format!("--mirror-service {service:?} is not namespace/name"))?;
            let slices = Box::new(kube::Api::namespaced(client.clone(), namespace));
            Peers::Service { slices, name: name.to_owned(), port: address.port() }
        }
        None if args.mirror_peers.is_empty() => return Ok(None),
        None => Peers::Urls(args.mirror_peers.clone()),
    };
    let store = Store::new(&args.store_dir);
    store.remove_partial().context("failed to clear the store's staging area")?;
    let settings = DownloadSettings {
        token_file: args.artifact_token_file.clone(),
        connect_timeout: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(120),
    };
    let downloads = Arc::new(DownloadMetrics::default());
    metrics.register_downloads(&downloads);
    let own = [Some(address), args.pod_ip.map(|ip| SocketAddr::new(ip, address.port()))];
    Ok(Some(Mirror {
        store,
        downloader: Downloader::new(settings, downloads).context("failed to build the mirror's HTTP client")?,
        peers,
        own: own.into_iter().flatten().filter(|a| !a.ip().is_unspecified()).collect(),
        interval: args.mirror_interval.clone().into(),
        grace: args.gc_grace.clone().into(),
        metrics: metrics.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Args::command().debug_assert();
    }
}
