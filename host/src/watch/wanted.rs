//! What each format key should serve, decided from the FormatPlugins a host
//! sees: the serving rule of PRODUCT.md, pure (objects in, wanted state out).
//!
//! For each key, its owner (`wasmplug_crds::ownership`) among the objects whose
//! status names something to serve: `status.artifact` (a plugin in the store)
//! or, without an artifact, the builtin format `status.plugin.formatKey`. The
//! operator replaces `status.artifact` only with a version that passed
//! validation, so a failed update keeps the last good version serving.
//! `spec.enabled` and `spec.limits` apply as soon as the host sees them.

use std::collections::BTreeMap;

use kube::ResourceExt;
use wasmplug_crds::conditions::{ConditionType, Reason};
use wasmplug_crds::{Artifact, FormatPlugin, ownership};

use crate::builtin;
use crate::plugin::ResourceRequest;
use crate::runtime::requested_by;

/// What one format key should serve.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Wanted {
    /// `namespace/name` of the FormatPlugin that owns the key.
    pub owner: String,
    pub what: What,
    pub enabled: bool,
    pub limits: ResourceRequest,
    /// The owner's [`RESET_QUARANTINE_ANNOTATION`]: a new value ends a quarantine.
    pub quarantine_reset: Option<String>,
}

/// Setting this annotation on a FormatPlugin to a new value (a timestamp, say)
/// ends its format's quarantine on every host: `kubectl annotate fp/<name>
/// wasmplug.dev/reset-quarantine="$(date +%s)" --overwrite`.
pub const RESET_QUARANTINE_ANNOTATION: &str = "wasmplug.dev/reset-quarantine";

impl Wanted {
    /// Whether `self` and `other` load the same thing (they may differ in
    /// whether it is enabled, which needs no load).
    pub fn same_load(&self, other: &Wanted) -> bool {
        self.what == other.what && self.limits == other.limits && self.owner == other.owner
    }

    /// The plugin.wasm digest it loads (`None` for a builtin).
    pub fn digest(&self) -> Option<crate::plugin::Digest> {
        match &self.what {
            What::Builtin => None,
            What::Artifact(artifact) => artifact.digest.parse().ok(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum What {
    Builtin,
    Artifact(Box<Artifact>),
}

/// For every format key, what its owner asks to serve.
pub(super) fn wanted(plugins: &[FormatPlugin]) -> BTreeMap<String, Wanted> {
    let servable: Vec<(&FormatPlugin, What)> =
        plugins.iter().filter_map(|plugin| Some((plugin, what_to_serve(plugin)?))).collect();
    let mut wanted = BTreeMap::new();
    for (plugin, _) in &servable {
        let Some(key) = plugin.claimed_format_key() else { continue };
        if wanted.contains_key(key) {
            continue;
        }
        let Some(owner) = ownership::owner_of(key, servable.iter().map(|(plugin, _)| *plugin)) else { continue };
        let Some((_, what)) = servable.iter().find(|(plugin, _)| std::ptr::eq(*plugin, owner)) else { continue };
        wanted.insert(
            key.to_owned(),
            Wanted {
                owner: owner.qualified_name(),
                what: what.clone(),
                enabled: owner.spec.enabled,
                limits: requested_by(owner),
                quarantine_reset: owner.annotations().get(RESET_QUARANTINE_ANNOTATION).cloned(),
            },
        );
    }
    wanted
}

/// The keys that live FormatPlugins in line to serve them declare
/// (spec.formatKey, a builtin's format) or claim: when one of them loses its
/// owner, another is about to take it over, so the key is changing hands rather
/// than unknown. In line are objects not reconciled yet and those waiting for
/// the key (FormatConflict); one refused for another reason (an invalid
/// package, a namespace that may not publish) is not about to serve anything.
pub(super) fn declared_keys(plugins: &[FormatPlugin]) -> std::collections::BTreeSet<String> {
    let in_line = |plugin: &&FormatPlugin| match plugin.condition(ConditionType::Ready) {
        None => true,
        Some(ready) => ready.status == "True" || ready.reason == Reason::FormatConflict.as_str(),
    };
    plugins
        .iter()
        .filter(|plugin| plugin.metadata.deletion_timestamp.is_none())
        .filter(in_line)
        .flat_map(|plugin| [plugin.spec.declared_format_key(), plugin.claimed_format_key()])
        .flatten()
        .map(str::to_owned)
        .collect()
}

fn what_to_serve(plugin: &FormatPlugin) -> Option<What> {
    let status = plugin.status.as_ref()?;
    let key = plugin.claimed_format_key()?;
    match &status.artifact {
        Some(artifact) => Some(What::Artifact(Box::new(artifact.clone()))),
        None => builtin::is_builtin(key).then_some(What::Builtin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, format: &str, ready: Option<(&str, &str)>) -> FormatPlugin {
        let conditions: Vec<serde_json::Value> = ready
            .map(|(status, reason)| {
                serde_json::json!({"type": "Ready", "status": status, "reason": reason, "message": "",
                    "lastTransitionTime": "2026-11-29T00:00:00Z"})
            })
            .into_iter()
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "wasmplug.dev/v1alpha1",
            "kind": "FormatPlugin",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"source": {"builtin": {"format": format}}},
            "status": {"conditions": conditions},
        }))
        .expect("a FormatPlugin")
    }

    #[test]
    fn only_objects_in_line_for_a_key_keep_it_changing_hands() {
        let mut going = plugin("going", "nuget", Some(("True", "Succeeded")));
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let plugins = [
            plugin("waiting", "npm", Some(("False", "FormatConflict"))),
            plugin("new", "maven", None),
            plugin("refused", "pypi", Some(("False", "NamespaceNotAllowed"))),
            plugin("broken", "cargo", Some(("False", "ValidationFailed"))),
            going,
        ];
        let keys: Vec<String> = declared_keys(&plugins).into_iter().collect();
        assert_eq!(keys, ["maven", "npm"]);
    }
}
