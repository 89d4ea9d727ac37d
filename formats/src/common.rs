//! Small rules several builtin formats share: metadata records and the order of
//! versions.

use std::cmp::Ordering;

use crate::Metadata;

/// The metadata of an accepted artifact. The checksum is left out: the host
/// fills in the SHA-256 of what it was given, natively, for builtins and
/// plugins alike (the Artifact Keeper contract), so no format hashes twice.
pub fn metadata(path: &str, version: Option<String>, content_type: &str, data: &[u8]) -> Metadata {
    Metadata {
        path: path.to_owned(),
        version,
        content_type: content_type.to_owned(),
        size_bytes: data.len() as u64,
        checksum_sha256: None,
    }
}

/// Orders versions the way people expect across formats: semantic versions by
/// semver; otherwise dot- and dash-separated parts, numbers numerically.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    if let (Ok(a), Ok(b)) = (semver::Version::parse(a), semver::Version::parse(b)) {
        return a.cmp(&b);
    }
    let parts = |v: &str| v.split(['.', '-', '+']).map(str::to_owned).collect::<Vec<_>>();
    for (x, y) in parts(a).iter().zip(parts(b).iter()) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Ok(_)) => Ordering::Less,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    parts(a).len().cmp(&parts(b).len())
}

/// The greatest of `versions` by [`compare_versions`].
pub fn latest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions.into_iter().max_by(|a, b| compare_versions(a, b))
}

/// Escapes text for XML and HTML element content and attribute values.
pub fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert_eq!(latest(["1.2.0", "1.10.0", "1.9.3"]), Some("1.10.0"));
        assert_eq!(latest(["2.0", "10.1", "9.99"]), Some("10.1"));
        assert_eq!(compare_versions("1.0.0-beta.1", "1.0.0"), Ordering::Less);
        assert_eq!(compare_versions("3.1.4.1", "3.1.4"), Ordering::Greater);
    }
}
