//! A plugin author's journey as docs/plugin-authoring.md tells it, with the
//! real `wasmplug` and `wasmplug-host` binaries, in a directory outside the
//! repository: `new` → `build` → `cargo test` → `check` → `call` → a local host
//! serves it → a change is hot-swapped → a change that breaks the plugin
//! replaces nothing → signed, pushed to a real registry, and installed in a
//! cluster that requires signatures, from the FormatPlugin `wasmplug manifest`
//! prints.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::{apply, wait_ready};
use wasmplug_e2e::{
    OciRegistry, RegistryOptions, SigningKey, Stack, control_plane, eventually, free_ports, workspace_binary,
};

const SOON: Duration = Duration::from_secs(60);

/// Runs `program` in `dir`. Cargo stays offline: the crates a new plugin
/// needs are the ones examples/build.sh fetched.
fn run(program: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()))
}

fn wasmplug(dir: &Path, args: &[&str]) -> Output {
    run(&workspace_binary("wasmplug"), dir, args)
}

fn succeeded(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn failed(output: Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `wasmplug-host --plugins-dir <dir>`, killed when dropped.
struct LocalHost {
    process: Child,
    url: String,
}

impl LocalHost {
    async fn start(plugins: &Path, log: &Path) -> LocalHost {
        let [port] = free_ports::<1>().expect("a free port");
        let process = Command::new(workspace_binary("wasmplug-host"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--poll-ms", "100", "--plugins-dir"])
            .arg(plugins)
            .stdout(std::fs::File::create(log).expect("log file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("the host starts");
        let host = LocalHost { process, url: format!("http://127.0.0.1:{port}") };
        eventually("the local host to be ready", SOON, || async {
            let ready = reqwest::get(format!("{}/readyz", host.url)).await.map_err(|e| e.to_string())?;
            if ready.status().is_success() { Ok(()) } else { Err(ready.status().to_string()) }
        })
        .await;
        host
    }

    /// The answer to `POST /v1/formats/<key>/metadata?path=<file name>` with the file.
    async fn metadata(&self, key: &str, file: &Path) -> serde_json::Value {
        let name = file.file_name().and_then(|n| n.to_str()).expect("a file name");
        let body = std::fs::read(file).expect("the artifact");
        let url = format!("{}/v1/formats/{key}/metadata?path={name}", self.url);
        let response = reqwest::Client::new().post(url).body(body).send().await.expect("the host answers");
        serde_json::from_str(&response.text().await.expect("a body")).expect("JSON")
    }
}

impl Drop for LocalHost {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read");
    assert!(text.contains(from), "{} has {from:?}", file.display());
    std::fs::write(file, text.replace(from, to)).expect("write");
}

#[tokio::test]
async fn an_author_goes_from_nothing_to_a_plugin_served_locally_and_installed_from_a_registry() {
    let work = tempfile::Builder::new().prefix("wasmplug-author-").tempdir().expect("a directory");
    assert!(!work.path().starts_with(wasmplug_e2e::repository_root()), "the journey runs outside the repository");

    // new: a crate of its own, with its next commands.
    let made = succeeded(wasmplug(work.path(), &["new", "acme"]));
    let crate_dir: PathBuf = work.path().join("acme-format");
    assert!(made.contains("made acme-format") && made.contains("wasmplug build"), "{made}");
    let sample = crate_dir.join("samples/hello-1.0.0.acme");
    assert!(sample.is_file() && crate_dir.join("wit/format.wit").is_file() && crate_dir.join("README.md").is_file());
    let again = failed(wasmplug(work.path(), &["new", "acme"]));
    assert!(again.contains("already exists and is not empty"), "{again}");

    // build: compiled, checked, packaged and zipped.
    let built = succeeded(wasmplug(&crate_dir, &["build"]));
    let package = crate_dir.join("target/wasmplug/acme-format");
    assert!(built.contains("built acme-format 0.1.0: format acme"), "{built}");
    assert!(built.contains(&package.display().to_string()) && built.contains("acme-format-0.1.0.zip"), "{built}");
    assert!(package.join("plugin.wasm").is_file() && package.join("plugin.toml").is_file());

    // Its unit tests run natively.
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let tests = run(&cargo, &crate_dir, &["test", "--quiet"]);
    assert!(tests.status.success(), "cargo test: {}", String::from_utf8_lossy(&tests.stderr));
    assert!(String::from_utf8_lossy(&tests.stdout).contains("2 passed"), "{tests:?}");

    // check and call, as the operator and a host would.
    let checked = succeeded(wasmplug(&crate_dir, &["check", "target/wasmplug/acme-format", "--format-key", "acme"]));
    assert!(checked.contains("a valid plugin: acme-format 0.1.0, format acme"), "{checked}");
    let answer = succeeded(wasmplug(
        &crate_dir,
        &["call", "target/wasmplug/acme-format", "metadata", "samples/hello-1.0.0.acme"],
    ));
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!((answer["version"].as_str(), answer["size_bytes"].as_u64()), (Some("1.0.0"), Some(123)), "{answer}");
    assert_eq!(answer["checksum_sha256"].as_str().map(str::len), Some(64), "the host's SHA-256: {answer}");
    let wrong_name = work.path().join("hello-2.0.0.acme");
    std::fs::copy(&sample, &wrong_name).expect("copy");
    let refused = failed(wasmplug(
        &crate_dir,
        &["call", "target/wasmplug/acme-format", "validate", wrong_name.to_str().expect("UTF-8")],
    ));
    assert!(refused.contains("must be named hello-1.0.0.acme, as its header says"), "{refused}");

    // A local host serves it.
    let host = LocalHost::start(&crate_dir.join("target/wasmplug"), &work.path().join("host.log")).await;
    let served = host.metadata("acme", &sample).await;
    assert_eq!(served["content_type"], "application/octet-stream", "{served}");
    assert_eq!(served["checksum_sha256"], answer["checksum_sha256"], "{served}");

    // A change, built again, is swapped in without a restart.
    edit(&crate_dir.join("src/lib.rs"), "\"application/octet-stream\"", "\"application/x-acme\"");
    succeeded(wasmplug(&crate_dir, &["build"]));
    eventually("the host to serve the rebuilt plugin", SOON, || async {
        let served = host.metadata("acme", &sample).await;
        if served["content_type"] == "application/x-acme" { Ok(()) } else { Err(served.to_string()) }
    })
    .await;

    // A change that breaks the plugin is named, and replaces nothing: the
    // host keeps serving the last good build.
    edit(&crate_dir.join("src/lib.rs"), "const FORMAT_KEY: &str = \"acme\";", "const FORMAT_KEY: &str = \"acme2\";");
    let broken = failed(wasmplug(&crate_dir, &["build"]));
    assert!(broken.contains("\"acme2\"") && broken.contains("\"acme\""), "the key mismatch is named: {broken}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(host.metadata("acme", &sample).await["content_type"], "application/x-acme");
    edit(&crate_dir.join("src/lib.rs"), "\"acme2\"", "\"acme\"");
    drop(host);

    // A misspelled manifest field builds, with one warning naming it.
    edit(&crate_dir.join("plugin.toml"), "extensions =", "extension =");
    let warned = wasmplug(&crate_dir, &["build"]);
    let warnings = String::from_utf8_lossy(&warned.stderr).into_owned();
    succeeded(warned);
    let warning = "plugin.toml: [format].extension is not a field wasmplug reads";
    assert_eq!(warnings.matches(warning).count(), 1, "{warnings}");
    assert!(!warnings.contains("plugin.toml: plugin.toml:"), "{warnings}");
    edit(&crate_dir.join("plugin.toml"), "extension =", "extensions =");

    // Signed, pushed to a registry, installed by a cluster that requires signatures.
    let key = SigningKey::generate().expect("a key pair");
    let keys = work.path().join("keys");
    std::fs::create_dir_all(keys.join("trusted")).expect("mkdir");
    std::fs::write(keys.join("author.pem"), key.private_pem()).expect("write");
    std::fs::write(keys.join("trusted/author.pem"), key.public_pem()).expect("write");
    let signed = succeeded(wasmplug(&crate_dir, &["build", "--key", "../keys/author.pem"]));
    assert!(signed.contains(", signed"), "{signed}");
    let verified = succeeded(wasmplug(
        &crate_dir,
        &["verify", "target/wasmplug/acme-format", "--key", "../keys/trusted/author.pem"],
    ));
    assert!(verified.contains("is signed by"), "{verified}");

    let registry = OciRegistry::start(RegistryOptions::default()).expect("the registry starts");
    let url = registry.url("plugins/acme");
    let pushed = succeeded(wasmplug(&crate_dir, &["push", "target/wasmplug/acme-format", &url, "--plain-http"]));
    assert!(pushed.contains(&format!("to {url}:0.1.0, signed")), "{pushed}");
    let stored = registry.manifest("plugins/acme", "0.1.0").expect("the pushed manifest");
    assert_eq!(stored["artifactType"], "application/vnd.wasmplug.plugin.v1", "{stored}");
    assert_eq!(stored["layers"].as_array().map(Vec::len), Some(3), "wasm, toml and signature: {stored}");

    let ns = control_plane().namespace("author").await;
    let trusted = keys.join("trusted").display().to_string();
    let stack =
        Stack::start(ns.name(), &["--require-signatures", "--trusted-keys-dir", &trusted]).await.expect("stack");
    let manifest = succeeded(wasmplug(
        &crate_dir,
        &["manifest", "target/wasmplug/acme-format", "--oci", &url, "--oci-tag", "0.1.0", "--oci-insecure", "--pin"],
    ));
    apply(ns.name(), &manifest).await;
    wait_ready(ns.name(), "acme-format", SOON).await;
    let signed_by = control_plane()
        .kubectl()
        .run(&["get", "-n", ns.name(), "fp/acme-format", "-o=jsonpath={.status.artifact.signature.key}"])
        .await
        .expect("kubectl runs")
        .stdout;
    assert_eq!(signed_by, "cluster/author.pem");
    eventually("the cluster's host to serve acme", SOON, || async {
        let answer = stack.validate("acme", "hello-1.0.0.acme", &std::fs::read(&sample).expect("read")).await;
        let answer = answer.map_err(|e| e.to_string())?;
        if answer.status == 204 { Ok(()) } else { Err(format!("{answer:?}")) }
    })
    .await;
}
