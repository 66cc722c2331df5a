//! hostfs: a host directory as a file system (the directory root of
//! `myst exec-linux DIR ...`, configuration mounts and `mount -t hostfs`),
//! or one host file (`HostFs::single_file`).
//!
//! Inode numbers are the host's. The VFS resolves every symlink itself, so
//! the host paths this module keeps contain only real directories. Every
//! host operation is confined to the served directory: paths are resolved
//! by openat2 from a descriptor of that directory with RESOLVE_BENEATH and
//! RESOLVE_NO_SYMLINKS, and names are created, removed and renamed with the
//! *at() calls on descriptors of their directories. A path that a rename
//! made stale (a directory moved away, a symlink left in its place, by the
//! host or by another guest process) fails with ENOENT or ELOOP; it never
//! reaches outside the directory. A directory root has no integrity
//! protection: writes reach the host directly.

use crate::{
    Attr, DirEntry, Errno, FileSystem, FileType, FsResult, Ino, NewInode, SetAttr, StatFs, Timespec,
};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const MAX_OPEN: usize = 256;

/// How every path below the served directory is resolved.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Host-to-guest owner mappings (`--host-to-enc-uid-map 1000:0,...`): a
/// mapped host id is shown to the guest as its guest id, and a guest id
/// given to chown is stored as its host id; other ids pass unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    /// (host uid, guest uid) pairs.
    pub uids: Vec<(u32, u32)>,
    /// (host gid, guest gid) pairs.
    pub gids: Vec<(u32, u32)>,
}

impl IdMap {
    fn to_guest(pairs: &[(u32, u32)], id: u32) -> u32 {
        pairs.iter().find(|p| p.0 == id).map_or(id, |p| p.1)
    }

    fn to_host(pairs: &[(u32, u32)], id: u32) -> u32 {
        pairs.iter().find(|p| p.1 == id).map_or(id, |p| p.0)
    }

    /// Parses `HOST:GUEST[,HOST:GUEST...]`.
    pub fn parse_pairs(s: &str) -> Result<Vec<(u32, u32)>, String> {
        s.split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (h, g) = p
                    .split_once(':')
                    .ok_or_else(|| format!("{p:?}: expected HOST:GUEST (two numbers)"))?;
                let num = |x: &str| {
                    x.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("{p:?}: expected HOST:GUEST (two numbers)"))
                };
                Ok((num(h)?, num(g)?))
            })
            .collect()
    }
}

/// A host directory (or one file) served as a file system.
pub struct HostFs {
    /// Owner mappings.
    ids: IdMap,
    /// The root: the directory, or the single file.
    root: PathBuf,
    /// The directory every host path lies beneath (the root, or the single
    /// file's directory).
    base: PathBuf,
    /// O_PATH descriptor of `base`, the anchor of every resolution.
    base_fd: Arc<OwnedFd>,
    root_ino: Ino,
    root_dev: u64,
    paths: Mutex<HashMap<Ino, PathBuf>>,
    files: Mutex<HashMap<Ino, Arc<File>>>,
    wfiles: Mutex<HashMap<Ino, Arc<File>>>,
    /// O_PATH descriptors of directories: a lookup is one fstatat of one
    /// name instead of a walk of the whole host path.
    dirs: Mutex<HashMap<Ino, Arc<OwnedFd>>>,
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn rerr(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
    }
}

fn open_base(dir: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

impl HostFs {
    /// Serves the host directory `root`.
    pub fn new(root: &Path) -> io::Result<HostFs> {
        let md = fs::metadata(root)?;
        if !md.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        let root = root.canonicalize()?;
        HostFs::build(root.clone(), root)
    }

    /// Serves `path`: a directory as [`HostFs::new`], a regular file as
    /// [`HostFs::single_file`].
    pub fn open(path: &Path) -> io::Result<HostFs> {
        if fs::metadata(path)?.is_dir() {
            HostFs::new(path)
        } else {
            HostFs::single_file(path)
        }
    }

    /// Serves one host regular file as a file system whose root is that
    /// file (Mystikos's single-file hostfs mount): only the file itself is
    /// reachable, read and written in place.
    pub fn single_file(path: &Path) -> io::Result<HostFs> {
        let path = path.canonicalize()?;
        let md = fs::metadata(&path)?;
        if !md.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        HostFs::build(path, base)
    }

    fn build(root: PathBuf, base: PathBuf) -> io::Result<HostFs> {
        let base_fd = Arc::new(open_base(&base)?);
        let mut fs = HostFs {
            ids: IdMap::default(),
            root_ino: 0,
            root_dev: 0,
            root: root.clone(),
            base,
            base_fd,
            paths: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            wfiles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
        };
        let st = fs
            .lstat(&root)
            .map_err(|e| io::Error::from_raw_os_error(e.code))?;
        fs.root_dev = st.st_dev;
        let ino = fs.attr_of_stat(&st).ino;
        fs.root_ino = ino;
        lock(&fs.paths).insert(ino, root);
        Ok(fs)
    }

    /// The same file system with owner mappings.
    pub fn with_id_map(mut self, ids: IdMap) -> HostFs {
        self.ids = ids;
        self
    }

    /// `path` relative to the base directory ("." for the base itself).
    fn rel<'a>(&self, path: &'a Path) -> FsResult<&'a Path> {
        let r = path
            .strip_prefix(&self.base)
            .map_err(|_| Errno::EXDEV.with("a host path outside the served directory"))?;
        Ok(if r.as_os_str().is_empty() {
            Path::new(".")
        } else {
            r
        })
    }

    /// Opens `path` resolving beneath the base directory, no symlinks.
    fn open_beneath(&self, path: &Path, flags: OFlags) -> FsResult<OwnedFd> {
        let rel = self.rel(path)?;
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        loop {
            match rustix::fs::openat2(&*self.base_fd, rel, flags, Mode::empty(), BENEATH) {
                // A concurrent rename anywhere on the host can make the
                // kernel ask for a retry.
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(rerr),
            }
        }
    }

    /// The directory holding `path` (opened beneath the base) and its last name.
    fn parent_of(&self, path: &Path) -> FsResult<(OwnedFd, PathBuf)> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Errno::EINVAL.with("no parent"));
        };
        if path == self.base {
            return Err(Errno::EINVAL.with("the base has no parent here"));
        }
        let fd = self.open_beneath(dir, OFlags::PATH | OFlags::DIRECTORY)?;
        Ok((fd, PathBuf::from(name)))
    }

    /// lstat of `path`, confined.
    fn lstat(&self, path: &Path) -> FsResult<rustix::fs::Stat> {
        if path == self.base {
            return rustix::fs::fstat(&*self.base_fd).map_err(rerr);
        }
        let (dir, name) = self.parent_of(path)?;
        rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(rerr)
    }

    /// chmod of `path` (not a symlink), confined: through the magic link of
    /// an O_PATH descriptor, which names the inode itself.
    fn chmod(&self, path: &Path, perm: u32) -> FsResult<()> {
        let fd = self.open_beneath(path, OFlags::PATH)?;
        fs::set_permissions(
            format!("/proc/self/fd/{}", fd.as_raw_fd()),
            fs::Permissions::from_mode(perm & 0o7777),
        )
        .map_err(errno)
    }

    fn path(&self, ino: Ino) -> FsResult<PathBuf> {
        lock(&self.paths).get(&ino).cloned().ok_or(STALE)
    }

    fn child(&self, dir: Ino, name: &[u8]) -> FsResult<PathBuf> {
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return Err(Errno::EINVAL.with("bad name"));
        }
        Ok(self.path(dir)?.join(OsStr::from_bytes(name)))
    }

    fn record(&self, path: PathBuf) -> FsResult<Attr> {
        let a = self.attr_of_stat(&self.lstat(&path)?);
        lock(&self.paths).insert(a.ino, path);
        Ok(a)
    }

    /// An open host file for `ino`: read-only unless `write` (a writable
    /// handle on an executable would make the host's exec of it fail with
    /// ETXTBSY, so writable handles are opened only for writes).
    fn file(&self, ino: Ino, write: bool) -> FsResult<Arc<File>> {
        let cache = if write { &self.wfiles } else { &self.files };
        if let Some(f) = lock(cache).get(&ino) {
            return Ok(f.clone());
        }
        if !write {
            if let Some(f) = lock(&self.wfiles).get(&ino) {
                return Ok(f.clone());
            }
        }
        let path = self.path(ino)?;
        let fd = self.open_beneath(&path, if write { OFlags::RDWR } else { OFlags::RDONLY })?;
        let f = Arc::new(File::from(fd));
        let mut files = lock(cache);
        if files.len() >= MAX_OPEN {
            files.clear();
        }
        files.insert(ino, f.clone());
        Ok(f)
    }

    fn dir_fd(&self, ino: Ino) -> FsResult<Arc<OwnedFd>> {
        if let Some(f) = lock(&self.dirs).get(&ino) {
            return Ok(f.clone());
        }
        let path = self.path(ino)?;
        let fd = Arc::new(self.open_beneath(&path, OFlags::PATH | OFlags::DIRECTORY)?);
        let mut dirs = lock(&self.dirs);
        if dirs.len() >= MAX_OPEN {
            dirs.clear();
        }
        dirs.insert(ino, fd.clone());
        Ok(fd)
    }

    fn ino_of_stat(&self, st: &rustix::fs::Stat) -> Ino {
        // Files of other host file systems below the root get their device
        // mixed in, so their numbers do not collide with the root's.
        if st.st_dev == self.root_dev {
            st.st_ino
        } else {
            st.st_ino ^ st.st_dev.rotate_left(40)
        }
    }

    fn attr_of_stat(&self, st: &rustix::fs::Stat) -> Attr {
        let mode = st.st_mode;
        Attr {
            ino: self.ino_of_stat(st),
            kind: FileType::from_mode(mode).unwrap_or(FileType::Regular),
            perm: mode & 0o7777,
            nlink: st.st_nlink as u32,
            uid: IdMap::to_guest(&self.ids.uids, st.st_uid),
            gid: IdMap::to_guest(&self.ids.gids, st.st_gid),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            blksize: st.st_blksize as u32,
            rdev: st.st_rdev,
            atime: ts(st.st_atime, st.st_atime_nsec as i64),
            mtime: ts(st.st_mtime, st.st_mtime_nsec as i64),
            ctime: ts(st.st_ctime, st.st_ctime_nsec as i64),
        }
    }

    fn forget_file(&self, ino: Ino) {
        lock(&self.files).remove(&ino);
        lock(&self.wfiles).remove(&ino);
    }
}

/// An inode the host file system no longer knows.
const STALE: Errno = Errno::ESTALE.with("stale host inode");

impl FileSystem for HostFs {
    fn root(&self) -> Ino {
        self.root_ino
    }

    fn lookup(&self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        self.lookup_attr(dir, name).map(|a| a.ino)
    }

    fn lookup_attr(&self, dir: Ino, name: &[u8]) -> FsResult<Attr> {
        match name {
            b"." => self.getattr(dir),
            b".." => {
                let p = self.path(dir)?;
                if p == self.root {
                    return self.getattr(dir);
                }
                self.record(p.parent().map(Path::to_path_buf).unwrap_or(p))
            }
            _ => {
                if name.len() > 255 {
                    return Err(Errno::ENAMETOOLONG);
                }
                let path = self.child(dir, name)?;
                let fd = self.dir_fd(dir)?;
                let st =
                    rustix::fs::statat(&*fd, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(rerr)?;
                let a = self.attr_of_stat(&st);
                let mut paths = lock(&self.paths);
                match paths.get(&a.ino) {
                    Some(p) if *p == path => {}
                    _ => {
                        paths.insert(a.ino, path);
                    }
                }
                Ok(a)
            }
        }
    }

    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        Ok(self.attr_of_stat(&self.lstat(&self.path(ino)?)?))
    }

    fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        let path = self.path(ino)?;
        let st = self.lstat(&path)?;
        let is_link = FileType::from_mode(st.st_mode) == Some(FileType::Symlink);
        if let Some(perm) = set.perm {
            if !is_link {
                self.chmod(&path, perm)?;
            }
        }
        if set.uid.is_some() || set.gid.is_some() {
            let (dir, name) = self.parent_of(&path)?;
            rustix::fs::chownat(
                &dir,
                &name,
                set.uid
                    .map(|u| rustix::fs::Uid::from_raw(IdMap::to_host(&self.ids.uids, u))),
                set.gid
                    .map(|g| rustix::fs::Gid::from_raw(IdMap::to_host(&self.ids.gids, g))),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(rerr)?;
        }
        if let Some(size) = set.size {
            self.file(ino, true)?.set_len(size).map_err(errno)?;
        }
        if (set.atime.is_some() || set.mtime.is_some()) && !is_link {
            let omit = rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            };
            let conv = |t: Option<Timespec>| {
                t.map_or(omit, |t| rustix::fs::Timespec {
                    tv_sec: t.sec,
                    tv_nsec: t.nsec as _,
                })
            };
            let times = rustix::fs::Timestamps {
                last_access: conv(set.atime),
                last_modification: conv(set.mtime),
            };
            let (dir, name) = self.parent_of(&path)?;
            rustix::fs::utimensat(&dir, &name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(rerr)?;
        }
        self.getattr(ino)
    }

    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        self.file(ino, false)?.read_at(buf, offset).map_err(errno)
    }

    fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<usize> {
        self.file(ino, true)?
            .write_all_at(data, offset)
            .map_err(errno)?;
        Ok(data.len())
    }

    /// O_APPEND through the host's own O_APPEND: other processes (guest or
    /// not) appending to the same host file cannot interleave with it. A
    /// descriptor of its own per call: its offset after the write tells
    /// where this write landed, whatever other descriptors do.
    fn append(&self, ino: Ino, data: &[u8]) -> FsResult<(u64, usize)> {
        use std::io::{Seek, Write};
        let fd = self.open_beneath(&self.path(ino)?, OFlags::WRONLY | OFlags::APPEND)?;
        let mut f = File::from(fd);
        let n = f.write(data).map_err(errno)?;
        let end = f.stream_position().map_err(errno)?;
        Ok((end.saturating_sub(n as u64), n))
    }

    fn readdir(&self, dir: Ino) -> FsResult<Vec<DirEntry>> {
        let path = self.path(dir)?;
        let parent = self.lookup_attr(dir, b"..")?;
        let mut out = vec![
            DirEntry {
                name: b".".to_vec(),
                ino: dir,
                kind: FileType::Directory,
            },
            DirEntry {
                name: b"..".to_vec(),
                ino: parent.ino,
                kind: FileType::Directory,
            },
        ];
        let fd = self.open_beneath(&path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let mut entries = rustix::fs::Dir::read_from(&fd).map_err(rerr)?;
        for e in &mut entries {
            let e = e.map_err(rerr)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(st) = rustix::fs::statat(&fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let ino = self.ino_of_stat(&st);
            lock(&self.paths)
                .entry(ino)
                .or_insert_with(|| path.join(OsStr::from_bytes(name)));
            out.push(DirEntry {
                name: name.to_vec(),
                ino,
                kind: FileType::from_mode(st.st_mode).unwrap_or(FileType::Regular),
            });
        }
        Ok(out)
    }

    fn create(&self, dir: Ino, name: &[u8], new: &NewInode) -> FsResult<Ino> {
        let path = self.child(dir, name)?;
        let dfd = self.dir_fd(dir)?;
        let n = OsStr::from_bytes(name);
        let mode = Mode::from_bits_truncate(new.perm & 0o7777);
        match new.kind {
            FileType::Regular => {
                let fd = rustix::fs::openat(
                    &*dfd,
                    n,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    mode,
                )
                .map_err(rerr)?;
                // The host umask may have cleared bits the guest asked for.
                rustix::fs::fchmod(&fd, mode).map_err(rerr)?;
            }
            FileType::Directory => {
                rustix::fs::mkdirat(&*dfd, n, mode).map_err(rerr)?;
                self.chmod(&path, new.perm)?;
            }
            _ => return Err(Errno::EPERM.with("hostfs creates only files and directories")),
        }
        Ok(self.record(path)?.ino)
    }

    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], _new: &NewInode) -> FsResult<Ino> {
        let path = self.child(dir, name)?;
        let dfd = self.dir_fd(dir)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), &*dfd, OsStr::from_bytes(name))
            .map_err(rerr)?;
        Ok(self.record(path)?.ino)
    }

    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let (dir, name) = self.parent_of(&self.path(ino)?)?;
        let t = rustix::fs::readlinkat(&dir, &name, Vec::new()).map_err(rerr)?;
        Ok(t.into_bytes())
    }

    fn link(&self, ino: Ino, dir: Ino, name: &[u8]) -> FsResult<()> {
        let (sdir, sname) = self.parent_of(&self.path(ino)?)?;
        let dfd = self.dir_fd(dir)?;
        self.child(dir, name)?;
        rustix::fs::linkat(
            &sdir,
            &sname,
            &*dfd,
            OsStr::from_bytes(name),
            AtFlags::empty(),
        )
        .map_err(rerr)
    }

    fn unlink(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.child(dir, name)?;
        let dfd = self.dir_fd(dir)?;
        let n = OsStr::from_bytes(name);
        let st = rustix::fs::statat(&*dfd, n, AtFlags::SYMLINK_NOFOLLOW).map_err(rerr)?;
        if FileType::from_mode(st.st_mode) == Some(FileType::Directory) {
            return Err(Errno::EISDIR);
        }
        rustix::fs::unlinkat(&*dfd, n, AtFlags::empty()).map_err(rerr)?;
        let ino = self.ino_of_stat(&st);
        if st.st_nlink <= 1 {
            lock(&self.paths).remove(&ino);
        }
        self.forget_file(ino);
        Ok(())
    }

    fn rmdir(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.child(dir, name)?;
        let dfd = self.dir_fd(dir)?;
        let n = OsStr::from_bytes(name);
        let st = rustix::fs::statat(&*dfd, n, AtFlags::SYMLINK_NOFOLLOW).map_err(rerr)?;
        if FileType::from_mode(st.st_mode) != Some(FileType::Directory) {
            return Err(Errno::ENOTDIR);
        }
        rustix::fs::unlinkat(&*dfd, n, AtFlags::REMOVEDIR).map_err(rerr)?;
        let ino = self.ino_of_stat(&st);
        lock(&self.paths).remove(&ino);
        lock(&self.dirs).remove(&ino);
        Ok(())
    }

    fn rename(&self, old_dir: Ino, old: &[u8], new_dir: Ino, new: &[u8]) -> FsResult<()> {
        let from = self.child(old_dir, old)?;
        let to = self.child(new_dir, new)?;
        let ofd = self.dir_fd(old_dir)?;
        let nfd = self.dir_fd(new_dir)?;
        let (o, n) = (OsStr::from_bytes(old), OsStr::from_bytes(new));
        if let Ok(st) = rustix::fs::statat(&*nfd, n, AtFlags::SYMLINK_NOFOLLOW) {
            self.forget_file(self.ino_of_stat(&st));
        }
        rustix::fs::renameat(&*ofd, o, &*nfd, n).map_err(rerr)?;
        // O_PATH descriptors follow the directory itself; only paths move.
        // Recorded paths at or below the old name move with it.
        let mut paths = lock(&self.paths);
        for p in paths.values_mut() {
            if let Ok(rest) = p.strip_prefix(&from) {
                *p = if rest.as_os_str().is_empty() {
                    to.clone()
                } else {
                    to.join(rest)
                };
            }
        }
        Ok(())
    }

    fn statfs(&self) -> FsResult<StatFs> {
        Ok(StatFs {
            fs_type: 0x6969,
            bsize: 4096,
            blocks: 1 << 24,
            bfree: 1 << 23,
            bavail: 1 << 23,
            files: 1 << 20,
            ffree: 1 << 19,
            namelen: 255,
        })
    }

    fn fsync(&self, ino: Ino) -> FsResult<()> {
        self.file(ino, false)?.sync_all().map_err(errno)
    }

    fn host_file(&self, ino: Ino, write: bool) -> Option<FsResult<Arc<File>>> {
        Some(self.file(ino, write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_file(perm: u32) -> NewInode {
        NewInode {
            kind: FileType::Regular,
            perm,
            uid: 0,
            gid: 0,
            rdev: 0,
            time: Timespec::default(),
        }
    }

    #[test]
    fn create_write_read_rename() {
        let dir = std::env::temp_dir().join(format!("myst-hostfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        let h = HostFs::new(&dir).unwrap();
        let root = h.root();
        let sub = h.lookup(root, b"sub").unwrap();
        let f = h.create(sub, b"a", &new_file(0o640)).unwrap();
        assert_eq!(h.write(f, 3, b"xyz").unwrap(), 3);
        let mut buf = [9u8; 8];
        assert_eq!(h.read(f, 0, &mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"\0\0\0xyz");
        assert_eq!(h.getattr(f).unwrap().perm, 0o640);
        h.rename(root, b"sub", root, b"moved").unwrap();
        assert_eq!(h.getattr(f).unwrap().size, 6);
        assert_eq!(fs::read(dir.join("moved/a")).unwrap(), b"\0\0\0xyz");
        assert_eq!(h.lookup(root, b"nope").unwrap_err(), Errno::ENOENT);
        let names: Vec<_> = h
            .readdir(root)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert!(names.contains(&b"moved".to_vec()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
