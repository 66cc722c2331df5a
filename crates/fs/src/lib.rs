//! File systems behind one trait: ext2 (read-write), hostfs, ramfs.
//!
//! The trait is inode-number based, like the on-disk formats and like FUSE's
//! low-level API: path walking, symlink following, mount crossing and open
//! file state belong to the kernel's VFS, not to file systems. Every method
//! takes `&self`; implementations use interior locking so one mounted file
//! system serves all guest threads.
#![forbid(unsafe_code)]

pub mod ext2;
pub mod hostfs;
pub mod ramfs;

/// Inode number inside one file system.
pub type Ino = u64;

pub use myst_platform::errno::Errno;

/// Result of file-system operations.
pub type FsResult<T> = Result<T, Errno>;

pub use myst_formats::mode::FileType;

/// A point in time (seconds and nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: u32,
}

/// Attributes of an inode (what stat reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File type.
    pub kind: FileType,
    /// Permission bits (`0o7777`), without the type bits.
    pub perm: u32,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte sectors.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Device number for device inodes (Linux `makedev` encoding).
    pub rdev: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
}

impl Attr {
    /// Full `st_mode`: type bits plus permissions.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | (self.perm & 0o7777)
    }
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Name bytes (no `/`, no NUL); includes `.` and `..`.
    pub name: Vec<u8>,
    /// Inode number.
    pub ino: Ino,
    /// Type.
    pub kind: FileType,
}

/// Attribute changes (chmod, chown, truncate, utimes); `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits.
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend with a hole).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<Timespec>,
    /// New modification time.
    pub mtime: Option<Timespec>,
}

/// What statfs reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatFs {
    /// `f_type` magic (0xEF53 for ext2, 0x858458f6 for ramfs, ...).
    pub fs_type: u64,
    /// Block size.
    pub bsize: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Longest name.
    pub namelen: u64,
}

/// Who creates a new inode, and with what initial attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewInode {
    /// Type.
    pub kind: FileType,
    /// Permission bits (umask already applied by the caller).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for device inodes.
    pub rdev: u64,
    /// Creation time (used for atime, mtime and ctime).
    pub time: Timespec,
}

/// A mounted file system. Names are single components (never `.`/`..` for
/// create-like calls; `lookup` of `..` must work for directories). Errors are
/// Linux errnos: ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ENOSPC, EROFS,
/// EIO (corruption or a failed integrity check), ENAMETOOLONG, ...
pub trait FileSystem: Send + Sync {
    /// Root directory inode.
    fn root(&self) -> Ino;
    /// Finds `name` in directory `dir`.
    fn lookup(&self, dir: Ino, name: &[u8]) -> FsResult<Ino>;
    /// Finds `name` in `dir` and returns its attributes (one call for the
    /// VFS's path walk; file systems may do it faster than lookup+getattr).
    fn lookup_attr(&self, dir: Ino, name: &[u8]) -> FsResult<Attr> {
        let ino = self.lookup(dir, name)?;
        self.getattr(ino)
    }
    /// Attributes of `ino`.
    fn getattr(&self, ino: Ino) -> FsResult<Attr>;
    /// Changes attributes; returns the new ones.
    fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr>;
    /// Reads at `offset`; returns bytes read (0 at or past end of file).
    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize>;
    /// Writes at `offset`, extending the file; returns bytes written.
    fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<usize>;
    /// Writes at the end of the file (O_APPEND); returns the offset written
    /// at and the bytes written. File systems shared between processes
    /// override it to read the size and write under one lock.
    fn append(&self, ino: Ino, data: &[u8]) -> FsResult<(u64, usize)> {
        let start = self.getattr(ino)?.size;
        Ok((start, self.write(ino, start, data)?))
    }
    /// All entries of a directory, `.` and `..` included.
    fn readdir(&self, dir: Ino) -> FsResult<Vec<DirEntry>>;
    /// Creates a regular file, directory, device, FIFO or socket `name` in `dir`.
    fn create(&self, dir: Ino, name: &[u8], new: &NewInode) -> FsResult<Ino>;
    /// Creates a symlink `name` in `dir` pointing at `target`.
    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], new: &NewInode) -> FsResult<Ino>;
    /// Reads a symlink's target.
    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>>;
    /// Adds a hard link to `ino` as `name` in `dir`.
    fn link(&self, ino: Ino, dir: Ino, name: &[u8]) -> FsResult<()>;
    /// Removes a non-directory entry.
    fn unlink(&self, dir: Ino, name: &[u8]) -> FsResult<()>;
    /// Removes an empty directory.
    fn rmdir(&self, dir: Ino, name: &[u8]) -> FsResult<()>;
    /// Renames, replacing the target if allowed (POSIX rename semantics).
    fn rename(&self, old_dir: Ino, old: &[u8], new_dir: Ino, new: &[u8]) -> FsResult<()>;
    /// File-system statistics.
    fn statfs(&self) -> FsResult<StatFs>;
    /// Flushes what can be flushed (a no-op for memory-backed file systems).
    fn fsync(&self, ino: Ino) -> FsResult<()>;
    /// The VFS keeps `ino` in use (an open file, a cwd): its data must
    /// outlive its last link until the matching [`FileSystem::release`].
    fn retain(&self, _ino: Ino) {}
    /// Ends one [`FileSystem::retain`]; an unlinked inode nobody uses any
    /// more is freed.
    fn release(&self, _ino: Ino) {}
    /// True when one object serves every process forked after the mount
    /// (state in shared memory), so retain/release counts are for all of
    /// them: a hold taken in one process may be released in another. False
    /// for per-process file systems (a fork child has its own copy and
    /// releases its own holds).
    fn shared_holds(&self) -> bool {
        false
    }
    /// A number that, with the inode number, names this file's contents for
    /// as long as the file exists: an inode number that is freed and handed
    /// to a new file gets a different generation (ext2's `i_generation`).
    /// The kernel's page store keys file pages by (file system, inode,
    /// generation), so pages of a deleted file never show up in its successor.
    fn generation(&self, _ino: Ino) -> FsResult<u64> {
        Ok(0)
    }
    /// A host file holding `ino`'s bytes, when the file system is a view of
    /// host files (hostfs): the kernel maps it directly for mmap, and the host
    /// keeps every mapping and read/write coherent. `write`: opened writable.
    fn host_file(
        &self,
        _ino: Ino,
        _write: bool,
    ) -> Option<FsResult<std::sync::Arc<std::fs::File>>> {
        None
    }
    /// The concrete type, for layers that wrap a file system and need to
    /// find their wrapper again (the kernel's page store).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// A generation for a newly created inode: differs between processes and
/// between calls (pid, time and a counter mixed), never 0.
pub fn fresh_generation() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = u64::from(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut x = t ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x as u32).max(1)
}
