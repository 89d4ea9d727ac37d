//! Sources that need credentials, read from the Secret a FormatPlugin names: a
//! ZIP behind basic or bearer authentication, and a Git repository over HTTP
//! behind basic authentication (`git http-backend`).

mod support;

use std::time::Duration;

use base64::Engine as _;
use support::{apply, format_plugin, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{FileServer, GitServer, Served, Stack, control_plane, numbered_plugin, zip};

const SOON: Duration = Duration::from_secs(60);

async fn secret(namespace: &str, name: &str, literals: &[(&str, &str)]) {
    let mut args = vec!["create".to_owned(), "secret".into(), "generic".into(), name.into(), format!("-n={namespace}")];
    args.extend(literals.iter().map(|(k, v)| format!("--from-literal={k}={v}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    control_plane().kubectl().succeed(&args).await;
}

fn package(n: u32) -> Vec<u8> {
    let (manifest, wasm) = numbered_plugin(n);
    zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])
}

#[tokio::test]
async fn a_zip_behind_basic_or_bearer_authentication_installs_with_its_secret() {
    let ns = control_plane().namespace("url-credentials").await;
    let _stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("reader:s3cret"));
    let basic_url = files.put("/basic.zip", Served::Protected { bytes: package(1), authorization: basic });
    let bearer_url =
        files.put("/bearer.zip", Served::Protected { bytes: package(2), authorization: "Bearer t0ken".into() });
    secret(ns.name(), "basic", &[("username", "reader"), ("password", "s3cret")]).await;
    secret(ns.name(), "bearer", &[("token", "t0ken")]).await;
    secret(ns.name(), "wrong", &[("username", "reader"), ("password", "guess")]).await;

    let spec =
        |url: &str, secret: &str| format!("source:\n  url:\n    url: {url}\n    secretRef:\n      name: {secret}");
    apply(ns.name(), &format_plugin("basic", &spec(&basic_url, "basic"))).await;
    apply(ns.name(), &format_plugin("bearer", &spec(&bearer_url, "bearer"))).await;
    apply(ns.name(), &format_plugin("wrong", &spec(&basic_url, "wrong"))).await;
    apply(ns.name(), &format_plugin("missing", &spec(&basic_url, "no-such-secret"))).await;
    wait_ready(ns.name(), "basic", SOON).await;
    wait_ready(ns.name(), "bearer", SOON).await;
    let api = ns.api::<FormatPlugin>();
    let message = wait_condition(&api, "wrong", "False", "FetchFailed").await;
    assert!(message.contains("answered 401; check the credentials in spec.source.url.secretRef"), "{message}");
    let message = wait_condition(&api, "missing", "False", "FetchFailed").await;
    assert!(message.contains("Secret no-such-secret") && message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn a_private_git_repository_over_http_installs_with_its_secret() {
    let ns = control_plane().namespace("git-credentials").await;
    let _stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("private").expect("repository");
    let (manifest, wasm) = numbered_plugin(3);
    let commit = repo.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)], "private plugin").expect("commit");
    let http = git.serve_http("reader", "s3cret").await.expect("git over HTTP");
    secret(ns.name(), "git", &[("username", "reader"), ("password", "s3cret")]).await;

    let spec = |secret: Option<&str>| {
        let reference = secret.map(|s| format!("\n    secretRef:\n      name: {s}")).unwrap_or_default();
        format!("source:\n  git:\n    url: {}\n    ref:\n      branch: main{reference}", http.url("private"))
    };
    apply(ns.name(), &format_plugin("private", &spec(Some("git")))).await;
    apply(ns.name(), &format_plugin("anonymous", &spec(None))).await;
    wait_ready(ns.name(), "private", SOON).await;
    let api = ns.api::<FormatPlugin>();
    let status = api.get("private").await.expect("get").status.expect("status");
    assert_eq!(status.artifact.expect("artifact").revision, format!("main@sha1:{commit}"));
    let message = wait_condition(&api, "anonymous", "False", "FetchFailed").await;
    assert!(message.contains("check spec.source.git.secretRef"), "{message}");
}
