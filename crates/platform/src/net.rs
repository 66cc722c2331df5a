//! Host sockets for the guest (sockets are host objects, like pipes). Every
//! buffer passed to the host is a runtime slice whose length the call takes
//! from the slice itself, or validated guest memory.

use crate::errno::Errno;
use crate::guestmem::{self, Fault};
use crate::raw::{check, syscall6};
use std::fs::File;
use std::os::fd::FromRawFd;

const SOCK_CLOEXEC: u64 = 0o2000000;
/// Largest bounce buffer of one send or receive.
const MAX_BOUNCE: usize = 8 << 20;

fn own(fd: u64) -> File {
    // SAFETY: the host kernel just returned this new descriptor; nothing
    // else owns it.
    unsafe { File::from_raw_fd(fd as i32) }
}

/// socket(2) on the host; the descriptor is close-on-exec on the host side.
pub fn socket(domain: i32, kind: i32, proto: i32) -> Result<File, Errno> {
    // SAFETY: integer arguments only.
    let fd = check(unsafe {
        syscall6(
            41,
            domain as u64,
            kind as u64 | SOCK_CLOEXEC,
            proto as u64,
            0,
            0,
            0,
        )
    })?;
    Ok(own(fd))
}

/// socketpair(2) on the host.
pub fn socketpair(domain: i32, kind: i32, proto: i32) -> Result<(File, File), Errno> {
    let mut sv = [0i32; 2];
    // SAFETY: sv is an int[2].
    check(unsafe {
        syscall6(
            53,
            domain as u64,
            kind as u64 | SOCK_CLOEXEC,
            proto as u64,
            sv.as_mut_ptr() as u64,
            0,
            0,
        )
    })?;
    Ok((own(sv[0] as u64), own(sv[1] as u64)))
}

/// connect(2) (`bind` = false) or bind(2) with a socket address.
pub fn connect_or_bind(fd: i32, addr: &[u8], bind: bool) -> i64 {
    let nr = if bind { 49 } else { 42 };
    // SAFETY: addr is a runtime buffer of the given length.
    unsafe {
        crate::sud::blocking6(
            nr,
            fd as u64,
            addr.as_ptr() as u64,
            addr.len() as u64,
            0,
            0,
            0,
        )
    }
}

/// accept4(2); `addr` receives the peer address, its used length returned.
pub fn accept4(fd: i32, addr: &mut [u8], flags: i32) -> Result<(File, usize), Errno> {
    let mut len = addr.len() as u32;
    // SAFETY: addr and len describe a runtime buffer.
    let r = check(unsafe {
        crate::sud::blocking6(
            288,
            fd as u64,
            addr.as_mut_ptr() as u64,
            &mut len as *mut u32 as u64,
            flags as u64 | SOCK_CLOEXEC,
            0,
            0,
        )
    })?;
    Ok((own(r), len as usize))
}

/// sendto(2) from guest memory, to an optional address: the bytes are
/// copied from the checked guest range into a runtime buffer and sent with
/// no lock held (the call may block).
pub fn sendto_guest(
    fd: i32,
    buf: u64,
    len: usize,
    flags: i32,
    to: Option<&[u8]>,
) -> Result<i64, Fault> {
    // Larger datagrams than this fail on Linux too (EMSGSIZE); a stream
    // send may be partial.
    let mut data = vec![0u8; len.min(MAX_BOUNCE)];
    guestmem::copy_in(buf, &mut data)?;
    let (ap, al) = to
        .map(|a| (a.as_ptr() as u64, a.len() as u64))
        .unwrap_or((0, 0));
    // SAFETY: data and the address are runtime buffers of the given lengths.
    Ok(unsafe {
        crate::sud::blocking6(
            44,
            fd as u64,
            data.as_ptr() as u64,
            data.len() as u64,
            flags as u64,
            ap,
            al,
        )
    })
}

/// recvfrom(2) into guest memory; returns (result, address length). The
/// host call fills a runtime buffer with no lock held; the bytes are then
/// copied into the guest range (checked before and during the copy).
pub fn recvfrom_guest(
    fd: i32,
    buf: u64,
    len: usize,
    flags: i32,
    from: Option<&mut [u8]>,
) -> Result<(i64, usize), Fault> {
    guestmem::check_writable(buf, len)?;
    let mut data = vec![0u8; len.min(MAX_BOUNCE)];
    let mut alen = from.as_ref().map(|a| a.len() as u32).unwrap_or(0);
    let (ap, lp) = match from {
        Some(a) => (a.as_mut_ptr() as u64, &mut alen as *mut u32 as u64),
        None => (0, 0),
    };
    // SAFETY: data is a runtime buffer of its length; ap/lp describe a
    // runtime buffer and its length word.
    let r = unsafe {
        crate::sud::blocking6(
            45,
            fd as u64,
            data.as_mut_ptr() as u64,
            data.len() as u64,
            flags as u64,
            ap,
            lp,
        )
    };
    if r > 0 {
        // With MSG_TRUNC the result may be longer than what was copied.
        let n = (r as usize).min(data.len());
        guestmem::copy_out(buf, &data[..n])?;
    }
    Ok((r, alen as usize))
}

/// getsockname(2) (`peer` = false) or getpeername(2); returns the address length.
pub fn sockname(fd: i32, addr: &mut [u8], peer: bool) -> Result<usize, Errno> {
    let mut len = addr.len() as u32;
    let nr = if peer { 52 } else { 51 };
    // SAFETY: addr and len describe a runtime buffer.
    check(unsafe {
        syscall6(
            nr,
            fd as u64,
            addr.as_mut_ptr() as u64,
            &mut len as *mut u32 as u64,
            0,
            0,
            0,
        )
    })?;
    Ok(len as usize)
}

/// setsockopt(2).
pub fn setsockopt(fd: i32, level: i32, name: i32, val: &[u8]) -> i64 {
    // SAFETY: val is a runtime buffer of the given length.
    unsafe {
        syscall6(
            54,
            fd as u64,
            level as u64,
            name as u64,
            val.as_ptr() as u64,
            val.len() as u64,
            0,
        )
    }
}

/// getsockopt(2); returns the option's length.
pub fn getsockopt(fd: i32, level: i32, name: i32, val: &mut [u8]) -> Result<usize, Errno> {
    let mut len = val.len() as u32;
    // SAFETY: val and len describe a runtime buffer.
    check(unsafe {
        syscall6(
            55,
            fd as u64,
            level as u64,
            name as u64,
            val.as_mut_ptr() as u64,
            &mut len as *mut u32 as u64,
            0,
        )
    })?;
    Ok(len as usize)
}

/// sendmsg(2) of one gathered buffer with control data (already holding
/// host descriptor numbers for SCM_RIGHTS).
pub fn sendmsg(fd: i32, name: Option<&[u8]>, data: &[u8], control: &[u8], flags: i32) -> i64 {
    let iov: [u64; 2] = [data.as_ptr() as u64, data.len() as u64];
    let (np, nl) = name
        .map(|n| (n.as_ptr() as u64, n.len() as u64))
        .unwrap_or((0, 0));
    let (cp, cl) = if control.is_empty() {
        (0, 0)
    } else {
        (control.as_ptr() as u64, control.len() as u64)
    };
    // struct msghdr: name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad)
    let msg: [u64; 7] = [np, nl, iov.as_ptr() as u64, 1, cp, cl, 0];
    // SAFETY: msg, iov, name, data and control are runtime buffers alive
    // for the call; the descriptors in the control data are the caller's.
    unsafe { crate::sud::blocking6(46, fd as u64, msg.as_ptr() as u64, flags as u64, 0, 0, 0) }
}

/// What recvmsg(2) gave back besides the byte count.
pub struct Received {
    /// Bytes of the sender's address.
    pub name_len: usize,
    /// Bytes of control data the host wrote.
    pub control_len: usize,
    /// msg_flags.
    pub flags: i32,
}

/// recvmsg(2) into one buffer and a control buffer. Descriptors received
/// with SCM_RIGHTS are close-on-exec on the host (the guest's own
/// close-on-exec flag lives in its descriptor table).
pub fn recvmsg(
    fd: i32,
    name: Option<&mut [u8]>,
    buf: &mut [u8],
    control: &mut [u8],
    flags: i32,
) -> (i64, Received) {
    const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;
    let iov: [u64; 2] = [buf.as_mut_ptr() as u64, buf.len() as u64];
    let (np, nl) = name
        .map(|n| (n.as_mut_ptr() as u64, n.len() as u64))
        .unwrap_or((0, 0));
    let (cp, cl) = if control.is_empty() {
        (0, 0)
    } else {
        (control.as_mut_ptr() as u64, control.len() as u64)
    };
    let mut msg: [u64; 7] = [np, nl, iov.as_ptr() as u64, 1, cp, cl, 0];
    // SAFETY: msg, iov, name, buf and control are runtime buffers alive
    // for the call.
    let r = unsafe {
        crate::sud::blocking6(
            47,
            fd as u64,
            msg.as_mut_ptr() as u64,
            flags as u64 | MSG_CMSG_CLOEXEC,
            0,
            0,
            0,
        )
    };
    (
        r,
        Received {
            name_len: (msg[1] & 0xffff_ffff) as usize,
            control_len: (msg[5] as usize).min(control.len()),
            flags: (msg[6] & 0xffff_ffff) as i32,
        },
    )
}

/// Takes ownership of a descriptor the host just gave this process (one
/// received with SCM_RIGHTS).
pub fn adopt(fd: i32) -> Option<File> {
    // F_GETFD checks that the descriptor is open.
    // SAFETY: integer arguments only.
    if fd < 0 || unsafe { syscall6(72, fd as u64, 1, 0, 0, 0, 0) } < 0 {
        return None;
    }
    Some(own(fd as u64))
}

/// epoll_create1(2) on the host.
pub fn epoll_create() -> Result<File, Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(291, 0o2000000, 0, 0, 0, 0, 0) }).map(own)
}

/// epoll_ctl(2) with a 12-byte `struct epoll_event` (or none for EPOLL_CTL_DEL).
pub fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: Option<&[u8; 12]>) -> i64 {
    let p = event.map(|e| e.as_ptr() as u64).unwrap_or(0);
    // SAFETY: the event is a runtime buffer of the kernel's struct size.
    unsafe { syscall6(233, epfd as u64, op as u64, fd as u64, p, 0, 0) }
}

/// epoll_pwait(2) into a runtime buffer of 12-byte events with the signal
/// mask `mask` for the wait (applied atomically); returns the count.
pub fn epoll_pwait(epfd: i32, events: &mut [u8], timeout_ms: i32, mask: u64) -> i64 {
    let max = events.len() / 12;
    let mask = mask & !(1u64 << 30);
    // SAFETY: events holds `max` struct epoll_event; mask is an 8-byte set.
    unsafe {
        crate::sud::blocking6(
            281,
            epfd as u64,
            events.as_mut_ptr() as u64,
            max as u64,
            timeout_ms as i64 as u64,
            &mask as *const u64 as u64,
            8,
        )
    }
}

/// eventfd2(2) on the host.
pub fn eventfd(initval: u32, flags: i32) -> Result<File, Errno> {
    // SAFETY: integer arguments only.
    check(unsafe {
        syscall6(
            290,
            initval as u64,
            (flags as u64 & 0o4000) | 0o2000000,
            0,
            0,
            0,
            0,
        )
    })
    .map(own)
}
