//! Reading one file out of a package archive (tar, tar.gz or zip) without
//! trusting the archive. Every byte read out of an archive (inflated or stored,
//! the members skipped on the way included) and every entry walked is charged to
//! the call's [`Budget`]; only the wanted member is kept, up to
//! [`MAX_ENTRY_BYTES`]. A zip archive's central directory is walked entry by
//! entry, never indexed whole, after its declared entry count is charged.
//! Compressed bytes are inflated straight from the slice (`flate2::bufread`):
//! a `flate2::read` decoder would zero a 32 KiB buffer and copy the stream
//! through it, which a plugin pays again when its memory is reset.

use std::io::{self, Cursor, Read};

use zip::ZipReadOptions;
use zip::unstable::read::ZipIterable;

use crate::budget::{Budget, Exceeded, Refusal};

/// Largest archive member a builtin format will read (manifests are small).
pub const MAX_ENTRY_BYTES: u64 = 8 << 20;

/// A found member: (path in the archive, contents).
pub type Member = (String, Vec<u8>);

/// Whether `data` starts like a gzip stream.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Whether `data` starts like a zip archive.
pub fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04")
}

/// Text of gzip-compressed `data` named `name`, at most [`MAX_ENTRY_BYTES`].
pub fn gunzip_text(data: &[u8], name: &str, budget: &Budget) -> Result<String, Refusal> {
    let reader = Charged { inner: flate2::bufread::GzDecoder::new(data), budget };
    let bytes = read_capped(reader, name, budget)?;
    String::from_utf8(bytes).map_err(|e| format!("{name} is not UTF-8 text: {e}").into())
}

/// The first member of a gzipped tar whose path satisfies `wanted`;
/// `Ok(None)` when there is none.
pub fn tar_gz_member(data: &[u8], budget: &Budget, wanted: impl Fn(&str) -> bool) -> Result<Option<Member>, Refusal> {
    if !is_gzip(data) {
        return Err("the file is not gzip-compressed".into());
    }
    tar_member(flate2::bufread::GzDecoder::new(data), budget, wanted)
}

/// The first member of a tar stream whose path satisfies `wanted`.
pub fn tar_member(
    reader: impl Read,
    budget: &Budget,
    wanted: impl Fn(&str) -> bool,
) -> Result<Option<Member>, Refusal> {
    let mut archive = tar::Archive::new(Charged { inner: reader, budget });
    let entries = archive.entries().map_err(|e| refusal(e, budget, "unreadable tar archive"))?;
    for entry in entries {
        budget.entry()?;
        let entry = entry.map_err(|e| refusal(e, budget, "corrupt tar archive"))?;
        let path = entry.path().map_err(|e| format!("bad tar entry name: {e}"))?.to_string_lossy().into_owned();
        if wanted(&path) {
            return read_capped(entry, &path, budget).map(|contents| Some((path, contents)));
        }
    }
    Ok(None)
}

/// The first member of a zip archive whose path satisfies `wanted`.
pub fn zip_member(data: &[u8], budget: &Budget, wanted: impl Fn(&str) -> bool) -> Result<Option<Member>, Refusal> {
    if !is_zip(data) {
        return Err("the file is not a zip archive".into());
    }
    let corrupt = |e: zip::result::ZipError| Refusal::from(format!("corrupt zip archive: {e}"));
    let mut archive = ZipIterable::try_new(Cursor::new(data), zip::read::Config::default()).map_err(corrupt)?;
    budget.count_entries(archive.len() as u64)?;
    let mut files = archive.files_with_cloned_reader(ZipReadOptions::new()).map_err(corrupt)?;
    while let Some(file) = files.next() {
        budget.check_time()?;
        let file = file.map_err(corrupt)?;
        let name = file.name().map_err(corrupt)?.into_owned();
        if wanted(&name) {
            let reader = Charged { inner: file, budget };
            return read_capped(reader, &name, budget).map(|contents| Some((name, contents)));
        }
    }
    Ok(None)
}

fn read_capped(reader: impl Read, path: &str, budget: &Budget) -> Result<Vec<u8>, Refusal> {
    let mut contents = Vec::new();
    reader
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(|e| refusal(e, budget, &format!("failed to read {path} from the archive")))?;
    if contents.len() as u64 > MAX_ENTRY_BYTES {
        return Err(format!("{path} is larger than {MAX_ENTRY_BYTES} bytes").into());
    }
    Ok(contents)
}

/// A reader of bytes out of an archive that charges them to the budget.
struct Charged<'b, R> {
    inner: R,
    budget: &'b Budget,
}

impl<R: Read> Read for Charged<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.budget.inflate(read as u64).map_err(io::Error::other)?;
        Ok(read)
    }
}

impl std::error::Error for Exceeded {}

/// The refusal for an error reading an archive: the budget, when that is what
/// stopped the read (the tar and zip readers wrap it), or `context` and the error.
fn refusal(error: io::Error, budget: &Budget, context: &str) -> Refusal {
    let exceeded = error.get_ref().and_then(|inner| inner.downcast_ref::<Exceeded>()).copied();
    match exceeded.or_else(|| budget.exhausted()) {
        Some(exceeded) => Refusal::Exceeded(exceeded),
        None => Refusal::Rejected(format!("{context}: {error}")),
    }
}
