//! The runtime against a real component: the Unity example plugin, built from
//! `examples/unity-format` for wasm32-wasip2.

mod support;

use sha2::{Digest as _, Sha256};
use wasmplug_formats::test_support::unity_package;
use wasmplug_host::plugin::{MANIFEST_FILE, Package, WASM_FILE};
use wasmplug_host::runtime::{CallLimits, Compilation, EngineSettings, LoadError, Metadata, Runtime, World};

const GUID_A: &str = "0123456789abcdef0123456789abcdef";
const GUID_B: &str = "fedcba9876543210fedcba9876543210";

fn runtime() -> Runtime {
    Runtime::new(EngineSettings::default()).expect("the engine builds")
}

#[test]
fn loads_as_a_format_plugin_with_the_manifest_limits() {
    let package = support::read_example("unity-format");
    let limits = CallLimits::DEFAULT.grant([&package.manifest.resources]);
    let plugin = runtime().load(&package, limits).expect("the unity plugin is valid");
    assert_eq!(plugin.world(), World::FormatPlugin);
    assert_eq!(plugin.format_key().expect("format-key answers"), "unity");
    assert_eq!(plugin.limits().memory_bytes, 32 << 20, "the manifest asks for 32 MiB");
    assert_eq!(plugin.limits().timeout, std::time::Duration::from_secs(2));
}

#[test]
fn validates_and_describes_a_real_unity_package() {
    let package = support::read_example("unity-format");
    let plugin = runtime().load(&package, CallLimits::DEFAULT).expect("valid");
    let data = unity_package(&[
        (GUID_A, "Assets/Tools/Tool.cs", b"public class Tool {}"),
        (GUID_B, "Assets/Tools/Icon.png", b"\x89PNG"),
    ]);
    let path = "tools/com.example.tools-1.2.3.unitypackage";

    assert_eq!(plugin.validate(path, &data).expect("no crash"), Ok(()));
    let metadata = plugin.parse_metadata(path, &data).expect("no crash").expect("accepted");
    assert_eq!(metadata.path, path);
    assert_eq!(metadata.version.as_deref(), Some("1.2.3"));
    assert_eq!(metadata.content_type, "application/x-unitypackage");
    assert_eq!(metadata.size_bytes, data.len() as u64);
    assert_eq!(metadata.checksum_sha256, None, "the plugin leaves the checksum to the host");

    // A registry passes the metadata the host answered, checksum filled in.
    let sha256: String = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
    let metadata = Metadata { checksum_sha256: Some(sha256.clone()), ..metadata };
    let index = plugin.generate_index(&[metadata]).expect("no crash").expect("accepted").expect("an index");
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].0, "index.json");
    let json: serde_json::Value = serde_json::from_slice(&index[0].1).expect("index.json is JSON");
    assert_eq!(json["format"], "unity");
    assert_eq!(json["packages"][0]["version"], "1.2.3");
    assert_eq!(json["packages"][0]["sha256"], sha256.as_str());
}

#[test]
fn rejects_what_is_not_a_unity_package_with_the_plugins_reason() {
    let plugin = runtime().load(&support::read_example("unity-format"), CallLimits::DEFAULT).expect("valid");
    let good = unity_package(&[(GUID_A, "Assets/A.cs", b"class A {}")]);
    let cases: [(&str, &[u8], &str); 3] = [
        ("a.zip", &good, "must end with .unitypackage"),
        ("a.unitypackage", b"PK\x03\x04 a zip file", "not gzip-compressed"),
        ("a.unitypackage", &unity_package(&[("not-a-guid", "Assets/A.cs", b"")]), "not inside a <guid>/"),
    ];
    for (path, data, reason) in cases {
        let answer = plugin.validate(path, data).expect("a rejection is not a crash");
        let message = answer.expect_err("rejected");
        assert!(message.contains(reason), "{path}: expected {reason:?} in {message:?}");
    }
}

#[test]
fn a_format_key_that_disagrees_with_the_manifest_is_rejected() {
    let mut package = support::read_example("unity-format");
    package.manifest.format_key = "unity-assets".into();
    let error = runtime().load(&package, CallLimits::DEFAULT).expect_err("mismatch");
    assert!(matches!(error, LoadError::FormatKeyMismatch { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "plugin.wasm says its format key is \"unity\" but plugin.toml says \"unity-assets\"; make them equal"
    );
}

#[test]
fn bytes_that_are_not_a_component_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(support::example_package("unity-format").join(MANIFEST_FILE), dir.path().join(MANIFEST_FILE))
        .expect("copy manifest");
    std::fs::write(dir.path().join(WASM_FILE), b"\0asm\x01\0\0\0").expect("write a core module header");
    let package = Package::read_dir(dir.path()).expect("the manifest is fine");
    let error = runtime().load(&package, CallLimits::DEFAULT).expect_err("a core module is no component");
    assert!(error.to_string().starts_with("failed to compile plugin.wasm: it is not a valid WebAssembly component"));
}

#[test]
fn a_precompiled_plugin_loads_on_the_same_engine_and_falls_back_elsewhere() {
    let package = support::read_example("unity-format");
    let runtime = runtime();
    let precompiled = runtime.precompile(&package.wasm).expect("precompiles");
    assert_ne!(precompiled.bytes(), package.wasm);

    let (plugin, compilation) = runtime
        .load_verified(&package, Ok(precompiled.clone()), CallLimits::DEFAULT)
        .expect("loads from the precompiled bytes");
    assert_eq!(compilation, Compilation::Precompiled);
    assert_eq!(plugin.format_key(), Ok("unity".to_owned()));

    // Another engine configuration has another identifier: wasmtime refuses the
    // bytes and the host compiles plugin.wasm, saying why.
    let fuel = Runtime::new(EngineSettings { fuel_metering: true, ..EngineSettings::default() }).expect("engine");
    assert_ne!(fuel.engine_id(), runtime.engine_id());
    let (plugin, compilation) =
        fuel.load_verified(&package, Ok(precompiled), CallLimits::DEFAULT).expect("compiles plugin.wasm instead");
    let Compilation::Compiled { reason } = compilation else { panic!("compiled here") };
    assert!(reason.starts_with("the precompiled file did not load"), "{reason}");
    assert_eq!(plugin.format_key(), Ok("unity".to_owned()));
}
