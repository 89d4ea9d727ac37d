//! The allowlist of hosts that Git and URL sources may name.

use crate::source_url::SourceUrl;

/// A source whose host the allowlist does not name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "source host {host:?} is not allowed; allowed source hosts are: {allowed} (the operator's \
     --allowed-source-hosts); use a source on one of them"
)]
pub struct SourceHostDenied {
    pub host: String,
    pub allowed: String,
}

/// The hosts that Git and URL sources may name; empty allows every host.
///
/// A pattern is a host name (`git.example.com`) or a wildcard for its subdomains
/// (`*.example.com`, which does not match `example.com` itself). Matching ignores
/// case and ports. Local and builtin sources name no host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceHosts {
    patterns: Vec<String>,
}

impl SourceHosts {
    /// The allowlist of `patterns`; blank ones are ignored.
    pub fn new(patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let patterns = patterns.into_iter().map(|p| p.into().trim().to_ascii_lowercase());
        SourceHosts { patterns: patterns.filter(|p| !p.is_empty()).collect() }
    }

    pub fn is_restricted(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// `Ok` when a Git or URL source at `url` may be fetched.
    pub fn check(&self, url: &SourceUrl) -> Result<(), SourceHostDenied> {
        if !self.is_restricted() {
            return Ok(());
        }
        let host = url.host();
        if self.patterns.iter().any(|pattern| matches(pattern, &host)) {
            return Ok(());
        }
        Err(SourceHostDenied { host, allowed: self.patterns.join(", ") })
    }
}

fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source_url::SourceKind;

    #[test]
    fn source_hosts_match_names_and_subdomain_wildcards() {
        let hosts = SourceHosts::new(["git.example.com", "*.plugins.example.org"]);
        let at = |url: &str| hosts.check(&SourceUrl::parse(url, SourceKind::Git).unwrap());
        assert_eq!(at("https://git.example.com/unity.git"), Ok(()));
        assert_eq!(at("https://GIT.example.com:8443/unity.git"), Ok(()));
        assert_eq!(at("git@git.example.com:acme/unity.git"), Ok(()));
        assert_eq!(at("ssh://git@a.plugins.example.org/unity.git"), Ok(()));
        let denied = at("https://plugins.example.org/unity.git").unwrap_err();
        assert_eq!(denied.host, "plugins.example.org");
        assert!(denied.to_string().contains("git.example.com, *.plugins.example.org"));
        assert!(at("https://git.example.com.evil.net/x.git").is_err());
        assert!(at("https://evilgit.example.com/x.git").is_err());
        assert_eq!(
            SourceHosts::default()
                .check(&SourceUrl::parse("https://anywhere.example.net/x.git", SourceKind::Git).unwrap()),
            Ok(())
        );
    }
}
