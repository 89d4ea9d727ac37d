//! `call`: a package's plugin run on artifacts as a host runs it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use wasmplug_host::cli::EngineArgs;
use wasmplug_host::handler::{FormatHandler, with_checksum};
use wasmplug_host::server::wire::IndexFiles;

use crate::{Checked, checked};

#[derive(Debug, Subcommand)]
pub enum CallKind {
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

pub fn run_call(package: &Path, call: &CallKind, engine: &EngineArgs) -> anyhow::Result<String> {
    let Checked { validated, runtime, .. } = checked(package, None, engine)?;
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
