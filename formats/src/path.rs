//! Rules every artifact path must follow, whatever its format.

/// Checks that `path` is a safe relative artifact path: not empty, no leading
/// slash, no `.` or `..` segments, no empty segments, no backslashes or control
/// characters.
pub fn check(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the artifact path is empty; pass ?path=".to_owned());
    }
    if path.starts_with('/') {
        return Err(format!("artifact path {path:?} must be relative (no leading /)"));
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(format!("artifact path {path:?} must not contain backslashes or control characters"));
    }
    if let Some(segment) = path.split('/').find(|s| s.is_empty() || *s == "." || *s == "..") {
        let segment = if segment.is_empty() { "an empty segment" } else { segment };
        return Err(format!("artifact path {path:?} must not contain {segment}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_ordinary_paths() {
        for path in ["a.txt", "com/example/lib/1.0/lib-1.0.jar", "@scope/pkg/-/pkg-1.0.0.tgz"] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn rejects_unsafe_paths_saying_why() {
        let cases = [
            ("", "is empty"),
            ("/etc/passwd", "must be relative"),
            ("a/../b", "must not contain .."),
            ("a//b", "must not contain an empty segment"),
            ("./a", "must not contain ."),
            ("a\\b", "backslashes"),
            ("a\nb", "control characters"),
        ];
        for (path, reason) in cases {
            let error = check(path).expect_err(path);
            assert!(error.contains(reason), "{path:?}: {error}");
        }
    }
}
