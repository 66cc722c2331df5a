//! Sockets: host sockets behind guest descriptors (like pipes). Addresses
//! are passed through unchanged (AF_UNIX paths name host paths).

use super::{copy_in, copy_out, file_of, read_u64, write_i32, SysResult};
use crate::file::{lock, FileKind, OpenFile, O_NONBLOCK, O_RDWR};
use crate::Kernel;
use myst_fs::Errno;
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
    controllen: u64,
}

fn read_msghdr(msg: u64) -> Result<MsgHdr, Errno> {
    let name = read_u64(msg)?;
    let namelen = read_u64(msg.wrapping_add(8))? & 0xffff_ffff;
    let iov_addr = read_u64(msg.wrapping_add(16))?;
    let iovlen = read_u64(msg.wrapping_add(24))?;
    let controllen = read_u64(msg.wrapping_add(40))?;
    let iov = super::read_iovec(iov_addr, iovlen)?;
    Ok(MsgHdr {
        name,
        namelen,
        iov,
        controllen,
    })
}

/// sendmsg(2) without ancillary data.
pub fn sendmsg(k: &Kernel, fd: u64, msg: u64, flags: u64) -> SysResult {
    let h = sock(k, fd)?;
    let m = read_msghdr(msg)?;
    if m.controllen != 0 {
        return Err(Errno::EOPNOTSUPP.with("ancillary data"));
    }
    let name = if m.name != 0 {
        Some(read_addr(m.name, m.namelen)?)
    } else {
        None
    };
    let mut data = Vec::new();
    for (b, l) in &m.iov {
        if *l > 0 {
            data.extend_from_slice(&copy_in(*b, (*l).min(1 << 26) as usize)?);
        }
    }
    Errno::result(net::sendmsg(h, name.as_deref(), &data, flags as i32))
}

/// recvmsg(2) without ancillary data.
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
    let (r, nlen, mflags) = net::recvmsg(h, name, &mut buf, flags as i32);
    let n = Errno::result(r)? as usize;
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
        copy_out(m.name, &abuf[..nlen.min(m.namelen as usize).min(MAX_ADDR)])?;
        copy_out(msg.wrapping_add(8), &(nlen as u32).to_le_bytes())?;
    }
    copy_out(msg.wrapping_add(40), &0u64.to_le_bytes())?;
    copy_out(msg.wrapping_add(48), &mflags.to_le_bytes())?;
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

/// epoll_wait/epoll_pwait (the signal mask argument is ignored).
pub fn epoll_wait(k: &Kernel, epfd: u64, events: u64, max: u64, timeout: u64) -> SysResult {
    let e = sock(k, epfd).map_err(|_| Errno::EINVAL)?;
    if max as i32 <= 0 || max > 4096 {
        return Err(Errno::EINVAL);
    }
    let mut buf = vec![0u8; max as usize * 12];
    let n = Errno::result(net::epoll_wait(e, &mut buf, timeout as i32))?;
    copy_out(events, &buf[..n as usize * 12])?;
    Ok(n)
}

/// eventfd/eventfd2: a host eventfd.
pub fn eventfd(k: &Kernel, initval: u64, flags: u64) -> SysResult {
    let f = net::eventfd(initval as u32, flags as i32)?;
    install(k, f, flags)
}
