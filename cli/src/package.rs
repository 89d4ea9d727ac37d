//! `check`, `package` and `manifest`: a package as the operator judges it,
//! packed as a URL source takes it, and declared as a FormatPlugin.

use std::path::Path;

use anyhow::{Context, bail};
use wasmplug_crds::{FormatPlugin, FormatPluginSpec};
use wasmplug_host::cli::EngineArgs;
use wasmplug_host::plugin::{MANIFEST_FILE, Package, WASM_FILE};
use wasmplug_operator::verify::SIGNATURE_FILE;

use crate::{Checked, checked, read};

/// Where the cluster fetches the package from: exactly one of --url, --git,
/// --oci and --local.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub struct SourceArgs {
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
pub struct SourceRefs {
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
    /// Reach the registry over plain HTTP (spec.source.oci.insecure): one on localhost.
    #[arg(long, requires = "oci")]
    oci_insecure: bool,
}

pub fn check(package: &Path, format_key: Option<&str>, engine: &EngineArgs) -> anyhow::Result<String> {
    let checked = checked(package, format_key, engine)?;
    checked.warn();
    let (at, package) = (&checked.at, &checked.validated.package);
    let manifest = &package.manifest;
    Ok(format!(
        "{at}: a valid plugin: {} {}, format {}, plugin.wasm {} (spec.sha256)",
        manifest.name, manifest.version, manifest.format_key, package.digest
    ))
}

pub fn pack(package: &Path, out: Option<&Path>, engine: &EngineArgs) -> anyhow::Result<String> {
    if !package.is_dir() {
        bail!("{} is not a package directory", package.display());
    }
    let checked = checked(package, None, engine)?;
    let manifest = &checked.validated.package.manifest;
    let out = match out {
        Some(out) => out.to_owned(),
        None => {
            let parent = std::path::absolute(package)?.parent().map(Path::to_owned).unwrap_or_default();
            parent.join(format!("{}-{}.zip", manifest.name, manifest.version))
        }
    };
    write_zip(&out, &checked)?;
    Ok(format!(
        "wrote {}: {} {}{}, plugin.wasm {} (spec.sha256)",
        out.display(),
        manifest.name,
        manifest.version,
        if checked.signature.is_some() { ", signed" } else { "" },
        checked.validated.package.digest
    ))
}

/// Writes the ZIP a url (or git, oci) source takes: plugin.toml, plugin.wasm
/// and plugin.wasm.sig when there is one, at the root.
pub fn write_zip(out: &Path, Checked { signature, validated, .. }: &Checked) -> anyhow::Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("failed to create {}", out.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let files = [
        (MANIFEST_FILE, Some(&validated.manifest_file)),
        (WASM_FILE, Some(&validated.package.wasm)),
        (SIGNATURE_FILE, signature.as_ref()),
    ];
    for (name, bytes) in files.into_iter().filter_map(|(name, bytes)| Some((name, bytes?))) {
        zip.start_file(name, zip::write::SimpleFileOptions::default())?;
        std::io::Write::write_all(&mut zip, bytes)?;
    }
    zip.finish().with_context(|| format!("failed to write {}", out.display()))?;
    Ok(())
}

pub fn manifest(package: &Path, args: &SourceArgs, pin: bool) -> anyhow::Result<String> {
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
        let tag = refs.oci_tag.as_deref().unwrap_or("latest");
        let insecure = refs.oci_insecure.then_some(true);
        serde_json::json!({"oci": {"url": url, "ref": {"tag": tag}, "insecure": insecure}})
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
