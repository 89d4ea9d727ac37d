//! `plugin.toml`: parsing and the rules a manifest must satisfy.
//!
//! Manifests written for Artifact Keeper must load unmodified, so unknown keys are
//! ignored, `min_keeper_version` is accepted as information, and the older
//! `[requirements]` table (MiB and seconds) means the same as `[resources]`
//! (bytes and milliseconds); where both set a limit, `[resources]` wins.
//!
//! Every problem is reported at once, each naming the file, the field and the rule.

use std::time::Duration;

use serde::Deserialize;
use wasmplug_crds::{Capabilities, is_valid_format_key};

/// The file name of a plugin manifest inside a package.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// A valid plugin manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: semver::Version,
    pub description: Option<String>,
    pub author: Option<String>,
    pub license: Option<String>,
    pub homepage: Option<String>,
    pub min_keeper_version: Option<String>,
    pub format_key: String,
    pub display_name: Option<String>,
    pub extensions: Vec<String>,
    pub content_types: Vec<String>,
    pub capabilities: Capabilities,
    pub resources: ResourceRequest,
    /// Fields of the file that no rule reads, as `[table].key` (a misspelling
    /// such as `[format].extension`), sorted: accepted, Artifact Keeper's
    /// manifests may carry more, but worth a warning. At most
    /// [`MAX_NAMED_UNKNOWN_FIELDS`]; `unknown_field_count` counts them all.
    pub unknown_fields: Vec<String>,
    pub unknown_field_count: usize,
}

/// How many fields no rule reads are named (in warnings, and so in every
/// host's `GET /v1/formats`); the rest are counted.
pub const MAX_NAMED_UNKNOWN_FIELDS: usize = 16;

/// The limits a plugin asks for. The host grants at most the cluster maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ResourceRequest {
    pub max_memory_bytes: Option<u64>,
    /// The least memory the plugin says it needs (from `[requirements].min_memory_mb`).
    pub min_memory_bytes: Option<u64>,
    pub max_execution: Option<Duration>,
    pub max_fuel: Option<u64>,
}

/// One broken rule of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestProblem {
    /// The field, as `[table].key`.
    pub field: String,
    /// What the field must be, phrased to follow the field name.
    pub rule: String,
}

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("failed to parse {MANIFEST_FILE}: {0}")]
    Syntax(String),
    #[error("{MANIFEST_FILE} is invalid: {}", render(.0))]
    Invalid(Vec<ManifestProblem>),
}

fn render(problems: &[ManifestProblem]) -> String {
    problems.iter().map(|p| format!("{} {}", p.field, p.rule)).collect::<Vec<_>>().join("; ")
}

#[derive(Deserialize)]
struct RawManifest {
    plugin: Option<RawPlugin>,
    format: Option<RawFormat>,
    #[serde(default)]
    capabilities: RawCapabilities,
    resources: Option<RawResources>,
    requirements: Option<RawRequirements>,
}

#[derive(Deserialize, Default)]
struct RawPlugin {
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
    author: Option<String>,
    license: Option<String>,
    homepage: Option<String>,
    min_keeper_version: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawFormat {
    key: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    extensions: Vec<String>,
    #[serde(default)]
    content_types: Vec<String>,
}

/// `[capabilities]` as plugin.toml spells it (snake_case, unlike the CRD status).
#[derive(Deserialize, Default)]
struct RawCapabilities {
    #[serde(default)]
    parse_metadata: bool,
    #[serde(default)]
    validate_artifact: bool,
    #[serde(default)]
    generate_index: bool,
    #[serde(default)]
    handle_request: bool,
}

impl From<RawCapabilities> for Capabilities {
    fn from(raw: RawCapabilities) -> Self {
        Capabilities {
            parse_metadata: raw.parse_metadata,
            validate_artifact: raw.validate_artifact,
            generate_index: raw.generate_index,
            handle_request: raw.handle_request,
        }
    }
}

#[derive(Deserialize, Default)]
struct RawResources {
    max_memory_bytes: Option<u64>,
    max_fuel: Option<u64>,
    max_execution_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawRequirements {
    min_memory_mb: Option<u64>,
    max_memory_mb: Option<u64>,
    timeout_secs: Option<u64>,
}

/// Collects problems while checking fields.
#[derive(Default)]
struct Problems(Vec<ManifestProblem>);

impl Problems {
    fn add(&mut self, field: &str, rule: impl Into<String>) {
        self.0.push(ManifestProblem { field: field.to_owned(), rule: rule.into() });
    }

    fn positive(&mut self, field: &str, value: Option<u64>) -> Option<u64> {
        if value == Some(0) {
            self.add(field, "must be greater than 0");
        }
        value.filter(|v| *v > 0)
    }
}

impl Manifest {
    /// Parses and checks the text of a `plugin.toml`.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let syntax = |e: toml::de::Error| ManifestError::Syntax(e.to_string().trim().to_owned());
        let mut unknown_fields = Vec::new();
        let raw: RawManifest = serde_ignored::deserialize(toml::Deserializer::parse(text).map_err(syntax)?, |path| {
            unknown_fields.push(field_name(&path));
        })
        .map_err(syntax)?;
        unknown_fields.sort();
        let unknown_field_count = unknown_fields.len();
        unknown_fields.truncate(MAX_NAMED_UNKNOWN_FIELDS);
        let mut problems = Problems::default();
        // A missing table is one problem, not one per field.
        let (has_plugin, has_format) = (raw.plugin.is_some(), raw.format.is_some());
        if !has_plugin {
            problems.add("[plugin]", "table is required");
        }
        if !has_format {
            problems.add("[format]", "table is required");
        }
        let plugin = raw.plugin.unwrap_or_default();
        let format = raw.format.unwrap_or_default();

        let name = plugin.name.unwrap_or_default();
        if name.is_empty() {
            if has_plugin {
                problems.add("[plugin].name", "is required");
            }
        } else if !is_valid_format_key(&name) {
            problems.add("[plugin].name", format!("{name:?} must be lowercase letters, digits and single hyphens"));
        }
        let version = match plugin.version.as_deref().map(semver::Version::parse) {
            Some(Ok(version)) => version,
            Some(Err(e)) => {
                let text = plugin.version.unwrap_or_default();
                problems.add("[plugin].version", format!("{text:?} must be a semantic version such as 1.0.0 ({e})"));
                semver::Version::new(0, 0, 0)
            }
            None => {
                if has_plugin {
                    problems.add("[plugin].version", "is required");
                }
                semver::Version::new(0, 0, 0)
            }
        };

        let format_key = format.key.unwrap_or_default();
        if format_key.is_empty() {
            if has_format {
                problems.add("[format].key", "is required");
            }
        } else if !is_valid_format_key(&format_key) {
            problems.add(
                "[format].key",
                format!("{format_key:?} must be lowercase letters, digits and single hyphens, e.g. unity"),
            );
        }
        for extension in &format.extensions {
            if !extension.starts_with('.') || extension.len() < 2 || extension.contains('/') {
                problems
                    .add("[format].extensions", format!("entry {extension:?} must start with a dot, e.g. \".tgz\""));
            }
        }
        for content_type in &format.content_types {
            if content_type.split_once('/').is_none_or(|(kind, sub)| kind.is_empty() || sub.is_empty()) {
                problems.add(
                    "[format].content_types",
                    format!("entry {content_type:?} must be a MIME type such as application/gzip"),
                );
            }
        }

        let resources =
            resource_request(raw.resources.unwrap_or_default(), raw.requirements.unwrap_or_default(), &mut problems);
        if !problems.0.is_empty() {
            return Err(ManifestError::Invalid(problems.0));
        }
        Ok(Manifest {
            name,
            version,
            description: plugin.description,
            author: plugin.author,
            license: plugin.license,
            homepage: plugin.homepage,
            min_keeper_version: plugin.min_keeper_version,
            format_key,
            display_name: format.display_name,
            extensions: format.extensions,
            content_types: format.content_types,
            capabilities: raw.capabilities.into(),
            resources,
            unknown_fields,
            unknown_field_count,
        })
    }

    /// A warning per field no rule reads, naming it and what to do, and one
    /// counting those past the named ones.
    pub fn warnings(&self) -> Vec<String> {
        let more = self.unknown_field_count - self.unknown_fields.len();
        self.unknown_fields
            .iter()
            .map(|field| {
                format!("{MANIFEST_FILE}: {field} is not a field wasmplug reads; check its spelling (or remove it)")
            })
            .chain((more > 0).then(|| format!("{MANIFEST_FILE}: and {more} more fields wasmplug does not read")))
            .collect()
    }
}

/// A field serde_ignored reports, as `[table].key` (`[table]` for a table).
fn field_name(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let mut keys = Vec::new();
    let mut at = path;
    loop {
        match at {
            Path::Root => break,
            Path::Map { parent, key } => {
                keys.push(key.as_str());
                at = parent;
            }
            Path::Seq { parent, .. }
            | Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => at = parent,
        }
    }
    keys.reverse();
    match keys.split_first() {
        Some((table, [])) => format!("[{table}]"),
        Some((table, rest)) => format!("[{table}].{}", rest.join(".")),
        None => String::new(),
    }
}

const MIB: u64 = 1 << 20;

fn resource_request(
    resources: RawResources,
    requirements: RawRequirements,
    problems: &mut Problems,
) -> ResourceRequest {
    let max_memory_bytes = problems.positive("[resources].max_memory_bytes", resources.max_memory_bytes);
    let max_memory_mb = problems.positive("[requirements].max_memory_mb", requirements.max_memory_mb);
    let min_memory_mb = problems.positive("[requirements].min_memory_mb", requirements.min_memory_mb);
    let max_execution_ms = problems.positive("[resources].max_execution_ms", resources.max_execution_ms);
    let timeout_secs = problems.positive("[requirements].timeout_secs", requirements.timeout_secs);
    let max_fuel = problems.positive("[resources].max_fuel", resources.max_fuel);

    let request = ResourceRequest {
        max_memory_bytes: max_memory_bytes.or(max_memory_mb.and_then(|mb| mb.checked_mul(MIB))),
        min_memory_bytes: min_memory_mb.and_then(|mb| mb.checked_mul(MIB)),
        max_execution: max_execution_ms.map(Duration::from_millis).or(timeout_secs.map(Duration::from_secs)),
        max_fuel,
    };
    if let (Some(min), Some(max)) = (request.min_memory_bytes, request.max_memory_bytes)
        && min > max
    {
        problems.add("[requirements].min_memory_mb", "must not exceed the maximum memory");
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITY: &str = r#"
        [plugin]
        name = "unity-format"
        version = "1.2.0"
        description = "Unity packages"
        min_keeper_version = "1.0.0"
        some_future_key = "ignored"

        [format]
        key = "unity"
        display_name = "Unity packages"
        extensions = [".unitypackage"]
        content_types = ["application/x-unitypackage"]

        [capabilities]
        parse_metadata = true
        validate_artifact = true

        [resources]
        max_memory_bytes = 33554432
        max_execution_ms = 1500
    "#;

    fn problems(text: &str) -> Vec<String> {
        match Manifest::parse(text) {
            Err(ManifestError::Invalid(problems)) => {
                problems.into_iter().map(|p| format!("{} {}", p.field, p.rule)).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_complete_manifest() {
        let manifest = Manifest::parse(UNITY).expect("valid");
        assert_eq!(manifest.name, "unity-format");
        assert_eq!(manifest.version, semver::Version::new(1, 2, 0));
        assert_eq!(manifest.format_key, "unity");
        assert_eq!(manifest.extensions, [".unitypackage"]);
        assert_eq!(manifest.min_keeper_version.as_deref(), Some("1.0.0"));
        assert!(manifest.capabilities.parse_metadata && manifest.capabilities.validate_artifact);
        assert!(!manifest.capabilities.generate_index && !manifest.capabilities.handle_request);
        assert_eq!(manifest.resources.max_memory_bytes, Some(32 << 20));
        assert_eq!(manifest.resources.max_execution, Some(Duration::from_millis(1500)));
        assert_eq!(manifest.resources.max_fuel, None);
        assert_eq!(manifest.unknown_fields, ["[plugin].some_future_key"]);
    }

    #[test]
    fn names_fields_no_rule_reads() {
        let misspelled = UNITY.replace("extensions =", "extension =").replace("[resources]", "[resource]");
        let manifest = Manifest::parse(&misspelled).expect("still valid");
        assert_eq!(manifest.unknown_fields, ["[format].extension", "[plugin].some_future_key", "[resource]"]);
        assert!(manifest.extensions.is_empty(), "the misspelled field is not read");
    }

    #[test]
    fn a_flood_of_unknown_fields_is_named_up_to_a_bound_and_counted() {
        // Hosts list warnings in GET /v1/formats: a large plugin.toml of
        // unknown keys must not become a larger listing.
        let keys: String = (0..1000).map(|n| format!("junk_{n:04} = 1\n")).collect();
        let flood = UNITY.replace("[format]\n", &format!("{keys}[format]\n"));
        let manifest = Manifest::parse(&flood).expect("still valid");
        assert_eq!(manifest.unknown_fields.len(), super::MAX_NAMED_UNKNOWN_FIELDS);
        assert_eq!(manifest.unknown_fields[0], "[plugin].junk_0000");
        let warnings = manifest.warnings();
        assert_eq!(warnings.len(), super::MAX_NAMED_UNKNOWN_FIELDS + 1, "{warnings:?}");
        let more = 1001 - super::MAX_NAMED_UNKNOWN_FIELDS;
        assert!(warnings.last().is_some_and(|w| w.contains(&format!("{more} more fields"))), "{warnings:?}");
    }

    #[test]
    fn the_older_requirements_table_means_the_same() {
        let text = UNITY.replace(
            "[resources]\n        max_memory_bytes = 33554432\n        max_execution_ms = 1500",
            "[requirements]\n        min_memory_mb = 8\n        max_memory_mb = 32\n        timeout_secs = 2",
        );
        let manifest = Manifest::parse(&text).expect("valid");
        assert_eq!(manifest.resources.max_memory_bytes, Some(32 << 20));
        assert_eq!(manifest.resources.min_memory_bytes, Some(8 << 20));
        assert_eq!(manifest.resources.max_execution, Some(Duration::from_secs(2)));
    }

    #[test]
    fn resources_win_over_requirements() {
        let text = format!("{UNITY}\n[requirements]\nmax_memory_mb = 512\ntimeout_secs = 30\n");
        let manifest = Manifest::parse(&text).expect("valid");
        assert_eq!(manifest.resources.max_memory_bytes, Some(32 << 20));
        assert_eq!(manifest.resources.max_execution, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn every_problem_names_its_field_and_rule() {
        let text = r#"
            [plugin]
            name = "Unity Format"
            version = "1.0"
            [format]
            key = "unity_pkg"
            extensions = ["unitypackage"]
            content_types = ["gzip"]
            [resources]
            max_memory_bytes = 0
        "#;
        assert_eq!(
            problems(text),
            [
                r#"[plugin].name "Unity Format" must be lowercase letters, digits and single hyphens"#,
                r#"[plugin].version "1.0" must be a semantic version such as 1.0.0 (unexpected end of input while parsing minor version number)"#,
                r#"[format].key "unity_pkg" must be lowercase letters, digits and single hyphens, e.g. unity"#,
                r#"[format].extensions entry "unitypackage" must start with a dot, e.g. ".tgz""#,
                r#"[format].content_types entry "gzip" must be a MIME type such as application/gzip"#,
                "[resources].max_memory_bytes must be greater than 0",
            ]
        );
    }

    #[test]
    fn missing_tables_and_fields_are_named() {
        assert_eq!(problems(""), ["[plugin] table is required", "[format] table is required"]);
        assert_eq!(
            problems("[plugin]\nname = \"x\"\n[format]\n"),
            ["[plugin].version is required", "[format].key is required"]
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let error = Manifest::parse("[plugin\nname = 1").expect_err("broken TOML");
        let message = error.to_string();
        assert!(message.starts_with("failed to parse plugin.toml: "), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn wrong_types_are_syntax_errors_naming_the_key() {
        let error =
            Manifest::parse("[plugin]\nname = \"x\"\nversion = 1\n[format]\nkey = \"x\"").expect_err("wrong type");
        assert!(error.to_string().contains("version"), "{error}");
    }
}
