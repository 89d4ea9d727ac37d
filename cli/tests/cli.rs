//! The `wasmplug` command as an author runs it, on the packages
//! examples/build.sh builds: `check` says what the operator would say, `call`
//! answers as a host would, `sign` writes a signature openssl and the
//! operator's rules accept, `verify` checks it.

use std::path::Path;
use std::process::{Command, Output};

use wasmplug_e2e::{SigningKey, example_package};
use wasmplug_formats::test_support::unity_package;

fn wasmplug(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmplug")).args(args).output().expect("wasmplug runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A copy of the example `name` in a directory of its own.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for file in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(example_package(name).join(file), dir.path().join(file)).expect("copy");
    }
    dir
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("a UTF-8 path")
}

#[test]
fn check_accepts_a_valid_package_and_names_what_is_wrong_with_others() {
    let unity = example_package("unity-format");
    let ok = stdout(&wasmplug(&["check", path(&unity)]));
    assert!(ok.contains("a valid plugin: unity-format") && ok.contains("format unity"), "{ok}");
    assert!(ok.contains("plugin.wasm sha256:"), "{ok}");

    let key = stderr(&wasmplug(&["check", path(&unity), "--format-key", "npm"]));
    assert!(key.contains("declares format key \"unity\"") && key.contains("expects \"npm\""), "{key}");

    let dir = copy_of("unity-format");
    std::fs::remove_file(dir.path().join("plugin.wasm")).expect("remove");
    let missing = stderr(&wasmplug(&["check", path(dir.path())]));
    assert!(missing.contains("plugin.wasm"), "{missing}");

    std::fs::write(dir.path().join("plugin.wasm"), b"\0asm not a component").expect("write");
    std::fs::write(dir.path().join("plugin.toml"), b"[plugin]\nname = \"Bad Name\"\n").expect("write");
    let manifest = stderr(&wasmplug(&["check", path(dir.path())]));
    assert!(manifest.contains("plugin.toml"), "{manifest}");
}

#[test]
fn call_runs_the_plugin_on_artifacts_as_a_host_does() {
    let unity = example_package("unity-format");
    let dir = tempfile::tempdir().expect("temporary directory");
    let guid = "0123456789abcdef0123456789abcdef";
    let package = unity_package(&[(guid, "Assets/Tool/Tool.cs", b"class Tool {}")]);
    let artifact = dir.path().join("my-tool-1.2.3.unitypackage");
    std::fs::write(&artifact, &package).expect("write");

    let metadata = stdout(&wasmplug(&["call", path(&unity), "metadata", path(&artifact)]));
    let metadata: serde_json::Value = serde_json::from_str(&metadata).expect("JSON");
    assert_eq!(metadata["path"], "my-tool-1.2.3.unitypackage", "{metadata}");
    // The host's SHA-256 where the plugin leaves it out, as Artifact Keeper's host does.
    let expected = wasmplug_host::plugin::Digest::of(&package).hex();
    assert_eq!(metadata["checksum_sha256"].as_str(), Some(expected.as_str()), "{metadata}");

    let valid =
        stdout(&wasmplug(&["call", path(&unity), "validate", path(&artifact), "--path", "Assets/x.unitypackage"]));
    assert!(valid.contains("\"valid\": true"), "{valid}");
    let index = stdout(&wasmplug(&["call", path(&unity), "index", path(&artifact)]));
    assert!(index.contains("content_base64"), "{index}");

    // The plugin's own refusal, as the host's 422 carries it.
    let refused = dir.path().join("not.unitypackage");
    std::fs::write(&refused, b"plain text").expect("write");
    let message = stderr(&wasmplug(&["call", path(&unity), "validate", path(&refused)]));
    assert!(message.contains("not a Unity package"), "{message}");
}

#[test]
fn sign_writes_a_signature_that_openssl_and_verify_accept() {
    let dir = copy_of("unity-format");
    let publisher = SigningKey::generate().expect("openssl makes a key");
    let keys = tempfile::tempdir().expect("temporary directory");
    let (private, public) = (keys.path().join("key.pem"), keys.path().join("key.pub"));
    std::fs::write(&private, publisher.private_pem()).expect("write");
    std::fs::write(&public, publisher.public_pem()).expect("write");

    let signed = stdout(&wasmplug(&["sign", path(dir.path()), "--key", path(&private)]));
    assert!(signed.contains("plugin.wasm.sig") && signed.contains("SHA256:"), "{signed}");
    // The same bytes openssl makes: Ed25519 is deterministic.
    let wasm = std::fs::read(dir.path().join("plugin.wasm")).expect("read");
    assert_eq!(std::fs::read(dir.path().join("plugin.wasm.sig")).expect("read"), publisher.sign(&wasm));

    let verified = stdout(&wasmplug(&["verify", path(dir.path()), "--key", path(&public)]));
    assert!(verified.contains(&format!("signed by {}", public.display())), "{verified}");
    // The Artifact Keeper form of the key verifies too.
    let raw = keys.path().join("key.b64");
    std::fs::write(&raw, publisher.public_base64()).expect("write");
    stdout(&wasmplug(&["verify", path(dir.path()), "--key", path(&raw)]));

    // One changed byte, or another key: refused, naming the keys tried.
    let other = SigningKey::generate().expect("openssl makes a key");
    let other_public = keys.path().join("other.pub");
    std::fs::write(&other_public, other.public_pem()).expect("write");
    let refused = stderr(&wasmplug(&["verify", path(dir.path()), "--key", path(&other_public)]));
    assert!(refused.contains("does not verify plugin.wasm with any trusted key"), "{refused}");
    let mut changed = wasm.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    std::fs::write(dir.path().join("plugin.wasm"), &changed).expect("write");
    let refused = stderr(&wasmplug(&["verify", path(dir.path()), "--key", path(&public)]));
    assert!(refused.contains(&public.display().to_string()), "{refused}");

    // A public key given to sign is named; an unsigned package is refused.
    let not_a_key = stderr(&wasmplug(&["sign", path(dir.path()), "--key", path(&public)]));
    assert!(not_a_key.contains("is not an Ed25519 private key"), "{not_a_key}");
    std::fs::remove_file(dir.path().join("plugin.wasm.sig")).expect("remove");
    let unsigned = stderr(&wasmplug(&["verify", path(dir.path()), "--key", path(&public)]));
    assert!(unsigned.contains("has no plugin.wasm.sig"), "{unsigned}");
}
