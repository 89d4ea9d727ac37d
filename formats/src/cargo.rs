//! `cargo`: crate files (`<name>-<version>.crate`, a gzipped tar with
//! `<name>-<version>/Cargo.toml`). The index is Cargo's sparse index layout, one
//! file per crate with a JSON line per version.

use std::collections::BTreeMap;

use serde_json::json;

use crate::{Budget, Format, IndexFiles, Inspection, Metadata, Refusal};
use crate::{archive, common, path};

const CONTENT_TYPE: &str = "application/gzip";

#[derive(Clone, Copy, Debug, Default)]
pub struct Cargo;

/// Name and version from `<name>-<version>.crate`: the version is the first
/// hyphen-separated tail that is a semantic version (crate names contain hyphens).
fn from_file_name(file: &str) -> Option<(String, String)> {
    let stem = file.strip_suffix(".crate")?;
    stem.match_indices('-').find_map(|(at, _)| {
        let (name, version) = (&stem[..at], &stem[at + 1..]);
        semver::Version::parse(version).ok().map(|_| (name.to_owned(), version.to_owned()))
    })
}

/// Where Cargo's sparse index keeps a crate's file.
fn index_path(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

fn check(artifact_path: &str, data: &[u8], budget: &Budget) -> Result<String, Refusal> {
    path::check(artifact_path)?;
    let file = artifact_path.rsplit('/').next().unwrap_or(artifact_path);
    let (name, version) =
        from_file_name(file).ok_or_else(|| format!("{file:?} is not a crate file name (<name>-<version>.crate)"))?;
    let manifest = format!("{name}-{version}/Cargo.toml");
    let (_, toml_bytes) = archive::tar_gz_member(data, budget, |p| p.trim_start_matches("./") == manifest)
        .map_err(|e| e.context("not a crate"))?
        .ok_or_else(|| format!("not a crate: no {manifest} in the archive"))?;
    let cargo_toml: toml::Table = std::str::from_utf8(&toml_bytes)
        .map_err(|e| e.to_string())
        .and_then(|text| toml::from_str(text).map_err(|e| e.to_string()))
        .map_err(|e| format!("{manifest} is not valid TOML: {e}"))?;
    let field = |key: &str| cargo_toml.get("package").and_then(|p| p.get(key)).and_then(|v| v.as_str());
    match (field("name"), field("version")) {
        (Some(n), Some(v)) if n == name && v == version => Ok(version),
        (n, v) => Err(format!(
            "the file name says {name} {version} but {manifest} says {} {}",
            n.unwrap_or("(no name)"),
            v.unwrap_or("(no version)")
        )
        .into()),
    }
}

impl Format for Cargo {
    fn inspect(&self, path: &str, data: &[u8], budget: &Budget) -> Result<Inspection, Refusal> {
        let version = check(path, data, budget)?;
        Ok(Inspection { version: Some(version), content_type: CONTENT_TYPE })
    }

    /// One sparse-index file per crate. Dependencies and features are not part of
    /// the stored metadata, so entries list none.
    fn generate_index(&self, artifacts: &[Metadata], budget: &Budget) -> Result<Option<IndexFiles>, Refusal> {
        let mut crates: BTreeMap<String, Vec<(String, &Metadata)>> = BTreeMap::new();
        for artifact in artifacts {
            budget.check_time()?;
            let file = artifact.path.rsplit('/').next().unwrap_or(&artifact.path);
            if let Some((name, version)) = from_file_name(file) {
                crates.entry(name).or_default().push((version, artifact));
            }
        }
        let files = crates
            .into_iter()
            .map(|(name, mut versions)| {
                versions.sort_by(|(a, _), (b, _)| common::compare_versions(a, b));
                let lines: String = versions
                    .iter()
                    .map(|(version, artifact)| {
                        let entry = json!({
                            "name": name, "vers": version, "deps": [], "features": {},
                            "cksum": artifact.checksum_sha256.as_deref().unwrap_or_default(), "yanked": false,
                        });
                        format!("{entry}\n")
                    })
                    .collect();
                (index_path(&name), lines.into_bytes())
            })
            .collect();
        Ok(Some(files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_file_names_and_index_paths() {
        assert_eq!(from_file_name("tokio-util-0.7.10.crate"), Some(("tokio-util".into(), "0.7.10".into())));
        assert_eq!(from_file_name("a-1.0.0-alpha.1.crate"), Some(("a".into(), "1.0.0-alpha.1".into())));
        assert_eq!(from_file_name("serde.crate"), None);
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("io"), "2/io");
        assert_eq!(index_path("syn"), "3/s/syn");
        assert_eq!(index_path("Serde_JSON"), "se/rd/serde_json");
    }
}
