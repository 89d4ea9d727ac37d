//! The operator's trust invariants against the real binaries and API server:
//! what a tenant who may create FormatPlugins tries, and what the operator does
//! instead (PRODUCT.md, "Trust invariants" 3–5; docs/operations.md, "Security").

mod support;

use std::time::Duration;

use support::{apply, format_plugin, refused, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{FileServer, GitServer, Served, Stack, Webhooked, control_plane, eventually, zip};

const SOON: Duration = Duration::from_secs(60);

/// Invariant 4: `local` sources read only under the operator's roots. A path
/// outside them (a device, a link out, `..`) is refused without being opened,
/// whether the webhook sees it or only the controller does, and a FIFO inside
/// them is refused instead of hanging the fetch.
#[tokio::test]
async fn local_sources_read_only_regular_files_under_the_configured_roots() {
    let ns = control_plane().namespace("local-roots").await;
    let root = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/dev/zero", root.path().join("zero")).expect("link");
    let fifo = root.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
    let roots = format!("--local-source-roots={}", root.path().display());
    let mut webhook = Webhooked::start(ns.name(), &[&roots]).await.expect("operator and host start");
    let api = ns.api::<FormatPlugin>();
    let local = |path: &str| format!("source:\n  local:\n    path: {path}\ntimeout: 5s");

    // Stored before the webhook is registered: the controller refuses them.
    let escapes = [
        ("zero", "/dev/zero".to_owned()),
        ("link-out", root.path().join("zero").display().to_string()),
        ("dot-dot", root.path().join("../../proc/self/environ").display().to_string()),
    ];
    for (name, path) in &escapes {
        apply(ns.name(), &format_plugin(name, &local(path))).await;
    }
    for (name, path) in &escapes {
        let message = wait_condition(&api, name, "False", "SourceNotAllowed").await;
        assert!(message.contains(&format!("{path:?} is not a file or directory under")), "{message}");
    }
    apply(ns.name(), &format_plugin("fifo", &local(&fifo.display().to_string()))).await;
    let message = wait_condition(&api, "fifo", "False", "FetchFailed").await;
    assert!(message.contains("it is not a regular file"), "{message}");
    assert!(webhook.stack.operator.process.is_running(), "the operator survived");
    assert!(webhook.stack.operator.is_leading().await, "and still leads");

    // With the webhook, they are refused at apply time.
    webhook.register().await.expect("the webhook is registered");
    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("late", &local("/dev/zero"))).await;
    assert!(stderr.contains("\"/dev/zero\" is not a file or directory under"), "{stderr}");
    assert!(api.get_opt("late").await.expect("get").is_none(), "the refused object was not stored");
}

/// Invariant 4, the default: an operator started without roots reads no local
/// path at all, and says how to turn local sources on.
#[tokio::test]
async fn without_roots_local_sources_are_off() {
    let ns = control_plane().namespace("local-off").await;
    let webhook = Webhooked::start(ns.name(), &[]).await.expect("operator and host start");
    webhook.register().await.expect("the webhook is registered");
    let stderr = refused(
        &["apply", "-n", ns.name(), "-f", "-"],
        &format_plugin("dev", "source:\n  local:\n    path: /etc/hostname"),
    )
    .await;
    assert!(stderr.contains("local sources are turned off") && stderr.contains("--local-source-roots"), "{stderr}");
}

/// The Secret a source names: a bearer token for URL sources, basic
/// credentials for Git.
async fn secret(namespace: &str, name: &str, literals: &[&str]) {
    let mut args = vec!["create", "secret", "generic", name, "-n", namespace];
    args.extend_from_slice(literals);
    control_plane().kubectl().succeed(&args).await;
}

/// Invariant 4: the allowlist reads a URL as the fetch does, and holds on
/// every redirect hop. With only `localhost` allowed, neither an address that
/// hides another host nor a redirect reaches the server at 127.0.0.1 — which
/// never sees a request, let alone the Secret's token.
#[tokio::test]
async fn the_allowlist_holds_for_what_the_fetch_reads_and_every_redirect() {
    let ns = control_plane().namespace("allowlist-parser").await;
    let webhook = Webhooked::start(ns.name(), &["--allowed-source-hosts=localhost"]).await.expect("stack starts");
    secret(ns.name(), "token", &["--from-literal=token=s3cret"]).await;
    let (manifest, wasm) = wasmplug_e2e::numbered_plugin(1);
    let package = zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)]);
    let elsewhere = FileServer::start().await.expect("file server starts");
    elsewhere.put("/p.zip", Served::File(package));
    let front = FileServer::start().await.expect("file server starts");
    front.put("/p.zip", Served::Redirect(elsewhere.url("/p.zip")));
    let api = ns.api::<FormatPlugin>();
    let url_source = |url: &str| format!("source:\n  url:\n    url: '{url}'\n    secretRef: {{name: token}}");

    let hidden = [
        ("query-at", format!("http://127.0.0.1:{}?@localhost/p.zip", elsewhere.port())),
        ("fragment-at", format!("http://127.0.0.1:{}#@localhost/p.zip", elsewhere.port())),
    ];
    for (name, url) in &hidden {
        apply(ns.name(), &format_plugin(name, &url_source(url))).await;
        let message = wait_condition(&api, name, "False", "SourceNotAllowed").await;
        assert!(message.contains("source host \"127.0.0.1\" is not allowed"), "{message}");
    }
    apply(ns.name(), &format_plugin("redirected", &url_source(&format!("http://localhost:{}/p.zip", front.port()))))
        .await;
    let message = wait_condition(&api, "redirected", "False", "SourceNotAllowed").await;
    assert!(message.contains(&format!("it redirected to {}", elsewhere.url("/p.zip"))), "{message}");
    assert!(front.received().iter().all(|r| r.authorization.as_deref() == Some("Bearer s3cret")));
    assert_eq!(elsewhere.received(), [], "the host outside the allowlist was never contacted");

    // The webhook refuses the hidden host at apply time.
    webhook.register().await.expect("the webhook is registered");
    let stderr =
        refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("late", &url_source(&hidden[0].1))).await;
    assert!(stderr.contains("source host \"127.0.0.1\" is not allowed"), "{stderr}");
}

/// Invariant 4: credentials go only to the origin they were configured for.
/// A URL source's token is not sent on to where it redirects; a Git source
/// does not follow a redirect to another host, so its password never leaves.
#[tokio::test]
async fn credentials_stay_with_the_origin_they_were_configured_for() {
    let ns = control_plane().namespace("credential-origin").await;
    let allowed = "--allowed-source-hosts=localhost,127.0.0.1";
    let _stack = Webhooked::start(ns.name(), &[allowed]).await.expect("stack starts");
    secret(ns.name(), "token", &["--from-literal=token=s3cret"]).await;
    secret(ns.name(), "git", &["--from-literal=username=reader", "--from-literal=password=s3cret"]).await;
    let api = ns.api::<FormatPlugin>();

    let (manifest, wasm) = wasmplug_e2e::numbered_plugin(2);
    let downloads = FileServer::start().await.expect("file server starts");
    downloads.put("/p.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    let front = FileServer::start().await.expect("file server starts");
    front.put("/p.zip", Served::Redirect(downloads.url("/p.zip")));
    let source =
        format!("source:\n  url:\n    url: http://localhost:{}/p.zip\n    secretRef: {{name: token}}", front.port());
    apply(ns.name(), &format_plugin("released", &source)).await;
    wait_ready(ns.name(), "released", SOON).await;
    assert!(front.received().iter().all(|r| r.authorization.as_deref() == Some("Bearer s3cret")));
    assert!(!downloads.received().is_empty() && downloads.received().iter().all(|r| r.authorization.is_none()));

    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("plugin").expect("repository");
    let (manifest, wasm) = wasmplug_e2e::numbered_plugin(3);
    repo.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)], "plugin").expect("commit");
    let private = git.serve_http("reader", "s3cret").await.expect("git over HTTP");
    let mirror = FileServer::start().await.expect("file server starts");
    let refs = format!("{}/info/refs?service=git-upload-pack", private.url("plugin"));
    mirror.put("/plugin/info/refs", Served::Redirect(refs));
    let source =
        format!("source:\n  git:\n    url: http://localhost:{}/plugin\n    secretRef: {{name: git}}", mirror.port());
    apply(ns.name(), &format_plugin("mirrored", &source)).await;
    let message = wait_condition(&api, "mirrored", "False", "FetchFailed").await;
    assert!(message.contains("redirect"), "{message}");
    assert_eq!(private.requests_with_credentials(), 0, "the password was never sent to the other host");
}

/// Invariant 4: by default, sources reach no loopback, link-local or private
/// address, whether written as an address, behind a host name, or behind a
/// redirect, and the refusal tells nothing about what listens there.
#[tokio::test]
async fn sources_do_not_reach_the_operators_neighbourhood_unless_allowed() {
    let ns = control_plane().namespace("destinations").await;
    // Allows one documentation address only, so loopback is refused as in a
    // default install.
    let webhook = Webhooked::start(ns.name(), &["--allowed-destinations=192.0.2.1"]).await.expect("stack starts");
    let (manifest, wasm) = wasmplug_e2e::numbered_plugin(4);
    let files = FileServer::start().await.expect("file server starts");
    files.put("/p.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    let git = GitServer::start().expect("git daemon starts");
    let api = ns.api::<FormatPlugin>();
    let port = files.port();
    let url = |name: &str, url: String| format_plugin(name, &format!("source:\n  url:\n    url: {url}"));
    let attempts = [
        ("by-name", url("by-name", format!("http://localhost:{port}/p.zip")), "localhost"),
        ("by-address", url("by-address", format!("http://127.0.0.1:{port}/p.zip")), "127.0.0.1"),
        ("no-listener", url("no-listener", "http://127.0.0.1:9/p.zip".into()), "127.0.0.1"),
        (
            "git-by-name",
            format_plugin("git-by-name", &format!("source:\n  git:\n    url: {}", git_url_by_name(&git))),
            "localhost",
        ),
        // An OCI registry's name is resolved by the fetch's egress gate, which
        // refuses before it connects.
        (
            "oci-by-name",
            format_plugin(
                "oci-by-name",
                &format!("source:\n  oci:\n    url: oci://localhost:{port}/plugins/p\n    insecure: true"),
            ),
            "localhost",
        ),
    ];
    for (_, manifest, _) in &attempts {
        apply(ns.name(), manifest).await;
    }
    let mut messages = Vec::new();
    for (name, _, host) in &attempts {
        let message = wait_condition(&api, name, "False", "SourceNotAllowed").await;
        assert!(message.contains(&format!("source host \"{host}\" is not reachable from the operator")), "{message}");
        messages.push(message.replace(&port.to_string(), "<port>").replace(":9/", ":<port>/"));
    }
    assert_eq!(files.received(), [], "nothing was fetched from loopback");
    // A listening port and a closed one get the same answer: no oracle.
    assert_eq!(messages[1].replace("by-address", "x"), messages[2].replace("no-listener", "x"));

    // The webhook refuses an address it can see at apply time.
    webhook.register().await.expect("the webhook is registered");
    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &url("late", "http://127.0.0.1:9/p.zip".into())).await;
    assert!(stderr.contains("source host \"127.0.0.1\" is not reachable from the operator"), "{stderr}");
}

/// A redirect from an allowed destination to a refused one is refused before
/// anything connects there.
#[tokio::test]
async fn a_redirect_to_a_refused_destination_is_not_followed() {
    let ns = control_plane().namespace("redirect-destination").await;
    let _stack = Webhooked::start(ns.name(), &["--allowed-destinations=127.0.0.1"]).await.expect("stack starts");
    let front = FileServer::start().await.expect("file server starts");
    // 127.0.0.2 is loopback too, and not allowed; nothing listens there.
    front.put("/p.zip", Served::Redirect("http://127.0.0.2:9/p.zip".into()));
    apply(ns.name(), &format_plugin("redirected", &format!("source:\n  url:\n    url: {}", front.url("/p.zip")))).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "redirected", "False", "SourceNotAllowed").await;
    assert!(message.contains("it redirected to http://127.0.0.2:9/p.zip"), "{message}");
    assert!(message.contains("source host \"127.0.0.2\" is not reachable from the operator"), "{message}");

    // The same for an OCI registry whose manifest redirects there: every hop
    // of the registry client passes the fetch's egress gate.
    front.put("/v2/plugins/p/manifests/1.0.0", Served::Redirect("http://127.0.0.2:9/manifest".into()));
    let registry = front.url("").replace("http://", "oci://");
    let spec =
        format!("source:\n  oci:\n    url: {registry}/plugins/p\n    insecure: true\n    ref: {{tag: \"1.0.0\"}}");
    apply(ns.name(), &format_plugin("oci-redirected", &spec)).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "oci-redirected", "False", "SourceNotAllowed").await;
    assert!(message.contains("source host \"127.0.0.2\" is not reachable from the operator"), "{message}");
}

/// The git:// URL of a repository on `git`, by the name `localhost`.
fn git_url_by_name(git: &GitServer) -> String {
    git.create("plugin").expect("repository").url().replace("127.0.0.1", "localhost")
}

/// Invariant 3: a Git repository cannot make the operator read more than the
/// package: files other than plugin.toml and plugin.wasm are never read (here
/// forty names for one blob larger than the limit), and a blob past the limit
/// is refused from its header, before it is inflated.
#[tokio::test]
async fn a_repository_costs_the_operator_no_more_than_its_package() {
    let ns = control_plane().namespace("git-bomb").await;
    let stack = Webhooked::start(ns.name(), &["--max-unpacked=8Mi"]).await.expect("stack starts").stack;
    let git = GitServer::start().expect("git daemon starts");
    let (manifest, wasm) = wasmplug_e2e::numbered_plugin(5);
    let big = vec![0u8; 9 << 20];
    let repo = git.create("many-names").expect("repository");
    let mut files: Vec<(String, &[u8])> = vec![("plugin.toml".into(), &manifest), ("plugin.wasm".into(), &wasm)];
    files.extend((0..40).map(|n| (format!("assets/junk-{n}.bin"), big.as_slice())));
    let files: Vec<(&str, &[u8])> = files.iter().map(|(name, bytes)| (name.as_str(), *bytes)).collect();
    repo.commit(&files, "a package and forty names for one large blob").expect("commit");
    apply(ns.name(), &format_plugin("many-names", &format!("source:\n  git:\n    url: {}", repo.url()))).await;
    wait_ready(ns.name(), "many-names", SOON).await;

    // plugin.wasm itself: 200 MiB of zeros, a few hundred KiB on the wire.
    let huge = vec![0u8; 200 << 20];
    let bomb = git.create("bomb").expect("repository");
    bomb.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &huge)], "a bomb").expect("commit");
    drop(huge);
    apply(ns.name(), &format_plugin("bomb", &format!("source:\n  git:\n    url: {}", bomb.url()))).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "bomb", "False", "FetchFailed").await;
    assert!(message.contains(&format!("exceeds {} bytes", 8 << 20)), "{message}");
    let pid = stack.operator.process.pid().expect("the operator runs");
    let peak = wasmplug_e2e::memory::peak_rss_mib(pid).expect("its peak memory");
    assert!(peak < 200.0, "the operator peaked at {peak:.0} MiB: the blob was inflated");
}

/// Invariant 3: a Git server that accepts and then says nothing holds a fetch
/// no longer than spec.timeout (before, only the transfer-progress callback
/// checked the deadline, so a silent server held the fetch, and its thread,
/// forever).
#[tokio::test]
async fn a_silent_git_server_is_given_up_on_at_the_timeout() {
    let ns = control_plane().namespace("git-silent").await;
    let stack = Webhooked::start(ns.name(), &[]).await.expect("stack starts").stack;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listens");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = std::time::Instant::now();
    let spec = format!("source:\n  git:\n    url: git://127.0.0.1:{port}/plugin\ntimeout: 3s");
    apply(ns.name(), &format_plugin("silent", &spec)).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "silent", "False", "FetchFailed").await;
    assert!(message.contains("within 3s"), "{message}");
    eprintln!("silent Git server: apply → FetchFailed in {:?}", started.elapsed());
    // The fetches themselves end too (libgit2's own server timeout), releasing
    // their threads and removing their scratch repositories, while the server
    // stays silent. (Deleting the object stops the retries.)
    control_plane().kubectl().succeed(&["delete", "fp", "silent", "-n", ns.name(), "--timeout=30s"]).await;
    eventually("the abandoned fetches to end", Duration::from_secs(30), || async {
        let left: Vec<_> =
            std::fs::read_dir(stack.scratch().join("wasmplug-fetch")).map_err(|e| e.to_string())?.flatten().collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    })
    .await;
    silent.abort();
}

/// Invariant 3: fetches are bounded like compilations: however many objects
/// arrive at once, at most --max-concurrent-fetches downloads are held in
/// memory together.
#[tokio::test]
async fn fetches_run_at_most_the_configured_number_at_once() {
    let ns = control_plane().namespace("fetch-concurrency").await;
    let _stack = Webhooked::start(ns.name(), &["--max-concurrent-fetches=2"]).await.expect("stack starts");
    let files = FileServer::start().await.expect("file server starts");
    let names: Vec<String> = (10..15).map(|n| format!("slow-{n}")).collect();
    for (n, name) in (10..15).zip(&names) {
        let (manifest, wasm) = wasmplug_e2e::numbered_plugin(n);
        let bytes = zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)]);
        let chunk = bytes.len().div_ceil(10);
        let url =
            files.put(&format!("/{name}.zip"), Served::Trickle { bytes, chunk, every: Duration::from_millis(100) });
        apply(ns.name(), &format_plugin(name, &format!("source:\n  url:\n    url: {url}"))).await;
    }
    for name in &names {
        wait_ready(ns.name(), name, SOON).await;
    }
    assert_eq!(files.most_trickling_at_once(), 2, "downloads at once");
}

/// Invariant 5: format keys are cluster-wide, so only the configured
/// namespaces publish formats. An object elsewhere is refused by the webhook;
/// one stored anyway (or published before the setting) is reported and what
/// it published is withdrawn, so hosts stop serving it.
#[tokio::test]
async fn only_the_publishing_namespaces_publish_formats() {
    let ns = control_plane().namespace("squatter").await;
    let mut stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    apply(ns.name(), &format_plugin("npm", "source:\n  builtin:\n    format: npm")).await;
    wait_ready(ns.name(), "npm", SOON).await;
    let serves_npm = async |stack: &Stack| stack.formats().await.is_ok_and(|formats| formats.contains_key("npm"));
    eventually("the host to serve npm", SOON, || async {
        serves_npm(&stack).await.then_some(()).ok_or_else(|| "not yet".to_owned())
    })
    .await;

    // The operator is restarted with publishing limited to another namespace.
    stack.operator.process.kill().await;
    stack.operator = stack.another_operator(&["--publishing-namespaces=registry"]).expect("operator restarts");
    let api = ns.api::<FormatPlugin>();
    let message = wait_condition(&api, "npm", "False", "NamespaceNotAllowed").await;
    assert!(message.contains(&format!("namespace {} may not publish formats", ns.name())), "{message}");
    assert!(message.contains("registry"), "{message}");
    let status = api.get("npm").await.expect("exists").status.expect("status");
    assert!(status.plugin.is_none() && status.artifact.is_none(), "what it published is withdrawn: {status:?}");
    eventually("the host to stop serving npm", SOON, || async {
        (!serves_npm(&stack).await).then_some(()).ok_or_else(|| "still served".to_owned())
    })
    .await;

    // With the webhook, a new object there is refused at apply time.
    let other = control_plane().namespace("squatter-webhook").await;
    let webhook = Webhooked::start(other.name(), &["--publishing-namespaces=registry"]).await.expect("stack starts");
    webhook.register().await.expect("the webhook is registered");
    let stderr = refused(
        &["apply", "-n", other.name(), "-f", "-"],
        &format_plugin("unity", "source:\n  builtin:\n    format: maven"),
    )
    .await;
    assert!(stderr.contains("may not publish formats: format keys are cluster-wide"), "{stderr}");
}

/// A manifest with a hundred bad extensions made a 7 KB message: the API
/// server refused the Event, and the audit trail lost the step. Messages are
/// now bounded, the Event is recorded, and the log keeps the whole text.
#[tokio::test]
async fn a_very_long_failure_is_recorded_cut_short_and_logged_whole() {
    let ns = control_plane().namespace("long-message").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let (manifest, wasm) = wasmplug_e2e::numbered_plugin(6);
    let bad: Vec<String> = (0..100).map(|n| format!("\"bad-extension-number-{n:03}\"")).collect();
    let manifest = String::from_utf8(manifest)
        .expect("text")
        .replace("key = \"numbered-000006\"", &format!("key = \"numbered-000006\"\nextensions = [{}]", bad.join(", ")));
    let files = FileServer::start().await.expect("file server starts");
    let url = files.put("/p.zip", Served::File(zip(&[("plugin.toml", manifest.as_bytes()), ("plugin.wasm", &wasm)])));
    apply(ns.name(), &format_plugin("long", &format!("source:\n  url:\n    url: {url}"))).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "long", "False", "ValidationFailed").await;
    assert!(message.len() <= 4096 && message.ends_with("the operator's log has the whole message)"), "{message}");
    let jsonpath = "-o=jsonpath={range .items[?(@.regarding.name==\"long\")]}{.reason}{\"|\"}{.note}{\"\\n\"}{end}";
    let events = eventually("the ValidationFailed Event", SOON, || async {
        let args = ["get", "events.events.k8s.io", "-n", ns.name(), jsonpath];
        let events = control_plane().kubectl().succeed(&args).await;
        events.contains("ValidationFailed|").then_some(events.clone()).ok_or(events)
    })
    .await;
    let note = events.lines().find_map(|line| line.strip_prefix("ValidationFailed|")).expect("the note");
    assert!(note.len() <= 1024 && note.contains("bad-extension-number-000"), "{note}");
    let log = stack.operator.process.log();
    assert!(log.contains("bad-extension-number-099"), "the operator's log has the whole message");
}

/// The webhook does not allow what it cannot read: an object the API server
/// stores but no FormatPlugin reader accepts is refused, and an update from
/// such an object is checked as if the object were new (before, it was
/// admitted unchecked, bypassing the allowlist). Unreadable objects stay
/// removable: metadata changes and deletion pass.
#[tokio::test]
async fn the_webhook_refuses_what_it_cannot_read_but_lets_it_be_removed() {
    let ns = control_plane().namespace("webhook-unreadable").await;
    let webhook =
        Webhooked::start(ns.name(), &["--allowed-source-hosts=allowed.example.com"]).await.expect("stack starts");
    let unreadable = "source:\n  builtin:\n    format: pypi\ntimeout: 99999999999999999999999h";
    apply(ns.name(), &format_plugin("stored-early", unreadable)).await;
    apply(ns.name(), &format_plugin("npm", "source:\n  builtin:\n    format: npm")).await;
    webhook.register().await.expect("the webhook is registered");

    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("new", unreadable)).await;
    assert!(stderr.contains("the FormatPlugin cannot be read") && stderr.contains("correct its spec"), "{stderr}");
    let elsewhere = "source:\n  url:\n    url: https://downloads.example.net/p.zip";
    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &format_plugin("stored-early", elsewhere)).await;
    assert!(stderr.contains("source host \"downloads.example.net\" is not allowed"), "{stderr}");

    let kubectl = control_plane().kubectl();
    kubectl.succeed(&["label", "fp/stored-early", "-n", ns.name(), "team=registry"]).await;
    kubectl.succeed(&["delete", "fp/stored-early", "-n", ns.name(), "--timeout=30s"]).await;
}
