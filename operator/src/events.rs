//! Telling people what happened to an object: its structured log line (the
//! audit trail) and its Kubernetes Event, the same way for the controller and
//! the host rollup.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::status::{self, Notice};

/// Logs `notice` about `regarding`, at warn for a Warning.
pub fn log(regarding: &ObjectReference, notice: &Notice) {
    let namespace = regarding.namespace.as_deref().unwrap_or_default();
    let name = regarding.name.as_deref().unwrap_or_default();
    match notice.type_ {
        EventType::Normal => tracing::info!(namespace, name, reason = %notice.reason, "{}", notice.note),
        EventType::Warning => tracing::warn!(namespace, name, reason = %notice.reason, "{}", notice.note),
    }
}

/// Records `notice` as an Event about `regarding` (its note cut to what the
/// API server accepts); a failure is logged.
pub async fn publish(recorder: &Recorder, regarding: &ObjectReference, notice: &Notice, action: &str) {
    let event = Event {
        type_: notice.type_,
        reason: notice.reason.to_string(),
        note: Some(status::bounded(&notice.note, status::MAX_EVENT_NOTE)),
        action: action.into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, regarding).await {
        tracing::warn!(%error, "failed to record an Event");
    }
}
