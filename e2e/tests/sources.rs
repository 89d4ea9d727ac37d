//! Installing plugins from every source kind on the real control plane, with the
//! operator and a host running as processes: Git (tag, branch, commit), ZIP over
//! HTTP, a local path and builtins.

mod support;

use std::time::{Duration, Instant};

use support::{apply, format_plugin, sha256_hex, status, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{
    FileServer, GitServer, Served, Stack, control_plane, eventually, example_files, example_package, numbered_plugin,
    with_custom_section, with_version, zip,
};

const READY_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn installs_from_a_git_tag_and_records_tag_and_commit() {
    let ns = control_plane().namespace("git-tag").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("unity-format").expect("repository");
    let commit =
        repo.commit_package("package", &example_package("unity-format"), "unity-format 0.1.0").expect("commit");
    repo.tag("v0.1.0").expect("tag");

    let started = Instant::now();
    apply(
        ns.name(),
        &format_plugin(
            "unity",
            &format!("source:\n  git:\n    url: {}\n    ref:\n      tag: v0.1.0\n    path: package", repo.url()),
        ),
    )
    .await;
    wait_ready(ns.name(), "unity", READY_WITHIN).await;
    let served = eventually("the host to serve unity", READY_WITHIN, || async {
        let answer =
            stack.validate("unity", "x.unitypackage", b"not a unity package").await.map_err(|e| e.to_string())?;
        if answer.status == 422 { Ok(answer) } else { Err(format!("{answer:?}")) }
    })
    .await;
    eprintln!("git tag: apply → Ready and served in {:?}", started.elapsed());

    let status = status(&ns.api::<FormatPlugin>(), "unity").await;
    let artifact = status.artifact.expect("an artifact is published");
    assert_eq!(artifact.revision, format!("v0.1.0@sha1:{commit}"));
    let (_, wasm) = example_files("unity-format");
    assert_eq!(artifact.digest, format!("sha256:{}", sha256_hex(&wasm)));
    assert!(stack.store().join(&artifact.path).join("plugin.wasm").is_file());
    let precompiled = artifact.precompiled.expect("the operator precompiles");
    assert!(stack.store().join(&artifact.path).join(&precompiled.file).is_file());
    let plugin = status.plugin.expect("plugin info");
    assert_eq!((plugin.name.as_str(), plugin.format_key.as_str()), ("unity-format", "unity"));
    assert!(served.body.contains("not a Unity package"), "the plugin answered: {served:?}");
    let formats = stack.formats().await.expect("formats");
    assert_eq!(formats["unity"]["digest"], artifact.digest.as_str(), "{formats:?}");
}

#[tokio::test]
async fn follows_a_branch_every_interval_and_pins_a_commit() {
    let ns = control_plane().namespace("git-branch").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("misbehaving").expect("repository");
    let (manifest, wasm) = example_files("misbehaving");
    let first = repo.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)], "v1").expect("commit");

    apply(
        ns.name(),
        &format_plugin(
            "branch",
            &format!("source:\n  git:\n    url: {}\n    ref:\n      branch: main\ninterval: 1s", repo.url()),
        ),
    )
    .await;
    wait_ready(ns.name(), "branch", READY_WITHIN).await;
    let api = ns.api::<FormatPlugin>();
    assert_eq!(status(&api, "branch").await.artifact.expect("artifact").revision, format!("main@sha1:{first}"));

    let v2 = with_custom_section(&wasm, "wasmplug-test", b"v2");
    let second = repo.commit(&[("plugin.wasm", &v2)], "v2").expect("commit");
    let digest = format!("sha256:{}", sha256_hex(&v2));
    eventually("the branch's new commit to be published", Duration::from_secs(30), || async {
        let revision = status(&api, "branch").await.artifact.map(|a| a.revision).unwrap_or_default();
        if revision == format!("main@sha1:{second}") { Ok(()) } else { Err(revision) }
    })
    .await;
    eventually("the host to serve the new version", Duration::from_secs(30), || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        let served = formats.get("misbehaving").and_then(|f| f["digest"].as_str()).unwrap_or_default().to_owned();
        if served == digest { Ok(()) } else { Err(served) }
    })
    .await;

    // A commit is fetched exactly, whatever the branch does later.
    apply(
        ns.name(),
        &format_plugin("branch", &format!("source:\n  git:\n    url: {}\n    ref:\n      commit: {first}", repo.url())),
    )
    .await;
    wait_condition(&api, "branch", "True", "Succeeded").await;
    assert_eq!(status(&api, "branch").await.artifact.expect("artifact").revision, format!("sha1:{first}"));
}

#[tokio::test]
async fn installs_from_a_zip_url_a_local_path_and_a_builtin() {
    let ns = control_plane().namespace("zip-local").await;
    let local = example_package("npm-format");
    let dir = tempfile::tempdir().expect("tempdir");
    let roots = format!("--local-source-roots={},{}", local.display(), dir.path().display());
    let stack = Stack::start(ns.name(), &[&roots]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let (manifest, wasm) = example_files("unity-format");
    let url = files.put(
        "/unity-format-0.1.0.zip",
        Served::File(zip(&[
            ("unity-format-0.1.0/plugin.toml", &manifest),
            ("unity-format-0.1.0/plugin.wasm", &wasm),
            ("unity-format-0.1.0/README.md", b"# unity"),
        ])),
    );
    let started = Instant::now();
    apply(
        ns.name(),
        &format_plugin("unity", &format!("source:\n  url:\n    url: {url}\nsha256: \"{}\"", sha256_hex(&wasm))),
    )
    .await;
    wait_ready(ns.name(), "unity", READY_WITHIN).await;
    eprintln!("zip: apply → Ready in {:?}", started.elapsed());
    let api = ns.api::<FormatPlugin>();
    let revision = status(&api, "unity").await.artifact.expect("artifact").revision;
    assert!(revision.starts_with(&format!("{url}@sha256:")), "{revision}");

    apply(ns.name(), &format_plugin("npm-wasm", &format!("source:\n  local:\n    path: {}", local.display()))).await;
    let (numbered_manifest, numbered_wasm) = numbered_plugin(7);
    let local_zip = dir.path().join("numbered-7.zip");
    std::fs::write(&local_zip, zip(&[("plugin.toml", &numbered_manifest), ("plugin.wasm", &numbered_wasm)]))
        .expect("write");
    apply(ns.name(), &format_plugin("local-zip", &format!("source:\n  local:\n    path: {}", local_zip.display())))
        .await;
    apply(ns.name(), &format_plugin("maven", "source:\n  builtin:\n    format: maven")).await;
    wait_ready(ns.name(), "npm-wasm", READY_WITHIN).await;
    wait_ready(ns.name(), "maven", READY_WITHIN).await;
    wait_ready(ns.name(), "local-zip", READY_WITHIN).await;
    let revision = status(&api, "local-zip").await.artifact.expect("artifact").revision;
    assert!(revision.starts_with(&format!("file://{}@sha256:", local_zip.display())), "{revision}");

    eventually("the host to serve all three", READY_WITHIN, || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        let active = |key: &str| formats.get(key).is_some_and(|f| f["state"] == "active");
        if active("unity") && active("npm-wasm") && active("maven") && active("numbered-000007") {
            Ok(())
        } else {
            Err(format!("{formats:?}"))
        }
    })
    .await;
    let maven = stack.validate("maven", "com/acme/app/1.0/app-1.0.pom", b"<project/>").await.expect("call");
    assert_eq!(maven.served_by.as_deref(), Some("builtin"), "{maven:?}");
}

/// Refresh on demand: a rebuilt local package is read again when the
/// wasmplug.dev/requested-at annotation gets a new value (the plugin author's
/// inner loop), and status says which request was handled.
#[tokio::test]
async fn a_requested_at_annotation_fetches_the_source_again() {
    let ns = control_plane().namespace("requested-at").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let roots = format!("--local-source-roots={}", dir.path().display());
    let _stack = Stack::start(ns.name(), &[&roots]).await.expect("operator and host start");
    let (manifest, wasm) = numbered_plugin(20);
    std::fs::write(dir.path().join("plugin.toml"), &manifest).expect("write");
    std::fs::write(dir.path().join("plugin.wasm"), &wasm).expect("write");
    let spec = format!("source:\n  local:\n    path: {}", dir.path().display());
    apply(ns.name(), &format_plugin("dev", &spec)).await;
    wait_ready(ns.name(), "dev", READY_WITHIN).await;
    let api = ns.api::<FormatPlugin>();
    assert_eq!(status(&api, "dev").await.plugin.expect("plugin").version, "1.0.0");

    // The author rebuilds: a new version, new bytes.
    std::fs::write(dir.path().join("plugin.toml"), with_version(&manifest, "1.1.0")).expect("write");
    std::fs::write(dir.path().join("plugin.wasm"), with_custom_section(&wasm, "build", b"2")).expect("write");
    let annotate = ["annotate", "fp/dev", "-n", ns.name(), "wasmplug.dev/requested-at=1", "--overwrite"];
    control_plane().kubectl().succeed(&annotate).await;
    eventually("the rebuilt package to be published", READY_WITHIN, || async {
        let status = api.get("dev").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let version = status.plugin.as_ref().map(|p| p.version.clone()).unwrap_or_default();
        (version == "1.1.0" && status.last_handled_requested_at.as_deref() == Some("1"))
            .then_some(())
            .ok_or(format!("{version} {:?}", status.last_handled_requested_at))
    })
    .await;
}
