//! Reading one file out of a package archive (tar, tar.gz or zip) without
//! trusting the archive. Every byte read out of an archive (inflated or stored,
//! the members skipped on the way included) and every entry walked is charged to
//! the call's [`Budget`]; only the wanted member is kept, up to
//! [`MAX_ENTRY_BYTES`]. A zip archive's central directory is walked entry by
//! entry, never indexed whole, after its declared entry count is charged.
//! Compressed bytes are inflated straight from the slice (`flate2::bufread`):
//! a `flate2::read` decoder would zero a 32 KiB buffer and copy the stream
//! through it, which a plugin pays again when its memory is reset. For the
//! same reason tar members are skipped through [`Forward`], not by the tar
//! reader's own skip, which zeroes a 32 KiB buffer on the stack before every
//! entry.

use std::io::{self, Cursor, Read, Seek, SeekFrom};

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
    let mut archive = tar::Archive::new(Forward { inner: Charged { inner: reader, budget }, position: 0 });
    let entries = archive.entries_with_seek().map_err(|e| refusal(e, budget, "unreadable tar archive"))?;
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

/// A stream that can only move forward: a relative seek ahead reads and
/// discards the bytes in between (through a buffer that is never zeroed
/// whole), any other seek fails. What the tar reader needs to skip the
/// members it does not want of a stream it cannot seek in.
struct Forward<R> {
    inner: R,
    /// Bytes read or skipped so far.
    position: u64,
}

impl<R: Read> Read for Forward<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.position += read as u64;
        Ok(read)
    }
}

impl<R: Read> Seek for Forward<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let ahead = match to {
            SeekFrom::Current(ahead) => u64::try_from(ahead).ok(),
            _ => None,
        };
        let Some(ahead) = ahead else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, format!("cannot seek to {to:?} in a stream")));
        };
        if ahead > 0 {
            let skipped = io::copy(&mut self.inner.by_ref().take(ahead), &mut io::sink())?;
            self.position += skipped;
            if skipped < ahead {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected end of the archive"));
            }
        }
        Ok(self.position)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_skips_ahead_and_refuses_every_other_seek() {
        let mut stream = Forward { inner: b"0123456789".as_slice(), position: 0 };
        let mut two = [0; 2];
        stream.read_exact(&mut two).expect("read");
        assert_eq!(stream.stream_position().expect("where"), 2);
        assert_eq!(stream.seek(SeekFrom::Current(5)).expect("skip"), 7);
        stream.read_exact(&mut two).expect("read");
        assert_eq!(&two, b"78");
        for refused in [SeekFrom::Current(-1), SeekFrom::Start(0), SeekFrom::End(0)] {
            assert_eq!(stream.seek(refused).expect_err("refused").kind(), io::ErrorKind::Unsupported);
        }
        let past_the_end = stream.seek(SeekFrom::Current(5)).expect_err("past the end");
        assert_eq!(past_the_end.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// The members skipped to reach the wanted one are still charged to the
    /// budget (skipping inflates them all the same).
    #[test]
    fn skipped_members_are_charged() {
        let filler = vec![7; 100_000];
        let tarball = crate::test_support::gzip(&crate::test_support::tar(&[
            ("filler", filler.as_slice()),
            ("wanted", b"yes".as_slice()),
        ]));
        let limits = crate::budget::Limits { inflated_bytes: 50_000, ..crate::budget::Limits::DEFAULT };
        let refusal = tar_gz_member(&tarball, &Budget::new(limits), |p| p == "wanted").expect_err("over budget");
        assert_eq!(refusal, Refusal::Exceeded(Exceeded::InflatedBytes(50_000)));
        let found = tar_gz_member(&tarball, &Budget::new(crate::budget::Limits::DEFAULT), |p| p == "wanted");
        assert_eq!(found.expect("found"), Some(("wanted".to_owned(), b"yes".to_vec())));
    }
}
