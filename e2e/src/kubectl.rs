//! kubectl as a user runs it, pointed at the test control plane: what it prints on
//! stdout and stderr is exactly what a user would read.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// kubectl with the control plane's kubeconfig. Cheap to make; one per call site.
#[derive(Clone, Debug)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
}

/// What one kubectl run printed.
#[derive(Debug)]
pub struct KubectlOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    /// Stdout when kubectl succeeded; otherwise an error quoting the command and
    /// its stderr.
    pub fn success(self) -> anyhow::Result<String> {
        if !self.status.success() {
            bail!("`{}` failed ({}): {}", self.command, self.status, self.stderr.trim());
        }
        Ok(self.stdout)
    }

    /// Stderr when kubectl failed, as a user would see it; an error if it succeeded.
    pub fn failure(self) -> anyhow::Result<String> {
        if self.status.success() {
            bail!("`{}` succeeded but was expected to fail; it printed: {}", self.command, self.stdout.trim());
        }
        Ok(self.stderr)
    }
}

impl Kubectl {
    pub fn new(program: PathBuf, kubeconfig: PathBuf) -> Self {
        Kubectl { program, kubeconfig }
    }

    /// Runs `kubectl <args>`.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<KubectlOutput> {
        self.run_with_stdin(args, "").await
    }

    /// Runs `kubectl <args>` and returns its stdout; panics with the command and its
    /// stderr when it fails. For test steps that must succeed.
    pub async fn succeed(&self, args: &[&str]) -> String {
        match self.run(args).await.and_then(KubectlOutput::success) {
            Ok(stdout) => stdout,
            Err(error) => panic!("{error:#}"),
        }
    }

    /// Runs `kubectl <args>` with `stdin` as its standard input (for `-f -`).
    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> anyhow::Result<KubectlOutput> {
        let command = format!("kubectl {}", args.join(" "));
        let mut child = Command::new(&self.program)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start `{command}`"))?;
        let mut pipe = child.stdin.take().context("kubectl has no stdin pipe")?;
        pipe.write_all(stdin.as_bytes()).await.with_context(|| format!("failed to write the input of `{command}`"))?;
        drop(pipe);
        let output = child.wait_with_output().await.with_context(|| format!("failed to run `{command}`"))?;
        Ok(KubectlOutput {
            command,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs `kubectl <args>` with `stdin` as its standard input, blocking the
    /// calling thread: for code that may not await (a `Drop`, a start-up thread,
    /// a synchronous test).
    pub fn run_blocking(&self, args: &[&str], stdin: &str) -> anyhow::Result<KubectlOutput> {
        let command = format!("kubectl {}", args.join(" "));
        let mut child = std::process::Command::new(&self.program)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start `{command}`"))?;
        let mut pipe = child.stdin.take().context("kubectl has no stdin pipe")?;
        std::io::Write::write_all(&mut pipe, stdin.as_bytes())
            .with_context(|| format!("failed to write the input of `{command}`"))?;
        drop(pipe);
        let output = child.wait_with_output().with_context(|| format!("failed to run `{command}`"))?;
        Ok(KubectlOutput {
            command,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
