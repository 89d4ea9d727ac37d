//! `FormatHost`: what one host serves, written by that host alone and read by
//! the operator, which rolls every host's record up into each FormatPlugin's
//! `status.hosts` and `Serving` condition.
//!
//! One small object per host (named after its pod, owned by the pod so that it
//! goes with it) rather than entries in the FormatPlugins themselves: a host
//! needs no write access to any FormatPlugin, and the chart's admission policy
//! can let each host write exactly one object, its own (docs/architecture.md,
//! "Host records").

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Longest message a record carries per format; longer ones are cut.
pub const MAX_HOST_MESSAGE: usize = 1024;

/// Most formats one record lists.
pub const MAX_HOST_FORMATS: usize = 512;

/// What one wasmplug host serves, as its `GET /v1/formats` says, for the
/// operator and for `kubectl get formathosts`.
// clippy reads the repeated `type_ = "string"` of the printer columns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "wasmplug.dev",
    version = "v1alpha1",
    kind = "FormatHost",
    namespaced,
    shortname = "fh",
    category = "wasmplug",
    derive = "PartialEq",
    doc = "FormatHost reports what one wasmplug host serves: every format it knows, the \
           version and its state. Each host writes only its own record, named after its pod \
           and removed with it; the operator rolls the records up into each FormatPlugin's \
           status.hosts and Serving condition.",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node", description = "The node the host runs on"),
    printcolumn(
        name = "Formats",
        type_ = "string",
        json_path = ".spec.summary",
        description = "How many formats the host knows, and how many serve"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct FormatHostSpec {
    /// The pod the host runs in. A record with a pod counts only while that pod
    /// exists and is Ready; one without (a host run outside a pod) counts until
    /// it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodReference>,

    /// The node the host runs on, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub node: Option<String>,

    /// The namespace whose FormatPlugins the host follows; unset: every
    /// namespace. A FormatPlugin counts only the hosts that follow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub follows: Option<String>,

    /// "<serving>/<known> formats serving", for kubectl get.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub summary: String,

    /// Every format the host knows, by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["key".into()]))]
    pub formats: Vec<HostFormat>,
}

/// The pod a host runs in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodReference {
    /// The pod's name (also the record's name).
    #[schemars(length(max = 253))]
    pub name: String,
    /// The pod's UID: a pod of the same name that replaced it is another host.
    #[schemars(length(max = 64))]
    pub uid: String,
}

/// One format as a host serves it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostFormat {
    /// The format key.
    #[schemars(length(max = 63))]
    pub key: String,

    /// SHA-256 of the plugin.wasm serving it, as sha256:<64 hex digits>; unset
    /// for a builtin format, or when nothing serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 71))]
    pub digest: Option<String>,

    /// Whether it is a builtin format (compiled into the host).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin: bool,

    /// active, disabled, failed (never loaded), quarantined or changing-hands,
    /// as GET /v1/formats says.
    #[schemars(length(max = 32))]
    pub state: String,

    /// Why it is not serving, or why the last attempt to load a new version
    /// failed (the version in digest may still be serving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,

    /// The plugin.wasm digest whose load failed, when message says why a load
    /// failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 71))]
    pub failed_digest: Option<String>,

    /// Whether the host tries that load again by itself (a download failed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retrying: bool,

    /// When the digest, state or message last changed.
    pub since: Time,
}

impl HostFormat {
    /// The state a serving format reports.
    pub const ACTIVE: &str = "active";
    /// The state of a format its FormatPlugin disabled.
    pub const DISABLED: &str = "disabled";
    /// The state of a format quarantined for repeated faults.
    pub const QUARANTINED: &str = "quarantined";
}
