//! Signature verification on the real control plane, with packages signed the
//! way publishers sign them (the `openssl` command line, Artifact Keeper's
//! detached plugin.wasm.sig): per object (spec.verify with a Secret of keys) and
//! cluster-wide (--require-signatures with a key directory), over URL and OCI
//! sources, through key rotation, and every refusal keeping the last good
//! version serving.

mod support;

use std::time::Duration;

use kube::Api;
use support::{apply, format_plugin, sha256_hex, status, wait_condition, wait_ready};
use wasmplug_crds::FormatPlugin;
use wasmplug_crds::conditions::ConditionType;
use wasmplug_e2e::{
    FileServer, OciRegistry, RegistryOptions, Served, SigningKey, Stack, control_plane, eventually, example_files,
    with_custom_section, zip,
};

const SOON: Duration = Duration::from_secs(60);

/// A package ZIP of the unity example with `wasm`, signed with `signature` if given.
fn package(wasm: &[u8], signature: Option<&[u8]>) -> Vec<u8> {
    let (manifest, _) = example_files("unity-format");
    let mut entries: Vec<(&str, &[u8])> = vec![("plugin.toml", &manifest), ("plugin.wasm", wasm)];
    entries.extend(signature.map(|s| ("plugin.wasm.sig", s)));
    zip(&entries)
}

/// The unity example's plugin.wasm, made distinct by `tag`.
fn version(tag: &str) -> Vec<u8> {
    with_custom_section(&example_files("unity-format").1, "wasmplug-test", tag.as_bytes())
}

fn url_spec(url: &str, extra: &str) -> String {
    format!("source:\n  url:\n    url: {url}\n{extra}")
}

/// Waits until the host serves unity with plugin.wasm `wasm`.
async fn served(stack: &Stack, wasm: &[u8]) {
    let digest = format!("sha256:{}", sha256_hex(wasm));
    eventually(&format!("the host to serve unity at {digest}"), SOON, || async {
        let formats = stack.formats().await.map_err(|e| e.to_string())?;
        let unity = formats.get("unity").cloned().unwrap_or_default();
        if unity["digest"] == digest.as_str() && unity["state"] == "active" { Ok(()) } else { Err(unity.to_string()) }
    })
    .await;
}

/// The SourceVerified condition of `name`: its status, reason and message.
async fn source_verified(api: &Api<FormatPlugin>, name: &str) -> (String, String, String) {
    let plugin = api.get(name).await.expect("the FormatPlugin exists");
    let condition = plugin.condition(ConditionType::SourceVerified).cloned().expect("SourceVerified is reported");
    (condition.status, condition.reason, condition.message)
}

/// A Secret of trusted keys, as `kubectl create secret generic --from-literal`.
async fn key_secret(namespace: &str, name: &str, keys: &[(&str, String)]) {
    let kubectl = control_plane().kubectl();
    let _ = kubectl.run(&["delete", "secret", name, "-n", namespace, "--ignore-not-found"]).await;
    let literals: Vec<String> = keys.iter().map(|(key, value)| format!("--from-literal={key}={value}")).collect();
    let mut args = vec!["create", "secret", "generic", name, "-n", namespace];
    args.extend(literals.iter().map(String::as_str));
    kubectl.succeed(&args).await;
}

#[tokio::test]
async fn spec_verify_checks_signatures_with_the_objects_keys_through_a_rotation() {
    let ns = control_plane().namespace("signed-url").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let api = ns.api::<FormatPlugin>();
    let files = FileServer::start().await.expect("file server");
    let (old, new) = (SigningKey::generate().expect("key"), SigningKey::generate().expect("key"));
    // Both keys trusted while rolling: the old one as Artifact Keeper's
    // PLUGINS_TRUSTED_PUBKEY (base64 of 32 bytes), the new one as openssl's PEM.
    key_secret(ns.name(), "plugin-keys", &[("old.pub", old.public_base64()), ("new.pub", new.public_pem())]).await;
    let verify = "verify:\n  secretRef:\n    name: plugin-keys";

    // Signed by the old key: verified, and status names the key.
    let v1 = version("v1");
    let url = files.put("/v1.zip", Served::File(package(&v1, Some(&old.sign(&v1)))));
    apply(ns.name(), &format_plugin("unity", &url_spec(&url, verify))).await;
    wait_ready(ns.name(), "unity", SOON).await;
    served(&stack, &v1).await;
    let (verified, _, message) = source_verified(&api, "unity").await;
    assert_eq!(verified, "True", "{message}");
    assert!(message.contains("trusted key secret/plugin-keys/old.pub"), "{message}");
    let signature = status(&api, "unity").await.artifact.and_then(|a| a.signature).expect("status.artifact.signature");
    assert_eq!((signature.provider.as_str(), signature.key.as_str()), ("ed25519", "secret/plugin-keys/old.pub"));
    assert!(signature.fingerprint.starts_with("SHA256:"), "{signature:?}");

    // One flipped byte of plugin.wasm after signing: refused, v1 keeps serving.
    let v2 = version("v2");
    let mut flipped = v2.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let url = files.put("/flipped.zip", Served::File(package(&flipped, Some(&new.sign(&v2)))));
    apply(ns.name(), &format_plugin("unity", &url_spec(&url, verify))).await;
    let message = wait_condition(&api, "unity", "False", "SignatureInvalid").await;
    assert!(message.contains("does not verify plugin.wasm with any trusted key"), "{message}");
    assert!(message.contains("secret/plugin-keys/new.pub") && message.contains("still serving"), "{message}");
    assert_eq!(source_verified(&api, "unity").await.1, "SignatureInvalid");
    served(&stack, &v1).await;

    // Unsigned: SignatureMissing, v1 keeps serving.
    let url = files.put("/unsigned.zip", Served::File(package(&v2, None)));
    apply(ns.name(), &format_plugin("unity", &url_spec(&url, verify))).await;
    let message = wait_condition(&api, "unity", "False", "SignatureMissing").await;
    assert!(message.contains("has no plugin.wasm.sig, and spec.verify requires a signature"), "{message}");
    served(&stack, &v1).await;

    // The rotation completes: the new key signs v2, and the old key goes.
    key_secret(ns.name(), "plugin-keys", &[("new.pub", new.public_pem())]).await;
    let url = files.put("/v2.zip", Served::File(package(&v2, Some(&new.sign(&v2)))));
    apply(ns.name(), &format_plugin("unity", &url_spec(&url, verify))).await;
    wait_condition(&api, "unity", "True", "Succeeded").await;
    served(&stack, &v2).await;
    assert!(source_verified(&api, "unity").await.2.contains("secret/plugin-keys/new.pub"));
    // What the old key signs now is refused.
    let v3 = version("v3");
    let url = files.put("/v3.zip", Served::File(package(&v3, Some(&old.sign(&v3)))));
    apply(ns.name(), &format_plugin("unity", &url_spec(&url, verify))).await;
    wait_condition(&api, "unity", "False", "SignatureInvalid").await;
    served(&stack, &v2).await;
}

#[tokio::test]
async fn the_cluster_policy_requires_signatures_from_its_key_directory() {
    let ns = control_plane().namespace("signed-cluster").await;
    let keys = tempfile::tempdir().expect("key directory");
    let publisher = SigningKey::generate().expect("key");
    std::fs::write(keys.path().join("release.pub"), publisher.public_base64()).expect("write the key");
    let dir = keys.path().display().to_string();
    let stack = Stack::start(ns.name(), &["--require-signatures", "--trusted-keys-dir", &dir]).await.expect("start");
    let api = ns.api::<FormatPlugin>();
    let registry = OciRegistry::start(RegistryOptions::default()).expect("the registry starts");
    let (manifest, _) = example_files("unity-format");
    let push = |tag: &str, wasm: &[u8], signature: Option<&[u8]>| {
        let mut layers: Vec<(&str, &[u8], &str)> =
            vec![("plugin.wasm", wasm, "application/wasm"), ("plugin.toml", &manifest, "application/toml")];
        layers.extend(signature.map(|s| ("plugin.wasm.sig", s, "application/vnd.wasmplug.signature.ed25519.v1")));
        registry.push("plugins/unity", tag, "application/vnd.wasmplug.plugin.v1", &layers).expect("oras pushes")
    };
    let oci = |tag: &str| {
        format!(
            "source:
  oci:
    url: {}
    insecure: true
    ref:
      tag: {tag}",
            registry.url("plugins/unity")
        )
    };

    // Builtins are compiled in: never asked for a signature.
    apply(
        ns.name(),
        &format_plugin(
            "npm",
            "source:
  builtin:
    format: npm",
        ),
    )
    .await;
    wait_ready(ns.name(), "npm", SOON).await;

    // An OCI artifact with its signature as a layer (shape c), verified with
    // the cluster's key.
    let v1 = version("v1");
    let signature = publisher.sign(&v1);
    push("v1", &v1, Some(&signature));
    apply(ns.name(), &format_plugin("unity", &oci("v1"))).await;
    wait_ready(ns.name(), "unity", SOON).await;
    served(&stack, &v1).await;
    let (verified, _, message) = source_verified(&api, "unity").await;
    assert_eq!(verified, "True", "{message}");
    assert!(message.contains("trusted key cluster/release.pub"), "{message}");

    // Unsigned under the policy: SignatureMissing, and v1 keeps serving.
    let v2 = version("v2");
    push("v2", &v2, None);
    apply(ns.name(), &format_plugin("unity", &oci("v2"))).await;
    let message = wait_condition(&api, "unity", "False", "SignatureMissing").await;
    assert!(message.contains("the operator requires every plugin to be signed"), "{message}");
    served(&stack, &v1).await;

    // Signed by a key the cluster does not trust yet, then trusted by adding a
    // file to the key directory: no restart, the next fetch verifies.
    let next = SigningKey::generate().expect("key");
    push("v2-signed", &v2, Some(&next.sign(&v2)));
    apply(ns.name(), &format_plugin("unity", &oci("v2-signed"))).await;
    wait_condition(&api, "unity", "False", "SignatureInvalid").await;
    std::fs::write(keys.path().join("next.pub"), next.public_pem()).expect("write the key");
    let annotate = ["annotate", "fp", "unity", "-n", ns.name(), "--overwrite", "wasmplug.dev/requested-at=rotated"];
    control_plane().kubectl().succeed(&annotate).await;
    wait_condition(&api, "unity", "True", "Succeeded").await;
    served(&stack, &v2).await;
    assert!(source_verified(&api, "unity").await.2.contains("trusted key cluster/next.pub"));
}

#[tokio::test]
async fn cosign_signatures_in_the_registry_are_verified_with_cosign_pub() {
    let ns = control_plane().namespace("signed-cosign").await;
    let stack = Stack::start(ns.name(), &[]).await.expect("operator and host start");
    let api = ns.api::<FormatPlugin>();
    let registry = OciRegistry::start(RegistryOptions::default()).expect("the registry starts");
    let (manifest, _) = example_files("unity-format");
    let push = |tag: &str, wasm: &[u8]| {
        let layers = [("plugin.wasm", wasm, "application/wasm"), ("plugin.toml", &manifest[..], "application/toml")];
        registry.push("plugins/unity", tag, "application/vnd.wasmplug.plugin.v1", &layers).expect("oras pushes")
    };
    let publisher = registry.cosign_key_pair().expect("cosign generate-key-pair");
    key_secret(ns.name(), "cosign-keys", &[("cosign.pub", publisher.public_pem())]).await;
    let spec = |tag: &str| {
        format!(
            "source:\n  oci:\n    url: {}\n    insecure: true\n    ref:\n      tag: {tag}\nverify:\n  provider: cosign\n  secretRef:\n    name: cosign-keys",
            registry.url("plugins/unity")
        )
    };

    // Signed with cosign sign --key: verified, and status names cosign.pub.
    let v1 = version("v1");
    let v1_digest = push("v1", &v1);
    registry.cosign_sign("plugins/unity", &v1_digest, &publisher).expect("cosign sign");
    apply(ns.name(), &format_plugin("unity", &spec("v1"))).await;
    wait_ready(ns.name(), "unity", SOON).await;
    served(&stack, &v1).await;
    let (verified, _, message) = source_verified(&api, "unity").await;
    assert_eq!(verified, "True", "{message}");
    assert!(message.contains("(cosign) by trusted key secret/cosign-keys/cosign.pub"), "{message}");

    // Not signed at all: SignatureMissing naming the tag cosign would have used.
    let v2 = version("v2");
    let v2_digest = push("v2", &v2);
    apply(ns.name(), &format_plugin("unity", &spec("v2"))).await;
    let message = wait_condition(&api, "unity", "False", "SignatureMissing").await;
    assert!(message.contains(&format!("no tag {}.sig", v2_digest.replacen(':', "-", 1))), "{message}");
    served(&stack, &v1).await;

    // A signature layer without its annotation, where v2's signatures go: named, not passed over.
    let v2_signatures = format!("{}.sig", v2_digest.replacen(':', "-", 1));
    let unannotated = [("payload.json", &b"{}"[..], "application/vnd.dev.cosign.simplesigning.v1+json")];
    registry
        .push("plugins/unity", &v2_signatures, "application/vnd.dev.cosign.artifact.sig.v1+json", &unannotated)
        .expect("oras pushes");
    let annotate = ["annotate", "fp", "unity", "-n", ns.name(), "--overwrite", "wasmplug.dev/requested-at=unannotated"];
    control_plane().kubectl().succeed(&annotate).await;
    let message = eventually("the unannotated layer to be named", SOON, || async {
        let message = wait_condition(&api, "unity", "False", "SignatureMissing").await;
        if message.contains("has no dev.cosignproject.cosign/signature annotation") {
            Ok(message)
        } else {
            Err(message)
        }
    })
    .await;
    assert!(message.contains(&format!("tag {v2_signatures} holds none that can be read")), "{message}");

    // v1's genuine signature placed where v2's would be: it names v1's digest.
    let v1_signatures = format!("{}.sig", v1_digest.replacen(':', "-", 1));
    registry.tag("plugins/unity", &v1_signatures, &format!("{}.sig", v2_digest.replacen(':', "-", 1))).expect("tag");
    let annotate = ["annotate", "fp", "unity", "-n", ns.name(), "--overwrite", "wasmplug.dev/requested-at=moved"];
    control_plane().kubectl().succeed(&annotate).await;
    let message = wait_condition(&api, "unity", "False", "SignatureInvalid").await;
    assert!(message.contains("the cosign signature tag") && message.contains("does not verify"), "{message}");

    // Signed by another key: refused; by the trusted one: served.
    let v3 = version("v3");
    let v3_digest = push("v3", &v3);
    let stranger = registry.cosign_key_pair().expect("cosign generate-key-pair");
    registry.cosign_sign("plugins/unity", &v3_digest, &stranger).expect("cosign sign");
    apply(ns.name(), &format_plugin("unity", &spec("v3"))).await;
    wait_condition(&api, "unity", "False", "SignatureInvalid").await;
    served(&stack, &v1).await;
    registry.cosign_sign("plugins/unity", &v3_digest, &publisher).expect("cosign sign");
    let annotate = ["annotate", "fp", "unity", "-n", ns.name(), "--overwrite", "wasmplug.dev/requested-at=signed"];
    control_plane().kubectl().succeed(&annotate).await;
    wait_condition(&api, "unity", "True", "Succeeded").await;
    served(&stack, &v3).await;
}
