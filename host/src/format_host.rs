//! This host's `FormatHost` record: every format it knows, the version serving
//! and its state, written to the API server when that changes and only then.
//!
//! There is no heartbeat: a record names the host's pod and is owned by it, so
//! the pod's readiness (which the kubelet reports anyway) says whether the host
//! is alive, and the garbage collector removes the record with the pod. The
//! host deletes its record itself when it stops. Writes are server-side
//! applies of the whole record by one field manager; a failed write is tried
//! again with backoff, and the host serves on regardless.
//!
//! This module reads the registry and never changes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use wasmplug_crds::{FormatHost, FormatHostSpec, HostFormat, MAX_HOST_FORMATS, MAX_HOST_MESSAGE, PodReference};

use crate::registry::{Format, Origin, Registry, Snapshot, State};

/// The field manager of every record a host writes.
pub const FIELD_MANAGER: &str = "wasmplug-host";

/// Changes that come within this long of each other are written together.
const SETTLE: Duration = Duration::from_millis(50);
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Who this host is, as its record says.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The record's namespace (the host's own).
    pub namespace: String,
    /// The record's name: the host's pod name, or any name unique among hosts.
    pub name: String,
    /// The pod's UID, when the host runs in a pod: the record is then owned by
    /// the pod, and counts only while the pod is Ready.
    pub pod_uid: Option<String>,
    pub node: Option<String>,
    /// The namespace whose FormatPlugins the host follows; `None`: all.
    pub follows: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Writes of the record by result (`ok`, `error`): what a host costs the API
/// server (none while nothing changes).
#[derive(Debug, Default)]
pub struct RecordMetrics {
    writes: Family<ResultLabels, Counter>,
}

impl RecordMetrics {
    /// Registers the metrics in `registry` (under its prefix).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("record_writes", "Writes of this host's FormatHost record, by result", self.writes.clone());
    }

    fn count(&self, result: &'static str) {
        self.writes.get_or_create(&ResultLabels { result }).inc();
    }
}

/// Keeps this host's record in step with its registry until aborted.
pub async fn publish(api: Api<FormatHost>, identity: Identity, registry: Arc<Registry>, metrics: Arc<RecordMetrics>) {
    let mut since: HashMap<String, (Fingerprint, Time)> = HashMap::new();
    let mut written: Option<FormatHostSpec> = None;
    let mut failures = 0u32;
    loop {
        let spec = spec_of(&identity, &registry.snapshot(), &mut since);
        if written.as_ref() != Some(&spec) {
            match apply(&api, &identity, &spec).await {
                Ok(()) => {
                    metrics.count("ok");
                    tracing::debug!(record = identity.name, summary = spec.summary, "wrote this host's FormatHost");
                    written = Some(spec);
                    failures = 0;
                }
                Err(error) => {
                    metrics.count("error");
                    failures = failures.saturating_add(1);
                    let delay = FIRST_RETRY_DELAY.saturating_mul(1 << (failures - 1).min(5)).min(MAX_RETRY_DELAY);
                    tracing::warn!(
                        record = identity.name, %error, retry_in = ?delay,
                        "failed to write this host's FormatHost; FormatPlugins do not show what it serves until it is written"
                    );
                    tokio::select! {
                        () = registry.changed() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
        }
        registry.changed().await;
        tokio::time::sleep(SETTLE).await;
    }
}

/// Deletes this host's record (when it stops); an error is logged.
pub async fn withdraw(api: &Api<FormatHost>, identity: &Identity) {
    match api.delete(&identity.name, &DeleteParams::default()).await {
        Ok(_) => tracing::info!(record = identity.name, "deleted this host's FormatHost"),
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(error) => tracing::warn!(record = identity.name, %error, "failed to delete this host's FormatHost"),
    }
}

async fn apply(api: &Api<FormatHost>, identity: &Identity, spec: &FormatHostSpec) -> Result<(), kube::Error> {
    let mut record = FormatHost::new(&identity.name, spec.clone());
    record.metadata.namespace = Some(identity.namespace.clone());
    record.metadata.owner_references = identity.pod_uid.as_ref().map(|uid| {
        vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: identity.name.clone(),
            uid: uid.clone(),
            ..OwnerReference::default()
        }]
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&identity.name, &params, &Patch::Apply(&record)).await.map(drop)
}

/// What a record says about one format, apart from since when.
type Fingerprint = (Option<String>, &'static str, Option<String>, Option<String>, bool);

/// The record of `snapshot`; `since` keeps when each format's entry last
/// changed, and forgets formats that went.
fn spec_of(
    identity: &Identity,
    snapshot: &Snapshot,
    since: &mut HashMap<String, (Fingerprint, Time)>,
) -> FormatHostSpec {
    let now = Time(Timestamp::now());
    since.retain(|key, _| snapshot.get(key).is_some());
    let formats: Vec<HostFormat> = snapshot
        .formats()
        .take(MAX_HOST_FORMATS)
        .map(|format| {
            let fingerprint = fingerprint(format);
            let entry = since.entry(format.key.clone()).or_insert_with(|| (fingerprint.clone(), now.clone()));
            if entry.0 != fingerprint {
                *entry = (fingerprint.clone(), now.clone());
            }
            let (digest, state, message, failed_digest, retrying) = fingerprint;
            HostFormat {
                key: format.key.clone(),
                digest,
                builtin: format.origin == Origin::Builtin,
                state: state.to_owned(),
                message,
                failed_digest,
                retrying,
                since: entry.1.clone(),
            }
        })
        .collect();
    let serving = formats.iter().filter(|f| f.state == HostFormat::ACTIVE).count();
    FormatHostSpec {
        pod: identity.pod_uid.as_ref().map(|uid| PodReference { name: identity.name.clone(), uid: uid.clone() }),
        node: identity.node.clone(),
        follows: identity.follows.clone(),
        summary: format!("{serving}/{} serving", formats.len()),
        formats,
    }
}

fn fingerprint(format: &Format) -> Fingerprint {
    let state = format.state();
    let message = format.problem().map(|message| bounded(&message));
    let failed = format.failed_load.filter(|_| state != State::Quarantined);
    (
        format.digest.map(|d| d.to_string()),
        state.as_str(),
        message,
        failed.and_then(|f| f.digest).map(|d| d.to_string()),
        failed.is_some_and(|f| f.retrying),
    )
}

/// `message` cut to [`MAX_HOST_MESSAGE`] bytes at a character boundary.
fn bounded(message: &str) -> String {
    if message.len() <= MAX_HOST_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_HOST_MESSAGE - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            namespace: "ns".into(),
            name: "host-0".into(),
            pod_uid: Some("uid".into()),
            node: None,
            follows: None,
        }
    }

    #[test]
    fn a_record_lists_every_format_and_keeps_since_while_nothing_changes() {
        let registry = Registry::new();
        crate::builtin::install(&registry, &["npm".into(), "maven".into()], &Default::default()).expect("builtins");
        let mut since = HashMap::new();
        let first = spec_of(&identity(), &registry.snapshot(), &mut since);
        assert_eq!(first.summary, "2/2 serving");
        assert_eq!(first.pod, Some(PodReference { name: "host-0".into(), uid: "uid".into() }));
        assert!(first.formats.iter().all(|f| f.builtin && f.state == HostFormat::ACTIVE && f.digest.is_none()));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(spec_of(&identity(), &registry.snapshot(), &mut since), first, "nothing changed");
        registry.set_enabled("npm", false);
        let next = spec_of(&identity(), &registry.snapshot(), &mut since);
        let npm = next.formats.iter().find(|f| f.key == "npm").expect("npm is listed");
        assert_eq!(npm.state, HostFormat::DISABLED);
        assert!(npm.since.0 > first.formats[1].since.0, "since moves when the state does");
        assert_eq!(next.summary, "1/2 serving");
        registry.remove("npm");
        assert_eq!(spec_of(&identity(), &registry.snapshot(), &mut since).formats.len(), 1);
        assert_eq!(since.len(), 1, "a format that went is forgotten");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_HOST_MESSAGE);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_HOST_MESSAGE && cut.ends_with('…'), "{}", cut.len());
        assert_eq!(bounded("short"), "short");
    }
}
