//! Reading one file out of a package archive (tar, tar.gz or zip) without
//! trusting the archive: entries are read through a size cap, so a compression
//! bomb costs at most [`MAX_ENTRY_BYTES`].

use std::io::{Cursor, Read};

/// Largest archive member a builtin format will read (manifests are small).
pub const MAX_ENTRY_BYTES: u64 = 8 << 20;

/// Whether `data` starts like a gzip stream.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Whether `data` starts like a zip archive.
pub fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04")
}

/// The first member of a gzipped tar whose path satisfies `wanted`, as
/// (path, contents); `Ok(None)` when there is none.
pub fn tar_gz_member(data: &[u8], wanted: impl Fn(&str) -> bool) -> Result<Option<(String, Vec<u8>)>, String> {
    if !is_gzip(data) {
        return Err("the file is not gzip-compressed".to_owned());
    }
    tar_member(flate2::read::GzDecoder::new(data), wanted)
}

/// The first member of a tar stream whose path satisfies `wanted`.
pub fn tar_member(reader: impl Read, wanted: impl Fn(&str) -> bool) -> Result<Option<(String, Vec<u8>)>, String> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| format!("unreadable tar archive: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("corrupt tar archive: {e}"))?;
        let path = entry.path().map_err(|e| format!("bad tar entry name: {e}"))?.to_string_lossy().into_owned();
        if wanted(&path) {
            return read_capped(entry, &path).map(|contents| Some((path, contents)));
        }
    }
    Ok(None)
}

/// The first member of a zip archive whose path satisfies `wanted`.
pub fn zip_member(data: &[u8], wanted: impl Fn(&str) -> bool) -> Result<Option<(String, Vec<u8>)>, String> {
    if !is_zip(data) {
        return Err("the file is not a zip archive".to_owned());
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(|e| format!("corrupt zip archive: {e}"))?;
    let names = archive.file_names().collect::<Result<Vec<_>, _>>().map_err(|e| format!("corrupt zip archive: {e}"))?;
    let Some(name) = names.into_iter().find(|name| wanted(name)).map(|name| name.into_owned()) else {
        return Ok(None);
    };
    let file = archive.by_name(&name).map_err(|e| format!("unreadable zip entry {name}: {e}"))?;
    read_capped(file, &name).map(|contents| Some((name, contents)))
}

fn read_capped(reader: impl Read, path: &str) -> Result<Vec<u8>, String> {
    let mut contents = Vec::new();
    reader
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(|e| format!("failed to read {path} from the archive: {e}"))?;
    if contents.len() as u64 > MAX_ENTRY_BYTES {
        return Err(format!("{path} is larger than {MAX_ENTRY_BYTES} bytes"));
    }
    Ok(contents)
}
