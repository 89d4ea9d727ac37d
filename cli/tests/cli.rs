//! The `wasmplug` command as an author runs it, on the packages
//! examples/build.sh builds: `check` says what the operator would say, `call`
//! answers as a host would, `package` packs what a URL source takes,
//! `manifest` prints a FormatPlugin the real API server accepts, `sign` writes
//! a signature openssl and the operator's rules accept, `verify` checks it.

use std::path::Path;
use std::process::{Command, Output};

use wasmplug_e2e::{SigningKey, control_plane, example_package};
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

    let nowhere = stderr(&wasmplug(&["check", "no-such-package"]));
    assert!(nowhere.contains("no-such-package does not exist"), "{nowhere}");

    let dir = copy_of("unity-format");
    std::fs::remove_file(dir.path().join("plugin.wasm")).expect("remove");
    let missing = stderr(&wasmplug(&["check", path(dir.path())]));
    assert!(missing.contains("plugin.wasm"), "{missing}");

    // A misspelled field is accepted (nothing requires it) and warned about.
    let manifest = std::fs::read_to_string(unity.join("plugin.toml")).expect("read");
    std::fs::write(dir.path().join("plugin.toml"), manifest.replace("extensions =", "extension =")).expect("write");
    std::fs::copy(unity.join("plugin.wasm"), dir.path().join("plugin.wasm")).expect("copy");
    let warned = wasmplug(&["check", path(dir.path())]);
    stdout(&warned);
    let warning = String::from_utf8_lossy(&warned.stderr);
    assert!(warning.contains("warning:") && warning.contains("[format].extension"), "{warning}");

    std::fs::write(dir.path().join("plugin.wasm"), b"\0asm not a component").expect("write");
    std::fs::write(dir.path().join("plugin.toml"), b"[plugin]\nname = \"Bad Name\"\n").expect("write");
    let manifest = stderr(&wasmplug(&["check", path(dir.path())]));
    assert!(manifest.contains("plugin.toml"), "{manifest}");
}

/// A plugin whose linear memory starts larger than the memory it is granted
/// loads on no host: `check` (the operator's validation) refuses it under the
/// limits a host would grant, naming both sizes and both ways out.
#[test]
fn check_refuses_a_plugin_whose_initial_memory_exceeds_its_memory_limit() {
    let dir = copy_of("npm-format");
    stdout(&wasmplug(&["check", path(dir.path())]));

    let manifest = std::fs::read_to_string(dir.path().join("plugin.toml")).expect("read");
    std::fs::write(dir.path().join("plugin.toml"), format!("{manifest}\n[resources]\nmax_memory_bytes = 1048576\n"))
        .expect("write");
    let asked_less = stderr(&wasmplug(&["check", path(dir.path())]));
    for expected in ["starts at 2097152 bytes", "memory limit of 1048576 bytes", "--initial-memory", "max_memory_bytes"]
    {
        assert!(asked_less.contains(expected), "{expected:?} in {asked_less}");
    }

    std::fs::write(dir.path().join("plugin.toml"), &manifest).expect("write");
    let cluster_less = stderr(&wasmplug(&["check", path(dir.path()), "--max-memory", "1Mi"]));
    assert!(cluster_less.contains("memory limit of 1048576 bytes"), "{cluster_less}");
}

#[test]
fn check_names_the_problem_of_each_broken_example_and_call_shows_a_misbehaving_one() {
    let problems = [
        ("forbidden-import", "imports `wasmplug-test:forbidden/exfiltrate`, which is outside WASI 0.2"),
        ("key-mismatch", "says its format key is \"misbehaving\" but plugin.toml says \"not-misbehaving\""),
        ("slow-format-key", "failed to call format-key while validating the plugin: plugin exceeded its time limit"),
        ("wrong-world", "does not export `artifact-keeper:format/handler@1.0.0`"),
    ];
    for (name, problem) in problems {
        let message = stderr(&wasmplug(&["check", path(&example_package(name))]));
        assert!(message.contains(problem), "{name}: {message}");
    }
    // Valid as a package; its calls fail as a host's would, each named.
    let misbehaving = example_package("misbehaving");
    stdout(&wasmplug(&["check", path(&misbehaving)]));
    let artifact = tempfile::NamedTempFile::new().expect("a file");
    for (request, failure) in [("trap", "plugin crashed: wasm trap"), ("alloc", "exceeded its memory limit")] {
        let message =
            stderr(&wasmplug(&["call", path(&misbehaving), "validate", path(artifact.path()), "--path", request]));
        assert!(message.contains(failure), "{request}: {message}");
    }
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

    // handle-request of a format-plugin-v2 plugin, in a repository of these artifacts.
    let npm = example_package("npm-registry");
    let tarball = dir.path().join("left-pad-1.3.0.tgz");
    std::fs::write(&tarball, wasmplug_formats::test_support::npm_tarball("left-pad", "1.3.0")).expect("write");
    let stored = format!("left-pad/-/left-pad-1.3.0.tgz={}", path(&tarball));
    let answer =
        stdout(&wasmplug(&["call", path(&npm), "request", "/left-pad", &stored, "--base-url", "http://r/npm"]));
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer["status"], 200, "{answer}");
    let body = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        answer["body_base64"].as_str().unwrap_or_default(),
    );
    let packument = String::from_utf8(body.expect("base64")).expect("UTF-8");
    assert!(
        packument.contains("\"1.3.0\"") && packument.contains("http://r/npm/left-pad/-/left-pad-1.3.0.tgz"),
        "{packument}"
    );
    let unity_request = stderr(&wasmplug(&["call", path(&unity), "request", "/index.json"]));
    assert!(unity_request.contains("request"), "a format-plugin plugin serves no requests: {unity_request}");
}

#[test]
fn package_packs_a_checked_zip_with_its_signature() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let package = dir.path().join("unity");
    std::fs::create_dir(&package).expect("mkdir");
    for file in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(example_package("unity-format").join(file), package.join(file)).expect("copy");
    }
    let publisher = SigningKey::generate().expect("openssl makes a key");
    let wasm = std::fs::read(package.join("plugin.wasm")).expect("read");
    std::fs::write(package.join("plugin.wasm.sig"), publisher.sign(&wasm)).expect("write");

    let packed = stdout(&wasmplug(&["package", path(&package)]));
    let zip = dir.path().join("unity-format-0.1.0.zip");
    assert!(packed.contains(&format!("wrote {}", zip.display())) && packed.contains("signed"), "{packed}");
    // What a URL source would fetch: checked and verified like the directory.
    stdout(&wasmplug(&["check", path(&zip)]));
    let public = dir.path().join("key.pub");
    std::fs::write(&public, publisher.public_pem()).expect("write");
    stdout(&wasmplug(&["verify", path(&zip), "--key", path(&public)]));

    // An invalid package is not packed.
    std::fs::write(package.join("plugin.wasm"), b"\0asm").expect("write");
    let refused = stderr(&wasmplug(&["package", path(&package), "--out", path(&dir.path().join("bad.zip"))]));
    assert!(refused.contains("plugin.wasm"), "{refused}");
    assert!(!dir.path().join("bad.zip").exists(), "nothing is written for an invalid package");
}

#[tokio::test]
async fn manifest_prints_a_format_plugin_the_api_server_accepts() {
    let unity = example_package("unity-format");
    let ns = control_plane().namespace("cli-manifest").await;
    let sources: [&[&str]; 4] = [
        &["--url", "https://plugins.example.com/unity-format-0.1.0.zip", "--pin"],
        &["--git", "https://git.example.com/unity.git", "--git-tag", "v0.1.0", "--git-path", "package"],
        &["--oci", "oci://registry.example.com/wasmplug/unity", "--oci-tag", "0.1.0"],
        &["--local", "/plugins/unity"],
    ];
    for source in sources {
        let mut args = vec!["manifest", path(&unity)];
        args.extend_from_slice(source);
        let yaml = stdout(&wasmplug(&args));
        assert!(yaml.contains("name: unity-format") && yaml.contains("formatKey: unity"), "{yaml}");
        let applied = control_plane()
            .kubectl()
            .run_with_stdin(&["apply", "--dry-run=server", "-n", ns.name(), "-f", "-"], &yaml)
            .await
            .expect("kubectl runs");
        let output = applied.success().unwrap_or_else(|e| panic!("{source:?}: {e:#}\n{yaml}"));
        assert!(output.contains("formatplugin.wasmplug.dev/unity-format created"), "{output}");
    }
    let digest = wasmplug_host::plugin::Digest::of(&std::fs::read(unity.join("plugin.wasm")).expect("read"));
    let pinned = stdout(&wasmplug(&["manifest", path(&unity), "--url", "https://x.example.com/u.zip", "--pin"]));
    assert!(pinned.contains(&format!("sha256: {digest}")), "{pinned}");
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

#[test]
fn push_to_a_registry_that_never_answers_gives_up_at_its_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = silent.local_addr().expect("address");
    // Accepts every connection and says nothing.
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(8).collect();
        std::thread::sleep(std::time::Duration::from_secs(30));
        drop(held);
    });
    let unity = example_package("unity-format");
    let to = format!("oci://{address}/plugins/unity");
    let message = stderr(&wasmplug(&["push", path(&unity), &to, "--plain-http", "--timeout-secs", "2"]));
    assert!(message.contains(&format!("failed to push to {to}: timed out after 2s")), "{message}");
}
