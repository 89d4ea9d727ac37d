//! The shared store: plugin packages published content-addressed under
//! `artifacts/sha256/<hex>/` (PRODUCT.md, "Store").
//!
//! An entry is written completely under a temporary name on the same volume and
//! then renamed into place, so a host never sees half a package; once published
//! it is never modified. Entries no FormatPlugin references are removed after a
//! grace period, measured from when the entry was last published or referenced
//! again. Every operation is idempotent, so a restarted operator simply runs it
//! again.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wasmplug_crds::Artifact;
use wasmplug_host::plugin::{Digest, MANIFEST_FILE, WASM_FILE};
use wasmplug_host::untrusted_file::{self, FileError};

/// Where published entries live, relative to the store root.
const ARTIFACTS_DIR: &str = Artifact::PACKAGES_DIR;
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

    /// Opens the published file `name` of the entry for `digest`, for reading:
    /// only a package file name ([`is_package_file`]), and only as
    /// [`untrusted_file::open`] opens files (no link, no FIFO, a regular file).
    pub fn open_published(&self, digest: &Digest, name: &str) -> Result<fs::File, FileError> {
        let path = self.path_of(digest).join(name);
        if !is_package_file(name) {
            return Err(FileError { path, problem: "it is not a package file name".to_owned() });
        }
        untrusted_file::open(&path)
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
            refresh(&entry);
            return Ok(Published::AlreadyPresent);
        }
        let staging = self.stage(digest, &[(name, contents)])?;
        let written = fs::rename(staging.path().join(name), &target).map_err(io("rename into place", &target));
        refresh(&entry);
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
            refresh(&target);
            return Ok(Published::AlreadyPresent);
        }
        let staging = self.stage(digest, files)?;
        let parent = target.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(io("create", parent))?;
        match fs::rename(staging.path(), &target) {
            Ok(()) => Ok(Published::Written),
            // Another writer published the same content first; theirs is identical.
            Err(_) if target.is_dir() => {
                refresh(&target);
                Ok(Published::AlreadyPresent)
            }
            Err(error) => Err(io("rename into place", &target)(error)),
        }
    }

    /// Writes `files` into a staging directory of this writer's own (a unique
    /// name: writers of one digest, in one process or on other replicas, never
    /// share one), synced; removed when dropped unless renamed away.
    fn stage(&self, digest: &Digest, files: &[(&str, &[u8])]) -> Result<tempfile::TempDir, StoreError> {
        let staging = self.staging_dir(digest)?;
        for (name, contents) in files {
            let path = staging.path().join(name);
            let mut file = fs::File::create(&path).map_err(io("create", &path))?;
            file.write_all(contents).map_err(io("write", &path))?;
            file.sync_all().map_err(io("sync", &path))?;
        }
        Ok(staging)
    }

    /// A new, empty directory of this writer's own in the staging area, on the
    /// store's volume (so what is assembled there can be renamed into place);
    /// removed when dropped, and by [`Store::remove_partial`] if never dropped.
    pub fn staging_dir(&self, digest: &Digest) -> Result<tempfile::TempDir, StoreError> {
        let root = self.root.join(STAGING_DIR);
        fs::create_dir_all(&root).map_err(io("create", &root))?;
        tempfile::Builder::new()
            .prefix(&format!("{}-", digest.hex()))
            .tempdir_in(&root)
            .map_err(io("create a staging directory in", &root))
    }

    /// Removes what interrupted publishes left in the staging area. Returns how
    /// many were removed. Only a new leader calls this, before it writes: any
    /// staging directory then belongs to a writer that is gone.
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

/// Whether `name` is the name of a file a published package may hold:
/// plugin.toml, plugin.wasm, or `<engine identifier>.cwasm`.
pub fn is_package_file(name: &str) -> bool {
    name == MANIFEST_FILE
        || name == WASM_FILE
        || name.strip_suffix(".cwasm").is_some_and(wasmplug_crds::Precompiled::is_valid_engine)
}

/// Starts a new grace period for the entry at `entry`: it is referenced again,
/// and status is about to point at it. (Its modification time is what the
/// collector measures the grace period from.) Best effort: an entry whose time
/// cannot be set is still correct, only less protected.
fn refresh(entry: &Path) {
    if let Err(error) = fs::File::open(entry).and_then(|dir| dir.set_modified(SystemTime::now())) {
        tracing::warn!(entry = %entry.display(), %error, "failed to refresh a store entry's age");
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
    fn opens_only_published_package_files() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::new(root.path());
        let digest = Digest::of(b"wasm");
        store.publish(&digest, &files(b"wasm")).expect("publish");
        let engine_file = "wasmtime-x86_64-0123456789abcdef.cwasm";
        store.add_file(&digest, engine_file, b"native").expect("add");
        for name in [WASM_FILE, MANIFEST_FILE, engine_file] {
            assert!(store.open_published(&digest, name).is_ok(), "{name}");
        }
        std::os::unix::fs::symlink(
            "/etc/passwd",
            store.path_of(&digest).join("wasmtime-x86_64-aaaaaaaaaaaaaaaa.cwasm"),
        )
        .expect("plant a link");
        for name in ["", ".", "..", "../../../etc/passwd", "x.cwasm", "wasmtime-x86_64-aaaaaaaaaaaaaaaa.cwasm"] {
            assert!(store.open_published(&digest, name).is_err(), "{name:?}");
        }
        assert!(store.open_published(&Digest::of(b"other"), WASM_FILE).is_err(), "not published");
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

    /// Finding 8 of issue 11: concurrent publishes of one digest shared one
    /// staging name (`<hex>-<pid>`, and the pid is 1 in every container).
    #[test]
    fn concurrent_writers_of_one_digest_never_collide() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::new(root.path());
        let mut failures = Vec::new();
        for trial in 0..150u32 {
            let wasm = format!("wasm {trial}").into_bytes();
            let digest = Digest::of(&wasm);
            let results: Vec<_> = std::thread::scope(|scope| {
                let writers: Vec<_> = (0..4)
                    .map(|n| {
                        let (store, wasm) = (&store, &wasm);
                        scope.spawn(move || match n % 2 {
                            0 => store.publish(&digest, &files(wasm)).map(drop),
                            _ => store
                                .publish(&digest, &files(wasm))
                                .and_then(|_| store.add_file(&digest, "engine.cwasm", b"native"))
                                .map(drop),
                        })
                    })
                    .collect();
                writers.into_iter().map(|w| w.join().expect("writer")).collect()
            });
            failures.extend(results.into_iter().filter_map(Result::err).map(|e| e.to_string()));
        }
        assert!(failures.is_empty(), "{} failed writes, e.g. {:?}", failures.len(), failures.first());
        assert!(!root.path().join(STAGING_DIR).read_dir().expect("staging exists").any(|_| true), "nothing left");
    }

    /// An entry referenced again (re-published or given another file) starts a
    /// new grace period: the collector never removes what status is about to
    /// point at because it was unreferenced once, long ago.
    #[test]
    fn an_entry_published_again_starts_a_new_grace_period() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::new(root.path());
        let digest = Digest::of(b"again");
        store.publish(&digest, &files(b"again")).expect("publish");
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        fs::File::open(store.path_of(&digest)).and_then(|dir| dir.set_modified(long_ago)).expect("age it");
        assert_eq!(store.publish(&digest, &files(b"again")).expect("publish again"), Published::AlreadyPresent);
        let grace = Duration::from_secs(600);
        assert_eq!(store.collect_garbage(&HashSet::new(), grace, SystemTime::now()).expect("gc"), []);
        fs::File::open(store.path_of(&digest)).and_then(|dir| dir.set_modified(long_ago)).expect("age it");
        store.add_file(&digest, "engine.cwasm", b"native").expect("add");
        store.add_file(&digest, "engine.cwasm", b"native").expect("add again");
        assert_eq!(store.collect_garbage(&HashSet::new(), grace, SystemTime::now()).expect("gc"), []);
    }
}
