//! Syscall dispatch, one module per family. Handlers return
//! `Ok(value)` or `Err(errno)`; the dispatcher turns errors into -errno in rax.

pub mod exec;
pub mod fd;
pub mod mem;
pub mod mount;
pub mod net;
pub mod path;
pub mod process;
pub mod signal;
pub mod table;
pub mod time;

use crate::file::{lock, OpenFile};
use crate::{kernel, Kernel};
use myst_fs::Errno;
use myst_platform::guestmem;
use myst_platform::sud::SyscallFrame;
use std::sync::Arc;

/// Result of a syscall handler.
pub type SysResult = Result<i64, Errno>;

/// Copies `len` bytes of guest memory at `addr`.
pub fn copy_in(addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
    // Validated before anything is allocated: a bogus length is EFAULT,
    // not a huge allocation.
    guestmem::with_slice(addr, len, |s| s.to_vec()).map_err(|_| Errno::EFAULT)
}

/// Copies `data` to guest memory at `addr`.
pub fn copy_out(addr: u64, data: &[u8]) -> Result<(), Errno> {
    guestmem::copy_out(addr, data).map_err(|_| Errno::EFAULT)
}

/// Reads a u64 from the guest.
pub fn read_u64(addr: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    guestmem::copy_in(addr, &mut b).map_err(|_| Errno::EFAULT)?;
    Ok(u64::from_le_bytes(b))
}

/// Writes a u64 to the guest.
pub fn write_u64(addr: u64, v: u64) -> Result<(), Errno> {
    copy_out(addr, &v.to_le_bytes())
}

/// Writes an i32 to the guest.
pub fn write_i32(addr: u64, v: i32) -> Result<(), Errno> {
    copy_out(addr, &v.to_le_bytes())
}

/// Reads a NUL-terminated path (at most PATH_MAX).
pub fn read_path(addr: u64) -> Result<Vec<u8>, Errno> {
    match guestmem::read_cstr(addr, 4095) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Errno::ENAMETOOLONG),
        Err(_) => Err(Errno::EFAULT),
    }
}

/// Reads an iovec array: (base, len) pairs.
pub fn read_iovec(addr: u64, cnt: u64) -> Result<Vec<(u64, u64)>, Errno> {
    if cnt > 1024 {
        return Err(Errno::EINVAL);
    }
    let raw = copy_in(addr, cnt as usize * 16)?;
    Ok(raw
        .chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&c[..8]);
            b.copy_from_slice(&c[8..]);
            (u64::from_le_bytes(a), u64::from_le_bytes(b))
        })
        .collect())
}

/// The open file of descriptor `fd`.
pub fn file_of(k: &Kernel, fd: u64) -> Result<Arc<OpenFile>, Errno> {
    let fd = i32::try_from(fd as i64).map_err(|_| Errno::EBADF)?;
    Ok(lock(&k.fds).get(fd)?.file.clone())
}

/// Handles one trapped guest syscall.
pub fn dispatch(frame: &mut SyscallFrame) {
    let k = kernel();
    let nr = frame.nr();
    let a = frame.args();
    let entry = table::lookup(nr);
    let traced = k.strace && k.strace_only.as_ref().is_none_or(|s| s.contains(&nr));
    let exits = entry.is_some_and(|e| e.exits());
    if traced && exits {
        strace(nr, entry, &a, 0, None);
    }
    // Calls that may block on the host let the signals the guest does not
    // block through: default actions act (Ctrl-C ends a program waiting for
    // input), guest handlers interrupt the wait (EINTR, or a restart after
    // the handler). The waits with a signal mask (poll, select, epoll_wait,
    // sigsuspend) apply it themselves, atomically, and are not `blocks`.
    let r = if !frame.is_fast() && entry.is_some_and(|e| e.blocks()) {
        let guest_mask = frame.sigmask();
        myst_platform::sud::interruptible(!guest_mask, || table::call(k, frame, nr, a))
    } else {
        table::call(k, frame, nr, a)
    };
    if matches!(&r, Err(e) if *e == Errno::ERESTARTSYS) {
        // A guest signal came before the host call started, or the host
        // restarts the call (SA_RESTART): the guest issues it again after
        // its handler ran.
        if traced {
            strace(
                nr,
                entry,
                &a,
                Errno::ERESTARTSYS.to_ret(),
                Some(Errno::ERESTARTSYS),
            );
        }
        frame.restart();
        return;
    }
    let ret = match r {
        Ok(v) => v,
        Err(e) => e.to_ret(),
    };
    if traced {
        strace(nr, entry, &a, ret, r.err());
    }
    frame.set_return(ret);
}

/// One --strace line: the call's name, its arguments in the formats the
/// table declares, and the result.
fn strace(nr: u64, entry: Option<&table::Syscall>, a: &[u64; 6], ret: i64, err: Option<Errno>) {
    use table::Arg;
    let name = entry
        .map(|e| e.name.to_string())
        .unwrap_or_else(|| format!("syscall_{nr}"));
    // Unimplemented calls show all six raw words.
    let formats: &[Arg] = entry.and_then(|e| e.args).unwrap_or(&[Arg::Ptr; 6]);
    let mut args = Vec::new();
    for (fmt, v) in formats.iter().zip(a.iter()) {
        if *fmt == Arg::Path {
            if let Ok(Some(p)) = guestmem::read_cstr(*v, 4095) {
                args.push(format!("{:?}", String::from_utf8_lossy(&p)));
                continue;
            }
        }
        if *v > 0xffff && *v < 0xffff_ffff_ffff_f000 {
            args.push(format!("{v:#x}"));
        } else {
            args.push(format!("{}", *v as i64));
        }
    }
    let res = match err {
        None if entry.is_some_and(|e| e.exits()) => "?".to_string(),
        Some(e) => format!("-1 {} ({})", e.name(), e.code),
        None if ret > 0xffff => format!("{ret:#x}"),
        None => format!("{ret}"),
    };
    let line = format!("{}({}) = {}\n", name, args.join(", "), res);
    myst_platform::host::write_stderr(line.as_bytes());
}

/// An unimplemented syscall: ENOSYS, logged once by name (or the
/// program stops, with --unhandled-syscall-enosys false).
fn unknown(k: &Kernel, nr: u64) -> SysResult {
    let name = table::name(nr).unwrap_or("(no name)");
    if !k.unhandled_enosys {
        myst_platform::host::write_stderr(format!("myst: error: unhandled syscall {name} (nr {nr}); stopping (--unhandled-syscall-enosys false)\n").as_bytes());
        myst_platform::host::exit_group(1);
    }
    if lock(&k.logged).insert(nr) {
        myst_platform::host::write_stderr(
            format!("myst: unhandled syscall {name} (nr {nr}): returning ENOSYS\n").as_bytes(),
        );
    }
    Err(Errno::ENOSYS)
}
