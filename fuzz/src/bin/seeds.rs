//! Writes the seeds into `fuzz/seeds/<target>/`: one valid input per format and
//! shape, in each target's layout (see the library's docs), so that fuzzing
//! starts from inputs that reach deep into each parser. (`fuzz/corpus/` is
//! what libFuzzer found from them.) Run it after a layout changes:
//!
//!     cargo run -p wasmplug-fuzz --bin fuzz-seeds

use std::path::Path;

use wasmplug_formats::test_support::{gzip, npm_tarball, tar, zip};

fn main() -> std::io::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = seeds.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };
    let keys = wasmplug_formats::KEYS;
    let selector = |key: &str| keys.iter().position(|k| *k == key).expect("a builtin key") as u8;
    let artifact = |key: &str, path: &str, body: &[u8]| {
        let mut input = vec![selector(key)];
        input.extend_from_slice(path.as_bytes());
        input.push(b'\n');
        input.extend_from_slice(body);
        input
    };

    let pom = br#"<?xml version="1.0"?><project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion><groupId>com.example</groupId><artifactId>lib</artifactId><version>1.0</version></project>"#;
    let nuspec =
        br#"<?xml version="1.0"?><package><metadata><id>Demo</id><version>1.0.0</version></metadata></package>"#;
    let cargo_toml = b"[package]\nname = \"demo\"\nversion = \"1.0.0\"\n";
    let wheel_metadata = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n";
    let gemspec =
        b"--- !ruby/object:Gem::Specification\nname: demo\nversion: !ruby/object:Gem::Version\n  version: 1.0.0\n";
    let seeds: [(&str, Vec<u8>); 9] = [
        ("npm", artifact("npm", "demo/-/demo-1.0.0.tgz", &npm_tarball("demo", "1.0.0"))),
        ("maven-pom", artifact("maven", "com/example/lib/1.0/lib-1.0.pom", pom)),
        ("maven-jar", artifact("maven", "com/example/lib/1.0/lib-1.0.jar", &zip(&[("META-INF/MANIFEST.MF", b"x")]))),
        ("cargo", artifact("cargo", "demo-1.0.0.crate", &gzip(&tar(&[("demo-1.0.0/Cargo.toml", &cargo_toml[..])])))),
        ("nuget", artifact("nuget", "demo.1.0.0.nupkg", &zip(&[("Demo.nuspec", &nuspec[..])]))),
        (
            "pypi-wheel",
            artifact(
                "pypi",
                "demo-1.0-py3-none-any.whl",
                &zip(&[("demo-1.0.dist-info/METADATA", &wheel_metadata[..])]),
            ),
        ),
        ("pypi-sdist", artifact("pypi", "demo-1.0.tar.gz", &gzip(&tar(&[("demo-1.0/PKG-INFO", &wheel_metadata[..])])))),
        ("rubygems", artifact("rubygems", "demo-1.0.0.gem", &tar(&[("metadata.gz", gzip(gemspec))]))),
        ("generic", artifact("generic", "docs/readme.txt", b"hello")),
    ];
    for (name, input) in &seeds {
        write("builtin", name, input)?;
    }

    let listing = r#"[{"path":"com/example/lib/1.0/lib-1.0.jar","version":"1.0","content_type":"application/java-archive","size_bytes":3,"checksum_sha256":"ab"},{"path":"demo/-/demo-1.0.0.tgz","version":"1.0.0","content_type":"application/gzip","size_bytes":3,"checksum_sha256":null}]"#;
    for key in keys {
        let mut input = vec![selector(key)];
        input.extend_from_slice(listing.as_bytes());
        write("builtin_index", key, &input)?;
    }

    let manifest = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/unity-format/plugin.toml"))?;
    write("manifest", "unity", &manifest)?;
    write("manifest", "requirements", b"[plugin]\nname = \"old\"\nversion = \"1.0.0\"\n[format]\nkey = \"old\"\n[requirements]\nmin_memory_mb = 1\nmax_memory_mb = 16\ntimeout_secs = 2\n")?;

    let request = r#"{"request":{"method":"GET","path":"/demo","query":"a=1","headers":[["accept","application/json"]],"body_base64":"aGk="},"context":{"repo_key":"npm","base_url":"http://r/npm","download_base_url":"http://r/dl"},"artifacts":[]}"#;
    write("wire_request", "get", request.as_bytes())?;
    write("wire_query", "plain", b"path=com/example/lib-1.0.jar")?;
    write("wire_query", "encoded", b"x=1&path=a%20b%2Fc.txt&y=%E2%9C%93")?;
    Ok(())
}
