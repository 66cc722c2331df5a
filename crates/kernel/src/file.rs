//! Open files and the per-process descriptor table.

use crate::vfs::{Chain, Loc};
use myst_fs::{DirEntry, Errno, FileType};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// O_ACCMODE.
pub const O_ACCMODE: u32 = 3;
/// O_WRONLY.
pub const O_WRONLY: u32 = 1;
/// O_RDWR.
pub const O_RDWR: u32 = 2;
/// O_APPEND.
pub const O_APPEND: u32 = 0o2000;
/// O_NONBLOCK.
pub const O_NONBLOCK: u32 = 0o4000;
/// O_CLOEXEC.
pub const O_CLOEXEC: u32 = 0o2000000;
/// O_ASYNC (FASYNC): SIGIO when the file becomes ready.
pub const O_ASYNC: u32 = 0o20000;
/// O_PATH.
pub const O_PATH: u32 = 0o10000000;

/// What an open file is backed by.
pub enum FileKind {
    /// An inode of a mounted file system.
    Node {
        /// Where, with the path that reached it.
        chain: Chain,
        /// Its type when opened.
        kind: FileType,
    },
    /// A host file descriptor (stdin/stdout/stderr, /dev/tty, pipes).
    Host {
        /// Host descriptor number.
        fd: i32,
        /// Keeps the host descriptor open while this file lives (None for
        /// the inherited 0-2, which the runtime never closes).
        _owner: Option<std::fs::File>,
    },
}

/// An open file description (shared by dup'ed descriptors).
pub struct OpenFile {
    /// Backing object.
    pub kind: FileKind,
    /// Status flags and access mode.
    pub flags: AtomicU32,
    /// File offset.
    pub pos: Mutex<u64>,
    /// Absolute guest path (for /proc/self/fd).
    pub path: Vec<u8>,
    /// Directory entries snapshot for getdents.
    pub dir_cache: Mutex<Option<Vec<DirEntry>>>,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if let FileKind::Node { chain, .. } = &self.kind {
            chain.loc().mnt.fs.release(chain.loc().ino);
        }
    }
}

/// Locks, ignoring poisoning (a panic in a handler ends the process anyway).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl OpenFile {
    /// A new open file.
    pub fn new(kind: FileKind, flags: u32, path: Vec<u8>) -> Arc<OpenFile> {
        // An open file keeps its inode after the last unlink (POSIX); the
        // matching release is in Drop.
        if let FileKind::Node { chain, .. } = &kind {
            chain.loc().mnt.fs.retain(chain.loc().ino);
        }
        Arc::new(OpenFile {
            kind,
            flags: AtomicU32::new(flags & !O_CLOEXEC),
            pos: Mutex::new(0),
            path,
            dir_cache: Mutex::new(None),
        })
    }

    /// Current flags.
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// The file-system location, for files backed by one.
    pub fn loc(&self) -> Option<&Loc> {
        match &self.kind {
            FileKind::Node { chain, .. } => Some(chain.loc()),
            FileKind::Host { .. } => None,
        }
    }

    /// Readable.
    pub fn readable(&self) -> bool {
        let f = self.flags();
        f & O_PATH == 0 && f & O_ACCMODE != O_WRONLY
    }

    /// Writable.
    pub fn writable(&self) -> bool {
        let f = self.flags();
        f & O_PATH == 0 && matches!(f & O_ACCMODE, O_WRONLY | O_RDWR)
    }
}

/// One descriptor slot.
#[derive(Clone)]
pub struct FdEntry {
    /// The open file.
    pub file: Arc<OpenFile>,
    /// Close on exec.
    pub cloexec: bool,
}

/// The descriptor table.
pub struct FdTable {
    slots: Vec<Option<FdEntry>>,
    /// RLIMIT_NOFILE.
    pub limit: usize,
}

impl FdTable {
    /// An empty table.
    pub fn new() -> FdTable {
        FdTable {
            slots: Vec::new(),
            limit: 1024,
        }
    }

    /// The entry of `fd`.
    pub fn get(&self, fd: i32) -> Result<&FdEntry, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref())
            .ok_or(Errno::EBADF)
    }

    /// The entry of `fd`, mutable.
    pub fn get_mut(&mut self, fd: i32) -> Result<&mut FdEntry, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.as_mut())
            .ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free descriptor >= `min`.
    pub fn alloc(&mut self, file: Arc<OpenFile>, cloexec: bool, min: usize) -> Result<i32, Errno> {
        let mut i = min;
        while i < self.slots.len() && self.slots[i].is_some() {
            i += 1;
        }
        if i >= self.limit {
            return Err(Errno::EMFILE);
        }
        self.set(i, file, cloexec);
        Ok(i as i32)
    }

    /// Installs `file` at exactly `fd`, returning what was there.
    pub fn set(&mut self, fd: usize, file: Arc<OpenFile>, cloexec: bool) -> Option<FdEntry> {
        if fd >= self.slots.len() {
            self.slots.resize(fd + 1, None);
        }
        self.slots[fd].replace(FdEntry { file, cloexec })
    }

    /// Removes `fd`.
    pub fn close(&mut self, fd: i32) -> Result<FdEntry, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.take())
            .ok_or(Errno::EBADF)
    }

    /// Open descriptors in order.
    pub fn list(&self) -> Vec<(i32, FdEntry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.clone().map(|e| (i as i32, e)))
            .collect()
    }
}

impl Default for FdTable {
    fn default() -> Self {
        Self::new()
    }
}
