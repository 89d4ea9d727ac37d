//! Every way a source can be wrong gives Ready=False with a reason and a message
//! that says what to do, leaves nothing partial in the store, and does not stop
//! the operator from reconciling other objects.

mod support;

use std::time::Duration;

use support::{apply, format_plugin, store_contents, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{FileServer, GitServer, Served, Stack, control_plane, eventually, example_files, zip};

#[tokio::test]
async fn each_bad_source_is_reported_and_leaves_nothing_behind() {
    let ns = control_plane().namespace("failures").await;
    let mut stack = Stack::start(ns.name(), &["--max-download=1Mi"]).await.expect("operator and host start");
    let git = GitServer::start().expect("git daemon starts");
    let files = FileServer::start().await.expect("file server starts");
    let (manifest, wasm) = example_files("unity-format");

    let no_manifest = git.create("no-manifest").expect("repo");
    no_manifest.commit(&[("plugin.wasm", &wasm)], "only wasm").expect("commit");
    let no_wasm = git.create("no-wasm").expect("repo");
    no_wasm.commit(&[("plugin.toml", &manifest)], "only manifest").expect("commit");
    let bad_manifest = git.create("bad-manifest").expect("repo");
    bad_manifest
        .commit(&[("plugin.toml", b"[plugin]\nname = \"Bad Name\"\nversion = \"1\"\n"), ("plugin.wasm", &wasm)], "bad")
        .expect("commit");
    let good = git.create("good").expect("repo");
    good.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)], "good").expect("commit");

    let mut corrupted = zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)]);
    corrupted.truncate(corrupted.len() / 3);
    let corrupted = files.put("/corrupted.zip", Served::File(corrupted));
    let escaping =
        files.put("/escaping.zip", Served::File(zip(&[("../plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    let oversized = files.put("/oversized.zip", Served::File(vec![b'P'; 2 << 20]));
    let missing = files.put("/gone.zip", Served::Status(404));
    let slow = files.put(
        "/slow.zip",
        Served::Trickle {
            bytes: zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)]),
            chunk: 1024,
            every: Duration::from_millis(100),
        },
    );
    let pinned = files.put("/pinned.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));

    let git_source =
        |url: &str, reference: &str| format!("source:\n  git:\n    url: {url}\n    ref:\n      {reference}");
    let url_source = |url: &str| format!("source:\n  url:\n    url: {url}");
    // (name, spec, reason, what the message must say)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unreachable",
            git_source("git://127.0.0.1:1/nothing", "branch: main"),
            "FetchFailed",
            "failed to reach git://127.0.0.1:1/nothing",
        ),
        ("no-repository", git_source(&git.missing_url(), "branch: main"), "FetchFailed", "check spec.source.git.url"),
        ("wrong-ref", git_source(good.url(), "tag: v9.9.9"), "FetchFailed", "failed to find tag v9.9.9"),
        ("no-manifest", git_source(no_manifest.url(), "branch: main"), "ValidationFailed", "has no plugin.toml"),
        ("no-wasm", git_source(no_wasm.url(), "branch: main"), "ValidationFailed", "has no plugin.wasm"),
        ("bad-manifest", git_source(bad_manifest.url(), "branch: main"), "ValidationFailed", "plugin.toml is invalid"),
        ("corrupted-zip", url_source(&corrupted), "FetchFailed", "not a valid ZIP archive"),
        ("escaping-zip", url_source(&escaping), "FetchFailed", "points outside the package"),
        ("oversized-zip", url_source(&oversized), "FetchFailed", "exceeds 1048576 bytes"),
        ("slow", format!("{}\ntimeout: 1s", url_source(&slow)), "FetchFailed", "within 1s; raise spec.timeout"),
        ("not-found", url_source(&missing), "FetchFailed", "answered 404; check spec.source.url"),
        // The example's memory starts at 2 MiB: no host could make an instance.
        (
            "memory-below-initial",
            format!("{}\nlimits: {{memory: 1Mi}}", git_source(good.url(), "branch: main")),
            "ValidationFailed",
            "more than the memory limit of 1048576 bytes",
        ),
        (
            "pin-mismatch",
            format!("{}\nsha256: \"{}\"", url_source(&pinned), "0".repeat(64)),
            "DigestMismatch",
            "failed to match spec.sha256",
        ),
    ];
    for (name, spec, _, _) in &cases {
        apply(ns.name(), &format_plugin(name, spec)).await;
    }
    // The API server's rules check a duration's syntax, not its size: this object
    // is stored but cannot be read. It must not stop anything else.
    let unreadable = "source:\n  builtin:\n    format: pypi\ntimeout: 99999999999999999999999h";
    apply(ns.name(), &format_plugin("unreadable", unreadable)).await;
    apply(ns.name(), &format_plugin("good", &git_source(good.url(), "branch: main"))).await;

    let api = ns.api::<FormatPlugin>();
    for (name, _, reason, says) in &cases {
        let message = wait_condition(&api, name, "False", reason).await;
        eprintln!("{name}: {reason}: {message}");
        assert!(message.contains(says), "{name}: {message:?} should say {says:?}");
    }
    wait_ready(ns.name(), "good", Duration::from_secs(60)).await;
    let kubectl = control_plane().kubectl();
    let ready =
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}"#;
    let unreadable = kubectl.succeed(&["get", "fp/unreadable", "-n", ns.name(), "-o", ready]).await;
    assert!(
        unreadable.starts_with("ValidationFailed: failed to read the FormatPlugin")
            && unreadable.contains("too long a duration"),
        "{unreadable}"
    );
    // A host that lists the namespace afresh still serves the good plugin.
    stack.restart_host().await.expect("the host restarts");
    let formats = stack.formats().await.expect("formats");
    assert_eq!(formats.keys().collect::<Vec<_>>(), ["unity"], "{formats:?}");

    let (published, staging) = store_contents(&stack.store());
    assert_eq!(published.len(), 1, "only the good plugin is published: {published:?}");
    assert!(staging.is_empty(), "nothing left in staging: {staging:?}");
    // The failed sources are retried with backoff, so a retry may be writing to
    // scratch right now; a fetch that leaked its directory would leave it there
    // between retries too.
    let scratch = stack.scratch().join("wasmplug-fetch");
    eventually("fetches to leave nothing in scratch", Duration::from_secs(30), || async {
        let entries: Vec<_> = std::fs::read_dir(&scratch).expect("scratch").flatten().map(|e| e.path()).collect();
        if entries.is_empty() { Ok(()) } else { Err(format!("{entries:?}")) }
    })
    .await;

    let events = control_plane()
        .kubectl()
        .succeed(&["get", "events", "-n", ns.name(), "-o", "jsonpath={.items[*].reason}"])
        .await;
    for reason in ["FetchFailed", "ValidationFailed", "DigestMismatch", "Installed"] {
        assert!(events.contains(reason), "an Event with reason {reason}: {events}");
    }
}
