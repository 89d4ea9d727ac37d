//! A real single-node Kubernetes cluster, one per test binary: the control plane
//! bound to a private bridge's address, kube-controller-manager and
//! kube-scheduler, and containerd + runc + kubelet + kube-proxy on that bridge,
//! with wasmplug's image (built from the binaries the tests built) imported
//! into containerd. No registry is needed: pods use images already on the node.
//!
//! Pod traffic never leaves the machine: see [`network`]. One cluster at a time
//! runs on a machine (containerd 1.6 keeps some state in fixed paths under
//! /run/containerd); a second waits for the first to end.
//!
//! Nothing outlives the test binary: when it ends, however it ends, the watchdog
//! runs `e2e/scripts/node-teardown.sh` (workloads deleted through the API, then
//! the kubelet and the Node, kube-proxy's rules, containerd, mounts, cgroups, the
//! bridge and the guard, the sysctls the kubelet changed, the paths it made
//! outside the directory), then stops the control plane and removes the
//! directory.

mod config;
mod footprint;
mod network;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub use footprint::Footprint;

use crate::binaries::{Binaries, NodeBinaries, run_build_script};
use crate::control_plane::{ControlPlane, Serving, free_ports, free_ports_on, repository_root};
use crate::helm::Helm;
use crate::kubectl::Kubectl;
use crate::watchdog::{Duties, KEEP_ENV, Watchdog};

/// The node's bridge: pods' interfaces are its ports.
pub const BRIDGE: &str = "wasmplug0";
/// The node's own address on the bridge: the API server, the kubelet and any
/// server a test starts for pods listen here; pods route everything through it.
pub const BRIDGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const POD_SUBNET: &str = "10.244.0.0/24";
const NODE_NAME: &str = "wasmplug-e2e";
const GUARD_TABLE: &str = "wasmplug_e2e_guard";
/// wasmplug's image on the node, built by `e2e/scripts/image.sh`.
pub const IMAGE: &str = "localhost/wasmplug:e2e";
/// A shell for client pods: Debian's static busybox (wget, sh), imported as an image.
pub const TOOLBOX_IMAGE: &str = "localhost/toolbox:e2e";
const PAUSE_IMAGE: &str = "localhost/pause:v1.34.4";
/// The StorageClass of the node's one PersistentVolume: a ReadWriteOnce
/// hostPath volume under the cluster's directory, standing in for the block
/// storage most clusters' default StorageClass provides (the node has no
/// provisioner and no ReadWriteMany storage). The chart's default install
/// claims none; its shared-store mode could not run here.
pub const STORE_CLASS: &str = "node-local";

/// The node has no cluster DNS: the chart is installed with
/// `operator.artifacts.clusterIP` set to this address of the Service range, so
/// that hosts reach the artifact Service by address.
pub const ARTIFACTS_CLUSTER_IP: &str = "10.0.0.10";

/// Paths outside the cluster's directory that the node's components create
/// when missing; those that did not exist before are removed at teardown.
const OUTSIDE_PATHS: &[&str] = &[
    "/run/containerd",
    "/run/netns",
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/etc/cni",
    "/opt/cni",
];

/// Sysctls the kubelet sets; recorded at start and restored at teardown.
const RESTORED_SYSCTLS: &[&str] = &["vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops"];

const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running single-node cluster. Obtain the test binary's with [`cluster`].
#[derive(Debug)]
pub struct Cluster {
    control_plane: ControlPlane,
    containerd_socket: PathBuf,
    started_in: Duration,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster of this test binary, started on first use (about half a minute).
/// Panics with the reason and the components' log tails when it cannot start.
pub fn cluster() -> &'static Cluster {
    let started = CLUSTER.get_or_init(|| {
        std::thread::spawn(|| Cluster::start().map_err(|e| format!("{e:#}")))
            .join()
            .unwrap_or_else(|_| Err("the cluster start thread panicked".into()))
    });
    match started {
        Ok(cluster) => cluster,
        Err(error) => panic!("failed to start the cluster: {error}"),
    }
}

/// Room the node's suite needs beyond the kubelet's eviction threshold:
/// images, pods' volumes and logs, and the build's own files meanwhile.
const DISK_HEADROOM: u64 = 6 << 30;

/// Fails, saying what to do, when the filesystem of `dir` has so little room
/// that the kubelet would start evicting the pods (below 1% free, see
/// [`config::kubelet`]): a full disk otherwise shows up as pods that fail for
/// no visible reason.
fn ensure_room_on_disk(dir: &Path) -> anyhow::Result<()> {
    let output = std::process::Command::new("df")
        .args(["--output=avail,size", "-B1"])
        .arg(dir)
        .output()
        .context("failed to run df")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> =
        text.lines().nth(1).unwrap_or_default().split_whitespace().filter_map(|n| n.parse().ok()).collect();
    let [available, size] = numbers[..] else { bail!("cannot read df's answer for {}: {text}", dir.display()) };
    let needed = size / 100 + DISK_HEADROOM;
    if available < needed {
        bail!(
            "the node needs {} GiB free on the filesystem of {} and has {} GiB: the kubelet evicts every pod \
             below 1% free; free some space (old cargo target directories are the usual cause) and run again",
            needed >> 30,
            dir.display(),
            available >> 30
        );
    }
    Ok(())
}

impl Cluster {
    /// Starts a cluster of its own (most tests share [`cluster`]'s). Blocking.
    pub fn start() -> anyhow::Result<Cluster> {
        let began = Instant::now();
        let binaries = Binaries::locate()?;
        let node = NodeBinaries::locate(&binaries)?;
        let node_cache = run_build_script("node.sh")?;
        let dir = tempfile::Builder::new()
            .prefix("wasmplug-node-")
            .tempdir()
            .context("failed to create a temporary directory")?
            .keep();
        ensure_room_on_disk(&dir)?;
        let teardown = repository_root().join("e2e/scripts/node-teardown.sh");
        let watchdog = Watchdog::spawn(&dir, Duties { teardown: Some(teardown), lock: Some(node_cache.clone()) })?;
        let containerd_socket = dir.join("containerd/containerd.sock");
        record_machine_state(&dir, &binaries, &node, &containerd_socket)?;
        network::create().context("failed to make the node's network")?;

        let serving = Serving { address: IpAddr::V4(BRIDGE_ADDRESS), for_node: true };
        let control_plane = ControlPlane::start(dir.clone(), watchdog, serving)?;
        let cluster = Cluster { control_plane, containerd_socket, started_in: Duration::ZERO };
        cluster.start_node(&node, &node_cache).with_context(|| cluster.log_tails())?;
        let cluster = Cluster { started_in: began.elapsed(), ..cluster };
        eprintln!(
            "cluster: node {NODE_NAME} Ready, API server {}, in {:.1?} (directory {}{})",
            cluster.control_plane.server(),
            cluster.started_in,
            cluster.dir().display(),
            if std::env::var_os(KEEP_ENV).is_some() { ", kept" } else { "" }
        );
        Ok(cluster)
    }

    fn start_node(&self, node: &NodeBinaries, node_cache: &Path) -> anyhow::Result<()> {
        let dir = self.dir();
        let cp = &self.control_plane;
        let certs = cp.certificates();
        let [kcm_port, scheduler_port, kubelet_healthz, proxy_healthz, proxy_metrics] = free_ports()?;
        let [kubelet_port] = free_ports_on(IpAddr::V4(BRIDGE_ADDRESS))?;

        let kcm = cp.kubeconfig_for("system:kube-controller-manager", None)?;
        self.spawn(
            "kube-controller-manager",
            Command::new(&node.kube_controller_manager).args(controller_flags(&kcm, kcm_port)).args([
                "--use-service-account-credentials=true".to_owned(),
                format!("--root-ca-file={}", certs.ca_cert().display()),
                format!("--service-account-private-key-file={}", certs.service_account_signing_key().display()),
                "--controllers=*,-nodeipam,-route,-cloud-node-lifecycle,-service-lb-controller".to_owned(),
            ]),
        )?;
        let scheduler = cp.kubeconfig_for("system:kube-scheduler", None)?;
        self.spawn(
            "kube-scheduler",
            Command::new(&node.kube_scheduler).args(controller_flags(&scheduler, scheduler_port)),
        )?;

        for sub in ["containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "volume-plugins"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("failed to create {sub}"))?;
        }
        write(&dir.join("containerd/config.toml"), &config::containerd(dir, &self.containerd_socket, PAUSE_IMAGE))?;
        write(&dir.join("cni/net.d/10-wasmplug.conflist"), &config::cni(dir))?;
        self.spawn(
            "containerd",
            Command::new("containerd").arg(format!("--config={}", dir.join("containerd/config.toml").display())),
        )?;
        self.wait_for_containerd()?;
        self.import(&node_cache.join("pause.tar"))?;
        self.import(&build_image(dir)?)?;
        self.import(&build_toolbox_image(dir)?)?;

        write(&dir.join("resolv.conf"), &config::resolv_conf())?;
        let ports = config::KubeletPorts { serving: kubelet_port, healthz: kubelet_healthz };
        write(&dir.join("kubelet/config.yaml"), &config::kubelet(dir, &self.containerd_socket, &ports))?;
        let kubelet = cp.kubeconfig_for(&format!("system:node:{NODE_NAME}"), Some("system:nodes"))?;
        self.spawn(
            "kubelet",
            Command::new(&node.kubelet).args([
                format!("--config={}", dir.join("kubelet/config.yaml").display()),
                format!("--kubeconfig={}", kubelet.display()),
                format!("--root-dir={}", dir.join("kubelet").display()),
                format!("--cert-dir={}", dir.join("kubelet/pki").display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={BRIDGE_ADDRESS}"),
                "--v=1".to_owned(),
            ]),
        )?;

        let proxy = cp.kubeconfig_for("system:kube-proxy", None)?;
        write(&dir.join("kube-proxy.yaml"), &config::kube_proxy(&proxy, proxy_healthz, proxy_metrics))?;
        self.spawn(
            "kube-proxy",
            Command::new(&node.kube_proxy).arg(format!("--config={}", dir.join("kube-proxy.yaml").display())),
        )?;
        self.wait_until_node_ready()?;
        self.create_store_volume()
    }

    /// The [`STORE_CLASS`] PersistentVolume, owned by the chart's user (65532).
    fn create_store_volume(&self) -> anyhow::Result<()> {
        let store = self.dir().join("store");
        std::fs::create_dir_all(&store)?;
        std::os::unix::fs::chown(&store, Some(65532), Some(65532)).context("failed to chown the store directory")?;
        let volume = serde_json::json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "wasmplug-store"},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORE_CLASS,
                "hostPath": {"path": store, "type": "Directory"},
            },
        });
        self.kubectl().run_blocking(&["apply", "-f", "-"], &volume.to_string())?.success()?;
        Ok(())
    }

    /// Starts a component with its output in `<name>.log`, its PID where the
    /// teardown script finds it, and the watchdog guarding it.
    fn spawn(&self, name: &str, command: &mut Command) -> anyhow::Result<Child> {
        let dir = self.dir();
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {name}"))?;
        std::fs::create_dir_all(dir.join("pids"))?;
        write(&dir.join(format!("pids/{name}")), &child.id().to_string())?;
        self.control_plane.guard(child.id());
        Ok(child)
    }

    fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command.arg(format!("--address={}", self.containerd_socket.display())).args(["--namespace", "k8s.io"]);
        command
    }

    fn wait_for_containerd(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.ctr().arg("version").output().is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("containerd did not answer on {} within 30 s", self.containerd_socket.display())
    }

    fn import(&self, archive: &Path) -> anyhow::Result<()> {
        let output = self
            .ctr()
            .args(["images", "import", "--no-unpack=false", "--digests"])
            .arg(archive)
            .output()
            .context("failed to run ctr")?;
        if !output.status.success() {
            bail!(
                "failed to import {} into containerd: {}",
                archive.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn wait_until_node_ready(&self) -> anyhow::Result<()> {
        let kubectl = self.kubectl();
        let ready = "-o=jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let output = kubectl.run_blocking(&["get", "node", NODE_NAME, ready], "")?;
            last = output.stdout + &output.stderr;
            let default_sa = kubectl.run_blocking(&["get", "serviceaccount", "default", "-n", "default"], "")?;
            if last.trim() == "True" && default_sa.status.success() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!("node {NODE_NAME} was not Ready within {NODE_READY_TIMEOUT:?} (last: {})", last.trim())
    }

    /// Builds the repository's Dockerfile (its runtime stage, with this run's
    /// binaries; `e2e/scripts/dockerfile-image.sh`) and imports the result into
    /// the node as `localhost/wasmplug:<tag>`. Blocking; about half a minute.
    pub fn import_dockerfile_image(&self, tag: &str) -> anyhow::Result<String> {
        let binaries = crate::wasmplug::workspace_binary("wasmplug-host");
        let binaries = binaries.parent().context("the host binary is in a directory")?;
        let out = self.dir().join(format!("wasmplug-{tag}.tar"));
        run_script(
            "dockerfile-image.sh",
            &["--binaries", &binaries.to_string_lossy(), "--tag", tag, "--out", &out.to_string_lossy()],
        )?;
        let (repository, _) = IMAGE.rsplit_once(':').context("the image has a tag")?;
        let output = self
            .ctr()
            .args(["images", "import", "--base-name", repository])
            .arg(&out)
            .output()
            .context("failed to run ctr")?;
        if !output.status.success() {
            bail!("failed to import {} into containerd: {}", out.display(), String::from_utf8_lossy(&output.stderr));
        }
        Ok(format!("{repository}:{tag}"))
    }

    /// Kills a container's process with SIGKILL from the node, as the OOM killer
    /// or a crash would; `container_id` as a pod's status gives it
    /// (`containerd://<id>`).
    pub fn kill_container(&self, container_id: &str) -> anyhow::Result<()> {
        let id = container_id.strip_prefix("containerd://").unwrap_or(container_id);
        let output =
            self.ctr().args(["tasks", "kill", "--signal", "SIGKILL", id]).output().context("failed to run ctr")?;
        if !output.status.success() {
            bail!("ctr tasks kill {id} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    /// The control plane this node is joined to.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    pub fn kubectl(&self) -> Kubectl {
        self.control_plane.kubectl()
    }

    pub fn kubectl_program(&self) -> &Path {
        self.control_plane.kubectl_program()
    }

    pub fn kubeconfig(&self) -> &Path {
        self.control_plane.kubeconfig()
    }

    /// Helm, pointed at this cluster.
    pub fn helm(&self) -> anyhow::Result<Helm> {
        Ok(Helm::locate()?.with_kubeconfig(self.kubeconfig()))
    }

    /// The cluster's directory (logs of every component, configuration, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.control_plane.dir()
    }

    /// Makes the watchdog stop `pid` when this test binary ends.
    pub fn guard(&self, pid: u32) {
        self.control_plane.guard(pid);
    }

    /// How long the cluster took to start, from locating binaries to the node Ready.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Packets the network guard dropped so far (each one a pod's packet that
    /// tried to leave through another interface); an error when the guard is
    /// not installed.
    pub fn guard_drops(&self) -> anyhow::Result<u64> {
        network::guard_drops()
    }

    /// The guard's rules as nftables lists them.
    pub fn guard_rules(&self) -> String {
        network::guard_rules()
    }

    /// Takes the cluster down now, exactly as the watchdog does at exit, and
    /// waits until it is done.
    pub fn finish(self) -> anyhow::Result<()> {
        self.control_plane.finish()
    }

    /// The last lines of every component's log, to explain a failure.
    pub fn log_tails(&self) -> String {
        let mut out = String::from("component logs follow");
        for name in
            ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"]
        {
            let text = std::fs::read_to_string(self.dir().join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("\n--- {name}.log (last 15 lines) ---\n{tail}"));
        }
        out
    }
}

/// The flags kube-controller-manager and kube-scheduler share: their identity
/// (also for checking callers of their own endpoints), no leader election (one
/// replica), their endpoints on a loopback port, no profiling.
fn controller_flags(kubeconfig: &Path, port: u16) -> [String; 7] {
    let kubeconfig = kubeconfig.display();
    [
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--leader-elect=false".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        "--profiling=false".to_owned(),
    ]
}

/// Writes what the teardown script needs: the programs and names it uses, the
/// sysctls to restore, and the paths outside `dir` that it should remove
/// because they did not exist before the node started.
fn record_machine_state(
    dir: &Path,
    binaries: &Binaries,
    node: &NodeBinaries,
    containerd_socket: &Path,
) -> anyhow::Result<()> {
    let mut sysctls = String::new();
    for key in RESTORED_SYSCTLS {
        let value = footprint::read_sysctl(key).with_context(|| format!("failed to read sysctl {key}"))?;
        sysctls.push_str(&format!("{key} {value}\n"));
    }
    write(&dir.join("sysctls"), &sysctls)?;
    let created: String =
        OUTSIDE_PATHS.iter().filter(|path| !Path::new(path).exists()).map(|path| format!("{path}\n")).collect();
    write(&dir.join("created-paths"), &created)?;
    let env = [
        ("KUBECTL", binaries.kubectl.display().to_string()),
        ("KUBECONFIG", dir.join("kubeconfig").display().to_string()),
        ("KUBE_PROXY", node.kube_proxy.display().to_string()),
        ("CONTAINERD_SOCKET", containerd_socket.display().to_string()),
        ("NODE_NAME", NODE_NAME.to_owned()),
        ("BRIDGE", BRIDGE.to_owned()),
        ("GUARD_TABLE", GUARD_TABLE.to_owned()),
    ];
    let env: String = env.iter().map(|(key, value)| format!("{key}='{value}'\n")).collect();
    write(&dir.join("node.env"), &env)
}

/// wasmplug's image from the binaries this test run built (beside the test
/// executable), with `e2e/scripts/image.sh`.
fn build_image(dir: &Path) -> anyhow::Result<PathBuf> {
    let binaries = crate::wasmplug::workspace_binary("wasmplug-host");
    let binaries = binaries.parent().context("the host binary is in a directory")?;
    let out = dir.join("wasmplug-image.tar");
    run_script(
        "image.sh",
        &["--binaries", &binaries.to_string_lossy(), "--name", IMAGE, "--out", &out.to_string_lossy()],
    )?;
    Ok(out)
}

/// A small image with Debian's static busybox, for client pods (sh, wget).
fn build_toolbox_image(dir: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = dir.join("toolbox");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    let busybox = which("busybox")?;
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).context("failed to copy busybox")?;
    for applet in ["sh", "wget", "timeout", "sleep", "cat", "echo", "date", "seq", "grep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let out = dir.join("toolbox.tar");
    run_script(
        "oci-image.sh",
        &[&rootfs.to_string_lossy(), TOOLBOX_IMAGE, &out.to_string_lossy(), "65532:65532", "/bin/sh"],
    )?;
    Ok(out)
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .with_context(|| format!("{program} is not on PATH; e2e/scripts/node.sh installs it"))
}

fn run_script(name: &str, args: &[&str]) -> anyhow::Result<()> {
    let script = repository_root().join("e2e/scripts").join(name);
    let output = Command::new("bash").arg(&script).args(args).output().context("failed to run bash")?;
    if !output.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}
