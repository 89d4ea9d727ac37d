//! Builders for real package archives (tar, gzip, zip), for tests here and in the
//! host. Enabled by the `test-support` feature; never part of a release build.

use std::io::Write;

/// A tar archive of `(path, contents)` entries.
pub fn tar<P: AsRef<str>, D: AsRef<[u8]>>(files: &[(P, D)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let data = data.as_ref();
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path.as_ref(), data).expect("append to an in-memory tar");
    }
    tar.into_inner().expect("finish tar")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("finish gzip")
}

/// A zip archive of `(path, contents)` entries.
pub fn zip<P: AsRef<str>, D: AsRef<[u8]>>(files: &[(P, D)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, data) in files {
        zip.start_file(path.as_ref(), zip::write::SimpleFileOptions::default()).expect("zip entry");
        zip.write_all(data.as_ref()).expect("zip write");
    }
    zip.finish().expect("finish zip").into_inner()
}

/// An npm tarball holding `package/package.json` for `name`@`version`.
pub fn npm_tarball(name: &str, version: &str) -> Vec<u8> {
    let json = format!(r#"{{"name":"{name}","version":"{version}","main":"index.js"}}"#);
    gzip(&tar(&[("package/package.json", json.as_bytes()), ("package/index.js", b"module.exports = 1;")]))
}

/// A real `.unitypackage`: a gzipped tar of `<guid>/asset`, `<guid>/asset.meta` and
/// `<guid>/pathname` for each `(guid, pathname, contents)`.
pub fn unity_package(assets: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (guid, pathname, contents) in assets {
        files.push((format!("{guid}/asset"), contents.to_vec()));
        files.push((format!("{guid}/asset.meta"), format!("fileFormatVersion: 2\nguid: {guid}\n").into_bytes()));
        files.push((format!("{guid}/pathname"), format!("{pathname}\n").into_bytes()));
    }
    gzip(&tar(&files))
}
