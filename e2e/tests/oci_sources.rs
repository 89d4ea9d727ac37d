//! Installing plugins from a real OCI registry (CNCF distribution), pushed with
//! the real `oras` CLI as an author publishes them, with the operator and a host
//! running as processes: by tag, digest and semver range, both artifact shapes,
//! over plain HTTP and over TLS with a login, and every refusal a user can meet.

mod support;

use std::time::Duration;

use support::{apply, format_plugin, sha256_hex, status, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{
    FileServer, OciRegistry, RegistryOptions, Served, Stack, TokenService, control_plane, eventually, example_files,
    numbered_plugin, with_custom_section, zip,
};

const SOON: Duration = Duration::from_secs(60);
const WASM: &str = "application/wasm";
const TOML: &str = "application/toml";
const ZIP: &str = "application/zip";
const ARTIFACT: &str = "application/vnd.wasmplug.plugin.v1";

/// The YAML of an OCI source for `url` with `reference` (e.g. `tag: v1`) and
/// the rest of the spec in `extra`.
fn oci_spec(url: &str, reference: &str, extra: &str) -> String {
    format!("source:\n  oci:\n    url: {url}\n    insecure: true\n    ref:\n      {reference}\n{extra}")
}

/// Waits until the host serves `key` with plugin.wasm digest `digest`.
async fn served(stack: &Stack, key: &str, digest: &str) {
    eventually(&format!("the host to serve {key} at {digest}"), SOON, || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        let format = formats.get(key).cloned().unwrap_or_default();
        if format["digest"] == digest && format["state"] == "active" { Ok(()) } else { Err(format.to_string()) }
    })
    .await;
}

#[tokio::test]
async fn installs_by_tag_digest_and_semver_range_and_follows_the_range() {
    let ns = control_plane().namespace("oci-refs").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let registry = OciRegistry::start(RegistryOptions::default()).expect("the registry starts");
    let (manifest, wasm) = example_files("unity-format");
    let component = |wasm: &[u8]| [("plugin.wasm", wasm.to_vec(), WASM), ("plugin.toml", manifest.clone(), TOML)];
    let push = |tag: &str, files: &[(&str, Vec<u8>, &str)]| {
        let files: Vec<(&str, &[u8], &str)> = files.iter().map(|(n, b, t)| (*n, b.as_slice(), *t)).collect();
        registry.push("plugins/unity", tag, ARTIFACT, &files).expect("oras pushes")
    };
    let v1 = push("v1.0.0", &component(&wasm));
    let url = registry.url("plugins/unity");
    let api = ns.api::<FormatPlugin>();

    // By tag: the revision names the tag and the manifest digest it resolved to.
    apply(ns.name(), &format_plugin("unity", &oci_spec(&url, "tag: v1.0.0", ""))).await;
    wait_ready(ns.name(), "unity", SOON).await;
    let artifact = status(&api, "unity").await.artifact.expect("an artifact is published");
    assert_eq!(artifact.revision, format!("v1.0.0@{v1}"));
    assert_eq!(artifact.digest, format!("sha256:{}", sha256_hex(&wasm)));
    served(&stack, "unity", &artifact.digest).await;
    let answer = stack.validate("unity", "x.unitypackage", b"not a unity package").await.expect("call");
    assert_eq!(answer.status, 422, "the plugin from the registry answers: {answer:?}");

    // By semver range, checked every interval: a new tag in the range is
    // installed, one outside it is not.
    apply(ns.name(), &format_plugin("unity", &oci_spec(&url, "semver: \">=1.0.0, <2\"", "interval: 1s"))).await;
    wait_condition(&api, "unity", "True", "Succeeded").await;
    let wasm_v11 = with_custom_section(&wasm, "wasmplug-test", b"v1.1");
    let v11 = push("v1.1.0", &component(&wasm_v11));
    push("v2.0.0", &component(&with_custom_section(&wasm, "wasmplug-test", b"v2")));
    eventually("the new tag in the range to be published", SOON, || async {
        let revision = status(&api, "unity").await.artifact.map(|a| a.revision).unwrap_or_default();
        if revision == format!("v1.1.0@{v11}") { Ok(()) } else { Err(revision) }
    })
    .await;
    served(&stack, "unity", &format!("sha256:{}", sha256_hex(&wasm_v11))).await;

    // By digest: exactly that manifest, whatever the tags do.
    apply(ns.name(), &format_plugin("unity", &oci_spec(&url, &format!("digest: \"{v1}\""), ""))).await;
    wait_condition(&api, "unity", "True", "Succeeded").await;
    assert_eq!(status(&api, "unity").await.artifact.expect("artifact").revision, v1);
    served(&stack, "unity", &format!("sha256:{}", sha256_hex(&wasm))).await;

    // The package-ZIP shape, in another repository.
    let (numbered_manifest, numbered_wasm) = numbered_plugin(3);
    let package = zip(&[("plugin.toml", &numbered_manifest), ("plugin.wasm", &numbered_wasm)]);
    registry.push("plugins/numbered", "1.0.0", ARTIFACT, &[("plugin.zip", &package, ZIP)]).expect("oras pushes");
    let numbered = registry.url("plugins/numbered");
    apply(ns.name(), &format_plugin("numbered", &oci_spec(&numbered, "tag: \"1.0.0\"", ""))).await;
    wait_ready(ns.name(), "numbered", SOON).await;
    served(&stack, "numbered-000003", &format!("sha256:{}", sha256_hex(&numbered_wasm))).await;
}

#[tokio::test]
async fn artifacts_of_other_shapes_and_digests_that_do_not_match_are_refused_by_name() {
    let ns = control_plane().namespace("oci-refusals").await;
    let _stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let registry = OciRegistry::start(RegistryOptions::default()).expect("the registry starts");
    let (manifest, wasm) = example_files("unity-format");
    let unknown = "application/vnd.example.unknown";
    registry
        .push("plugins/odd", "1", ARTIFACT, &[("plugin.wasm", &wasm, WASM), ("notes.bin", b"x", unknown)])
        .expect("oras pushes");
    registry.push("plugins/bare", "1", ARTIFACT, &[("plugin.wasm", &wasm, WASM)]).expect("oras pushes");
    let good = registry
        .push("plugins/good", "1", ARTIFACT, &[("plugin.wasm", &wasm, WASM), ("plugin.toml", &manifest, TOML)])
        .expect("oras pushes");
    let api = ns.api::<FormatPlugin>();

    apply(ns.name(), &format_plugin("odd", &oci_spec(&registry.url("plugins/odd"), "tag: \"1\"", ""))).await;
    let message = wait_condition(&api, "odd", "False", "ValidationFailed").await;
    assert!(message.contains("media types wasmplug does not take: application/vnd.example.unknown"), "{message}");

    apply(ns.name(), &format_plugin("bare", &oci_spec(&registry.url("plugins/bare"), "tag: \"1\"", ""))).await;
    let message = wait_condition(&api, "bare", "False", "ValidationFailed").await;
    assert!(message.contains("no plugin.toml layer (application/toml)"), "{message}");

    // A digest the repository does not hold, and a plugin.wasm pin that the
    // artifact does not match.
    let absent = format!("sha256:{}", sha256_hex(b"no such manifest"));
    let good_url = registry.url("plugins/good");
    apply(ns.name(), &format_plugin("absent", &oci_spec(&good_url, &format!("digest: \"{absent}\""), ""))).await;
    let message = wait_condition(&api, "absent", "False", "FetchFailed").await;
    assert!(message.contains("no such artifact") && message.contains("check spec.source.oci.url and ref"), "{message}");
    let pinned = format!("sha256: \"{}\"", sha256_hex(b"another plugin.wasm"));
    apply(ns.name(), &format_plugin("pinned", &oci_spec(&good_url, &format!("digest: \"{good}\""), &pinned))).await;
    wait_condition(&api, "pinned", "False", "DigestMismatch").await;

    let message = wait_condition(&api, "odd", "False", "ValidationFailed").await;
    assert!(!message.contains("retry"), "a shape error is not retried: {message}");
}

#[tokio::test]
async fn over_tls_a_login_and_a_ca_from_secrets_install_and_a_wrong_login_names_its_secret() {
    let ns = control_plane().namespace("oci-login").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let login = ("author".to_owned(), "s3cret-password".to_owned());
    let mut registry = OciRegistry::start(RegistryOptions { basic_auth: Some(login), tls: true, token: None })
        .expect("the registry starts");
    let (numbered_manifest, numbered_wasm) = numbered_plugin(5);
    let files = [("plugin.wasm", numbered_wasm.as_slice(), WASM), ("plugin.toml", numbered_manifest.as_slice(), TOML)];
    registry.push("plugins/private", "1.0.0", ARTIFACT, &files).expect("oras pushes with the login");

    let kubectl = control_plane().kubectl();
    let server = format!("--docker-server={}", registry.address());
    for (name, password) in [("pull", "s3cret-password"), ("wrong", "guess")] {
        let password = format!("--docker-password={password}");
        let args = ["create", "secret", "docker-registry", name, "-n", ns.name(), &server, "--docker-username=author"];
        let args: Vec<&str> = args.into_iter().chain([password.as_str()]).collect();
        kubectl.succeed(&args).await;
    }
    let ca = format!("--from-file=ca.crt={}", registry.ca_cert().expect("a CA").display());
    kubectl.succeed(&["create", "secret", "generic", "registry-ca", "-n", ns.name(), &ca]).await;

    let url = registry.url("plugins/private");
    let spec = |secret: &str, ca: bool| {
        let ca = if ca { "\n  certSecretRef:\n    name: registry-ca" } else { "" };
        format!(
            "source:\n  oci:\n    url: {url}\n    ref:\n      tag: \"1.0.0\"\n    secretRef:\n      name: {secret}{}",
            ca.replace('\n', "\n  ")
        )
    };
    apply(ns.name(), &format_plugin("private", &spec("pull", true))).await;
    apply(ns.name(), &format_plugin("wrong-login", &spec("wrong", true))).await;
    apply(ns.name(), &format_plugin("no-ca", &spec("pull", false))).await;
    wait_ready(ns.name(), "private", SOON).await;
    let digest = format!("sha256:{}", sha256_hex(&numbered_wasm));
    served(&stack, "numbered-000005", &digest).await;

    let api = ns.api::<FormatPlugin>();
    let message = wait_condition(&api, "wrong-login", "False", "FetchFailed").await;
    assert!(message.contains("refused the credentials") && message.contains("Secret wrong"), "{message}");
    let message = wait_condition(&api, "no-ca", "False", "FetchFailed").await;
    assert!(message.contains("certificate") && message.contains("spec.source.oci.certSecretRef"), "{message}");

    // The registry goes away: a fetch fails, and the last good version serves on.
    registry.stop();
    let requested = "wasmplug.dev/requested-at=registry-down";
    kubectl.succeed(&["annotate", "fp/private", "-n", ns.name(), requested]).await;
    eventually("the failed fetch to show", SOON, || async {
        let plugin = api.get("private").await.map_err(|e| e.to_string())?;
        let fetched = plugin.condition(wasmplug_crds::conditions::ConditionType::Fetched).cloned();
        match fetched {
            Some(c) if c.status == "False" && c.reason == "FetchFailed" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    served(&stack, "numbered-000005", &digest).await;
    registry.restart().expect("the registry starts again");
    kubectl
        .succeed(&["annotate", "--overwrite", "fp/private", "-n", ns.name(), "wasmplug.dev/requested-at=back"])
        .await;
    wait_condition(&api, "private", "True", "Succeeded").await;
}

/// A `kubernetes.io/dockerconfigjson` Secret giving `user`/`password` to each
/// of `hosts`, as `kubectl create secret docker-registry` writes one per host.
async fn docker_config_secret(namespace: &str, name: &str, hosts: &[&str], user: &str, password: &str) {
    let auths: serde_json::Map<String, serde_json::Value> = hosts
        .iter()
        .map(|host| ((*host).to_owned(), serde_json::json!({"username": user, "password": password})))
        .collect();
    let config = format!("--from-literal=.dockerconfigjson={}", serde_json::json!({ "auths": auths }));
    let args = ["create", "secret", "generic", name, "-n", namespace, "--type=kubernetes.io/dockerconfigjson", &config];
    control_plane().kubectl().succeed(&args).await;
}

#[tokio::test]
async fn a_login_goes_to_a_token_service_on_another_origin_only_when_the_secret_names_it() {
    let ns = control_plane().namespace("oci-token").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let tokens = TokenService::start("author", "s3cret").expect("the token service starts");
    let options = RegistryOptions {
        basic_auth: Some(("author".into(), "s3cret".into())),
        tls: false,
        token: Some(tokens.auth()),
    };
    let registry = OciRegistry::start(options).expect("the registry starts");
    let (manifest, wasm) = numbered_plugin(8);
    let files = [("plugin.wasm", wasm.as_slice(), WASM), ("plugin.toml", manifest.as_slice(), TOML)];
    registry.push("plugins/tokened", "1.0.0", ARTIFACT, &files).expect("oras pushes with a token");
    let (registry_host, token_host) = (registry.address(), tokens.address());
    docker_config_secret(ns.name(), "registry-only", &[&registry_host], "author", "s3cret").await;
    docker_config_secret(ns.name(), "both", &[&registry_host, &token_host], "author", "s3cret").await;
    docker_config_secret(ns.name(), "wrong", &[&registry_host, &token_host], "author", "guess").await;
    let spec = |secret: Option<&str>| {
        let secret = secret.map(|s| format!("\n  secretRef: {{name: {s}}}")).unwrap_or_default().replace('\n', "\n  ");
        format!(
            "source:\n  oci:\n    url: {}\n    insecure: true\n    ref: {{tag: \"1.0.0\"}}{secret}",
            registry.url("plugins/tokened")
        )
    };
    let api = ns.api::<FormatPlugin>();

    // The registry names a token service on another port: another origin. A
    // Secret that gives the login to the registry only keeps it from there.
    let asked_before = tokens.requests().len();
    apply(ns.name(), &format_plugin("registry-only", &spec(Some("registry-only")))).await;
    let message = wait_condition(&api, "registry-only", "False", "SourceNotAllowed").await;
    let hint = format!("add an auths entry for {token_host} with the same login to Secret registry-only");
    assert!(message.contains(&tokens.realm()) && message.contains(&hint), "{message}");
    assert_eq!(tokens.requests().len(), asked_before, "the token service was never asked: {:?}", tokens.requests());

    apply(ns.name(), &format_plugin("both", &spec(Some("both")))).await;
    wait_ready(ns.name(), "both", SOON).await;
    served(&stack, "numbered-000008", &format!("sha256:{}", sha256_hex(&wasm))).await;
    assert!(tokens.requests().iter().skip(asked_before).any(|user| user == "author"), "{:?}", tokens.requests());

    apply(ns.name(), &format_plugin("wrong", &spec(Some("wrong")))).await;
    let message = wait_condition(&api, "wrong", "False", "FetchFailed").await;
    assert!(message.contains("refused the credentials") && message.contains("Secret wrong"), "{message}");
    apply(ns.name(), &format_plugin("anonymous", &spec(None))).await;
    let message = wait_condition(&api, "anonymous", "False", "FetchFailed").await;
    assert!(message.contains("a private repository needs spec.source.oci.secretRef"), "{message}");
}

#[tokio::test]
async fn an_artifact_larger_than_the_download_limit_is_refused_before_it_is_pulled() {
    let ns = control_plane().namespace("oci-large").await;
    let _stack = Stack::start(ns.name(), &["--max-download=1Mi"]).await.expect("operator and host start");
    let registry = OciRegistry::start(RegistryOptions::default()).expect("the registry starts");
    let (manifest, _) = example_files("unity-format");
    let large = vec![7u8; 2 << 20];
    let files = [("plugin.wasm", large.as_slice(), WASM), ("plugin.toml", manifest.as_slice(), TOML)];
    registry.push("plugins/large", "1", ARTIFACT, &files).expect("oras pushes");
    apply(ns.name(), &format_plugin("large", &oci_spec(&registry.url("plugins/large"), "tag: \"1\"", ""))).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "large", "False", "FetchFailed").await;
    assert!(message.contains("the download exceeds 1048576 bytes"), "{message}");
}

/// A registry cannot serve other bytes than the digest it is asked for; one
/// that does (a fake one, the only way to produce the fault) is refused.
#[tokio::test]
async fn a_registry_that_serves_other_bytes_for_a_digest_is_refused() {
    let ns = control_plane().namespace("oci-lying").await;
    let _stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let files = FileServer::start().await.expect("file server starts");
    let asked = format!("sha256:{}", sha256_hex(b"the manifest that was pushed"));
    let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    files.put(&format!("/v2/plugins/p/manifests/{asked}"), Served::File(other.to_vec()));
    let url = format!("{}/plugins/p", files.url("").replace("http://", "oci://"));
    apply(ns.name(), &format_plugin("lying", &oci_spec(&url, &format!("digest: \"{asked}\""), ""))).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "lying", "False", "DigestMismatch").await;
    assert!(message.contains("served other bytes than the digest names"), "{message}");
}
