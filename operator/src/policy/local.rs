//! Which paths of the operator's own filesystem `local` sources may read.
//!
//! A `local` source is a development convenience: whoever may create a
//! FormatPlugin names a path, and the operator reads it. Left open, that is any
//! file of the operator's pod (its service account token, /dev/zero, a FIFO that
//! never answers). So local sources read only under roots the operator was
//! started with, and none by default. A path is resolved (links, `..`) before it
//! is compared with the roots, and a path that is not under them gets the same
//! answer whether or not it exists, so the check tells nobody what the pod holds.

use std::path::{Path, PathBuf};

/// Why a `local` source may not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocalPathDenied {
    #[error(
        "local sources are turned off: the operator reads no path of its own filesystem unless started with \
         --local-source-roots (the chart's operator.localSourceRoots); use a git or url source, or turn local \
         sources on for development"
    )]
    Disabled,
    #[error(
        "source.local.path {path:?} is not a file or directory under the operator's local source roots \
         ({roots}); put the package under one of them"
    )]
    OutsideRoots { path: String, roots: String },
}

/// The directories `local` sources may read under; empty turns them off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalRoots {
    /// Resolved (canonical) directories.
    roots: Vec<PathBuf>,
}

impl LocalRoots {
    /// The roots `dirs`, resolved now; each must be an existing directory.
    pub fn new(dirs: impl IntoIterator<Item = impl AsRef<Path>>) -> Result<Self, String> {
        let mut roots = Vec::new();
        for dir in dirs {
            let dir = dir.as_ref();
            let resolved = std::fs::canonicalize(dir)
                .map_err(|e| format!("local source root {} cannot be resolved: {e}", dir.display()))?;
            if !resolved.is_dir() {
                return Err(format!("local source root {} is not a directory", dir.display()));
            }
            roots.push(resolved);
        }
        Ok(LocalRoots { roots })
    }

    pub fn is_enabled(&self) -> bool {
        !self.roots.is_empty()
    }

    /// The resolved path of `path` when it is under a root: the one path a
    /// fetch may then read.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, LocalPathDenied> {
        if !self.is_enabled() {
            return Err(LocalPathDenied::Disabled);
        }
        std::fs::canonicalize(path)
            .ok()
            .filter(|resolved| self.roots.iter().any(|root| resolved.starts_with(root)))
            .ok_or_else(|| LocalPathDenied::OutsideRoots { path: path.to_owned(), roots: self.to_string() })
    }
}

impl std::fmt::Display for LocalRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots: Vec<String> = self.roots.iter().map(|root| root.display().to_string()).collect();
        f.write_str(&roots.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_roots_no_path_is_read() {
        assert_eq!(LocalRoots::default().resolve("/dev/zero"), Err(LocalPathDenied::Disabled));
        assert_eq!(LocalRoots::new(Vec::<PathBuf>::new()).unwrap().resolve("/"), Err(LocalPathDenied::Disabled));
    }

    #[test]
    fn only_paths_that_resolve_under_a_root_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("plugins");
        std::fs::create_dir_all(root.join("unity")).unwrap();
        std::fs::write(dir.path().join("secret"), "token").unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("secret")).unwrap();
        let roots = LocalRoots::new([&root]).unwrap();
        let canonical_root = std::fs::canonicalize(&root).unwrap();

        let unity = root.join("unity");
        assert_eq!(roots.resolve(unity.to_str().unwrap()), Ok(canonical_root.join("unity")));
        let outside = |path: PathBuf| {
            let path = path.display().to_string();
            assert!(
                matches!(roots.resolve(&path), Err(LocalPathDenied::OutsideRoots { path: p, .. }) if p == path),
                "{path} must be refused"
            );
        };
        outside(root.join("../secret"));
        outside(root.join("zero"));
        outside(root.join("secret"));
        outside(PathBuf::from("/dev/zero"));
        outside(dir.path().to_owned());
        // A sibling that shares the root's name as a prefix is not under it.
        std::fs::create_dir_all(dir.path().join("plugins-evil")).unwrap();
        outside(dir.path().join("plugins-evil"));
    }

    #[test]
    fn the_answer_outside_the_roots_does_not_say_whether_a_path_exists() {
        let dir = tempfile::tempdir().unwrap();
        let roots = LocalRoots::new([dir.path()]).unwrap();
        let message = |path: &str| roots.resolve(path).unwrap_err().to_string().replace(path, "<path>");
        assert_eq!(message("/etc/hostname"), message("/etc/no-such-file"));
    }

    #[test]
    fn roots_must_be_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LocalRoots::new([dir.path().join("missing")]).unwrap_err().contains("cannot be resolved"));
        std::fs::write(dir.path().join("file"), "").unwrap();
        assert!(LocalRoots::new([dir.path().join("file")]).unwrap_err().contains("not a directory"));
    }
}
