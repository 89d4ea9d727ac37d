//! What a reconcile writes into `status`, and which Events it leaves: pure
//! functions from the previous status and the outcome of this reconcile.
//!
//! The rules (PRODUCT.md, "Status contract"; docs/architecture.md, "Status"):
//! - `observedGeneration` is always the generation just reconciled.
//! - `Ready` is True when the current spec is published (reason Succeeded, or
//!   Disabled when `spec.enabled` is false) and False with the failing step's reason
//!   otherwise. `Reconciling` and `Stalled` are present only while true.
//! - A failure keeps the last good `artifact` and `plugin`: hosts keep serving them,
//!   and the Ready message says so. Except a refusal of the object itself (its
//!   namespace may not publish): that withdraws them, so hosts stop serving.
//! - A condition's `lastTransitionTime` changes only when its status does, and an
//!   Event is emitted only on a transition, so re-applying an unchanged object
//!   changes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;
use wasmplug_crds::conditions::{ConditionType, Reason};
use wasmplug_crds::{Artifact, FormatPlugin, FormatPluginStatus, PluginInfo};

/// What this reconcile achieved.
// One value per reconcile; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The spec is published: a plugin artifact, or a builtin format (no artifact).
    Published { artifact: Option<Artifact>, plugin: PluginInfo },
    /// A step failed.
    Failed(Failure),
}

/// A failed step and what to tell the user.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub step: Step,
    pub reason: Reason,
    pub message: String,
    /// Retried with backoff (Reconciling) rather than waiting for a change (Stalled).
    pub transient: bool,
    /// Whether what was published is withdrawn (the object may not publish at
    /// all) rather than kept serving.
    pub withdraw: bool,
}

/// The reconcile steps that have their own condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Fetch,
    /// Checking the signature (SourceVerified).
    Verify,
    Validate,
    /// Publishing (store) or claiming the format key: after validation.
    Publish,
}

/// An Event to record about the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub type_: EventType,
    pub reason: Reason,
    pub note: String,
}

/// What a status is computed for: the object's previous status, its generation,
/// and whether it asks to be served.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub previous: Option<&'a FormatPluginStatus>,
    pub generation: Option<i64>,
    pub enabled: bool,
    /// The fetch request (`wasmplug.dev/requested-at`) this reconcile acts on.
    pub requested_at: Option<&'a str>,
}

impl<'a> From<&'a FormatPlugin> for Subject<'a> {
    fn from(plugin: &'a FormatPlugin) -> Self {
        Subject {
            previous: plugin.status.as_ref(),
            generation: plugin.metadata.generation,
            enabled: plugin.spec.enabled,
            requested_at: plugin.requested_at(),
        }
    }
}

/// The status to write after `outcome`, and the Events that go with it.
pub fn next(subject: Subject<'_>, outcome: &Outcome, now: Time) -> (FormatPluginStatus, Vec<Notice>) {
    let previous = subject.previous.cloned().unwrap_or_default();
    let generation = subject.generation;
    let mut status = FormatPluginStatus { observed_generation: generation, ..previous.clone() };
    if let Some(requested_at) = subject.requested_at {
        status.last_handled_requested_at = Some(requested_at.to_owned());
    }
    let mut conditions = Conditions { list: &mut status.conditions, generation, now };
    let mut notices = Vec::new();
    match outcome {
        Outcome::Published { artifact, plugin: info } => {
            let what = describe(info, artifact.as_ref());
            let (reason, message) = if subject.enabled {
                (Reason::Succeeded, format!("{what} is published; hosts serve format {}", info.format_key))
            } else {
                (Reason::Disabled, format!("{what} is published but disabled; hosts do not serve it"))
            };
            let fetched = artifact.as_ref().map_or("builtin format, nothing to fetch".into(), |a| a.revision.clone());
            conditions.set(ConditionType::Fetched, true, Reason::Succeeded, &fetched);
            match artifact.as_ref().and_then(|a| a.signature.as_ref()) {
                Some(signature) => {
                    let message = format!(
                        "plugin.wasm is signed ({}) by trusted key {} ({})",
                        signature.provider, signature.key, signature.fingerprint
                    );
                    conditions.set(ConditionType::SourceVerified, true, Reason::Succeeded, &message);
                }
                None => conditions.remove(ConditionType::SourceVerified),
            }
            conditions.set(ConditionType::Validated, true, Reason::Succeeded, "the plugin is valid for every host");
            conditions.set(ConditionType::Ready, true, reason, &message);
            conditions.remove(ConditionType::Reconciling);
            conditions.remove(ConditionType::Stalled);
            notices.extend(lifecycle_notices(&previous, artifact.as_ref(), info, reason, &what));
            status.artifact = artifact.clone().map(|new| keep_update_time(previous.artifact.as_ref(), new));
            status.plugin = Some(info.clone());
        }
        Outcome::Failed(failure) => {
            let mut message = failure.message.clone();
            if failure.withdraw {
                status.artifact = None;
                status.plugin = None;
            } else if let Some(info) = &previous.plugin {
                message.push_str(&format!("; still serving {}", describe(info, previous.artifact.as_ref())));
            }
            match failure.step {
                Step::Fetch => conditions.set(ConditionType::Fetched, false, failure.reason, &failure.message),
                Step::Verify => {
                    conditions.set(ConditionType::SourceVerified, false, failure.reason, &failure.message);
                }
                Step::Validate => conditions.set(ConditionType::Validated, false, failure.reason, &failure.message),
                Step::Publish => {}
            }
            let previous_ready = previous.conditions.iter().find(|c| c.type_ == ConditionType::Ready.as_str());
            let unchanged = previous_ready.is_some_and(|ready| {
                ready.status == "False"
                    && ready.reason == failure.reason.as_str()
                    && ready.message == bounded(&message, MAX_CONDITION_MESSAGE)
            });
            conditions.set(ConditionType::Ready, false, failure.reason, &message);
            if failure.transient {
                conditions.set(ConditionType::Reconciling, true, Reason::Progressing, "retrying with backoff");
                conditions.remove(ConditionType::Stalled);
            } else {
                let waiting = match failure.reason {
                    Reason::FormatConflict => {
                        "waiting for a change to the FormatPlugin, or for the owner of its format key to go"
                    }
                    Reason::NamespaceNotAllowed => {
                        "waiting for the operator's publishing namespaces to include this one"
                    }
                    _ => "waiting for a change to the FormatPlugin or its source",
                };
                conditions.set(ConditionType::Stalled, true, failure.reason, waiting);
                conditions.remove(ConditionType::Reconciling);
            }
            if !unchanged {
                notices.push(Notice { type_: EventType::Warning, reason: failure.reason, note: message });
            }
        }
    }
    (status, notices)
}

/// The Events for a successful reconcile, compared with what was published before.
fn lifecycle_notices(
    previous: &FormatPluginStatus,
    artifact: Option<&Artifact>,
    info: &PluginInfo,
    ready_reason: Reason,
    what: &str,
) -> Vec<Notice> {
    let normal = |reason, note: String| Notice { type_: EventType::Normal, reason, note };
    let mut notices = Vec::new();
    let previous_digest = previous.artifact.as_ref().map(|a| &a.digest);
    match (&previous.plugin, artifact) {
        (None, _) => notices.push(normal(Reason::Installed, format!("installed {what}"))),
        (Some(old), Some(new)) if previous_digest != Some(&new.digest) => notices
            .push(normal(Reason::Updated, format!("updated {} → {what}", describe(old, previous.artifact.as_ref())))),
        _ => {}
    }
    let was = previous_ready_reason(previous);
    match (was.as_deref(), ready_reason) {
        (Some("Disabled"), Reason::Succeeded) => {
            notices.push(normal(Reason::Enabled, format!("enabled format {}", info.format_key)));
        }
        (Some(w), Reason::Disabled) if w != "Disabled" => {
            notices.push(normal(Reason::Disabled, format!("disabled format {}", info.format_key)));
        }
        _ => {}
    }
    notices
}

fn previous_ready_reason(status: &FormatPluginStatus) -> Option<String> {
    status.conditions.iter().find(|c| c.type_ == ConditionType::Ready.as_str()).map(|c| c.reason.clone())
}

/// A published artifact keeps its first `lastUpdateTime` while it stays the same.
fn keep_update_time(previous: Option<&Artifact>, mut new: Artifact) -> Artifact {
    if let Some(previous) = previous.filter(|p| p.digest == new.digest && p.revision == new.revision) {
        new.last_update_time = previous.last_update_time.clone();
    }
    new
}

/// "unity-format 1.0.0 (sha256:…)" or "builtin format npm".
pub fn describe(info: &PluginInfo, artifact: Option<&Artifact>) -> String {
    match artifact {
        Some(artifact) => format!("{} {} ({})", info.name, info.version, artifact.digest),
        None => format!("builtin format {}", info.format_key),
    }
}

/// Longest condition message, in bytes: a reason to read, not a log.
pub const MAX_CONDITION_MESSAGE: usize = 4096;
/// Longest Event note the API server accepts (events.k8s.io/v1: 1 kB).
pub const MAX_EVENT_NOTE: usize = 1024;

/// `text` in at most `max` bytes, cut on a character boundary and saying so.
/// Whoever shortens a message logs it whole, so nothing is lost.
pub fn bounded(text: &str, max: usize) -> String {
    const CUT: &str = " … (cut short; the operator's log has the whole message)";
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(CUT.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &text[..end])
}

/// Edits a condition list, keeping `lastTransitionTime` while a status holds.
pub(crate) struct Conditions<'a> {
    pub list: &'a mut Vec<Condition>,
    pub generation: Option<i64>,
    pub now: Time,
}

impl Conditions<'_> {
    pub fn set(&mut self, type_: ConditionType, status: bool, reason: Reason, message: &str) {
        self.set_status(type_, if status { "True" } else { "False" }, reason, message);
    }

    /// Like [`Conditions::set`], for any status: "True", "False" or "Unknown".
    pub fn set_status(&mut self, type_: ConditionType, status: &str, reason: Reason, message: &str) {
        let since = match self.list.iter().find(|c| c.type_ == type_.as_str()) {
            Some(old) if old.status == status => old.last_transition_time.clone(),
            _ => self.now.clone(),
        };
        self.remove(type_);
        self.list.push(Condition {
            type_: type_.as_str().to_owned(),
            status: status.to_owned(),
            reason: reason.as_str().to_owned(),
            message: bounded(message, MAX_CONDITION_MESSAGE),
            last_transition_time: since,
            observed_generation: self.generation,
        });
        self.list.sort_by_key(|c| ConditionType::ALL.iter().position(|t| t.as_str() == c.type_));
    }

    pub fn remove(&mut self, type_: ConditionType) {
        self.list.retain(|c| c.type_ != type_.as_str());
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;
    use wasmplug_crds::{Capabilities, FormatPluginSpec};

    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("a valid time"))
    }

    fn object(generation: i64, enabled: bool, status: Option<FormatPluginStatus>) -> FormatPlugin {
        let spec: FormatPluginSpec = serde_json::from_value(serde_json::json!({
            "source": {"url": {"url": "https://example.test/p.zip"}}, "enabled": enabled
        }))
        .expect("spec");
        let mut plugin = FormatPlugin::new("p", spec);
        plugin.metadata.generation = Some(generation);
        plugin.status = status;
        plugin
    }

    fn published(digest: &str, version: &str) -> Outcome {
        Outcome::Published {
            artifact: Some(Artifact {
                digest: digest.into(),
                path: format!("artifacts/sha256/{digest}"),
                revision: format!("https://example.test/p.zip@{digest}"),
                size: 1,
                last_update_time: at(100),
                url: None,
                manifest: None,
                precompiled: None,
                signature: None,
            }),
            plugin: PluginInfo {
                name: "p".into(),
                version: version.into(),
                format_key: "p".into(),
                display_name: None,
                extensions: vec![],
                capabilities: Capabilities::default(),
            },
        }
    }

    fn failed(reason: Reason, transient: bool) -> Outcome {
        let message = "failed to x".into();
        Outcome::Failed(Failure { step: Step::Validate, reason, message, transient, withdraw: false })
    }

    fn reasons(notices: &[Notice]) -> Vec<Reason> {
        notices.iter().map(|n| n.reason).collect()
    }

    fn ready(status: &FormatPluginStatus) -> &Condition {
        status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready is always set")
    }

    #[test]
    fn install_update_and_an_unchanged_reconcile() {
        let (first, notices) = next(Subject::from(&object(1, true, None)), &published("sha256:a", "1.0.0"), at(10));
        assert_eq!(reasons(&notices), [Reason::Installed]);
        assert_eq!(first.observed_generation, Some(1));
        assert_eq!((ready(&first).status.as_str(), ready(&first).reason.as_str()), ("True", "Succeeded"));
        assert!(!first.conditions.iter().any(|c| c.type_ == "Reconciling" || c.type_ == "Stalled"));

        let (again, notices) =
            next(Subject::from(&object(1, true, Some(first.clone()))), &published("sha256:a", "1.0.0"), at(20));
        assert!(notices.is_empty(), "nothing changed, nothing to say");
        assert_eq!(again, first, "an unchanged reconcile writes the same status (lastUpdateTime kept)");

        let (updated, notices) =
            next(Subject::from(&object(2, true, Some(first))), &published("sha256:b", "2.0.0"), at(30));
        assert_eq!(reasons(&notices), [Reason::Updated]);
        assert!(notices[0].note.contains("p 1.0.0 (sha256:a) → p 2.0.0 (sha256:b)"), "{}", notices[0].note);
        assert_eq!(ready(&updated).last_transition_time, at(10), "Ready stayed True");
    }

    fn condition<'s>(status: &'s FormatPluginStatus, type_: &str) -> Option<&'s Condition> {
        status.conditions.iter().find(|c| c.type_ == type_)
    }

    #[test]
    fn source_verified_names_the_key_and_a_bad_signature_keeps_the_last_good() {
        let mut signed = published("sha256:a", "1.0.0");
        if let Outcome::Published { artifact: Some(artifact), .. } = &mut signed {
            artifact.signature = Some(wasmplug_crds::SignatureInfo {
                provider: "ed25519".into(),
                key: "cluster/release.pub".into(),
                fingerprint: "SHA256:abc".into(),
            });
        }
        let (first, _) = next(Subject::from(&object(1, true, None)), &signed, at(10));
        let verified = condition(&first, "SourceVerified").expect("SourceVerified is set");
        assert_eq!(verified.status, "True");
        assert!(verified.message.contains("cluster/release.pub (SHA256:abc)"), "{}", verified.message);

        let refused = Outcome::Failed(Failure {
            step: Step::Verify,
            reason: Reason::SignatureInvalid,
            message: "plugin.wasm.sig does not verify".into(),
            transient: false,
            withdraw: false,
        });
        let (second, notices) = next(Subject::from(&object(2, true, Some(first))), &refused, at(20));
        assert_eq!(reasons(&notices), [Reason::SignatureInvalid]);
        let verified = condition(&second, "SourceVerified").expect("SourceVerified is set");
        assert_eq!((verified.status.as_str(), verified.reason.as_str()), ("False", "SignatureInvalid"));
        assert_eq!(ready(&second).reason, "SignatureInvalid");
        assert!(ready(&second).message.ends_with("still serving p 1.0.0 (sha256:a)"), "{}", ready(&second).message);
        assert!(second.artifact.as_ref().is_some_and(|a| a.signature.is_some()), "the last good stays");

        // Nothing asks for a signature any more: the condition goes.
        let (third, _) = next(Subject::from(&object(3, true, Some(second))), &published("sha256:b", "2.0.0"), at(30));
        assert!(condition(&third, "SourceVerified").is_none());
    }

    #[test]
    fn disable_and_enable_are_told_once() {
        let (enabled, _) = next(Subject::from(&object(1, true, None)), &published("sha256:a", "1.0.0"), at(10));
        let (disabled, notices) =
            next(Subject::from(&object(2, false, Some(enabled))), &published("sha256:a", "1.0.0"), at(20));
        assert_eq!(reasons(&notices), [Reason::Disabled]);
        assert_eq!(ready(&disabled).reason, "Disabled");
        let (_, notices) =
            next(Subject::from(&object(2, false, Some(disabled.clone()))), &published("sha256:a", "1.0.0"), at(25));
        assert!(notices.is_empty());
        let (_, notices) =
            next(Subject::from(&object(3, true, Some(disabled))), &published("sha256:a", "1.0.0"), at(30));
        assert_eq!(reasons(&notices), [Reason::Enabled]);
    }

    #[test]
    fn a_failure_keeps_the_last_good_version_and_says_so() {
        let (good, _) = next(Subject::from(&object(1, true, None)), &published("sha256:a", "1.0.0"), at(10));
        let (bad, notices) =
            next(Subject::from(&object(2, true, Some(good.clone()))), &failed(Reason::ValidationFailed, false), at(20));
        assert_eq!(reasons(&notices), [Reason::ValidationFailed]);
        assert_eq!(notices[0].type_, EventType::Warning);
        assert_eq!(bad.artifact, good.artifact, "the last good artifact stays published");
        assert_eq!(bad.plugin, good.plugin);
        assert_eq!(ready(&bad).message, "failed to x; still serving p 1.0.0 (sha256:a)");
        assert_eq!(ready(&bad).last_transition_time, at(20));
        let stalled = bad.conditions.iter().find(|c| c.type_ == "Stalled").expect("a permanent failure stalls");
        assert_eq!(stalled.reason, "ValidationFailed");

        let (_, notices) =
            next(Subject::from(&object(2, true, Some(bad.clone()))), &failed(Reason::ValidationFailed, false), at(30));
        assert!(notices.is_empty(), "the same failure again is not a new Event");

        let (retrying, _) =
            next(Subject::from(&object(2, true, Some(bad))), &failed(Reason::FetchFailed, true), at(40));
        assert!(retrying.conditions.iter().any(|c| c.type_ == "Reconciling" && c.status == "True"));
        assert!(!retrying.conditions.iter().any(|c| c.type_ == "Stalled"), "only while true");
    }

    /// Finding 9 of issue 11: a 7 KB message made the API server refuse the
    /// Event, and the audit trail lost a step.
    #[test]
    fn long_messages_are_cut_on_a_character_boundary_and_say_so() {
        let long = "ünïcødé extension entry must start with a dot; ".repeat(150);
        for max in [MAX_EVENT_NOTE, MAX_CONDITION_MESSAGE] {
            let cut = bounded(&long, max);
            assert!(cut.len() <= max && cut.len() > max - 8, "{} of {max}", cut.len());
            assert!(cut.ends_with("(cut short; the operator's log has the whole message)"));
            assert!(long.starts_with(cut.split(" … (cut short").next().unwrap()));
        }
        assert_eq!(bounded("short", MAX_EVENT_NOTE), "short");

        let failure = Failure {
            step: Step::Validate,
            reason: Reason::ValidationFailed,
            message: long.clone(),
            transient: false,
            withdraw: false,
        };
        let subject = Subject { previous: None, generation: Some(1), enabled: true, requested_at: None };
        let (status, notices) = next(subject, &Outcome::Failed(failure.clone()), Time(Timestamp::UNIX_EPOCH));
        assert!(status.conditions.iter().all(|c| c.message.len() <= MAX_CONDITION_MESSAGE));
        assert_eq!(notices[0].note, long, "the notice (logged whole) keeps the whole message");
        // Reported again unchanged: no second Event.
        let subject = Subject { previous: Some(&status), ..subject };
        assert_eq!(next(subject, &Outcome::Failed(failure), Time(Timestamp::UNIX_EPOCH)).1, []);
    }
}
