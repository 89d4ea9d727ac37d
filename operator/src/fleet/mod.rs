//! The fleet view: every host's `FormatHost` record rolled up into each
//! FormatPlugin's `status.hosts` and `Serving` condition ([`rollup`] decides
//! what they say), with an Event when hosts start failing, quarantine a
//! version, or recover.
//!
//! It runs on the leader, beside the controller, and writes only its own part
//! of the status (server-side apply with its own field manager, so the
//! reconciler's writes and these never undo each other). A host record counts
//! while the pod it names exists and is Ready (a record without a pod counts
//! until it is deleted). Nothing is written when nothing changed, and Events
//! about one FormatPlugin come at most once per reason per minute.

pub mod rollup;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::time::Instant;
use wasmplug_crds::conditions::{ConditionType, Reason};
use wasmplug_crds::{FormatHost, FormatPlugin, HostsStatus};

use crate::events;
use crate::metrics::Metrics;
use crate::status::{self, Conditions};

/// The field manager of the status fields the rollup writes.
pub const FIELD_MANAGER: &str = "wasmplug-operator-hosts";

/// Changes that come within this long of each other are rolled up together.
const SETTLE: Duration = Duration::from_millis(100);
/// A rollup whose writes failed is tried again after this long.
const RETRY: Duration = Duration::from_secs(2);
/// At most one Event per FormatPlugin and reason this often.
const EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// What [`run`] needs besides the client.
#[derive(Debug)]
pub struct Settings {
    /// The namespace of the FormatPlugins the operator reconciles, or all.
    pub plugins_namespace: Option<String>,
    /// The namespace the hosts run in and keep their records in.
    pub hosts_namespace: String,
    /// Who Events are reported by (the controller's name and this replica).
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
}

/// The status fields the rollup owns: `hosts` and the Serving condition.
type Part = (Option<HostsStatus>, Option<Condition>);

/// Rolls host records up into FormatPlugins until the watches end (they retry
/// with backoff, so in practice until the task is aborted).
pub async fn run(client: Client, settings: Settings) {
    let resource = ApiResource::erase::<FormatPlugin>(&());
    let plugins_writer = reflector::store::Writer::new(resource);
    let plugins = plugins_writer.as_reader();
    let plugin_api = wasmplug_host::watch::api(client.clone(), settings.plugins_namespace.as_deref());
    let (hosts, hosts_writer) = reflector::store::<FormatHost>();
    let host_api: Api<FormatHost> = Api::namespaced(client.clone(), &settings.hosts_namespace);
    let (pods, pods_writer) = reflector::store::<Pod>();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &settings.hosts_namespace);
    let config = || watcher::Config::default().any_semantic();
    let changes = futures::stream::select_all([
        changes(reflector::reflector(plugins_writer, watcher::watcher(plugin_api, config())), 0).boxed(),
        changes(reflector::reflector(hosts_writer, watcher::watcher(host_api, config())), 1).boxed(),
        changes(reflector::reflector(pods_writer, watcher::watcher(pod_api, config())), 2).boxed(),
    ]);
    futures::pin_mut!(changes);
    let mut rollups = Rollups {
        client: client.clone(),
        recorder: Recorder::new(client, settings.reporter),
        metrics: settings.metrics,
        written: HashMap::new(),
        events: EventLimiter::default(),
    };
    let mut listed = [false; 3];
    let mut due: Option<Instant> = None;
    loop {
        tokio::select! {
            change = changes.next() => match change {
                None => break,
                Some(Ok(listing)) => {
                    if let Some(stream) = listing {
                        listed[stream] = true;
                    }
                    due.get_or_insert_with(|| Instant::now() + SETTLE);
                }
                Some(Err(error)) => tracing::warn!(%error, "a watch of the host rollup failed; retrying"),
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() && listed.iter().all(|l| *l) => {
                due = None;
                if !rollups.update(&plugins, &hosts, &pods).await {
                    due = Some(Instant::now() + RETRY);
                }
            }
        }
    }
}

/// Each change of a watch, as `Some(stream)` when its (re)listing is done.
fn changes<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    stream: usize,
) -> impl Stream<Item = Result<Option<usize>, watcher::Error>> + Send {
    events.default_backoff().map(move |event| {
        event.map(|event| match event {
            watcher::Event::InitDone => Some(stream),
            _ => None,
        })
    })
}

/// The rollup's memory: what it last wrote and when it last recorded each
/// Event, per FormatPlugin (by UID).
struct Rollups {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    written: HashMap<String, Part>,
    events: EventLimiter,
}

/// When each FormatPlugin (by UID) last had an Event of each reason: at most
/// one per [`EVENT_INTERVAL`].
#[derive(Debug, Default)]
struct EventLimiter {
    last: HashMap<(String, Reason), Instant>,
}

impl EventLimiter {
    /// Whether an Event of `reason` about `uid` may go out `now` (and if so,
    /// notes that it did).
    fn allows(&mut self, uid: &str, reason: Reason, now: Instant) -> bool {
        let key = (uid.to_owned(), reason);
        if self.last.get(&key).is_some_and(|last| now.duration_since(*last) < EVENT_INTERVAL) {
            return false;
        }
        self.last.insert(key, now);
        true
    }

    /// Forgets the FormatPlugins not in `seen`.
    fn retain(&mut self, seen: &HashSet<String>) {
        self.last.retain(|(uid, _), _| seen.contains(uid));
    }
}

impl Rollups {
    /// Rolls the live hosts up into every FormatPlugin, writing what changed;
    /// says whether every write succeeded.
    async fn update(&mut self, plugins: &Store<DynamicObject>, hosts: &Store<FormatHost>, pods: &Store<Pod>) -> bool {
        let hosts = hosts.state();
        let pods = pods.state();
        let live: Vec<&FormatHost> = hosts.iter().map(Arc::as_ref).filter(|host| is_live(host, &pods)).collect();
        let mut seen = HashSet::new();
        let mut all_written = true;
        for object in plugins.state() {
            let Ok(plugin) = DynamicObject::clone(&object).try_parse::<FormatPlugin>() else { continue };
            if plugin.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let uid = plugin.uid().unwrap_or_default();
            seen.insert(uid.clone());
            let rollup = rollup::rollup(&plugin, &live);
            let part = part_of(&plugin, rollup.as_ref());
            let current =
                (plugin.status.as_ref().and_then(|s| s.hosts.clone()), rollup::serving_condition(&plugin).cloned());
            if part == current || self.written.get(&uid) == Some(&part) {
                continue;
            }
            if let Err(error) = write(&self.client, &plugin, &part).await {
                tracing::warn!(
                    namespace = plugin.namespace(), name = plugin.name_any(), %error, retry_in = ?RETRY,
                    "failed to write which hosts serve the plugin"
                );
                all_written = false;
                continue;
            }
            self.metrics.rollup_written();
            self.written.insert(uid.clone(), part);
            if let Some(rollup) = &rollup {
                for notice in rollup::notices(rollup::serving_condition(&plugin), rollup) {
                    self.record(&plugin, &uid, notice).await;
                }
            }
        }
        self.written.retain(|uid, _| seen.contains(uid));
        self.events.retain(&seen);
        all_written
    }

    /// Records `notice` about `plugin` (and logs it), unless an Event of the
    /// same reason went out within [`EVENT_INTERVAL`].
    async fn record(&mut self, plugin: &FormatPlugin, uid: &str, notice: status::Notice) {
        let regarding = plugin.object_ref(&());
        events::log(&regarding, &notice);
        if self.events.allows(uid, notice.reason, Instant::now()) {
            events::publish(&self.recorder, &regarding, &notice, "Serve").await;
        }
    }
}

/// Whether a host's record counts: it names no pod, or its pod (the same one,
/// by UID) exists, is not being deleted and is Ready.
fn is_live(host: &FormatHost, pods: &[Arc<Pod>]) -> bool {
    let Some(reference) = &host.spec.pod else { return true };
    pods.iter().any(|pod| {
        pod.metadata.name.as_deref() == Some(reference.name.as_str())
            && pod.metadata.uid.as_deref() == Some(reference.uid.as_str())
            && pod.metadata.deletion_timestamp.is_none()
            && pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
}

/// The rollup's part of `plugin`'s status: `None`s when nothing is published.
fn part_of(plugin: &FormatPlugin, rollup: Option<&rollup::Rollup>) -> Part {
    let Some(rollup) = rollup else { return (None, None) };
    let mut list: Vec<Condition> = rollup::serving_condition(plugin).cloned().into_iter().collect();
    let mut conditions =
        Conditions { list: &mut list, generation: plugin.metadata.generation, now: Time(Timestamp::now()) };
    conditions.set_status(ConditionType::Serving, rollup.status, rollup.reason, &rollup.message);
    (Some(rollup.hosts.clone()), list.pop())
}

/// Writes `part` by server-side apply with the rollup's field manager; `None`s
/// remove what it wrote before.
async fn write(client: &Client, plugin: &FormatPlugin, part: &Part) -> Result<(), kube::Error> {
    let namespace = plugin.namespace().unwrap_or_default();
    let api = wasmplug_host::watch::api(client.clone(), Some(&namespace));
    let (hosts, condition) = part;
    let mut status = serde_json::Map::new();
    if let Some(hosts) = hosts {
        status.insert("hosts".into(), serde_json::to_value(hosts).unwrap_or_default());
    }
    if let Some(condition) = condition {
        status.insert("conditions".into(), serde_json::json!([condition]));
    }
    let patch = serde_json::json!({"apiVersion": "wasmplug.dev/v1alpha1", "kind": "FormatPlugin", "status": status});
    api.patch_status(&plugin.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// `status` without the fields the rollup owns, for the reconciler, which
/// writes the rest.
pub fn without_rollup(mut status: wasmplug_crds::FormatPluginStatus) -> wasmplug_crds::FormatPluginStatus {
    status.hosts = None;
    status.conditions.retain(|c| c.type_ != ConditionType::Serving.as_str());
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_plugin_and_reason_a_minute() {
        let mut limiter = EventLimiter::default();
        let start = Instant::now();
        assert!(limiter.allows("a", Reason::LoadFailed, start));
        assert!(!limiter.allows("a", Reason::LoadFailed, start + Duration::from_secs(30)), "a flapping host");
        assert!(limiter.allows("a", Reason::Recovered, start + Duration::from_secs(30)), "another reason");
        assert!(limiter.allows("b", Reason::LoadFailed, start + Duration::from_secs(30)), "another plugin");
        assert!(limiter.allows("a", Reason::LoadFailed, start + EVENT_INTERVAL));
        limiter.retain(&HashSet::from(["b".to_owned()]));
        assert!(limiter.allows("a", Reason::Recovered, start + EVENT_INTERVAL), "a plugin that went is forgotten");
    }
}
