//! One real Kubernetes control plane per test binary: etcd and kube-apiserver on
//! 127.0.0.1 free ports, with generated certificates, a kubeconfig, and wasmplug's
//! CRDs installed from the committed YAML the way a user would install them.
//!
//! The real node's cluster (crate::node) starts one too, bound to its bridge
//! address and admitting what a kubelet and pods need.
//!
//! Nothing outlives the test binary: a watchdog (crate::watchdog) stops etcd and
//! kube-apiserver and removes their directory when the process ends, however it
//! ends.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::binaries::Binaries;
use crate::certs::Certificates;
use crate::kubectl::Kubectl;
use crate::namespace::TestNamespace;
use crate::watchdog::{Duties, KEEP_ENV, Watchdog};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running etcd + kube-apiserver pair. Obtain it with [`control_plane`].
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    certs: Certificates,
    started_in: Duration,
    namespaces: AtomicUsize,
    /// Stops everything this harness started when the process exits (or when
    /// [`ControlPlane::finish`] is called).
    watchdog: Mutex<Option<Watchdog>>,
}

/// Where the API server listens and whom it serves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Serving {
    /// The address it binds and advertises: 127.0.0.1, or a node's bridge address.
    pub address: IpAddr,
    /// Serve a real node: Node and RBAC authorization, the ServiceAccount admission
    /// plugin (pods get tokens), a client certificate for calling kubelets, and the
    /// first service address (10.0.0.1, the `kubernetes` Service) in the serving
    /// certificate.
    pub for_node: bool,
}

/// The first address of the service range: the `kubernetes` Service.
pub(crate) const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane of this test binary, started on first use.
///
/// Blocks while starting (a few seconds); safe to call from async tests. Panics with
/// the reason and the servers' log tails when the control plane cannot start.
pub fn control_plane() -> &'static ControlPlane {
    let started = CONTROL_PLANE.get_or_init(|| {
        // Start on a thread of its own: starting needs a runtime, and the caller may
        // already be inside one.
        std::thread::spawn(|| ControlPlane::start_on_loopback().map_err(|e| format!("{e:#}")))
            .join()
            .unwrap_or_else(|_| Err("the control-plane start thread panicked".into()))
    });
    match started {
        Ok(control_plane) => control_plane,
        Err(error) => panic!("failed to start the control plane: {error}"),
    }
}

impl ControlPlane {
    fn start_on_loopback() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("wasmplug-e2e-")
            .tempdir()
            .context("failed to create a temporary directory")?
            .keep();
        let watchdog = Watchdog::spawn(&dir, Duties::default())?;
        let serving = Serving { address: IpAddr::V4(Ipv4Addr::LOCALHOST), for_node: false };
        Self::start(dir, watchdog, serving)
    }

    /// Starts etcd and kube-apiserver in `dir`, handing their PIDs to `watchdog`.
    pub(crate) fn start(dir: PathBuf, mut watchdog: Watchdog, serving: Serving) -> anyhow::Result<Self> {
        let began = Instant::now();
        let binaries = Binaries::locate()?;
        let mut sans = vec![serving.address];
        if serving.for_node {
            sans.push(IpAddr::V4(KUBERNETES_SERVICE_IP));
        }
        let certs = Certificates::generate(&dir, &sans)?;
        let [etcd_client, etcd_peer] = free_ports()?;
        let [apiserver] = free_ports_on(serving.address)?;

        let etcd = spawn_logged(
            Command::new(&binaries.etcd).args([
                "--name=wasmplug-e2e".to_owned(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=wasmplug-e2e=http://127.0.0.1:{etcd_peer}"),
                "--unsafe-no-fsync=true".to_owned(),
                "--log-level=warn".to_owned(),
            ]),
            &dir.join("etcd.log"),
        )?;
        watchdog.guard_child(&etcd)?;

        let tls = certs.serving();
        let address = serving.address;
        let mut args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            format!("--bind-address={address}"),
            format!("--secure-port={apiserver}"),
            format!("--cert-dir={}", dir.display()),
            format!("--tls-cert-file={}", tls.cert.display()),
            format!("--tls-private-key-file={}", tls.key.display()),
            format!("--client-ca-file={}", certs.ca_cert().display()),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            format!("--service-account-key-file={}", certs.service_account_public_key().display()),
            format!("--service-account-signing-key-file={}", certs.service_account_signing_key().display()),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--profiling=false".to_owned(),
        ];
        if serving.for_node {
            let kubelet_client = certs.client("kube-apiserver-kubelet-client", Some("system:masters"))?;
            args.extend([
                format!("--advertise-address={address}"),
                "--authorization-mode=Node,RBAC".to_owned(),
                format!("--kubelet-client-certificate={}", kubelet_client.cert.display()),
                format!("--kubelet-client-key={}", kubelet_client.key.display()),
                // The node name does not resolve: reach kubelets (logs, exec) by address.
                "--kubelet-preferred-address-types=InternalIP,Hostname".to_owned(),
            ]);
        } else {
            // No kubelet and no controller manager: pods never run, and the
            // ServiceAccount admission plugin would wait for default ServiceAccounts
            // that nothing creates.
            args.extend([
                "--authorization-mode=RBAC".to_owned(),
                "--disable-admission-plugins=ServiceAccount".to_owned(),
            ]);
        }
        let mut kube_apiserver =
            spawn_logged(Command::new(&binaries.kube_apiserver).args(args), &dir.join("kube-apiserver.log"))?;
        watchdog.guard_child(&kube_apiserver)?;

        let server = format!("https://{}", std::net::SocketAddr::new(address, apiserver));
        let admin = certs.client("wasmplug-e2e-admin", Some("system:masters"))?;
        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &server, &certs.ca_cert(), &admin.cert, &admin.key)?;

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(wait_until_ready(&kubeconfig, &mut kube_apiserver)).with_context(|| log_tails(&dir))?;

        let control_plane = ControlPlane {
            dir,
            server,
            kubeconfig,
            kubectl: binaries.kubectl,
            certs,
            started_in: began.elapsed(),
            namespaces: AtomicUsize::new(0),
            watchdog: Mutex::new(Some(watchdog)),
        };
        runtime.block_on(control_plane.install_crds()).with_context(|| log_tails(&control_plane.dir))?;
        eprintln!(
            "control plane: {} ready in {:.1?} (directory {}{})",
            control_plane.server,
            control_plane.started_in,
            control_plane.dir.display(),
            if std::env::var_os(KEEP_ENV).is_some() { ", kept" } else { "" }
        );
        Ok(control_plane)
    }

    /// Applies the committed CRD YAML with server-side apply and waits until the API
    /// server has established it, as `kubectl apply` + `kubectl wait` would.
    async fn install_crds(&self) -> anyhow::Result<()> {
        let crds = repository_root().join("crds/wasmplug.dev.yaml");
        let crds = crds.to_string_lossy();
        let kubectl = self.kubectl();
        kubectl.run(&["apply", "--server-side", "--field-manager=wasmplug-e2e", "-f", &crds]).await?.success()?;
        kubectl
            .run(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/formatplugins.wasmplug.dev",
                "crd/formathosts.wasmplug.dev",
            ])
            .await?
            .success()?;
        Ok(())
    }

    /// A new client for the calling test's runtime, authenticated as cluster admin.
    /// (A client is bound to the runtime it was made on, so each test makes its own.)
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("the control plane's kubeconfig is readable");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("the control plane's kubeconfig is valid");
        Client::try_from(config).expect("a client can be built from the control plane's kubeconfig")
    }

    /// A fresh namespace for one test, named after `prefix`.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{n}");
        let client = self.client().await;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("wasmplug.dev/e2e".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("failed to create namespace {name}: {e}"));
        TestNamespace::new(name, client)
    }

    /// kubectl, pointed at this control plane.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubectl.clone(), self.kubeconfig.clone())
    }

    /// The kubectl program (for synchronous use, e.g. dumping state on failure).
    pub fn kubectl_program(&self) -> &Path {
        &self.kubectl
    }

    /// The kubeconfig file (cluster admin), for tools and processes under test.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The certificate authority the API server trusts for clients, and can issue
    /// certificates for other users and for servers it calls (webhooks).
    pub fn certificates(&self) -> &Certificates {
        &self.certs
    }

    /// A kubeconfig that authenticates as `user` in `group` (with a client
    /// certificate), e.g. `system:serviceaccount:<ns>:<name>` in
    /// `system:serviceaccounts` to act as a ServiceAccount.
    pub fn kubeconfig_as(&self, user: &str, group: &str) -> anyhow::Result<PathBuf> {
        self.kubeconfig_for(user, Some(group))
    }

    /// A kubeconfig that authenticates as `user`, in `group` when given (for the
    /// node's components: `system:kube-proxy`, `system:node:<name>` in
    /// `system:nodes`, ...).
    pub(crate) fn kubeconfig_for(&self, user: &str, group: Option<&str>) -> anyhow::Result<PathBuf> {
        let credentials = self.certs.client(user, group)?;
        let file_stem: String = user.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let path = self.dir.join(format!("kubeconfig-{file_stem}"));
        write_kubeconfig(&path, &self.server, &self.certs.ca_cert(), &credentials.cert, &credentials.key)?;
        Ok(path)
    }

    /// A kubeconfig that authenticates with the bearer `token` (a ServiceAccount
    /// token bound to a pod, as a kubelet mounts one); `name` names the file.
    pub fn kubeconfig_with_token(&self, name: &str, token: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("kubeconfig-token-{name}"));
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "wasmplug-e2e", "cluster": {"server": self.server, "certificate-authority": self.certs.ca_cert()}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": "wasmplug-e2e", "context": {"cluster": "wasmplug-e2e", "user": name}}],
            "current-context": "wasmplug-e2e",
        });
        std::fs::write(&path, serde_saphyr::to_string(&kubeconfig)?)
            .with_context(|| format!("failed to write {}", path.display()))?;
        Ok(path)
    }

    /// Makes the watchdog stop process `pid` when this test binary ends, however
    /// it ends (for processes a test starts: operators, hosts, git daemons).
    pub fn guard(&self, pid: u32) {
        let mut watchdog = self.watchdog.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(watchdog) = watchdog.as_mut() {
            let _ = watchdog.guard(pid);
        }
    }

    /// Stops everything now, as the watchdog would at exit, and waits until it is
    /// done (for a test of the teardown itself).
    pub(crate) fn finish(&self) -> anyhow::Result<()> {
        let watchdog = self.watchdog.lock().unwrap_or_else(|p| p.into_inner()).take();
        watchdog.map_or(Ok(()), Watchdog::finish)
    }

    /// The control plane's directory (certificates, kubeconfigs, logs).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How long the control plane took to start, binaries located to CRDs
    /// established.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }
}

fn spawn_logged(command: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
    let stderr = file.try_clone().with_context(|| format!("failed to open {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("failed to start {}", command.get_program().to_string_lossy()))
}

/// Waits up to 10 s until something accepts connections at `address`, for a
/// server `what` just started; `check` runs between attempts and ends the wait
/// with its error (say, when the server has exited).
pub(crate) fn wait_until_listening(
    what: &str,
    address: std::net::SocketAddr,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(address).is_err() {
        check()?;
        if std::time::Instant::now() > deadline {
            anyhow::bail!("{what} did not listen on {address} within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Distinct free ports on 127.0.0.1; see [`free_ports_on`].
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    free_ports_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Distinct ports on `address` that are free now, lie below the kernel's
/// ephemeral range and were not handed out before in this process.
///
/// Every caller passes the port to a process that binds it later, sometimes
/// seconds later (a pod the test kubelet starts, a replacement replica): a port
/// from the ephemeral range, which a kernel-chosen `bind(…, 0)` would give, may
/// meanwhile be taken by any outbound connection, and one given twice would be
/// bound by two tests at once.
pub fn free_ports_on<const N: usize>(address: IpAddr) -> anyhow::Result<[u16; N]> {
    use std::hash::BuildHasher;
    const SPAN: u16 = 12_000;
    static HANDED_OUT: Mutex<Vec<(IpAddr, u16)>> = Mutex::new(Vec::new());
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let ephemeral = range.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(32768);
    let lowest = ephemeral.saturating_sub(SPAN).max(1024);
    anyhow::ensure!(ephemeral > lowest, "the ephemeral range starts at {ephemeral}: no room below it for test ports");
    let random = std::collections::hash_map::RandomState::new();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut ports = Vec::with_capacity(N);
    for attempt in 0u32..10_000 {
        if ports.len() == N {
            break;
        }
        let offset = u16::try_from(random.hash_one(attempt) % u64::from(ephemeral - lowest)).unwrap_or(0);
        let port = lowest + offset;
        if !ports.contains(&port)
            && !handed_out.contains(&(address, port))
            && TcpListener::bind((address, port)).is_ok()
        {
            ports.push(port);
        }
    }
    handed_out.extend(ports.iter().map(|&port| (address, port)));
    ports.try_into().map_err(|found: Vec<u16>| {
        anyhow::anyhow!("found only {} free ports on {address} below the ephemeral range ({ephemeral})", found.len())
    })
}

fn write_kubeconfig(path: &Path, server: &str, ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "wasmplug-e2e", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "admin", "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "wasmplug-e2e", "context": {"cluster": "wasmplug-e2e", "user": "admin"}}],
        "current-context": "wasmplug-e2e",
    });
    let yaml = serde_saphyr::to_string(&kubeconfig)?;
    std::fs::write(path, yaml).with_context(|| format!("failed to write {}", path.display()))
}

/// Polls `/readyz` until the API server answers "ok", failing early if it exits.
async fn wait_until_ready(kubeconfig: &Path, kube_apiserver: &mut Child) -> anyhow::Result<()> {
    let config =
        Config::from_custom_kubeconfig(Kubeconfig::read_from(kubeconfig)?, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Some(status) = kube_apiserver.try_wait()? {
            bail!("kube-apiserver exited with {status} before it was ready");
        }
        let request = http::Request::get("/readyz").body(Vec::new())?;
        match client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => last_error = body,
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("kube-apiserver was not ready within {READY_TIMEOUT:?}; last answer from /readyz: {last_error}")
}

/// The last lines of each server log, to explain a failed start.
fn log_tails(dir: &Path) -> String {
    let mut out = String::from("server logs follow");
    for name in ["etcd.log", "kube-apiserver.log"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        out.push_str(&format!("\n--- {name} (last 25 lines) ---\n{tail}"));
    }
    out
}

/// The repository's root directory (the parent of this crate).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the e2e crate sits inside the repository").to_owned()
}
