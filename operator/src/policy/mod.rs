//! The rules about which FormatPlugins may exist that need more than the object
//! itself (the CRD's CEL rules check that): the admission webhook applies them
//! when an object is created, changed or deleted, and the controller applies the
//! source policy again when it fetches, for objects that were stored before the
//! policy or while the webhook was not called.
//!
//! Objects in, verdict out; the one thing looked at besides the objects is the
//! operator's own filesystem, to resolve a `local` source's path.

mod destinations;
mod hosts;
mod local;
mod namespaces;

use kube::ResourceExt;
use wasmplug_crds::{FormatPlugin, SourceKind, ownership};

pub use destinations::{DestinationDenied, Destinations, parse_range};
pub use hosts::{SourceHostDenied, SourceHosts};
pub use local::{LocalPathDenied, LocalRoots};
pub use namespaces::{NamespaceNotAllowed, PublishingNamespaces};

use crate::source_url::{self, SourceUrl, UrlRefused};
use crate::verify::{SignaturePolicy, Unverifiable};

/// Set on a FormatPlugin (value "true") to allow disabling or deleting it even
/// when it is the last enabled format, e.g. to take wasmplug out of a cluster.
pub const ALLOW_LAST_REMOVAL_ANNOTATION: &str = "wasmplug.dev/allow-last-removal";

/// What a change to one FormatPlugin does, as the webhook sees it.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    Create(&'a FormatPlugin),
    Update { old: &'a FormatPlugin, new: &'a FormatPlugin },
    Delete(&'a FormatPlugin),
}

/// Why a change is refused. Each message says what is wrong and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Denial {
    #[error(
        "at least one format must remain enabled: {subject} is the last enabled FormatPlugin{scope}; \
         enable or add another format first, or annotate this one with {ALLOW_LAST_REMOVAL_ANNOTATION}=true \
         to remove it anyway"
    )]
    LastEnabled { subject: String, scope: String },
    #[error(
        "format key {key:?} is already owned by FormatPlugin {owner}; delete that one first, \
         or give this plugin another spec.formatKey"
    )]
    KeyOwned { key: String, owner: String },
    #[error(transparent)]
    Source(#[from] SourceDenied),
    #[error(transparent)]
    Namespace(#[from] NamespaceNotAllowed),
    #[error(transparent)]
    Unverifiable(#[from] Unverifiable),
}

/// What sources may reach, set when the operator starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    /// The hosts Git and URL sources may name.
    pub hosts: SourceHosts,
    /// The directories `local` sources may read under.
    pub local_roots: LocalRoots,
    /// The network addresses Git and URL sources may connect to.
    pub destinations: Destinations,
}

/// A source the [`SourcePolicy`] does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceDenied {
    #[error(transparent)]
    Url(#[from] UrlRefused),
    #[error(transparent)]
    Host(#[from] SourceHostDenied),
    #[error(transparent)]
    LocalPath(#[from] LocalPathDenied),
    #[error(transparent)]
    Destination(#[from] DestinationDenied),
}

impl SourcePolicy {
    /// `Ok` when `plugin`'s source may be fetched.
    pub fn check(&self, plugin: &FormatPlugin) -> Result<(), SourceDenied> {
        match plugin.spec.source.kind() {
            Some(SourceKind::Git(git)) => self.url(&git.url, source_url::SourceKind::Git).map(drop),
            Some(SourceKind::Url(url)) => self.url(&url.url, source_url::SourceKind::Url).map(drop),
            Some(SourceKind::Oci(oci)) => self.url(&oci.url, source_url::SourceKind::Oci).map(drop),
            Some(SourceKind::Local(local)) => self.local_roots.resolve(&local.path).map(drop).map_err(Into::into),
            Some(SourceKind::Builtin(_)) | None => Ok(()),
        }
    }

    /// The address `raw` of a `kind` source, read as the fetch reads it, when it
    /// may be fetched.
    /// A host written as an address is checked here; a name is checked where
    /// it is resolved ([`SourcePolicy::resolve`], or the URL client's resolver).
    pub fn url(&self, raw: &str, kind: source_url::SourceKind) -> Result<SourceUrl, SourceDenied> {
        let url = SourceUrl::parse(raw, kind)?;
        self.hosts.check(&url)?;
        if let Some(ip) = url.ip() {
            self.destinations.check_all(&url.host(), &[ip])?;
        }
        Ok(url)
    }

    /// Resolves `url`'s host and checks every address, for fetchers that
    /// connect on their own (libgit2). A name that does not resolve is left to
    /// the fetch to report. A name whose answer changes between this lookup and
    /// the fetcher's own is not caught here; the host allowlist is the defence
    /// against names a tenant controls.
    pub async fn resolve(&self, url: &SourceUrl) -> Result<(), SourceDenied> {
        let host = url.host();
        let Ok(addresses) = tokio::net::lookup_host((host.as_str(), url.port().unwrap_or(0))).await else {
            return Ok(());
        };
        let addresses: Vec<std::net::IpAddr> = addresses.map(|address| address.ip()).collect();
        Ok(self.destinations.check_all(&host, &addresses)?)
    }
}

/// Everything [`review`] needs besides the change.
#[derive(Debug)]
pub struct Rules<'a> {
    pub sources: &'a SourcePolicy,
    /// The namespaces that may publish formats.
    pub namespaces: &'a PublishingNamespaces,
    /// Which plugins must be signed, and the cluster-wide keys.
    pub signatures: &'a SignaturePolicy,
    /// The namespace the operator follows, or `None` for the whole cluster: the
    /// scope in which one format must stay enabled.
    pub scope: Option<&'a str>,
}

/// Whether `change` may happen, given every other FormatPlugin in scope
/// (`others` may include the subject itself; it is skipped).
pub fn review(change: Change<'_>, others: &[FormatPlugin], rules: &Rules<'_>) -> Result<(), Denial> {
    match change {
        Change::Create(new) => {
            rules.namespaces.check(&new.namespace().unwrap_or_default())?;
            rules.sources.check(new)?;
            rules.signatures.check(&new.spec)?;
            key_is_free(new, others)
        }
        Change::Update { old, new } => {
            // Disabling, and metadata changes (finalizers), stay possible anywhere.
            if old.spec != new.spec && new.spec.enabled {
                rules.namespaces.check(&new.namespace().unwrap_or_default())?;
            }
            if old.spec.source != new.spec.source {
                rules.sources.check(new)?;
            }
            if old.spec.source != new.spec.source || old.spec.verify != new.spec.verify {
                rules.signatures.check(&new.spec)?;
            }
            if old.spec.declared_format_key() != new.spec.declared_format_key() {
                key_is_free(new, others)?;
            }
            if old.spec.enabled && !new.spec.enabled {
                another_stays_enabled(new, others, rules)?;
            }
            Ok(())
        }
        Change::Delete(old) if old.spec.enabled && old.metadata.deletion_timestamp.is_none() => {
            another_stays_enabled(old, others, rules)
        }
        Change::Delete(_) => Ok(()),
    }
}

/// Refuses `plugin` when another object owns the key it declares: one whose
/// published status claims it or, failing that, the oldest other object that
/// declares it and has not been published yet.
fn key_is_free(plugin: &FormatPlugin, others: &[FormatPlugin]) -> Result<(), Denial> {
    let Some(key) = plugin.spec.declared_format_key() else { return Ok(()) };
    let others: Vec<&FormatPlugin> = others.iter().filter(|other| !same_object(other, plugin)).collect();
    let claimed = ownership::owner_of(key, others.iter().copied());
    let declared = || {
        others
            .iter()
            .copied()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.claimed_format_key().is_none()
                    && p.spec.declared_format_key() == Some(key)
            })
            .min_by(|a, b| ownership::claim_order(a, b))
    };
    match claimed.or_else(declared) {
        Some(owner) => Err(Denial::KeyOwned { key: key.to_owned(), owner: owner.qualified_name() }),
        None => Ok(()),
    }
}

fn another_stays_enabled(plugin: &FormatPlugin, others: &[FormatPlugin], rules: &Rules<'_>) -> Result<(), Denial> {
    let allowed = plugin.annotations().get(ALLOW_LAST_REMOVAL_ANNOTATION).is_some_and(|v| v == "true");
    let another = others
        .iter()
        .any(|other| !same_object(other, plugin) && other.spec.enabled && other.metadata.deletion_timestamp.is_none());
    if allowed || another {
        return Ok(());
    }
    let scope = rules.scope.map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
    Err(Denial::LastEnabled { subject: plugin.qualified_name(), scope })
}

fn same_object(a: &FormatPlugin, b: &FormatPlugin) -> bool {
    a.namespace() == b.namespace() && a.name_any() == b.name_any()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use wasmplug_crds::{
        BuiltinSource, FormatPluginSpec, FormatPluginStatus, GitSource, LocalSource, PluginInfo, Source, UrlSource,
    };

    use super::*;

    fn plugin(name: &str, builtin: Option<&str>, enabled: bool) -> FormatPlugin {
        let source = match builtin {
            Some(format) => Source { builtin: Some(BuiltinSource { format: format.into() }), ..Source::default() },
            None => Source {
                git: Some(GitSource {
                    url: "https://git.example.com/unity.git".into(),
                    reference: None,
                    path: None,
                    secret_ref: None,
                }),
                ..Source::default()
            },
        };
        let spec: FormatPluginSpec = serde_json::from_value(serde_json::json!({ "source": source })).unwrap();
        let mut plugin = FormatPlugin::new(name, FormatPluginSpec { enabled, ..spec });
        plugin.metadata.namespace = Some("ns".into());
        plugin.metadata.creation_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        plugin
    }

    fn with_key(mut plugin: FormatPlugin, key: &str) -> FormatPlugin {
        plugin.spec.format_key = Some(key.into());
        plugin
    }

    fn published(mut plugin: FormatPlugin, key: &str) -> FormatPlugin {
        let info: PluginInfo = serde_json::from_value(serde_json::json!({
            "name": key, "version": "1.0.0", "formatKey": key, "capabilities": {}
        }))
        .unwrap();
        plugin.status = Some(FormatPluginStatus { plugin: Some(info), ..FormatPluginStatus::default() });
        plugin
    }

    static OPEN_SOURCES: std::sync::LazyLock<SourcePolicy> = std::sync::LazyLock::new(SourcePolicy::default);
    static OPEN: std::sync::LazyLock<Rules<'static>> = std::sync::LazyLock::new(|| Rules {
        sources: &OPEN_SOURCES,
        namespaces: &ALL_NAMESPACES,
        signatures: &UNSIGNED,
        scope: None,
    });
    static ALL_NAMESPACES: PublishingNamespaces = PublishingNamespaces::ALL;
    static UNSIGNED: SignaturePolicy = SignaturePolicy { required: false, keys_dir: None };

    #[test]
    fn the_last_enabled_format_cannot_be_disabled_or_deleted() {
        let npm = plugin("npm", Some("npm"), true);
        let off = plugin("maven", Some("maven"), false);
        let others = [npm.clone(), off];
        let disabled = FormatPlugin { spec: FormatPluginSpec { enabled: false, ..npm.spec.clone() }, ..npm.clone() };
        let denial = review(Change::Update { old: &npm, new: &disabled }, &others, &OPEN).unwrap_err();
        assert_eq!(denial, Denial::LastEnabled { subject: "ns/npm".into(), scope: String::new() });
        assert!(denial.to_string().starts_with("at least one format must remain enabled"));
        assert!(review(Change::Delete(&npm), &others, &OPEN).is_err());

        let pypi = plugin("pypi", Some("pypi"), true);
        let more = [npm.clone(), pypi];
        assert_eq!(review(Change::Update { old: &npm, new: &disabled }, &more, &OPEN), Ok(()));
        assert_eq!(review(Change::Delete(&npm), &more, &OPEN), Ok(()));
    }

    #[test]
    fn another_being_deleted_does_not_count_and_the_annotation_overrides() {
        let npm = plugin("npm", Some("npm"), true);
        let mut going = plugin("pypi", Some("pypi"), true);
        going.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(review(Change::Delete(&npm), &[npm.clone(), going], &OPEN).is_err());

        let mut forced = npm.clone();
        forced.annotations_mut().insert(ALLOW_LAST_REMOVAL_ANNOTATION.into(), "true".into());
        assert_eq!(review(Change::Delete(&forced), &[forced.clone()], &OPEN), Ok(()));
        // Deleting a disabled one, or one already being deleted, is always fine.
        let off = plugin("maven", Some("maven"), false);
        assert_eq!(review(Change::Delete(&off), std::slice::from_ref(&off), &OPEN), Ok(()));
    }

    #[test]
    fn a_second_plugin_for_an_owned_key_is_refused_naming_the_owner() {
        let owner = published(plugin("unity", None, true), "unity");
        let second = with_key(plugin("unity-2", None, true), "unity");
        let denial = review(Change::Create(&second), std::slice::from_ref(&owner), &OPEN).unwrap_err();
        assert_eq!(denial, Denial::KeyOwned { key: "unity".into(), owner: "ns/unity".into() });
        // Owned by declaration while the first is not published yet.
        let pending = with_key(plugin("unity", None, true), "unity");
        assert!(review(Change::Create(&second), &[pending], &OPEN).is_err());
        // A builtin declares its key by its source.
        let npm = published(plugin("npm", Some("npm"), true), "npm");
        assert!(review(Change::Create(&plugin("npm-2", Some("npm"), true)), &[npm], &OPEN).is_err());
        // Without a declared key nothing is known before the fetch.
        assert_eq!(review(Change::Create(&plugin("other", None, true)), std::slice::from_ref(&owner), &OPEN), Ok(()));
    }

    #[test]
    fn re_applying_the_owner_or_updating_a_conflicting_object_is_fine() {
        let owner = published(with_key(plugin("unity", None, true), "unity"), "unity");
        let loser = with_key(plugin("unity-2", None, true), "unity");
        let others = [owner.clone(), loser.clone()];
        assert_eq!(review(Change::Update { old: &owner, new: &owner }, &others, &OPEN), Ok(()));
        // The loser can still be disabled: its key does not change.
        let off = FormatPlugin { spec: FormatPluginSpec { enabled: false, ..loser.spec.clone() }, ..loser.clone() };
        assert_eq!(review(Change::Update { old: &loser, new: &off }, &others, &OPEN), Ok(()));
    }

    #[test]
    fn a_source_change_is_checked_but_an_unchanged_source_is_not() {
        let sources = SourcePolicy { hosts: SourceHosts::new(["allowed.example.com"]), ..SourcePolicy::default() };
        let rules = Rules { sources: &sources, namespaces: &ALL_NAMESPACES, signatures: &UNSIGNED, scope: Some("ns") };
        let old = plugin("p", None, true);
        let mut disabled = old.clone();
        disabled.spec.enabled = false;
        let others = [old.clone(), plugin("q", Some("npm"), true)];
        assert_eq!(review(Change::Update { old: &old, new: &disabled }, &others, &rules), Ok(()));
        assert!(matches!(review(Change::Create(&old), &others, &rules), Err(Denial::Source(SourceDenied::Host(_)))));
    }

    #[test]
    fn a_local_source_is_refused_unless_its_path_resolves_under_a_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("unity")).unwrap();
        let local = |path: &str| {
            let mut p = plugin("dev", None, true);
            p.spec.source = Source { local: Some(LocalSource { path: path.into() }), ..Source::default() };
            p
        };
        fn denied(change: Change<'_>, rules: &Rules<'_>) -> bool {
            matches!(review(change, &[], rules), Err(Denial::Source(SourceDenied::LocalPath(_))))
        }
        assert!(denied(Change::Create(&local("/dev/zero")), &OPEN));
        let sources = SourcePolicy { local_roots: LocalRoots::new([root.path()]).unwrap(), ..SourcePolicy::default() };
        let rules = Rules { sources: &sources, namespaces: &ALL_NAMESPACES, signatures: &UNSIGNED, scope: None };
        assert!(denied(Change::Create(&local("/dev/zero")), &rules));
        let unity = root.path().join("unity").display().to_string();
        assert_eq!(review(Change::Create(&local(&unity)), &[], &rules), Ok(()));
        let old = local(&unity);
        assert!(denied(Change::Update { old: &old, new: &local("/etc/hostname") }, &rules));
    }

    /// Finding 2 of issue 11: the allowlist read `localhost` where the fetch
    /// went to `other`.
    #[test]
    fn the_allowlist_reads_a_url_as_the_fetch_does() {
        let sources = SourcePolicy { hosts: SourceHosts::new(["localhost"]), ..SourcePolicy::default() };
        let url_source = |url: &str| {
            let mut p = plugin("p", None, true);
            p.spec.source = Source { url: Some(UrlSource { url: url.into(), secret_ref: None }), ..Source::default() };
            p
        };
        for confused in [
            "http://other:8080\\@localhost/p.zip",
            "http://other:8080?@localhost/p.zip",
            "http://other:8080#@localhost/p.zip",
            "http://user:pw@localhost/p.zip",
            "http://%6cocalhost/p.zip",
            "http://localhost:/p.zip",
        ] {
            assert!(sources.check(&url_source(confused)).is_err(), "{confused} must be refused");
        }
        assert_eq!(sources.check(&url_source("http://localhost:8080/p.zip")), Ok(()));
        assert_eq!(sources.check(&url_source("http://LOCALHOST:8080/p.zip")), Ok(()));
    }

    /// Finding 4 of issue 11: sources reached the operator's neighbourhood.
    #[tokio::test]
    async fn sources_reach_private_addresses_only_when_allowed() {
        let default = SourcePolicy::default();
        for url in ["http://169.254.169.254/latest/meta-data", "http://10.96.0.1/p.zip", "http://[::1]:8080/p.zip"] {
            let refused = default.url(url, source_url::SourceKind::Url).unwrap_err();
            assert!(matches!(refused, SourceDenied::Destination(_)), "{url}: {refused}");
        }
        let local = SourceUrl::parse("git://localhost:9418/r.git", source_url::SourceKind::Git).unwrap();
        assert!(matches!(default.resolve(&local).await, Err(SourceDenied::Destination(_))));

        let loopback = vec![parse_range("127.0.0.0/8").unwrap(), parse_range("::1").unwrap()];
        let allowed = SourcePolicy { destinations: Destinations::new(loopback, Vec::new()), ..SourcePolicy::default() };
        assert!(allowed.url("http://127.0.0.1:8080/p.zip", source_url::SourceKind::Url).is_ok());
        assert_eq!(allowed.resolve(&local).await, Ok(()));
    }

    /// Finding 7 of issue 11: any namespace could claim a cluster-wide key.
    #[test]
    fn only_publishing_namespaces_may_create_or_change_formats_but_any_may_disable_or_delete() {
        let namespaces = PublishingNamespaces::new(["registry"]);
        let rules = Rules { sources: &OPEN_SOURCES, namespaces: &namespaces, signatures: &UNSIGNED, scope: None };
        let npm = plugin("npm", Some("npm"), true); // in namespace "ns"
        let refused = review(Change::Create(&npm), &[], &rules).unwrap_err();
        assert!(matches!(refused, Denial::Namespace(_)), "{refused}");
        let mut changed = npm.clone();
        changed.spec.limits = Some(serde_json::from_value(serde_json::json!({"timeout": "2s"})).unwrap());
        assert!(review(Change::Update { old: &npm, new: &changed }, &[], &rules).is_err());
        let mut disabled = npm.clone();
        disabled.spec.enabled = false;
        let others = [npm.clone(), plugin("pypi", Some("pypi"), true)];
        assert_eq!(review(Change::Update { old: &npm, new: &disabled }, &others, &rules), Ok(()));
        let mut finalized = npm.clone();
        finalized.metadata.finalizers = Some(Vec::new());
        assert_eq!(review(Change::Update { old: &npm, new: &finalized }, &others, &rules), Ok(()));
        assert_eq!(review(Change::Delete(&npm), &others, &rules), Ok(()));
    }
}
