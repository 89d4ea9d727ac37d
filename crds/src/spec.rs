//! The desired state of a `FormatPlugin`: which format handler to provide and where
//! its plugin package comes from.
//!
//! Every rule the API server can check on its own (one source kind, digest and key
//! syntax, durations, sizes) is declared here as a CEL rule with a message a user can
//! act on, so that `kubectl apply` rejects a bad object before any controller sees it.
//! Rules that need runtime knowledge (the cluster-wide limit maxima, whether a
//! format key is already owned) belong to the operator.

use kube::{CustomResource, KubeSchema};

use crate::duration::Duration;
use serde::{Deserialize, Serialize};

use crate::status::FormatPluginStatus;
use crate::verify::Verification;

/// A format handler for the artifact registry, provided by a sandboxed WebAssembly
/// plugin (from Git, a URL, an OCI registry or a local path) or by a format compiled
/// into the host.
// clippy reads the repeated `type_ = "string"` of the printer columns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "wasmplug.dev",
    version = "v1alpha1",
    kind = "FormatPlugin",
    namespaced,
    shortname = "fp",
    category = "wasmplug",
    status = "FormatPluginStatus",
    derive = "PartialEq",
    doc = "FormatPlugin declares a package-format handler for the artifact registry and \
           where it comes from. The operator fetches, validates and publishes the plugin; \
           hosts serve it once Ready is True at the current generation.",
    printcolumn(
        name = "Format",
        type_ = "string",
        json_path = ".status.plugin.formatKey",
        description = "The package format this plugin handles"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.plugin.version",
        description = "Version from the plugin manifest"
    ),
    printcolumn(
        name = "Enabled",
        type_ = "boolean",
        json_path = ".spec.enabled",
        description = "Whether hosts serve the format"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the plugin is published and servable"
    ),
    printcolumn(
        name = "Serving",
        type_ = "string",
        json_path = ".status.hosts.summary",
        description = "Hosts serving the published version / hosts expected to"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.artifact.revision",
        description = "The source revision that is published"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Status",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        description = "Why the plugin is or is not Ready"
    ),
    printcolumn(
        name = "Hosts",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Serving\")].message",
        description = "Which hosts do not serve the published version, and why"
    )
)]
#[x_kube(validation = Rule::new("!has(self.sha256) || !has(self.source.builtin)")
    .message("sha256 cannot be set for a builtin source: a builtin format has no plugin.wasm to check"))]
#[x_kube(validation = Rule::new("!has(self.formatKey) || !has(self.source.builtin) || self.formatKey == self.source.builtin.format")
    .message("formatKey must equal source.builtin.format for a builtin source (or be left out)"))]
#[x_kube(validation = Rule::new("!has(self.verify) || !has(self.verify.provider) || self.verify.provider != 'cosign' || has(self.source.oci)")
    .message("verify.provider cosign needs an oci source: cosign keeps signatures in the registry beside the artifact"))]
#[x_kube(validation = Rule::new("!has(self.verify) || !has(self.source.builtin)")
    .message("verify cannot be set for a builtin source: a builtin format is compiled into the host, not signed"))]
#[serde(rename_all = "camelCase")]
pub struct FormatPluginSpec {
    /// Where the plugin comes from. Set exactly one of git, url, oci, local or builtin.
    pub source: Source,

    /// Whether hosts serve this format. Setting it to false stops new calls within
    /// seconds (they answer "format unavailable") without deleting the object; calls
    /// already running finish. Defaults to true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,

    /// Expected SHA-256 digest of plugin.wasm: 64 lowercase hex digits, optionally
    /// prefixed with "sha256:" (the form status.artifact.digest uses). A package whose
    /// plugin.wasm has any other digest is rejected and nothing is published. Not
    /// allowed with a builtin source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^(sha256:)?[a-f0-9]{64}$')")
        .message("sha256 must be 64 lowercase hex digits, optionally prefixed with 'sha256:'"))]
    #[schemars(length(max = 71))]
    pub sha256: Option<String>,

    /// Requires plugin.wasm to be signed by a trusted key, checked before the
    /// package is validated: unsigned is Ready=False with reason SignatureMissing,
    /// badly signed SignatureInvalid, and what was published before keeps serving.
    /// When the operator requires signatures cluster-wide, every non-builtin
    /// plugin is verified, with or without this field. Not allowed with a builtin
    /// source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verification>,

    /// The format key the plugin must handle, e.g. unity. Optional, but worth
    /// setting: a package whose manifest declares another key is rejected, and
    /// wasmplug's admission webhook refuses this object at apply time when another
    /// FormatPlugin already owns the key (without it, the conflict shows only after
    /// the package is fetched, as Ready=False with reason FormatConflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = format_key_rule("formatKey"))]
    #[schemars(length(min = 1, max = 63))]
    pub format_key: Option<String>,

    /// Per-call limits for this plugin. Each may only lower the cluster-wide maximum
    /// set when wasmplug was installed (and the plugin manifest's own request); a
    /// larger value is capped to that maximum and reported in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,

    /// How often a mutable source (a Git branch, a URL, an OCI tag or semver range)
    /// is checked for a new version, as a duration such as 5m or 1h. Defaults to
    /// 10m. Git tags and commits, OCI digests, local paths and builtins change only
    /// when this object changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = duration_rule("interval"))]
    #[schemars(length(max = 32))]
    pub interval: Option<Duration>,

    /// Stops reconciling this object while true: nothing is fetched, and whatever was
    /// published last keeps serving. Defaults to false.
    #[serde(default)]
    pub suspend: bool,

    /// Longest time one fetch of the source may take, as a duration such as 30s or 2m.
    /// A fetch that takes longer fails and leaves no partial files. Defaults to 60s.
    #[serde(default = "default_fetch_timeout")]
    #[x_kube(validation = duration_rule("timeout"))]
    #[schemars(length(max = 32))]
    pub timeout: Duration,
}

/// Where the plugin package comes from. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new(
    "[has(self.git), has(self.url), has(self.oci), has(self.local), has(self.builtin)].filter(set, set).size() == 1"
).message("exactly one source must be set: git, url, oci, local or builtin"))]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// A Git repository at a branch, tag or commit; the package is a directory
    /// (plugin.toml and plugin.wasm) or a ZIP file inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,

    /// A ZIP package (plugin.toml and plugin.wasm at its root) served over HTTP(S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<UrlSource>,

    /// An artifact in an OCI registry (as oras or wkg push it): a WebAssembly
    /// component layer with a plugin.toml layer, or a layer holding the same ZIP
    /// package a URL source takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciSource>,

    /// A directory or ZIP package on the operator's own filesystem. Meant for plugin
    /// development with a locally running operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalSource>,

    /// A format compiled into the host (maven, npm, pypi, cargo, nuget, rubygems,
    /// generic). Nothing is fetched; the object enables or disables that format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinSource>,
}

impl FormatPluginSpec {
    /// The format key this spec names before anything is fetched: the builtin's
    /// format, or `formatKey`.
    pub fn declared_format_key(&self) -> Option<&str> {
        match &self.source.builtin {
            Some(builtin) => Some(&builtin.format),
            None => self.format_key.as_deref(),
        }
    }
}

/// A borrowed view of the one source kind a [`Source`] holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SourceKind<'a> {
    Git(&'a GitSource),
    Url(&'a UrlSource),
    Oci(&'a OciSource),
    Local(&'a LocalSource),
    Builtin(&'a BuiltinSource),
}

impl SourceKind<'_> {
    /// A stable, low-cardinality name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Git(_) => "git",
            SourceKind::Url(_) => "url",
            SourceKind::Oci(_) => "oci",
            SourceKind::Local(_) => "local",
            SourceKind::Builtin(_) => "builtin",
        }
    }
}

impl Source {
    /// The single source kind that is set, or `None` when zero or several are set
    /// (which the API server's rule prevents for stored objects).
    pub fn kind(&self) -> Option<SourceKind<'_>> {
        let kinds = [
            self.git.as_ref().map(SourceKind::Git),
            self.url.as_ref().map(SourceKind::Url),
            self.oci.as_ref().map(SourceKind::Oci),
            self.local.as_ref().map(SourceKind::Local),
            self.builtin.as_ref().map(SourceKind::Builtin),
        ];
        let mut set = kinds.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(kind), None) => Some(kind),
            _ => None,
        }
    }
}

/// A plugin package inside a Git repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// Repository URL: https://, http://, ssh://, git:// or the scp-like
    /// user@host:path form. Credentials belong in secretRef, not in the URL (an
    /// ssh:// or scp-like user name is fine); no backslashes or spaces.
    #[x_kube(validation = Rule::new(
        r"self.matches(r'^((https?|git)://|ssh://([A-Za-z0-9._-]+@)?)[^/?#@\\\s]+([/?#][^\\\s]*)?$') || self.matches(r'^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:[^\\\s]+$')"
    ).message(
        "url must be an https://, http://, ssh:// or git:// URL naming a host without credentials \
         (put them in secretRef), or user@host:path"
    ))]
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,

    /// Which revision to check out: one of branch, tag or commit. Defaults to the
    /// repository's default branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRef>,

    /// Path inside the repository of the package: a directory holding plugin.toml and
    /// plugin.wasm, or a ZIP file. Relative to the repository root; defaults to the
    /// root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(
        "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')"
    ).message("path must be relative to the repository root and must not contain '..'"))]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,

    /// A Secret in this namespace with credentials for the repository: keys
    /// username and password (HTTPS, password may be a token), or identity (an SSH
    /// private key) and known_hosts (SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// A Git revision. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "[has(self.branch), has(self.tag), has(self.commit)].filter(set, set).size() == 1"
).message("ref must set exactly one of branch, tag or commit"))]
#[serde(rename_all = "camelCase")]
pub struct GitRef {
    /// A branch to follow; re-checked every interval, and a new commit is installed
    /// as an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: Option<String>,

    /// A tag, e.g. v1.2.0. The commit it points to is recorded in
    /// status.artifact.revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub tag: Option<String>,

    /// A full 40-character commit SHA-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-f0-9]{40}$')")
        .message("commit must be a full 40-character lowercase hex SHA-1"))]
    #[schemars(length(max = 40))]
    pub commit: Option<String>,
}

/// A ZIP package downloaded over HTTP(S).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UrlSource {
    /// The http:// or https:// URL of the ZIP package. Credentials belong in
    /// secretRef, not in the URL; no backslashes or spaces.
    #[x_kube(validation = Rule::new(r"self.matches(r'^https?://[^/?#@\\\s]+([/?#][^\\\s]*)?$')")
        .message("url must start with http:// or https:// and name a host without credentials (put them in secretRef)"))]
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,

    /// A Secret in this namespace with credentials for the download: keys username
    /// and password (basic authentication), or token (a bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// A plugin artifact in an OCI registry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OciSource {
    /// The repository, as oci://registry[:port]/repository, e.g.
    /// oci://registry.example.com/wasmplug/unity. Without a tag or digest (those
    /// go in ref); credentials belong in secretRef.
    #[x_kube(validation = Rule::new(
        r"self.matches(r'^oci://([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)+$')"
    ).message(
        "url must be oci://registry[:port]/repository, with a lowercase repository path and no tag, \
         digest or credentials (the tag or digest goes in ref, credentials in secretRef)"
    ))]
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,

    /// Which artifact of the repository to install: one of tag, digest or semver.
    /// Defaults to the tag latest.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<OciRef>,

    /// A Secret in this namespace of type kubernetes.io/dockerconfigjson (as for
    /// image pull secrets) with credentials for the registry. They are sent only
    /// to the registry's own origin (and a token service on that origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,

    /// A Secret in this namespace whose key ca.crt holds PEM certificates to trust
    /// for the registry's TLS certificate, besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<SecretReference>,

    /// Reach the registry over plain HTTP instead of HTTPS. For local and test
    /// registries only: anyone on the path can read and change what is fetched
    /// (digests still pin the content). Defaults to false.
    #[serde(default)]
    pub insecure: bool,
}

/// Which artifact of an OCI repository. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "[has(self.tag), has(self.digest), has(self.semver)].filter(set, set).size() == 1"
).message("ref must set exactly one of tag, digest or semver"))]
#[serde(rename_all = "camelCase")]
pub struct OciRef {
    /// A tag, e.g. 1.2.0 or latest. Re-checked every interval: when the tag moves
    /// to another digest, that artifact is installed as an update. The digest it
    /// pointed to is recorded in status.artifact.revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$')")
        .message("tag must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"))]
    #[schemars(length(min = 1, max = 128))]
    pub tag: Option<String>,

    /// A manifest digest, sha256:<64 lowercase hex digits>. Never moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = digest_rule())]
    #[schemars(length(max = 71))]
    pub digest: Option<String>,

    /// A semantic version range over the repository's tags, e.g. ">=1.2.0, <2"
    /// or "1.x" (tags may have a leading v). The highest matching version is
    /// installed, and re-checked every interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub semver: Option<String>,
}

/// A package on the operator's filesystem.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalSource {
    /// Absolute path of a package directory (plugin.toml and plugin.wasm) or ZIP file,
    /// as the operator process sees it. Read only when it resolves (links and `..`
    /// followed) under one of the operator's local source roots
    /// (--local-source-roots; none by default, so local sources are for
    /// development), and only regular files are read.
    #[x_kube(validation = Rule::new("self.startsWith('/')")
        .message("path must be absolute, e.g. /plugins/unity"))]
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
}

/// A format compiled into the host.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuiltinSource {
    /// The format key of the compiled-in format, e.g. npm or maven.
    #[x_kube(validation = format_key_rule("format"))]
    #[schemars(length(min = 1, max = 63))]
    pub format: String,
}

/// A reference to a Secret in the FormatPlugin's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Per-call limits. Unset fields use the plugin manifest's request or the cluster
/// default (64Mi memory, 5s per call, no fuel metering).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Most linear memory one call may grow to, in bytes with an optional Ki, Mi or
    /// Gi suffix, e.g. 32Mi. At least what the plugin's memory starts at (2Mi for
    /// plugins made by `wasmplug new`), or the plugin fails validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[1-9][0-9]*(Ki|Mi|Gi)?$')")
        .message("memory must be a whole number of bytes with an optional Ki, Mi or Gi suffix, e.g. 32Mi"))]
    #[schemars(length(max = 24))]
    pub memory: Option<String>,

    /// Longest wall-clock time one call may run, as a duration such as 500ms or 2s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = duration_rule("timeout"))]
    #[schemars(length(max = 32))]
    pub timeout: Option<Duration>,

    /// Fuel (roughly, WebAssembly instructions) one call may consume. Unset means no
    /// fuel metering, which is faster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub fuel: Option<u64>,
}

impl Limits {
    /// The memory limit in bytes, or `None` when unset or not of the documented form.
    pub fn memory_bytes(&self) -> Option<u64> {
        parse_memory(self.memory.as_deref()?)
    }
}

/// Parses the `limits.memory` form: digits with an optional Ki, Mi or Gi suffix.
pub fn parse_memory(text: &str) -> Option<u64> {
    let (digits, unit) = match text.len().checked_sub(2).map(|at| text.split_at(at)) {
        Some((digits, "Ki")) => (digits, 1 << 10),
        Some((digits, "Mi")) => (digits, 1 << 20),
        Some((digits, "Gi")) => (digits, 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// A CEL rule accepting Go-style durations (what `time.ParseDuration` and
/// [`Duration`] accept, without a sign): e.g. 90s, 1m30s, 500ms.
fn duration_rule(field: &str) -> kube::core::Rule {
    kube::core::Rule::new(r"self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')").message(
        kube::core::Message::Message(format!(
            "{field} must be a duration such as 30s, 5m or 1h30m (units: ms, s, m, h)"
        )),
    )
}

/// A CEL rule for a digest field: sha256:<64 lowercase hex digits>, the form
/// wasmplug writes and OCI registries use.
pub(crate) fn digest_rule() -> kube::core::Rule {
    kube::core::Rule::new("self.matches('^sha256:[a-f0-9]{64}$')")
        .message("digest must be sha256: followed by 64 lowercase hex digits")
}

/// A CEL rule for format keys; the same syntax the plugin manifest's `[format].key`
/// has (see [`crate::is_valid_format_key`]).
fn format_key_rule(field: &str) -> kube::core::Rule {
    kube::core::Rule::new(format!("self.matches('{}')", crate::FORMAT_KEY_PATTERN)).message(
        kube::core::Message::Message(format!(
            "{field} must be a format key: lowercase letters, digits and single hyphens, \
         starting and ending with a letter or digit, e.g. npm or unity-package"
        )),
    )
}

fn default_enabled() -> bool {
    true
}

fn default_fetch_timeout() -> Duration {
    "60s".parse().expect("60s is a duration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_accepts_the_documented_suffixes() {
        assert_eq!(parse_memory("4096"), Some(4096));
        assert_eq!(parse_memory("32Ki"), Some(32 << 10));
        assert_eq!(parse_memory("64Mi"), Some(64 << 20));
        assert_eq!(parse_memory("1Gi"), Some(1 << 30));
    }

    #[test]
    fn memory_rejects_other_forms() {
        for text in ["", "Mi", "32M", "1.5Gi", "-1", "64mi", "99999999999999999999Gi"] {
            assert_eq!(parse_memory(text), None, "{text:?}");
        }
    }

    #[test]
    fn source_kind_requires_exactly_one() {
        let builtin = BuiltinSource { format: "npm".into() };
        let local = LocalSource { path: "/plugins/unity".into() };
        assert_eq!(Source::default().kind(), None);

        let one = Source { builtin: Some(builtin.clone()), ..Source::default() };
        assert_eq!(one.kind().map(|kind| kind.name()), Some("builtin"));

        let two = Source { builtin: Some(builtin), local: Some(local), ..Source::default() };
        assert_eq!(two.kind(), None);
    }
}
