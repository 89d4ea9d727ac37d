//! `nuget`: `.nupkg` packages (zips with `<id>.nuspec` at the root). Reads id
//! and version from the nuspec and checks them against the file name; the index
//! is the flat container's `index.json` per package id.

use std::collections::BTreeMap;

use crate::{Budget, Format, IndexFiles, Inspection, Metadata, Refusal};
use crate::{archive, common, path, xml};

const CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Clone, Copy, Debug, Default)]
pub struct Nuget;

/// Id and version from the nuspec inside `data`.
fn nuspec(data: &[u8], budget: &Budget) -> Result<(String, String), Refusal> {
    let (name, bytes) = archive::zip_member(data, budget, |p| p.ends_with(".nuspec") && !p.contains('/'))
        .map_err(|e| e.context("not a NuGet package"))?
        .ok_or("not a NuGet package: no <id>.nuspec at the root of the archive")?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches('\u{feff}');
    let found =
        xml::read(text, "package", &[&["package", "metadata", "id"], &["package", "metadata", "version"]], budget)
            .map_err(|e| e.context(&format!("{name} is not a valid <package> document")))?;
    match (&found[0], &found[1]) {
        (Some(id), Some(version)) => Ok((id.clone(), version.clone())),
        _ => Err(format!("{name} must have <metadata><id> and <version>").into()),
    }
}

fn check(artifact_path: &str, data: &[u8], budget: &Budget) -> Result<(String, String), Refusal> {
    path::check(artifact_path)?;
    let file = artifact_path.rsplit('/').next().unwrap_or(artifact_path);
    if !file.ends_with(".nupkg") {
        return Err(format!("NuGet package path {artifact_path:?} must end with .nupkg").into());
    }
    let (id, version) = nuspec(data, budget)?;
    let expected = format!("{id}.{version}.nupkg");
    if !file.eq_ignore_ascii_case(&expected) {
        return Err(format!("the file is named {file} but its nuspec says {id} {version} (expected {expected})").into());
    }
    Ok((id, version))
}

impl Format for Nuget {
    fn inspect(&self, path: &str, data: &[u8], budget: &Budget) -> Result<Inspection, Refusal> {
        let (_, version) = check(path, data, budget)?;
        Ok(Inspection { version: Some(version), content_type: CONTENT_TYPE })
    }

    /// `v3-flatcontainer/<id>/index.json` listing each package's versions,
    /// lowercased as the flat container protocol requires.
    fn generate_index(&self, artifacts: &[Metadata], budget: &Budget) -> Result<Option<IndexFiles>, Refusal> {
        let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for artifact in artifacts {
            budget.check_time()?;
            let file = artifact.path.rsplit('/').next().unwrap_or(&artifact.path).to_ascii_lowercase();
            let Some(version) = artifact.version.as_deref().map(str::to_ascii_lowercase) else { continue };
            if let Some(id) = file.strip_suffix(&format!(".{version}.nupkg")) {
                let versions = packages.entry(id.to_owned()).or_default();
                if !versions.contains(&version) {
                    versions.push(version);
                }
            }
        }
        let files = packages
            .into_iter()
            .map(|(id, mut versions)| {
                versions.sort_by(|a, b| common::compare_versions(a, b));
                let body = serde_json::json!({ "versions": versions });
                (format!("v3-flatcontainer/{id}/index.json"), body.to_string().into_bytes())
            })
            .collect();
        Ok(Some(files))
    }
}
