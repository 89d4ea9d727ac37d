//! Every format on real package files built here: metadata, validation
//! with readable reasons, and the index each format's clients read.

use sha2::{Digest as _, Sha256};
use wasmplug_formats::test_support::{gzip, npm_tarball, tar, zip};
use wasmplug_formats::{Budget, Format, Limits, Metadata, Refusal};

fn handler(key: &str) -> &'static dyn Format {
    wasmplug_formats::by_key(key).unwrap_or_else(|| panic!("{key} is a format"))
}

fn budget() -> Budget {
    Budget::new(Limits::DEFAULT)
}

/// The metadata of an accepted artifact, as the host answers it: the format
/// leaves the checksum out, and the host fills in the SHA-256 of the bytes.
fn accepted(key: &str, path: &str, data: &[u8]) -> Metadata {
    let handler = handler(key);
    handler.validate(path, data, &budget()).unwrap_or_else(|e| panic!("{key} {path}: {e}"));
    let metadata = handler.parse_metadata(path, data, &budget()).unwrap_or_else(|e| panic!("{key} {path}: {e}"));
    assert_eq!(metadata.checksum_sha256, None, "{key}: the host calculates the checksum");
    let sha256: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
    Metadata { checksum_sha256: Some(sha256), ..metadata }
}

fn rejected(key: &str, path: &str, data: &[u8]) -> String {
    match handler(key).validate(path, data, &budget()) {
        Err(Refusal::Rejected(reason)) => reason,
        other => panic!("{key} {path}: expected a rejection, got {other:?}"),
    }
}

fn index(key: &str, artifacts: &[Metadata]) -> Vec<(String, String)> {
    let files = handler(key).generate_index(artifacts, &budget()).expect("index").expect("the format has an index");
    files.into_iter().map(|(name, bytes)| (name, String::from_utf8(bytes).expect("text index"))).collect()
}

#[test]
fn npm_tarballs_and_packuments() {
    let left_pad = npm_tarball("left-pad", "1.3.0");
    let metadata = accepted("npm", "left-pad/-/left-pad-1.3.0.tgz", &left_pad);
    assert_eq!(metadata.version.as_deref(), Some("1.3.0"));
    assert_eq!(metadata.content_type, "application/gzip");
    let scoped = accepted("npm", "@types/node/-/node-20.1.0.tgz", &npm_tarball("@types/node", "20.1.0"));
    let older = accepted("npm", "left-pad/-/left-pad-1.10.0.tgz", &npm_tarball("left-pad", "1.10.0"));

    assert!(
        rejected("npm", "left-pad/-/left-pad-1.3.1.tgz", &left_pad)
            .contains("path names left-pad@1.3.1 but package.json says left-pad@1.3.0")
    );
    assert!(rejected("npm", "x/-/x-1.0.0.tgz", &gzip(&tar(&[("README", b"")]))).contains("no package/package.json"));
    assert!(rejected("npm", "x/-/x-1.0.0.tgz", b"plain").contains("not gzip-compressed"));
    assert!(rejected("npm", "x.zip", &left_pad).contains("must end with .tgz"));

    let files = index("npm", &[metadata, older, scoped]);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["@types/node", "left-pad"]);
    let packument: serde_json::Value = serde_json::from_str(&files[1].1).expect("JSON");
    assert_eq!(packument["dist-tags"]["latest"], "1.10.0");
    assert_eq!(packument["versions"]["1.3.0"]["dist"]["tarball"], "left-pad/-/left-pad-1.3.0.tgz");
    assert!(packument["versions"]["1.3.0"]["dist"]["integrity"].as_str().is_some_and(|i| i.starts_with("sha256-")));
}

#[test]
fn pypi_wheels_sdists_and_the_simple_index() {
    let metadata_file = "Metadata-Version: 2.1\nName: Demo.Pkg\nVersion: 1.0.0\nSummary: demo\n\nlong description";
    let wheel = zip(&[
        ("demo_pkg/__init__.py", "".as_bytes()),
        ("demo_pkg-1.0.0.dist-info/METADATA", metadata_file.as_bytes()),
    ]);
    let wheel_meta = accepted("pypi", "demo-pkg/demo_pkg-1.0.0-py3-none-any.whl", &wheel);
    assert_eq!((wheel_meta.version.as_deref(), wheel_meta.content_type.as_str()), (Some("1.0.0"), "application/zip"));

    let sdist = gzip(&tar(&[("demo_pkg-1.0.0/PKG-INFO", metadata_file.as_bytes()), ("demo_pkg-1.0.0/setup.py", b"")]));
    let sdist_meta = accepted("pypi", "demo-pkg/demo_pkg-1.0.0.tar.gz", &sdist);
    assert_eq!(sdist_meta.content_type, "application/gzip");

    assert!(
        rejected("pypi", "demo_pkg-2.0.0-py3-none-any.whl", &wheel)
            .contains("says demo_pkg 2.0.0 but demo_pkg-1.0.0.dist-info/METADATA says Demo.Pkg 1.0.0")
    );
    assert!(rejected("pypi", "demo_pkg-1.0.0-py3-none-any.whl", &sdist).contains("not a zip archive"));
    assert!(rejected("pypi", "demo.egg", &wheel).contains("neither a wheel"));

    let files = index("pypi", &[wheel_meta, sdist_meta]);
    assert_eq!(files[0].0, "simple/index.html");
    assert!(files[0].1.contains(r#"<a href="demo-pkg/">demo-pkg</a>"#), "{}", files[0].1);
    assert_eq!(files[1].0, "simple/demo-pkg/index.html");
    assert!(
        files[1].1.contains(r#"<a href="../../demo-pkg/demo_pkg-1.0.0-py3-none-any.whl#sha256="#),
        "{}",
        files[1].1
    );
}

#[test]
fn cargo_crates_and_the_sparse_index() {
    let toml = "[package]\nname = \"demo-crate\"\nversion = \"0.3.1\"\nedition = \"2021\"\n";
    let krate = gzip(&tar(&[("demo-crate-0.3.1/Cargo.toml", toml.as_bytes()), ("demo-crate-0.3.1/src/lib.rs", b"")]));
    let metadata = accepted("cargo", "crates/demo-crate/demo-crate-0.3.1.crate", &krate);
    assert_eq!(metadata.version.as_deref(), Some("0.3.1"));
    assert!(rejected("cargo", "demo-crate-0.3.2.crate", &krate).contains("no demo-crate-0.3.2/Cargo.toml"));
    assert!(rejected("cargo", "demo.tgz", &krate).contains("not a crate file name"));

    let files = index("cargo", std::slice::from_ref(&metadata));
    assert_eq!(files[0].0, "de/mo/demo-crate");
    let line: serde_json::Value = serde_json::from_str(files[0].1.trim()).expect("one JSON line");
    assert_eq!(line["vers"], "0.3.1");
    assert_eq!(line["cksum"].as_str(), metadata.checksum_sha256.as_deref());
}

#[test]
fn maven_artifacts_poms_and_maven_metadata() {
    let jar = zip(&[("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n".as_bytes())]);
    let base = "com/example/demo-lib";
    let jar_meta = accepted("maven", &format!("{base}/1.2.0/demo-lib-1.2.0.jar"), &jar);
    assert_eq!(
        (jar_meta.version.as_deref(), jar_meta.content_type.as_str()),
        (Some("1.2.0"), "application/java-archive")
    );
    let pom = r#"<?xml version="1.0"?><project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion><groupId>com.example</groupId><artifactId>demo-lib</artifactId><version>1.10.0</version></project>"#;
    let pom_meta = accepted("maven", &format!("{base}/1.10.0/demo-lib-1.10.0.pom"), pom.as_bytes());
    let snapshot = accepted("maven", &format!("{base}/2.0.0-SNAPSHOT/demo-lib-2.0.0-20240101.120000-1.jar"), &jar);

    assert!(rejected("maven", &format!("{base}/1.2.0/demo-lib-1.2.0.jar"), b"not a zip").contains("not a jar archive"));
    assert!(
        rejected("maven", &format!("{base}/1.2.0/demo-lib-1.2.0.pom"), pom.as_bytes())
            .contains("version is 1.10.0 but the path says 1.2.0")
    );
    assert!(rejected("maven", &format!("{base}/1.0/demo-lib-1.0.pom"), b"<settings/>").contains("not <project>"));
    assert!(rejected("maven", "demo-lib/1.0/demo-lib-1.0.jar", &jar).contains("no group directories"));

    let files = index("maven", &[jar_meta, pom_meta, snapshot]);
    assert_eq!(files[0].0, "com/example/demo-lib/maven-metadata.xml");
    let xml = &files[0].1;
    assert!(xml.contains("<latest>2.0.0-SNAPSHOT</latest>"), "{xml}");
    assert!(xml.contains("<release>1.10.0</release>"), "{xml}");
    assert!(
        xml.contains(
            "<version>1.2.0</version>\n      <version>1.10.0</version>\n      <version>2.0.0-SNAPSHOT</version>"
        ),
        "{xml}"
    );
}

#[test]
fn nuget_packages_and_the_flat_container() {
    let nuspec = "\u{feff}<?xml version=\"1.0\"?><package xmlns=\"http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd\"><metadata><id>Demo.Lib</id><version>2.1.0</version><authors>me</authors></metadata></package>";
    let nupkg = zip(&[("Demo.Lib.nuspec", nuspec.as_bytes()), ("lib/net8.0/Demo.Lib.dll", b"MZ".as_slice())]);
    let metadata = accepted("nuget", "demo.lib/2.1.0/demo.lib.2.1.0.nupkg", &nupkg);
    assert_eq!(metadata.version.as_deref(), Some("2.1.0"));
    assert!(rejected("nuget", "demo.lib.2.2.0.nupkg", &nupkg).contains("its nuspec says Demo.Lib 2.1.0"));
    assert!(rejected("nuget", "x.1.0.nupkg", &zip(&[("lib/x.dll", b"MZ")])).contains("no <id>.nuspec"));

    let files = index("nuget", &[metadata]);
    assert_eq!(files, [("v3-flatcontainer/demo.lib/index.json".to_owned(), r#"{"versions":["2.1.0"]}"#.to_owned())]);
}

#[test]
fn rubygems_gems_and_the_compact_index() {
    let spec = "--- !ruby/object:Gem::Specification\nname: demo_gem\nversion: !ruby/object:Gem::Version\n  version: 0.4.2\nplatform: ruby\nauthors:\n- Me\nsummary: demo\n";
    let gem = tar(&[("metadata.gz", gzip(spec.as_bytes())), ("data.tar.gz", gzip(&tar::<&str, &[u8]>(&[])))]);
    let metadata = accepted("rubygems", "gems/demo_gem-0.4.2.gem", &gem);
    assert_eq!(metadata.version.as_deref(), Some("0.4.2"));
    accepted("rubygems", "gems/demo_gem-0.4.2-x86_64-linux.gem", &gem);
    assert!(rejected("rubygems", "gems/demo_gem-0.5.0.gem", &gem).contains("specification says demo_gem 0.4.2"));
    assert!(rejected("rubygems", "gems/x-1.gem", &tar(&[("data.tar.gz", b"")])).contains("no metadata.gz"));

    let files = index("rubygems", std::slice::from_ref(&metadata));
    assert_eq!(files[0], ("names".to_owned(), "---\ndemo_gem\n".to_owned()));
    let checksum = metadata.checksum_sha256.unwrap_or_default();
    assert_eq!(files[1], ("info/demo_gem".to_owned(), format!("---\n0.4.2 |checksum:{checksum}\n")));
}
