//! Finds the control-plane programs: kube-apiserver and kubectl built by
//! `e2e/scripts/control-plane.sh` (cached outside the repository), and etcd from the
//! `etcd-bin-vendored` crate.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Environment variable naming a directory that holds kube-apiserver and kubectl
/// (and, for the real node, kubelet, kube-proxy, kube-controller-manager and
/// kube-scheduler); when unset, the build script is run (it reuses its cache).
pub const BIN_DIR_ENV: &str = "WASMPLUG_KUBE_BIN_DIR";

#[derive(Clone, Debug)]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
    pub etcd: PathBuf,
    /// The directory the Kubernetes binaries are in.
    pub dir: PathBuf,
}

impl Binaries {
    pub fn locate() -> anyhow::Result<Self> {
        let dir = match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => run_build_script("control-plane.sh")?,
        };
        let etcd = etcd_bin_vendored::etcd_bin_path()
            .map_err(|e| anyhow::anyhow!("failed to find an etcd binary for this platform: {e}"))?
            .to_owned();
        let binaries = Binaries {
            kube_apiserver: dir.join("kube-apiserver"),
            kubectl: dir.join("kubectl"),
            etcd,
            dir: dir.clone(),
        };
        for path in [&binaries.kube_apiserver, &binaries.kubectl, &binaries.etcd] {
            if !path.is_file() {
                bail!(
                    "failed to find {}; run e2e/scripts/control-plane.sh or point {BIN_DIR_ENV} at a directory with kube-apiserver and kubectl",
                    path.display()
                );
            }
        }
        Ok(binaries)
    }
}

/// Runs one of the project's build scripts in e2e/scripts (which reuse their
/// cache); each prints the directory of what it built last.
pub(crate) fn run_build_script(name: &str) -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name);
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} exited with {}", script.display(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().with_context(|| format!("{} printed no directory", script.display()))?;
    Ok(PathBuf::from(dir.trim()))
}

/// The node's programs, built by `e2e/scripts/control-plane.sh` beside kube-apiserver.
#[derive(Clone, Debug)]
pub(crate) struct NodeBinaries {
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
}

impl NodeBinaries {
    pub fn locate(binaries: &Binaries) -> anyhow::Result<Self> {
        let dir = &binaries.dir;
        let node = NodeBinaries {
            kubelet: dir.join("kubelet"),
            kube_proxy: dir.join("kube-proxy"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            kube_scheduler: dir.join("kube-scheduler"),
        };
        for path in [&node.kubelet, &node.kube_proxy, &node.kube_controller_manager, &node.kube_scheduler] {
            if !path.is_file() {
                bail!(
                    "failed to find {}; run e2e/scripts/control-plane.sh (it builds the node's programs too)",
                    path.display()
                );
            }
        }
        Ok(node)
    }
}
