//! The builtin npm format and the npm-format plugin are built from the same
//! source (`wasmplug-formats`); through the host they must answer identically.

mod support;

use wasmplug_formats::test_support::{gzip, npm_tarball, tar};
use wasmplug_host::builtin;
use wasmplug_host::handler::FormatHandler;
use wasmplug_host::runtime::{CallLimits, EngineSettings, Runtime};

#[test]
fn native_and_webassembly_npm_answer_alike() {
    let runtime = Runtime::new(EngineSettings::default()).expect("engine");
    let plugin = runtime.load(&support::read_example("npm-format"), CallLimits::DEFAULT).expect("npm-format loads");
    let native = builtin::handler("npm", &CallLimits::DEFAULT).expect("npm is builtin");

    let inputs = [
        ("left-pad/-/left-pad-1.3.0.tgz", npm_tarball("left-pad", "1.3.0")),
        ("@types/node/-/node-20.1.0.tgz", npm_tarball("@types/node", "20.1.0")),
        ("left-pad/-/left-pad-9.9.9.tgz", npm_tarball("left-pad", "1.3.0")),
        ("x/-/x-1.0.0.tgz", gzip(&tar(&[("README", b"no manifest")]))),
        ("x/-/x-1.0.0.tgz", b"not gzip".to_vec()),
        ("../escape.tgz", npm_tarball("x", "1.0.0")),
    ];
    let mut accepted = Vec::new();
    for (path, data) in &inputs {
        let from_plugin = FormatHandler::parse_metadata(&plugin, path, data);
        assert_eq!(from_plugin, native.parse_metadata(path, data), "{path}");
        assert_eq!(FormatHandler::validate(&plugin, path, data), native.validate(path, data), "{path}");
        accepted.extend(from_plugin.ok());
    }
    assert_eq!(accepted.len(), 2);
    assert_eq!(FormatHandler::generate_index(&plugin, &accepted), native.generate_index(&accepted));
}
