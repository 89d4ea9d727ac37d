//! Real Git repositories for tests, served by `git daemon` on 127.0.0.1 over the
//! git:// protocol, and written with the `git` command line as a plugin author
//! would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

use crate::control_plane::{control_plane, free_ports};

/// A `git daemon` exporting every repository under its base directory.
#[derive(Debug)]
pub struct GitServer {
    base: tempfile::TempDir,
    port: u16,
    daemon: Child,
}

impl GitServer {
    pub fn start() -> anyhow::Result<Self> {
        let base = tempfile::Builder::new().prefix("wasmplug-git-").tempdir()?;
        let [port] = free_ports::<1>()?;
        let daemon = Command::new("git")
            .args(["daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.path().display()))
            .arg(base.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start git daemon (is git installed?)")?;
        control_plane().guard(daemon.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("git daemon did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(GitServer { base, port, daemon })
    }

    /// A new, empty repository named `name` (with a `main` branch once committed).
    pub fn create(&self, name: &str) -> anyhow::Result<Repo> {
        let dir = self.base.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let repo = Repo { dir, url: format!("git://127.0.0.1:{}/{name}", self.port) };
        repo.git(&["init", "--quiet", "--initial-branch=main"])?;
        Ok(repo)
    }

    /// A URL on this server where no repository exists.
    pub fn missing_url(&self) -> String {
        format!("git://127.0.0.1:{}/no-such-repository", self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// One repository served by a [`GitServer`].
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
    url: String,
}

impl Repo {
    /// The git:// URL a FormatPlugin names.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `files` (path in the repository, contents), commits them on the
    /// current branch and returns the commit's id.
    pub fn commit(&self, files: &[(&str, &[u8])], message: &str) -> anyhow::Result<String> {
        for (path, contents) in files {
            let path = self.dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, contents).with_context(|| format!("failed to write {}", path.display()))?;
        }
        self.git(&["add", "--all"])?;
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message])?;
        self.head()
    }

    /// Copies the package directory `package` to `path` in the repository and commits it.
    pub fn commit_package(&self, path: &str, package: &Path, message: &str) -> anyhow::Result<String> {
        let mut files = Vec::new();
        for name in ["plugin.toml", "plugin.wasm"] {
            let contents = std::fs::read(package.join(name)).with_context(|| format!("failed to read {name}"))?;
            files.push((if path.is_empty() { name.to_owned() } else { format!("{path}/{name}") }, contents));
        }
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (p.as_str(), c.as_slice())).collect();
        self.commit(&files, message)
    }

    pub fn tag(&self, name: &str) -> anyhow::Result<()> {
        self.git(&["tag", "--annotate", name, "-m", name]).map(drop)
    }

    pub fn head(&self) -> anyhow::Result<String> {
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_owned())
    }

    fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_AUTHOR_NAME", "wasmplug e2e")
            .env("GIT_AUTHOR_EMAIL", "e2e@wasmplug.dev")
            .env("GIT_COMMITTER_NAME", "wasmplug e2e")
            .env("GIT_COMMITTER_EMAIL", "e2e@wasmplug.dev")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .context("failed to run git")?;
        if !output.status.success() {
            bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
