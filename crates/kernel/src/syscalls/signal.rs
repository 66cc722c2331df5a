//! Signals, the simple cases: rt_sigaction (handlers return through myst's
//! restorer so their rt_sigreturn is not trapped), rt_sigprocmask on the
//! mask restored at syscall return, sigaltstack (recorded), kill/tgkill to self.

use super::{copy_in, copy_out, SysResult};
use crate::file::lock;
use crate::Kernel;
use myst_fs::Errno;
use myst_platform::host;
use myst_platform::sud::{self, SyscallFrame};

const SIGKILL: u64 = 9;
const SIGSTOP: u64 = 19;
const SIGSYS: u64 = 31;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESETHAND: u64 = 0x8000_0000;

fn words(b: &[u8]) -> [u64; 4] {
    let mut w = [0u64; 4];
    for (i, c) in b.chunks_exact(8).take(4).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        w[i] = u64::from_le_bytes(a);
    }
    w
}

/// rt_sigaction(2).
pub fn rt_sigaction(k: &Kernel, sig: u64, act: u64, oact: u64, size: u64) -> SysResult {
    if size != 8 || sig == 0 || sig > 64 {
        return Err(Errno::EINVAL);
    }
    if act != 0 && (sig == SIGKILL || sig == SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let new = if act != 0 {
        Some(words(&copy_in(act, 32)?))
    } else {
        None
    };
    let mut table = lock(&k.sigactions);
    if table[sig as usize][1] & SA_RESETHAND != 0
        && table[sig as usize][0] > 1
        && sud::resethand_fired(sig as i32)
    {
        // The one-shot handler ran: the action is the default again.
        table[sig as usize][0] = 0;
        k.no_handler
            .fetch_or(1u64 << (sig - 1), std::sync::atomic::Ordering::Relaxed);
    }
    let old = table[sig as usize];
    if let Some(n) = new {
        if sig == SIGSYS {
            // The host's SIGSYS stays the runtime's; a SIGSYS that someone
            // sends reaches the guest's disposition through the entry stub.
            let [handler, _, _, mask] = n;
            if handler > 1 {
                sud::install_guest_handler(sig as i32, handler, n[1], mask)?;
            } else {
                sud::set_guest_sigsys(handler);
            }
        } else {
            let [handler, flags, _, mask] = n;
            if handler <= 1 {
                let host_act = [
                    handler,
                    (flags & !SA_ONSTACK) | SA_RESTORER,
                    sud::restorer_address(),
                    mask,
                ];
                host::sigaction(sig as i32, Some(host_act))?;
            } else {
                // Through myst's trampoline, which defers the handler while
                // the thread runs runtime code.
                sud::install_guest_handler(sig as i32, handler, flags, mask)?;
            }
        }
        table[sig as usize] = n;
        let bit = 1u64 << (sig - 1);
        if n[0] <= 1 {
            k.no_handler
                .fetch_or(bit, std::sync::atomic::Ordering::Relaxed);
        } else {
            k.no_handler
                .fetch_and(!bit, std::sync::atomic::Ordering::Relaxed);
        }
    }
    drop(table);
    if oact != 0 {
        let mut b = [0u8; 32];
        for (i, w) in old.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        copy_out(oact, &b)?;
    }
    Ok(0)
}

/// rt_sigprocmask(2): changes the mask the kernel restores when this
/// syscall returns to the guest.
pub fn rt_sigprocmask(
    frame: &mut SyscallFrame,
    how: u64,
    set: u64,
    oset: u64,
    size: u64,
) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let cur = frame.sigmask();
    if set != 0 {
        let s = super::read_u64(set)?;
        let new = match how {
            0 => cur | s,
            1 => cur & !s,
            2 => s,
            _ => return Err(Errno::EINVAL),
        };
        frame.set_sigmask(new & !((1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))));
    }
    if oset != 0 {
        copy_out(oset, &cur.to_le_bytes())?;
    }
    Ok(0)
}

/// sigaltstack(2): recorded as disabled (guest handlers run on the guest's stack).
pub fn sigaltstack(ss: u64, old: u64) -> SysResult {
    if ss != 0 {
        copy_in(ss, 24)?;
    }
    if old != 0 {
        let mut b = [0u8; 24];
        b[8..12].copy_from_slice(&2i32.to_le_bytes()); // SS_DISABLE
        copy_out(old, &b)?;
    }
    Ok(0)
}

/// kill(2) to this process.
pub fn kill(pid: u64, sig: u64) -> SysResult {
    let me = host::int_syscall(39, [0; 6]);
    let pid = pid as i64 as i32;
    if sig > 64 {
        return Err(Errno::EINVAL);
    }
    if pid == -1 {
        // "Every process the user may signal" is not the guest's business.
        return Err(Errno::EPERM);
    }
    let target = if pid == 0 { me as i32 } else { pid };
    let r = host::int_syscall(62, [target as i64 as u64, sig, 0, 0, 0, 0]);
    Errno::result(r).map(|_| 0)
}

/// tkill/tgkill to a thread of this process.
pub fn tgkill(nr: u64, a: u64, b: u64, c: u64) -> SysResult {
    let me = host::int_syscall(39, [0; 6]) as u64;
    let (tgid, tid, sig) = if nr == 200 { (me, a, b) } else { (a, b, c) };
    if tgid != me {
        return Err(Errno::ESRCH);
    }
    let r = host::int_syscall(234, [tgid, tid, sig, 0, 0, 0]);
    Errno::result(r).map(|_| 0)
}

/// rt_sigsuspend(2): waits with the temporary mask (set atomically by the
/// host's rt_sigsuspend) until a signal is handled; the handler runs as the
/// call returns EINTR, and returns to the mask from before the call.
pub fn rt_sigsuspend(frame: &mut SyscallFrame, mask: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let temp = super::read_u64(mask)? & !((1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1)));
    suspend(frame, temp)
}

/// pause(2).
pub fn pause(frame: &mut SyscallFrame) -> SysResult {
    let cur = frame.sigmask();
    suspend(frame, cur)
}

fn suspend(frame: &mut SyscallFrame, temp: u64) -> SysResult {
    let old = frame.sigmask();
    let r = host::sigsuspend(temp);
    if r == sud::ERESTARTSYS {
        // A handled signal was already deferred: it runs first, then the
        // wait starts again (the signal came before the call).
        return Err(Errno::ERESTARTSYS);
    }
    let r: SysResult = Err(Errno::EINTR);
    super::fd::finish_wait(frame, Some(temp), old, &r);
    r
}

/// rt_sigpending(2): pending signals the guest blocks.
pub fn rt_sigpending(frame: &mut SyscallFrame, set: u64, size: u64) -> SysResult {
    if size > 8 {
        return Err(Errno::EINVAL);
    }
    let p = host::sigpending() & frame.sigmask();
    copy_out(set, &p.to_le_bytes()[..size as usize])?;
    Ok(0)
}

/// rt_sigtimedwait(2).
pub fn rt_sigtimedwait(set: u64, info: u64, ts: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let wanted = super::read_u64(set)? & !(1u64 << (SIGSYS - 1));
    let timeout = if ts != 0 {
        let b = copy_in(ts, 16)?;
        let g = |o: usize| {
            i64::from_le_bytes([
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
                b[o + 4],
                b[o + 5],
                b[o + 6],
                b[o + 7],
            ])
        };
        Some((g(0), g(8)))
    } else {
        None
    };
    let mut buf = [0u8; 128];
    let sig = host::sigtimedwait(wanted, &mut buf, timeout)?;
    if info != 0 {
        copy_out(info, &buf)?;
    }
    Ok(sig as i64)
}

/// setitimer(2) on the host (SIGALRM reaches the guest's handler).
pub fn setitimer(which: u64, new: u64, old: u64) -> SysResult {
    let mut v = [0i64; 4];
    if new != 0 {
        let b = copy_in(new, 32)?;
        for (i, c) in b.chunks_exact(8).enumerate() {
            v[i] = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        }
    }
    let prev = host::setitimer(which as i32, &v)?;
    if old != 0 {
        let mut b = Vec::with_capacity(32);
        for x in prev {
            b.extend_from_slice(&x.to_le_bytes());
        }
        copy_out(old, &b)?;
    }
    Ok(0)
}

/// getitimer(2).
pub fn getitimer(which: u64, cur: u64) -> SysResult {
    let v = host::getitimer(which as i32)?;
    let mut b = Vec::with_capacity(32);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    copy_out(cur, &b)?;
    Ok(0)
}

/// setpgid(2) and setsid(2) on the host: a guest process is a host
/// process, so its process group and session are the host's, and
/// kill(-pgid) reaches every member.
pub fn host_int(nr: u64, a: u64, b: u64) -> SysResult {
    Errno::result(host::int_syscall(nr, [a, b, 0, 0, 0, 0]))
}

/// rt_sigqueueinfo(2) (`tgid` None) and rt_tgsigqueueinfo(2): the guest's
/// siginfo goes to the host as it is (the host refuses forged si_code
/// values for other processes, as Linux does).
pub fn sigqueueinfo(tgid: Option<u64>, a: u64, sig: u64, info: u64) -> SysResult {
    if sig > 64 {
        return Err(Errno::EINVAL);
    }
    let b = copy_in(info, 128)?;
    let mut si = [0u8; 128];
    si.copy_from_slice(&b);
    Errno::result(host::sigqueueinfo(tgid, a, sig, &si)).map(|_| 0)
}
