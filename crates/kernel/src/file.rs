//! Open files and the per-process descriptor table.

use crate::ofd;
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

/// An open file description (shared by dup'ed descriptors). For files of
/// a mounted file system the offset and status flags live in a shared
/// description ([`ofd::Desc`]) that every process holding it sees; host
/// descriptors keep them here (the host shares the host object).
pub struct OpenFile {
    /// Backing object.
    pub kind: FileKind,
    /// Status flags and access mode (when not shared).
    flags: AtomicU32,
    /// The offset when not shared; otherwise the in-process lock taken
    /// before the shared one, and a copy of the shared offset while held.
    pos: Mutex<u64>,
    /// The shared description.
    desc: Option<ofd::Desc>,
    /// The file system's hold on the inode was taken for this process
    /// alone (released when this process lets go); otherwise it is one
    /// hold for every process, released when the shared description is
    /// freed.
    local_hold: bool,
    /// Absolute guest path (for /proc/self/fd).
    pub path: Vec<u8>,
    /// Directory entries snapshot for getdents.
    pub dir_cache: Mutex<Option<Vec<DirEntry>>>,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        let freed = self.desc.as_ref().is_some_and(|d| d.put());
        if let FileKind::Node { chain, .. } = &self.kind {
            if self.local_hold || freed {
                chain.loc().mnt.fs.release(chain.loc().ino);
            }
        }
    }
}

/// Locks, ignoring poisoning (a panic in a handler ends the process anyway).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The offset of an open file, held for a read, write or seek: for files
/// shared across processes, the description's offset lock is held (for
/// regular files and directories, as Linux's f_pos_lock) and the value is
/// written back when the guard drops.
pub struct PosGuard<'a> {
    local: MutexGuard<'a, u64>,
    desc: Option<&'a ofd::Desc>,
    locked: bool,
}

impl std::ops::Deref for PosGuard<'_> {
    type Target = u64;
    fn deref(&self) -> &u64 {
        &self.local
    }
}

impl std::ops::DerefMut for PosGuard<'_> {
    fn deref_mut(&mut self) -> &mut u64 {
        &mut self.local
    }
}

impl Drop for PosGuard<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.desc {
            d.set_pos(*self.local);
            if self.locked {
                d.unlock_pos();
            }
        }
    }
}

impl OpenFile {
    /// A new open file; for a file-system node whose shared description
    /// cannot be made (the table is full) one private to this process.
    pub fn new(kind: FileKind, flags: u32, path: Vec<u8>) -> Arc<OpenFile> {
        match OpenFile::try_new(kind, flags, path, true) {
            Ok(f) => f,
            // Unreachable with `fallback`; kept total without a panic.
            Err((kind, flags, path)) => OpenFile::build(kind, flags, path, None),
        }
    }

    /// A new open file with a shared description (ENFILE when the table
    /// of descriptions is full).
    pub fn open_node(kind: FileKind, flags: u32, path: Vec<u8>) -> Result<Arc<OpenFile>, Errno> {
        OpenFile::try_new(kind, flags, path, false).map_err(|_| Errno::ENFILE)
    }

    #[allow(clippy::type_complexity)]
    fn try_new(
        kind: FileKind,
        flags: u32,
        path: Vec<u8>,
        fallback: bool,
    ) -> Result<Arc<OpenFile>, (FileKind, u32, Vec<u8>)> {
        let flags = flags & !O_CLOEXEC;
        let desc = match &kind {
            FileKind::Node { chain, .. } => {
                let loc = chain.loc();
                let key = ofd::FileKey {
                    mnt: loc.mnt.id,
                    ino: loc.ino,
                };
                match ofd::Desc::new(flags, key, loc.mnt.fs.shared_holds()) {
                    Ok(d) => d,
                    Err(_) if fallback => None,
                    Err(_) => return Err((kind, flags, path)),
                }
            }
            FileKind::Host { .. } => None,
        };
        Ok(OpenFile::build(kind, flags, path, desc))
    }

    fn build(kind: FileKind, flags: u32, path: Vec<u8>, desc: Option<ofd::Desc>) -> Arc<OpenFile> {
        let mut local_hold = true;
        // An open file keeps its inode after the last unlink (POSIX); the
        // matching release is in Drop, or where the shared description is
        // freed.
        if let FileKind::Node { chain, .. } = &kind {
            let loc = chain.loc();
            local_hold = desc.is_none() || !loc.mnt.fs.shared_holds();
            loc.mnt.fs.retain(loc.ino);
        }
        Arc::new(OpenFile {
            kind,
            flags: AtomicU32::new(flags),
            pos: Mutex::new(0),
            desc,
            local_hold,
            path,
            dir_cache: Mutex::new(None),
        })
    }

    /// Current flags.
    pub fn flags(&self) -> u32 {
        match &self.desc {
            Some(d) => d.flags(),
            None => self.flags.load(Ordering::Relaxed),
        }
    }

    /// Replaces the status flags (F_SETFL), for every process sharing
    /// the description.
    pub fn set_flags(&self, v: u32) {
        match &self.desc {
            Some(d) => d.set_flags(v),
            None => self.flags.store(v, Ordering::Relaxed),
        }
    }

    /// The offset, held until the guard drops.
    pub fn pos(&self) -> PosGuard<'_> {
        let mut local = lock(&self.pos);
        let Some(d) = &self.desc else {
            return PosGuard {
                local,
                desc: None,
                locked: false,
            };
        };
        let locked = matches!(
            self.kind,
            FileKind::Node {
                kind: FileType::Regular | FileType::Directory,
                ..
            }
        );
        if locked {
            d.lock_pos();
        }
        *local = d.pos();
        PosGuard {
            local,
            desc: Some(d),
            locked,
        }
    }

    /// The shared description, if this file has one.
    pub fn desc(&self) -> Option<&ofd::Desc> {
        self.desc.as_ref()
    }

    /// The identity of the file for the lock table.
    pub fn key(&self) -> Option<ofd::FileKey> {
        self.loc().map(|l| ofd::FileKey {
            mnt: l.mnt.id,
            ino: l.ino,
        })
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

/// A descriptor of `e` was closed.
fn closed(e: &FdEntry) {
    if let Some(key) = e.file.key() {
        crate::locks::close_file(key);
    }
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

    /// Installs `file` at exactly `fd`, returning what was there (closed:
    /// see [`FdTable::close`]).
    pub fn set(&mut self, fd: usize, file: Arc<OpenFile>, cloexec: bool) -> Option<FdEntry> {
        if fd >= self.slots.len() {
            self.slots.resize(fd + 1, None);
        }
        let old = self.slots[fd].replace(FdEntry { file, cloexec });
        if let Some(e) = &old {
            closed(e);
        }
        old
    }

    /// Removes `fd`. The process's POSIX record locks on its file go
    /// (POSIX: closing any descriptor of a file drops them); the entry's
    /// open file goes when the caller drops the last reference.
    pub fn close(&mut self, fd: i32) -> Result<FdEntry, Errno> {
        let e = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.take())
            .ok_or(Errno::EBADF)?;
        closed(&e);
        Ok(e)
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
