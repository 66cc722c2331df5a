//! Safe wrappers around the host syscalls the kernel needs. Pointers passed
//! to the host are runtime buffers (Rust slices); data for guest memory
//! goes through bounce buffers, so no lock of the runtime is held while a
//! host call waits. Calls that may block go through
//! [`crate::sud::blocking6`], so a guest signal interrupts them.

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

const PREADV2: u64 = 327;
const PWRITEV2: u64 = 328;
const RWF_NOWAIT: u64 = 8;

/// preadv2/pwritev2 of one buffer with RWF_NOWAIT (at `offset`, or the file
/// position): fails with EAGAIN instead of waiting.
///
/// # Safety
/// `ptr` must be valid for `len` bytes (written for preadv2) for the call.
unsafe fn rw_nowait(nr: u64, fd: i32, ptr: u64, len: usize, offset: Option<u64>) -> i64 {
    let iov: [u64; 2] = [ptr, len as u64];
    let off = offset.map_or(u64::MAX, |o| o);
    // SAFETY: iov describes the caller's buffer. On x86-64 the whole offset
    // goes in pos_l (pos_h is ignored); -1 means the file position.
    unsafe { syscall6(nr, fd as u64, iov.as_ptr() as u64, 1, off, 0, RWF_NOWAIT) }
}

/// Whether a RWF_NOWAIT result means "try again, waiting": the call would
/// have blocked (EAGAIN) or the file does not take RWF_NOWAIT.
fn would_block(r: i64) -> bool {
    r == Errno::EAGAIN.to_ret() || r == Errno::EOPNOTSUPP.to_ret()
}

/// Whether the host descriptor waits in read/write (no O_NONBLOCK).
fn is_blocking(fd: i32) -> bool {
    // SAFETY: F_GETFL takes no pointer.
    let fl = unsafe { syscall6(nr::FCNTL, fd as u64, 3, 0, 0, 0, 0) };
    fl >= 0 && fl & 0o4000 == 0
}

/// Largest piece of one host transfer through a bounce buffer.
const BOUNCE: usize = 1 << 20;

thread_local! {
    /// This thread's bounce buffer for host I/O on guest memory.
    static BOUNCE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's bounce buffer of `len` bytes (a fresh one if
/// the thread's own is in use).
fn with_bounce<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    BOUNCE_BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0u8; len]),
    })
}

/// Whether `fd` is a regular file or block device (reads and writes of it
/// never wait for another party, so they may be repeated to fill a request).
fn is_file(fd: i32) -> bool {
    fstat(fd)
        .map(|st| {
            let mode = u32::from_le_bytes([st[24], st[25], st[26], st[27]]) & 0o170000;
            mode == 0o100000 || mode == 0o060000
        })
        .unwrap_or(false)
}

/// Host read from `fd` into guest memory. What is there now is read
/// straight into the guest range (RWF_NOWAIT, under the guest-memory lock);
/// otherwise the host call fills a runtime bounce buffer with no lock held (it may block for as long as the other
/// end likes: a pipe, socket or terminal), then the bytes are copied into
/// the guest range, which is checked before the call (EFAULT consumes
/// nothing) and again for the copy. If the guest unmaps the range while
/// the call waits, the bytes read are lost and the result is EFAULT.
pub fn read_to_guest(fd: i32, addr: u64, len: usize, offset: Option<u64>) -> Result<i64, Fault> {
    // First without waiting, straight into guest memory (no copy).
    let r = guestmem::with_slice_mut(addr, len, |s| {
        // SAFETY: `s` is writable guest memory, mapped while the lock is
        // held; with RWF_NOWAIT the host call does not wait, so holding
        // the lock across it delays no other thread for long.
        unsafe { rw_nowait(PREADV2, fd, s.as_mut_ptr() as u64, s.len(), offset) }
    })?;
    let mut done = 0usize;
    if r >= 0 {
        // A regular file is read in full, as Linux does; from anything
        // else what is there now is the answer.
        if r as usize == len || r == 0 || !is_file(fd) {
            return Ok(r);
        }
        done = r as usize;
    } else if !would_block(r) {
        return Ok(r);
    }
    loop {
        let chunk = (len - done).min(BOUNCE);
        let r = with_bounce(chunk, |buf| {
            let (n, off) = match offset {
                Some(o) => (nr::PREAD64, o + done as u64),
                None => (nr::READ, 0),
            };
            // SAFETY: `buf` is a runtime buffer of `buf.len()` bytes.
            let r = unsafe {
                crate::sud::blocking6(
                    n,
                    fd as u64,
                    buf.as_mut_ptr() as u64,
                    buf.len() as u64,
                    off,
                    0,
                    0,
                )
            };
            if r > 0 {
                guestmem::copy_out(addr + done as u64, &buf[..r as usize])?;
            }
            Ok(r)
        })?;
        if r < 0 {
            return Ok(if done > 0 { done as i64 } else { r });
        }
        done += r as usize;
        if r as usize != chunk || done == len || !is_file(fd) {
            return Ok(done as i64);
        }
    }
}

/// Host write to `fd` from guest memory, through a runtime bounce buffer
/// (copied from the checked guest range, then written with no lock held).
pub fn write_from_guest(fd: i32, addr: u64, len: usize, offset: Option<u64>) -> Result<i64, Fault> {
    // First without waiting, straight from guest memory (no copy); what
    // does not fit now is written through the bounce buffer, which waits.
    let r = guestmem::with_slice(addr, len, |s| {
        // SAFETY: `s` is readable guest memory, mapped while the lock is
        // held; with RWF_NOWAIT the host call does not wait.
        unsafe { rw_nowait(PWRITEV2, fd, s.as_ptr() as u64, s.len(), offset) }
    })?;
    let mut done = 0usize;
    if r >= 0 {
        done = r as usize;
        if done == len || done > 0 && !is_blocking(fd) {
            return Ok(r);
        }
    } else if !would_block(r) {
        return Ok(r);
    }
    loop {
        let chunk = (len - done).min(BOUNCE);
        let r = with_bounce(chunk, |buf| {
            guestmem::copy_in(addr + done as u64, buf)?;
            let (n, off) = match offset {
                Some(o) => (nr::PWRITE64, o + done as u64),
                None => (nr::WRITE, 0),
            };
            // SAFETY: `buf` is a runtime buffer of `buf.len()` bytes.
            Ok(unsafe {
                crate::sud::blocking6(
                    n,
                    fd as u64,
                    buf.as_ptr() as u64,
                    buf.len() as u64,
                    off,
                    0,
                    0,
                )
            })
        })?;
        if r < 0 {
            return Ok(if done > 0 { done as i64 } else { r });
        }
        done += r as usize;
        if r as usize != chunk || done == len {
            return Ok(done as i64);
        }
    }
}

/// Host write of a runtime buffer (may block).
pub fn write(fd: i32, data: &[u8]) -> i64 {
    // SAFETY: valid runtime buffer.
    unsafe {
        crate::sud::blocking6(
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

/// Host read into a runtime buffer (may block).
pub fn read(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: valid runtime buffer.
    unsafe {
        crate::sud::blocking6(
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

/// Host fcntl with an integer argument for the owner and signal commands
/// (F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG) and the pipe size
/// (F_SETPIPE_SZ, F_GETPIPE_SZ); -EINVAL for other commands.
pub fn fcntl_int(fd: i32, cmd: i32, arg: u64) -> i64 {
    if !matches!(cmd, 8..=11 | 1031 | 1032) {
        return Errno::EINVAL.to_ret();
    }
    // SAFETY: these commands take an integer, not a pointer.
    unsafe { syscall6(nr::FCNTL, fd as u64, cmd as u64, arg, 0, 0, 0) }
}

/// Host fcntl F_SETOWN_EX / F_GETOWN_EX with an 8-byte `struct f_owner_ex`.
pub fn fcntl_buf(fd: i32, cmd: i32, buf: &mut [u8; 8]) -> i64 {
    if !matches!(cmd, 15 | 16) {
        return Errno::EINVAL.to_ret();
    }
    // SAFETY: buf is a runtime buffer of the struct's size.
    unsafe {
        syscall6(
            nr::FCNTL,
            fd as u64,
            cmd as u64,
            buf.as_mut_ptr() as u64,
            0,
            0,
            0,
        )
    }
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
        crate::sud::blocking6(
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
///
/// It happens when no other thread of the process is in runtime code (see
/// `sud::world`), with the guest memory map locked, through the C library's
/// fork (its handlers take and reset the allocator's locks): a child of a
/// multi-threaded process never inherits a runtime lock held by a thread it
/// does not have.
pub fn fork() -> Result<u32, Errno> {
    extern "C" {
        #[link_name = "fork"]
        fn libc_fork() -> i32;
        #[link_name = "__errno_location"]
        fn libc_errno() -> *mut i32;
    }
    crate::sud::world::alone(|| {
        guestmem::with_map_locked(|| {
            // SAFETY: fork duplicates the process; memory stays valid in
            // both. errno is this thread's (the runtime's FS base is
            // installed).
            unsafe {
                let r = libc_fork();
                if r < 0 {
                    Err(Errno::from_raw(*libc_errno()))
                } else {
                    Ok(r as u32)
                }
            }
        })
    })
}

/// Host wait4 on `pid`; returns (pid, raw status).
pub fn wait4(pid: i32, options: i32) -> Result<(i32, i32), Errno> {
    let mut status = 0i32;
    // SAFETY: status is a valid int; no rusage.
    let r = check(unsafe {
        crate::sud::blocking6(
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

/// Host ppoll over (fd, events, revents) triples with the signal mask
/// `mask` applied atomically for the wait (`timeout_ms` < 0: no timeout);
/// returns the ready count. Interrupted by a guest signal the mask lets
/// through: EINTR, or [`crate::sud::ERESTARTSYS`] if it came before the wait.
pub fn ppoll(fds: &mut [(i32, i16, i16)], timeout_ms: i32, mask: u64) -> Result<usize, Errno> {
    let mut raw: Vec<u8> = Vec::with_capacity(fds.len() * 8);
    for (fd, ev, _) in fds.iter() {
        raw.extend_from_slice(&fd.to_le_bytes());
        raw.extend_from_slice(&ev.to_le_bytes());
        raw.extend_from_slice(&0i16.to_le_bytes());
    }
    let ts = [
        i64::from(timeout_ms) / 1000,
        (i64::from(timeout_ms) % 1000) * 1_000_000,
    ];
    let tp = if timeout_ms < 0 {
        0
    } else {
        ts.as_ptr() as u64
    };
    let mask = mask & !(1u64 << 30);
    // SAFETY: raw is an array of struct pollfd of the given count; ts and
    // mask are runtime buffers of the kernel's sizes.
    let n = check(unsafe {
        crate::sud::blocking6(
            271,
            raw.as_mut_ptr() as u64,
            fds.len() as u64,
            tp,
            &mask as *const u64 as u64,
            8,
            0,
        )
    })?;
    for (i, e) in fds.iter_mut().enumerate() {
        e.2 = i16::from_le_bytes([raw[i * 8 + 6], raw[i * 8 + 7]]);
    }
    Ok(n as usize)
}

/// Host fcntl record-lock command `cmd` (F_GETLK, F_SETLK, F_SETLKW and
/// the F_OFD_ forms) with a runtime copy of the guest's `struct flock`.
pub fn fcntl_lock(fd: i32, cmd: u64, lock: &mut [u8; 32]) -> Result<(), Errno> {
    if !matches!(cmd, 5..=7 | 36..=38) {
        return Err(Errno::EINVAL.with("not a record-lock command"));
    }
    // SAFETY: these commands read and write one 32-byte struct flock,
    // which `lock` is, alive for the call.
    check(unsafe { syscall6(nr::FCNTL, fd as u64, cmd, lock.as_mut_ptr() as u64, 0, 0, 0) })
        .map(|_| ())
}

/// Host flock(2).
pub fn flock(fd: i32, op: i32) -> Result<(), Errno> {
    // SAFETY: flock takes integers only.
    check(unsafe { syscall6(nr::FLOCK, fd as u64, op as u64, 0, 0, 0, 0) }).map(|_| ())
}

/// Host rt_sigsuspend with `mask` (SIGSYS never blocked): returns the
/// raw result (-EINTR once a signal was handled, or
/// [`crate::sud::ERESTARTSYS`] if a deferred one was already pending).
pub fn sigsuspend(mask: u64) -> i64 {
    let mask = mask & !(1u64 << 30);
    // SAFETY: mask is an 8-byte signal set.
    unsafe { crate::sud::blocking6(130, &mask as *const u64 as u64, 8, 0, 0, 0, 0) }
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
        crate::sud::blocking6(
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

/// Host rt_sigqueueinfo(pid, sig, info) (`tgid` None) or
/// rt_tgsigqueueinfo(tgid, tid, sig, info) with a runtime siginfo copy.
pub fn sigqueueinfo(tgid: Option<u64>, id: u64, sig: u64, info: &[u8; 128]) -> i64 {
    // SAFETY: info is a 128-byte siginfo_t in runtime memory.
    unsafe {
        match tgid {
            None => syscall6(129, id, sig, info.as_ptr() as u64, 0, 0, 0),
            Some(t) => syscall6(297, t, id, sig, info.as_ptr() as u64, 0, 0),
        }
    }
}
