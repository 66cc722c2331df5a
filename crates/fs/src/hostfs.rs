//! hostfs: a host directory as a file system (the directory root of
//! `myst exec-linux DIR ...`, and `mount -t hostfs`).
//!
//! Inode numbers are the host's. The VFS resolves every symlink itself, so
//! the host paths this module builds contain only real directories; opens use
//! O_NOFOLLOW. A directory root has no integrity protection: writes reach the
//! host directly.

use crate::{
    Attr, DirEntry, Errno, FileSystem, FileType, FsResult, Ino, NewInode, SetAttr, StatFs, Timespec,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const O_NOFOLLOW: i32 = 0o400000;
const MAX_OPEN: usize = 256;

/// A host directory served as a file system.
pub struct HostFs {
    root: PathBuf,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
    }
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
        let fs = HostFs {
            root_ino: 0,
            root_dev: md.dev(),
            root: root.clone(),
            paths: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            wfiles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
        };
        let ino = fs.ino_of(&md);
        lock(&fs.paths).insert(ino, root);
        Ok(HostFs {
            root_ino: ino,
            ..fs
        })
    }

    fn ino_of(&self, md: &fs::Metadata) -> Ino {
        // Files of other host file systems below the root get their device
        // mixed in, so their numbers do not collide with the root's.
        if md.dev() == self.root_dev {
            md.ino()
        } else {
            md.ino() ^ md.dev().rotate_left(40)
        }
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

    fn attr(&self, md: &fs::Metadata) -> Attr {
        Attr {
            ino: self.ino_of(md),
            kind: FileType::from_mode(md.mode()).unwrap_or(FileType::Regular),
            perm: md.mode() & 0o7777,
            nlink: md.nlink() as u32,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            blocks: md.blocks(),
            blksize: md.blksize() as u32,
            rdev: md.rdev(),
            atime: ts(md.atime(), md.atime_nsec()),
            mtime: ts(md.mtime(), md.mtime_nsec()),
            ctime: ts(md.ctime(), md.ctime_nsec()),
        }
    }

    fn record(&self, path: PathBuf) -> FsResult<Attr> {
        let md = fs::symlink_metadata(&path).map_err(errno)?;
        let a = self.attr(&md);
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
        let f = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(O_NOFOLLOW)
            .open(&path)
            .map_err(errno)?;
        let f = Arc::new(f);
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
        let fd = rustix::fs::open(
            &path,
            rustix::fs::OFlags::PATH
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Errno::from_raw(e.raw_os_error()))?;
        let fd = Arc::new(fd);
        let mut dirs = lock(&self.dirs);
        if dirs.len() >= MAX_OPEN {
            dirs.clear();
        }
        dirs.insert(ino, fd.clone());
        Ok(fd)
    }

    fn attr_of_stat(&self, st: &rustix::fs::Stat) -> Attr {
        let dev = st.st_dev;
        let ino = if dev == self.root_dev {
            st.st_ino
        } else {
            st.st_ino ^ dev.rotate_left(40)
        };
        let mode = st.st_mode;
        Attr {
            ino,
            kind: FileType::from_mode(mode).unwrap_or(FileType::Regular),
            perm: mode & 0o7777,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
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
                let st = rustix::fs::statat(
                    &*fd,
                    OsStr::from_bytes(name),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| Errno::from_raw(e.raw_os_error()))?;
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
        let md = fs::symlink_metadata(self.path(ino)?).map_err(errno)?;
        Ok(self.attr(&md))
    }

    fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        let path = self.path(ino)?;
        let md = fs::symlink_metadata(&path).map_err(errno)?;
        let is_link = md.file_type().is_symlink();
        if let Some(perm) = set.perm {
            if !is_link {
                fs::set_permissions(&path, fs::Permissions::from_mode(perm & 0o7777))
                    .map_err(errno)?;
            }
        }
        if set.uid.is_some() || set.gid.is_some() {
            std::os::unix::fs::lchown(&path, set.uid, set.gid).map_err(errno)?;
        }
        if let Some(size) = set.size {
            self.file(ino, true)?.set_len(size).map_err(errno)?;
        }
        if (set.atime.is_some() || set.mtime.is_some()) && !is_link {
            let f = File::open(&path).map_err(errno)?;
            let to_sys = |t: Timespec| {
                if t.sec >= 0 {
                    std::time::UNIX_EPOCH + std::time::Duration::new(t.sec as u64, t.nsec)
                } else {
                    std::time::UNIX_EPOCH - std::time::Duration::new(t.sec.unsigned_abs(), 0)
                }
            };
            let mut times = fs::FileTimes::new();
            if let Some(a) = set.atime {
                times = times.set_accessed(to_sys(a));
            }
            if let Some(m) = set.mtime {
                times = times.set_modified(to_sys(m));
            }
            f.set_times(times).map_err(errno)?;
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
        for e in fs::read_dir(&path).map_err(errno)? {
            let e = e.map_err(errno)?;
            let md = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            let ino = self.ino_of(&md);
            lock(&self.paths).entry(ino).or_insert_with(|| e.path());
            out.push(DirEntry {
                name: e.file_name().as_bytes().to_vec(),
                ino,
                kind: FileType::from_mode(md.mode()).unwrap_or(FileType::Regular),
            });
        }
        Ok(out)
    }

    fn create(&self, dir: Ino, name: &[u8], new: &NewInode) -> FsResult<Ino> {
        let path = self.child(dir, name)?;
        match new.kind {
            FileType::Regular => {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(new.perm)
                    .open(&path)
                    .map_err(errno)?;
            }
            FileType::Directory => {
                fs::DirBuilder::new()
                    .mode(new.perm)
                    .create(&path)
                    .map_err(errno)?;
            }
            _ => return Err(Errno::EPERM.with("hostfs creates only files and directories")),
        }
        // The host umask may have cleared bits the guest asked for.
        fs::set_permissions(&path, fs::Permissions::from_mode(new.perm & 0o7777)).map_err(errno)?;
        Ok(self.record(path)?.ino)
    }

    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], _new: &NewInode) -> FsResult<Ino> {
        let path = self.child(dir, name)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).map_err(errno)?;
        Ok(self.record(path)?.ino)
    }

    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let t = fs::read_link(self.path(ino)?).map_err(errno)?;
        Ok(t.into_os_string().as_bytes().to_vec())
    }

    fn link(&self, ino: Ino, dir: Ino, name: &[u8]) -> FsResult<()> {
        let src = self.path(ino)?;
        let dst = self.child(dir, name)?;
        fs::hard_link(src, dst).map_err(errno)
    }

    fn unlink(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        let path = self.child(dir, name)?;
        let md = fs::symlink_metadata(&path).map_err(errno)?;
        if md.is_dir() {
            return Err(Errno::EISDIR);
        }
        fs::remove_file(&path).map_err(errno)?;
        let ino = self.ino_of(&md);
        if md.nlink() <= 1 {
            lock(&self.paths).remove(&ino);
        }
        self.forget_file(ino);
        Ok(())
    }

    fn rmdir(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        let path = self.child(dir, name)?;
        let md = fs::symlink_metadata(&path).map_err(errno)?;
        if !md.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        fs::remove_dir(&path).map_err(errno)?;
        lock(&self.paths).remove(&self.ino_of(&md));
        lock(&self.dirs).remove(&self.ino_of(&md));
        Ok(())
    }

    fn rename(&self, old_dir: Ino, old: &[u8], new_dir: Ino, new: &[u8]) -> FsResult<()> {
        let from = self.child(old_dir, old)?;
        let to = self.child(new_dir, new)?;
        if let Ok(md) = fs::symlink_metadata(&to) {
            self.forget_file(self.ino_of(&md));
        }
        fs::rename(&from, &to).map_err(errno)?;
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
