//! Syscalls that take paths: open/openat/creat, stat family, access, cwd,
//! mkdir, rmdir, unlink, rename, link, symlink, readlink, chmod, chown,
//! utimensat, truncate, statfs, umask.

use super::{copy_in, copy_out, file_of, read_path, SysResult};
use crate::devfs;
use crate::file::{lock, FileKind, OpenFile, O_ACCMODE, O_CLOEXEC, O_PATH, O_RDWR, O_WRONLY};
use crate::stat;
use crate::vfs::{Chain, Resolved};
use crate::Kernel;
use myst_fs::{Attr, Errno, FileType, NewInode, SetAttr, Timespec};

const AT_FDCWD: i32 = -100;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_REMOVEDIR: u64 = 0x200;
const AT_SYMLINK_FOLLOW: u64 = 0x400;
const AT_EMPTY_PATH: u64 = 0x1000;
const O_CREAT: u32 = 0o100;
const O_EXCL: u32 = 0o200;
const O_TRUNC: u32 = 0o1000;
const O_DIRECTORY: u32 = 0o200000;
const O_NOFOLLOW: u32 = 0o400000;
const O_TMPFILE: u32 = 0o20000000;

/// Now, as a file-system timestamp.
pub fn now() -> Timespec {
    let (s, ns) = myst_platform::host::clock_gettime(0).unwrap_or((0, 0));
    Timespec {
        sec: s,
        nsec: ns as u32,
    }
}

fn ids() -> (u32, u32) {
    (
        myst_platform::host::int_syscall(107, [0; 6]) as u32,
        myst_platform::host::int_syscall(108, [0; 6]) as u32,
    )
}

/// The directory a *at call starts from.
fn start(k: &Kernel, dirfd: u64) -> Result<Chain, Errno> {
    if dirfd as i32 == AT_FDCWD {
        return Ok(lock(&k.fs_ctx).cwd.clone());
    }
    let f = file_of(k, dirfd)?;
    match &f.kind {
        FileKind::Node {
            chain,
            kind: FileType::Directory,
        } => Ok(chain.clone()),
        _ => Err(Errno::ENOTDIR),
    }
}

fn resolve(k: &Kernel, dirfd: u64, path: &[u8], follow: bool) -> Result<Resolved, Errno> {
    let s = if path.starts_with(b"/") {
        k.root.clone()
    } else {
        start(k, dirfd)?
    };
    k.vfs.resolve(&k.root, &s, path, follow)
}

fn resolve_node(k: &Kernel, dirfd: u64, path: &[u8], follow: bool) -> Result<(Chain, Attr), Errno> {
    match resolve(k, dirfd, path, follow)? {
        Resolved::Node(c, a) => Ok((c, a)),
        Resolved::Fd(fd) => {
            let f = file_of(k, fd as u64)?;
            match &f.kind {
                FileKind::Node { chain, .. } => Ok((chain.clone(), chain.loc().attr()?)),
                FileKind::Host { .. } => Err(Errno::EOPNOTSUPP.with("host descriptor")),
            }
        }
    }
}

fn parent(k: &Kernel, dirfd: u64, path: &[u8]) -> Result<(Chain, Option<Vec<u8>>), Errno> {
    let s = if path.starts_with(b"/") {
        k.root.clone()
    } else {
        start(k, dirfd)?
    };
    k.vfs.resolve_parent(&k.root, &s, path)
}

fn writable_mount(c: &Chain) -> Result<(), Errno> {
    if c.loc().mnt.read_only {
        Err(Errno::EROFS)
    } else {
        Ok(())
    }
}

/// open/openat/creat.
pub fn openat(k: &Kernel, dirfd: u64, pathp: u64, flags: u64, mode: u64) -> SysResult {
    let path = read_path(pathp)?;
    let flags = flags as u32;
    if flags & O_TMPFILE == O_TMPFILE {
        return Err(Errno::EOPNOTSUPP);
    }
    let wants_write = matches!(flags & O_ACCMODE, O_WRONLY | O_RDWR) || flags & O_TRUNC != 0;
    let (chain, attr) = if flags & O_CREAT != 0 {
        let (dir, name) = parent(k, dirfd, &path)?;
        let Some(name) = name else {
            return Err(Errno::EISDIR);
        };
        match k.vfs.step(dir.loc(), &name) {
            Ok((loc, a)) => {
                if flags & O_EXCL != 0 {
                    return Err(Errno::EEXIST);
                }
                if a.kind == FileType::Symlink {
                    if flags & O_NOFOLLOW != 0 {
                        return Err(Errno::ELOOP);
                    }
                    resolve_node(k, dirfd, &path, true)?
                } else {
                    (dir.child(&name, loc), a)
                }
            }
            Err(e) if e.code == Errno::ENOENT.code => {
                writable_mount(&dir)?;
                let umask = lock(&k.fs_ctx).umask;
                let (uid, gid) = ids();
                let new = NewInode {
                    kind: FileType::Regular,
                    perm: mode as u32 & 0o7777 & !umask,
                    uid,
                    gid,
                    rdev: 0,
                    time: now(),
                };
                let dl = dir.loc().clone();
                match dl.mnt.fs.create(dl.ino, &name, &new) {
                    Ok(ino) => {
                        let loc = crate::vfs::Loc {
                            mnt: dl.mnt.clone(),
                            ino,
                        };
                        let a = loc.attr()?;
                        (dir.child(&name, loc), a)
                    }
                    // Another process (sharing this file system) created it
                    // between the lookup and the create: without O_EXCL,
                    // open what is there, as Linux does.
                    Err(e) if e.code == Errno::EEXIST.code && flags & O_EXCL == 0 => {
                        let (loc, a) = k.vfs.step(dir.loc(), &name)?;
                        if a.kind == FileType::Symlink {
                            if flags & O_NOFOLLOW != 0 {
                                return Err(Errno::ELOOP);
                            }
                            resolve_node(k, dirfd, &path, true)?
                        } else {
                            (dir.child(&name, loc), a)
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    } else {
        match resolve(k, dirfd, &path, flags & O_NOFOLLOW == 0)? {
            Resolved::Node(c, a) => (c, a),
            Resolved::Fd(fd) => {
                let f = file_of(k, fd as u64)?;
                return Ok(lock(&k.fds).alloc(f, flags & O_CLOEXEC != 0, 0)? as i64);
            }
        }
    };
    if flags & O_PATH == 0 {
        if attr.kind == FileType::Symlink {
            return Err(Errno::ELOOP);
        }
        if flags & O_DIRECTORY != 0 && attr.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        if attr.kind == FileType::Directory && wants_write {
            return Err(Errno::EISDIR);
        }
        if wants_write {
            writable_mount(&chain)?;
        }
    } else if flags & O_DIRECTORY != 0 && attr.kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    let loc = chain.loc().clone();
    if flags & O_TRUNC != 0
        && attr.kind == FileType::Regular
        && flags & O_ACCMODE != 0
        && flags & O_PATH == 0
    {
        loc.mnt.fs.setattr(
            loc.ino,
            &SetAttr {
                size: Some(0),
                ..Default::default()
            },
        )?;
    }
    let path_bytes = chain.path();
    let file = if loc.mnt.fstype == "devtmpfs" && loc.ino == devfs::TTY && flags & O_PATH == 0 {
        let tty = myst_platform::hostio::open_tty().map_err(|e| e.with("/dev/tty"))?;
        use std::os::fd::AsRawFd;
        let fd = tty.as_raw_fd();
        OpenFile::new(
            FileKind::Host {
                fd,
                _owner: Some(tty),
            },
            flags,
            path_bytes,
        )
    } else {
        OpenFile::open_node(
            FileKind::Node {
                chain,
                kind: attr.kind,
            },
            flags,
            path_bytes,
        )?
    };
    Ok(lock(&k.fds).alloc(file, flags & O_CLOEXEC != 0, 0)? as i64)
}

fn stat_target(
    k: &Kernel,
    dirfd: u64,
    pathp: u64,
    flags: u64,
) -> Result<Result<(Attr, u64), [u8; 144]>, Errno> {
    let path = if pathp == 0 && flags & AT_EMPTY_PATH != 0 {
        Vec::new()
    } else {
        read_path(pathp)?
    };
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd as i32 == AT_FDCWD {
            let c = lock(&k.fs_ctx).cwd.clone();
            return Ok(Ok((c.loc().attr()?, stat::mount_dev(c.loc().mnt.id))));
        }
        let f = file_of(k, dirfd)?;
        return match &f.kind {
            FileKind::Node { chain, .. } => Ok(Ok((
                chain.loc().attr()?,
                stat::mount_dev(chain.loc().mnt.id),
            ))),
            FileKind::Host { .. } => Ok(Err(super::fd::stat_file(&f)?)),
        };
    }
    match resolve(k, dirfd, &path, flags & AT_SYMLINK_NOFOLLOW == 0)? {
        Resolved::Node(c, a) => Ok(Ok((a, stat::mount_dev(c.loc().mnt.id)))),
        Resolved::Fd(fd) => {
            let f = file_of(k, fd as u64)?;
            match &f.kind {
                FileKind::Node { chain, .. } => Ok(Ok((
                    chain.loc().attr()?,
                    stat::mount_dev(chain.loc().mnt.id),
                ))),
                FileKind::Host { .. } => Ok(Err(super::fd::stat_file(&f)?)),
            }
        }
    }
}

/// stat/lstat/newfstatat.
pub fn fstatat(k: &Kernel, dirfd: u64, pathp: u64, buf: u64, flags: u64) -> SysResult {
    let st = match stat_target(k, dirfd, pathp, flags)? {
        Ok((a, dev)) => stat::stat(&a, dev),
        Err(raw) => raw,
    };
    copy_out(buf, &st)?;
    Ok(0)
}

/// statx(2).
pub fn statx(k: &Kernel, dirfd: u64, pathp: u64, flags: u64, _mask: u64, buf: u64) -> SysResult {
    let sx = match stat_target(k, dirfd, pathp, flags)? {
        Ok((a, dev)) => stat::statx(&a, dev),
        Err(raw) => stat::statx_from_stat(&raw),
    };
    copy_out(buf, &sx)?;
    Ok(0)
}

/// access/faccessat/faccessat2.
pub fn faccessat(k: &Kernel, dirfd: u64, pathp: u64, mode: u64, flags: u64) -> SysResult {
    let path = read_path(pathp)?;
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let (chain, attr) = if path.is_empty() && flags & AT_EMPTY_PATH != 0 {
        let c = start(k, dirfd)?;
        let a = c.loc().attr()?;
        (c, a)
    } else {
        match resolve(k, dirfd, &path, flags & AT_SYMLINK_NOFOLLOW == 0)? {
            Resolved::Node(c, a) => (c, a),
            Resolved::Fd(_) => return Ok(0),
        }
    };
    if mode & 2 != 0 && chain.loc().mnt.read_only {
        return Err(Errno::EROFS);
    }
    let (euid, _) = ids();
    if mode & 1 != 0 && attr.kind != FileType::Directory && attr.perm & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    if euid != 0 {
        let shift = if attr.uid == euid { 6 } else { 0 };
        let bits = (attr.perm >> shift) & 7;
        if (mode as u32) & !bits & 7 != 0 {
            return Err(Errno::EACCES);
        }
    }
    Ok(0)
}

/// getcwd(2).
pub fn getcwd(k: &Kernel, buf: u64, size: u64) -> SysResult {
    let mut p = lock(&k.fs_ctx).cwd.path();
    p.push(0);
    if (size as usize) < p.len() {
        return Err(Errno::ERANGE);
    }
    copy_out(buf, &p)?;
    Ok(p.len() as i64)
}

/// chdir(2).
pub fn chdir(k: &Kernel, pathp: u64) -> SysResult {
    let path = read_path(pathp)?;
    let (c, a) = resolve_node(k, AT_FDCWD as u64, &path, true)?;
    if a.kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    lock(&k.fs_ctx).cwd = c;
    Ok(0)
}

/// fchdir(2).
pub fn fchdir(k: &Kernel, fd: u64) -> SysResult {
    let f = file_of(k, fd)?;
    match &f.kind {
        FileKind::Node {
            chain,
            kind: FileType::Directory,
        } => {
            lock(&k.fs_ctx).cwd = chain.clone();
            Ok(0)
        }
        _ => Err(Errno::ENOTDIR),
    }
}

/// mkdir/mkdirat.
pub fn mkdirat(k: &Kernel, dirfd: u64, pathp: u64, mode: u64) -> SysResult {
    let path = read_path(pathp)?;
    let (dir, name) = parent(k, dirfd, &path)?;
    let Some(name) = name else {
        return Err(Errno::EEXIST);
    };
    if k.vfs.step(dir.loc(), &name).is_ok() {
        return Err(Errno::EEXIST);
    }
    writable_mount(&dir)?;
    let umask = lock(&k.fs_ctx).umask;
    let (uid, gid) = ids();
    let new = NewInode {
        kind: FileType::Directory,
        perm: mode as u32 & 0o7777 & !umask,
        uid,
        gid,
        rdev: 0,
        time: now(),
    };
    let l = dir.loc();
    l.mnt.fs.create(l.ino, &name, &new)?;
    Ok(0)
}

/// unlink/unlinkat/rmdir.
pub fn unlinkat(k: &Kernel, dirfd: u64, pathp: u64, flags: u64) -> SysResult {
    let path = read_path(pathp)?;
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let (dir, name) = parent(k, dirfd, &path)?;
    let Some(name) = name else {
        return Err(if flags & AT_REMOVEDIR != 0 {
            if path.ends_with(b"..") {
                Errno::ENOTEMPTY
            } else if path.ends_with(b".") {
                Errno::EINVAL
            } else {
                Errno::EBUSY
            }
        } else {
            Errno::EISDIR
        });
    };
    let (_, a) = k.vfs.step(dir.loc(), &name)?;
    if k.vfs
        .mounted_names(dir.loc())
        .iter()
        .any(|(n, _)| *n == name)
    {
        return Err(Errno::EBUSY);
    }
    writable_mount(&dir)?;
    let l = dir.loc();
    if flags & AT_REMOVEDIR != 0 {
        if a.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        l.mnt.fs.rmdir(l.ino, &name)?;
    } else {
        if a.kind == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        if path.ends_with(b"/") {
            return Err(Errno::ENOTDIR);
        }
        l.mnt.fs.unlink(l.ino, &name)?;
    }
    Ok(0)
}

/// rename/renameat/renameat2.
pub fn renameat(
    k: &Kernel,
    olddir: u64,
    oldp: u64,
    newdir: u64,
    newp: u64,
    flags: u64,
) -> SysResult {
    let old = read_path(oldp)?;
    let new = read_path(newp)?;
    if flags & !1 != 0 {
        return Err(Errno::EINVAL);
    }
    let (od, on) = parent(k, olddir, &old)?;
    let (nd, nn) = parent(k, newdir, &new)?;
    let (Some(on), Some(nn)) = (on, nn) else {
        return Err(Errno::EBUSY);
    };
    let (_, oa) = k.vfs.step(od.loc(), &on)?;
    if od.loc().mnt.id != nd.loc().mnt.id {
        return Err(Errno::EXDEV);
    }
    let mounted = |c: &Chain, n: &[u8]| k.vfs.mounted_names(c.loc()).iter().any(|(m, _)| m == n);
    if mounted(&od, &on) || mounted(&nd, &nn) {
        return Err(Errno::EBUSY);
    }
    match k.vfs.step(nd.loc(), &nn) {
        Ok((_, na)) => {
            if flags & 1 != 0 {
                return Err(Errno::EEXIST);
            }
            if oa.kind == FileType::Directory && na.kind != FileType::Directory {
                return Err(Errno::ENOTDIR);
            }
            if oa.kind != FileType::Directory && na.kind == FileType::Directory {
                return Err(Errno::EISDIR);
            }
        }
        Err(e) if e.code == Errno::ENOENT.code => {}
        Err(e) => return Err(e),
    }
    if oa.kind != FileType::Directory && (old.ends_with(b"/") || new.ends_with(b"/")) {
        return Err(Errno::ENOTDIR);
    }
    writable_mount(&od)?;
    let fs = od.loc().mnt.fs.clone();
    fs.rename(od.loc().ino, &on, nd.loc().ino, &nn)?;
    Ok(0)
}

/// link/linkat.
pub fn linkat(k: &Kernel, olddir: u64, oldp: u64, newdir: u64, newp: u64, flags: u64) -> SysResult {
    let old = read_path(oldp)?;
    let new = read_path(newp)?;
    let (oc, oa) = resolve_node(k, olddir, &old, flags & AT_SYMLINK_FOLLOW != 0)?;
    if oa.kind == FileType::Directory {
        return Err(Errno::EPERM);
    }
    let (nd, nn) = parent(k, newdir, &new)?;
    let Some(nn) = nn else {
        return Err(Errno::EEXIST);
    };
    if k.vfs.step(nd.loc(), &nn).is_ok() {
        return Err(Errno::EEXIST);
    }
    if oc.loc().mnt.id != nd.loc().mnt.id {
        return Err(Errno::EXDEV);
    }
    writable_mount(&nd)?;
    let l = nd.loc();
    l.mnt.fs.link(oc.loc().ino, l.ino, &nn)?;
    Ok(0)
}

/// symlink/symlinkat.
pub fn symlinkat(k: &Kernel, targetp: u64, newdir: u64, linkp: u64) -> SysResult {
    let target = read_path(targetp)?;
    let link = read_path(linkp)?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    let (nd, nn) = parent(k, newdir, &link)?;
    let Some(nn) = nn else {
        return Err(Errno::EEXIST);
    };
    if k.vfs.step(nd.loc(), &nn).is_ok() {
        return Err(Errno::EEXIST);
    }
    writable_mount(&nd)?;
    let (uid, gid) = ids();
    let new = NewInode {
        kind: FileType::Symlink,
        perm: 0o777,
        uid,
        gid,
        rdev: 0,
        time: now(),
    };
    let l = nd.loc();
    l.mnt.fs.symlink(l.ino, &nn, &target, &new)?;
    Ok(0)
}

/// readlink/readlinkat.
pub fn readlinkat(k: &Kernel, dirfd: u64, pathp: u64, buf: u64, size: u64) -> SysResult {
    let path = read_path(pathp)?;
    if (size as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    let (c, a) = resolve_node(k, dirfd, &path, false)?;
    if a.kind != FileType::Symlink {
        return Err(Errno::EINVAL);
    }
    let l = c.loc();
    let mut t = l.mnt.fs.readlink(l.ino)?;
    t.truncate(size as usize);
    copy_out(buf, &t)?;
    Ok(t.len() as i64)
}

fn setattr_path(k: &Kernel, dirfd: u64, pathp: u64, follow: bool, set: &SetAttr) -> SysResult {
    let path = read_path(pathp)?;
    let (c, _) = resolve_node(k, dirfd, &path, follow)?;
    writable_mount(&c)?;
    let l = c.loc();
    l.mnt.fs.setattr(l.ino, set)?;
    Ok(0)
}

/// chmod/fchmodat.
pub fn fchmodat(k: &Kernel, dirfd: u64, pathp: u64, mode: u64) -> SysResult {
    setattr_path(
        k,
        dirfd,
        pathp,
        true,
        &SetAttr {
            perm: Some(mode as u32 & 0o7777),
            ..Default::default()
        },
    )
}

/// chown/lchown/fchownat.
pub fn fchownat(k: &Kernel, dirfd: u64, pathp: u64, uid: u64, gid: u64, flags: u64) -> SysResult {
    let id = |v: u64| {
        if v as u32 == u32::MAX {
            None
        } else {
            Some(v as u32)
        }
    };
    if flags & AT_EMPTY_PATH != 0 && read_path(pathp)?.is_empty() {
        return super::fd::fchown(k, dirfd, uid, gid);
    }
    setattr_path(
        k,
        dirfd,
        pathp,
        flags & AT_SYMLINK_NOFOLLOW == 0,
        &SetAttr {
            uid: id(uid),
            gid: id(gid),
            ..Default::default()
        },
    )
}

/// utimensat(2) (and futimens when the path is NULL).
pub fn utimensat(k: &Kernel, dirfd: u64, pathp: u64, times: u64, flags: u64) -> SysResult {
    const UTIME_NOW: i64 = (1 << 30) - 1;
    const UTIME_OMIT: i64 = (1 << 30) - 2;
    let t = now();
    let (atime, mtime) = if times == 0 {
        (Some(t), Some(t))
    } else {
        let raw = copy_in(times, 32)?;
        let g = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&raw[o..o + 8]);
            i64::from_le_bytes(a)
        };
        let conv = |sec: i64, nsec: i64| -> Result<Option<Timespec>, Errno> {
            match nsec {
                UTIME_NOW => Ok(Some(t)),
                UTIME_OMIT => Ok(None),
                0..=999_999_999 => Ok(Some(Timespec {
                    sec,
                    nsec: nsec as u32,
                })),
                _ => Err(Errno::EINVAL),
            }
        };
        (conv(g(0), g(8))?, conv(g(16), g(24))?)
    };
    let set = SetAttr {
        atime,
        mtime,
        ..Default::default()
    };
    if pathp == 0 {
        let f = file_of(k, dirfd)?;
        let l = f.loc().ok_or(Errno::EPERM)?;
        l.mnt.fs.setattr(l.ino, &set)?;
        return Ok(0);
    }
    setattr_path(k, dirfd, pathp, flags & AT_SYMLINK_NOFOLLOW == 0, &set)
}

/// truncate(2).
pub fn truncate(k: &Kernel, pathp: u64, len: u64) -> SysResult {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(pathp)?;
    let (c, a) = resolve_node(k, AT_FDCWD as u64, &path, true)?;
    if a.kind == FileType::Directory {
        return Err(Errno::EISDIR);
    }
    writable_mount(&c)?;
    let l = c.loc();
    l.mnt.fs.setattr(
        l.ino,
        &SetAttr {
            size: Some(len),
            ..Default::default()
        },
    )?;
    Ok(0)
}

/// statfs(2).
pub fn statfs(k: &Kernel, pathp: u64, buf: u64) -> SysResult {
    let path = read_path(pathp)?;
    let (c, _) = resolve_node(k, AT_FDCWD as u64, &path, true)?;
    let s = c.loc().mnt.fs.statfs()?;
    copy_out(buf, &stat::statfs(&s))?;
    Ok(0)
}

/// umask(2).
pub fn umask(k: &Kernel, mask: u64) -> SysResult {
    let mut c = lock(&k.fs_ctx);
    let old = c.umask;
    c.umask = mask as u32 & 0o777;
    Ok(old as i64)
}
