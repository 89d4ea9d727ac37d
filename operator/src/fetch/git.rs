//! Git sources through libgit2: fetch one ref (a branch or tag shallowly; every
//! ref when a commit is named) into a temporary bare repository, resolve the
//! commit, and read the package from the commit's tree without a checkout, so no
//! working-tree file (or link) from the repository ever touches the disk.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, ErrorClass, ErrorCode, FetchOptions, ObjectType, Oid, RemoteCallbacks,
    RemoteRedirect, Repository,
};
use wasmplug_crds::GitRef;

use super::{Credentials, FetchError, FetchLimits, Fetched, PACKAGE_FILES, archive};
use crate::source_url::{Origin, SourceUrl};

/// What to fetch.
#[derive(Clone, Debug)]
pub struct GitRequest<'a> {
    /// The repository, as checked against the source policy.
    pub url: &'a SourceUrl,
    pub reference: Option<&'a GitRef>,
    /// A directory (holding the package files) or ZIP file inside the repository.
    pub path: Option<&'a str>,
    pub credentials: Option<&'a Credentials>,
}

/// Longest libgit2 waits to connect to a server, and for any one read or write
/// on the connection: a server that falls silent ends the fetch within this,
/// where the transfer-progress deadline is never checked.
const SERVER_TIMEOUT_MS: i32 = 10_000;

/// Sets libgit2's process-wide server timeouts, once.
fn set_server_timeouts() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        // SAFETY: libgit2 options must not change while another thread uses
        // libgit2; `Once` runs this before the first fetch uses it, and
        // nothing else in the operator changes these options.
        #[allow(unsafe_code)]
        let set = unsafe {
            git2::opts::set_server_connect_timeout_in_milliseconds(SERVER_TIMEOUT_MS)
                .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(SERVER_TIMEOUT_MS))
        };
        if let Err(error) = set {
            tracing::warn!(%error, "failed to set libgit2's server timeouts; fetches rely on spec.timeout alone");
        }
    });
}

/// Fetches the package `request` names, using `scratch` for the temporary
/// repository. Blocking; run it off the async executor.
pub fn fetch(request: &GitRequest<'_>, scratch: &Path, limits: &FetchLimits) -> Result<Fetched, FetchError> {
    set_server_timeouts();
    let url = request.url.as_fetched();
    let fail = |reason: String, transient: bool| FetchError::Git { url: url.to_owned(), reason, transient };
    let dir = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(scratch)
        .map_err(|e| fail(format!("failed to create a scratch directory in {}: {e}", scratch.display()), true))?;
    let repo = Repository::init_bare(dir.path()).map_err(|e| fail(e.message().to_owned(), true))?;
    let target = Target::of(request.reference);
    let label = target.label();

    let deadline = Instant::now() + limits.timeout;
    let stopped_for_time = AtomicBool::new(false);
    let stopped_for_size = AtomicBool::new(false);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(|progress| {
        if Instant::now() > deadline {
            stopped_for_time.store(true, Ordering::Relaxed);
            return false;
        }
        if progress.received_bytes() as u64 > limits.max_download_bytes {
            stopped_for_size.store(true, Ordering::Relaxed);
            return false;
        }
        true
    });
    if let Some(credentials) = request.credentials {
        let origin = request.url.origin();
        callbacks.credentials(move |asked_by, username_from_url, _| {
            only_for(&origin, asked_by)?;
            credential(credentials, username_from_url)
        });
        if let Some(known_hosts) = credentials.known_hosts.as_deref() {
            callbacks.certificate_check(move |cert, host| check_host_key(known_hosts, cert, host));
        }
    }
    let mut options = FetchOptions::new();
    // Another site is another host: the allowlist was checked for this one.
    options.remote_callbacks(callbacks).download_tags(AutotagOption::None).follow_redirects(RemoteRedirect::None);
    if request.reference.is_none_or(|r| r.commit.is_none()) {
        options.depth(1);
    }
    let mut remote = repo.remote_anonymous(url).map_err(|e| fail(e.message().to_owned(), false))?;
    let fetched = remote.fetch(&target.refspecs, Some(&mut options), None);
    drop(options);
    if let Err(error) = fetched {
        if stopped_for_time.load(Ordering::Relaxed) {
            return Err(FetchError::TimedOut { url: url.to_owned(), timeout: limits.timeout });
        }
        if stopped_for_size.load(Ordering::Relaxed) {
            return Err(FetchError::TooLarge { url: url.to_owned(), max: limits.max_download_bytes });
        }
        return Err(classify(url, &label, error));
    }

    let commit = match target.kind {
        "commit" => Oid::from_str(target.name).and_then(|oid| repo.find_commit(oid)),
        _ => repo.find_reference(&target.local_ref).and_then(|r| r.peel_to_commit()),
    }
    .map_err(|_| FetchError::RefNotFound { url: url.to_owned(), what: label.clone() })?;
    let revision = target.revision(commit.id());
    read_package(&repo, &commit, request, revision, limits)
}

/// What to fetch for a ref, and where it lands in the scratch repository.
struct Target<'a> {
    refspecs: Vec<String>,
    local_ref: String,
    kind: &'static str,
    /// The branch, tag or commit named (HEAD when no ref is given).
    name: &'a str,
}

impl<'a> Target<'a> {
    fn of(reference: Option<&'a GitRef>) -> Self {
        match reference {
            Some(GitRef { branch: Some(branch), .. }) => Target {
                refspecs: vec![format!("+refs/heads/{branch}:refs/remotes/origin/{branch}")],
                local_ref: format!("refs/remotes/origin/{branch}"),
                kind: "branch",
                name: branch,
            },
            Some(GitRef { tag: Some(tag), .. }) => Target {
                refspecs: vec![format!("+refs/tags/{tag}:refs/tags/{tag}")],
                local_ref: format!("refs/tags/{tag}"),
                kind: "tag",
                name: tag,
            },
            Some(GitRef { commit: Some(commit), .. }) => Target {
                refspecs: vec!["+refs/heads/*:refs/remotes/origin/*".into(), "+refs/tags/*:refs/tags/*".into()],
                local_ref: String::new(),
                kind: "commit",
                name: commit,
            },
            _ => Target {
                refspecs: vec!["+HEAD:refs/remotes/origin/HEAD".into()],
                local_ref: "refs/remotes/origin/HEAD".into(),
                kind: "default branch",
                name: "HEAD",
            },
        }
    }

    /// How messages name the ref, e.g. "tag v1.0.0".
    fn label(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }

    /// `status.artifact.revision` for `commit`: `v1.0.0@sha1:<id>`, or `sha1:<id>`
    /// when a commit was asked for.
    fn revision(&self, commit: Oid) -> String {
        match self.kind {
            "commit" => format!("sha1:{commit}"),
            _ => format!("{}@sha1:{commit}", self.name),
        }
    }
}

/// Refuses to answer a credential request from anywhere but `origin`, the
/// origin the credentials were configured for.
fn only_for(origin: &Origin, asked_by: &str) -> Result<(), git2::Error> {
    match SourceUrl::origin_of(asked_by) {
        Some(asking) if asking == *origin => Ok(()),
        _ => Err(git2::Error::from_str(&format!(
            "credentials are configured for {origin}; refusing to send them to {asked_by}"
        ))),
    }
}

fn credential(credentials: &Credentials, username_from_url: Option<&str>) -> Result<Cred, git2::Error> {
    if let Some(identity) = &credentials.identity {
        let username = credentials.username.as_deref().or(username_from_url).unwrap_or("git");
        return Cred::ssh_key_from_memory(username, None, identity, None);
    }
    let username = credentials.username.as_deref().or(username_from_url).unwrap_or("git");
    let password = credentials.password.as_deref().or(credentials.token.as_deref()).unwrap_or_default();
    Cred::userpass_plaintext(username, password)
}

/// Accepts an SSH server only when its host key is among `known_hosts` (lines of
/// `host[,host…] key-type base64-key`, as ssh-keyscan prints them; hashed host
/// names are not supported). Other certificates (TLS) are left to libgit2.
fn check_host_key(
    known_hosts: &str,
    cert: &git2::cert::Cert<'_>,
    host: &str,
) -> Result<CertificateCheckStatus, git2::Error> {
    let Some(key) = cert.as_hostkey().and_then(|hostkey| hostkey.hostkey()) else {
        return Ok(CertificateCheckStatus::CertificatePassthrough);
    };
    if is_known_host(known_hosts, host, key) {
        Ok(CertificateCheckStatus::CertificateOk)
    } else {
        Err(git2::Error::from_str(&format!(
            "the host key of {host} is not in known_hosts of the Secret; add the line `ssh-keyscan {host}` prints"
        )))
    }
}

fn is_known_host(known_hosts: &str, host: &str, key: &[u8]) -> bool {
    use base64::Engine as _;
    known_hosts.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(encoded)) = (fields.next(), fields.next(), fields.next()) else {
            return false;
        };
        let names_host = hosts.split(',').any(|name| {
            name == host || name.strip_prefix('[').and_then(|n| n.split_once("]:")).is_some_and(|(n, _)| n == host)
        });
        names_host && base64::engine::general_purpose::STANDARD.decode(encoded).is_ok_and(|decoded| decoded == key)
    })
}

fn classify(url: &str, label: &str, error: git2::Error) -> FetchError {
    let message = error.message().to_owned();
    if error.code() == ErrorCode::NotFound || message.contains("couldn't find remote ref") {
        return FetchError::RefNotFound { url: url.to_owned(), what: label.to_owned() };
    }
    const NO_REPOSITORY: [&str; 3] = ["repository not exported", "repository not found", "status code: 404"];
    if NO_REPOSITORY.iter().any(|text| message.contains(text)) {
        return FetchError::Git {
            url: url.to_owned(),
            reason: format!("{message}; check spec.source.git.url (and secretRef, for a private repository)"),
            transient: false,
        };
    }
    if error.code() == ErrorCode::Auth {
        return FetchError::Git {
            url: url.to_owned(),
            reason: format!("authentication failed ({message}); check spec.source.git.secretRef"),
            transient: false,
        };
    }
    match error.class() {
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssl | ErrorClass::Http | ErrorClass::Ssh => {
            FetchError::Unreachable { url: url.to_owned(), reason: message }
        }
        _ => FetchError::Git { url: url.to_owned(), reason: message, transient: false },
    }
}

fn read_package(
    repo: &Repository,
    commit: &git2::Commit<'_>,
    request: &GitRequest<'_>,
    revision: String,
    limits: &FetchLimits,
) -> Result<Fetched, FetchError> {
    let url = request.url.as_fetched();
    let path = request.path.unwrap_or("").trim_matches('/');
    let tree =
        commit.tree().map_err(|e| FetchError::Git { url: url.into(), reason: e.message().into(), transient: false })?;
    let not_found = || FetchError::PathNotFound { url: url.into(), revision: revision.clone(), path: path.into() };
    let at = if path.is_empty() { format!("{url} at {revision}") } else { format!("{url} at {revision}, {path}") };
    // Named by id and kind only: nothing is inflated before its size is known.
    let (id, kind) = if path.is_empty() {
        (tree.id(), Some(ObjectType::Tree))
    } else {
        let entry = tree.get_path(Path::new(path)).map_err(|_| not_found())?;
        (entry.id(), entry.kind())
    };
    let odb =
        repo.odb().map_err(|e| FetchError::Git { url: url.into(), reason: e.message().into(), transient: false })?;
    // An object's size is read from its header before it is inflated, so a
    // small repository that names a huge blob (or one many times) costs nothing.
    // `room` is what is left of `max`, the limit reported.
    let read_blob = |id: Oid, room: u64, max: u64| -> Result<git2::Blob<'_>, FetchError> {
        let (size, _) = odb.read_header(id).map_err(|_| not_found())?;
        if size as u64 > room {
            return Err(FetchError::TooLarge { url: url.into(), max });
        }
        repo.find_blob(id).map_err(|_| not_found())
    };
    match kind {
        Some(ObjectType::Tree) => {
            let dir = repo.find_tree(id).map_err(|_| not_found())?;
            let mut files = Vec::new();
            let mut room = limits.archive.max_unpacked_bytes;
            // The package files by name; nothing else in the tree is read.
            for name in PACKAGE_FILES {
                let Some(entry) = dir.get_name(name) else { continue };
                // Blobs only: 0o120000 is a link, which a package must not contain.
                if entry.kind() != Some(ObjectType::Blob) || entry.filemode() == 0o120000 {
                    continue;
                }
                let blob = read_blob(entry.id(), room, limits.archive.max_unpacked_bytes)?;
                room -= blob.size() as u64;
                files.push((name.to_owned(), blob.content().to_vec()));
            }
            Ok(Fetched::from_files(at, revision, files))
        }
        Some(ObjectType::Blob) => {
            let blob = read_blob(id, limits.max_download_bytes, limits.max_download_bytes)?;
            if !archive::is_zip(blob.content()) {
                return Err(FetchError::Archive { at, reason: "the path is a file but not a ZIP archive".into() });
            }
            archive::unpack(&at, revision, blob.content(), &limits.archive)
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_answer_only_their_own_origin() {
        let kind = crate::source_url::SourceKind::Git;
        let origin = SourceUrl::parse("https://git.example.com/acme/unity.git", kind).unwrap().origin();
        assert!(only_for(&origin, "https://git.example.com/other/repo.git").is_ok());
        assert!(only_for(&origin, "https://GIT.example.com:443/acme/unity.git").is_ok());
        for elsewhere in [
            "https://mirror.example.com/acme/unity.git",
            "http://git.example.com/acme/unity.git",
            "https://git.example.com:8443/acme/unity.git",
            "not a url",
        ] {
            let refused = only_for(&origin, elsewhere).unwrap_err();
            assert!(refused.message().contains("refusing to send them"), "{elsewhere}: {refused}");
        }
    }

    #[test]
    fn a_host_key_is_known_only_for_its_host_and_bytes() {
        let key = b"\x00\x00\x00\x0bssh-ed25519key-bytes";
        let encoded = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(key)
        };
        let known = format!("# comment\ngit.example.com,[mirror.example.com]:2222 ssh-ed25519 {encoded}\n");
        assert!(is_known_host(&known, "git.example.com", key));
        assert!(is_known_host(&known, "mirror.example.com", key));
        assert!(!is_known_host(&known, "evil.example.com", key));
        assert!(!is_known_host(&known, "git.example.com", b"another key"));
        assert!(!is_known_host("garbage", "git.example.com", key));
    }
}
