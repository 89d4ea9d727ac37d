//! Trust invariant 1: a host runs only bytes whose digest the operator wrote
//! into status. Each test publishes a real example plugin into a store the way
//! the operator does, then plays a store writer or a status writer who changes
//! something, and checks what the host would load.

mod support;

use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use wasmplug_crds::{Artifact, FileDigest, Precompiled as PrecompiledStatus};
use wasmplug_host::artifact::{self, ArtifactError};
use wasmplug_host::plugin::{Digest, MANIFEST_FILE, WASM_FILE};
use wasmplug_host::runtime::{CallLimits, Compilation, EngineSettings, Runtime};

fn runtime() -> Runtime {
    Runtime::new(EngineSettings::default()).expect("the engine builds")
}

/// Publishes example `name` into the store at `root` as the operator does, and
/// returns the `status.artifact` it would write.
fn publish(root: &Path, runtime: &Runtime, name: &str) -> Artifact {
    let package = support::read_example(name);
    let precompiled = runtime.precompile(&package.wasm).expect("precompiles");
    let dir = root.join(Artifact::path_for(&package.digest.to_string()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let manifest = std::fs::read(support::example_package(name).join(MANIFEST_FILE)).expect("manifest");
    std::fs::write(dir.join(MANIFEST_FILE), &manifest).expect("write");
    std::fs::write(dir.join(WASM_FILE), &package.wasm).expect("write");
    let file = PrecompiledStatus::file_for(runtime.engine_id());
    std::fs::write(dir.join(&file), precompiled.bytes()).expect("write");
    Artifact {
        digest: package.digest.to_string(),
        path: Artifact::path_for(&package.digest.to_string()),
        revision: "test".into(),
        size: package.wasm.len() as i64,
        last_update_time: Time(Timestamp::now()),
        url: None,
        manifest: Some(FileDigest { digest: Digest::of(&manifest).to_string(), size: manifest.len() as i64 }),
        precompiled: Some(PrecompiledStatus {
            file,
            engine: runtime.engine_id().to_owned(),
            digest: Some(precompiled.digest().to_string()),
            size: Some(precompiled.bytes().len() as i64),
        }),
        signature: None,
    }
}

/// Loads what `artifact` names as a host would, returning the plugin's format
/// key and how it was compiled.
fn load(root: &Path, runtime: &Runtime, artifact: &Artifact) -> Result<(String, Compilation), ArtifactError> {
    let verified = artifact::read(root, artifact, runtime.engine_id())?;
    let (plugin, compilation) =
        runtime.load_verified(&verified.package, verified.precompiled, CallLimits::DEFAULT).expect("loads");
    Ok((plugin.format_key().expect("answers"), compilation))
}

fn compiled_because(compilation: Compilation) -> String {
    match compilation {
        Compilation::Compiled { reason } => reason,
        Compilation::Precompiled => panic!("the precompiled file was used"),
    }
}

#[test]
fn the_operators_precompiled_file_is_used_when_its_digest_matches() {
    let (store, runtime) = (tempfile::tempdir().expect("tempdir"), runtime());
    let artifact = publish(store.path(), &runtime, "unity-format");
    assert_eq!(load(store.path(), &runtime, &artifact).expect("loads"), ("unity".into(), Compilation::Precompiled));
}

#[test]
fn a_swapped_precompiled_file_is_never_run() {
    let (store, runtime) = (tempfile::tempdir().expect("tempdir"), runtime());
    let artifact = publish(store.path(), &runtime, "unity-format");
    // A store writer replaces unity's native code with another plugin's, for the
    // same engine and of the same size as far as status can tell.
    let other = runtime.precompile(&support::read_example("misbehaving").wasm).expect("precompiles");
    let precompiled = artifact.precompiled.clone().expect("precompiled");
    let path = store.path().join(&artifact.path).join(&precompiled.file);
    std::fs::write(&path, other.bytes()).expect("swap");
    let swapped = Artifact {
        precompiled: Some(PrecompiledStatus { size: Some(other.bytes().len() as i64), ..precompiled }),
        ..artifact
    };
    let (key, compilation) = load(store.path(), &runtime, &swapped).expect("loads from plugin.wasm");
    assert_eq!(key, "unity", "the code that runs is plugin.wasm's");
    let reason = compiled_because(compilation);
    assert!(reason.contains("it is not the operator's file"), "{reason}");
}

#[test]
fn precompiled_file_names_from_status_are_never_used_as_paths() {
    let (store, runtime) = (tempfile::tempdir().expect("tempdir"), runtime());
    let artifact = publish(store.path(), &runtime, "unity-format");
    let precompiled = artifact.precompiled.clone().expect("precompiled");
    for file in ["/dev/zero", "/proc/self/status", "../../../../../../../../dev/zero", "sub/x.cwasm", "plugin.wasm"] {
        let named = Artifact {
            precompiled: Some(PrecompiledStatus { file: file.into(), ..precompiled.clone() }),
            ..artifact.clone()
        };
        let (key, compilation) = load(store.path(), &runtime, &named).expect("loads from plugin.wasm");
        assert_eq!(key, "unity");
        let reason = compiled_because(compilation);
        assert!(reason.contains(&format!("status names the precompiled file {file:?}")), "{reason}");
    }
}

#[test]
fn a_precompiled_file_that_is_not_a_plain_file_of_its_size_is_not_read() {
    let (store, runtime) = (tempfile::tempdir().expect("tempdir"), runtime());
    let artifact = publish(store.path(), &runtime, "unity-format");
    let precompiled = artifact.precompiled.clone().expect("precompiled");
    let path = store.path().join(&artifact.path).join(&precompiled.file);

    // A link to an endless device, then a FIFO nobody writes: neither is read.
    std::fs::remove_file(&path).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
    let reason = compiled_because(load(store.path(), &runtime, &artifact).expect("loads").1);
    assert!(reason.contains("failed to read") && reason.contains(&precompiled.file), "{reason}");
    std::fs::remove_file(&path).expect("rm");
    let made = std::process::Command::new("mkfifo").arg(&path).status().expect("mkfifo runs");
    assert!(made.success());
    let reason = compiled_because(load(store.path(), &runtime, &artifact).expect("loads").1);
    assert!(reason.contains("it is not a regular file"), "{reason}");

    // A file larger than status says is not read to its end.
    std::fs::remove_file(&path).expect("rm");
    std::fs::write(&path, vec![0u8; precompiled.size.expect("size") as usize + 1]).expect("write");
    let reason = compiled_because(load(store.path(), &runtime, &artifact).expect("loads").1);
    assert!(reason.contains("bytes, but status says"), "{reason}");

    // Status from an operator that wrote no digest: compile plugin.wasm.
    let undigested = Artifact {
        precompiled: Some(PrecompiledStatus { digest: None, size: None, ..precompiled }),
        ..artifact.clone()
    };
    let reason = compiled_because(load(store.path(), &runtime, &undigested).expect("loads").1);
    assert_eq!(reason, "status gives no digest and size for the precompiled file");
}

#[test]
fn plugin_wasm_must_be_the_content_address_and_digest_status_names() {
    let (store, runtime) = (tempfile::tempdir().expect("tempdir"), runtime());
    let artifact = publish(store.path(), &runtime, "unity-format");

    for path in ["/", "../../etc", "artifacts/sha256/../../..", &Artifact::path_for(&Digest::of(b"x").to_string())] {
        let elsewhere = Artifact { path: path.into(), ..artifact.clone() };
        let error = load(store.path(), &runtime, &elsewhere).expect_err("refused");
        assert!(matches!(error, ArtifactError::NotContentAddressed { .. }), "{path}: {error}");
    }

    let wasm = store.path().join(&artifact.path).join(WASM_FILE);
    let mut changed = std::fs::read(&wasm).expect("read");
    *changed.last_mut().expect("not empty") ^= 1;
    std::fs::write(&wasm, &changed).expect("write");
    let error = load(store.path(), &runtime, &artifact).expect_err("refused");
    assert!(matches!(error, ArtifactError::DigestMismatch { .. }), "{error}");

    std::fs::remove_file(&wasm).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &wasm).expect("symlink");
    let error = load(store.path(), &runtime, &artifact).expect_err("refused");
    assert!(error.to_string().starts_with(&format!("failed to read {}", wasm.display())), "{error}");
}

/// plugin.toml decides the format key and the limits a plugin asks for: when
/// status gives its digest (every operator of this version does), a manifest
/// changed beside an unchanged plugin.wasm is refused.
#[test]
fn plugin_toml_must_have_the_digest_status_names() {
    let (store, runtime) = (tempfile::tempdir().expect("tempdir"), runtime());
    let artifact = publish(store.path(), &runtime, "unity-format");
    let manifest = store.path().join(&artifact.path).join(MANIFEST_FILE);
    let original = std::fs::read_to_string(&manifest).expect("read");
    let changed = original.replace("max_memory_bytes", "#max_memory_bytes");
    assert_ne!(changed, original, "the example asks for memory");
    std::fs::write(&manifest, changed.as_bytes()).expect("write");
    let sized = FileDigest { size: changed.len() as i64, ..artifact.manifest.clone().expect("manifest digest") };
    let artifact = Artifact { manifest: Some(sized), ..artifact };
    let error = load(store.path(), &runtime, &artifact).expect_err("refused");
    assert!(matches!(error, ArtifactError::DigestMismatch { .. }), "{error}");
    assert!(error.to_string().contains("plugin.toml") && error.to_string().contains("status.artifact says"), "{error}");

    // An older operator's status gives no manifest digest: the shared store's
    // manifest is read as it is.
    let undigested = Artifact { manifest: None, ..artifact };
    assert_eq!(load(store.path(), &runtime, &undigested).expect("loads").0, "unity");
}
