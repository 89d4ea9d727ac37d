//! Who owns a format key when several FormatPlugins claim it: the one rule the
//! operator (which reports conflicts) and hosts (which serve one handler per key)
//! both apply.
//!
//! An object claims the key in its `status.plugin.formatKey` (the operator writes it
//! only once the plugin is published). Among claimants the oldest object wins: the
//! earliest `creationTimestamp`, then namespace and name. A later object for an
//! owned key gets Ready=False with reason FormatConflict naming the owner.

use std::cmp::Ordering;

use kube::ResourceExt;

use crate::FormatPlugin;

impl FormatPlugin {
    /// The format key this object's published status claims, if any.
    pub fn claimed_format_key(&self) -> Option<&str> {
        self.status.as_ref()?.plugin.as_ref().map(|p| p.format_key.as_str())
    }

    /// Whether this object takes precedence over `other` for a key both claim.
    pub fn precedes(&self, other: &FormatPlugin) -> bool {
        claim_order(self, other) == Ordering::Less
    }

    /// `namespace/name`, as messages name an owner.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace().unwrap_or_default(), self.name_any())
    }
}

/// Oldest first; ties broken by namespace, then name.
pub fn claim_order(a: &FormatPlugin, b: &FormatPlugin) -> Ordering {
    let created = |p: &FormatPlugin| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.namespace().cmp(&b.namespace()))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// The owner of `key` among `plugins` (not being deleted), if any claims it.
pub fn owner_of<'a>(key: &str, plugins: impl IntoIterator<Item = &'a FormatPlugin>) -> Option<&'a FormatPlugin> {
    plugins
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && p.claimed_format_key() == Some(key))
        .min_by(|a, b| claim_order(a, b))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::{Capabilities, FormatPluginSpec, FormatPluginStatus, PluginInfo};

    fn claimant(name: &str, created_s: i64, key: &str) -> FormatPlugin {
        let spec: FormatPluginSpec =
            serde_json::from_value(serde_json::json!({"source": {"builtin": {"format": "npm"}}})).expect("spec");
        let mut plugin = FormatPlugin::new(name, spec);
        plugin.metadata.namespace = Some("ns".into());
        plugin.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created_s).expect("time")));
        plugin.status = Some(FormatPluginStatus {
            plugin: Some(PluginInfo {
                name: name.into(),
                version: "1.0.0".into(),
                format_key: key.into(),
                display_name: None,
                extensions: vec![],
                capabilities: Capabilities::default(),
            }),
            ..FormatPluginStatus::default()
        });
        plugin
    }

    #[test]
    fn the_oldest_claimant_owns_a_key() {
        let (old, young, other) =
            (claimant("b-old", 10, "npm"), claimant("a-young", 20, "npm"), claimant("c", 5, "pypi"));
        let all = [young.clone(), old.clone(), other.clone()];
        assert_eq!(owner_of("npm", &all).map(|p| p.name_any()), Some("b-old".into()));
        assert!(old.precedes(&young) && !young.precedes(&old));
        assert_eq!(owner_of("maven", &all), None);
    }

    #[test]
    fn equal_ages_are_ordered_by_name_and_deleted_objects_own_nothing() {
        let (a, b) = (claimant("a", 10, "npm"), claimant("b", 10, "npm"));
        assert!(a.precedes(&b));
        let mut deleted = a.clone();
        deleted.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(30).expect("time")));
        assert_eq!(owner_of("npm", [&deleted, &b]).map(|p| p.name_any()), Some("b".into()));
    }
}
