//! Who owns a format key when several FormatPlugins claim it: the one rule the
//! operator (which reports conflicts) and hosts (which serve one handler per key)
//! both apply.
//!
//! An object claims the key in its `status.plugin.formatKey` (the operator writes it
//! only once the plugin is published). The first object to claim a key keeps it: a
//! later one gets Ready=False with reason FormatConflict naming the owner
//! ([`may_claim`]). Only when two objects were published at once (neither saw the
//! other) do both claim it; then the older one wins — the earliest
//! `creationTimestamp`, then namespace and name ([`owner_of`]) — hosts serve that
//! one, and the operator withdraws the other's claim at its next reconcile.
//! (`creationTimestamp` has one-second resolution, so age alone cannot decide who
//! came first.)

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

/// Whether `plugin` may claim `key`, given every object (`plugin` among them or
/// not): `Err(owner)` when another object holds the key — any holder if `plugin`
/// does not hold it yet, or one that wins the tie if both hold it.
pub fn may_claim<'a>(
    plugin: &FormatPlugin,
    key: &str,
    all: impl IntoIterator<Item = &'a FormatPlugin>,
) -> Result<(), &'a FormatPlugin> {
    let others = all.into_iter().filter(|other| other.metadata.uid != plugin.metadata.uid);
    let Some(holder) = owner_of(key, others) else { return Ok(()) };
    let holds_it = plugin.claimed_format_key() == Some(key);
    if !holds_it || holder.precedes(plugin) { Err(holder) } else { Ok(()) }
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
    fn the_first_to_claim_keeps_the_key_whatever_the_ages() {
        let mut holder = claimant("z-holder", 10, "npm");
        holder.metadata.uid = Some("holder".into());
        let mut newcomer = claimant("a-newcomer", 10, "npm");
        newcomer.metadata.uid = Some("newcomer".into());
        newcomer.status = None;
        let all = [holder.clone(), newcomer.clone()];
        // Same second, and "a-newcomer" sorts first, but the key is already held.
        assert_eq!(may_claim(&newcomer, "npm", &all).map_err(|o| o.name_any()), Err("z-holder".into()));
        assert_eq!(may_claim(&holder, "npm", &all).map_err(|o| o.name_any()), Ok(()));
        assert_eq!(may_claim(&newcomer, "pypi", &all).map_err(|o| o.name_any()), Ok(()));

        // Published at once: both hold it, and the tie is decided by age, then name.
        let mut racer = claimant("a-racer", 10, "npm");
        racer.metadata.uid = Some("racer".into());
        let all = [holder.clone(), racer.clone()];
        assert_eq!(may_claim(&holder, "npm", &all).map_err(|o| o.name_any()), Err("a-racer".into()));
        assert_eq!(may_claim(&racer, "npm", &all).map_err(|o| o.name_any()), Ok(()));
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
