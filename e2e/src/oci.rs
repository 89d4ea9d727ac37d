//! A real OCI registry for tests: the CNCF distribution `registry` (the
//! reference implementation) on 127.0.0.1, over plain HTTP or over TLS with a
//! certificate from the control plane's CA, with or without htpasswd basic
//! auth; the `oras` CLI, with which tests push packages as plugin authors do;
//! and the `cosign` CLI, with which they sign them in the registry. All are
//! built by `e2e/scripts/oci-tools.sh` (cached outside the repository).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

use crate::control_plane::{control_plane, free_ports, wait_until_listening};
use crate::oci_token::TokenAuth;

/// Environment variable naming a directory that holds `registry`, `oras` and
/// `cosign-v<version>`; when unset, the build script is run (it reuses its cache).
pub const OCI_TOOLS_DIR_ENV: &str = "WASMPLUG_OCI_TOOLS_DIR";

/// The cosign build the tests sign with (e2e/scripts/oci-tools.sh builds it).
const COSIGN: &str = "cosign-v2.6.5";

/// How a registry is reached.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// A user and password the registry requires: checked by the registry
    /// (htpasswd, bcrypt), or with `token`, by the token service.
    pub basic_auth: Option<(String, String)>,
    /// Send clients to this token service and accept its tokens.
    pub token: Option<TokenAuth>,
    /// HTTPS with a certificate for 127.0.0.1 from the control plane's CA.
    pub tls: bool,
}

/// A running registry, stopped (process group killed) when dropped. Its
/// storage lives as long as it does, so [`OciRegistry::restart`] keeps what
/// was pushed.
#[derive(Debug)]
pub struct OciRegistry {
    dir: tempfile::TempDir,
    tools: PathBuf,
    port: u16,
    options: RegistryOptions,
    process: Option<Child>,
}

impl OciRegistry {
    pub fn start(options: RegistryOptions) -> anyhow::Result<Self> {
        let tools = tools_dir()?;
        let dir = tempfile::Builder::new().prefix("wasmplug-oci-").tempdir()?;
        let [port] = free_ports::<1>()?;
        let mut registry = OciRegistry { dir, tools, port, options, process: None };
        registry.write_config()?;
        registry.spawn()?;
        Ok(registry)
    }

    /// `127.0.0.1:<port>`: the registry part of a reference.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `oci://127.0.0.1:<port>/<repository>`, as `spec.source.oci.url` names it.
    pub fn url(&self, repository: &str) -> String {
        format!("oci://{}/{repository}", self.address())
    }

    /// The CA that signed the registry's certificate, when it serves TLS.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.options.tls.then(|| control_plane().certificates().ca_cert())
    }

    /// The process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// Stops the registry (a test of a registry that is down); its storage stays.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", process.id())]).status();
            let _ = process.wait();
        }
    }

    /// Starts a stopped registry again on the same port, with what it held.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Pushes `files` (name, bytes, media type) as one artifact to
    /// `<repository>:<tag>` with `oras push`, as a plugin author would, and
    /// returns its manifest digest (`sha256:…`).
    pub fn push(
        &self,
        repository: &str,
        tag: &str,
        artifact_type: &str,
        files: &[(&str, &[u8], &str)],
    ) -> anyhow::Result<String> {
        let work = tempfile::Builder::new().prefix("wasmplug-oras-").tempdir()?;
        for (name, bytes, _) in files {
            std::fs::write(work.path().join(name), bytes)?;
        }
        let mut args = vec!["push".to_owned(), self.reference(repository, tag)];
        args.extend(["--artifact-type".to_owned(), artifact_type.to_owned()]);
        args.extend(files.iter().map(|(name, _, media_type)| format!("{name}:{media_type}")));
        let output = self.oras(work.path(), &args)?;
        output
            .lines()
            .find_map(|line| line.strip_prefix("Digest: "))
            .map(|digest| digest.trim().to_owned())
            .with_context(|| format!("oras push printed no digest:\n{output}"))
    }

    /// Adds `tag` to the manifest at `reference` (a tag or digest), as `oras tag`.
    pub fn tag(&self, repository: &str, reference: &str, tag: &str) -> anyhow::Result<()> {
        let target = self.reference(repository, reference);
        self.oras(self.dir.path(), &["tag".to_owned(), target, tag.to_owned()]).map(drop)
    }

    /// The manifest at `reference` (a tag or digest) in `repository`, as
    /// `oras manifest fetch` prints it.
    pub fn manifest(&self, repository: &str, reference: &str) -> anyhow::Result<serde_json::Value> {
        let target = self.reference(repository, reference);
        let output = self.oras(self.dir.path(), &["manifest".to_owned(), "fetch".to_owned(), target])?;
        serde_json::from_str(&output).with_context(|| format!("oras printed no manifest:\n{output}"))
    }

    /// A new cosign key pair (`cosign generate-key-pair`, empty password).
    pub fn cosign_key_pair(&self) -> anyhow::Result<CosignKey> {
        let dir = tempfile::Builder::new().prefix("wasmplug-cosign-").tempdir()?;
        self.cosign(dir.path(), &["generate-key-pair"])?;
        Ok(CosignKey { dir })
    }

    /// Signs the manifest `digest` of `repository` with `key` as
    /// `cosign sign --key` does, storing the signature in this registry. No
    /// transparency log: nothing leaves the machine.
    pub fn cosign_sign(&self, repository: &str, digest: &str, key: &CosignKey) -> anyhow::Result<()> {
        let key_file = key.dir.path().join("cosign.key").display().to_string();
        let target = self.reference(repository, digest);
        let mut args = vec!["sign", "--key", &key_file, "--tlog-upload=false", "--yes"];
        if self.ca_cert().is_none() {
            args.extend(["--allow-http-registry", "--allow-insecure-registry"]);
        }
        args.push(&target);
        self.cosign(key.dir.path(), &args).map(drop)
    }

    /// Runs cosign in `cwd`: an empty key password, a home and registry config
    /// of its own, and a proxy that answers nothing for every address but
    /// loopback (Go never proxies loopback), so a step that would reach a
    /// public service fails instead of sending anything off the machine.
    fn cosign(&self, cwd: &Path, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(self.tools.join(COSIGN))
            .current_dir(cwd)
            .args(args)
            .env_clear()
            .env("HOME", cwd)
            .env("DOCKER_CONFIG", cwd)
            .env("TUF_ROOT", cwd.join("tuf"))
            .env("COSIGN_PASSWORD", "")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .stdin(Stdio::null())
            .output()
            .context("failed to run cosign")?;
        if !output.status.success() {
            bail!("cosign {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `<registry>/<repository>:<tag>`, or `…@<digest>` for a digest.
    fn reference(&self, repository: &str, reference: &str) -> String {
        let separator = if reference.starts_with("sha256:") { '@' } else { ':' };
        format!("{}/{repository}{separator}{reference}", self.address())
    }

    /// Runs oras in `cwd` with the flags this registry needs (plain HTTP or
    /// its CA, its credentials, a registry config of its own so nothing from
    /// the machine's Docker login is used); returns stdout.
    fn oras(&self, cwd: &Path, args: &[String]) -> anyhow::Result<String> {
        let mut command = Command::new(self.tools.join("oras"));
        command.current_dir(cwd).args(args);
        command.arg("--registry-config").arg(self.dir.path().join("oras-credentials.json"));
        match self.ca_cert() {
            Some(ca) => command.arg("--ca-file").arg(ca),
            None => command.arg("--plain-http"),
        };
        if let Some((user, password)) = &self.options.basic_auth {
            command.args(["--username", user, "--password", password]);
        }
        let output = command.stdin(Stdio::null()).output().context("failed to run oras")?;
        if !output.status.success() {
            bail!("oras {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n",
            dir.join("data").display(),
            self.address(),
        );
        if self.options.tls {
            let serving = control_plane().certificates().server(&format!("oci-registry-{}", self.port))?;
            config +=
                &format!("  tls:\n    certificate: {}\n    key: {}\n", serving.cert.display(), serving.key.display());
        }
        if let Some(token) = &self.options.token {
            config += &token.registry_config();
        } else if let Some((user, password)) = &self.options.basic_auth {
            let hash = bcrypt::hash(password, 4).context("failed to hash the registry password")?;
            std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n"))?;
            config +=
                &format!("auth:\n  htpasswd:\n    realm: wasmplug-e2e\n    path: {}\n", dir.join("htpasswd").display());
        }
        std::fs::write(dir.join("config.yml"), config)?;
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join("registry.log"))?;
        let process = Command::new(self.tools.join("registry"))
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            // No telemetry leaves the machine.
            .env("OTEL_SDK_DISABLED", "true")
            .env("OTEL_TRACES_EXPORTER", "none")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("failed to start the registry")?;
        control_plane().guard(process.id());
        self.process = Some(process);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_until_listening("the registry", address, || {
            match self.process.as_mut().and_then(|p| p.try_wait().ok().flatten()) {
                Some(status) => {
                    let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
                    bail!("the registry exited ({status}):\n{log}")
                }
                None => Ok(()),
            }
        })
    }
}

/// A cosign key pair in a temporary directory: cosign.key (encrypted with an
/// empty password) and cosign.pub.
#[derive(Debug)]
pub struct CosignKey {
    dir: tempfile::TempDir,
}

impl CosignKey {
    /// cosign.pub: the ECDSA P-256 public key, PEM.
    pub fn public_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cosign.pub")).expect("cosign wrote cosign.pub")
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tools_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os(OCI_TOOLS_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => crate::binaries::run_build_script("oci-tools.sh")?,
    };
    for tool in ["registry", "oras", COSIGN] {
        if !dir.join(tool).is_file() {
            bail!(
                "failed to find {}; run e2e/scripts/oci-tools.sh or point {OCI_TOOLS_DIR_ENV} at a directory with registry, oras and {COSIGN}",
                dir.join(tool).display()
            );
        }
    }
    Ok(dir)
}
