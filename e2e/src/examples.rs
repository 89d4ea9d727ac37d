//! The example plugins built from `examples/` (by `examples/build.sh`, once per
//! test binary), and variants of them that tests need.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The package directory of the example plugin `name` (plugin.toml + plugin.wasm),
/// working or broken, built by `examples/build.sh` on first use.
pub fn example_package(name: &str) -> PathBuf {
    static PACKAGES: OnceLock<PathBuf> = OnceLock::new();
    let packages = PACKAGES.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/build.sh");
        let output = Command::new("bash").arg(&script).output().expect("examples/build.sh runs");
        assert!(output.status.success(), "examples/build.sh failed:\n{}", String::from_utf8_lossy(&output.stderr));
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    });
    let (broken, fixtures) = (packages.with_file_name("broken-packages"), packages.with_file_name("fixture-packages"));
    [packages.join(name), broken.join(name), fixtures.join(name)]
        .into_iter()
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("examples/build.sh built no package {name} in {}", packages.display()))
}

/// The files of example package `name`: (plugin.toml, plugin.wasm).
pub fn example_files(name: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = example_package(name);
    let read = |file: &str| std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("failed to read {file}: {e}"));
    (read("plugin.toml"), read("plugin.wasm"))
}

/// `component` with a custom section `name` appended: the same plugin behaviour
/// with a different digest (a new version without a new build).
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = leb128(name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section id
    bytes.extend(leb128(content.len()));
    bytes.extend(content);
    bytes
}

/// Plugin number `n` made from the `numbered` fixture: (plugin.toml, plugin.wasm)
/// of a valid plugin with the format key `numbered-<n, six digits>`.
pub fn numbered_plugin(n: u32) -> (Vec<u8>, Vec<u8>) {
    const PLACEHOLDER: &[u8] = b"numbered-000000";
    let key = format!("numbered-{n:06}");
    let (manifest, wasm) = example_files("numbered");
    let replace = |bytes: &[u8]| -> Vec<u8> {
        let mut out = bytes.to_vec();
        let at: Vec<usize> =
            bytes.windows(PLACEHOLDER.len()).enumerate().filter(|(_, w)| *w == PLACEHOLDER).map(|(i, _)| i).collect();
        assert!(!at.is_empty(), "the numbered fixture holds its placeholder key");
        for i in at {
            out[i..i + PLACEHOLDER.len()].copy_from_slice(key.as_bytes());
        }
        out
    };
    (replace(&manifest), replace(&wasm))
}

/// `manifest` (a plugin.toml) with its `[plugin].version` replaced.
pub fn with_version(manifest: &[u8], version: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(manifest);
    let lines: Vec<String> = text
        .lines()
        .map(|line| if line.starts_with("version") { format!("version = \"{version}\"") } else { line.to_owned() })
        .collect();
    (lines.join("\n") + "\n").into_bytes()
}

fn leb128(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
