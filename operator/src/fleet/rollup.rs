//! How a FormatPlugin is served across the hosts, from their records: pure
//! (a FormatPlugin and the live hosts' records in, `status.hosts`, the Serving
//! condition and the Events to record out).
//!
//! A host serves a FormatPlugin as asked when its entry for the format key has
//! the published plugin.wasm digest (`status.artifact`; for a builtin source
//! the builtin) in the state the spec asks for: active, or disabled when
//! `spec.enabled` is false. Otherwise it failed (it reports that a load of the
//! published version failed, or it never loaded the key), quarantined the
//! published version, or has not caught up yet. While the operator has not
//! published the current generation, Serving is Unknown: hosts serving the
//! previous one say nothing about the spec as applied.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use wasmplug_crds::conditions::{ConditionType, Reason};
use wasmplug_crds::{FormatHost, FormatPlugin, HostFormat, HostReport, HostsStatus};

use crate::status::Notice;

/// What the hosts say about one FormatPlugin.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollup {
    pub hosts: HostsStatus,
    /// The Serving condition's status: "True", "False" or "Unknown".
    pub status: &'static str,
    pub reason: Reason,
    pub message: String,
}

/// How one host stands with the published version, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    Failed,
    Quarantined,
    Behind,
    Serving,
}

/// The rollup of `plugin` over `hosts` (the live hosts' records), or `None`
/// when the plugin has nothing published for hosts to serve.
pub fn rollup(plugin: &FormatPlugin, hosts: &[&FormatHost]) -> Option<Rollup> {
    let status = plugin.status.as_ref()?;
    let info = status.plugin.as_ref()?;
    let wanted = status.artifact.as_ref().map(|artifact| artifact.digest.as_str());
    let namespace = plugin.namespace().unwrap_or_default();
    let expected: Vec<&FormatHost> =
        hosts.iter().copied().filter(|host| host.spec.follows.as_deref().is_none_or(|ns| ns == namespace)).collect();
    let mut standings: Vec<(Standing, HostReport)> = expected
        .iter()
        .map(|host| {
            let entry = host.spec.formats.iter().find(|format| format.key == info.format_key);
            (standing(entry, wanted, plugin.spec.enabled), report(&host.name_any(), entry))
        })
        .collect();
    standings.sort_by(|a, b| (a.0, &a.1.host).cmp(&(b.0, &b.1.host)));
    let serving = standings.iter().filter(|(standing, _)| *standing == Standing::Serving).count();
    let total = standings.len();
    let version = match wanted {
        Some(digest) => format!("{} {} ({digest})", info.name, info.version),
        None => format!("builtin format {}", info.format_key),
    };
    let worst = standings.first().map(|(standing, _)| *standing);
    let named = |of: Standing| -> String {
        let hosts: Vec<String> = standings
            .iter()
            .filter(|(standing, _)| *standing == of)
            .take(3)
            .map(|(_, report)| match &report.message {
                Some(message) => format!("{}: {message}", report.host),
                None => format!("{} ({})", report.host, report.digest.as_deref().unwrap_or(&report.state)),
            })
            .collect();
        let more = standings.iter().filter(|(standing, _)| *standing == of).count().saturating_sub(hosts.len());
        let more = if more > 0 { format!("; and {more} more") } else { String::new() };
        format!("{}{more}", hosts.join("; "))
    };
    let count = |of: Standing| standings.iter().filter(|(standing, _)| *standing == of).count();
    let (condition, reason, message) = match worst {
        None => ("Unknown", Reason::NoHosts, format!("no ready host follows namespace {namespace}")),
        Some(Standing::Serving) if plugin.spec.enabled => {
            ("True", Reason::AllHostsServing, format!("all {total} hosts serve {version}"))
        }
        Some(Standing::Serving) => ("False", Reason::Disabled, format!("disabled on all {total} hosts")),
        Some(Standing::Failed) => (
            "False",
            Reason::LoadFailed,
            format!(
                "{} of {total} hosts failed to load {version}: {}",
                count(Standing::Failed),
                named(Standing::Failed)
            ),
        ),
        Some(Standing::Quarantined) => (
            "False",
            Reason::Quarantined,
            format!(
                "{} of {total} hosts quarantined {version} (repeated faults of the plugin): {}; a new version or the \
                 wasmplug.dev/reset-quarantine annotation ends it",
                count(Standing::Quarantined),
                named(Standing::Quarantined)
            ),
        ),
        Some(Standing::Behind) => (
            "False",
            Reason::Rollout,
            format!("{serving} of {total} hosts serve {version}; waiting for {}", named(Standing::Behind)),
        ),
    };
    // Until the operator has published the current generation, what hosts
    // serve says nothing about the spec as it is now.
    let (condition, reason, message) = match (status.observed_generation, plugin.metadata.generation) {
        (observed, Some(generation)) if observed != Some(generation) => (
            "Unknown",
            Reason::Rollout,
            format!(
                "generation {generation} is not published yet (see Ready); {serving} of {total} hosts serve {version}"
            ),
        ),
        _ => (condition, reason, message),
    };
    let not_serving = standings
        .into_iter()
        .filter(|(standing, _)| *standing != Standing::Serving)
        .map(|(_, report)| report)
        .take(HostsStatus::MAX_LISTED)
        .collect();
    let hosts = HostsStatus {
        expected: i32::try_from(total).unwrap_or(i32::MAX),
        serving: i32::try_from(serving).unwrap_or(i32::MAX),
        summary: format!("{serving}/{total}"),
        not_serving,
    };
    Some(Rollup { hosts, status: condition, reason, message })
}

fn standing(entry: Option<&HostFormat>, wanted: Option<&str>, enabled: bool) -> Standing {
    let Some(entry) = entry else { return Standing::Behind };
    let has_wanted = entry.digest.as_deref() == wanted && entry.builtin == wanted.is_none();
    let state = if enabled { HostFormat::ACTIVE } else { HostFormat::DISABLED };
    if has_wanted && entry.state == state {
        Standing::Serving
    } else if has_wanted && entry.state == HostFormat::QUARANTINED {
        Standing::Quarantined
    } else if entry.state == "failed"
        || (!has_wanted && entry.failed_digest.is_some() && entry.failed_digest.as_deref() == wanted)
    {
        Standing::Failed
    } else {
        Standing::Behind
    }
}

fn report(host: &str, entry: Option<&HostFormat>) -> HostReport {
    match entry {
        Some(entry) => HostReport {
            host: host.to_owned(),
            digest: entry.digest.clone(),
            state: entry.state.clone(),
            message: entry.message.as_ref().map(|m| if entry.retrying { format!("{m} (retrying)") } else { m.clone() }),
        },
        None => HostReport {
            host: host.to_owned(),
            digest: None,
            state: "missing".into(),
            message: Some("not loaded yet".into()),
        },
    }
}

/// The Events a change of the Serving condition from `previous` to `next`
/// leaves: a failure or quarantine when one starts, a recovery when all hosts
/// serve again after one. A reason that holds leaves none.
pub fn notices(previous: Option<&Condition>, next: &Rollup) -> Vec<Notice> {
    let was = previous.map(|c| c.reason.as_str());
    if was == Some(next.reason.as_str()) {
        return Vec::new();
    }
    let notice = match next.reason {
        Reason::LoadFailed | Reason::Quarantined => {
            Notice { type_: EventType::Warning, reason: next.reason, note: next.message.clone() }
        }
        Reason::AllHostsServing | Reason::Disabled
            if was.is_some_and(|was| was == Reason::LoadFailed.as_str() || was == Reason::Quarantined.as_str()) =>
        {
            Notice { type_: EventType::Normal, reason: Reason::Recovered, note: next.message.clone() }
        }
        _ => return Vec::new(),
    };
    vec![notice]
}

/// The Serving condition of `plugin`, if it has one.
pub fn serving_condition(plugin: &FormatPlugin) -> Option<&Condition> {
    plugin.condition(ConditionType::Serving)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use wasmplug_crds::{Artifact, Capabilities, FormatHostSpec, FormatPluginSpec, FormatPluginStatus, PluginInfo};

    use super::*;

    const NEW: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const OLD: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn plugin(enabled: bool) -> FormatPlugin {
        let spec: FormatPluginSpec = serde_json::from_value(serde_json::json!({
            "source": {"url": {"url": "https://example.test/p.zip"}}, "enabled": enabled
        }))
        .expect("spec");
        let mut plugin = FormatPlugin::new("p", spec);
        plugin.metadata.namespace = Some("team".into());
        plugin.status = Some(FormatPluginStatus {
            artifact: Some(Artifact {
                digest: NEW.into(),
                path: Artifact::path_for(NEW),
                revision: "r".into(),
                size: 1,
                url: None,
                manifest: None,
                last_update_time: Time(Timestamp::UNIX_EPOCH),
                precompiled: None,
                signature: None,
            }),
            plugin: Some(PluginInfo {
                name: "p".into(),
                version: "2.0.0".into(),
                format_key: "p".into(),
                display_name: None,
                extensions: vec![],
                capabilities: Capabilities::default(),
            }),
            ..FormatPluginStatus::default()
        });
        plugin
    }

    fn entry(digest: &str, state: &str) -> HostFormat {
        HostFormat {
            key: "p".into(),
            digest: Some(digest.into()),
            builtin: false,
            state: state.into(),
            message: None,
            failed_digest: None,
            retrying: false,
            since: Time(Timestamp::UNIX_EPOCH),
        }
    }

    fn host(name: &str, formats: Vec<HostFormat>) -> FormatHost {
        FormatHost::new(name, FormatHostSpec { formats, ..FormatHostSpec::default() })
    }

    fn roll(plugin: &FormatPlugin, hosts: &[FormatHost]) -> Rollup {
        rollup(plugin, &hosts.iter().collect::<Vec<_>>()).expect("a published plugin has a rollup")
    }

    #[test]
    fn all_hosts_serving_the_published_digest() {
        let hosts = [host("a", vec![entry(NEW, "active")]), host("b", vec![entry(NEW, "active")])];
        let rollup = roll(&plugin(true), &hosts);
        assert_eq!(
            (rollup.status, rollup.reason, rollup.hosts.summary.as_str()),
            ("True", Reason::AllHostsServing, "2/2")
        );
        assert!(rollup.hosts.not_serving.is_empty());
    }

    #[test]
    fn a_host_that_failed_to_load_the_published_digest_is_named_first() {
        let failed = HostFormat {
            message: Some("failed to load: digest mismatch".into()),
            failed_digest: Some(NEW.into()),
            ..entry(OLD, "active")
        };
        let hosts =
            [host("a", vec![entry(NEW, "active")]), host("b", vec![failed]), host("c", vec![entry(OLD, "active")])];
        let rollup = roll(&plugin(true), &hosts);
        assert_eq!((rollup.status, rollup.reason, rollup.hosts.summary.as_str()), ("False", Reason::LoadFailed, "1/3"));
        let listed: Vec<&str> = rollup.hosts.not_serving.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(listed, ["b", "c"]);
        assert!(rollup.message.contains("b: failed to load: digest mismatch"), "{}", rollup.message);
        assert_eq!(rollup.hosts.not_serving[0].digest.as_deref(), Some(OLD));
    }

    #[test]
    fn a_failure_of_an_older_version_is_not_held_against_the_new_one() {
        let stale =
            HostFormat { message: Some("old failure".into()), failed_digest: Some(OLD.into()), ..entry(OLD, "active") };
        let rollup = roll(&plugin(true), &[host("a", vec![stale])]);
        assert_eq!(rollup.reason, Reason::Rollout);
    }

    #[test]
    fn quarantine_missing_hosts_and_other_namespaces() {
        let mut elsewhere = host("z", vec![]);
        elsewhere.spec.follows = Some("other".into());
        let hosts = [host("a", vec![entry(NEW, "quarantined")]), host("b", vec![]), elsewhere];
        let rollup = roll(&plugin(true), &hosts);
        assert_eq!((rollup.reason, rollup.hosts.summary.as_str()), (Reason::Quarantined, "0/2"));
        assert_eq!(rollup.hosts.not_serving[1].state, "missing");
        let none = roll(&plugin(true), &[]);
        assert_eq!((none.status, none.reason), ("Unknown", Reason::NoHosts));
    }

    #[test]
    fn a_disabled_plugin_is_served_as_asked_when_every_host_disabled_it() {
        let hosts = [host("a", vec![entry(NEW, "disabled")]), host("b", vec![entry(NEW, "active")])];
        assert_eq!(roll(&plugin(false), &hosts).reason, Reason::Rollout);
        let rollup = roll(&plugin(false), &hosts[..1]);
        assert_eq!((rollup.status, rollup.reason), ("False", Reason::Disabled));
    }

    #[test]
    fn serving_is_unknown_until_the_current_generation_is_published() {
        let mut plugin = plugin(true);
        plugin.metadata.generation = Some(3);
        plugin.status.as_mut().expect("status").observed_generation = Some(2);
        let rollup = roll(&plugin, &[host("a", vec![entry(NEW, "active")])]);
        assert_eq!((rollup.status, rollup.reason, rollup.hosts.summary.as_str()), ("Unknown", Reason::Rollout, "1/1"));
        assert!(rollup.message.starts_with("generation 3 is not published yet"), "{}", rollup.message);
    }

    #[test]
    fn events_on_failure_quarantine_and_recovery_only() {
        let condition = |reason: Reason| Condition {
            type_: "Serving".into(),
            status: "False".into(),
            reason: reason.as_str().into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        };
        let serving = roll(&plugin(true), &[host("a", vec![entry(NEW, "active")])]);
        let failing = Rollup { reason: Reason::LoadFailed, ..serving.clone() };
        let reasons = |previous: Option<Reason>, next: &Rollup| -> Vec<Reason> {
            notices(previous.map(condition).as_ref(), next).into_iter().map(|n| n.reason).collect()
        };
        assert_eq!(reasons(None, &failing), [Reason::LoadFailed]);
        assert_eq!(reasons(Some(Reason::LoadFailed), &failing), []);
        assert_eq!(reasons(Some(Reason::LoadFailed), &serving), [Reason::Recovered]);
        assert_eq!(reasons(Some(Reason::Rollout), &serving), []);
        assert_eq!(reasons(None, &serving), []);
    }
}
