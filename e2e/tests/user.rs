//! The user's view, end to end: the example manifests in examples/formatplugins,
//! edited only where a user would (the source URLs, a digest, a path), applied
//! with `kubectl apply`, awaited with `kubectl wait`, and the hosts called over
//! HTTP — through every lifecycle rule of PRODUCT.md with the admission webhook
//! registered as the chart registers it. Then what GitOps tools do every minute:
//! apply the same manifests again, which must change nothing.

mod support;

use std::time::Duration;

use support::{event_reasons, refused, sha256_hex, wait_condition};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{
    FileServer, GitServer, OciRegistry, RegistryOptions, Repo, Served, Webhooked, control_plane, eventually,
    example_files, example_package, repository_root, with_custom_section, with_version, zip,
};

const SOON: Duration = Duration::from_secs(60);

/// An example manifest with each `(from, to)` replaced, as a user edits it.
fn example(file: &str, edits: &[(&str, &str)]) -> String {
    let path = repository_root().join("examples/formatplugins").join(file);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in edits {
        assert!(text.contains(from), "{file} no longer contains {from:?}; update this test with the example");
        text = text.replace(from, to);
    }
    text
}

const EXAMPLE_GIT_URL: &str = "https://github.com/acme/unity-format.git";
const EXAMPLE_OCI_URL: &str = "oci://registry.example.com/wasmplug/unity-format";
const EXAMPLE_OCI_ZIP_URL: &str = "oci://registry.example.com/wasmplug/unity-format-package";
const EXAMPLE_OCI_DIGEST: &str = "sha256:4c1f9e3a7b2d6e8f0a1b3c5d7e9f1a2b4c6d8e0f2a4b6c8d0e2f4a6b8c0d2e4f";
/// Where the OCI example names its pull secret; a private CA goes beside it.
const SECRET_LINE: &str = "secretRef:";
/// The public ZIP example, pulled from a private registry with a private CA.
const LOGGED_IN_REF: &str =
    "      secretRef: {name: registry-credentials}\n      certSecretRef: {name: registry-ca}\n      ref:";

/// A repository like the one the Git examples name: the unity-format package in
/// `package/` at tags v0.1.0, v0.2.0 (a new build) and v0.3.0 (a broken build).
fn unity_repository(git: &GitServer) -> Repo {
    let repo = git.create("unity-format").expect("repository");
    repo.commit_package("package", &example_package("unity-format"), "unity-format 0.1.0").expect("commit");
    repo.tag("v0.1.0").expect("tag");
    let (manifest, wasm) = example_files("unity-format");
    let v2 = with_version(&manifest, "0.2.0");
    let v2_wasm = with_custom_section(&wasm, "build", b"0.2.0");
    repo.commit(&[("package/plugin.toml", &v2), ("package/plugin.wasm", &v2_wasm)], "0.2.0").expect("commit");
    repo.tag("v0.2.0").expect("tag");
    let (_, broken) = example_files("wrong-world");
    let v3 = with_version(&manifest, "0.3.0");
    repo.commit(&[("package/plugin.toml", &v3), ("package/plugin.wasm", &broken)], "0.3.0").expect("commit");
    repo.tag("v0.3.0").expect("tag");
    repo
}

async fn kubectl_apply(namespace: &str, yaml: &str) -> String {
    let output = control_plane().kubectl().run_with_stdin(&["apply", "-n", namespace, "-f", "-"], yaml).await;
    output.expect("kubectl runs").success().unwrap_or_else(|e| panic!("{e:#}\n{yaml}"))
}

async fn kubectl_wait_ready(namespace: &str, objects: &[&str]) {
    kubectl_wait(namespace, "Ready", objects).await;
}

/// `kubectl wait --for=condition=<condition>` on `objects`, as a pipeline would.
async fn kubectl_wait(namespace: &str, condition: &str, objects: &[&str]) {
    let condition = format!("--for=condition={condition}");
    let mut args = vec!["wait", "-n", namespace, &condition, "--timeout=60s"];
    args.extend_from_slice(objects);
    control_plane().kubectl().succeed(&args).await;
}

/// The `wasmplug-served-by` of an answer from the host for `key`, once it is `expected`.
async fn wait_served_by(webhook: &Webhooked, key: &str, path: &str, expected: &str) {
    eventually(&format!("{key} served by {expected}"), SOON, || async {
        let answer = webhook.stack.validate(key, path, b"not a package").await.map_err(|e| e.to_string())?;
        let served_by = answer.served_by.clone().unwrap_or_default();
        served_by.starts_with(expected).then_some(()).ok_or(format!("{answer:?}"))
    })
    .await;
}

#[tokio::test]
async fn a_user_installs_updates_disables_and_removes_plugins_with_kubectl() {
    let ns = control_plane().namespace("user").await;
    let webhook = Webhooked::start(ns.name(), &[]).await.expect("operator and host start");
    webhook.register().await.expect("the webhook is registered");
    let git = GitServer::start().expect("git daemon starts");
    let repo = unity_repository(&git);
    let kubectl = control_plane().kubectl();
    let unity_path = "Assets/x.unitypackage";

    // Install: a core format and a plugin from a Git tag.
    let tagged = |tag: &str| example("unity-git-tag.yaml", &[(EXAMPLE_GIT_URL, repo.url()), ("v0.1.0", tag)]);
    kubectl_apply(ns.name(), &example("npm-builtin.yaml", &[])).await;
    kubectl_apply(ns.name(), &tagged("v0.1.0")).await;
    kubectl_wait_ready(ns.name(), &["fp/npm", "fp/unity"]).await;
    wait_served_by(&webhook, "unity", unity_path, "unity-format@0.1.0").await;
    let listed = kubectl.succeed(&["get", "fp", "-n", ns.name(), "-o", "wide"]).await;
    assert!(listed.contains("0.1.0") && listed.contains("v0.1.0@sha1:"), "the version and revision columns: {listed}");

    // Update: the new version serves; the host did not restart.
    kubectl_apply(ns.name(), &tagged("v0.2.0")).await;
    wait_served_by(&webhook, "unity", unity_path, "unity-format@0.2.0").await;
    kubectl_wait_ready(ns.name(), &["fp/unity"]).await;

    // A broken update leaves the last good version serving, and says why.
    kubectl_apply(ns.name(), &tagged("v0.3.0")).await;
    let api = ns.api::<FormatPlugin>();
    let message = wait_condition(&api, "unity", "False", "ValidationFailed").await;
    assert!(message.contains("still serving"), "{message}");
    wait_served_by(&webhook, "unity", unity_path, "unity-format@0.2.0").await;
    kubectl_apply(ns.name(), &tagged("v0.2.0")).await;
    kubectl_wait_ready(ns.name(), &["fp/unity"]).await;

    // A second plugin for the same format is refused at apply time, naming the owner.
    let zip_example = example("unity-url.yaml", &[]);
    let stderr = refused(&["apply", "-n", ns.name(), "-f", "-"], &zip_example).await;
    assert!(stderr.contains(&format!("already owned by FormatPlugin {}/unity", ns.name())), "{stderr}");

    // Disable: new calls get "format unavailable" within 5 s.
    let set_enabled = |name: &'static str, enabled: bool| {
        let ns = ns.name().to_owned();
        async move {
            let patch = format!(r#"{{"spec":{{"enabled":{enabled}}}}}"#);
            control_plane().kubectl().run(&["patch", "fp", name, "-n", &ns, "--type=merge", "-p", &patch]).await
        }
    };
    set_enabled("unity", false).await.expect("kubectl runs").success().expect("unity disabled");
    eventually("unity unavailable", Duration::from_secs(5), || async {
        let answer = webhook.stack.validate("unity", unity_path, b"").await.map_err(|e| e.to_string())?;
        (answer.status == 409 && answer.body.contains("format_unavailable")).then_some(()).ok_or(format!("{answer:?}"))
    })
    .await;
    // The last enabled format cannot be disabled.
    let stderr = set_enabled("npm", false).await.expect("kubectl runs").failure().expect("npm stays enabled");
    assert!(stderr.contains("at least one format must remain enabled"), "{stderr}");
    set_enabled("unity", true).await.expect("kubectl runs").success().expect("unity enabled");
    wait_served_by(&webhook, "unity", unity_path, "unity-format@0.2.0").await;
    // Hosts follow spec.enabled at once; the operator's status and Event follow.
    wait_condition(&api, "unity", "True", "Succeeded").await;

    // Delete: the format goes from the host.
    kubectl.succeed(&["delete", "-n", ns.name(), "fp/unity", "--timeout=30s"]).await;
    eventually("unity unloaded", Duration::from_secs(5), || async {
        let formats = webhook.stack.formats().await.map_err(|e| e.to_string())?;
        (!formats.contains_key("unity")).then_some(()).ok_or(format!("{formats:?}"))
    })
    .await;

    // Every step left an Event (the audit trail), in order.
    let reasons = event_reasons(ns.name(), "unity").await;
    let expected = ["Installed", "Updated", "ValidationFailed", "Disabled", "Enabled", "Removed"];
    let mut rest = reasons.iter();
    for reason in expected {
        assert!(rest.any(|r| r == reason), "Events about unity, in order, should include {expected:?}: {reasons:?}");
    }
    // ... and a structured log line with the same reason.
    let log = webhook.stack.operator.process.log();
    for reason in expected {
        assert!(log.contains(&format!("reason={reason}")), "no operator log line with reason={reason}");
    }
    assert_eq!(webhook.stack.host.log().matches("serving; try").count(), 1, "the host did not restart");
}

#[tokio::test]
async fn every_example_source_installs_as_written_apart_from_its_addresses() {
    let ns = control_plane().namespace("user-sources").await;
    let package_dir = example_package("unity-format").display().to_string();
    let roots = format!("--local-source-roots={package_dir}");
    let webhook = Webhooked::start(ns.name(), &[&roots]).await.expect("operator and host start");
    webhook.register().await.expect("the webhook is registered");
    kubectl_apply(ns.name(), &example("npm-builtin.yaml", &[])).await;
    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("unity-format").expect("repository");
    repo.commit_package("package", &example_package("unity-format"), "unity-format 0.1.0").expect("commit");
    let http = git.serve_http("reader", "s3cret").await.expect("git over HTTP");
    let secret = ["create", "secret", "generic", "git-credentials", "-n", ns.name()];
    let mut secret = secret.to_vec();
    secret.extend(["--from-literal=username=reader", "--from-literal=password=s3cret"]);
    control_plane().kubectl().succeed(&secret).await;
    let files = FileServer::start().await.expect("file server starts");
    let (manifest, wasm) = example_files("unity-format");
    let zip_url =
        files.put("/unity-format-1.0.0.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    let example_digest = "sha256:9f2c4e1b7a0d3c5e8f6a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";
    let digest = format!("sha256:{}", sha256_hex(&wasm));

    // A private registry over TLS with its own CA, holding both OCI shapes as
    // the publishing doc pushes them.
    let login = ("publisher".to_owned(), "s3cret".to_owned());
    let registry =
        OciRegistry::start(RegistryOptions { basic_auth: Some(login), tls: true, token: None }).expect("the registry");
    let component = [
        ("plugin.wasm", wasm.as_slice(), "application/wasm"),
        ("plugin.toml", manifest.as_slice(), "application/toml"),
    ];
    registry
        .push("wasmplug/unity-format", "1.0.0", "application/vnd.wasmplug.plugin.v1", &component)
        .expect("oras push");
    let package = zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)]);
    let zip_layer = [("unity-format.zip", package.as_slice(), "application/zip")];
    let oci_zip_digest = registry
        .push("wasmplug/unity-format-package", "1.0.0", "application/vnd.wasmplug.plugin.v1", &zip_layer)
        .expect("oras push");
    let (oci_url, oci_zip_url) = (registry.url("wasmplug/unity-format"), registry.url("wasmplug/unity-format-package"));
    let server = format!("--docker-server={}", registry.address());
    let pull_secret = ["create", "secret", "docker-registry", "registry-credentials", "-n", ns.name(), &server];
    let pull_secret: Vec<&str> =
        pull_secret.into_iter().chain(["--docker-username=publisher", "--docker-password=s3cret"]).collect();
    control_plane().kubectl().succeed(&pull_secret).await;
    let ca = format!("--from-file=ca.crt={}", registry.ca_cert().expect("a CA").display());
    control_plane().kubectl().succeed(&["create", "secret", "generic", "registry-ca", "-n", ns.name(), &ca]).await;
    // What a user adds for a registry whose certificate a private CA signed.
    let trusting_ca = format!("certSecretRef: {{name: registry-ca}}\n      {SECRET_LINE}");

    let examples = [
        (
            "unity-zip",
            example(
                "unity-url.yaml",
                &[("https://plugins.example.com/unity-format-1.0.0.zip", &zip_url), (example_digest, &digest)],
            ),
            true,
        ),
        ("unity-dev", example("unity-local.yaml", &[("/work/unity-format/package", &package_dir)]), true),
        ("unity-edge", example("unity-git-branch.yaml", &[(EXAMPLE_GIT_URL, &http.url("unity-format"))]), false),
        ("unity-oci", example("unity-oci.yaml", &[(EXAMPLE_OCI_URL, &oci_url), (SECRET_LINE, &trusting_ca)]), true),
        (
            "unity-oci-zip",
            example(
                "unity-oci-zip.yaml",
                &[
                    (EXAMPLE_OCI_ZIP_URL, &oci_zip_url),
                    (EXAMPLE_OCI_DIGEST, &oci_zip_digest),
                    ("      ref:", LOGGED_IN_REF),
                ],
            ),
            true,
        ),
    ];
    for (name, manifest, enabled) in examples {
        kubectl_apply(ns.name(), &manifest).await;
        kubectl_wait_ready(ns.name(), &[&format!("fp/{name}")]).await;
        eventually(&format!("{name} loaded as enabled={enabled}"), SOON, || async {
            let formats = webhook.stack.formats().await.map_err(|e| e.to_string())?;
            let state = formats.get("unity").map(|f| f["state"].as_str().unwrap_or_default().to_owned());
            let want = if enabled { "active" } else { "disabled" };
            (state.as_deref() == Some(want)).then_some(()).ok_or(format!("{formats:?}"))
        })
        .await;
        control_plane().kubectl().succeed(&["delete", "-n", ns.name(), &format!("fp/{name}"), "--timeout=30s"]).await;
    }
}

#[tokio::test]
async fn re_applying_identical_manifests_changes_nothing() {
    let ns = control_plane().namespace("gitops").await;
    let webhook = Webhooked::start(ns.name(), &[]).await.expect("operator and host start");
    webhook.register().await.expect("the webhook is registered");
    let git = GitServer::start().expect("git daemon starts");
    let repo = unity_repository(&git);
    let manifests = [example("npm-builtin.yaml", &[]), example("unity-git-tag.yaml", &[(EXAMPLE_GIT_URL, repo.url())])]
        .join("---\n");
    // As Flux does: server-side apply under the tool's own field manager.
    let kubectl = control_plane().kubectl();
    let apply = |yaml: String| {
        let ns = ns.name().to_owned();
        async move {
            let args = ["apply", "--server-side", "--field-manager=gitops", "-n", &ns, "-f", "-"];
            control_plane()
                .kubectl()
                .run_with_stdin(&args, &yaml)
                .await
                .expect("kubectl runs")
                .success()
                .expect("applied")
        }
    };
    apply(manifests.clone()).await;
    kubectl_wait_ready(ns.name(), &["fp/npm", "fp/unity"]).await;
    // Served everywhere, and the FormatPlugins say so: nothing left to write.
    kubectl_wait(ns.name(), "Serving", &["fp/npm", "fp/unity"]).await;
    wait_served_by(&webhook, "unity", "x.unitypackage", "unity-format@0.1.0").await;

    let state = || async {
        let objects = kubectl.succeed(&["get", "fp", "-n", ns.name(), "-o", "json"]).await;
        let objects: serde_json::Value = serde_json::from_str(&objects).expect("JSON");
        let versions: Vec<String> = objects["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["metadata"]["resourceVersion"].to_string())
            .collect();
        let statuses: Vec<String> =
            objects["items"].as_array().into_iter().flatten().map(|o| o["status"].to_string()).collect();
        let events = kubectl.succeed(&["get", "events.events.k8s.io", "-n", ns.name(), "-o", "name"]).await;
        let installs = metric(&webhook.stack.host_url, "wasmplug_host_installs_total").await;
        (versions, statuses, events.lines().count(), installs)
    };
    let (versions, statuses, events, installs) = state().await;

    // The same manifests, three times: the API server stores nothing new.
    for _ in 0..3 {
        apply(manifests.clone()).await;
    }
    let (versions_after, ..) = state().await;
    assert_eq!(versions, versions_after, "identical applies changed the objects");

    // A metadata-only change (a label a GitOps tool adds) is seen by the operator,
    // which finds nothing to do: no status write, no Event, no reload.
    let reconciled =
        metric(&webhook.stack.operator.url, "wasmplug_operator_reconciles_total{result=\"UpToDate\"}").await;
    apply(manifests.replace("  name: unity\n", "  name: unity\n  labels:\n    app.kubernetes.io/managed-by: gitops\n"))
        .await;
    eventually("the operator reconciles the relabelled object", SOON, || async {
        let now = metric(&webhook.stack.operator.url, "wasmplug_operator_reconciles_total{result=\"UpToDate\"}").await;
        (now > reconciled).then_some(()).ok_or(format!("{now}"))
    })
    .await;
    let (_, statuses_after, events_after, installs_after) = state().await;
    assert_eq!(statuses, statuses_after, "status changed");
    assert_eq!(events, events_after, "new Events");
    assert_eq!(installs, installs_after, "the host reloaded a plugin");
}

/// The value of the sample `name` (with its labels) at `url`/metrics; 0 if absent.
async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}
