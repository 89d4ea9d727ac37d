//! Condition types and reasons: the stable words of the FormatPlugin status contract.
//!
//! Reasons double as Kubernetes Event reasons and metric labels, so they are
//! CamelCase, low-cardinality and never change meaning. Tools (`kubectl wait`, Flux,
//! Argo CD, dashboards and alerts) match on these strings; add words, never rename.

/// The condition types a FormatPlugin status carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The plugin is published and may be served (kstatus readiness).
    Ready,
    /// The operator is working towards a new state; present only while True.
    Reconciling,
    /// The operator cannot make progress without a change to the object; present
    /// only while True.
    Stalled,
    /// The source was fetched.
    Fetched,
    /// plugin.wasm's signature was verified with a trusted key (present when
    /// spec.verify or the cluster-wide policy asks for one).
    SourceVerified,
    /// The package passed validation.
    Validated,
    /// Every host that receives traffic serves the published version as the
    /// spec asks (from the hosts' FormatHost records).
    Serving,
}

impl ConditionType {
    pub const ALL: [ConditionType; 7] = [
        ConditionType::Ready,
        ConditionType::Reconciling,
        ConditionType::Stalled,
        ConditionType::Fetched,
        ConditionType::SourceVerified,
        ConditionType::Validated,
        ConditionType::Serving,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Reconciling => "Reconciling",
            ConditionType::Stalled => "Stalled",
            ConditionType::Fetched => "Fetched",
            ConditionType::SourceVerified => "SourceVerified",
            ConditionType::Validated => "Validated",
            ConditionType::Serving => "Serving",
        }
    }
}

/// Why a condition has its status, and why an Event was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The step or the whole reconcile succeeded.
    Succeeded,
    /// Work is under way (used with Reconciling=True and Ready=Unknown).
    Progressing,
    /// A plugin was published and served for the first time.
    Installed,
    /// A new version replaced the previous one.
    Updated,
    /// The format was enabled.
    Enabled,
    /// The format was disabled (spec.enabled is false).
    Disabled,
    /// Reconciling is suspended (spec.suspend is true).
    Suspended,
    /// The source could not be fetched (network, authentication, missing ref).
    FetchFailed,
    /// The source names a host, address or path the operator's source policy
    /// does not allow.
    SourceNotAllowed,
    /// The FormatPlugin's namespace may not publish formats (format keys are
    /// cluster-wide); nothing of it is served.
    NamespaceNotAllowed,
    /// The package is invalid (manifest, digest, component interface).
    ValidationFailed,
    /// The sha256 pin in the spec does not match plugin.wasm.
    DigestMismatch,
    /// A signature is required (spec.verify, or the cluster-wide policy) but the
    /// package has none.
    SignatureMissing,
    /// The package's signature is malformed, or no trusted key verifies it.
    SignatureInvalid,
    /// A signature is required but the keys to check it with are unusable: none
    /// is configured, or one is not a public key (retried: they live outside the
    /// object).
    TrustedKeysInvalid,
    /// Another FormatPlugin already owns this format key.
    FormatConflict,
    /// The package could not be written to the shared store.
    StoreFailed,
    /// The FormatPlugin was deleted and its format removed.
    Removed,
    /// Every expected host serves the published version (Serving=True).
    AllHostsServing,
    /// Some expected hosts do not serve the published version yet, and none
    /// reported a failure (Serving=False while they catch up).
    Rollout,
    /// At least one host failed to load the published version (Serving=False;
    /// also the Event).
    LoadFailed,
    /// At least one host quarantined the published version for repeated faults
    /// (Serving=False; also the Event).
    Quarantined,
    /// No host that follows the FormatPlugin is ready (Serving=Unknown).
    NoHosts,
    /// Hosts that had failed or quarantined the version serve it again (an Event).
    Recovered,
}

impl Reason {
    pub const ALL: [Reason; 24] = [
        Reason::Succeeded,
        Reason::Progressing,
        Reason::Installed,
        Reason::Updated,
        Reason::Enabled,
        Reason::Disabled,
        Reason::Suspended,
        Reason::FetchFailed,
        Reason::SourceNotAllowed,
        Reason::NamespaceNotAllowed,
        Reason::ValidationFailed,
        Reason::DigestMismatch,
        Reason::SignatureMissing,
        Reason::SignatureInvalid,
        Reason::TrustedKeysInvalid,
        Reason::FormatConflict,
        Reason::StoreFailed,
        Reason::Removed,
        Reason::AllHostsServing,
        Reason::Rollout,
        Reason::LoadFailed,
        Reason::Quarantined,
        Reason::NoHosts,
        Reason::Recovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Succeeded => "Succeeded",
            Reason::Progressing => "Progressing",
            Reason::Installed => "Installed",
            Reason::Updated => "Updated",
            Reason::Enabled => "Enabled",
            Reason::Disabled => "Disabled",
            Reason::Suspended => "Suspended",
            Reason::FetchFailed => "FetchFailed",
            Reason::SourceNotAllowed => "SourceNotAllowed",
            Reason::NamespaceNotAllowed => "NamespaceNotAllowed",
            Reason::ValidationFailed => "ValidationFailed",
            Reason::DigestMismatch => "DigestMismatch",
            Reason::SignatureMissing => "SignatureMissing",
            Reason::SignatureInvalid => "SignatureInvalid",
            Reason::TrustedKeysInvalid => "TrustedKeysInvalid",
            Reason::FormatConflict => "FormatConflict",
            Reason::StoreFailed => "StoreFailed",
            Reason::Removed => "Removed",
            Reason::AllHostsServing => "AllHostsServing",
            Reason::Rollout => "Rollout",
            Reason::LoadFailed => "LoadFailed",
            Reason::Quarantined => "Quarantined",
            Reason::NoHosts => "NoHosts",
            Reason::Recovered => "Recovered",
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_camel_case(word: &str) -> bool {
        word.starts_with(|c: char| c.is_ascii_uppercase()) && word.chars().all(|c| c.is_ascii_alphanumeric())
    }

    #[test]
    fn words_are_camel_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        let types = ConditionType::ALL.iter().map(|t| t.as_str());
        let reasons = Reason::ALL.iter().map(|r| r.as_str());
        for word in types.chain(reasons) {
            assert!(is_camel_case(word), "{word} is not CamelCase");
            assert!(seen.insert(word), "{word} is listed twice");
        }
    }
}
