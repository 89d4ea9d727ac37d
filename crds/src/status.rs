//! The observed state of a `FormatPlugin`, written by the operator and read by hosts,
//! `kubectl wait`, Flux and Argo CD.
//!
//! The shape follows the kstatus conventions: `observedGeneration`, a `Ready`
//! condition (plus `Reconciling` / `Stalled` only while true) and step conditions
//! whose reasons are the words in [`crate::conditions`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::spec::digest_rule;
use crate::{FormatPlugin, SignatureInfo, conditions::ConditionType};

/// What the operator last observed and published for this plugin.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FormatPluginStatus {
    /// The metadata.generation this status describes. A status is current only when
    /// this equals metadata.generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready says whether the plugin is published and may be served. Reconciling and
    /// Stalled appear only while true. Fetched and Validated report the steps of the
    /// last attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The published plugin package that hosts load. After a failed update this
    /// still describes the last good package, which keeps serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,

    /// What the published plugin's manifest declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginInfo>,

    /// Which hosts serve the published version, from the hosts' own records
    /// (FormatHosts), written by the operator. The Serving condition sums it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<HostsStatus>,

    /// The value of the wasmplug.dev/requested-at annotation that the operator
    /// last acted on. Setting the annotation to a new value (a timestamp, say)
    /// fetches the source again now, e.g. after rebuilding a local package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
}

/// How the published version is served across the hosts that follow this
/// FormatPlugin and receive traffic (their pods are Ready).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostsStatus {
    /// Hosts that should serve the published version: those that follow this
    /// FormatPlugin's namespace and whose pods are Ready.
    pub expected: i32,

    /// Of those, how many serve the published version as the spec asks
    /// (active, or disabled when spec.enabled is false).
    pub serving: i32,

    /// serving/expected, for kubectl get.
    #[schemars(length(max = 32))]
    pub summary: String,

    /// The expected hosts that do not serve it yet or cannot, failures first, at
    /// most 10; every other expected host serves the published version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub not_serving: Vec<HostReport>,
}

impl HostsStatus {
    /// Most hosts [`HostsStatus::not_serving`] lists.
    pub const MAX_LISTED: usize = 10;
}

/// One host that does not serve the published version as asked.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostReport {
    /// The host (its FormatHost, named after its pod).
    #[schemars(length(max = 253))]
    pub host: String,

    /// The plugin.wasm digest it serves instead; unset when it serves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 71))]
    pub digest: Option<String>,

    /// Its state for the format: active, disabled, failed, quarantined,
    /// changing-hands, or missing (not loaded yet).
    #[schemars(length(max = 32))]
    pub state: String,

    /// Why, as the host says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

/// A plugin package published in the operator's content-addressed store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.path == 'artifacts/sha256/' + self.digest.substring(7)")
    .message("path must be the content address of digest: artifacts/sha256/<the digest's hex digits>"))]
#[x_kube(validation = Rule::new("!has(self.url) || self.url.endsWith('/' + self.path)")
    .message("url must end with /<path>: the package's directory on the operator's artifact server"))]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// SHA-256 of plugin.wasm, as sha256:<64 hex digits>. Hosts check the file
    /// against it before loading.
    #[x_kube(validation = digest_rule())]
    #[schemars(length(max = 71))]
    pub digest: String,

    /// Directory of the package relative to the store root:
    /// artifacts/sha256/<hex>, the content address of digest.
    #[schemars(length(max = 81))]
    pub path: String,

    /// The source revision: <tag or branch>@sha1:<commit> for Git, the URL and its
    /// digest for a URL, <tag>@sha256:<manifest digest> (or the digest alone) for
    /// OCI, the path and its digest for a local package.
    pub revision: String,

    /// Size of plugin.wasm in bytes.
    pub size: i64,

    /// Where the package's files can be downloaded, by hosts and with a host's
    /// credentials: <url>/plugin.toml, <url>/plugin.wasm and <url>/<precompiled.file>
    /// on the operator's artifact server. For people and tools; hosts fetch the
    /// same path from the artifact server they were configured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub url: Option<String>,

    /// Digest and size of plugin.toml. Hosts that download the package check it
    /// before reading the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<FileDigest>,

    /// When this artifact was published.
    pub last_update_time: Time,

    /// The ahead-of-time compiled form, when the operator produced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precompiled: Option<Precompiled>,

    /// The signature that verified plugin.wasm, when the operator verified one
    /// (spec.verify, or the cluster-wide policy): which key signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureInfo>,
}

impl Artifact {
    /// The directory, relative to the store root, that holds one directory per
    /// package, named by the hex digits of its plugin.wasm's digest.
    pub const PACKAGES_DIR: &str = "artifacts/sha256";

    /// The store path of the package whose plugin.wasm has `digest`
    /// (`sha256:<hex>`): `artifacts/sha256/<hex>`.
    pub fn path_for(digest: &str) -> String {
        format!("{}/{}", Self::PACKAGES_DIR, digest.strip_prefix("sha256:").unwrap_or(digest))
    }
}

/// The digest and size of one file of a published package.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileDigest {
    /// SHA-256 of the file, as sha256:<64 hex digits>.
    #[x_kube(validation = digest_rule())]
    #[schemars(length(max = 71))]
    pub digest: String,

    /// Size of the file in bytes; hosts read no more than this.
    pub size: i64,
}

/// An ahead-of-time compiled plugin: native code, valid only for one engine
/// build. Hosts use it only when its own digest matches, and otherwise compile
/// plugin.wasm themselves.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.file == self.engine + '.cwasm'")
    .message("file must be the engine identifier followed by .cwasm"))]
#[serde(rename_all = "camelCase")]
pub struct Precompiled {
    /// File name of the compiled module inside the artifact directory: the engine
    /// identifier followed by .cwasm, one plain file name.
    #[schemars(length(max = 128))]
    pub file: String,

    /// Identifier of the engine (runtime version and configuration) it was compiled
    /// for, wasmtime-<architecture>-<16 hex digits>. A host with any other engine
    /// compiles plugin.wasm itself.
    #[x_kube(validation = Rule::new("self.matches('^wasmtime-[a-z0-9_]+-[a-f0-9]{16}$')")
        .message("engine must be wasmtime-<architecture>-<16 lowercase hex digits>"))]
    #[schemars(length(max = 122))]
    pub engine: String,

    /// SHA-256 of the compiled file, as sha256:<64 hex digits>. Hosts check the file
    /// against it before running any of it; without it they compile plugin.wasm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = digest_rule())]
    #[schemars(length(max = 71))]
    pub digest: Option<String>,

    /// Size of the compiled file in bytes; hosts read no more than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

impl Precompiled {
    /// The file name of a component precompiled for `engine`.
    pub fn file_for(engine: &str) -> String {
        format!("{engine}.cwasm")
    }

    /// Whether `engine` has the shape of an engine identifier, so that
    /// [`file_for`](Self::file_for) of it is one plain file name.
    pub fn is_valid_engine(engine: &str) -> bool {
        let Some((arch, hash)) = engine.strip_prefix("wasmtime-").and_then(|rest| rest.rsplit_once('-')) else {
            return false;
        };
        !arch.is_empty()
            && arch.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && hash.len() == 16
            && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

/// What the plugin manifest (plugin.toml) declares.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    /// Plugin name from [plugin].name.
    pub name: String,

    /// Plugin version (semver) from [plugin].version.
    pub version: String,

    /// The format key the plugin handles, from [format].key.
    pub format_key: String,

    /// Human-readable format name from [format].display_name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,

    /// File extensions the format uses, e.g. .unitypackage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,

    /// What the plugin can do.
    pub capabilities: Capabilities,
}

/// The [capabilities] table of a plugin manifest.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Extracts metadata from an artifact.
    #[serde(default)]
    pub parse_metadata: bool,
    /// Validates an artifact and its path.
    #[serde(default)]
    pub validate_artifact: bool,
    /// Generates repository index files.
    #[serde(default)]
    pub generate_index: bool,
    /// Serves the format's native client protocol (format-plugin-v2).
    #[serde(default)]
    pub handle_request: bool,
}

impl FormatPlugin {
    /// The condition of the given type, if the status has one.
    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == kind.as_str())
    }

    /// True when the status describes the current spec (kstatus: observedGeneration
    /// equals metadata.generation) and says Ready=True: the current spec is live.
    /// It is what `kubectl wait --for=condition=Ready` plus a generation check mean.
    /// (Hosts serve `status.artifact`, which stays the last good version while an
    /// update fails; see [`crate::ownership`] and docs/architecture.md.)
    pub fn is_ready_at_current_generation(&self) -> bool {
        let observed = self.status.as_ref().and_then(|s| s.observed_generation);
        let current = observed.is_some() && observed == self.metadata.generation;
        current && self.condition(ConditionType::Ready).is_some_and(|c| c.status == "True")
    }

    /// The [`REQUESTED_AT_ANNOTATION`] value, if set.
    pub fn requested_at(&self) -> Option<&str> {
        self.metadata.annotations.as_ref()?.get(REQUESTED_AT_ANNOTATION).map(String::as_str)
    }

    /// Whether a fetch was requested (a new [`REQUESTED_AT_ANNOTATION`] value)
    /// that the operator has not acted on yet.
    pub fn has_unhandled_request(&self) -> bool {
        let handled = self.status.as_ref().and_then(|s| s.last_handled_requested_at.as_deref());
        self.requested_at().is_some_and(|requested| Some(requested) != handled)
    }
}

/// Setting this annotation on a FormatPlugin to a new value (by convention the
/// time: `kubectl annotate fp/<name> wasmplug.dev/requested-at="$(date +%s)"
/// --overwrite`) makes the operator fetch its source again now, even when
/// nothing in the spec changed (a rebuilt local package, a moved tag).
pub const REQUESTED_AT_ANNOTATION: &str = "wasmplug.dev/requested-at";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FormatPluginSpec, Source, spec::BuiltinSource};

    fn plugin(generation: i64, observed: i64, ready: &str) -> FormatPlugin {
        let spec: FormatPluginSpec = serde_json::from_value(serde_json::json!({
            "source": {"builtin": {"format": "npm"}}
        }))
        .expect("a minimal spec deserializes");
        assert_eq!(spec.source, Source { builtin: Some(BuiltinSource { format: "npm".into() }), ..Source::default() });
        let mut plugin = FormatPlugin::new("npm", spec);
        plugin.metadata.generation = Some(generation);
        plugin.status = Some(FormatPluginStatus {
            observed_generation: Some(observed),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: "Succeeded".into(),
                message: String::new(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: Some(observed),
            }],
            ..FormatPluginStatus::default()
        });
        plugin
    }

    #[test]
    fn ready_only_at_the_current_generation() {
        assert!(plugin(2, 2, "True").is_ready_at_current_generation());
        assert!(!plugin(3, 2, "True").is_ready_at_current_generation());
        assert!(!plugin(2, 2, "False").is_ready_at_current_generation());
        assert!(!plugin(2, 2, "Unknown").is_ready_at_current_generation());
    }

    #[test]
    fn engine_identifiers_make_plain_file_names() {
        assert!(Precompiled::is_valid_engine("wasmtime-x86_64-9c1e0a2b3c4d5e6f"));
        assert!(Precompiled::is_valid_engine("wasmtime-aarch64-0000000000000000"));
        for engine in [
            "",
            "wasmtime--9c1e0a2b3c4d5e6f",
            "wasmtime-x86_64-9C1E0A2B3C4D5E6F",
            "wasmtime-x86_64-9c1e",
            "wasmtime-../..-9c1e0a2b3c4d5e6f",
            "wasmtime-x86/64-9c1e0a2b3c4d5e6f",
            "other-x86_64-9c1e0a2b3c4d5e6f",
        ] {
            assert!(!Precompiled::is_valid_engine(engine), "{engine:?}");
        }
        assert_eq!(Precompiled::file_for("wasmtime-x86_64-9c1e0a2b3c4d5e6f"), "wasmtime-x86_64-9c1e0a2b3c4d5e6f.cwasm");
        let hex = "ab".repeat(32);
        assert_eq!(Artifact::path_for(&format!("sha256:{hex}")), format!("artifacts/sha256/{hex}"));
    }

    #[test]
    fn defaults_apply_to_a_minimal_spec() {
        let plugin = plugin(1, 1, "True");
        assert!(plugin.spec.enabled);
        assert!(!plugin.spec.suspend);
        assert_eq!(std::time::Duration::from(plugin.spec.timeout), std::time::Duration::from_secs(60));
    }
}
