//! `wasmplug`: the plugin author's command. It checks, calls, signs and
//! verifies plugin packages with the operator's and the host's own code, so
//! "valid", "answers" and "signed" mean here exactly what they mean in a cluster.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand};
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use wasmplug_crds::{FormatPlugin, FormatPluginSpec};
use wasmplug_host::cli::EngineArgs;
use wasmplug_host::handler::{FormatHandler, with_checksum};
use wasmplug_host::plugin::{MANIFEST_FILE, Package, WASM_FILE};
use wasmplug_host::runtime::Runtime;
use wasmplug_host::server::wire::IndexFiles;
use wasmplug_operator::fetch::{self, FetchLimits, Fetched};
use wasmplug_operator::validate::{self, Expected};
use wasmplug_operator::verify::{self, PublicKey, Required, SIGNATURE_FILE, TrustedKey};

/// Check, call, sign and verify wasmplug plugin packages (a directory or ZIP
/// holding plugin.toml and plugin.wasm) exactly as the operator and hosts do.
#[derive(Debug, Parser)]
#[command(name = "wasmplug", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a package by the operator's rules: both files, the manifest, the
    /// component's world and imports, and its compilation for the hosts'
    /// engine. Exits with status 1 naming the first problem.
    Check {
        /// The package: a directory or a ZIP file.
        package: PathBuf,
        /// The format key the package must declare (a FormatPlugin's spec.formatKey).
        #[arg(long)]
        format_key: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Pack a package directory into the ZIP a url (or git, oci) source takes:
    /// plugin.toml, plugin.wasm and plugin.wasm.sig when there is one, at the
    /// root. Checks the package first; never packs an invalid one.
    Package {
        /// The package directory.
        package: PathBuf,
        /// The ZIP to write; defaults to <name>-<version>.zip beside the directory.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Print a FormatPlugin for the package, to kubectl apply or commit to
    /// GitOps: named after the plugin, with its format key, and the source
    /// given here.
    #[command(group(clap::ArgGroup::new("source").required(true).multiple(false)))]
    Manifest {
        /// The package: a directory or a ZIP file.
        package: PathBuf,
        #[command(flatten)]
        source: SourceArgs,
        /// Pin plugin.wasm's digest (spec.sha256): only this build installs.
        #[arg(long)]
        pin: bool,
    },
    /// Run the plugin on artifacts as a host would, under the same limits,
    /// without a server: Artifact Keeper's "format test". Prints the answer as
    /// JSON, the same as the host's HTTP API (metadata gets the artifact's
    /// SHA-256 when the plugin leaves it out); exits with status 1 when the
    /// plugin refuses an artifact or fails.
    Call {
        /// The package: a directory or a ZIP file.
        package: PathBuf,
        #[command(subcommand)]
        call: CallKind,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Sign a package directory's plugin.wasm with an Ed25519 private key,
    /// writing plugin.wasm.sig beside it: Artifact Keeper's detached signature,
    /// what spec.verify and the chart's signatures.required check.
    Sign {
        /// The package directory.
        package: PathBuf,
        /// The private key, PEM (openssl genpkey -algorithm ed25519 -out key.pem).
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify a package's plugin.wasm.sig with trusted public keys, as the
    /// operator does. Exits with status 1 when none of them verifies it.
    Verify {
        /// The package: a directory or a ZIP file.
        package: PathBuf,
        /// A trusted public key file: PEM (openssl pkey -pubout), or the base64
        /// of an Ed25519 key's 32 bytes. Repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
}

/// Where the cluster fetches the package from: exactly one of --url, --git,
/// --oci and --local.
#[derive(Debug, clap::Args)]
#[group(skip)]
struct SourceArgs {
    /// A ZIP URL (https://…/my-format-1.0.0.zip).
    #[arg(long, group = "source")]
    url: Option<String>,
    /// A Git repository URL; with --git-tag, --git-branch or --git-commit and --git-path.
    #[arg(long, group = "source")]
    git: Option<String>,
    /// An OCI repository (oci://registry/repository); with --oci-tag (default latest).
    #[arg(long, group = "source")]
    oci: Option<String>,
    /// A path on the operator's filesystem (development).
    #[arg(long, group = "source")]
    local: Option<String>,
    #[command(flatten)]
    refs: SourceRefs,
}

#[derive(Debug, clap::Args)]
#[group(skip)]
struct SourceRefs {
    #[arg(long, requires = "git", conflicts_with_all = ["git_branch", "git_commit"])]
    git_tag: Option<String>,
    #[arg(long, requires = "git", conflicts_with = "git_commit")]
    git_branch: Option<String>,
    #[arg(long, requires = "git")]
    git_commit: Option<String>,
    /// The package's directory or ZIP inside the repository.
    #[arg(long, requires = "git")]
    git_path: Option<String>,
    #[arg(long, requires = "oci")]
    oci_tag: Option<String>,
}

#[derive(Debug, Subcommand)]
enum CallKind {
    /// parse-metadata of one artifact.
    Metadata {
        file: PathBuf,
        /// The artifact's path in the repository; defaults to the file's name.
        #[arg(long)]
        path: Option<String>,
    },
    /// validate one artifact.
    Validate {
        file: PathBuf,
        /// The artifact's path in the repository; defaults to the file's name.
        #[arg(long)]
        path: Option<String>,
    },
    /// generate-index over the metadata of these artifacts (each by its file name).
    Index {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check { package, format_key, engine } => check(&package, format_key.as_deref(), &engine),
        Command::Package { package, out, engine } => pack(&package, out.as_deref(), &engine),
        Command::Manifest { package, source, pin } => manifest(&package, &source, pin),
        Command::Call { package, call, engine } => run_call(&package, &call, &engine),
        Command::Sign { package, key } => sign(&package, &key),
        Command::Verify { package, keys } => verify(&package, &keys),
    };
    match outcome {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// `error` and those of its causes its message does not already include.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1).map(ToString::to_string) {
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// The package at `path`, read as a `local` source reads it.
fn read(path: &Path) -> anyhow::Result<Fetched> {
    let path = std::path::absolute(path)?;
    Ok(fetch::local(&path, &FetchLimits::default())?)
}

fn check(package: &Path, format_key: Option<&str>, engine: &EngineArgs) -> anyhow::Result<String> {
    let fetched = read(package)?;
    let runtime = Runtime::new(engine.settings()).context("failed to start the WebAssembly runtime")?;
    let at = fetched.at.clone();
    let validated = validate::validate(fetched, Expected { sha256: None, format_key }, &runtime)?;
    let manifest = &validated.package.manifest;
    for warning in manifest.warnings() {
        eprintln!("warning: {at}: {warning}");
    }
    Ok(format!(
        "{at}: a valid plugin: {} {}, format {}, plugin.wasm {} (spec.sha256)",
        manifest.name, manifest.version, manifest.format_key, validated.package.digest
    ))
}

fn pack(package: &Path, out: Option<&Path>, engine: &EngineArgs) -> anyhow::Result<String> {
    if !package.is_dir() {
        bail!("{} is not a package directory", package.display());
    }
    let fetched = read(package)?;
    let signature = fetched.signature.clone();
    let runtime = Runtime::new(engine.settings()).context("failed to start the WebAssembly runtime")?;
    let validated = validate::validate(fetched, Expected::default(), &runtime)?;
    let manifest = &validated.package.manifest;
    let out = match out {
        Some(out) => out.to_owned(),
        None => {
            let parent = std::path::absolute(package)?.parent().map(Path::to_owned).unwrap_or_default();
            parent.join(format!("{}-{}.zip", manifest.name, manifest.version))
        }
    };
    let mut zip = zip::ZipWriter::new(
        std::fs::File::create(&out).with_context(|| format!("failed to create {}", out.display()))?,
    );
    let files = [
        (MANIFEST_FILE, Some(&validated.manifest_file)),
        (WASM_FILE, Some(&validated.package.wasm)),
        (SIGNATURE_FILE, signature.as_ref()),
    ];
    for (name, bytes) in files.into_iter().filter_map(|(name, bytes)| Some((name, bytes?))) {
        zip.start_file(name, zip::write::SimpleFileOptions::default())?;
        std::io::Write::write_all(&mut zip, bytes)?;
    }
    zip.finish()?;
    Ok(format!(
        "wrote {}: {} {}{}, plugin.wasm {} (spec.sha256)",
        out.display(),
        manifest.name,
        manifest.version,
        if signature.is_some() { ", signed" } else { "" },
        validated.package.digest
    ))
}

fn manifest(package: &Path, args: &SourceArgs, pin: bool) -> anyhow::Result<String> {
    let fetched = read(package)?;
    let at = fetched.at.clone();
    let (manifest, wasm) = match (fetched.manifest, fetched.wasm) {
        (Some(manifest), Some(wasm)) => (manifest, wasm),
        _ => bail!("{at} is not a package: it needs {MANIFEST_FILE} and {WASM_FILE} (wasmplug check says more)"),
    };
    let package = Package::from_files(&at, &manifest, wasm)?;
    let refs = &args.refs;
    let source = if let Some(url) = &args.url {
        serde_json::json!({"url": {"url": url}})
    } else if let Some(url) = &args.git {
        let reference = match (&refs.git_tag, &refs.git_branch, &refs.git_commit) {
            (Some(tag), _, _) => serde_json::json!({"tag": tag}),
            (_, Some(branch), _) => serde_json::json!({"branch": branch}),
            (_, _, Some(commit)) => serde_json::json!({"commit": commit}),
            _ => serde_json::Value::Null,
        };
        serde_json::json!({"git": {"url": url, "ref": reference, "path": refs.git_path}})
    } else if let Some(url) = &args.oci {
        serde_json::json!({"oci": {"url": url, "ref": {"tag": refs.oci_tag.as_deref().unwrap_or("latest")}}})
    } else {
        serde_json::json!({"local": {"path": args.local}})
    };
    let mut spec = serde_json::json!({"source": source, "formatKey": package.manifest.format_key});
    if pin {
        spec["sha256"] = serde_json::json!(package.digest.to_string());
    }
    // Read as the API's own type: what prints is a spec the API accepts.
    let spec: FormatPluginSpec =
        serde_json::from_value(strip_nulls(spec)).context("the source given does not make a FormatPlugin spec")?;
    let plugin = FormatPlugin::new(&package.manifest.name, spec);
    Ok(serde_saphyr::to_string(&plugin)?.trim_end().to_owned())
}

/// `value` without its null members (unset optional fields).
fn strip_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect()
        }
        other => other,
    }
}

fn run_call(package: &Path, call: &CallKind, engine: &EngineArgs) -> anyhow::Result<String> {
    let fetched = read(package)?;
    let runtime = Runtime::new(engine.settings()).context("failed to start the WebAssembly runtime")?;
    let validated = validate::validate(fetched, Expected::default(), &runtime)?;
    let limits = engine.max_limits().grant([&validated.package.manifest.resources]);
    let loaded = runtime.load_precompiled(&validated.package, &validated.precompiled, limits)?;
    // As every host calls it: through the handler interface, refusals as errors.
    let plugin: &dyn FormatHandler = &loaded;
    let artifact = |file: &Path, path: Option<&String>| -> anyhow::Result<(String, Vec<u8>)> {
        let data = std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok((path.cloned().unwrap_or(name), data))
    };
    let answer = match call {
        CallKind::Metadata { file, path } => {
            let (path, data) = artifact(file, path.as_ref())?;
            serde_json::to_value(with_checksum(plugin.parse_metadata(&path, &data)?, &data))?
        }
        CallKind::Validate { file, path } => {
            let (path, data) = artifact(file, path.as_ref())?;
            plugin.validate(&path, &data)?;
            serde_json::json!({"valid": true, "path": path})
        }
        CallKind::Index { files } => {
            let mut artifacts = Vec::new();
            for file in files {
                let (path, data) = artifact(file, None)?;
                let metadata = plugin.parse_metadata(&path, &data).with_context(|| format!("metadata of {path}"))?;
                artifacts.push(with_checksum(metadata, &data));
            }
            match plugin.generate_index(&artifacts)? {
                Some(files) => serde_json::to_value(IndexFiles::new(files))?,
                None => serde_json::json!({"files": null}),
            }
        }
    };
    Ok(serde_json::to_string_pretty(&answer)?)
}

fn sign(package: &Path, key_file: &Path) -> anyhow::Result<String> {
    if !package.is_dir() {
        bail!("{} is not a package directory; sign plugin.wasm before packing the ZIP", package.display());
    }
    let pem = std::fs::read_to_string(key_file).with_context(|| format!("failed to read {}", key_file.display()))?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|error| {
        anyhow::anyhow!(
            "{} is not an Ed25519 private key in PEM ({error}); make one with openssl genpkey -algorithm ed25519",
            key_file.display()
        )
    })?;
    let wasm_file = package.join(WASM_FILE);
    let wasm = std::fs::read(&wasm_file).with_context(|| format!("failed to read {}", wasm_file.display()))?;
    let signature = STANDARD.encode(key.sign(&wasm).to_bytes());
    let signature_file = package.join(SIGNATURE_FILE);
    std::fs::write(&signature_file, format!("{signature}\n"))
        .with_context(|| format!("failed to write {}", signature_file.display()))?;
    let public = TrustedKey { id: key_file.display().to_string(), key: PublicKey::Ed25519(key.verifying_key()) };
    Ok(format!("wrote {}: signed with the key {}", signature_file.display(), public.fingerprint()))
}

fn verify(package: &Path, key_files: &[PathBuf]) -> anyhow::Result<String> {
    let fetched = read(package)?;
    let keys = key_files
        .iter()
        .map(|file| {
            let text = std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
            Ok(verify::keys::parse(file.display().to_string(), &text)?)
        })
        .collect::<anyhow::Result<Vec<TrustedKey>>>()?;
    let wasm = fetched.wasm.as_deref().with_context(|| format!("{} has no {WASM_FILE}", fetched.at))?;
    let key = verify::verify(&fetched.at, wasm, fetched.signature.as_deref(), &keys, Required::ByObject)?;
    Ok(format!("{}: {SIGNATURE_FILE} is signed by {} ({})", fetched.at, key.id, key.fingerprint()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
