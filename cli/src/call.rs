//! `call`: a package's plugin run on artifacts as a host runs it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use wasmplug_host::cli::EngineArgs;
use wasmplug_host::handler::{FormatHandler, with_checksum};
use wasmplug_host::runtime::{HttpRequest, Metadata, RepoContext};
use wasmplug_host::server::wire::{IndexFiles, WireResponse};

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
    /// generate-index over the metadata of these artifacts.
    Index {
        /// An artifact: FILE (stored under its file name) or PATH=FILE (stored at PATH).
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// handle-request (format-plugin-v2): one request of the format's client
    /// protocol, in a repository holding these artifacts.
    Request {
        /// The request's path under the repository, e.g. /index.json.
        path: String,
        /// The repository's artifacts, as the registry would pass their metadata:
        /// FILE (stored under its file name) or PATH=FILE (stored at PATH).
        files: Vec<String>,
        #[arg(long, default_value = "GET")]
        method: String,
        /// The query string, without the "?".
        #[arg(long, default_value = "")]
        query: String,
        /// A request header, name:value. Repeat for several.
        #[arg(long = "header", value_parser = header)]
        headers: Vec<(String, String)>,
        /// A file whose contents are the request's body.
        #[arg(long)]
        body: Option<PathBuf>,
        /// The repository's key.
        #[arg(long, default_value = "local")]
        repo_key: String,
        /// The repository's URL, as its clients reach it.
        #[arg(long, default_value = "http://localhost:8080/repository/local")]
        base_url: String,
        /// Where the repository's artifacts are downloaded from; defaults to --base-url.
        #[arg(long)]
        download_base_url: Option<String>,
    },
}

fn header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once(':').ok_or_else(|| format!("{text:?} is not name:value"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
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
    // The repository's artifacts, each described by the plugin as a registry would store it.
    let metadata_of = |files: &[String]| -> anyhow::Result<Vec<Metadata>> {
        let mut artifacts = Vec::new();
        for file in files {
            let (path, file) = match file.split_once('=') {
                Some((path, file)) => (Some(path.to_owned()), file),
                None => (None, file.as_str()),
            };
            let (path, data) = artifact(Path::new(file), path.as_ref())?;
            let metadata = plugin.parse_metadata(&path, &data).with_context(|| format!("metadata of {path}"))?;
            artifacts.push(with_checksum(metadata, &data));
        }
        Ok(artifacts)
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
            let artifacts = metadata_of(files)?;
            match plugin.generate_index(&artifacts)? {
                Some(files) => serde_json::to_value(IndexFiles::new(files))?,
                None => serde_json::json!({"files": null}),
            }
        }
        CallKind::Request { path, files, method, query, headers, body, repo_key, base_url, download_base_url } => {
            let artifacts = metadata_of(files)?;
            let body = match body {
                Some(file) => std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?,
                None => Vec::new(),
            };
            let request = HttpRequest {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                headers: headers.clone(),
                body,
            };
            let context = RepoContext {
                repo_key: repo_key.clone(),
                base_url: base_url.clone(),
                download_base_url: download_base_url.clone().unwrap_or_else(|| base_url.clone()),
            };
            serde_json::to_value(WireResponse::from(plugin.handle_request(&request, &context, &artifacts)?))?
        }
    };
    Ok(serde_json::to_string_pretty(&answer)?)
}
