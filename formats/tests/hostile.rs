//! Trust invariant 2 for the builtin formats: inputs built to cost a host memory
//! or time (compression bombs, archives of countless entries, endless nesting)
//! are refused within the call's budget, naming the limit, instead of being
//! walked to their end.

use std::io::Read;
use std::time::Duration;

use wasmplug_formats::test_support::{gzip, tar};
use wasmplug_formats::{Budget, Exceeded, Limits, Refusal};

fn inspect(key: &str, path: &str, data: &[u8], limits: Limits) -> Result<(), Refusal> {
    let format = wasmplug_formats::by_key(key).expect("a builtin");
    format.validate(path, data, &Budget::new(limits))
}

/// A gzip stream of `megabytes` MiB of zeros: a few KiB that inflate to much more.
fn gzipped_zeros(megabytes: u64) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::copy(&mut std::io::repeat(0).take(megabytes << 20), &mut encoder).expect("compress");
    encoder.finish().expect("compress")
}

/// A gzipped tar with one member `name` of `megabytes` MiB of zeros, built
/// without holding the member in memory.
fn tar_gz_bomb(name: &str, megabytes: u64) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut builder = tar::Builder::new(encoder);
    let mut header = tar::Header::new_gnu();
    header.set_size(megabytes << 20);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, std::io::repeat(0).take(megabytes << 20)).expect("append");
    builder.into_inner().expect("tar").finish().expect("compress")
}

/// The npm gzip bomb of the review: a tarball whose one member (not
/// package.json) inflates to far more than any package. Before the budget, the
/// walk inflated it all looking for package/package.json.
#[test]
fn a_gzip_bomb_stops_at_the_inflated_bytes_limit() {
    let bomb = tar_gz_bomb("package/filler.bin", 512);
    assert!(bomb.len() < 2 << 20, "the bomb is small: {} bytes", bomb.len());
    for key in ["npm", "cargo", "pypi"] {
        let path = match key {
            "npm" => "bomb/-/bomb-1.0.0.tgz",
            "cargo" => "bomb-1.0.0.crate",
            _ => "bomb-1.0.0.tar.gz",
        };
        let refusal = inspect(key, path, &bomb, Limits::DEFAULT).expect_err("refused");
        assert_eq!(refusal, Refusal::Exceeded(Exceeded::InflatedBytes(128 << 20)), "{key}");
    }
    // A bomb where a gem's metadata.gz is expected: no more than one member's cap
    // is inflated.
    let gem = tar(&[("metadata.gz", gzipped_zeros(200).as_slice())]);
    let refusal = inspect("rubygems", "bomb-1.0.0.gem", &gem, Limits::DEFAULT).expect_err("refused");
    assert_eq!(refusal, Refusal::Rejected("metadata.gz is larger than 8388608 bytes".into()));
}

/// A zip whose central directory declares more entries than the budget: refused
/// before any of them is indexed.
#[test]
fn an_archive_of_countless_entries_is_refused_before_it_is_walked() {
    let names: Vec<(String, &[u8])> = (0..2_000).map(|i| (format!("f{i}"), &b""[..])).collect();
    let archive = wasmplug_formats::test_support::zip(&names);
    let limits = Limits { entries: 1_000, ..Limits::DEFAULT };
    for (key, path) in [("nuget", "a.1.0.0.nupkg"), ("pypi", "a-1.0-py3-none-any.whl")] {
        let refusal = inspect(key, path, &archive, limits).expect_err("refused");
        assert_eq!(refusal, Refusal::Exceeded(Exceeded::Entries(1_000)), "{key}");
    }
    let tarball = gzip(&tar(&names));
    let refusal = inspect("npm", "a/-/a-1.0.0.tgz", &tarball, limits).expect_err("refused");
    assert_eq!(refusal, Refusal::Exceeded(Exceeded::Entries(1_000)));
}

/// The review's 60 MiB POM of nested elements (1.47 GiB of host memory):
/// refused at the depth limit.
#[test]
fn a_deeply_nested_pom_is_refused_at_the_depth_limit() {
    let pom = format!("<project>{}", "<a>".repeat(20_000_000));
    let refusal = inspect("maven", "com/x/lib/1.0/lib-1.0.pom", pom.as_bytes(), Limits::DEFAULT).expect_err("refused");
    let Refusal::Rejected(reason) = refusal else { panic!("a rejection") };
    assert!(reason.contains("nests elements more than 64 deep"), "{reason}");
}

/// Work that takes longer than the call may is stopped at its time limit.
#[test]
fn a_walk_longer_than_the_time_limit_is_stopped() {
    let names: Vec<(String, &[u8])> = (0..50_000).map(|i| (format!("package/f{i}"), &b"x"[..])).collect();
    let tarball = gzip(&tar(&names));
    let limits = Limits { time: Some(Duration::ZERO), ..Limits::DEFAULT };
    let refusal = inspect("npm", "a/-/a-1.0.0.tgz", &tarball, limits).expect_err("refused");
    assert_eq!(refusal, Refusal::Exceeded(Exceeded::Time(Duration::ZERO)));
    let artifacts = vec![
        wasmplug_formats::Metadata {
            path: "a/-/a-1.0.0.tgz".into(),
            version: Some("1.0.0".into()),
            content_type: "application/gzip".into(),
            size_bytes: 1,
            checksum_sha256: None,
        };
        10
    ];
    let npm = wasmplug_formats::by_key("npm").expect("npm");
    let refusal = npm.generate_index(&artifacts, &Budget::new(limits)).expect_err("refused");
    assert_eq!(refusal, Refusal::Exceeded(Exceeded::Time(Duration::ZERO)));
}
