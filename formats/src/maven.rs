//! `maven`: the Maven repository layout,
//! `<group dirs>/<artifactId>/<version>/<artifactId>-<version>[-<classifier>].<ext>`.
//! Archives must be zips, POMs must be `<project>` documents naming the same
//! coordinates; the index is `maven-metadata.xml` per artifact.

use std::collections::BTreeMap;

use crate::{Budget, Format, IndexFiles, Inspection, Metadata, Refusal};
use crate::{archive, common, path, xml};

#[derive(Clone, Copy, Debug, Default)]
pub struct Maven;

/// Coordinates a path names.
#[derive(Debug, PartialEq)]
struct Coordinates {
    group: String,
    artifact: String,
    version: String,
    extension: String,
}

fn coordinates(path: &str) -> Result<Coordinates, String> {
    let segments: Vec<&str> = path.split('/').collect();
    let layout = "<group dirs>/<artifactId>/<version>/<artifactId>-<version>[-<classifier>].<ext>";
    let [group @ .., artifact, version, file] = segments.as_slice() else {
        return Err(format!("maven path {path:?} must follow {layout}"));
    };
    if group.is_empty() {
        return Err(format!("maven path {path:?} has no group directories; it must follow {layout}"));
    }
    // Timestamped snapshots name the file <artifact>-<base>-<timestamp>-<build>.
    let base = version.strip_suffix("-SNAPSHOT").unwrap_or(version);
    if !file.starts_with(&format!("{artifact}-{base}")) {
        return Err(format!(
            "file {file:?} must start with {artifact}-{version} (the artifactId and version directories)"
        ));
    }
    let extension = file.rsplit_once('.').map(|(_, ext)| ext.to_owned()).unwrap_or_default();
    Ok(Coordinates { group: group.join("."), artifact: artifact.to_string(), version: version.to_string(), extension })
}

fn content_type(extension: &str) -> &'static str {
    match extension {
        "jar" | "war" | "ear" | "aar" => "application/java-archive",
        "pom" | "xml" => "application/xml",
        "sha1" | "sha256" | "sha512" | "md5" => "text/plain",
        "asc" => "application/pgp-signature",
        "module" | "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn check(artifact_path: &str, data: &[u8], budget: &Budget) -> Result<Coordinates, Refusal> {
    path::check(artifact_path)?;
    let coordinates = coordinates(artifact_path)?;
    match coordinates.extension.as_str() {
        "jar" | "war" | "ear" | "aar" if !archive::is_zip(data) => {
            return Err(format!("{artifact_path:?} is not a {} archive (not a zip file)", coordinates.extension).into());
        }
        "pom" => check_pom(data, &coordinates, budget)?,
        _ => {}
    }
    Ok(coordinates)
}

fn check_pom(data: &[u8], expected: &Coordinates, budget: &Budget) -> Result<(), Refusal> {
    let text = std::str::from_utf8(data).map_err(|e| format!("the POM is not UTF-8: {e}"))?;
    let found = xml::read(text, "project", &[&["project", "artifactId"], &["project", "version"]], budget)
        .map_err(|e| e.context("the POM is not a valid <project> document"))?;
    if let Some(artifact) = found[0].as_deref().filter(|a| *a != expected.artifact) {
        return Err(format!("the POM's artifactId is {artifact} but the path says {}", expected.artifact).into());
    }
    // A POM may inherit its version from its parent; only a stated one is compared.
    if let Some(version) = found[1].as_deref().filter(|v| *v != expected.version && !v.contains("${")) {
        return Err(format!("the POM's version is {version} but the path says {}", expected.version).into());
    }
    Ok(())
}

impl Format for Maven {
    fn inspect(&self, path: &str, data: &[u8], budget: &Budget) -> Result<Inspection, Refusal> {
        let coordinates = check(path, data, budget)?;
        Ok(Inspection { version: Some(coordinates.version), content_type: content_type(&coordinates.extension) })
    }

    /// `maven-metadata.xml` for every groupId:artifactId, listing its versions.
    fn generate_index(&self, artifacts: &[Metadata], budget: &Budget) -> Result<Option<IndexFiles>, Refusal> {
        let mut by_artifact: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for artifact in artifacts {
            budget.check_time()?;
            if let Ok(c) = coordinates(&artifact.path) {
                let versions = by_artifact.entry((c.group, c.artifact)).or_default();
                if !versions.contains(&c.version) {
                    versions.push(c.version);
                }
            }
        }
        let files = by_artifact
            .into_iter()
            .map(|((group, artifact), mut versions)| {
                versions.sort_by(|a, b| common::compare_versions(a, b));
                let latest = versions.last().cloned().unwrap_or_default();
                let release = versions.iter().rev().find(|v| !v.ends_with("-SNAPSHOT"));
                let e = common::escape_markup;
                let mut xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata>\n  <groupId>{}</groupId>\n  <artifactId>{}</artifactId>\n  <versioning>\n    <latest>{}</latest>\n",
                    e(&group), e(&artifact), e(&latest)
                );
                if let Some(release) = release {
                    xml.push_str(&format!("    <release>{}</release>\n", e(release)));
                }
                xml.push_str("    <versions>\n");
                for version in &versions {
                    xml.push_str(&format!("      <version>{}</version>\n", e(version)));
                }
                xml.push_str("    </versions>\n  </versioning>\n</metadata>\n");
                (format!("{}/{artifact}/maven-metadata.xml", group.replace('.', "/")), xml.into_bytes())
            })
            .collect();
        Ok(Some(files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_from_paths() {
        let c = coordinates("org/apache/commons/commons-lang3/3.14.0/commons-lang3-3.14.0-sources.jar").unwrap();
        assert_eq!(
            c,
            Coordinates {
                group: "org.apache.commons".into(),
                artifact: "commons-lang3".into(),
                version: "3.14.0".into(),
                extension: "jar".into(),
            }
        );
        assert!(coordinates("com/x/lib/1.0-SNAPSHOT/lib-1.0-20240101.120000-3.jar").is_ok());
        assert!(coordinates("lib/1.0/lib-1.0.jar").unwrap_err().contains("no group directories"));
        assert!(coordinates("com/x/lib/1.0/other-1.0.jar").unwrap_err().contains("must start with lib-1.0"));
    }
}
