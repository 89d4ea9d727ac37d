//! The FormatPlugin API on a real API server: the CRD installs, valid objects of each
//! source kind are accepted with their defaults, invalid ones are rejected with
//! messages a user can act on, and the status contract works with server-side apply,
//! `kubectl wait`, `kubectl get` and `kubectl explain`.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use wasmplug_crds::conditions::{ConditionType, Reason};
use wasmplug_crds::{FormatPlugin, FormatPluginStatus};
use wasmplug_e2e::{TestNamespace, control_plane};

/// A FormatPlugin manifest as a user writes it, with `spec` given as YAML.
fn manifest(name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|line| format!("  {line}\n")).collect();
    format!("apiVersion: wasmplug.dev/v1alpha1\nkind: FormatPlugin\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

async fn apply(ns: &TestNamespace, yaml: &str) -> wasmplug_e2e::KubectlOutput {
    control_plane().kubectl().run_with_stdin(&["apply", "-n", ns.name(), "-f", "-"], yaml).await.expect("kubectl runs")
}

#[tokio::test]
async fn crd_is_established_with_its_names() {
    let client = control_plane().client().await;
    let crd =
        Api::<CustomResourceDefinition>::all(client).get("formatplugins.wasmplug.dev").await.expect("the CRD exists");
    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    for wanted in ["Established", "NamesAccepted"] {
        let condition = conditions.iter().find(|c| c.type_ == wanted);
        assert_eq!(condition.map(|c| c.status.as_str()), Some("True"), "{wanted} in {conditions:?}");
    }
    assert_eq!(crd.spec.names.short_names, Some(vec!["fp".to_owned()]));
    assert_eq!(crd.spec.scope, "Namespaced");

    let resources =
        control_plane().kubectl().succeed(&["api-resources", "--api-group=wasmplug.dev", "--no-headers"]).await;
    let lines: Vec<Vec<&str>> = resources.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(
        lines,
        [
            ["formathosts", "fh", "wasmplug.dev/v1alpha1", "true", "FormatHost"],
            ["formatplugins", "fp", "wasmplug.dev/v1alpha1", "true", "FormatPlugin"]
        ],
        "{resources}"
    );
}

#[tokio::test]
async fn accepts_each_source_kind_and_applies_defaults() {
    let ns = control_plane().namespace("sources").await;
    let sources = [
        (
            "git",
            "source:\n  git:\n    url: https://git.example.com/plugins/unity.git\n    ref: {tag: v1.0.0}\n    path: plugins/unity\n    secretRef: {name: git-credentials}\ninterval: 5m",
        ),
        ("git-ssh", "source:\n  git:\n    url: ssh://git@git.example.com:2222/plugins/unity.git"),
        ("git-scp", "source:\n  git:\n    url: git@git.example.com:plugins/unity.git"),
        (
            "url",
            "source:\n  url:\n    url: https://plugins.example.com/unity-1.0.0.zip\nsha256: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        ("local", "source:\n  local:\n    path: /plugins/unity\nlimits: {memory: 32Mi, timeout: 2s, fuel: 1000000}"),
        ("builtin", "source:\n  builtin:\n    format: npm"),
        (
            "oci",
            "source:\n  oci:\n    url: oci://registry.example.com:5000/wasmplug/unity-format\n    ref: {semver: '>=1.2.0, <2'}\n    secretRef: {name: oci-pull}\n    certSecretRef: {name: registry-ca}",
        ),
        ("oci-default-ref", "source:\n  oci:\n    url: oci://[::1]:5000/unity\n    insecure: true"),
    ];
    for (name, spec) in sources {
        apply(&ns, &manifest(name, spec)).await.success().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let plugin = ns.api::<FormatPlugin>().get(name).await.expect("the applied object can be read");
        let kind = plugin.spec.source.kind().map(|kind| kind.name());
        let expected = name.split('-').next();
        assert_eq!(kind, expected, "the stored object has exactly the {name} source");
        assert!(plugin.spec.enabled, "enabled defaults to true");
        assert!(!plugin.spec.suspend, "suspend defaults to false");
        assert_eq!(Duration::from(plugin.spec.timeout), Duration::from_secs(60), "timeout defaults to 60s");
    }
    let local = ns.api::<FormatPlugin>().get("local").await.expect("local exists");
    let limits = local.spec.limits.expect("limits are kept");
    assert_eq!(limits.memory_bytes(), Some(32 << 20));
    assert_eq!(limits.timeout.map(Duration::from), Some(Duration::from_secs(2)));
    assert_eq!(limits.fuel, Some(1_000_000));
}

#[tokio::test]
async fn rejects_invalid_specs_with_messages_a_user_understands() {
    let ns = control_plane().namespace("invalid").await;
    let builtin = "source:\n  builtin:\n    format: npm";
    let cases = [
        ("no-source-field", "enabled: true", "spec.source: Required value"),
        ("empty-source", "source: {}", "exactly one source must be set: git, url, oci, local or builtin"),
        (
            "two-sources",
            "source:\n  builtin: {format: npm}\n  local: {path: /plugins/npm}",
            "exactly one source must be set: git, url, oci, local or builtin",
        ),
        ("short-sha256", "source:\n  local: {path: /p}\nsha256: abc123", "sha256 must be 64 lowercase hex digits"),
        (
            "uppercase-sha256",
            "source:\n  local: {path: /p}\nsha256: 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
            "sha256 must be 64 lowercase hex digits",
        ),
        (
            "sha256-on-builtin",
            &format!("{builtin}\nsha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            "sha256 cannot be set for a builtin source",
        ),
        (
            "verify-on-builtin",
            &format!("{builtin}\nverify: {{secretRef: {{name: keys}}}}"),
            "verify cannot be set for a builtin source",
        ),
        (
            "cosign-on-a-url",
            "source:\n  url: {url: https://plugins.example.com/p.zip}\nverify: {provider: cosign}",
            "verify.provider cosign needs an oci source",
        ),
        (
            "unknown-signature-provider",
            "source:\n  local: {path: /p}\nverify: {provider: gpg}",
            "Unsupported value: \"gpg\"",
        ),
        ("bad-format-key", "source:\n  builtin: {format: Maven_2}", "format must be a format key"),
        ("trailing-hyphen-key", "source:\n  builtin: {format: npm-}", "format must be a format key"),
        (
            "bad-interval",
            &format!("{builtin}\ninterval: 10 minutes"),
            "interval must be a duration such as 30s, 5m or 1h30m",
        ),
        ("bad-timeout", &format!("{builtin}\ntimeout: soon"), "timeout must be a duration such as 30s, 5m or 1h30m"),
        ("bad-call-timeout", &format!("{builtin}\nlimits: {{timeout: 2x}}"), "timeout must be a duration"),
        ("bad-memory", &format!("{builtin}\nlimits: {{memory: 64MB}}"), "memory must be a whole number of bytes"),
        (
            "two-refs",
            "source:\n  git:\n    url: https://example.com/r.git\n    ref: {branch: main, tag: v1}",
            "ref must set exactly one of branch, tag or commit",
        ),
        (
            "short-commit",
            "source:\n  git:\n    url: https://example.com/r.git\n    ref: {commit: abc1234}",
            "commit must be a full 40-character lowercase hex SHA-1",
        ),
        (
            "escaping-path",
            "source:\n  git:\n    url: https://example.com/r.git\n    path: plugins/../../etc",
            "path must be relative to the repository root and must not contain '..'",
        ),
        (
            "bad-git-url",
            "source:\n  git:\n    url: example.com/r.git",
            "url must be an https://, http://, ssh:// or git:// URL",
        ),
        ("ftp-url", "source:\n  url:\n    url: ftp://example.com/p.zip", "url must start with http:// or https://"),
        // Finding 2 of issue 11: addresses two parsers read as two hosts, and
        // credentials in the address, are refused by the API server too.
        (
            "backslash-url",
            "source:\n  url:\n    url: 'http://other:8080\\@allowed.example.com/p.zip'",
            "url must start with http:// or https:// and name a host without credentials",
        ),
        (
            "userinfo-url",
            "source:\n  url:\n    url: https://user:pw@plugins.example.com/p.zip",
            "url must start with http:// or https:// and name a host without credentials",
        ),
        (
            "userinfo-git-url",
            "source:\n  git:\n    url: https://token@git.example.com/r.git",
            "url must be an https://, http://, ssh:// or git:// URL naming a host without credentials",
        ),
        ("relative-local", "source:\n  local:\n    path: plugins/unity", "path must be absolute"),
        (
            "oci-with-tag-in-url",
            "source:\n  oci:\n    url: oci://registry.example.com/plugins/unity:v1",
            "url must be oci://registry[:port]/repository",
        ),
        (
            "oci-https-url",
            "source:\n  oci:\n    url: https://registry.example.com/plugins/unity",
            "url must be oci://registry[:port]/repository",
        ),
        (
            "oci-two-refs",
            "source:\n  oci:\n    url: oci://registry.example.com/p\n    ref: {tag: v1, semver: '>=1'}",
            "ref must set exactly one of tag, digest or semver",
        ),
        (
            "oci-short-digest",
            "source:\n  oci:\n    url: oci://registry.example.com/p\n    ref: {digest: 'sha256:abc'}",
            "digest must be sha256: followed by 64 lowercase hex digits",
        ),
        (
            "oci-bad-tag",
            "source:\n  oci:\n    url: oci://registry.example.com/p\n    ref: {tag: '-v1'}",
            "tag must be 1 to 128 letters, digits",
        ),
    ];
    for (name, spec, expected) in cases {
        let stderr = apply(&ns, &manifest(name, spec)).await.failure().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(stderr.contains(expected), "{name}: expected the error to say {expected:?}, kubectl said: {stderr}");
        assert!(
            stderr.contains(&format!("\"{name}\" is invalid")),
            "{name}: the error should name the object, kubectl said: {stderr}"
        );
        let stored = ns.api::<FormatPlugin>().get_opt(name).await.expect("get works");
        assert!(stored.is_none(), "{name}: a rejected object must not be stored");
    }
}

#[tokio::test]
async fn example_manifests_are_accepted() {
    let ns = control_plane().namespace("examples").await;
    let dir = wasmplug_e2e::repository_root().join("examples/formatplugins");
    let dir = dir.to_string_lossy();
    let output = control_plane().kubectl().succeed(&["apply", "--dry-run=server", "-n", ns.name(), "-f", &dir]).await;
    let accepted = output.lines().filter(|line| line.ends_with("created (server dry run)")).count();
    let files = std::fs::read_dir(&*dir).expect("examples/formatplugins exists").count();
    assert_eq!(accepted, files, "every example manifest is accepted:\n{output}");
}

/// The status the operator writes for a published plugin, in its wire form.
fn published_status(generation: i64) -> serde_json::Value {
    let condition = |type_: ConditionType, status: &str, reason: Reason, message: &str| {
        json!({
            "type": type_.as_str(), "status": status, "reason": reason.as_str(), "message": message,
            "observedGeneration": generation, "lastTransitionTime": "2026-11-21T10:00:00Z",
        })
    };
    json!({
        "observedGeneration": generation,
        "conditions": [
            condition(ConditionType::Ready, "True", Reason::Succeeded, "serving unity 1.0.0 (sha256:ab12...)"),
            condition(ConditionType::Fetched, "True", Reason::Succeeded, "fetched v1.0.0"),
            condition(ConditionType::Validated, "True", Reason::Succeeded, "valid format-plugin component"),
            condition(ConditionType::Serving, "False", Reason::Rollout, "1 of 2 hosts serve unity-format 1.0.0"),
        ],
        "hosts": {
            "expected": 2, "serving": 1, "summary": "1/2",
            "notServing": [{"host": "host-1", "state": "missing", "message": "not loaded yet"}],
        },
        "artifact": {
            "digest": format!("sha256:{}", "ab".repeat(32)),
            "path": format!("artifacts/sha256/{}", "ab".repeat(32)),
            "revision": format!("v1.0.0@sha1:{}", "cd".repeat(20)),
            "size": 164_532,
            "lastUpdateTime": "2026-11-21T10:00:00Z",
            "precompiled": {
                "file": "wasmtime-x86_64-0123456789abcdef.cwasm", "engine": "wasmtime-x86_64-0123456789abcdef",
                "digest": format!("sha256:{}", "ef".repeat(32)), "size": 412_000,
            },
        },
        "plugin": {
            "name": "unity-format", "version": "1.0.0", "formatKey": "unity", "displayName": "Unity packages",
            "extensions": [".unitypackage"],
            "capabilities": {"parseMetadata": true, "validateArtifact": true, "generateIndex": true, "handleRequest": false},
        },
    })
}

async fn apply_status(api: &Api<FormatPlugin>, name: &str, status: serde_json::Value) -> FormatPlugin {
    let patch = json!({"apiVersion": "wasmplug.dev/v1alpha1", "kind": "FormatPlugin", "status": status});
    api.patch_status(name, &PatchParams::apply("wasmplug-operator").force(), &Patch::Apply(patch))
        .await
        .expect("the operator's status apply is accepted")
}

#[tokio::test]
async fn status_round_trips_and_kubectl_wait_sees_ready() {
    let ns = control_plane().namespace("status").await;
    let spec = "source:\n  git:\n    url: https://git.example.com/unity.git\n    ref: {tag: v1.0.0}";
    apply(&ns, &manifest("unity", spec)).await.success().expect("apply succeeds");
    let api = ns.api::<FormatPlugin>();
    let generation = api.get("unity").await.expect("exists").metadata.generation.expect("a generation is set");

    // A user waits for readiness before the operator has written anything.
    let kubectl = control_plane().kubectl();
    let namespace = ns.name().to_owned();
    let waiting = tokio::spawn(async move {
        kubectl.run(&["wait", "-n", &namespace, "--for=condition=Ready", "--timeout=60s", "fp/unity"]).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "kubectl wait must not return before Ready is True");

    let written = apply_status(&api, "unity", published_status(generation)).await;
    let output = waiting.await.expect("the wait task completes").expect("kubectl runs");
    let output = output.success().expect("kubectl wait sees Ready=True");
    assert!(output.contains("formatplugin.wasmplug.dev/unity condition met"), "{output}");

    let expected: FormatPluginStatus =
        serde_json::from_value(published_status(generation)).expect("status deserializes");
    let read = api.get("unity").await.expect("exists");
    assert_eq!(read.status.as_ref(), Some(&expected), "the status round-trips unchanged");
    assert_eq!(written.status, read.status);
    assert_eq!(read.metadata.generation, Some(generation), "a status write does not change the generation");
    assert!(read.is_ready_at_current_generation());

    // Conditions merge by type: an apply that only carries Ready leaves no other
    // condition behind that this manager owned, and updates Ready in place.
    let mut not_ready = published_status(generation);
    not_ready["conditions"] = json!([{
        "type": "Ready", "status": "False", "reason": Reason::FetchFailed.as_str(),
        "message": "failed to fetch tag v1.0.1", "observedGeneration": generation,
        "lastTransitionTime": "2026-11-21T11:00:00Z",
    }]);
    let updated = apply_status(&api, "unity", not_ready).await;
    let conditions = &updated.status.as_ref().expect("status").conditions;
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    assert_eq!(updated.condition(ConditionType::Ready).map(|c| c.reason.as_str()), Some("FetchFailed"));
    assert!(!updated.is_ready_at_current_generation());

    // A spec change makes the status stale until the operator observes it.
    apply(&ns, &manifest("unity", &format!("{spec}\nenabled: false"))).await.success().expect("apply succeeds");
    apply_status(&api, "unity", published_status(generation)).await;
    let stale = api.get("unity").await.expect("exists");
    assert_eq!(stale.metadata.generation, Some(generation + 1));
    assert!(!stale.is_ready_at_current_generation(), "Ready from an older generation does not count");
}

/// Trust invariant 1, at the API server: a status that names a file outside its
/// artifact directory, or a directory other than the digest's, is refused.
#[tokio::test]
async fn status_names_only_content_addresses_and_plain_file_names() {
    let ns = control_plane().namespace("status-paths").await;
    apply(&ns, &manifest("unity", "source:\n  builtin:\n    format: npm")).await.success().expect("apply succeeds");
    let api = ns.api::<FormatPlugin>();
    let refused = [
        (("precompiled", "file"), json!("/dev/zero"), "file must be the engine identifier followed by .cwasm"),
        (("precompiled", "file"), json!("../../x.cwasm"), "file must be the engine identifier followed by .cwasm"),
        (("precompiled", "engine"), json!("wasmtime-../..-0123456789abcdef"), "engine must be wasmtime-"),
        (("precompiled", "digest"), json!("sha256:00"), "digest must be sha256: followed by 64"),
        (("artifact", "path"), json!("/etc"), "path must be the content address of digest"),
        (("artifact", "path"), json!(format!("artifacts/sha256/{}", "cd".repeat(32))), "path must be the content"),
        (("artifact", "url"), json!("http://elsewhere.example/x"), "url must end with /<path>"),
        (("manifest", "digest"), json!("sha256:00"), "digest must be sha256: followed by 64"),
    ];
    for ((object, field), value, message) in refused {
        let mut status = published_status(1);
        status["artifact"]["manifest"] = json!({"digest": format!("sha256:{}", "ef".repeat(32)), "size": 10});
        match object {
            "artifact" => status["artifact"][field] = value.clone(),
            _ => status["artifact"][object][field] = value.clone(),
        }
        let patch = json!({"apiVersion": "wasmplug.dev/v1alpha1", "kind": "FormatPlugin", "status": status});
        let error = api
            .patch_status("unity", &PatchParams::apply("wasmplug-operator").force(), &Patch::Apply(patch))
            .await
            .expect_err("the API server refuses the status");
        assert!(error.to_string().contains(message), "{object}.{field} = {value}: {error}");
    }
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let ns = control_plane().namespace("columns").await;
    apply(
        &ns,
        &manifest("unity", "source:\n  git:\n    url: https://git.example.com/unity.git\n    ref: {tag: v1.0.0}"),
    )
    .await
    .success()
    .expect("apply succeeds");
    let api = ns.api::<FormatPlugin>();
    let generation = api.get("unity").await.expect("exists").metadata.generation.expect("generation");
    apply_status(&api, "unity", published_status(generation)).await;

    let kubectl = control_plane().kubectl();
    let table = kubectl.succeed(&["get", "fp", "-n", ns.name()]).await;
    let lines: Vec<Vec<&str>> = table.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "FORMAT", "VERSION", "ENABLED", "READY", "SERVING", "REVISION", "AGE"], "{table}");
    let revision = format!("v1.0.0@sha1:{}", "cd".repeat(20));
    assert_eq!(lines[1][..7], ["unity", "unity", "1.0.0", "true", "True", "1/2", revision.as_str()], "{table}");

    let wide = kubectl.succeed(&["get", "fp", "-n", ns.name(), "-o", "wide"]).await;
    let header: Vec<&str> = wide.lines().next().unwrap_or_default().split_whitespace().collect();
    assert!(header.ends_with(&["STATUS", "HOSTS"]), "{wide}");
    assert!(wide.contains("serving unity 1.0.0") && wide.contains("1 of 2 hosts serve"), "{wide}");

    let by_category = kubectl.succeed(&["get", "wasmplug", "-n", ns.name(), "-o", "name"]).await;
    assert_eq!(by_category.trim(), "formatplugin.wasmplug.dev/unity");
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let kubectl = control_plane().kubectl();
    let expectations = [
        ("fp.spec.source", "Set exactly one of git, url, oci,"),
        ("fp.spec.source.oci.secretRef", "kubernetes.io/dockerconfigjson"),
        ("fp.spec.source.oci.ref.semver", "The highest matching version is"),
        ("fp.spec.source.git.ref", "Which revision to check out: one of branch, tag or commit."),
        ("fp.spec.sha256", "Expected SHA-256 digest of plugin.wasm"),
        ("fp.spec.verify", "SignatureMissing"),
        ("fp.spec.verify.secretRef", "PLUGINS_TRUSTED_PUBKEY"),
        ("fp.spec.verify.provider", "plugin.wasm.sig"),
        ("fp.status.artifact.signature.key", "cluster/<name>"),
        ("fp.spec.enabled", "format unavailable"),
        ("fp.status.artifact.revision", "@sha1:<commit> for Git"),
        ("fp.status.artifact.url", "hosts fetch the"),
        ("fp.status.artifact.manifest", "Hosts that download the package check it"),
        ("fp.status.hosts.notServing", "failures first, at"),
        ("fh.spec.formats.failedDigest", "The plugin.wasm digest whose load failed"),
        ("formathosts.spec.pod", "counts only while that pod"),
    ];
    // The API server publishes a new CRD's OpenAPI a moment after it is established.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (field, expected) in expectations {
        let explained = loop {
            let output = kubectl.run(&["explain", field]).await.expect("kubectl runs");
            match output.success() {
                Ok(text) if text.contains(expected) => break text,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
                Ok(text) => panic!("kubectl explain {field} does not say {expected:?}:\n{text}"),
                Err(error) => panic!("kubectl explain {field} failed: {error:#}"),
            }
        };
        assert!(explained.contains("GROUP:      wasmplug.dev") || explained.contains("wasmplug.dev"), "{explained}");
    }
}
