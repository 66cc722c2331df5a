//! Syscall dispatch, one module per family. Handlers return
//! `Ok(value)` or `Err(errno)`; the dispatcher turns errors into -errno in rax.

pub mod exec;
pub mod fd;
pub mod mem;
pub mod mount;
pub mod names;
pub mod net;
pub mod path;
pub mod process;
pub mod signal;
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
    let traced = k.strace && k.strace_only.as_ref().is_none_or(|s| s.contains(&nr));
    if traced && (nr == 60 || nr == 231) {
        strace(nr, &a, 0, None);
    }
    // Calls that may block on the host let default-action signals through
    // (Ctrl-C ends a program waiting for input, as natively).
    let r = if !frame.is_fast()
        && matches!(
            nr,
            0 | 1
                | 7
                | 17
                | 18
                | 19
                | 20
                | 23
                | 35
                | 42
                | 43
                | 44
                | 45
                | 46
                | 47
                | 61
                | 202
                | 230
                | 232
                | 270
                | 271
                | 281
                | 288
                | 295
                | 296
        ) {
        let guest_mask = frame.sigmask();
        let no_handler = k.no_handler.load(std::sync::atomic::Ordering::Relaxed);
        myst_platform::sud::interruptible(no_handler & !guest_mask, || call(k, frame, nr, a))
    } else {
        call(k, frame, nr, a)
    };
    let ret = match r {
        Ok(v) => v,
        Err(e) => -(e.code as i64),
    };
    if traced {
        strace(nr, &a, ret, r.err());
    }
    frame.set_return(ret);
}

fn strace(nr: u64, a: &[u64; 6], ret: i64, err: Option<Errno>) {
    let name = names::name(nr)
        .map(str::to_string)
        .unwrap_or_else(|| format!("syscall_{nr}"));
    let nargs = match name.as_str() {
        "getpid" | "getppid" | "gettid" | "getuid" | "geteuid" | "getgid" | "getegid"
        | "sched_yield" | "fork" | "vfork" | "getpgrp" | "setsid" => 0,
        "close" | "exit" | "exit_group" | "brk" | "umask" | "dup" | "chdir" | "fchdir"
        | "rmdir" | "unlink" | "uname" | "sysinfo" | "time" | "set_tid_address" => 1,
        "open" | "stat" | "lstat" | "fstat" | "munmap" | "access" | "mkdir" | "rename" | "link"
        | "symlink" | "arch_prctl" | "gettimeofday" | "clock_gettime" | "clock_getres"
        | "nanosleep" | "dup2" | "getcwd" | "kill" | "chmod" | "fchmod" | "truncate"
        | "ftruncate" | "statfs" | "fstatfs" | "set_robust_list" | "sigaltstack" => 2,
        "read" | "write" | "lseek" | "mprotect" | "ioctl" | "readv" | "writev" | "fcntl"
        | "getdents64" | "readlink" | "chown" | "fchown" | "lchown" | "dup3" | "getrandom"
        | "mkdirat" | "unlinkat" | "madvise" | "tgkill" | "sched_getaffinity" => 3,
        "openat" | "newfstatat" | "rt_sigaction" | "rt_sigprocmask" | "pread64" | "pwrite64"
        | "faccessat" | "readlinkat" | "renameat" | "prlimit64" | "utimensat"
        | "clock_nanosleep" | "sendfile" | "fchownat" | "faccessat2" | "wait4" | "rseq" => 4,
        "statx" | "mremap" | "renameat2" | "linkat" | "prctl" => 5,
        _ => 6,
    };
    let path_arg: Option<usize> = match name.as_str() {
        "open" | "execve" | "stat" | "lstat" | "access" | "mkdir" | "rmdir" | "unlink"
        | "chdir" | "readlink" | "chmod" | "chown" | "lchown" | "truncate" | "statfs" | "creat"
        | "rename" | "link" | "symlink" => Some(0),
        "openat" | "newfstatat" | "faccessat" | "faccessat2" | "readlinkat" | "mkdirat"
        | "unlinkat" | "statx" | "utimensat" | "fchownat" | "fchmodat" | "renameat"
        | "renameat2" => Some(1),
        _ => None,
    };
    let mut args = Vec::new();
    for (i, v) in a.iter().take(nargs).enumerate() {
        if Some(i) == path_arg {
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
        None if nr == 60 || nr == 231 => "?".to_string(),
        Some(e) => format!("-1 {} ({})", e.name(), e.code),
        None if ret > 0xffff => format!("{ret:#x}"),
        None => format!("{ret}"),
    };
    let line = format!("{}({}) = {}\n", name, args.join(", "), res);
    myst_platform::host::write_stderr(line.as_bytes());
}

fn unknown(k: &Kernel, nr: u64) -> SysResult {
    let name = names::name(nr).unwrap_or("(no name)");
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

fn call(k: &Kernel, frame: &mut SyscallFrame, nr: u64, a: [u64; 6]) -> SysResult {
    use fd::*;
    use mem::*;
    use path::*;
    use process::*;
    use signal::*;
    use time::*;
    const AT_FDCWD: u64 = -100i64 as u64;
    match nr {
        0 => read(k, a[0], a[1], a[2]),
        1 => write(k, a[0], a[1], a[2]),
        2 => openat(k, AT_FDCWD, a[0], a[1], a[2]),
        3 => close(k, a[0]),
        4 => fstatat(k, AT_FDCWD, a[0], a[1], 0),
        5 => fstat(k, a[0], a[1]),
        6 => fstatat(k, AT_FDCWD, a[0], a[1], 0x100),
        7 => poll(k, a[0], a[1], a[2]),
        23 => select(k, a[0], a[1], a[2], a[3], a[4], false),
        34 => pause(frame),
        36 => getitimer(a[0], a[1]),
        37 => Ok(myst_platform::host::int_syscall(37, [a[0], 0, 0, 0, 0, 0])),
        38 => setitimer(a[0], a[1], a[2]),
        127 => rt_sigpending(frame, a[0], a[1]),
        128 => rt_sigtimedwait(a[0], a[1], a[2], a[3]),
        130 => rt_sigsuspend(frame, a[0], a[1]),
        270 => select(k, a[0], a[1], a[2], a[3], a[4], true),
        271 => ppoll(k, a[0], a[1], a[2]),
        162 | 306 => Ok(0),
        8 => lseek(k, a[0], a[1], a[2]),
        9 => mmap(k, a[0], a[1], a[2], a[3], a[4], a[5]),
        10 => mprotect(a[0], a[1], a[2]),
        11 => munmap(a[0], a[1]),
        12 => brk(k, a[0]),
        13 => rt_sigaction(k, a[0], a[1], a[2], a[3]),
        14 => rt_sigprocmask(frame, a[0], a[1], a[2], a[3]),
        16 => ioctl(k, a[0], a[1], a[2]),
        17 => pread(k, a[0], a[1], a[2], a[3]),
        18 => pwrite(k, a[0], a[1], a[2], a[3]),
        19 => readv(k, a[0], a[1], a[2], None),
        20 => writev(k, a[0], a[1], a[2], None),
        21 => faccessat(k, AT_FDCWD, a[0], a[1], 0),
        22 | 293 => pipe2(k, a[0], if nr == 22 { 0 } else { a[1] }),
        24 => Ok(0),
        25 => mremap(a[0], a[1], a[2], a[3], a[4]),
        26 | 27 => Ok(0),
        28 => madvise(a[0], a[1], a[2]),
        32 => dup(k, a[0]),
        33 => dup2(k, a[0], a[1]),
        35 => nanosleep(a[0], a[1]),
        39 => Ok(myst_platform::host::int_syscall(39, [0; 6])),
        40 => sendfile(k, a[0], a[1], a[2], a[3]),
        60 => exit(a[0]),
        56 => exec::clone(frame, a[0], a[1], a[2], a[3], a[4]),
        57 | 58 => exec::fork(frame),
        59 => exec::execve(k, frame, a[0], a[1], a[2]),
        61 => exec::wait4(a[0], a[1], a[2], a[3]),
        62 => kill(a[0], a[1]),
        63 => uname(k, a[0]),
        72 => fcntl(k, a[0], a[1], a[2]),
        73 => Ok(0),
        74 | 75 => fsync(k, a[0]),
        76 => truncate(k, a[0], a[1]),
        77 => ftruncate(k, a[0], a[1]),
        79 => getcwd(k, a[0], a[1]),
        80 => chdir(k, a[0]),
        81 => fchdir(k, a[0]),
        82 => renameat(k, AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
        83 => mkdirat(k, AT_FDCWD, a[0], a[1]),
        84 => unlinkat(k, AT_FDCWD, a[0], 0x200),
        85 => openat(k, AT_FDCWD, a[0], 0o1101, a[1]),
        86 => linkat(k, AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
        87 => unlinkat(k, AT_FDCWD, a[0], 0),
        88 => symlinkat(k, a[0], AT_FDCWD, a[1]),
        89 => readlinkat(k, AT_FDCWD, a[0], a[1], a[2]),
        90 => fchmodat(k, AT_FDCWD, a[0], a[1]),
        91 => fchmod(k, a[0], a[1]),
        92 => fchownat(k, AT_FDCWD, a[0], a[1], a[2], 0),
        93 => fchown(k, a[0], a[1], a[2]),
        94 => fchownat(k, AT_FDCWD, a[0], a[1], a[2], 0x100),
        95 => umask(k, a[0]),
        96 => gettimeofday(a[0], a[1]),
        97 => getrlimit(a[0], a[1]),
        98 => getrusage(a[0], a[1]),
        99 => sysinfo(k, a[0]),
        100 => times(a[0]),
        102 | 104 | 107 | 108 | 110 | 111 | 121 | 124 | 186 => {
            Ok(myst_platform::host::int_syscall(nr, a))
        }
        105 | 106 | 113 | 114 | 117 | 119 | 122 | 123 => Ok(0),
        109 => Ok(0),
        112 => Ok(myst_platform::host::int_syscall(39, [0; 6])),
        115 => getgroups(a[0], a[1]),
        116 => Ok(0),
        118 | 120 => getres_ids(nr, a[0], a[1], a[2]),
        131 => sigaltstack(a[0], a[1]),
        137 => statfs(k, a[0], a[1]),
        138 => fstatfs(k, a[0], a[1]),
        140 => Ok(20),
        141 => Ok(0),
        157 => prctl(a[0], a[1]),
        158 => arch_prctl(frame, a[0], a[1]),
        160 => Ok(0),
        200 | 234 => tgkill(nr, a[0], a[1], a[2]),
        201 => time_syscall(a[0]),
        202 => futex(a[0], a[1], a[2], a[3], a[4], a[5]),
        203 => Ok(0),
        204 => sched_getaffinity(a[0], a[1], a[2]),
        165 => mount::mount(k, a[0], a[1], a[2], a[3], a[4]),
        166 => mount::umount2(k, a[0], a[1]),
        217 => getdents64(k, a[0], a[1], a[2]),
        218 => set_tid_address(a[0]),
        435 => Err(Errno::ENOSYS),
        221 => Ok(0),
        228 => clock_gettime(a[0], a[1]),
        229 => clock_getres(a[0], a[1]),
        230 => clock_nanosleep(a[0], a[1], a[2], a[3]),
        231 => exit_group(a[0]),
        257 => openat(k, a[0], a[1], a[2], a[3]),
        258 => mkdirat(k, a[0], a[1], a[2]),
        260 => fchownat(k, a[0], a[1], a[2], a[3], a[4]),
        262 => fstatat(k, a[0], a[1], a[2], a[3]),
        263 => unlinkat(k, a[0], a[1], a[2]),
        264 => renameat(k, a[0], a[1], a[2], a[3], 0),
        265 => linkat(k, a[0], a[1], a[2], a[3], a[4]),
        266 => symlinkat(k, a[0], a[1], a[2]),
        267 => readlinkat(k, a[0], a[1], a[2], a[3]),
        268 | 452 => fchmodat(k, a[0], a[1], a[2]),
        269 | 439 => faccessat(k, a[0], a[1], a[2], if nr == 439 { a[3] } else { 0 }),
        273 => Ok(0),
        280 => utimensat(k, a[0], a[1], a[2], a[3]),
        285 => fallocate(k, a[0], a[1], a[2], a[3]),
        292 => dup3(k, a[0], a[1], a[2]),
        295 => readv(k, a[0], a[1], a[2], Some(a[3])),
        296 => writev(k, a[0], a[1], a[2], Some(a[3])),
        302 => prlimit64(a[0], a[1], a[2], a[3]),
        316 => renameat(k, a[0], a[1], a[2], a[3], a[4]),
        318 => getrandom(a[0], a[1], a[2]),
        326 => copy_file_range(k, a[0], a[1], a[2], a[3], a[4], a[5]),
        327 => readv(k, a[0], a[1], a[2], Some(a[3])),
        328 => writev(k, a[0], a[1], a[2], Some(a[3])),
        332 => statx(k, a[0], a[1], a[2], a[3], a[4]),
        334 => Err(Errno::ENOSYS),
        436 => close_range(k, a[0], a[1], a[2]),
        41 => net::socket(k, a[0], a[1], a[2]),
        213 => net::epoll_create(k, 0),
        291 => net::epoll_create(k, a[0]),
        233 => net::epoll_ctl(k, a[0], a[1], a[2], a[3]),
        232 | 281 => net::epoll_wait(k, a[0], a[1], a[2], a[3]),
        284 => net::eventfd(k, a[0], 0),
        290 => net::eventfd(k, a[0], a[1]),
        42 => net::connect_or_bind(k, a[0], a[1], a[2], false),
        43 => net::accept4(k, a[0], a[1], a[2], 0),
        288 => net::accept4(k, a[0], a[1], a[2], a[3]),
        44 => net::sendto(k, a[0], a[1], a[2], a[3], a[4], a[5]),
        45 => net::recvfrom(k, a[0], a[1], a[2], a[3], a[4], a[5]),
        46 => net::sendmsg(k, a[0], a[1], a[2]),
        47 => net::recvmsg(k, a[0], a[1], a[2]),
        48 | 50 => net::int_op(k, nr, a[0], a[1]),
        49 => net::connect_or_bind(k, a[0], a[1], a[2], true),
        51 => net::sockname(k, a[0], a[1], a[2], false),
        52 => net::sockname(k, a[0], a[1], a[2], true),
        53 => net::socketpair(k, a[0], a[1], a[2], a[3]),
        54 => net::setsockopt(k, a[0], a[1], a[2], a[3], a[4]),
        55 => net::getsockopt(k, a[0], a[1], a[2], a[3], a[4]),
        // Extended attributes: none are stored (ENODATA), none can be set.
        191..=193 => Err(Errno::ENODATA),
        194..=196 => Ok(0),
        188..=190 | 197..=199 => Err(Errno::EOPNOTSUPP),
        _ => unknown(k, nr),
    }
}
