//! Syscalls on file descriptors: read/write and friends, lseek, close, dup,
//! fcntl, ioctl, getdents64, fstat, fsync, ftruncate, sendfile, pipes, poll.

use super::{copy_in, copy_out, file_of, read_iovec, SysResult};
use crate::file::{
    lock, FileKind, OpenFile, O_APPEND, O_ASYNC, O_CLOEXEC, O_NONBLOCK, O_PATH, O_WRONLY,
};
use crate::Kernel;
use crate::{locks, stat};
use myst_fs::{Errno, FileType, SetAttr};
use myst_platform::sud::{self, SyscallFrame};
use myst_platform::{guestmem, host};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest single transfer (Linux's MAX_RW_COUNT).
const MAX_RW: u64 = 0x7fff_f000;

/// A host call on guest memory: EFAULT for a bad range, else the raw result.
fn host_ret(r: Result<i64, guestmem::Fault>) -> SysResult {
    Errno::result(r?)
}

/// Whether a file system's read may run while guest memory is locked
/// (procfs and devfs generate data from kernel state; they get a bounce buffer).
fn direct_io(f: &OpenFile) -> bool {
    match f.loc() {
        Some(l) => !matches!(l.mnt.fstype, "proc" | "devtmpfs"),
        None => false,
    }
}

/// Reads from `f` at `off` into guest memory.
fn read_at(f: &OpenFile, off: u64, addr: u64, len: u64) -> SysResult {
    let len = len.min(MAX_RW) as usize;
    match &f.kind {
        FileKind::Host { fd, .. } => host_ret(host::read_to_guest(*fd, addr, len, None)),
        FileKind::Node { chain, kind } => {
            if *kind == FileType::Directory {
                return Err(Errno::EISDIR);
            }
            let loc = chain.loc();
            if direct_io(f) {
                match guestmem::with_slice_mut(addr, len, |s| loc.mnt.fs.read(loc.ino, off, s)) {
                    Ok(r) => r.map(|n| n as i64),
                    Err(_) => Err(Errno::EFAULT),
                }
            } else {
                let mut buf = vec![0u8; len.min(1 << 20)];
                let n = loc.mnt.fs.read(loc.ino, off, &mut buf)?;
                copy_out(addr, &buf[..n])?;
                Ok(n as i64)
            }
        }
    }
}

/// Writes guest memory to `f` at `off`.
fn write_at(f: &OpenFile, off: u64, addr: u64, len: u64) -> SysResult {
    let len = len.min(MAX_RW) as usize;
    match &f.kind {
        FileKind::Host { fd, .. } => host_ret(host::write_from_guest(*fd, addr, len, None)),
        FileKind::Node { chain, kind } => {
            if *kind == FileType::Directory {
                return Err(Errno::EISDIR);
            }
            let loc = chain.loc();
            if direct_io(f) {
                match guestmem::with_slice(addr, len, |s| loc.mnt.fs.write(loc.ino, off, s)) {
                    Ok(r) => r.map(|n| n as i64),
                    Err(_) => Err(Errno::EFAULT),
                }
            } else {
                let data = copy_in(addr, len)?;
                Ok(loc.mnt.fs.write(loc.ino, off, &data)? as i64)
            }
        }
    }
}

/// Kernel-buffer read (sendfile, copy_file_range). `off` None uses the file position.
fn kread(f: &OpenFile, off: Option<u64>, buf: &mut [u8]) -> Result<usize, Errno> {
    match &f.kind {
        FileKind::Host { fd, .. } => {
            let r = host::read(*fd, buf);
            Errno::result(r).map(|n| n as usize)
        }
        FileKind::Node { chain, .. } => {
            let loc = chain.loc();
            match off {
                Some(o) => loc.mnt.fs.read(loc.ino, o, buf),
                None => {
                    let mut pos = f.pos();
                    let n = loc.mnt.fs.read(loc.ino, *pos, buf)?;
                    *pos += n as u64;
                    Ok(n)
                }
            }
        }
    }
}

fn kwrite(f: &OpenFile, off: Option<u64>, data: &[u8]) -> Result<usize, Errno> {
    match &f.kind {
        FileKind::Host { fd, .. } => {
            let r = host::write(*fd, data);
            Errno::result(r).map(|n| n as usize)
        }
        FileKind::Node { chain, .. } => {
            let loc = chain.loc();
            match off {
                Some(o) => loc.mnt.fs.write(loc.ino, o, data),
                None => {
                    let mut pos = f.pos();
                    if f.flags() & O_APPEND != 0 {
                        // Size and write in one file-system operation, so
                        // appenders in other processes cannot interleave.
                        let (start, n) = loc.mnt.fs.append(loc.ino, data)?;
                        *pos = start + n as u64;
                        return Ok(n);
                    }
                    let n = loc.mnt.fs.write(loc.ino, *pos, data)?;
                    *pos += n as u64;
                    Ok(n)
                }
            }
        }
    }
}

/// read(2).
pub fn read(k: &Kernel, fd: u64, buf: u64, count: u64) -> SysResult {
    let f = file_of(k, fd)?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    if let FileKind::Host { .. } = f.kind {
        return read_at(&f, 0, buf, count);
    }
    let mut pos = f.pos();
    let n = read_at(&f, *pos, buf, count)?;
    *pos += n as u64;
    Ok(n)
}

/// write(2).
pub fn write(k: &Kernel, fd: u64, buf: u64, count: u64) -> SysResult {
    let f = file_of(k, fd)?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    if let FileKind::Host { .. } = f.kind {
        return write_at(&f, 0, buf, count);
    }
    let mut pos = f.pos();
    if f.flags() & O_APPEND != 0 {
        if let FileKind::Node { chain, kind } = &f.kind {
            if *kind == FileType::Directory {
                return Err(Errno::EISDIR);
            }
            // Size and write in one file-system operation, so appenders in
            // other processes (a shared ext2 /tmp) cannot interleave.
            let data = copy_in(buf, count.min(MAX_RW) as usize)?;
            let loc = chain.loc();
            let (start, n) = loc.mnt.fs.append(loc.ino, &data)?;
            *pos = start + n as u64;
            return Ok(n as i64);
        }
    }
    let n = write_at(&f, *pos, buf, count)?;
    *pos += n as u64;
    Ok(n)
}

/// pread64(2).
pub fn pread(k: &Kernel, fd: u64, buf: u64, count: u64, off: u64) -> SysResult {
    let f = file_of(k, fd)?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    if (off as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    match &f.kind {
        FileKind::Host { fd, .. } => host_ret(host::read_to_guest(
            *fd,
            buf,
            count.min(MAX_RW) as usize,
            Some(off),
        )),
        FileKind::Node { .. } => read_at(&f, off, buf, count),
    }
}

/// pwrite64(2).
pub fn pwrite(k: &Kernel, fd: u64, buf: u64, count: u64, off: u64) -> SysResult {
    let f = file_of(k, fd)?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    if (off as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    match &f.kind {
        FileKind::Host { fd, .. } => host_ret(host::write_from_guest(
            *fd,
            buf,
            count.min(MAX_RW) as usize,
            Some(off),
        )),
        FileKind::Node { .. } => write_at(&f, off, buf, count),
    }
}

/// readv/preadv/preadv2 (`off` Some for the positioned forms; -1 means the file position).
pub fn readv(k: &Kernel, fd: u64, iov: u64, cnt: u64, off: Option<u64>) -> SysResult {
    let iovs = read_iovec(iov, cnt)?;
    each_iov(&iovs, |base, len, done| match off {
        Some(o) if o as i64 != -1 => pread(k, fd, base, len, o.wrapping_add(done)),
        _ => read(k, fd, base, len),
    })
}

/// Runs `one(base, len, bytes done so far)` over the non-empty buffers of
/// an iovec until one comes back short; an error after some bytes ends
/// the call with those bytes, as Linux does.
fn each_iov(iovs: &[(u64, u64)], mut one: impl FnMut(u64, u64, u64) -> SysResult) -> SysResult {
    let mut total = 0i64;
    for &(base, len) in iovs {
        if len == 0 {
            continue;
        }
        let n = match one(base, len, total as u64) {
            Ok(n) => n,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
        total += n;
        if (n as u64) < len {
            break;
        }
    }
    Ok(total)
}

/// writev/pwritev/pwritev2.
pub fn writev(k: &Kernel, fd: u64, iov: u64, cnt: u64, off: Option<u64>) -> SysResult {
    let iovs = read_iovec(iov, cnt)?;
    let f = file_of(k, fd)?;
    // Small writes to a host descriptor are gathered so a line reaches a
    // pipe or terminal in one write, as with the real writev.
    if let (FileKind::Host { fd: hfd, .. }, None) = (&f.kind, off) {
        if !f.writable() {
            return Err(Errno::EBADF);
        }
        let mut data = Vec::new();
        for &(base, len) in &iovs {
            if len > 0 {
                data.extend_from_slice(&copy_in(base, len.min(MAX_RW) as usize)?);
            }
        }
        let r = host::write(*hfd, &data);
        return Errno::result(r);
    }
    each_iov(&iovs, |base, len, done| match off {
        Some(o) if o as i64 != -1 => pwrite(k, fd, base, len, o.wrapping_add(done)),
        _ => write(k, fd, base, len),
    })
}

/// lseek(2).
pub fn lseek(k: &Kernel, fd: u64, off: u64, whence: u64) -> SysResult {
    let f = file_of(k, fd)?;
    let loc = match &f.kind {
        FileKind::Host { fd, .. } => {
            let r = host::int_syscall(8, [*fd as u64, off, whence, 0, 0, 0]);
            return Errno::result(r);
        }
        FileKind::Node { chain, .. } => chain.loc().clone(),
    };
    let mut pos = f.pos();
    let off = off as i64;
    let new = match whence {
        0 => off,
        1 => (*pos as i64).checked_add(off).ok_or(Errno::EOVERFLOW)?,
        2 => (loc.attr()?.size as i64)
            .checked_add(off)
            .ok_or(Errno::EOVERFLOW)?,
        3 | 4 => {
            let size = loc.attr()?.size as i64;
            if off >= size || off < 0 {
                return Err(Errno::ENXIO);
            }
            if whence == 3 {
                off
            } else {
                size
            }
        }
        _ => return Err(Errno::EINVAL),
    };
    if new < 0 {
        return Err(Errno::EINVAL);
    }
    *pos = new as u64;
    if new == 0 {
        *lock(&f.dir_cache) = None;
    }
    Ok(new)
}

/// close(2).
pub fn close(k: &Kernel, fd: u64) -> SysResult {
    let fd = i32::try_from(fd as i64).map_err(|_| Errno::EBADF)?;
    let entry = lock(&k.fds).close(fd)?;
    drop(entry);
    Ok(0)
}

/// close_range(2).
pub fn close_range(k: &Kernel, first: u64, last: u64, flags: u64) -> SysResult {
    let mut t = lock(&k.fds);
    for (fd, _) in t.list() {
        let f = fd as u64;
        if f >= first && f <= last {
            if flags & 4 != 0 {
                if let Ok(e) = t.get_mut(fd) {
                    e.cloexec = true;
                }
            } else {
                let _ = t.close(fd);
            }
        }
    }
    Ok(0)
}

/// dup(2).
pub fn dup(k: &Kernel, fd: u64) -> SysResult {
    let f = file_of(k, fd)?;
    Ok(lock(&k.fds).alloc(f, false, 0)? as i64)
}

/// dup2(2).
pub fn dup2(k: &Kernel, old: u64, new: u64) -> SysResult {
    let f = file_of(k, old)?;
    if old == new {
        return Ok(new as i64);
    }
    install_at(k, f, new, false)
}

fn install_at(k: &Kernel, f: Arc<OpenFile>, new: u64, cloexec: bool) -> SysResult {
    let mut t = lock(&k.fds);
    let new = usize::try_from(new as i64).map_err(|_| Errno::EBADF)?;
    if new >= t.limit {
        return Err(Errno::EBADF);
    }
    let old = t.set(new, f, cloexec);
    drop(t);
    drop(old);
    Ok(new as i64)
}

/// dup3(2).
pub fn dup3(k: &Kernel, old: u64, new: u64, flags: u64) -> SysResult {
    if old == new || flags & !(O_CLOEXEC as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    let f = file_of(k, old)?;
    install_at(k, f, new, flags != 0)
}

/// Status flags F_SETFL may change (O_APPEND, O_NONBLOCK, O_ASYNC,
/// O_DIRECT, O_NOATIME), as on Linux.
const SETFL_MASK: u32 = O_APPEND | O_NONBLOCK | 0o20000 | 0o40000 | 0o1000000;

/// fcntl(2). The frame gives the caller's signal mask (F_SETLKW waits
/// until a signal the guest handles arrives).
pub fn fcntl(k: &Kernel, fd: u64, cmd: u64, arg: u64, frame: &SyscallFrame) -> SysResult {
    let ifd = i32::try_from(fd as i64).map_err(|_| Errno::EBADF)?;
    let f = file_of(k, fd)?;
    match cmd {
        0 | 1030 => Ok(lock(&k.fds).alloc(f, cmd == 1030, arg as usize)? as i64),
        1 => Ok(lock(&k.fds).get(ifd)?.cloexec as i64),
        2 => {
            lock(&k.fds).get_mut(ifd)?.cloexec = arg & 1 != 0;
            Ok(0)
        }
        3 => Ok((f.flags() | 0o100000) as i64),
        4 => {
            let keep = f.flags() & !SETFL_MASK;
            let new = keep | (arg as u32 & SETFL_MASK);
            if let FileKind::Host { fd, .. } = &f.kind {
                host::set_status_flags(*fd, new & SETFL_MASK | (new & 3))?;
            }
            f.set_flags(new);
            Ok(0)
        }
        5..=7 | 36..=38 => record_lock(k, &f, cmd, arg, frame),
        // Leases: none can be taken; nothing is ever leased.
        1024 => {
            if arg == 2 {
                Ok(0)
            } else {
                Err(Errno::EINVAL.with("leases are not supported"))
            }
        }
        1025 => Ok(2),
        // F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG, F_SETOWN_EX, F_GETOWN_EX:
        // SIGIO for pipes and sockets is the host's (guest pids are host
        // pids); files of mounted file systems never signal.
        8..=11 | 15 | 16 => match &f.kind {
            FileKind::Host { fd, .. } => match cmd {
                15 | 16 => {
                    let mut ex = [0u8; 8];
                    if cmd == 15 {
                        ex.copy_from_slice(&copy_in(arg, 8)?);
                    }
                    Errno::result(host::fcntl_buf(*fd, cmd as i32, &mut ex))?;
                    if cmd == 16 {
                        copy_out(arg, &ex)?;
                    }
                    Ok(0)
                }
                // F_GETOWN gives a process group as a negative number.
                9 => Ok(host::fcntl_int(*fd, 9, 0)),
                _ => Errno::result(host::fcntl_int(*fd, cmd as i32, arg)),
            },
            FileKind::Node { .. } => match cmd {
                15 => copy_in(arg, 8).map(|_| 0),
                16 => copy_out(arg, &[0u8; 8]).map(|_| 0),
                _ => Ok(0),
            },
        },
        // F_SETPIPE_SZ, F_GETPIPE_SZ: pipes are the host's.
        1031 | 1032 => match &f.kind {
            FileKind::Host { fd, .. } => Errno::result(host::fcntl_int(*fd, cmd as i32, arg)),
            FileKind::Node { .. } => Err(Errno::EBADF),
        },
        1033 | 1034 => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// The byte range of a `struct flock` (Linux's flock_to_posix_lock).
fn lock_range(f: &OpenFile, whence: i16, start: i64, len: i64) -> Result<locks::Range, Errno> {
    let base = match whence {
        0 => 0,
        1 => *f.pos() as i64,
        2 => match f.loc() {
            Some(l) => l.attr()?.size as i64,
            None => return Err(Errno::EINVAL),
        },
        _ => return Err(Errno::EINVAL),
    };
    let mut first = base.checked_add(start).ok_or(Errno::EOVERFLOW)?;
    if first < 0 {
        return Err(Errno::EINVAL);
    }
    let last = if len > 0 {
        first.checked_add(len - 1).ok_or(Errno::EOVERFLOW)?
    } else if len < 0 {
        let last = first - 1;
        first += len;
        if first < 0 {
            return Err(Errno::EINVAL);
        }
        last
    } else {
        i64::MAX
    };
    Ok(locks::Range {
        start: first as u64,
        end: last as u64,
    })
}

/// How a blocking lock wait of the call in `frame` may be interrupted
/// (reading the mask costs a host call on the fast path: only for waits).
fn interrupt(k: &Kernel, frame: &SyscallFrame) -> locks::Interrupt {
    locks::Interrupt {
        guest_mask: frame.sigmask(),
        no_handler: k.no_handler.load(Ordering::Relaxed),
    }
}

/// F_GETLK, F_SETLK, F_SETLKW and their F_OFD_ forms.
fn record_lock(k: &Kernel, f: &OpenFile, cmd: u64, arg: u64, frame: &SyscallFrame) -> SysResult {
    let mut raw: [u8; 32] = copy_in(arg, 32)?.try_into().map_err(|_| Errno::EFAULT)?;
    let i16_at = |o: usize| i16::from_le_bytes([raw[o], raw[o + 1]]);
    let i64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[o..o + 8]);
        i64::from_le_bytes(b)
    };
    let (l_type, whence, start, len) = (i16_at(0), i16_at(2), i64_at(8), i64_at(16));
    let l_pid = i32::from_le_bytes([raw[24], raw[25], raw[26], raw[27]]);
    let ofd_cmd = cmd >= 36;
    let get = cmd == 5 || cmd == 36;
    let wait = cmd == 7 || cmd == 38;
    if f.flags() & O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    if ofd_cmd && l_pid != 0 {
        return Err(Errno::EINVAL);
    }
    let new = match l_type {
        0 => Some(false),
        1 => Some(true),
        2 => None,
        _ => return Err(Errno::EINVAL),
    };
    if let FileKind::Host { fd, .. } = &f.kind {
        // Pipes, sockets, terminals: the host's own locks.
        let r = if wait {
            let int = interrupt(k, frame);
            myst_platform::sud::interruptible(int.no_handler & !int.guest_mask, || {
                host::fcntl_lock(*fd, cmd, &mut raw)
            })
        } else {
            host::fcntl_lock(*fd, cmd, &mut raw)
        };
        r?;
        if get {
            copy_out(arg, &raw)?;
        }
        return Ok(0);
    }
    if !get {
        match new {
            Some(false) if !f.readable() => return Err(Errno::EBADF),
            Some(true) if !f.writable() => return Err(Errno::EBADF),
            _ => {}
        }
    }
    let key = f.key().ok_or(Errno::EBADF)?;
    let range = lock_range(f, whence, start, len)?;
    let (class, owner) = if ofd_cmd {
        let d = f.desc().ok_or(locks::ENOLCK)?;
        (locks::Class::Ofd, d.owner())
    } else {
        (locks::Class::Posix, locks::my_posix_owner()?)
    };
    if get {
        let write = new.ok_or(Errno::EINVAL)?;
        match locks::test(key, class, owner, write, range)? {
            None => raw[0..2].copy_from_slice(&2i16.to_le_bytes()),
            Some(h) => {
                let len = if h.range.end == locks::OFFSET_MAX {
                    0
                } else {
                    h.range.end - h.range.start + 1
                };
                raw[0..2].copy_from_slice(&i16::from(h.write).to_le_bytes());
                raw[2..4].copy_from_slice(&0i16.to_le_bytes());
                raw[8..16].copy_from_slice(&h.range.start.to_le_bytes());
                raw[16..24].copy_from_slice(&len.to_le_bytes());
                raw[24..28].copy_from_slice(&h.pid.to_le_bytes());
            }
        }
        copy_out(arg, &raw)?;
        return Ok(0);
    }
    let int = wait.then(|| interrupt(k, frame));
    locks::set(key, class, owner, new, range, int.as_ref())?;
    Ok(0)
}

/// flock(2): whole-file locks owned by the open file description.
pub fn flock(k: &Kernel, fd: u64, op: u64, frame: &SyscallFrame) -> SysResult {
    const LOCK_NB: u64 = 4;
    let f = file_of(k, fd)?;
    if f.flags() & O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    let new = match op & !LOCK_NB {
        1 => Some(false),
        2 => Some(true),
        8 => None,
        _ => return Err(Errno::EINVAL),
    };
    let blocking = op & LOCK_NB == 0 && new.is_some();
    let int = blocking.then(|| interrupt(k, frame));
    if let FileKind::Host { fd, .. } = &f.kind {
        let r = if let Some(int) = &int {
            myst_platform::sud::interruptible(int.no_handler & !int.guest_mask, || {
                host::flock(*fd, op as i32)
            })
        } else {
            host::flock(*fd, op as i32)
        };
        return r.map(|_| 0);
    }
    let key = f.key().ok_or(Errno::EBADF)?;
    let d = f.desc().ok_or(locks::ENOLCK)?;
    locks::flock(key, d.owner(), new, int.as_ref())?;
    Ok(0)
}

/// ioctl(2): terminal requests go to the host for host descriptors.
pub fn ioctl(k: &Kernel, fd: u64, req: u64, arg: u64) -> SysResult {
    let ifd = i32::try_from(fd as i64).map_err(|_| Errno::EBADF)?;
    let f = file_of(k, fd)?;
    match req {
        0x5451 | 0x5450 => {
            lock(&k.fds).get_mut(ifd)?.cloexec = req == 0x5451;
            return Ok(0);
        }
        0x5452 => {
            // FIOASYNC: SIGIO when the descriptor becomes ready (the host
            // sends it, to the owner set with F_SETOWN or FIOSETOWN).
            let v = copy_in(arg, 4)?;
            let on = v != [0, 0, 0, 0];
            let flags = f.flags();
            let new = if on {
                flags | O_ASYNC
            } else {
                flags & !O_ASYNC
            };
            if let FileKind::Host { fd, .. } = &f.kind {
                let mut b = [0u8; 4];
                b.copy_from_slice(&v);
                Errno::result(host::ioctl_buf(*fd, req, &mut b))?;
            }
            f.set_flags(new);
            return Ok(0);
        }
        0x5421 => {
            let v = copy_in(arg, 4)?;
            let on = v != [0, 0, 0, 0];
            let flags = f.flags();
            let new = if on {
                flags | O_NONBLOCK
            } else {
                flags & !O_NONBLOCK
            };
            f.set_flags(new);
            if let FileKind::Host { fd, .. } = &f.kind {
                let _ = host::set_status_flags(*fd, new & (O_APPEND | O_NONBLOCK) | (new & 3));
            }
            return Ok(0);
        }
        _ => {}
    }
    let hfd = match &f.kind {
        FileKind::Host { fd, .. } => *fd,
        FileKind::Node { chain, kind } => {
            if req == 0x541B && *kind == FileType::Regular {
                let size = chain.loc().attr()?.size;
                let pos = *f.pos();
                super::write_i32(arg, size.saturating_sub(pos).min(i32::MAX as u64) as i32)?;
                return Ok(0);
            }
            return Err(Errno::ENOTTY);
        }
    };
    // (request, size, direction: true = kernel writes to the guest)
    let (size, out) = match req {
        0x5401 => (36, true),                  // TCGETS
        0x5402..=0x5404 => (36, false),        // TCSETS*
        0x5413 => (8, true),                   // TIOCGWINSZ
        0x5414 => (8, false),                  // TIOCSWINSZ
        0x540F | 0x5429 | 0x541B => (4, true), // TIOCGPGRP, TIOCGSID, FIONREAD
        0x5410 => (4, false),                  // TIOCSPGRP
        0x8901 | 0x8902 => (4, false),         // FIOSETOWN, SIOCSPGRP
        0x8903 | 0x8904 => (4, true),          // FIOGETOWN, SIOCGPGRP
        0x8905 => (4, true),                   // SIOCATMARK
        0x5411 => (4, true),                   // TIOCOUTQ
        0x5409..=0x540B => {
            let r = host::ioctl_int(hfd, req, arg);
            return Errno::result(r);
        }
        _ => return Err(Errno::ENOTTY),
    };
    let mut buf = if out {
        vec![0u8; size]
    } else {
        copy_in(arg, size)?
    };
    let r = Errno::result(host::ioctl_buf(hfd, req, &mut buf))?;
    if out {
        copy_out(arg, &buf)?;
    }
    Ok(r)
}

/// fstat(2).
pub fn fstat(k: &Kernel, fd: u64, buf: u64) -> SysResult {
    let f = file_of(k, fd)?;
    copy_out(buf, &stat_file(&f)?)?;
    Ok(0)
}

/// `struct stat` of an open file.
pub fn stat_file(f: &OpenFile) -> Result<[u8; 144], Errno> {
    match &f.kind {
        FileKind::Host { fd, .. } => host::fstat(*fd),
        FileKind::Node { chain, .. } => {
            let loc = chain.loc();
            Ok(stat::stat(&loc.attr()?, stat::mount_dev(loc.mnt.id)))
        }
    }
}

/// fstatfs(2).
pub fn fstatfs(k: &Kernel, fd: u64, buf: u64) -> SysResult {
    let f = file_of(k, fd)?;
    let s = match f.loc() {
        Some(l) => l.mnt.fs.statfs()?,
        None => myst_fs::StatFs {
            fs_type: 0x1021994,
            bsize: 4096,
            namelen: 255,
            ..Default::default()
        },
    };
    copy_out(buf, &stat::statfs(&s))?;
    Ok(0)
}

/// fsync/fdatasync.
pub fn fsync(k: &Kernel, fd: u64) -> SysResult {
    let f = file_of(k, fd)?;
    if let Some(l) = f.loc() {
        l.mnt.fs.fsync(l.ino)?;
    }
    Ok(0)
}

/// ftruncate(2).
pub fn ftruncate(k: &Kernel, fd: u64, len: u64) -> SysResult {
    let f = file_of(k, fd)?;
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if !f.writable() {
        return Err(Errno::EINVAL);
    }
    let loc = f.loc().ok_or(Errno::EINVAL)?;
    loc.mnt.fs.setattr(
        loc.ino,
        &SetAttr {
            size: Some(len),
            ..Default::default()
        },
    )?;
    Ok(0)
}

/// fallocate(2): mode 0 extends the file.
pub fn fallocate(k: &Kernel, fd: u64, mode: u64, off: u64, len: u64) -> SysResult {
    let f = file_of(k, fd)?;
    let loc = f.loc().ok_or(Errno::ESPIPE)?;
    if mode != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
    if loc.attr()?.size < end {
        loc.mnt.fs.setattr(
            loc.ino,
            &SetAttr {
                size: Some(end),
                ..Default::default()
            },
        )?;
    }
    Ok(0)
}

/// fchmod(2).
pub fn fchmod(k: &Kernel, fd: u64, mode: u64) -> SysResult {
    let f = file_of(k, fd)?;
    let loc = f.loc().ok_or(Errno::EPERM)?;
    loc.mnt.fs.setattr(
        loc.ino,
        &SetAttr {
            perm: Some(mode as u32 & 0o7777),
            ..Default::default()
        },
    )?;
    Ok(0)
}

/// fchown(2).
pub fn fchown(k: &Kernel, fd: u64, uid: u64, gid: u64) -> SysResult {
    let f = file_of(k, fd)?;
    let loc = f.loc().ok_or(Errno::EPERM)?;
    let id = |v: u64| {
        if v as u32 == u32::MAX {
            None
        } else {
            Some(v as u32)
        }
    };
    loc.mnt.fs.setattr(
        loc.ino,
        &SetAttr {
            uid: id(uid),
            gid: id(gid),
            ..Default::default()
        },
    )?;
    Ok(0)
}

/// getdents64(2).
pub fn getdents64(k: &Kernel, fd: u64, buf: u64, count: u64) -> SysResult {
    let f = file_of(k, fd)?;
    let chain = match &f.kind {
        FileKind::Node {
            chain,
            kind: FileType::Directory,
        } => chain.clone(),
        _ => return Err(Errno::ENOTDIR),
    };
    let mut pos = f.pos();
    let mut cache = lock(&f.dir_cache);
    if cache.is_none() || *pos == 0 {
        let loc = chain.loc();
        let mut entries = loc.mnt.fs.readdir(loc.ino)?;
        for (name, m) in k.vfs.mounted_names(loc) {
            if !entries.iter().any(|e| e.name == name) {
                entries.push(myst_fs::DirEntry {
                    name,
                    ino: m.fs.root(),
                    kind: FileType::Directory,
                });
            }
        }
        *cache = Some(entries);
    }
    let entries = cache.as_ref().map(|v| v.as_slice()).unwrap_or(&[]);
    let max = count.min(1 << 20) as usize;
    let mut out = Vec::new();
    let mut i = *pos as usize;
    while i < entries.len() {
        let e = &entries[i];
        if !stat::push_dirent(
            &mut out,
            max,
            e.ino,
            i as u64 + 1,
            e.kind.dirent_type(),
            &e.name,
        ) {
            if out.is_empty() {
                return Err(Errno::EINVAL);
            }
            break;
        }
        i += 1;
    }
    copy_out(buf, &out)?;
    *pos = i as u64;
    Ok(out.len() as i64)
}

/// pipe/pipe2: a host pipe.
pub fn pipe2(k: &Kernel, fds: u64, flags: u64) -> SysResult {
    let (r, w) = host::pipe(flags as i32).map_err(|e| e.with("pipe"))?;
    use std::os::fd::AsRawFd;
    let (rfd, wfd) = (r.as_raw_fd(), w.as_raw_fd());
    let nb = flags as u32 & O_NONBLOCK;
    let rf = OpenFile::new(
        FileKind::Host {
            fd: rfd,
            _owner: Some(r),
        },
        nb,
        b"pipe:".to_vec(),
    );
    let wf = OpenFile::new(
        FileKind::Host {
            fd: wfd,
            _owner: Some(w),
        },
        O_WRONLY | nb,
        b"pipe:".to_vec(),
    );
    let cloexec = flags as u32 & O_CLOEXEC != 0;
    let mut t = lock(&k.fds);
    let a = t.alloc(rf, cloexec, 0)?;
    let b = match t.alloc(wf, cloexec, 0) {
        Ok(b) => b,
        Err(e) => {
            let _ = t.close(a);
            return Err(e);
        }
    };
    drop(t);
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&a.to_le_bytes());
    out[4..].copy_from_slice(&b.to_le_bytes());
    if let Err(e) = copy_out(fds, &out) {
        let mut t = lock(&k.fds);
        let _ = t.close(a);
        let _ = t.close(b);
        return Err(e);
    }
    Ok(0)
}

/// The core of poll/ppoll/select: files of mounted file systems are always
/// ready; host descriptors are polled on the host, with the signal mask
/// `mask` for the wait (applied atomically by the host's ppoll, so a guest
/// signal that the mask lets through interrupts the wait, EINTR, even one
/// that was pending before the call). Returns the revents of each entry
/// and the number of ready entries.
fn poll_core(
    k: &Kernel,
    entries: &[(i32, i16)],
    timeout_ms: i32,
    mask: u64,
) -> Result<(Vec<i16>, i64), Errno> {
    let mut revents = vec![0i16; entries.len()];
    let mut host_set: Vec<(i32, i16, i16)> = Vec::new();
    let mut map: Vec<Option<usize>> = Vec::new();
    let mut ready = 0;
    for (i, &(fd, ev)) in entries.iter().enumerate() {
        if fd < 0 {
            map.push(None);
            continue;
        }
        match lock(&k.fds).get(fd).map(|e| e.file.clone()) {
            Err(_) => {
                revents[i] = 0x20; // POLLNVAL
                ready += 1;
                map.push(None);
            }
            Ok(f) => match &f.kind {
                FileKind::Host { fd, .. } => {
                    map.push(Some(host_set.len()));
                    host_set.push((*fd, ev, 0));
                }
                FileKind::Node { .. } => {
                    revents[i] = ev & 0x5; // POLLIN | POLLOUT
                    if revents[i] != 0 {
                        ready += 1;
                    }
                    map.push(None);
                }
            },
        }
    }
    if host_set.is_empty() && ready > 0 {
        return Ok((revents, ready));
    }
    // With nothing on the host to watch this still waits out the timeout
    // (or, without one, until a signal arrives), as Linux does.
    let t = if ready > 0 { 0 } else { timeout_ms };
    host::ppoll(&mut host_set, t, mask)?;
    for (i, m) in map.iter().enumerate() {
        if let Some(j) = m {
            revents[i] = host_set[*j].2;
            if revents[i] != 0 {
                ready += 1;
            }
        }
    }
    Ok((revents, ready))
}

/// The signal mask for a wait: the temporary one at `sigmask` (ppoll,
/// pselect6, epoll_pwait; size must be 8), or the current one.
pub fn wait_mask(
    frame: &SyscallFrame,
    sigmask: u64,
    size: u64,
) -> Result<(u64, Option<u64>), Errno> {
    let cur = frame.sigmask();
    if sigmask == 0 {
        return Ok((cur, None));
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    // SIGKILL and SIGSTOP cannot be blocked.
    let t = super::read_u64(sigmask)? & !((1 << 8) | (1 << 18));
    Ok((t, Some(t)))
}

/// After a wait with a temporary mask: a signal that only the temporary
/// mask let through interrupted it (EINTR); it is delivered under the
/// temporary mask, and its handler returns to the old one (Linux's
/// saved_sigmask). Other results keep the old mask.
pub fn finish_wait(frame: &mut SyscallFrame, temp: Option<u64>, old: u64, r: &SysResult) {
    if let (Some(t), Err(e)) = (temp, r) {
        if e.code == Errno::EINTR.code && sud::deferred() & old & !t != 0 {
            frame.set_temp_mask_until_handler(t, old);
        }
    }
}

/// poll(2) and ppoll(2) (`ts` a timespec; `sigmask` the temporary mask).
pub fn ppoll(
    k: &Kernel,
    frame: &mut SyscallFrame,
    fds: u64,
    nfds: u64,
    timeout_ms: i32,
    sigmask: u64,
    size: u64,
) -> SysResult {
    if nfds > 4096 {
        return Err(Errno::EINVAL);
    }
    let (mask, temp) = wait_mask(frame, sigmask, size)?;
    let old = frame.sigmask();
    let mut raw = copy_in(fds, nfds as usize * 8)?;
    let entries: Vec<(i32, i16)> = raw
        .chunks_exact(8)
        .map(|c| {
            (
                i32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                i16::from_le_bytes([c[4], c[5]]),
            )
        })
        .collect();
    let r = poll_core(k, &entries, timeout_ms, mask);
    let r = r.and_then(|(revents, ready)| {
        for (i, r) in revents.iter().enumerate() {
            raw[i * 8 + 6..i * 8 + 8].copy_from_slice(&r.to_le_bytes());
        }
        copy_out(fds, &raw)?;
        Ok(ready)
    });
    finish_wait(frame, temp, old, &r);
    r
}

/// ppoll(2) with its timespec.
pub fn ppoll_ts(
    k: &Kernel,
    frame: &mut SyscallFrame,
    fds: u64,
    nfds: u64,
    ts: u64,
    sigmask: u64,
    size: u64,
) -> SysResult {
    let t = timeout_ms(ts, true)?;
    ppoll(k, frame, fds, nfds, t, sigmask, size)
}

/// poll(2).
pub fn poll(k: &Kernel, frame: &mut SyscallFrame, fds: u64, nfds: u64, timeout: u64) -> SysResult {
    let t = (timeout as i32).max(-1);
    ppoll(k, frame, fds, nfds, t, 0, 0)
}

/// A timeout in milliseconds (rounded up; -1 for none) from a guest
/// timespec (`nsec_unit`) or timeval.
pub fn timeout_ms(ts: u64, nsec_unit: bool) -> Result<i32, Errno> {
    if ts == 0 {
        return Ok(-1);
    }
    let b = copy_in(ts, 16)?;
    let sec = i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let frac = i64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    if sec < 0 || frac < 0 {
        return Err(Errno::EINVAL);
    }
    let ms = sec.saturating_mul(1000).saturating_add(if nsec_unit {
        (frac as u64).div_ceil(1_000_000) as i64
    } else {
        (frac as u64).div_ceil(1000) as i64
    });
    Ok(ms.min(i32::MAX as i64) as i32)
}

/// select(2) (`sigmask` 0) and pselect6(2) (`sigmask` points at the
/// { const sigset_t *ss; size_t ss_len; } pair), through poll.
#[allow(clippy::too_many_arguments)]
pub fn select(
    k: &Kernel,
    frame: &mut SyscallFrame,
    nfds: u64,
    rd: u64,
    wr: u64,
    ex: u64,
    ts: u64,
    pselect_data: Option<u64>,
) -> SysResult {
    if nfds > 1024 {
        return Err(Errno::EINVAL);
    }
    let (sigmask, size) = match pselect_data {
        Some(p) if p != 0 => (super::read_u64(p)?, super::read_u64(p.wrapping_add(8))?),
        _ => (0, 0),
    };
    let (mask, temp) = wait_mask(frame, sigmask, size)?;
    let old = frame.sigmask();
    let bytes = (nfds as usize).div_ceil(64) * 8;
    let read_set = |p: u64| -> Result<Vec<u8>, Errno> {
        if p == 0 {
            Ok(vec![0; bytes])
        } else {
            copy_in(p, bytes)
        }
    };
    let (r, w, e) = (read_set(rd)?, read_set(wr)?, read_set(ex)?);
    let bit = |set: &[u8], fd: usize| set[fd / 8] & (1 << (fd % 8)) != 0;
    let mut entries = Vec::new();
    for fd in 0..nfds as usize {
        let mut ev = 0i16;
        if bit(&r, fd) {
            ev |= 0x1;
        }
        if bit(&w, fd) {
            ev |= 0x4;
        }
        if bit(&e, fd) {
            ev |= 0x2;
        }
        if ev != 0 {
            entries.push((fd as i32, ev));
        }
    }
    let t = timeout_ms(ts, pselect_data.is_some())?;
    let res = poll_core(k, &entries, t, mask);
    let res = res.and_then(|(revents, _)| {
        let (mut ro, mut wo, mut eo) = (vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]);
        let mut count = 0;
        for (&(fd, ev), &re) in entries.iter().zip(&revents) {
            if re & 0x20 != 0 {
                return Err(Errno::EBADF);
            }
            let fd = fd as usize;
            let set = |v: &mut Vec<u8>| v[fd / 8] |= 1 << (fd % 8);
            if ev & 0x1 != 0 && re & (0x1 | 0x8 | 0x10) != 0 {
                set(&mut ro);
                count += 1;
            }
            if ev & 0x4 != 0 && re & (0x4 | 0x8) != 0 {
                set(&mut wo);
                count += 1;
            }
            if ev & 0x2 != 0 && re & 0x2 != 0 {
                set(&mut eo);
                count += 1;
            }
        }
        for (p, v) in [(rd, &ro), (wr, &wo), (ex, &eo)] {
            if p != 0 {
                copy_out(p, v)?;
            }
        }
        Ok(count)
    });
    finish_wait(frame, temp, old, &res);
    res
}

fn copy_between(
    src: &OpenFile,
    src_off: Option<u64>,
    dst: &OpenFile,
    dst_off: Option<u64>,
    count: u64,
) -> Result<(u64, u64), Errno> {
    let mut done = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while done < count {
        let want = (count - done).min(buf.len() as u64) as usize;
        let n = kread(
            src,
            src_off.map(|o| o.saturating_add(done)),
            &mut buf[..want],
        )?;
        if n == 0 {
            break;
        }
        let mut w = 0;
        while w < n {
            let m = kwrite(
                dst,
                dst_off.map(|o| o.saturating_add(done + w as u64)),
                &buf[w..n],
            )?;
            if m == 0 {
                return Err(Errno::EIO);
            }
            w += m;
        }
        done += n as u64;
        if n < want {
            break;
        }
    }
    Ok((done, done))
}

/// sendfile(2).
pub fn sendfile(k: &Kernel, out_fd: u64, in_fd: u64, offp: u64, count: u64) -> SysResult {
    let out = file_of(k, out_fd)?;
    let inp = file_of(k, in_fd)?;
    if !out.writable() || !inp.readable() {
        return Err(Errno::EBADF);
    }
    let off = if offp != 0 {
        Some(super::read_u64(offp)?)
    } else {
        None
    };
    let (n, _) = copy_between(&inp, off, &out, None, count.min(MAX_RW))?;
    if let Some(o) = off {
        super::write_u64(offp, o + n)?;
    }
    Ok(n as i64)
}

/// copy_file_range(2).
pub fn copy_file_range(
    k: &Kernel,
    in_fd: u64,
    in_off: u64,
    out_fd: u64,
    out_off: u64,
    len: u64,
    flags: u64,
) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let inp = file_of(k, in_fd)?;
    let out = file_of(k, out_fd)?;
    if !out.writable() || !inp.readable() || out.flags() & O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    let ioff = if in_off != 0 {
        Some(super::read_u64(in_off)?)
    } else {
        None
    };
    let ooff = if out_off != 0 {
        Some(super::read_u64(out_off)?)
    } else {
        None
    };
    let (n, _) = copy_between(&inp, ioff, &out, ooff, len.min(MAX_RW))?;
    if let Some(o) = ioff {
        super::write_u64(in_off, o + n)?;
    }
    if let Some(o) = ooff {
        super::write_u64(out_off, o + n)?;
    }
    Ok(n as i64)
}
