//! The shared store: plugin packages published content-addressed under
//! `artifacts/sha256/<hex>/` (PRODUCT.md, "Store").
//!
//! An entry is written completely under a temporary name on the same volume and
//! then renamed into place, so a host never sees half a package; once published
//! it is never modified. Entries no FormatPlugin references are removed after a
//! grace period. Every operation is idempotent, so a restarted operator simply
//! runs it again.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wasmplug_crds::Artifact;
use wasmplug_host::plugin::{Digest, WASM_FILE};

/// Where published entries live, relative to the store root.
const ARTIFACTS_DIR: &str = "artifacts/sha256";
/// Where entries are assembled before they are renamed into place.
const STAGING_DIR: &str = ".staging";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to publish {digest}: {file} is not among the files to publish")]
    MissingWasm { digest: Digest, file: &'static str },
    #[error("failed to publish {digest}: plugin.wasm has digest {actual}; the store is content-addressed")]
    DigestMismatch { digest: Digest, actual: Digest },
    #[error("failed to {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_owned(), source }
}

/// Whether [`Store::publish`] wrote the entry or found it already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    Written,
    AlreadyPresent,
}

/// A store rooted at a directory (the shared volume's mount point).
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// The entry's path relative to the store root, as `status.artifact.path` says it.
    pub fn relative_path(digest: &Digest) -> String {
        Artifact::path_for(&digest.to_string())
    }

    /// The entry's directory.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        self.root.join(Self::relative_path(digest))
    }

    /// How many entries are published.
    pub fn count(&self) -> usize {
        let entries = fs::read_dir(self.root.join(ARTIFACTS_DIR));
        entries.map(|entries| entries.flatten().count()).unwrap_or(0)
    }

    /// Adds `name` to the published entry for `digest` unless it is already there
    /// with exactly these contents: written beside it under a temporary name and
    /// renamed, so a reader sees the whole file or none. This is how a component
    /// precompiled for another engine joins an entry; a file of that name with
    /// other contents (damaged, or changed by another writer) is replaced, since
    /// status will name the digest of `contents`.
    pub fn add_file(&self, digest: &Digest, name: &str, contents: &[u8]) -> Result<Published, StoreError> {
        let entry = self.path_of(digest);
        let target = entry.join(name);
        if holds(&target, contents) {
            return Ok(Published::AlreadyPresent);
        }
        let staging = self.root.join(STAGING_DIR).join(format!("{}-{name}-{}", digest.hex(), std::process::id()));
        let written = self
            .stage(&staging, &[(name, contents)])
            .and_then(|()| fs::rename(staging.join(name), &target).map_err(io("rename into place", &target)));
        let _ = fs::remove_dir_all(&staging);
        written.map(|()| Published::Written)
    }

    /// Publishes `files` (name, contents) as the entry for `digest`, the digest of
    /// the plugin.wasm among them. Writes into a staging directory, syncs, and
    /// renames; an entry that already exists is left untouched.
    pub fn publish(&self, digest: &Digest, files: &[(&str, &[u8])]) -> Result<Published, StoreError> {
        let wasm = files.iter().find(|(name, _)| *name == WASM_FILE);
        let wasm = wasm.ok_or(StoreError::MissingWasm { digest: *digest, file: WASM_FILE })?;
        let actual = Digest::of(wasm.1);
        if actual != *digest {
            return Err(StoreError::DigestMismatch { digest: *digest, actual });
        }
        let target = self.path_of(digest);
        if target.is_dir() {
            return Ok(Published::AlreadyPresent);
        }
        let staging = self.root.join(STAGING_DIR).join(format!("{}-{}", digest.hex(), std::process::id()));
        let written = self.stage(&staging, files).and_then(|()| {
            let parent = target.parent().unwrap_or(&self.root);
            fs::create_dir_all(parent).map_err(io("create", parent))?;
            fs::rename(&staging, &target).map_err(io("rename into place", &target))
        });
        match written {
            Ok(()) => Ok(Published::Written),
            // Another writer published the same content first; theirs is identical.
            Err(_) if target.is_dir() => {
                let _ = fs::remove_dir_all(&staging);
                Ok(Published::AlreadyPresent)
            }
            Err(error) => {
                let _ = fs::remove_dir_all(&staging);
                Err(error)
            }
        }
    }

    fn stage(&self, staging: &Path, files: &[(&str, &[u8])]) -> Result<(), StoreError> {
        if staging.exists() {
            fs::remove_dir_all(staging).map_err(io("remove stale", staging))?;
        }
        fs::create_dir_all(staging).map_err(io("create", staging))?;
        for (name, contents) in files {
            let path = staging.join(name);
            let mut file = fs::File::create(&path).map_err(io("create", &path))?;
            file.write_all(contents).map_err(io("write", &path))?;
            file.sync_all().map_err(io("sync", &path))?;
        }
        Ok(())
    }

    /// Removes what interrupted publishes left in the staging area. Returns how
    /// many were removed.
    pub fn remove_partial(&self) -> Result<usize, StoreError> {
        let staging = self.root.join(STAGING_DIR);
        let Ok(entries) = fs::read_dir(&staging) else { return Ok(0) };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io("remove partial", &path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes entries that are not `referenced` and were published more than
    /// `grace` before `now`. Returns the digests removed.
    pub fn collect_garbage(
        &self,
        referenced: &HashSet<Digest>,
        grace: Duration,
        now: SystemTime,
    ) -> Result<Vec<Digest>, StoreError> {
        let artifacts = self.root.join(ARTIFACTS_DIR);
        let Ok(entries) = fs::read_dir(&artifacts) else { return Ok(Vec::new()) };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let Ok(digest) = entry.file_name().to_string_lossy().parse::<Digest>() else { continue };
            if referenced.contains(&digest) {
                continue;
            }
            let published = entry.metadata().and_then(|m| m.modified()).map_err(io("inspect", &entry.path()))?;
            if now.duration_since(published).is_ok_and(|age| age >= grace) {
                fs::remove_dir_all(entry.path()).map_err(io("remove", &entry.path()))?;
                removed.push(digest);
            }
        }
        Ok(removed)
    }
}

/// Whether `path` is a regular file (not a link to one) holding exactly `contents`.
fn holds(path: &Path, contents: &[u8]) -> bool {
    let regular = fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == contents.len() as u64);
    regular && fs::read(path).is_ok_and(|found| found == contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &[u8] = b"[plugin]\nname = \"p\"\nversion = \"1.0.0\"\n[format]\nkey = \"p\"\n";

    fn files(wasm: &[u8]) -> Vec<(&'static str, &[u8])> {
        vec![("plugin.toml", MANIFEST), (WASM_FILE, wasm)]
    }

    #[test]
    fn publishes_content_addressed_and_never_rewrites() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::new(root.path());
        let digest = Digest::of(b"wasm v1");
        assert_eq!(store.publish(&digest, &files(b"wasm v1")).expect("publish"), Published::Written);
        let entry = store.path_of(&digest);
        assert_eq!(Store::relative_path(&digest), format!("artifacts/sha256/{}", digest.hex()));
        assert_eq!(fs::read(entry.join(WASM_FILE)).expect("read"), b"wasm v1");
        assert_eq!(fs::read(entry.join("plugin.toml")).expect("read"), MANIFEST);
        assert_eq!(store.publish(&digest, &files(b"wasm v1")).expect("again"), Published::AlreadyPresent);
        assert!(!root.path().join(STAGING_DIR).read_dir().expect("staging exists").any(|_| true), "nothing staged");
    }

    #[test]
    fn an_added_file_is_kept_when_equal_and_replaced_when_it_differs() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::new(root.path());
        let digest = Digest::of(b"wasm");
        store.publish(&digest, &files(b"wasm")).expect("publish");
        assert_eq!(store.add_file(&digest, "e.cwasm", b"native").expect("add"), Published::Written);
        assert_eq!(store.add_file(&digest, "e.cwasm", b"native").expect("again"), Published::AlreadyPresent);
        let path = store.path_of(&digest).join("e.cwasm");
        fs::write(&path, b"swapped").expect("tamper");
        assert_eq!(store.add_file(&digest, "e.cwasm", b"native").expect("restore"), Published::Written);
        assert_eq!(fs::read(&path).expect("read"), b"native");
    }

    #[test]
    fn refuses_content_that_does_not_match_its_address() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::new(root.path());
        let error = store.publish(&Digest::of(b"expected"), &files(b"other")).expect_err("mismatch");
        assert!(error.to_string().contains("the store is content-addressed"), "{error}");
        assert!(!root.path().join(ARTIFACTS_DIR).exists(), "nothing published");
        let error = store.publish(&Digest::of(b"x"), &[("plugin.toml", MANIFEST)]).expect_err("no wasm");
        assert!(error.to_string().contains("plugin.wasm is not among the files"), "{error}");
    }

    #[test]
    fn removes_partial_entries_and_collects_unreferenced_ones_after_the_grace_period() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::new(root.path());
        fs::create_dir_all(root.path().join(STAGING_DIR).join("interrupted")).expect("mkdir");
        assert_eq!(store.remove_partial().expect("clean"), 1);
        assert_eq!(store.remove_partial().expect("clean again"), 0);

        let (kept, old) = (Digest::of(b"kept"), Digest::of(b"old"));
        store.publish(&kept, &files(b"kept")).expect("publish");
        store.publish(&old, &files(b"old")).expect("publish");
        let referenced = HashSet::from([kept]);
        let grace = Duration::from_secs(600);
        let now = SystemTime::now();
        assert_eq!(store.collect_garbage(&referenced, grace, now).expect("gc"), [], "within the grace period");
        let later = now + grace + Duration::from_secs(1);
        assert_eq!(store.collect_garbage(&referenced, grace, later).expect("gc"), [old]);
        assert!(store.path_of(&kept).is_dir() && !store.path_of(&old).exists());
        assert_eq!(store.collect_garbage(&referenced, grace, later).expect("gc again"), []);
    }
}
