//! Which namespaces may publish formats.
//!
//! Format keys are cluster-wide: every host serves one owner per key, whatever
//! namespace it is in. So creating a FormatPlugin is a cluster-level privilege,
//! and the operator accepts FormatPlugins only from the namespaces it is
//! configured for; anywhere else, an unclaimed key could be squatted (and a v2
//! plugin would generate index entries for everyone).

/// A FormatPlugin in a namespace that may not publish formats.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "FormatPlugins in namespace {namespace} may not publish formats: format keys are cluster-wide, so the \
     operator accepts them only from namespace(s) {allowed} (its --publishing-namespaces, the chart's \
     operator.publishingNamespaces); create it in one of those"
)]
pub struct NamespaceNotAllowed {
    pub namespace: String,
    pub allowed: String,
}

/// The namespaces whose FormatPlugins may publish formats; empty allows all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishingNamespaces {
    names: Vec<String>,
}

impl PublishingNamespaces {
    /// Every namespace.
    pub const ALL: PublishingNamespaces = PublishingNamespaces { names: Vec::new() };

    /// The namespaces `names`; blank ones are ignored.
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let names = names.into_iter().map(|name| name.into().trim().to_owned());
        PublishingNamespaces { names: names.filter(|name| !name.is_empty()).collect() }
    }

    /// `Ok` when FormatPlugins in `namespace` may publish formats.
    pub fn check(&self, namespace: &str) -> Result<(), NamespaceNotAllowed> {
        if self.names.is_empty() || self.names.iter().any(|name| name == namespace) {
            return Ok(());
        }
        Err(NamespaceNotAllowed { namespace: namespace.to_owned(), allowed: self.names.join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_namespaces_publish_and_none_named_means_all() {
        let registry = PublishingNamespaces::new(["registry", " "]);
        assert_eq!(registry.check("registry"), Ok(()));
        let refused = registry.check("team-a").unwrap_err();
        assert_eq!(refused.allowed, "registry");
        assert!(refused.to_string().contains("format keys are cluster-wide"), "{refused}");
        assert_eq!(PublishingNamespaces::default().check("team-a"), Ok(()));
    }
}
