//! `build`: compiles a plugin crate with cargo for wasm32-wasip2, checks the
//! result as the operator would, and writes the package a host loads and the
//! ZIP a source takes. A build that fails the check leaves the previous
//! package in place, so a host serving it keeps serving it.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Deserialize;
use wasmplug_host::cli::EngineArgs;
use wasmplug_host::plugin::{MANIFEST_FILE, WASM_FILE};
use wasmplug_operator::fetch::Fetched;
use wasmplug_operator::verify::SIGNATURE_FILE;

use crate::{package, signing};

/// The target plugins are built for.
const TARGET: &str = "wasm32-wasip2";

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The plugin crate: a directory with Cargo.toml and plugin.toml.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Build with the release profile (what to publish); debug builds are
    /// quicker to make and slower to run.
    #[arg(long)]
    release: bool,
    /// Sign plugin.wasm with this Ed25519 private key (PEM), as `wasmplug sign` does.
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// The lines of cargo's `--message-format json` output that name what a
/// build made.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    manifest_path: PathBuf,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

pub fn build(args: &BuildArgs) -> anyhow::Result<String> {
    let dir = std::fs::canonicalize(&args.dir).with_context(|| format!("{} does not exist", args.dir.display()))?;
    let manifest_file = dir.join(MANIFEST_FILE);
    if !dir.join("Cargo.toml").is_file() || !manifest_file.is_file() {
        bail!(
            "{} is not a plugin crate: it needs Cargo.toml and {MANIFEST_FILE} (wasmplug new makes one); \
             give its directory with --dir",
            dir.display()
        );
    }
    ensure_target();
    let wasm_file = compile(&dir, args.release)?;
    let manifest =
        std::fs::read(&manifest_file).with_context(|| format!("failed to read {}", manifest_file.display()))?;
    let wasm = std::fs::read(&wasm_file).with_context(|| format!("failed to read {}", wasm_file.display()))?;
    let signature = match &args.key {
        Some(key) => Some(signing::signature(key, &wasm)?.0),
        None => None,
    };

    // Checked before anything is written: an invalid build replaces nothing.
    let fetched = Fetched {
        at: format!("{} (built)", dir.display()),
        manifest: Some(manifest),
        wasm: Some(wasm),
        signature,
        ..Fetched::default()
    };
    let checked = crate::validated(fetched, None, &args.engine)?;
    checked.warn();
    let manifest = &checked.validated.package.manifest;

    // <target dir>/wasm32-wasip2/<profile>/<crate>.wasm → <target dir>/wasmplug
    let out = wasm_file.ancestors().nth(3).context("cargo's output is not under a target directory")?.join("wasmplug");
    let package_dir = out.join(&manifest.name);
    std::fs::create_dir_all(&package_dir).with_context(|| format!("failed to create {}", package_dir.display()))?;
    let signature_file = package_dir.join(SIGNATURE_FILE);
    match &checked.signature {
        Some(signature) => replace(&signature_file, signature)?,
        // A signature of an earlier build would not verify.
        None if signature_file.exists() => std::fs::remove_file(&signature_file)
            .with_context(|| format!("failed to remove the earlier build's {}", signature_file.display()))?,
        None => {}
    }
    // plugin.wasm last: a host polling the directory sees the new manifest with it.
    replace(&package_dir.join(MANIFEST_FILE), &checked.validated.manifest_file)?;
    replace(&package_dir.join(WASM_FILE), &checked.validated.package.wasm)?;
    let zip = out.join(format!("{}-{}.zip", manifest.name, manifest.version));
    package::write_zip(&zip, &checked)?;

    Ok(format!(
        "built {} {}: format {}{}\n  package  {}\n  zip      {}\n  plugin.wasm {} (spec.sha256)",
        manifest.name,
        manifest.version,
        manifest.format_key,
        if checked.signature.is_some() { ", signed" } else { "" },
        package_dir.display(),
        zip.display(),
        checked.validated.package.digest
    ))
}

/// Adds the wasm32-wasip2 target where rustup manages the toolchain and
/// lacks it, as examples/build.sh does; elsewhere cargo says what is missing.
fn ensure_target() {
    let Ok(installed) = Command::new("rustup").args(["target", "list", "--installed"]).output() else {
        return;
    };
    if !String::from_utf8_lossy(&installed.stdout).lines().any(|line| line == TARGET) {
        eprintln!("adding the {TARGET} target: rustup target add {TARGET}");
        let _ = Command::new("rustup").args(["target", "add", TARGET]).status();
    }
}

/// Runs cargo build in the crate at `dir`; returns the component it made.
fn compile(dir: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--target", TARGET, "--message-format", "json-render-diagnostics", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .args(release.then_some("--release"))
        .stdout(Stdio::piped());
    let mut child = command.spawn().context("failed to run cargo; is Rust installed (https://rustup.rs)?")?;
    let stdout = child.stdout.take().context("cargo's output")?;
    let own_manifest = dir.join("Cargo.toml");
    let mut components = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("failed to read cargo's output")?;
        // Anything that is not a message of cargo's is the build's own output.
        let Ok(message) = serde_json::from_str::<CargoMessage>(&line) else {
            eprintln!("{line}");
            continue;
        };
        if message.reason == "compiler-artifact" && message.manifest_path == own_manifest {
            components
                .extend(message.filenames.into_iter().filter(|file| file.extension().is_some_and(|e| e == "wasm")));
        }
    }
    if !child.wait().context("cargo")?.success() {
        bail!("cargo build failed; its errors are above");
    }
    match components.as_slice() {
        [component] => Ok(component.clone()),
        [] => bail!(
            "cargo built no WebAssembly component for {}: its Cargo.toml needs [lib] crate-type = [\"cdylib\"]",
            own_manifest.display()
        ),
        _ => bail!("cargo built several components for {}: {components:?}", own_manifest.display()),
    }
}

/// Writes `bytes` to `file` through a temporary file and a rename, so a
/// reader sees the old file or the new one, never half of one.
fn replace(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", file.display()));
    std::fs::write(&partial, bytes).with_context(|| format!("failed to write {}", partial.display()))?;
    std::fs::rename(&partial, file).with_context(|| format!("failed to write {}", file.display()))
}
