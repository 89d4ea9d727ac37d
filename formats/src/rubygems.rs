//! `rubygems`: `.gem` files (a tar holding `metadata.gz`, the gzipped YAML gem
//! specification). Reads name and version from the spec and checks them against
//! the file name; the index is the compact index (`names`, `info/<gem>`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{Budget, Format, IndexFiles, Inspection, Metadata, Refusal};
use crate::{archive, common, path};

const CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Clone, Copy, Debug, Default)]
pub struct Rubygems;

#[derive(Deserialize)]
struct Spec {
    name: String,
    version: SpecVersion,
}

#[derive(Deserialize)]
struct SpecVersion {
    version: String,
}

fn spec(data: &[u8], budget: &Budget) -> Result<(String, String), Refusal> {
    let (_, gzipped) = archive::tar_member(data, budget, |p| p == "metadata.gz")
        .map_err(|e| e.context("not a gem"))?
        .ok_or("not a gem: the archive has no metadata.gz")?;
    let yaml = archive::gunzip_text(&gzipped, "metadata.gz", budget)?;
    // Ruby tags its objects (!ruby/object:Gem::Specification); the fields are plain.
    let spec: Spec =
        serde_saphyr::from_str(&yaml).map_err(|e| format!("metadata.gz is not a gem specification: {e}"))?;
    Ok((spec.name, spec.version.version))
}

fn check(artifact_path: &str, data: &[u8], budget: &Budget) -> Result<(String, String), Refusal> {
    path::check(artifact_path)?;
    let file = artifact_path.rsplit('/').next().unwrap_or(artifact_path);
    let stem = file.strip_suffix(".gem").ok_or_else(|| format!("gem path {artifact_path:?} must end with .gem"))?;
    let (name, version) = spec(data, budget)?;
    // Platform gems are named <name>-<version>-<platform>.gem.
    let expected = format!("{name}-{version}");
    if stem != expected && !stem.starts_with(&format!("{expected}-")) {
        return Err(format!("the file is named {file} but its specification says {name} {version}").into());
    }
    Ok((name, version))
}

impl Format for Rubygems {
    fn inspect(&self, path: &str, data: &[u8], budget: &Budget) -> Result<Inspection, Refusal> {
        let (_, version) = check(path, data, budget)?;
        Ok(Inspection { version: Some(version), content_type: CONTENT_TYPE })
    }

    /// The compact index: `names`, and `info/<gem>` with one line per version
    /// and its SHA-256.
    fn generate_index(&self, artifacts: &[Metadata], budget: &Budget) -> Result<Option<IndexFiles>, Refusal> {
        let mut gems: BTreeMap<String, Vec<(&str, &str)>> = BTreeMap::new();
        for artifact in artifacts {
            budget.check_time()?;
            let file = artifact.path.rsplit('/').next().unwrap_or(&artifact.path);
            let (Some(version), Some(stem)) = (artifact.version.as_deref(), file.strip_suffix(".gem")) else {
                continue;
            };
            if let Some((name, _)) = stem.split_once(&format!("-{version}")) {
                gems.entry(name.to_owned())
                    .or_default()
                    .push((version, artifact.checksum_sha256.as_deref().unwrap_or_default()));
            }
        }
        let names: String = gems.keys().map(|name| format!("{name}\n")).collect();
        let mut files = vec![("names".to_owned(), format!("---\n{names}").into_bytes())];
        for (name, mut versions) in gems {
            versions.sort_by(|(a, _), (b, _)| common::compare_versions(a, b));
            let lines: String = versions.iter().map(|(v, sum)| format!("{v} |checksum:{sum}\n")).collect();
            files.push((format!("info/{name}"), format!("---\n{lines}").into_bytes()));
        }
        Ok(Some(files))
    }
}
