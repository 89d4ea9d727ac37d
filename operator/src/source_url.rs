//! A Git, URL or OCI source's address, read once, with the parser that fetches.
//!
//! Two parsers reading one string differently is how an allowlist is bypassed:
//! `http://other:80\@allowed/p.zip` names `allowed` to a split on `@` and
//! `other` to a URL parser. So a source URL is parsed with `url::Url` (what
//! reqwest fetches with), and refused unless its authority is written exactly as
//! that parser reads it back: no backslashes, no passwords or (except an SSH
//! user) user names, no percent-encoded or otherwise non-canonical hosts, no
//! empty ports. What remains is unambiguous, so libgit2 reads the same host.
//! Every check (allowlist, destinations, credentials) then uses [`SourceUrl`].

use url::{Host, Url};

/// Why a source URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlRefused {
    #[error("url {url:?} is not a valid URL ({reason}); write it as {example}")]
    Invalid { url: String, reason: String, example: &'static str },
    #[error("url {url:?} uses scheme {scheme:?}; {field} takes {allowed}")]
    Scheme { url: String, scheme: String, field: &'static str, allowed: &'static str },
    #[error(
        "url {url:?} carries credentials in its address; remove them and put them in a Secret \
         named by secretRef"
    )]
    Credentials { url: String },
    #[error(
        "url {url:?} names its host in a form other readers may take for another host ({authority:?}); \
         write it as {canonical}"
    )]
    Ambiguous { url: String, authority: String, canonical: String },
}

/// Which kind of source a URL belongs to: the schemes and forms each takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// `spec.source.url.url`: http:// or https://.
    Url,
    /// `spec.source.git.url`: https://, http://, ssh://, git:// or `user@host:path`.
    Git,
    /// `spec.source.oci.url`: oci://registry[:port]/repository, read as the
    /// https:// URL of the registry it is fetched from (so hosts, ports and
    /// addresses are read exactly as for the other kinds).
    Oci,
}

/// A source address that every reader reads the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceUrl {
    parsed: Url,
    /// What is handed to the fetcher: the canonical URL, or the scp-like form as
    /// written (libgit2 reads it; its host is checked to be plain).
    fetch: String,
}

/// Scheme, host and port: where credentials were configured for, and the only
/// place they are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}://{}:{port}", self.scheme, bracketed(&self.host)),
            None => write!(f, "{}://{}", self.scheme, bracketed(&self.host)),
        }
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

impl SourceUrl {
    /// Reads `raw` as the address of a `kind` source.
    pub fn parse(raw: &str, kind: SourceKind) -> Result<Self, UrlRefused> {
        let example = match kind {
            SourceKind::Url => "https://host[:port]/path.zip",
            SourceKind::Git => "https://host[:port]/repo.git, ssh://user@host/repo.git or user@host:repo.git",
            SourceKind::Oci => "oci://registry[:port]/repository",
        };
        let invalid = |reason: &str| UrlRefused::Invalid { url: raw.to_owned(), reason: reason.to_owned(), example };
        if raw.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains a backslash, a space or a control character"));
        }
        if kind == SourceKind::Git && !raw.contains("://") {
            return Self::parse_scp(raw).ok_or_else(|| invalid("an scp-like address is user@host:path"));
        }
        if kind == SourceKind::Oci {
            return Self::parse_oci(raw).map_err(|reason| match reason {
                Some(refused) => refused,
                None => invalid("an OCI repository is oci:// then the registry and the repository path"),
            });
        }
        let parsed = Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
        let allowed: &[&str] = match kind {
            SourceKind::Url => &["http", "https"],
            SourceKind::Git => &["http", "https", "ssh", "git"],
            SourceKind::Oci => &[],
        };
        if !allowed.contains(&parsed.scheme()) {
            let (field, allowed) = match kind {
                SourceKind::Url => ("spec.source.url.url", "http:// or https://"),
                SourceKind::Git => ("spec.source.git.url", "https://, http://, ssh:// or git://"),
                SourceKind::Oci => ("spec.source.oci.url", "oci://"),
            };
            let scheme = parsed.scheme().to_owned();
            return Err(UrlRefused::Scheme { url: raw.to_owned(), scheme, field, allowed });
        }
        let ssh_user = parsed.scheme() == "ssh" && parsed.password().is_none();
        if parsed.password().is_some() || (!parsed.username().is_empty() && !ssh_user) {
            return Err(UrlRefused::Credentials { url: raw.to_owned() });
        }
        if parsed.host().is_none() {
            return Err(invalid("it names no host"));
        }
        let written = authority_as_written(raw);
        let canonical = parsed.authority();
        if !written.eq_ignore_ascii_case(canonical) {
            return Err(UrlRefused::Ambiguous {
                url: raw.to_owned(),
                authority: written.to_owned(),
                canonical: parsed.as_str().to_owned(),
            });
        }
        Ok(SourceUrl { fetch: parsed.as_str().to_owned(), parsed })
    }

    /// `oci://registry/repository`, read as `https://registry/repository` under
    /// the rules of URL sources, with a repository path and nothing else (no
    /// query, fragment, tag or digest). `Err(None)` when it is not of that form.
    fn parse_oci(raw: &str) -> Result<Self, Option<UrlRefused>> {
        let Some(rest) = raw.strip_prefix("oci://") else {
            let scheme = raw.split_once("://").map_or(raw, |(scheme, _)| scheme).to_owned();
            return Err(Some(UrlRefused::Scheme {
                url: raw.to_owned(),
                scheme,
                field: "spec.source.oci.url",
                allowed: "oci://",
            }));
        };
        let https = Self::parse(&format!("https://{rest}"), SourceKind::Url).map_err(|refused| match refused {
            UrlRefused::Credentials { .. } => Some(UrlRefused::Credentials { url: raw.to_owned() }),
            UrlRefused::Ambiguous { authority, canonical, .. } => Some(UrlRefused::Ambiguous {
                url: raw.to_owned(),
                authority,
                canonical: canonical.replacen("https://", "oci://", 1),
            }),
            _ => None,
        })?;
        let path = https.parsed.path().trim_start_matches('/');
        let plain = |segment: &str| {
            !segment.is_empty()
                && segment.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        if https.parsed.query().is_some() || https.parsed.fragment().is_some() || !path.split('/').all(plain) {
            return Err(None);
        }
        Ok(SourceUrl { fetch: raw.to_owned(), parsed: https.parsed })
    }

    /// The registry (`host[:port]`, as written) and repository of an OCI source.
    pub fn oci_repository(&self) -> Option<(String, String)> {
        let rest = self.fetch.strip_prefix("oci://")?;
        let (registry, repository) = rest.split_once('/')?;
        Some((registry.to_ascii_lowercase(), repository.to_owned()))
    }

    /// `user@host:path`, with a plain user and host name (letters, digits, `.`,
    /// `-`, `_`) so that no reader can take another host from it.
    fn parse_scp(raw: &str) -> Option<Self> {
        let (user, rest) = raw.split_once('@')?;
        let (host, path) = rest.split_once(':')?;
        let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !plain(user) || !plain(host) || path.is_empty() {
            return None;
        }
        let parsed = Url::parse(&format!("ssh://{user}@{host}/{}", path.trim_start_matches('/'))).ok()?;
        Some(SourceUrl { parsed, fetch: raw.to_owned() })
    }

    /// The host, lowercased, without IPv6 brackets.
    pub fn host(&self) -> String {
        match self.parsed.host() {
            Some(Host::Domain(domain)) => domain.to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => String::new(),
        }
    }

    /// The host, when it is written as an address.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self.parsed.host() {
            Some(Host::Ipv4(ip)) => Some(ip.into()),
            Some(Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        }
    }

    /// The port, written or the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.parsed.port_or_known_default().or(match self.parsed.scheme() {
            "ssh" => Some(22),
            "git" => Some(9418),
            _ => None,
        })
    }

    pub fn origin(&self) -> Origin {
        Origin { scheme: self.parsed.scheme().to_owned(), host: self.host(), port: self.port() }
    }

    /// The origin of an address a fetcher reports (libgit2 asking for
    /// credentials), read leniently: it is compared, never fetched.
    pub fn origin_of(raw: &str) -> Option<Origin> {
        if !raw.contains("://") {
            return Self::parse_scp(raw).map(|url| url.origin());
        }
        let parsed = Url::parse(raw).ok()?;
        parsed.host()?;
        Some(SourceUrl { parsed, fetch: String::new() }.origin())
    }

    /// The parsed URL (scp-like addresses as the equivalent ssh:// URL).
    pub fn url(&self) -> &Url {
        &self.parsed
    }

    /// What the fetcher is given.
    pub fn as_fetched(&self) -> &str {
        &self.fetch
    }
}

/// The authority of `raw` as written: after `://`, up to the first `/`, `?` or
/// `#` (backslashes were refused before).
fn authority_as_written(raw: &str) -> &str {
    let rest = raw.split_once("://").map_or("", |(_, rest)| rest);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str, kind: SourceKind) -> Result<String, UrlRefused> {
        SourceUrl::parse(raw, kind).map(|url| url.host())
    }

    #[test]
    fn addresses_other_readers_could_take_for_another_host_are_refused() {
        for confused in [
            "http://other:8080\\@localhost/p.zip",
            "http://%6cocalhost/p.zip",
            "http://localhost:/p.zip",
            "http://0x7f.1/p.zip",
            "http://[::1]extra/p.zip",
            "http://localhost\t/p.zip",
        ] {
            assert!(host(confused, SourceKind::Url).is_err(), "{confused} must be refused");
        }
        // Unambiguous, and read as the fetch reads them: the host is `other`.
        assert_eq!(host("http://other:8080?@localhost/p.zip", SourceKind::Url).unwrap(), "other");
        assert_eq!(host("http://other:8080#@localhost/p.zip", SourceKind::Url).unwrap(), "other");
        let error = host("http://0x7f.1/p.zip", SourceKind::Url).unwrap_err().to_string();
        assert!(error.contains("write it as http://127.0.0.1/p.zip"), "{error}");
    }

    #[test]
    fn credentials_belong_in_a_secret_except_an_ssh_user() {
        for with_credentials in ["https://user:pw@host/p.zip", "https://token@host/p.zip", "ssh://git:pw@host/r.git"] {
            let kind = if with_credentials.starts_with("ssh") { SourceKind::Git } else { SourceKind::Url };
            assert!(
                matches!(SourceUrl::parse(with_credentials, kind), Err(UrlRefused::Credentials { .. })),
                "{with_credentials}"
            );
        }
        assert_eq!(host("ssh://git@Git.Example.com/acme/unity.git", SourceKind::Git).unwrap(), "git.example.com");
    }

    #[test]
    fn canonical_addresses_are_read_as_written() {
        assert_eq!(host("https://GIT.example.com:8443/unity.git", SourceKind::Git).unwrap(), "git.example.com");
        assert_eq!(host("http://127.0.0.1:8080/p.zip", SourceKind::Url).unwrap(), "127.0.0.1");
        assert_eq!(host("http://[::1]:8080/p.zip", SourceKind::Url).unwrap(), "::1");
        let scp = SourceUrl::parse("git@git.example.com:acme/unity.git", SourceKind::Git).unwrap();
        assert_eq!(
            (scp.host(), scp.port(), scp.as_fetched()),
            ("git.example.com".into(), Some(22), scp.fetch.as_str())
        );
        assert_eq!(scp.as_fetched(), "git@git.example.com:acme/unity.git");
        let https = SourceUrl::parse("https://host/a/../p.zip", SourceKind::Url).unwrap();
        assert_eq!(https.origin().to_string(), "https://host:443");
    }

    #[test]
    fn each_source_takes_its_own_schemes() {
        assert!(matches!(SourceUrl::parse("git://host/r.git", SourceKind::Url), Err(UrlRefused::Scheme { .. })));
        assert!(matches!(SourceUrl::parse("file:///etc/passwd", SourceKind::Git), Err(UrlRefused::Scheme { .. })));
        assert!(SourceUrl::parse("git://host/r.git", SourceKind::Git).is_ok());
        assert!(SourceUrl::parse("git@host@evil:r.git", SourceKind::Git).is_err());
        assert!(SourceUrl::parse("git@evil/x:r.git", SourceKind::Git).is_err());
        assert!(matches!(SourceUrl::parse("https://host/r", SourceKind::Oci), Err(UrlRefused::Scheme { .. })));
    }

    #[test]
    fn an_oci_repository_is_read_like_the_https_url_of_its_registry() {
        let oci = SourceUrl::parse("oci://Registry.example.com:5000/team/unity-format", SourceKind::Oci).unwrap();
        assert_eq!((oci.host(), oci.port()), ("registry.example.com".into(), Some(5000)));
        assert_eq!(oci.oci_repository(), Some(("registry.example.com:5000".into(), "team/unity-format".into())));
        assert_eq!(SourceUrl::parse("oci://127.0.0.1/p", SourceKind::Oci).unwrap().ip(), Some([127, 0, 0, 1].into()));
        for refused in [
            "oci://host",
            "oci://host/",
            "oci://host/Upper",
            "oci://host/repo:1.0",
            "oci://host/repo@sha256:00",
            "oci://host/a//b",
            "oci://host/repo?x",
            "oci://user:pw@host/repo",
            "oci://0x7f.1/repo",
            "oci://other:80\\@host/repo",
        ] {
            assert!(SourceUrl::parse(refused, SourceKind::Oci).is_err(), "{refused} must be refused");
        }
        let ambiguous = SourceUrl::parse("oci://0x7f.1/repo", SourceKind::Oci).unwrap_err().to_string();
        assert!(ambiguous.contains("write it as oci://127.0.0.1/repo"), "{ambiguous}");
    }
}
