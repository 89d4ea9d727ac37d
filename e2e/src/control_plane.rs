//! One real Kubernetes control plane per test binary: etcd and kube-apiserver on
//! 127.0.0.1 free ports, with generated certificates, a kubeconfig, and wasmplug's
//! CRDs installed from the committed YAML the way a user would install them.
//!
//! Nothing outlives the test binary. A watchdog shell holds the read end of a pipe
//! whose write end only this process has; when the process ends, however it ends
//! (success, a panicking test, a signal), the pipe closes and the watchdog stops
//! etcd and kube-apiserver and removes their directory.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
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

/// Set to keep the control plane's directory (certificates, kubeconfig, logs) after
/// the tests end; its path is printed at start.
pub const KEEP_ENV: &str = "WASMPLUG_E2E_KEEP";

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
    /// The write end of the watchdog's pipe; never written after start, closed only
    /// when the process exits.
    watchdog: Mutex<ChildStdin>,
}

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane of this test binary, started on first use.
///
/// Blocks while starting (a few seconds); safe to call from async tests. Panics with
/// the reason and the servers' log tails when the control plane cannot start.
pub fn control_plane() -> &'static ControlPlane {
    let started = CONTROL_PLANE.get_or_init(|| {
        // Start on a thread of its own: starting needs a runtime, and the caller may
        // already be inside one.
        std::thread::spawn(|| ControlPlane::start().map_err(|e| format!("{e:#}")))
            .join()
            .unwrap_or_else(|_| Err("the control-plane start thread panicked".into()))
    });
    match started {
        Ok(control_plane) => control_plane,
        Err(error) => panic!("failed to start the control plane: {error}"),
    }
}

impl ControlPlane {
    fn start() -> anyhow::Result<Self> {
        let began = Instant::now();
        let binaries = Binaries::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("wasmplug-e2e-")
            .tempdir()
            .context("failed to create a temporary directory")?;
        let dir = dir.keep();
        let mut watchdog = Watchdog::spawn(&dir)?;
        let certs = Certificates::generate(&dir)?;
        let [etcd_client, etcd_peer, apiserver] = free_ports()?;

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
        watchdog.guard(&etcd)?;

        let serving = certs.serving();
        let mut kube_apiserver = spawn_logged(
            Command::new(&binaries.kube_apiserver).args([
                format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={apiserver}"),
                format!("--cert-dir={}", dir.display()),
                format!("--tls-cert-file={}", serving.cert.display()),
                format!("--tls-private-key-file={}", serving.key.display()),
                format!("--client-ca-file={}", certs.ca_cert().display()),
                "--authorization-mode=RBAC".to_owned(),
                "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
                format!("--service-account-key-file={}", certs.service_account_public_key().display()),
                format!("--service-account-signing-key-file={}", certs.service_account_signing_key().display()),
                "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
                "--disable-admission-plugins=ServiceAccount".to_owned(),
                "--profiling=false".to_owned(),
            ]),
            &dir.join("kube-apiserver.log"),
        )?;
        watchdog.guard(&kube_apiserver)?;

        let server = format!("https://127.0.0.1:{apiserver}");
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
            watchdog: Mutex::new(watchdog.into_pipe()),
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
        let crds = repository_root().join("crds/formatplugins.wasmplug.dev.yaml");
        let crds = crds.to_string_lossy();
        let kubectl = self.kubectl();
        kubectl.run(&["apply", "--server-side", "--field-manager=wasmplug-e2e", "-f", &crds]).await?.success()?;
        kubectl
            .run(&["wait", "--for=condition=Established", "--timeout=60s", "crd/formatplugins.wasmplug.dev"])
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
        let credentials = self.certs.client(user, Some(group))?;
        let file_stem: String = user.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let path = self.dir.join(format!("kubeconfig-{file_stem}"));
        write_kubeconfig(&path, &self.server, &self.certs.ca_cert(), &credentials.cert, &credentials.key)?;
        Ok(path)
    }

    /// Makes the watchdog stop process `pid` when this test binary ends, however
    /// it ends (for processes a test starts: operators, hosts, git daemons).
    pub fn guard(&self, pid: u32) {
        let mut pipe = self.watchdog.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(pipe, "{pid}");
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

/// Stops the servers when this process ends. See the module documentation.
struct Watchdog {
    pipe: ChildStdin,
}

impl Watchdog {
    /// The watchdog reads PIDs from its stdin until end of file, then stops them
    /// (TERM, then KILL after 5 s) and removes `dir` unless [`KEEP_ENV`] is set.
    /// It ignores SIGINT and SIGHUP so that Ctrl-C in a terminal still cleans up.
    fn spawn(dir: &Path) -> anyhow::Result<Self> {
        const SCRIPT: &str = r#"
            trap '' INT HUP
            pids=""
            while read -r pid; do pids="$pids $pid"; done
            [ -n "$pids" ] && kill $pids 2>/dev/null
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                kill -0 $pids 2>/dev/null || break
                sleep 0.5
            done
            [ -n "$pids" ] && kill -9 $pids 2>/dev/null
            [ -n "$KEEP" ] || rm -rf "$1"
        "#;
        let mut child = Command::new("sh")
            .args(["-c", SCRIPT, "wasmplug-e2e-watchdog"])
            .arg(dir)
            .env("KEEP", std::env::var_os(KEEP_ENV).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("failed to start the watchdog shell (sh)")?;
        let pipe = child.stdin.take().context("the watchdog has no stdin pipe")?;
        Ok(Watchdog { pipe })
    }

    fn guard(&mut self, child: &Child) -> anyhow::Result<()> {
        writeln!(self.pipe, "{}", child.id()).context("failed to hand a PID to the watchdog")
    }

    fn into_pipe(self) -> ChildStdin {
        self.pipe
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

/// Distinct free ports on 127.0.0.1, all held open until each is known.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("failed to find a free port on 127.0.0.1"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ports = listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<Vec<_>, _>>()?;
    Ok(ports.try_into().expect("one port per listener"))
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
