//! Safe wrappers around the host syscalls the kernel needs. Pointers passed
//! to the host are either runtime buffers (Rust slices) or guest ranges
//! validated by [`crate::guestmem`] under its lock.

use crate::errno::Errno;
use crate::guestmem::{self, Fault};
use crate::raw::{check, nr, syscall6};

extern "C" {
    #[link_name = "getauxval"]
    fn libc_getauxval(kind: u64) -> u64;
}

/// An auxiliary-vector value of the myst process (0 if absent), as the host
/// kernel passed it. Read from /proc/self/auxv first: the static glibc in
/// myst rewrites its own copy of AT_HWCAP (to its internal x86 feature bits),
/// so its getauxval does not give the kernel's value to hand to the guest.
pub fn getauxval(kind: u64) -> u64 {
    static HOST_AUXV: std::sync::OnceLock<Vec<(u64, u64)>> = std::sync::OnceLock::new();
    let auxv = HOST_AUXV.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .map(|b| {
                b.chunks_exact(16)
                    .map(|c| {
                        let mut k = [0u8; 8];
                        let mut v = [0u8; 8];
                        k.copy_from_slice(&c[..8]);
                        v.copy_from_slice(&c[8..]);
                        (u64::from_le_bytes(k), u64::from_le_bytes(v))
                    })
                    .take_while(|&(k, _)| k != 0)
                    .collect()
            })
            .unwrap_or_default()
    });
    if let Some(&(_, v)) = auxv.iter().find(|&&(k, _)| k == kind) {
        return v;
    }
    // SAFETY: glibc's getauxval reads the process auxv; no pointers involved.
    unsafe { libc_getauxval(kind) }
}

/// Issues a host syscall whose arguments are all plain integers (no
/// pointers), returning the raw result. Allowed only for the calls listed.
pub fn int_syscall(nr: u64, args: [u64; 6]) -> i64 {
    const ALLOWED: &[u64] = &[
        39,  // getpid
        110, // getppid
        186, // gettid
        102, // getuid
        104, // getgid
        107, // geteuid
        108, // getegid
        24,  // sched_yield
        62,  // kill
        200, // tkill
        234, // tgkill
        72,  // fcntl (F_GETFL/F_SETFL/F_GETFD/F_SETFD: integer forms only)
        8,   // lseek
        74,  // fsync
        75,  // fdatasync
        121, // getpgid
        109, // setpgid
        111, // getpgrp
        112, // setsid
        124, // getsid
        95,  // umask
        3,   // close
        32,  // dup
        33,  // dup2
        292, // dup3
        48,  // shutdown
        37,  // alarm
        50,  // listen
    ];
    if !ALLOWED.contains(&nr) {
        return Errno::ENOSYS.to_ret();
    }
    if nr == 72 && !matches!(args[1], 1..=4) {
        return Errno::EINVAL.to_ret();
    }
    // SAFETY: the listed syscalls take no pointers; they cannot touch memory.
    unsafe { syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5]) }
}

/// Writes to the host's stderr (best effort).
pub fn write_stderr(msg: &[u8]) {
    let mut off = 0;
    while off < msg.len() {
        let rest = &msg[off..];
        // SAFETY: `rest` is a valid runtime buffer.
        let r = unsafe {
            syscall6(
                nr::WRITE,
                2,
                rest.as_ptr() as u64,
                rest.len() as u64,
                0,
                0,
                0,
            )
        };
        if r <= 0 {
            break;
        }
        off += r as usize;
    }
}

/// Ends the whole process with `code`.
pub fn exit_group(code: i32) -> ! {
    loop {
        // SAFETY: exit_group does not return.
        unsafe { syscall6(nr::EXIT_GROUP, code as u64, 0, 0, 0, 0, 0) };
    }
}

/// Ends the calling thread.
pub fn exit_thread(code: i32) -> ! {
    loop {
        // SAFETY: exit does not return.
        unsafe { syscall6(nr::EXIT, code as u64, 0, 0, 0, 0, 0) };
    }
}

/// Host read from `fd` straight into guest memory.
pub fn read_to_guest(fd: i32, addr: u64, len: usize, offset: Option<u64>) -> Result<i64, Fault> {
    guestmem::with_slice_mut(addr, len, |s| {
        let (n, off) = match offset {
            Some(o) => (nr::PREAD64, o),
            None => (nr::READ, 0),
        };
        // SAFETY: `s` is validated writable guest memory held mapped.
        unsafe {
            syscall6(
                n,
                fd as u64,
                s.as_mut_ptr() as u64,
                s.len() as u64,
                off,
                0,
                0,
            )
        }
    })
}

/// Host write to `fd` straight from guest memory.
pub fn write_from_guest(fd: i32, addr: u64, len: usize, offset: Option<u64>) -> Result<i64, Fault> {
    guestmem::with_slice(addr, len, |s| {
        let (n, off) = match offset {
            Some(o) => (nr::PWRITE64, o),
            None => (nr::WRITE, 0),
        };
        // SAFETY: `s` is validated readable guest memory held mapped.
        unsafe { syscall6(n, fd as u64, s.as_ptr() as u64, s.len() as u64, off, 0, 0) }
    })
}

/// Host write of a runtime buffer.
pub fn write(fd: i32, data: &[u8]) -> i64 {
    // SAFETY: valid runtime buffer.
    unsafe {
        syscall6(
            nr::WRITE,
            fd as u64,
            data.as_ptr() as u64,
            data.len() as u64,
            0,
            0,
            0,
        )
    }
}

/// Host read into a runtime buffer.
pub fn read(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: valid runtime buffer.
    unsafe {
        syscall6(
            nr::READ,
            fd as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
            0,
        )
    }
}

/// Host fstat: the raw 144-byte `struct stat`.
pub fn fstat(fd: i32) -> Result<[u8; 144], Errno> {
    let mut st = [0u8; 144];
    // SAFETY: st is 144 bytes, the size of struct stat on x86-64.
    check(unsafe { syscall6(nr::FSTAT, fd as u64, st.as_mut_ptr() as u64, 0, 0, 0, 0) })?;
    Ok(st)
}

/// Host ioctl with a runtime buffer of `buf.len()` bytes as its argument
/// (the caller knows the request's size).
pub fn ioctl_buf(fd: i32, req: u64, buf: &mut [u8]) -> i64 {
    // SAFETY: buf is a valid runtime buffer at least as large as the request needs.
    unsafe { syscall6(nr::IOCTL, fd as u64, req, buf.as_mut_ptr() as u64, 0, 0, 0) }
}

/// Host ioctl with an integer argument.
pub fn ioctl_int(fd: i32, req: u64, arg: u64) -> i64 {
    const INT_REQS: &[u64] = &[
        0x5409, /* TCSBRK */
        0x540B, /* TCFLSH */
        0x540A, /* TCXONC */
    ];
    if !INT_REQS.contains(&req) {
        return Errno::EINVAL.to_ret();
    }
    // SAFETY: the listed requests take an integer, not a pointer.
    unsafe { syscall6(nr::IOCTL, fd as u64, req, arg, 0, 0, 0) }
}

/// Fills `buf` with random bytes from the host.
pub fn getrandom(buf: &mut [u8]) -> Result<(), Errno> {
    let mut off = 0;
    while off < buf.len() {
        let rest = &mut buf[off..];
        // SAFETY: valid runtime buffer.
        let r = unsafe {
            syscall6(
                nr::GETRANDOM,
                rest.as_mut_ptr() as u64,
                rest.len() as u64,
                0,
                0,
                0,
                0,
            )
        };
        match check(r) {
            Ok(n) => off += n as usize,
            Err(e) if e == Errno::EINTR => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Host uname: the raw 390-byte `struct utsname`.
pub fn uname() -> [u8; 390] {
    let mut u = [0u8; 390];
    // SAFETY: u is the size of struct utsname.
    unsafe { syscall6(nr::UNAME, u.as_mut_ptr() as u64, 0, 0, 0, 0, 0) };
    u
}

/// Host sysinfo: the raw 112-byte `struct sysinfo`.
pub fn sysinfo() -> [u8; 112] {
    let mut s = [0u8; 112];
    // SAFETY: s is the size of struct sysinfo.
    unsafe { syscall6(99, s.as_mut_ptr() as u64, 0, 0, 0, 0, 0) };
    s
}

/// Host clock_gettime (the syscall, not the vDSO): (seconds, nanoseconds).
pub fn clock_gettime(clock: i32) -> Result<(i64, i64), Errno> {
    let mut ts = [0i64; 2];
    // SAFETY: ts is a struct timespec.
    check(unsafe { syscall6(228, clock as u64, ts.as_mut_ptr() as u64, 0, 0, 0, 0) })?;
    Ok((ts[0], ts[1]))
}

/// Host clock_getres.
pub fn clock_getres(clock: i32) -> Result<(i64, i64), Errno> {
    let mut ts = [0i64; 2];
    // SAFETY: ts is a struct timespec.
    check(unsafe { syscall6(229, clock as u64, ts.as_mut_ptr() as u64, 0, 0, 0, 0) })?;
    Ok((ts[0], ts[1]))
}

/// Host clock_nanosleep; on EINTR returns the remaining time in `Err((EINTR, rem))`.
pub fn clock_nanosleep(clock: i32, flags: i32, req: (i64, i64)) -> Result<(), (Errno, (i64, i64))> {
    let ts = [req.0, req.1];
    let mut rem = [0i64; 2];
    // SAFETY: ts and rem are struct timespec.
    let r = unsafe {
        syscall6(
            230,
            clock as u64,
            flags as u64,
            ts.as_ptr() as u64,
            rem.as_mut_ptr() as u64,
            0,
            0,
        )
    };
    // clock_nanosleep returns the error number directly (positive).
    if r == 0 {
        Ok(())
    } else {
        let e = if r < 0 { -r } else { r };
        Err((Errno::from_raw(e as i32), (rem[0], rem[1])))
    }
}

/// Host sched_getaffinity for this process into `mask`; returns bytes written.
pub fn sched_getaffinity(mask: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: mask is a valid runtime buffer of the given length.
    check(unsafe { syscall6(204, 0, mask.len() as u64, mask.as_mut_ptr() as u64, 0, 0, 0) })
        .map(|n| n as usize)
}

/// The CPU and NUMA node this thread runs on (host getcpu).
pub fn getcpu() -> Result<(u32, u32), Errno> {
    let mut cpu = 0u32;
    let mut node = 0u32;
    // SAFETY: both pointers are to live locals of the right size; the third
    // argument (a cache the kernel ignores) is NULL.
    check(unsafe {
        syscall6(
            309,
            &mut cpu as *mut u32 as u64,
            &mut node as *mut u32 as u64,
            0,
            0,
            0,
            0,
        )
    })?;
    Ok((cpu, node))
}

/// Host prlimit64 on this process; returns the old (cur, max).
pub fn prlimit(resource: u32, new: Option<[u64; 2]>) -> Result<[u64; 2], Errno> {
    let mut old = [0u64; 2];
    let newp = new.as_ref().map(|n| n.as_ptr() as u64).unwrap_or(0);
    // SAFETY: newp is null or a valid rlimit; old is a valid rlimit.
    check(unsafe { syscall6(302, 0, resource as u64, newp, old.as_mut_ptr() as u64, 0, 0) })?;
    Ok(old)
}

/// Host rt_sigaction with kernel `k_sigaction` layouts [handler, flags, restorer, mask].
pub fn sigaction(sig: i32, new: Option<[u64; 4]>) -> Result<[u64; 4], Errno> {
    if sig == 31 {
        // SIGSYS belongs to the runtime.
        return Err(Errno::EINVAL);
    }
    let mut old = [0u64; 4];
    let newp = new.as_ref().map(|n| n.as_ptr() as u64).unwrap_or(0);
    // SAFETY: newp is null or a valid k_sigaction; old is a valid k_sigaction.
    // The handler address is guest code; running it is the guest's business.
    check(unsafe {
        syscall6(
            nr::RT_SIGACTION,
            sig as u64,
            newp,
            old.as_mut_ptr() as u64,
            8,
            0,
            0,
        )
    })?;
    Ok(old)
}

/// Host fork; Ok(0) in the child. The child must re-arm SUD ([`crate::sud::rearm_after_fork`]).
pub fn fork() -> Result<u32, Errno> {
    // SAFETY: fork duplicates the process; memory stays valid in both.
    check(unsafe { syscall6(nr::FORK, 0, 0, 0, 0, 0, 0) }).map(|p| p as u32)
}

/// Host wait4 on `pid`; returns (pid, raw status).
pub fn wait4(pid: i32, options: i32) -> Result<(i32, i32), Errno> {
    let mut status = 0i32;
    // SAFETY: status is a valid int; no rusage.
    let r = check(unsafe {
        syscall6(
            nr::WAIT4,
            pid as i64 as u64,
            &mut status as *mut i32 as u64,
            options as u64,
            0,
            0,
            0,
        )
    })?;
    Ok((r as i32, status))
}

/// A host pipe as two owned files (read end, write end).
pub fn pipe(flags: i32) -> Result<(std::fs::File, std::fs::File), Errno> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: fds is an int[2].
    check(unsafe {
        syscall6(
            293,
            fds.as_mut_ptr() as u64,
            (flags & 0o2004000) as u64 | 0o2000000,
            0,
            0,
            0,
            0,
        )
    })?;
    // SAFETY: the kernel just created both descriptors; nothing else owns them.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

/// Host poll over (fd, events, revents) triples; returns the ready count.
pub fn poll(fds: &mut [(i32, i16, i16)], timeout_ms: i32) -> Result<usize, Errno> {
    let mut raw: Vec<u8> = Vec::with_capacity(fds.len() * 8);
    for (fd, ev, _) in fds.iter() {
        raw.extend_from_slice(&fd.to_le_bytes());
        raw.extend_from_slice(&ev.to_le_bytes());
        raw.extend_from_slice(&0i16.to_le_bytes());
    }
    // SAFETY: raw is an array of struct pollfd of the given count.
    let n = check(unsafe {
        syscall6(
            7,
            raw.as_mut_ptr() as u64,
            fds.len() as u64,
            timeout_ms as i64 as u64,
            0,
            0,
            0,
        )
    })?;
    for (i, e) in fds.iter_mut().enumerate() {
        e.2 = i16::from_le_bytes([raw[i * 8 + 6], raw[i * 8 + 7]]);
    }
    Ok(n as usize)
}

/// Host fcntl F_SETFL on a descriptor.
pub fn set_status_flags(fd: i32, flags: u32) -> Result<(), Errno> {
    // SAFETY: F_SETFL takes an integer.
    check(unsafe { syscall6(nr::FCNTL, fd as u64, 4, flags as u64, 0, 0, 0) }).map(|_| ())
}

/// Host setitimer(2) with runtime buffers; returns the old value.
pub fn setitimer(which: i32, new: &[i64; 4]) -> Result<[i64; 4], Errno> {
    let mut old = [0i64; 4];
    // SAFETY: new and old are struct itimerval.
    check(unsafe {
        syscall6(
            38,
            which as u64,
            new.as_ptr() as u64,
            old.as_mut_ptr() as u64,
            0,
            0,
            0,
        )
    })?;
    Ok(old)
}

/// Host getitimer(2).
pub fn getitimer(which: i32) -> Result<[i64; 4], Errno> {
    let mut cur = [0i64; 4];
    // SAFETY: cur is a struct itimerval.
    check(unsafe { syscall6(36, which as u64, cur.as_mut_ptr() as u64, 0, 0, 0, 0) })?;
    Ok(cur)
}

/// Host rt_sigtimedwait(2) for the signals in `set`; fills `info` (a
/// siginfo_t) and returns the signal number.
pub fn sigtimedwait(
    set: u64,
    info: &mut [u8; 128],
    timeout: Option<(i64, i64)>,
) -> Result<i32, Errno> {
    let ts = timeout.map(|(s, n)| [s, n]);
    let tp = ts.as_ref().map(|t| t.as_ptr() as u64).unwrap_or(0);
    // SAFETY: set, info and ts are runtime buffers of the kernel's sizes.
    check(unsafe {
        syscall6(
            128,
            &set as *const u64 as u64,
            info.as_mut_ptr() as u64,
            tp,
            8,
            0,
            0,
        )
    })
    .map(|s| s as i32)
}

/// Host rt_sigpending(2).
pub fn sigpending() -> u64 {
    let mut set = 0u64;
    // SAFETY: set is an 8-byte signal set.
    unsafe { syscall6(127, &mut set as *mut u64 as u64, 8, 0, 0, 0, 0) };
    set
}
