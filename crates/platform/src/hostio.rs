//! Host files the runtime reads: image files and packages. Everything above
//! platform that needs host file data goes through here, so a target whose
//! host calls leave a trusted boundary (an enclave's ocalls) replaces this
//! one module. Contents read from the host are untrusted; callers verify.

use crate::errno::Errno;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A host file opened read-only.
#[derive(Debug)]
pub struct ReadOnlyFile {
    file: File,
    len: u64,
}

impl ReadOnlyFile {
    /// Opens `path` for reading; its length is taken once, at open.
    pub fn open(path: &Path) -> Result<ReadOnlyFile, std::io::Error> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(ReadOnlyFile { file, len })
    }

    /// Length in bytes when opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One positioned read (pread): the bytes read, 0 at end of file.
    /// EINTR is retried.
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize, std::io::Error> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

/// The host's controlling terminal, read-write: the guest's /dev/tty is the
/// user's terminal (the host's standard descriptors are the guest's 0-2).
pub fn open_tty() -> Result<File, Errno> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(Errno::from)
}
