//! `npm`: package tarballs at `<name>/-/<basename>-<version>.tgz` (scoped names
//! as `@scope/name`). Reads `package/package.json` for name and version; the
//! index is one packument per package.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{Budget, Format, IndexFiles, Inspection, Metadata, Refusal};
use crate::{archive, common, path};

const CONTENT_TYPE: &str = "application/gzip";

#[derive(Clone, Copy, Debug, Default)]
pub struct Npm;

/// Name and version as the registry layout spells them in a path.
fn from_path(path: &str) -> Option<(String, String)> {
    let (name, file) = path.split_once("/-/")?;
    let basename = name.rsplit('/').next()?;
    let version = file.strip_prefix(basename)?.strip_prefix('-')?.strip_suffix(".tgz")?;
    (!version.is_empty()).then(|| (name.to_owned(), version.to_owned()))
}

/// Name and version from the tarball's package.json.
fn manifest(data: &[u8], budget: &Budget) -> Result<(String, String), Refusal> {
    let wanted = |p: &str| p.trim_start_matches("./").split('/').collect::<Vec<_>>() == ["package", "package.json"];
    let (_, json) = archive::tar_gz_member(data, budget, wanted)
        .map_err(|e| e.context("not an npm package"))?
        .ok_or("not an npm package: the tarball has no package/package.json")?;
    let json: Value =
        serde_json::from_slice(&json).map_err(|e| format!("package/package.json is not valid JSON: {e}"))?;
    let field = |key: &str| {
        json[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("package/package.json has no \"{key}\""))
    };
    Ok((field("name")?, field("version")?))
}

fn check(artifact_path: &str, data: &[u8], budget: &Budget) -> Result<(String, String), Refusal> {
    path::check(artifact_path)?;
    if !artifact_path.ends_with(".tgz") {
        return Err(format!("npm package path {artifact_path:?} must end with .tgz").into());
    }
    let (name, version) = manifest(data, budget)?;
    if let Some((path_name, path_version)) = from_path(artifact_path)
        && (path_name != name || path_version != version)
    {
        return Err(format!("the path names {path_name}@{path_version} but package.json says {name}@{version}").into());
    }
    Ok((name, version))
}

impl Format for Npm {
    fn inspect(&self, path: &str, data: &[u8], budget: &Budget) -> Result<Inspection, Refusal> {
        let (_, version) = check(path, data, budget)?;
        Ok(Inspection { version: Some(version), content_type: CONTENT_TYPE })
    }

    /// One packument per package name, at the path npm clients ask for.
    fn generate_index(&self, artifacts: &[Metadata], budget: &Budget) -> Result<Option<IndexFiles>, Refusal> {
        let mut packages: BTreeMap<String, Vec<(&str, &Metadata)>> = BTreeMap::new();
        for artifact in artifacts {
            budget.check_time()?;
            if let Some((name, _)) = from_path(&artifact.path) {
                let version = artifact.version.as_deref().unwrap_or_default();
                packages.entry(name).or_default().push((version, artifact));
            }
        }
        let files = packages
            .into_iter()
            .map(|(name, versions)| {
                let latest = common::latest(versions.iter().map(|(v, _)| *v)).unwrap_or_default();
                let entries: serde_json::Map<String, Value> = versions
                    .iter()
                    .map(|(version, artifact)| {
                        let mut dist = json!({ "tarball": artifact.path });
                        if let Some(integrity) = artifact.checksum_sha256.as_deref().and_then(integrity) {
                            dist["integrity"] = Value::String(integrity);
                        }
                        (version.to_string(), json!({ "name": name, "version": version, "dist": dist }))
                    })
                    .collect();
                let packument = json!({ "name": name, "dist-tags": { "latest": latest }, "versions": entries });
                (name, serde_json::to_vec_pretty(&packument).unwrap_or_default())
            })
            .collect();
        Ok(Some(files))
    }
}

/// Subresource integrity (`sha256-<base64>`) from a hex SHA-256.
fn integrity(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
    Some(format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(bytes?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_registry_layout() {
        assert_eq!(from_path("lodash/-/lodash-4.17.21.tgz"), Some(("lodash".into(), "4.17.21".into())));
        assert_eq!(from_path("@types/node/-/node-20.1.0.tgz"), Some(("@types/node".into(), "20.1.0".into())));
        assert_eq!(from_path("lodash-4.17.21.tgz"), None);
        assert_eq!(from_path("lodash/-/other-1.0.0.tgz"), None);
    }

    #[test]
    fn integrity_is_base64_of_the_digest() {
        // SHA-256 of no bytes.
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(integrity(hex).as_deref(), Some("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="));
    }
}
