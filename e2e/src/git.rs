//! Real Git repositories for tests, served by `git daemon` over the git://
//! protocol on 127.0.0.1 (or the real node's bridge address, for pods), and
//! written with the `git` command line as a plugin author would.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};

use crate::control_plane::{control_plane, free_ports_on, wait_until_listening};

/// A `git daemon` exporting every repository under its base directory.
#[derive(Debug)]
pub struct GitServer {
    base: tempfile::TempDir,
    address: IpAddr,
    port: u16,
    daemon: Child,
}

impl GitServer {
    pub fn start() -> anyhow::Result<Self> {
        let server = Self::start_unguarded()?;
        control_plane().guard(server.daemon.id());
        Ok(server)
    }

    /// Starts the daemon on `address` (e.g. the real node's bridge address, for
    /// pods), without telling the loopback control plane's watchdog about it: it
    /// stops when dropped, and the caller guards [`GitServer::pid`] against a
    /// killed test binary.
    pub fn start_on(address: IpAddr) -> anyhow::Result<Self> {
        Self::start_unguarded_on(address)
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.daemon.id()
    }

    fn start_unguarded() -> anyhow::Result<Self> {
        Self::start_unguarded_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn start_unguarded_on(address: IpAddr) -> anyhow::Result<Self> {
        let base = tempfile::Builder::new().prefix("wasmplug-git-").tempdir()?;
        let [port] = free_ports_on::<1>(address)?;
        // `git daemon` runs `git-daemon` as a child, and the daemon a child per
        // connection: start the daemon itself, as the leader of a process group
        // that stopping the server kills whole. A connection that never sends a
        // request ends by itself after --init-timeout.
        let daemon = Command::new(git_daemon()?)
            .args(["--export-all", "--reuseaddr", "--init-timeout=5"])
            .arg(format!("--listen={address}"))
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.path().display()))
            .arg(base.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start git daemon (is git installed?)")?;
        wait_until_listening("git daemon", SocketAddr::new(address, port), || Ok(()))?;
        Ok(GitServer { base, address, port, daemon })
    }

    /// A new, empty repository named `name` (with a `main` branch once committed).
    pub fn create(&self, name: &str) -> anyhow::Result<Repo> {
        let dir = self.base.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let repo = Repo { dir, url: format!("git://{}/{name}", SocketAddr::new(self.address, self.port)) };
        repo.git(&["init", "--quiet", "--initial-branch=main"])?;
        Ok(repo)
    }

    /// A URL on this server where no repository exists.
    pub fn missing_url(&self) -> String {
        format!("git://{}/no-such-repository", SocketAddr::new(self.address, self.port))
    }
}

/// The `git-daemon` program of the installed git.
fn git_daemon() -> anyhow::Result<PathBuf> {
    let output = Command::new("git").arg("--exec-path").output().context("failed to run git (is it installed?)")?;
    let daemon = Path::new(String::from_utf8_lossy(&output.stdout).trim()).join("git-daemon");
    if !daemon.is_file() {
        bail!("git has no {} (install git's daemon)", daemon.display());
    }
    Ok(daemon)
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.daemon.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
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

/// The repositories of a [`GitServer`] over smart HTTP (`git http-backend`, run
/// as CGI per request), behind basic authentication: what a private repository
/// on a Git host looks like to a client. Stops when dropped.
#[derive(Debug)]
pub struct GitHttp {
    port: u16,
    /// Requests that carried an `Authorization` header, right or wrong.
    with_credentials: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl GitHttp {
    /// The http:// URL of repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// How many requests so far carried credentials.
    pub fn requests_with_credentials(&self) -> usize {
        self.with_credentials.load(Ordering::Relaxed)
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitServer {
    /// Serves this server's repositories over HTTP to `username` / `password`.
    pub async fn serve_http(&self, username: &str, password: &str) -> anyhow::Result<GitHttp> {
        use base64::Engine as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")));
        let root = self.base.path().to_owned();
        let with_credentials: Arc<AtomicUsize> = Arc::default();
        let counter = with_credentials.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (root, expected, counter) = (root.clone(), expected.clone(), counter.clone());
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    if request.headers().contains_key(hyper::header::AUTHORIZATION) {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    let (root, expected) = (root.clone(), expected.clone());
                    async move { Ok::<_, std::convert::Infallible>(http_backend(&root, &expected, request).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Ok(GitHttp { port, with_credentials, task })
    }
}

async fn http_backend(
    root: &Path,
    expected: &str,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let respond = |status: u16, headers: Vec<(String, String)>, body: Vec<u8>| {
        let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) =
                (hyper::header::HeaderName::from_bytes(name.as_bytes()), hyper::header::HeaderValue::from_str(&value))
            {
                response.headers_mut().append(name, value);
            }
        }
        response
    };
    let authorized =
        request.headers().get(hyper::header::AUTHORIZATION).is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        return respond(401, vec![("WWW-Authenticate".into(), "Basic realm=\"git\"".into())], Vec::new());
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let header = |name: hyper::header::HeaderName| {
        parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_TYPE", header(hyper::header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "e2e")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return respond(502, Vec::new(), b"git http-backend did not start".to_vec()) };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(output) = child.wait_with_output().await else { return respond(502, Vec::new(), Vec::new()) };
    // CGI output: headers, a blank line, the body.
    let split = output.stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| output.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, gap)) = split else { return respond(502, Vec::new(), output.stdout) };
    let mut status = 200;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout[..at]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim().to_owned();
        if name.eq_ignore_ascii_case("status") {
            status = value.split_whitespace().next().and_then(|code| code.parse().ok()).unwrap_or(502);
        } else {
            headers.push((name.to_owned(), value));
        }
    }
    respond(status, headers, output.stdout[at + gap..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes whose command line mentions `text`.
    fn processes_mentioning(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(text) {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
        found
    }

    #[test]
    fn a_stopped_git_server_leaves_no_process_behind() {
        let server = GitServer::start_unguarded().expect("git daemon starts");
        let base = server.base.path().display().to_string();
        assert!(!processes_mentioning(&base).is_empty(), "the daemon runs");
        // A connection that sends nothing, as the readiness probe's did.
        let _idle = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connects");
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(server);
        // Killed processes leave /proc as soon as they are reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !processes_mentioning(&base).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(processes_mentioning(&base), Vec::<String>::new(), "processes left behind");
    }
}
