//! Reading a file someone else may have planted: the store's files on a host,
//! `local` sources and the files the artifact server sends on the operator.
//!
//! The path may name a link, a FIFO, a device or a file that grows while it is
//! read. So the file is opened without following a final link and without
//! blocking, must be a regular file, and is read never past the size it is
//! expected to have.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How large a file must be.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    /// Exactly this many bytes (a size status recorded).
    Exactly(u64),
    /// At most this many bytes.
    AtMost(u64),
}

/// Why a file was not read. The message names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("failed to read {}: {problem}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub problem: String,
}

/// Opens the regular file at `path` for reading: not through a final link,
/// not blocking (on a FIFO), and only if it is a regular file.
pub fn open(path: &Path) -> Result<File, FileError> {
    let problem = |problem: String| FileError { path: path.to_owned(), problem };
    let file: File =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(
            |e| match e.raw_os_error() {
                Some(libc::ELOOP) => problem("it is a link; only regular files are read".to_owned()),
                _ => problem(e.to_string()),
            },
        )?;
    let metadata = file.metadata().map_err(|e| problem(e.to_string()))?;
    if !metadata.is_file() {
        return Err(problem("it is not a regular file".to_owned()));
    }
    Ok(file)
}

/// Reads the regular file at `path`, whose size must be as `size` says.
pub fn read(path: &Path, size: Size) -> Result<Vec<u8>, FileError> {
    let problem = |problem: String| FileError { path: path.to_owned(), problem };
    let file = open(path)?;
    let metadata = file.metadata().map_err(|e| problem(e.to_string()))?;
    let cap = match size {
        Size::Exactly(size) if metadata.len() != size => {
            return Err(problem(format!("it has {} bytes, but status says {size}", metadata.len())));
        }
        Size::Exactly(size) => size,
        Size::AtMost(max) if metadata.len() > max => {
            return Err(problem(format!("it has {} bytes, more than the {max} allowed", metadata.len())));
        }
        Size::AtMost(max) => max,
    };
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or_default());
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| problem(e.to_string()))?;
    if bytes.len() as u64 != metadata.len() {
        return Err(problem("it changed while it was read".to_owned()));
    }
    Ok(bytes)
}
