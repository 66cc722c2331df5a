//! Sockets: host sockets behind guest descriptors (like pipes). Addresses
//! are passed through unchanged (AF_UNIX paths name host paths).

use super::{copy_in, copy_out, file_of, read_u64, write_i32, SysResult};
use crate::file::{lock, FileKind, OpenFile, O_NONBLOCK, O_RDWR};
use crate::Kernel;
use myst_fs::Errno;
use myst_platform::sud::SyscallFrame;
use myst_platform::{host, net};
use std::os::fd::AsRawFd;

const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;
const MAX_ADDR: usize = 128;

fn sock(k: &Kernel, fd: u64) -> Result<i32, Errno> {
    match &file_of(k, fd)?.kind {
        FileKind::Host { fd, .. } => Ok(*fd),
        FileKind::Node { .. } => Err(Errno::ENOTSOCK),
    }
}

fn install(k: &Kernel, f: std::fs::File, kind: u64) -> SysResult {
    let hfd = f.as_raw_fd();
    let flags = O_RDWR
        | if kind & SOCK_NONBLOCK != 0 {
            O_NONBLOCK
        } else {
            0
        };
    let file = OpenFile::new(
        FileKind::Host {
            fd: hfd,
            _owner: Some(f),
        },
        flags,
        b"socket:".to_vec(),
    );
    Ok(lock(&k.fds).alloc(file, kind & SOCK_CLOEXEC != 0, 0)? as i64)
}

/// socket(2).
pub fn socket(k: &Kernel, domain: u64, kind: u64, proto: u64) -> SysResult {
    let f = net::socket(domain as i32, (kind & !SOCK_CLOEXEC) as i32, proto as i32)?;
    install(k, f, kind)
}

/// socketpair(2).
pub fn socketpair(k: &Kernel, domain: u64, kind: u64, proto: u64, sv: u64) -> SysResult {
    let (a, b) = net::socketpair(domain as i32, (kind & !SOCK_CLOEXEC) as i32, proto as i32)?;
    let fa = install(k, a, kind)?;
    let fb = match install(k, b, kind) {
        Ok(f) => f,
        Err(e) => {
            let _ = lock(&k.fds).close(fa as i32);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(fa as i32).to_le_bytes());
    out[4..].copy_from_slice(&(fb as i32).to_le_bytes());
    copy_out(sv, &out)?;
    Ok(0)
}

fn read_addr(addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if len as usize > MAX_ADDR {
        return Err(Errno::EINVAL);
    }
    copy_in(addr, len as usize)
}

/// connect(2) and bind(2).
pub fn connect_or_bind(k: &Kernel, fd: u64, addr: u64, len: u64, bind: bool) -> SysResult {
    let h = sock(k, fd)?;
    let a = read_addr(addr, len)?;
    Errno::result(net::connect_or_bind(h, &a, bind))
}

/// listen(2) and shutdown(2).
pub fn int_op(k: &Kernel, nr: u64, fd: u64, arg: u64) -> SysResult {
    let h = sock(k, fd)?;
    Errno::result(host::int_syscall(nr, [h as u64, arg, 0, 0, 0, 0]))
}

fn read_len(p: u64) -> Result<usize, Errno> {
    let b = copy_in(p, 4)?;
    let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if v < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(v as usize)
}

fn give_addr(addr: u64, lenp: u64, buf: &[u8], actual: usize, room: usize) -> Result<(), Errno> {
    copy_out(addr, &buf[..actual.min(room).min(buf.len())])?;
    write_i32(lenp, actual as i32)
}

/// accept(2) and accept4(2).
pub fn accept4(k: &Kernel, fd: u64, addr: u64, lenp: u64, flags: u64) -> SysResult {
    let h = sock(k, fd)?;
    let room = if addr != 0 { read_len(lenp)? } else { 0 };
    let mut buf = [0u8; MAX_ADDR];
    let (f, len) = net::accept4(h, &mut buf, (flags & SOCK_NONBLOCK) as i32)?;
    if addr != 0 {
        give_addr(addr, lenp, &buf, len, room)?;
    }
    install(k, f, flags)
}

/// sendto(2).
pub fn sendto(
    k: &Kernel,
    fd: u64,
    buf: u64,
    len: u64,
    flags: u64,
    addr: u64,
    alen: u64,
) -> SysResult {
    let h = sock(k, fd)?;
    let to = if addr != 0 {
        Some(read_addr(addr, alen)?)
    } else {
        None
    };
    match net::sendto_guest(
        h,
        buf,
        len.min(1 << 30) as usize,
        flags as i32,
        to.as_deref(),
    ) {
        Ok(r) => Errno::result(r),
        Err(_) => Err(Errno::EFAULT),
    }
}

/// recvfrom(2).
pub fn recvfrom(
    k: &Kernel,
    fd: u64,
    buf: u64,
    len: u64,
    flags: u64,
    addr: u64,
    lenp: u64,
) -> SysResult {
    let h = sock(k, fd)?;
    let room = if addr != 0 { read_len(lenp)? } else { 0 };
    let mut abuf = [0u8; MAX_ADDR];
    let from = if addr != 0 { Some(&mut abuf[..]) } else { None };
    let (r, alen) = net::recvfrom_guest(h, buf, len.min(1 << 30) as usize, flags as i32, from)
        .map_err(|_| Errno::EFAULT)?;
    let r = Errno::result(r)?;
    if addr != 0 {
        give_addr(addr, lenp, &abuf, alen, room)?;
    }
    Ok(r)
}

struct MsgHdr {
    name: u64,
    namelen: u64,
    iov: Vec<(u64, u64)>,
    control: u64,
    controllen: u64,
}

fn read_msghdr(msg: u64) -> Result<MsgHdr, Errno> {
    let name = read_u64(msg)?;
    let namelen = read_u64(msg.wrapping_add(8))? & 0xffff_ffff;
    let iov_addr = read_u64(msg.wrapping_add(16))?;
    let iovlen = read_u64(msg.wrapping_add(24))?;
    let control = read_u64(msg.wrapping_add(32))?;
    let controllen = read_u64(msg.wrapping_add(40))?;
    let iov = super::read_iovec(iov_addr, iovlen)?;
    Ok(MsgHdr {
        name,
        namelen,
        iov,
        control,
        controllen,
    })
}

/// Largest control buffer (Linux's default optmem_max is 20 KiB).
const MAX_CONTROL: u64 = 64 * 1024;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
const CMSG_HDR: usize = 16;
const MSG_CTRUNC: i32 = 0x8;
const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;

/// The control messages in `c` as (offset of the data, data length,
/// level, type); stops at the first malformed header (EINVAL).
fn cmsgs(c: &[u8]) -> Result<Vec<(usize, usize, i32, i32)>, Errno> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + CMSG_HDR <= c.len() {
        let mut l = [0u8; 8];
        l.copy_from_slice(&c[at..at + 8]);
        let len = usize::try_from(u64::from_le_bytes(l)).map_err(|_| Errno::EINVAL)?;
        if len < CMSG_HDR || len > c.len() - at {
            return Err(Errno::EINVAL);
        }
        let level = i32::from_le_bytes([c[at + 8], c[at + 9], c[at + 10], c[at + 11]]);
        let kind = i32::from_le_bytes([c[at + 12], c[at + 13], c[at + 14], c[at + 15]]);
        out.push((at + CMSG_HDR, len - CMSG_HDR, level, kind));
        // CMSG_NXTHDR: the next header starts 8-byte aligned.
        at += len.div_ceil(8) * 8;
    }
    Ok(out)
}

/// sendmsg(2). Descriptors passed with SCM_RIGHTS must be host objects
/// (pipes, sockets, eventfds, terminals); they are translated to their
/// host descriptors, which the receiving process (a host process, like
/// this one) gets as new descriptors. Other control messages
/// (SCM_CREDENTIALS: guest pids and ids are the host's) pass unchanged.
pub fn sendmsg(k: &Kernel, fd: u64, msg: u64, flags: u64) -> SysResult {
    let h = sock(k, fd)?;
    let m = read_msghdr(msg)?;
    let name = if m.name != 0 {
        Some(read_addr(m.name, m.namelen)?)
    } else {
        None
    };
    let mut control = Vec::new();
    // The open files whose host descriptors are in flight stay open until
    // the host has taken its references.
    let mut passed = Vec::new();
    if m.controllen != 0 {
        if m.controllen > MAX_CONTROL {
            return Err(Errno::ENOBUFS.with("control data"));
        }
        control = copy_in(m.control, m.controllen as usize)?;
        for (off, len, level, kind) in cmsgs(&control)? {
            if level != SOL_SOCKET || kind != SCM_RIGHTS {
                continue;
            }
            for i in 0..len / 4 {
                let at = off + 4 * i;
                let gfd = i32::from_le_bytes([
                    control[at],
                    control[at + 1],
                    control[at + 2],
                    control[at + 3],
                ]);
                let f = lock(&k.fds).get(gfd)?.file.clone();
                let hfd = match &f.kind {
                    FileKind::Host { fd, .. } => *fd,
                    FileKind::Node { .. } => {
                        return Err(
                            Errno::EOPNOTSUPP.with("SCM_RIGHTS of a file of a myst file system")
                        )
                    }
                };
                control[at..at + 4].copy_from_slice(&hfd.to_le_bytes());
                passed.push(f);
            }
        }
    }
    let mut data = Vec::new();
    for (b, l) in &m.iov {
        if *l > 0 {
            data.extend_from_slice(&copy_in(*b, (*l).min(1 << 26) as usize)?);
        }
    }
    let r = Errno::result(net::sendmsg(
        h,
        name.as_deref(),
        &data,
        &control,
        flags as i32,
    ));
    drop(passed);
    r
}

/// The guest's open file for a host descriptor received with SCM_RIGHTS.
fn adopt(hfd: i32) -> Option<std::sync::Arc<OpenFile>> {
    let f = net::adopt(hfd)?;
    let fl = host::int_syscall(72, [hfd as u64, 3, 0, 0, 0, 0]);
    let flags = if fl < 0 {
        O_RDWR
    } else {
        fl as u32 & (3 | O_NONBLOCK | crate::file::O_APPEND)
    };
    let path: &[u8] = match host::fstat(hfd) {
        Ok(st) if u32::from_le_bytes([st[24], st[25], st[26], st[27]]) & 0o170000 == 0o140000 => {
            b"socket:"
        }
        Ok(st) if u32::from_le_bytes([st[24], st[25], st[26], st[27]]) & 0o170000 == 0o010000 => {
            b"pipe:"
        }
        _ => b"anon_inode:",
    };
    Some(OpenFile::new(
        FileKind::Host {
            fd: hfd,
            _owner: Some(f),
        },
        flags,
        path.to_vec(),
    ))
}

/// recvmsg(2). Descriptors received with SCM_RIGHTS become new guest
/// descriptors (close-on-exec with MSG_CMSG_CLOEXEC); when the guest's
/// table is full the rest are closed and MSG_CTRUNC is set, as Linux does.
pub fn recvmsg(k: &Kernel, fd: u64, msg: u64, flags: u64) -> SysResult {
    let h = sock(k, fd)?;
    let m = read_msghdr(msg)?;
    let total: u64 = m
        .iov
        .iter()
        .fold(0u64, |t, (_, l)| t.saturating_add(*l))
        .min(1 << 24);
    let mut buf = vec![0u8; total as usize];
    let mut abuf = [0u8; MAX_ADDR];
    let name = if m.name != 0 {
        Some(&mut abuf[..(m.namelen as usize).min(MAX_ADDR)])
    } else {
        None
    };
    let mut control = vec![
        0u8;
        if m.control != 0 {
            m.controllen.min(MAX_CONTROL) as usize
        } else {
            0
        }
    ];
    let (r, got) = net::recvmsg(
        h,
        name,
        &mut buf,
        &mut control,
        (flags & !MSG_CMSG_CLOEXEC) as i32,
    );
    let n = Errno::result(r)? as usize;
    let mut mflags = got.flags;
    control.truncate(got.control_len);
    let cloexec = flags & MSG_CMSG_CLOEXEC != 0;
    let mut installed = Vec::new();
    let mut failed = None;
    for (off, len, level, kind) in cmsgs(&control).unwrap_or_default() {
        if level != SOL_SOCKET || kind != SCM_RIGHTS {
            continue;
        }
        for i in 0..len / 4 {
            let at = off + 4 * i;
            let hfd = i32::from_le_bytes([
                control[at],
                control[at + 1],
                control[at + 2],
                control[at + 3],
            ]);
            // Every received host descriptor is owned from here on (closed
            // if it cannot be installed).
            let file = adopt(hfd);
            if failed.is_some() {
                continue;
            }
            let Some(file) = file else { continue };
            match lock(&k.fds).alloc(file, cloexec, 0) {
                Ok(g) => {
                    control[at..at + 4].copy_from_slice(&g.to_le_bytes());
                    installed.push(g);
                }
                Err(e) => failed = Some((e, off - CMSG_HDR)),
            }
        }
    }
    if let Some((_, cut)) = failed {
        // Linux keeps the descriptors it could install and truncates.
        control.truncate(cut);
        mflags |= MSG_CTRUNC;
    }
    let result = (|| -> Result<(), Errno> {
        let mut off = 0usize;
        for (b, l) in &m.iov {
            if off >= n {
                break;
            }
            let take = (*l as usize).min(n - off);
            copy_out(*b, &buf[off..off + take])?;
            off += take;
        }
        if m.name != 0 {
            let nlen = got.name_len;
            copy_out(m.name, &abuf[..nlen.min(m.namelen as usize).min(MAX_ADDR)])?;
            copy_out(msg.wrapping_add(8), &(nlen as u32).to_le_bytes())?;
        }
        if !control.is_empty() {
            copy_out(m.control, &control)?;
        }
        copy_out(msg.wrapping_add(40), &(control.len() as u64).to_le_bytes())?;
        copy_out(msg.wrapping_add(48), &mflags.to_le_bytes())?;
        Ok(())
    })();
    if let Err(e) = result {
        let mut t = lock(&k.fds);
        for g in installed {
            let _ = t.close(g);
        }
        return Err(e);
    }
    Ok(n as i64)
}

/// getsockname(2) and getpeername(2).
pub fn sockname(k: &Kernel, fd: u64, addr: u64, lenp: u64, peer: bool) -> SysResult {
    let h = sock(k, fd)?;
    let room = read_len(lenp)?;
    let mut buf = [0u8; MAX_ADDR];
    let len = net::sockname(h, &mut buf, peer)?;
    give_addr(addr, lenp, &buf, len, room)?;
    Ok(0)
}

/// setsockopt(2).
pub fn setsockopt(k: &Kernel, fd: u64, level: u64, name: u64, val: u64, len: u64) -> SysResult {
    let h = sock(k, fd)?;
    if len > 1024 {
        return Err(Errno::EINVAL);
    }
    let v = copy_in(val, len as usize)?;
    Errno::result(net::setsockopt(h, level as i32, name as i32, &v))
}

/// getsockopt(2).
pub fn getsockopt(k: &Kernel, fd: u64, level: u64, name: u64, val: u64, lenp: u64) -> SysResult {
    let h = sock(k, fd)?;
    let room = read_len(lenp)?.min(1024);
    let mut buf = vec![0u8; room];
    let len = net::getsockopt(h, level as i32, name as i32, &mut buf)?;
    copy_out(val, &buf[..len.min(room)])?;
    write_i32(lenp, len as i32)?;
    Ok(0)
}

/// epoll_create/epoll_create1: a host epoll instance.
pub fn epoll_create(k: &Kernel, flags: u64) -> SysResult {
    let f = net::epoll_create()?;
    install(k, f, flags & SOCK_CLOEXEC)
}

/// epoll_ctl(2): only host descriptors (pipes, sockets, terminals) can be
/// watched; files of mounted file systems give EPERM, as regular files do.
pub fn epoll_ctl(k: &Kernel, epfd: u64, op: u64, fd: u64, event: u64) -> SysResult {
    let e = sock(k, epfd).map_err(|_| Errno::EINVAL)?;
    let h = match &file_of(k, fd)?.kind {
        FileKind::Host { fd, .. } => *fd,
        FileKind::Node { .. } => return Err(Errno::EPERM),
    };
    let ev = if op == 2 {
        None
    } else {
        let b = copy_in(event, 12)?;
        let mut a = [0u8; 12];
        a.copy_from_slice(&b);
        Some(a)
    };
    Errno::result(net::epoll_ctl(e, op as i32, h, ev.as_ref()))
}

/// epoll_wait(2) and epoll_pwait(2) (`pwait`: `sigmask`/`size` give the
/// temporary signal mask, applied atomically for the wait). Any positive
/// maxevents up to INT_MAX / sizeof(struct epoll_event) is accepted, as on
/// Linux; one call returns at most 4096 events (the others stay ready for
/// the next call).
#[allow(clippy::too_many_arguments)]
pub fn epoll_pwait(
    k: &Kernel,
    frame: &mut SyscallFrame,
    epfd: u64,
    events: u64,
    max: u64,
    timeout: u64,
    pwait: bool,
    sigmask: u64,
    size: u64,
) -> SysResult {
    let e = sock(k, epfd).map_err(|_| Errno::EINVAL)?;
    let max = max as i32;
    if max <= 0 || max as usize > i32::MAX as usize / 12 {
        return Err(Errno::EINVAL);
    }
    let (mask, temp) = super::fd::wait_mask(frame, if pwait { sigmask } else { 0 }, size)?;
    let old = frame.sigmask();
    let mut buf = vec![0u8; (max as usize).min(4096) * 12];
    let r = Errno::result(net::epoll_pwait(e, &mut buf, timeout as i32, mask))
        .and_then(|n| copy_out(events, &buf[..n as usize * 12]).map(|_| n));
    super::fd::finish_wait(frame, temp, old, &r);
    r
}

/// eventfd/eventfd2: a host eventfd.
pub fn eventfd(k: &Kernel, initval: u64, flags: u64) -> SysResult {
    let f = net::eventfd(initval as u32, flags as i32)?;
    install(k, f, flags)
}
