//! Real packages of every format the host knows, made here at sizes from 1 KiB
//! to 10 MiB: what each format's tools produce (an npm tarball with
//! `package/package.json` first, as `npm pack` writes it; wheels and sdists;
//! jars and poms; crates; gems; nupkgs; Unity packages), each filled out to its
//! size with incompressible contents, as real code and assets mostly are.

use wasmplug_formats::test_support::{gzip, tar, unity_package, zip};

/// One package: the format that reads it, its path in a repository, its bytes.
pub struct Package {
    /// A builtin format key, or `unity` (a plugin only).
    pub format: &'static str,
    /// What it is, for the report: `wheel`, `sdist`, `jar`, …
    pub kind: &'static str,
    pub path: String,
    pub data: Vec<u8>,
}

/// The size buckets of the corpus.
pub const SIZES: [usize; 4] = [1 << 10, 100 << 10, 1 << 20, 10 << 20];

/// Every kind of package, each about `size` bytes.
pub fn packages(size: usize) -> Vec<Package> {
    let fill = noise(size.saturating_sub(600).max(64));
    let package = |format, kind, path: &str, data| Package { format, kind, path: path.to_owned(), data };
    let pkg_info = "Metadata-Version: 2.1\nName: bench-pkg\nVersion: 1.2.3\nSummary: a benchmark package\n";
    let cargo_toml = "[package]\nname = \"bench-crate\"\nversion = \"1.2.3\"\nedition = \"2021\"\n";
    let gemspec = "--- !ruby/object:Gem::Specification\nname: bench_gem\nversion: !ruby/object:Gem::Version\n  version: 1.2.3\nplatform: ruby\nauthors:\n- Bench\nsummary: bench\n";
    let nuspec = "<?xml version=\"1.0\"?><package xmlns=\"http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd\"><metadata><id>Bench.Lib</id><version>1.2.3</version><authors>bench</authors></metadata></package>";
    vec![
        package(
            "npm",
            "tarball",
            "bench-pkg/-/bench-pkg-1.2.3.tgz",
            gzip(&tar(&[
                ("package/package.json", br#"{"name":"bench-pkg","version":"1.2.3","main":"index.js"}"#.as_slice()),
                ("package/index.js", &fill),
            ])),
        ),
        package(
            "pypi",
            "wheel",
            "bench-pkg/bench_pkg-1.2.3-py3-none-any.whl",
            zip(&[
                ("bench_pkg/__init__.py", fill.as_slice()),
                ("bench_pkg-1.2.3.dist-info/METADATA", pkg_info.as_bytes()),
            ]),
        ),
        package(
            "pypi",
            "sdist",
            "bench-pkg/bench_pkg-1.2.3.tar.gz",
            gzip(&tar(&[("bench_pkg-1.2.3/PKG-INFO", pkg_info.as_bytes()), ("bench_pkg-1.2.3/bench.py", &fill)])),
        ),
        package(
            "maven",
            "jar",
            "com/example/bench-lib/1.2.3/bench-lib-1.2.3.jar",
            zip(&[("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n".as_slice()), ("com/example/Bench.class", &fill)]),
        ),
        package(
            "cargo",
            "crate",
            "crates/bench-crate/bench-crate-1.2.3.crate",
            gzip(&tar(&[
                ("bench-crate-1.2.3/Cargo.toml", cargo_toml.as_bytes()),
                ("bench-crate-1.2.3/src/lib.rs", &fill),
            ])),
        ),
        package(
            "rubygems",
            "gem",
            "gems/bench_gem-1.2.3.gem",
            tar(&[
                ("metadata.gz", gzip(gemspec.as_bytes())),
                ("data.tar.gz", gzip(&tar(&[("lib/bench_gem.rb", &fill)]))),
            ]),
        ),
        package(
            "nuget",
            "nupkg",
            "bench.lib/1.2.3/bench.lib.1.2.3.nupkg",
            zip(&[("Bench.Lib.nuspec", nuspec.as_bytes()), ("lib/net8.0/Bench.Lib.dll", &fill)]),
        ),
        package(
            "unity",
            "unitypackage",
            "packages/Bench-1.2.3.unitypackage",
            unity_package(&[("0123456789abcdef0123456789abcdef", "Assets/Bench.asset", &fill)]),
        ),
    ]
}

/// A pom of about `size` bytes (a real one's dependencies and licences, here a
/// comment), for the smallest bucket: poms are not large.
pub fn pom(size: usize) -> Package {
    let padding = "x".repeat(size.saturating_sub(300));
    let pom = format!(
        r#"<?xml version="1.0"?><project xmlns="http://maven.apache.org/POM/4.0.0"><!-- {padding} --><modelVersion>4.0.0</modelVersion><groupId>com.example</groupId><artifactId>bench-lib</artifactId><version>1.2.3</version></project>"#
    );
    Package {
        format: "maven",
        kind: "pom",
        path: "com/example/bench-lib/1.2.3/bench-lib-1.2.3.pom".to_owned(),
        data: pom.into_bytes(),
    }
}

/// `len` incompressible bytes, the same in every run.
fn noise(len: usize) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[3]
        })
        .collect()
}
