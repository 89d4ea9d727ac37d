//! helm as a user runs it, pointed at the test control plane, with the
//! repository's chart. Helm is built by `e2e/scripts/helm.sh` (cached outside the
//! repository) unless [`HELM_BIN_DIR_ENV`] names a directory holding it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::control_plane::{control_plane, repository_root};

/// Environment variable naming a directory that holds helm; when unset, the
/// build script is run (it reuses its cache).
pub const HELM_BIN_DIR_ENV: &str = "WASMPLUG_HELM_BIN_DIR";

/// helm with the control plane's kubeconfig and a private home (cache, config,
/// data), so that tests never read or write the developer's helm settings.
#[derive(Debug)]
pub struct Helm {
    program: PathBuf,
    home: tempfile::TempDir,
    /// The cluster helm talks to; the loopback control plane's when unset.
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    pub fn locate() -> anyhow::Result<Self> {
        let dir = match std::env::var_os(HELM_BIN_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => crate::binaries::run_build_script("helm.sh")?,
        };
        let program = dir.join("helm");
        if !program.is_file() {
            bail!("failed to find {}; run e2e/scripts/helm.sh or set {HELM_BIN_DIR_ENV}", program.display());
        }
        let home = tempfile::Builder::new().prefix("wasmplug-helm-").tempdir()?;
        Ok(Helm { program, home, kubeconfig: None })
    }

    /// The same helm, talking to the cluster of `kubeconfig`.
    pub fn with_kubeconfig(self, kubeconfig: &Path) -> Self {
        Helm { kubeconfig: Some(kubeconfig.to_owned()), ..self }
    }

    /// The chart in this repository.
    pub fn chart() -> PathBuf {
        repository_root().join("charts/wasmplug")
    }

    /// Runs `helm <args>` and returns its stdout; an error quoting the command and
    /// its stderr when it fails.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let command = format!("helm {}", args.join(" "));
        let home = self.home.path();
        let output = Command::new(&self.program)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig.as_deref().unwrap_or_else(|| control_plane().kubeconfig()))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("failed to run `{command}`"))?;
        if !output.status.success() {
            bail!("`{command}` failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `helm template <release> <chart> -n <namespace> <extra>`: the manifests the
    /// chart renders.
    pub async fn template(&self, release: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<String> {
        let chart = Self::chart();
        let mut args = vec!["template", release, path(&chart), "--namespace", namespace];
        args.extend_from_slice(extra);
        self.run(&args).await
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("the repository path is UTF-8")
}
