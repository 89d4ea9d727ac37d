//! Unpacking a ZIP plugin package safely, in memory.
//!
//! A ZIP comes from outside the cluster, so nothing in it is trusted: entries may
//! not escape the package (absolute paths, `..`), may not be links, and the archive
//! may not unpack to more entries, more bytes or a higher compression ratio than
//! the limits allow (zip bombs). The package files sit at the root of the archive
//! or inside one top-level directory (as release tools and GitHub produce them).

use std::io::{Cursor, Read};

use zip::unstable::read::ZipIterable;

use wasmplug_host::plugin::{MANIFEST_FILE, WASM_FILE};

use super::{FetchError, Fetched, PACKAGE_FILES};

/// What one ZIP package may unpack to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    pub max_entries: usize,
    /// Total uncompressed bytes of the package files read from the archive.
    pub max_unpacked_bytes: u64,
    /// Largest uncompressed / compressed size of any entry.
    pub max_compression_ratio: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits { max_entries: 1000, max_unpacked_bytes: 128 << 20, max_compression_ratio: 100 }
    }
}

/// Whether `bytes` look like a ZIP archive.
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Unpacks the package files of the ZIP `bytes`, found at `at`.
pub fn unpack(at: &str, revision: String, bytes: &[u8], limits: &ArchiveLimits) -> Result<Fetched, FetchError> {
    let fail = |reason: String| FetchError::Archive { at: at.to_owned(), reason };
    let invalid = |e: zip::result::ZipError| fail(format!("not a valid ZIP archive ({e})"));
    // The entry count comes from the end-of-central-directory record alone:
    // an archive with too many entries is refused before its central
    // directory is parsed (which costs memory per entry).
    let declared = ZipIterable::try_new(Cursor::new(bytes), zip::read::Config::default()).map_err(invalid)?.len();
    if declared > limits.max_entries {
        return Err(fail(format!("it has {declared} entries; at most {} are allowed", limits.max_entries)));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(invalid)?;
    let mut names = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(|e| fail(format!("entry {index} is unreadable ({e})")))?;
        let name = entry.name().map_err(|e| fail(format!("entry {index} has an unreadable name ({e})")))?.into_owned();
        // Absolute names and backslashes are refused outright, whatever a ZIP
        // library would make of them.
        if entry.enclosed_name().is_none() || name.starts_with('/') || name.contains('\\') {
            return Err(fail(format!("entry {name:?} points outside the package")));
        }
        if entry.is_symlink() {
            return Err(fail(format!("entry {name:?} is a link; a package holds regular files only")));
        }
        names.push((index, name, entry.is_dir()));
    }
    let prefix = package_prefix(names.iter().filter(|(_, _, dir)| !dir).map(|(_, name, _)| name.as_str()));
    let mut unpacked = 0u64;
    let mut files = Vec::new();
    for (index, name, _) in names {
        let Some(file) = name.strip_prefix(prefix.as_str()).filter(|f| PACKAGE_FILES.contains(f)) else {
            continue;
        };
        let entry = archive.by_index(index).map_err(|e| fail(format!("entry {name:?} is unreadable ({e})")))?;
        let ratio = entry.size() / entry.compressed_size().max(1);
        if ratio > limits.max_compression_ratio {
            return Err(fail(format!(
                "entry {name:?} is compressed {ratio}:1; at most {}:1 is allowed",
                limits.max_compression_ratio
            )));
        }
        let room = limits.max_unpacked_bytes.saturating_sub(unpacked);
        let mut contents = Vec::new();
        // Read one byte past the room left, so that a lying header cannot hide a bomb.
        entry
            .take(room + 1)
            .read_to_end(&mut contents)
            .map_err(|e| fail(format!("entry {name:?} is corrupt ({e})")))?;
        unpacked += contents.len() as u64;
        if unpacked > limits.max_unpacked_bytes {
            return Err(fail(format!("it unpacks to more than {} bytes", limits.max_unpacked_bytes)));
        }
        files.push((file.to_owned(), contents));
    }
    let at = if prefix.is_empty() { at.to_owned() } else { format!("{at}, directory {prefix}") };
    Ok(Fetched::from_files(at, revision, files))
}

/// The directory the package files are in: "" when plugin.toml or plugin.wasm is at
/// the root, else the single top-level directory that holds them.
fn package_prefix<'a>(files: impl Iterator<Item = &'a str> + Clone) -> String {
    let at_root = files.clone().any(|name| name == MANIFEST_FILE || name == WASM_FILE);
    if at_root {
        return String::new();
    }
    let mut tops = files.filter_map(|name| name.split_once('/').map(|(top, _)| top));
    match tops.next() {
        Some(first) if tops.all(|top| top == first) => format!("{first}/"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, contents) in entries {
            writer.start_file(*name, options).expect("start entry");
            writer.write_all(contents).expect("write entry");
        }
        writer.finish().expect("finish").into_inner()
    }

    fn unpack_default(bytes: &[u8]) -> Result<Fetched, FetchError> {
        unpack("https://example.test/p.zip", "rev".into(), bytes, &ArchiveLimits::default())
    }

    /// Finding 6 of issue 11: the whole central directory was parsed (197 MiB
    /// for 700 000 entries) before the entry count was checked. Here the
    /// directory breaks after the limit: refusing by count from the end record
    /// means the broken part is never read.
    #[test]
    fn too_many_entries_are_refused_before_the_central_directory_is_read() {
        let entries: Vec<(String, &[u8])> = (0..1500).map(|n| (format!("f{n:04}"), b"" as &[u8])).collect();
        let entries: Vec<(&str, &[u8])> = entries.iter().map(|(name, bytes)| (name.as_str(), *bytes)).collect();
        let mut bytes = zip(&entries);
        // Break the central directory header of entry 1 200.
        let header = b"PK\x01\x02";
        let headers: Vec<usize> = bytes.windows(4).enumerate().filter(|(_, w)| w == header).map(|(i, _)| i).collect();
        assert_eq!(headers.len(), 1500);
        bytes[headers[1200]] = b'X';
        let error = unpack_default(&bytes).expect_err("refused").to_string();
        assert!(error.contains("it has 1500 entries; at most 1000 are allowed"), "{error}");
    }

    #[test]
    fn finds_the_package_at_the_root_or_in_one_top_level_directory() {
        for prefix in ["", "unity-format-1.0.0/"] {
            let bytes = zip(&[
                (&format!("{prefix}plugin.toml"), b"toml"),
                (&format!("{prefix}plugin.wasm"), b"wasm"),
                (&format!("{prefix}plugin.wasm.sig"), b"sig"),
                (&format!("{prefix}README.md"), b"readme"),
            ]);
            assert!(is_zip(&bytes));
            let fetched = unpack_default(&bytes).expect("unpacks");
            assert_eq!(fetched.manifest.as_deref(), Some(&b"toml"[..]), "prefix {prefix:?}");
            assert_eq!(fetched.wasm.as_deref(), Some(&b"wasm"[..]));
            assert_eq!(fetched.signature.as_deref(), Some(&b"sig"[..]));
        }
    }

    #[test]
    fn a_missing_file_is_left_for_validation_to_name() {
        let fetched = unpack_default(&zip(&[("plugin.toml", b"toml")])).expect("unpacks");
        assert!(fetched.manifest.is_some() && fetched.wasm.is_none());
    }

    #[test]
    fn refuses_escaping_paths_and_links() {
        let error = unpack_default(&zip(&[("../plugin.toml", b"x")])).expect_err("escapes");
        assert!(error.to_string().contains("points outside the package"), "{error}");
        let error = unpack_default(&zip(&[("/etc/plugin.toml", b"x")])).expect_err("absolute");
        assert!(error.to_string().contains("points outside the package"), "{error}");

        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        writer.add_symlink("plugin.wasm", "/etc/passwd", zip::write::SimpleFileOptions::default()).expect("link");
        let bytes = writer.finish().expect("finish").into_inner();
        let error = unpack_default(&bytes).expect_err("link");
        assert!(error.to_string().contains("is a link"), "{error}");
    }

    #[test]
    fn refuses_bombs_and_corruption() {
        let bomb = zip(&[("plugin.toml", b"t"), ("plugin.wasm", &vec![0u8; 4 << 20])]);
        let error = unpack_default(&bomb).expect_err("ratio");
        assert!(error.to_string().contains("compressed") && error.to_string().contains(":1"), "{error}");

        let small = ArchiveLimits { max_unpacked_bytes: 10, ..ArchiveLimits::default() };
        let error = unpack("u", "r".into(), &zip(&[("plugin.wasm", b"0123456789ab")]), &small).expect_err("size");
        assert!(error.to_string().contains("more than 10 bytes"), "{error}");

        let few = ArchiveLimits { max_entries: 1, ..ArchiveLimits::default() };
        let error = unpack("u", "r".into(), &zip(&[("a", b"a"), ("b", b"b")]), &few).expect_err("entries");
        assert!(error.to_string().contains("2 entries; at most 1"), "{error}");

        let mut truncated = zip(&[("plugin.toml", b"toml"), ("plugin.wasm", b"wasm")]);
        truncated.truncate(truncated.len() / 2);
        let error = unpack_default(&truncated).expect_err("corrupt");
        assert!(error.to_string().contains("not a valid ZIP archive"), "{error}");
    }
}
