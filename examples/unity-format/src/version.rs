//! The version of a Unity package, from its path: a file name such as
//! `com.example.tools-1.2.3.unitypackage` or `Tools_v2.0.unitypackage`, or a
//! directory such as `tools/1.2.3/Tools.unitypackage`.

pub fn from_path(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.strip_suffix(crate::EXTENSION).unwrap_or(file);
    from_stem(stem).or_else(|| {
        let mut dirs = path.rsplit('/').skip(1);
        dirs.next().filter(|dir| is_version(dir)).map(|dir| dir.trim_start_matches('v').to_owned())
    })
}

/// The version after the last `-` or `_` of a file stem, if it looks like one.
fn from_stem(stem: &str) -> Option<String> {
    let (_, tail) = stem.rsplit_once(['-', '_'])?;
    is_version(tail).then(|| tail.trim_start_matches(['v', 'V']).to_owned())
}

/// Digits separated by dots, optionally led by `v` and followed by a pre-release.
fn is_version(text: &str) -> bool {
    let text = text.trim_start_matches(['v', 'V']);
    let core = text.split(['-', '+']).next().unwrap_or("");
    !core.is_empty() && core.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::from_path;

    #[test]
    fn versions_from_file_names_and_directories() {
        assert_eq!(from_path("com.example.tools-1.2.3.unitypackage").as_deref(), Some("1.2.3"));
        assert_eq!(from_path("packs/Tools_v2.0.unitypackage").as_deref(), Some("2.0"));
        assert_eq!(from_path("tools/1.4.0-beta.1/Tools.unitypackage").as_deref(), Some("1.4.0-beta.1"));
        assert_eq!(from_path("tools/Tools.unitypackage"), None);
        assert_eq!(from_path("my-tools.unitypackage"), None);
    }
}
