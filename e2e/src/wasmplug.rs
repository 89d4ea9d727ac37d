//! wasmplug itself under test: the operator and host binaries of this workspace
//! started as real processes against the test control plane, each following one
//! test namespace, as the chart deploys them: hosts download packages from the
//! operator's artifact server into caches of their own, with a ServiceAccount
//! token of the test namespace ([`Distribution::Http`]), or read the operator's
//! store directory ([`Distribution::SharedVolume`]). Operator replicas of one
//! stack share one store directory.
//!
//! A [`Stack`] dumps the namespace's FormatPlugins, Events and both processes'
//! logs when the test that owns it panics.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::control_plane::{control_plane, free_ports};

/// A workspace binary of the running executable's profile (built by `cargo test
/// --workspace`, or `cargo build [--release] --bins`).
pub fn workspace_binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps, binaries in target/<profile>.
    let exe = std::env::current_exe().expect("the running executable knows its path");
    let mut dir = exe.parent().expect("the executable is in a directory");
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir = dir.parent().expect("deps is inside target/<profile>");
    }
    let binary = dir.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --bins` (add --release for benchmarks); \
         `.ci/test` builds every binary",
        binary.display()
    );
    binary
}

/// A process started by a test; killed when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Process {
    fn start(name: &str, program: &Path, args: &[String], log: PathBuf) -> anyhow::Result<Self> {
        Self::start_as(name, program, args, &[], control_plane().kubeconfig(), log)
    }

    /// Starts `program` with `env` added, talking to the API server with
    /// `kubeconfig`, logging to `log`.
    pub fn start_as(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        kubeconfig: &Path,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&log).with_context(|| format!("failed to create {}", log.display()))?;
        let child = tokio::process::Command::new(program)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("WASMPLUG_LOG", "info,wasmplug_operator=debug,wasmplug_host=debug")
            .env("WASMPLUG_LOG_FORMAT", "pretty")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {}", program.display()))?;
        if let Some(pid) = child.id() {
            control_plane().guard(pid);
        }
        Ok(Process { name: name.to_owned(), child, log })
    }

    /// Kills the process at once (SIGKILL), as a node failure would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Asks the process to stop (SIGTERM), as Kubernetes does, and waits.
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id()?;
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.ok()?.ok()
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An operator process and its metrics/health endpoint.
#[derive(Debug)]
pub struct Operator {
    pub process: Process,
    /// e.g. `http://127.0.0.1:41234` (serves /metrics, /healthz, /readyz).
    pub url: String,
}

impl Operator {
    /// Whether this replica says it leads (its `wasmplug_operator_leader` metric is 1).
    pub async fn is_leading(&self) -> bool {
        self.metrics().await.is_ok_and(|text| text.lines().any(|line| line == "wasmplug_operator_leader 1"))
    }

    /// Whether this replica's `/readyz` says ready.
    pub async fn is_ready(&self) -> bool {
        reqwest::get(format!("{}/readyz", self.url)).await.is_ok_and(|r| r.status().is_success())
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.url)).await?.text().await?)
    }
}

/// How a stack's hosts get the packages the operator publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Downloaded from the operator's artifact server into each host's own
    /// cache (the chart's default).
    Http,
    /// Read from the operator's store directory.
    SharedVolume,
    /// Downloaded as with [`Distribution::Http`], every operator replica
    /// having a store of its own and mirroring the others (the chart's
    /// default): replica `n`'s store is `store-<n>`.
    Mirrored,
}

/// The ServiceAccount whose tokens a stack's hosts download with.
pub const HOST_SERVICE_ACCOUNT: &str = "wasmplug-host";
/// The ServiceAccount of a stack's operator replicas (a reader too).
const OPERATOR_SERVICE_ACCOUNT: &str = "wasmplug-operator";
/// The audience of artifact tokens (the operator's default).
const ARTIFACT_AUDIENCE: &str = "wasmplug-artifacts";

/// Artifact ports a stack's operator replicas take in turn: a replacement
/// takes over a dead replica's port, and hosts are started with every port,
/// so they reach whichever replicas run, as a Service would route them.
const ARTIFACT_PORTS: usize = 4;

/// Where a stack's processes find each other: its directory, namespace and
/// ports. Operator run `n` serves artifacts on `artifact_ports[n % 4]`.
#[derive(Debug)]
struct Layout {
    dir: tempfile::TempDir,
    namespace: String,
    distribution: Distribution,
    artifact_ports: [u16; ARTIFACT_PORTS],
}

impl Layout {
    /// Starts operator run `run` on the store of run `store_of` with `extra`
    /// arguments, talking to the API server as `kubeconfig` says.
    fn spawn_operator(
        &self,
        run: usize,
        store_of: usize,
        extra: &[&str],
        kubeconfig: &Path,
    ) -> anyhow::Result<Operator> {
        let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let port = self.artifact_ports[run % ARTIFACT_PORTS];
        let ns = &self.namespace;
        if self.distribution != Distribution::SharedVolume {
            args.extend([
                format!("--artifacts-listen=127.0.0.1:{port}"),
                format!("--artifact-readers={ns}:{HOST_SERVICE_ACCOUNT},{ns}:{OPERATOR_SERVICE_ACCOUNT}"),
                format!("--artifact-url=http://127.0.0.1:{port}"),
            ]);
        }
        if self.distribution == Distribution::Mirrored {
            args.extend([
                format!("--mirror-peers={}", self.artifact_servers().join(",")),
                format!("--artifact-token-file={}", self.dir.path().join("operator-token").display()),
            ]);
        }
        spawn_operator(self.dir.path(), &self.store(store_of), &self.namespace, run, &args, kubeconfig)
    }

    /// The store of operator run `run`.
    fn store(&self, run: usize) -> PathBuf {
        match self.distribution {
            Distribution::Mirrored => self.dir.path().join(format!("store-{run}")),
            Distribution::Http | Distribution::SharedVolume => self.dir.path().join("store"),
        }
    }

    /// Every artifact server operator runs may serve on.
    fn artifact_servers(&self) -> Vec<String> {
        self.artifact_ports.iter().map(|port| format!("http://127.0.0.1:{port}")).collect()
    }

    /// Starts host `name` on a free port with `extra` arguments (an
    /// `--artifact-server` among them replaces the operator runs'); returns it
    /// and its URL.
    fn start_host(&self, name: &str, extra: &[&str]) -> anyhow::Result<(Process, String)> {
        let [port] = free_ports::<1>()?;
        let dir = self.dir.path();
        let mut args = vec![
            "--watch".to_owned(),
            format!("--watch-namespace={}", self.namespace),
            format!("--listen=127.0.0.1:{port}"),
            format!("--host-name={name}"),
            format!("--host-namespace={}", self.namespace),
        ];
        match self.distribution {
            Distribution::SharedVolume => args.push(format!("--store-dir={}", dir.join("store").display())),
            Distribution::Http | Distribution::Mirrored => {
                if !extra.iter().any(|arg| arg.starts_with("--artifact-server=")) {
                    args.push(format!("--artifact-server={}", self.artifact_servers().join(",")));
                }
                args.extend([
                    format!("--cache-dir={}", self.cache(name).display()),
                    format!("--artifact-token-file={}", dir.join("host-token").display()),
                ]);
            }
        }
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let process = Process::start(name, &workspace_binary("wasmplug-host"), &args, dir.join(format!("{name}.log")))?;
        Ok((process, format!("http://127.0.0.1:{port}")))
    }

    /// Host `name`'s cache directory.
    fn cache(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}-cache"))
    }
}

/// The operator, a host and how packages reach it, following one namespace.
#[derive(Debug)]
pub struct Stack {
    pub namespace: String,
    pub operator: Operator,
    pub host: Process,
    /// The host's HTTP API, e.g. `http://127.0.0.1:41234`.
    pub host_url: String,
    operator_runs: usize,
    layout: Layout,
}

impl Stack {
    /// Starts both processes for `namespace`, the host downloading over HTTP;
    /// returns once the host is ready. `operator_args` are added to the
    /// operator's command line.
    pub async fn start(namespace: &str, operator_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(namespace, operator_args, Distribution::Http).await
    }

    /// Like [`Stack::start`], with packages reaching hosts as `distribution` says.
    pub async fn start_with(
        namespace: &str,
        operator_args: &[&str],
        distribution: Distribution,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wasmplug-stack-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("store"))?;
        std::fs::create_dir_all(dir.path().join("scratch"))?;
        if distribution != Distribution::SharedVolume {
            let kubectl = control_plane().kubectl();
            for (account, file) in [(HOST_SERVICE_ACCOUNT, "host-token"), (OPERATOR_SERVICE_ACCOUNT, "operator-token")]
            {
                kubectl.run(&["create", "serviceaccount", account, "-n", namespace]).await?.success()?;
                std::fs::write(dir.path().join(file), service_account_token(namespace, account).await?)?;
            }
        }
        let layout = Layout {
            dir,
            namespace: namespace.to_owned(),
            distribution,
            artifact_ports: free_ports::<ARTIFACT_PORTS>()?,
        };
        let (host, host_url) = layout.start_host("host", &[])?;
        let operator = layout.spawn_operator(0, 0, operator_args, control_plane().kubeconfig())?;
        let stack = Stack { namespace: namespace.to_owned(), operator, host, host_url, operator_runs: 1, layout };
        wait_for_ready(&stack.host, &stack.host_url).await?;
        stack.wait_for_operator().await?;
        Ok(stack)
    }

    /// Starts one more operator process on this stack's namespace and store (a
    /// second replica, or a replacement after [`Process::kill`]). `extra` is added
    /// to its command line.
    pub fn another_operator(&mut self, extra: &[&str]) -> anyhow::Result<Operator> {
        self.another_operator_via(control_plane().kubeconfig(), extra)
    }

    /// Like [`Stack::another_operator`], talking to the API server as
    /// `kubeconfig` says (e.g. through a [`crate::StallingProxy`]).
    pub fn another_operator_via(&mut self, kubeconfig: &Path, extra: &[&str]) -> anyhow::Result<Operator> {
        let run = self.operator_runs;
        self.operator_runs += 1;
        self.layout.spawn_operator(run, run, extra, kubeconfig)
    }

    /// Starts one more operator process on the store of an earlier run (with
    /// [`Distribution::Mirrored`], a replica restarted with its volume).
    pub fn another_operator_on_store_of(&mut self, run: usize) -> anyhow::Result<Operator> {
        let new = self.operator_runs;
        self.operator_runs += 1;
        self.layout.spawn_operator(new, run, &[], control_plane().kubeconfig())
    }

    /// Starts another host named `name` (its own cache and log) and waits until
    /// it is ready; returns it and its URL.
    pub async fn another_host(&self, name: &str) -> anyhow::Result<(Process, String)> {
        self.another_host_with(name, &[]).await
    }

    /// Like [`Stack::another_host`], with `extra` arguments: an
    /// `--artifact-server` among them replaces the operator's (e.g. a file
    /// server that serves damaged packages).
    pub async fn another_host_with(&self, name: &str, extra: &[&str]) -> anyhow::Result<(Process, String)> {
        let (host, url) = self.layout.start_host(name, extra)?;
        wait_for_ready(&host, &url).await?;
        Ok((host, url))
    }

    /// The stack's own directory (logs, store, scratch, caches).
    pub fn dir(&self) -> &Path {
        self.layout.dir.path()
    }

    /// Replaces the host with a fresh process (keeping its cache) and waits
    /// until it is ready.
    pub async fn restart_host(&mut self) -> anyhow::Result<()> {
        self.host.kill().await;
        (self.host, self.host_url) = self.layout.start_host("host", &[])?;
        wait_for_ready(&self.host, &self.host_url).await
    }

    /// Host `name`'s cache directory (with [`Distribution::Http`]).
    pub fn cache(&self, name: &str) -> PathBuf {
        self.layout.cache(name)
    }

    /// The store directory the operator writes (and, with a shared volume,
    /// the host reads); with [`Distribution::Mirrored`], the first replica's.
    pub fn store(&self) -> PathBuf {
        self.layout.store(0)
    }

    /// The store of operator run `run` (every run's is [`Stack::store`] unless
    /// [`Distribution::Mirrored`]).
    pub fn store_of(&self, run: usize) -> PathBuf {
        self.layout.store(run)
    }

    /// The base URLs every operator run may serve artifacts on.
    pub fn artifact_servers(&self) -> Vec<String> {
        self.layout.artifact_servers()
    }

    /// The operator's scratch directory (where fetches write temporary files).
    pub fn scratch(&self) -> PathBuf {
        self.dir().join("scratch")
    }

    async fn wait_for_operator(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.operator.is_leading().await {
            if Instant::now() > deadline {
                bail!("the operator did not lead within 30 s; its log:\n{}", self.operator.process.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Waits until the host at `url` says it is ready.
async fn wait_for_ready(host: &Process, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("{url}/readyz");
    loop {
        if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} was not ready within 30 s; its log:\n{}", host.name, host.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token of ServiceAccount `account` in `namespace` for the artifact audience,
/// as the kubelet projects one into a host's pod.
pub async fn service_account_token(namespace: &str, account: &str) -> anyhow::Result<String> {
    let audience = format!("--audience={ARTIFACT_AUDIENCE}");
    let args = ["create", "token", account, "-n", namespace, &audience, "--duration=2h"];
    Ok(control_plane().kubectl().run(&args).await?.success()?.trim().to_owned())
}

/// The ranges test servers listen in, as `--allowed-destinations` takes them.
pub const LOOPBACK: &str = "127.0.0.0/8,::1";

/// Starts an operator on `store` and the scratch directory under `dir`,
/// following and leasing in `namespace`; `run` numbers its log file.
fn spawn_operator(
    dir: &Path,
    store: &Path,
    namespace: &str,
    run: usize,
    extra: &[String],
    kubeconfig: &Path,
) -> anyhow::Result<Operator> {
    let [port] = free_ports::<1>()?;
    let mut args: Vec<String> = vec![
        format!("--store-dir={}", store.display()),
        format!("--scratch-dir={}", dir.join("scratch").display()),
        format!("--watch-namespace={namespace}"),
        format!("--lease-namespace={namespace}"),
        format!("--hosts-namespace={namespace}"),
        format!("--metrics-listen=127.0.0.1:{port}"),
        "--lease-duration=3s".into(),
    ];
    // Every server a test starts listens on loopback, which sources may not
    // reach by default; a test that checks that passes its own setting.
    if !extra.iter().any(|arg| arg.starts_with("--allowed-destinations")) {
        args.push(format!("--allowed-destinations={LOOPBACK}"));
    }
    args.extend(extra.iter().cloned());
    let log = dir.join(format!("operator-{run}.log"));
    let process = Process::start_as("operator", &workspace_binary("wasmplug-operator"), &args, &[], kubeconfig, log)?;
    Ok(Operator { process, url: format!("http://127.0.0.1:{port}") })
}

/// One answer of the host's HTTP API.
#[derive(Debug, Clone)]
pub struct HostAnswer {
    pub status: u16,
    /// The `wasmplug-served-by` header: `builtin` or `<name>@<version> <digest>`.
    pub served_by: Option<String>,
    pub body: String,
}

impl Stack {
    /// `GET /v1/formats` of the stack's host: every format it knows, by key.
    pub async fn formats(&self) -> anyhow::Result<std::collections::BTreeMap<String, serde_json::Value>> {
        formats_of(&self.host_url).await
    }

    /// `POST /v1/formats/{key}/validate?path={path}` with `body`.
    pub async fn validate(&self, key: &str, path: &str, body: &[u8]) -> anyhow::Result<HostAnswer> {
        let url = format!("{}/v1/formats/{key}/validate?path={path}", self.host_url);
        let response = reqwest::Client::new().post(url).body(body.to_vec()).send().await?;
        let status = response.status().as_u16();
        let served_by = response.headers().get("wasmplug-served-by").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(HostAnswer { status, served_by, body: response.text().await? })
    }
}

/// `GET /v1/formats` of the host at `url`: every format it knows, by key.
pub async fn formats_of(url: &str) -> anyhow::Result<std::collections::BTreeMap<String, serde_json::Value>> {
    let text = reqwest::get(format!("{url}/v1/formats")).await?.text().await?;
    let body: serde_json::Value = serde_json::from_str(&text)?;
    let formats = body["formats"].as_array().cloned().unwrap_or_default();
    Ok(formats.into_iter().map(|f| (f["key"].as_str().unwrap_or_default().to_owned(), f)).collect())
}

/// The value of the first line of the Prometheus `text` that starts with
/// `series` (a metric's name, and its labels if any).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    let line = text.lines().find(|line| line.starts_with(series))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`
/// with `what` and the last value seen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_namespace(&self.namespace);
            self.operator.process.dump_log();
            self.host.dump_log();
        }
    }
}

/// Prints `namespace`'s FormatPlugins and Events, to explain a failed test.
pub(crate) fn dump_namespace(namespace: &str) {
    let kubectl = |args: &[&str]| {
        let output = control_plane().kubectl().run_blocking(args, "");
        output.map(|o| o.stdout + &o.stderr)
    };
    let ns = format!("--namespace={namespace}");
    eprintln!("==== FormatPlugins in {namespace}:\n{}", kubectl(&["get", "fp", &ns, "-o", "yaml"]).unwrap_or_default());
    eprintln!(
        "==== Events:\n{}",
        kubectl(&["get", "events", &ns, "--sort-by=.metadata.creationTimestamp"]).unwrap_or_default()
    );
}

impl Process {
    /// Prints the last 80 lines of the log, to explain a failed test.
    pub(crate) fn dump_log(&self) {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        eprintln!("==== {} log (last 80 lines):", self.name);
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}
