//! `pypi`: wheels (`.whl`) and source distributions (`.tar.gz`). Reads the core
//! metadata (`*.dist-info/METADATA` or `<name>-<version>/PKG-INFO`) and checks it
//! against the file name; the index is a PEP 503 simple index.

use std::collections::BTreeMap;

use crate::{Budget, Format, IndexFiles, Inspection, Metadata, Refusal};
use crate::{archive, common, path};

#[derive(Clone, Copy, Debug, Default)]
pub struct Pypi;

#[derive(Debug, PartialEq)]
enum Kind {
    Wheel,
    Sdist,
}

/// The distribution kind, project name and version a file name declares.
fn from_file_name(file: &str) -> Option<(Kind, String, String)> {
    if let Some(stem) = file.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        return (parts.len() == 5 || parts.len() == 6).then(|| (Kind::Wheel, parts[0].to_owned(), parts[1].to_owned()));
    }
    let stem = file.strip_suffix(".tar.gz")?;
    let (name, version) = stem.rsplit_once('-')?;
    (!name.is_empty() && !version.is_empty()).then(|| (Kind::Sdist, name.to_owned(), version.to_owned()))
}

/// PEP 503 normalization: lowercase, runs of `-`, `_` and `.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// `Name` and `Version` from core metadata (RFC 822 style headers).
fn core_metadata(text: &str, file: &str) -> Result<(String, String), String> {
    let header = |key: &str| {
        text.lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_owned()))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{file} has no {key} field"))
    };
    Ok((header("Name")?, header("Version")?))
}

fn check(artifact_path: &str, data: &[u8], budget: &Budget) -> Result<(Kind, String), Refusal> {
    path::check(artifact_path)?;
    let file = artifact_path.rsplit('/').next().unwrap_or(artifact_path);
    let (kind, name, version) = from_file_name(file).ok_or_else(|| {
        format!("{file:?} is neither a wheel (<name>-<version>-<python>-<abi>-<platform>.whl) nor an sdist (<name>-<version>.tar.gz)")
    })?;
    let (member, text) = match kind {
        Kind::Wheel => {
            archive::zip_member(data, budget, |p| p.ends_with(".dist-info/METADATA") && p.split('/').count() == 2)
        }
        Kind::Sdist => archive::tar_gz_member(data, budget, |p| {
            let parts: Vec<&str> = p.trim_start_matches("./").split('/').collect();
            parts.len() == 2 && parts[1] == "PKG-INFO"
        }),
    }
    .map_err(|e| e.context("not a Python distribution"))?
    .ok_or_else(|| match kind {
        Kind::Wheel => "not a wheel: no <name>.dist-info/METADATA".to_owned(),
        Kind::Sdist => "not an sdist: no <name>-<version>/PKG-INFO".to_owned(),
    })?;
    let (meta_name, meta_version) = core_metadata(&String::from_utf8_lossy(&text), &member)?;
    if normalize(&meta_name) != normalize(&name) || meta_version != version {
        return Err(format!("the file name says {name} {version} but {member} says {meta_name} {meta_version}").into());
    }
    Ok((kind, version))
}

impl Format for Pypi {
    fn inspect(&self, path: &str, data: &[u8], budget: &Budget) -> Result<Inspection, Refusal> {
        let (kind, version) = check(path, data, budget)?;
        let content_type = match kind {
            Kind::Wheel => "application/zip",
            Kind::Sdist => "application/gzip",
        };
        Ok(Inspection { version: Some(version), content_type })
    }

    /// `simple/index.html` and `simple/<project>/index.html` (PEP 503), each file
    /// linked with its `#sha256=` fragment.
    fn generate_index(&self, artifacts: &[Metadata], budget: &Budget) -> Result<Option<IndexFiles>, Refusal> {
        let mut projects: BTreeMap<String, Vec<&Metadata>> = BTreeMap::new();
        for artifact in artifacts {
            budget.check_time()?;
            let file = artifact.path.rsplit('/').next().unwrap_or(&artifact.path);
            if let Some((_, name, _)) = from_file_name(file) {
                projects.entry(normalize(&name)).or_default().push(artifact);
            }
        }
        let page = |title: &str, links: String| {
            format!(
                "<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.0\"><title>{title}</title></head><body>\n{links}</body></html>\n"
            )
        };
        let root_links: String = projects.keys().map(|p| format!("<a href=\"{p}/\">{p}</a>\n")).collect();
        let mut files = vec![("simple/index.html".to_owned(), page("Simple index", root_links).into_bytes())];
        for (project, artifacts) in projects {
            let links: String = artifacts
                .iter()
                .map(|a| {
                    let file = a.path.rsplit('/').next().unwrap_or(&a.path);
                    let hash = a.checksum_sha256.as_deref().map(|h| format!("#sha256={h}")).unwrap_or_default();
                    format!(
                        "<a href=\"../../{}{hash}\">{}</a>\n",
                        common::escape_markup(&a.path),
                        common::escape_markup(file)
                    )
                })
                .collect();
            files.push((
                format!("simple/{project}/index.html"),
                page(&format!("Links for {project}"), links).into_bytes(),
            ));
        }
        Ok(Some(files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            from_file_name("requests-2.31.0-py3-none-any.whl"),
            Some((Kind::Wheel, "requests".into(), "2.31.0".into()))
        );
        assert_eq!(from_file_name("my_pkg-1.0-1-cp311-cp311-linux_x86_64.whl").map(|k| k.2), Some("1.0".into()));
        assert_eq!(from_file_name("Django-4.2.tar.gz"), Some((Kind::Sdist, "Django".into(), "4.2".into())));
        assert_eq!(from_file_name("requests.zip"), None);
    }

    #[test]
    fn names_normalize_per_pep_503() {
        assert_eq!(normalize("Friendly.Bard__Tool"), "friendly-bard-tool");
    }
}
