//! The syscall table: one declaration per x86-64 syscall, from which the
//! dispatcher (`call`), the names (`name`, for --strace and the ENOSYS log),
//! the argument formats of --strace and the "may block" flag are derived.
//!
//! A line reads `NR NAME(ARGS) [FLAGS] => HANDLER;` for an implemented
//! syscall and `NR NAME;` for one that is not (ENOSYS, logged once). ARGS
//! are the formats --strace prints the arguments in (see [`Arg`]); FLAGS are
//! `blocks` (the call may wait on the host, so the signals the guest does
//! not block are let through while it waits, see `dispatch`; the waits that
//! take a signal mask apply it themselves and are not marked) and `exits` (it does not
//! return: --strace prints it before it runs). HANDLER is an expression over
//! `k` (the [`Kernel`]), `f` (the trapped [`SyscallFrame`]) and `a` (the six
//! raw arguments). Adding a syscall is one line here and one handler in the
//! family module its name belongs to (docs/DESIGN.md, "How to add a syscall").

use super::{exec, fd, mem, mount, net, path, process, signal, time, SysResult};
use crate::Kernel;
use myst_fs::Errno;
use myst_platform::host;
use myst_platform::sud::SyscallFrame;

/// `AT_FDCWD` as the raw argument the *at() handlers take.
const AT_FDCWD: u64 = -100i64 as u64;

/// How --strace prints one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A descriptor (decimal).
    Fd,
    /// A signed integer (decimal).
    Int,
    /// A guest address (hex, or decimal when small).
    Ptr,
    /// A NUL-terminated path in guest memory (quoted).
    Path,
    /// Flag bits (hex when large).
    Flags,
    /// Permission bits.
    Mode,
    /// A byte count.
    Size,
    /// A file offset.
    Off,
}

/// Argument formats, lower-case so the table reads like a C prototype.
#[allow(non_upper_case_globals)]
mod arg {
    use super::Arg;
    pub const fd: Arg = Arg::Fd;
    pub const int: Arg = Arg::Int;
    pub const ptr: Arg = Arg::Ptr;
    pub const path: Arg = Arg::Path;
    pub const flags: Arg = Arg::Flags;
    pub const mode: Arg = Arg::Mode;
    pub const size: Arg = Arg::Size;
    pub const off: Arg = Arg::Off;
}

/// Properties of a syscall.
#[allow(non_upper_case_globals)]
mod flag {
    /// May wait on the host.
    pub const blocks: u8 = 1;
    /// Does not return to the caller.
    pub const exits: u8 = 2;
}

/// What the table says about one syscall.
#[derive(Debug)]
pub struct Syscall {
    /// x86-64 number.
    pub nr: u64,
    /// Linux's name.
    pub name: &'static str,
    /// Argument formats; None when myst does not implement it.
    pub args: Option<&'static [Arg]>,
    /// `flag::*` bits.
    flags: u8,
}

impl Syscall {
    /// The call may wait on the host (a pipe, a socket, a child, a timer).
    pub fn blocks(&self) -> bool {
        self.flags & flag::blocks != 0
    }

    /// The call does not return (exit, exit_group).
    pub fn exits(&self) -> bool {
        self.flags & flag::exits != 0
    }

    /// Implemented by myst.
    pub fn implemented(&self) -> bool {
        self.args.is_some()
    }
}

macro_rules! syscall_table {
    (|$k:ident, $f:ident, $a:ident|
     $( $nr:literal $name:ident $( ( $($arg:ident),* ) $([ $($flag:ident),* ])? => $h:expr )? ; )*) => {
        /// Every x86-64 syscall Linux 6.x defines, in number order.
        pub const SYSCALLS: &[Syscall] = &[ $( Syscall {
            nr: $nr,
            name: stringify!($name),
            args: {
                #[allow(unused_mut, unused_assignments)]
                let mut args: Option<&'static [Arg]> = None;
                $( args = Some(&[ $( arg::$arg ),* ]); )?
                args
            },
            flags: 0 $( $( $( | flag::$flag )* )? )?,
        } ),* ];

        /// Runs the handler of syscall `nr`.
        #[allow(unused_variables)]
        pub(super) fn call($k: &Kernel, $f: &mut SyscallFrame, nr: u64, $a: [u64; 6]) -> SysResult {
            match nr {
                $( $( $nr => $h, )? )*
                _ => super::unknown($k, nr),
            }
        }
    };
}

/// `INDEX[nr]` is the position of syscall `nr` in [`SYSCALLS`] (u16::MAX: none).
const INDEX: [u16; 512] = {
    let mut t = [u16::MAX; 512];
    let mut i = 0;
    while i < SYSCALLS.len() {
        t[SYSCALLS[i].nr as usize] = i as u16;
        i += 1;
    }
    t
};

/// The table entry of syscall `nr`.
pub fn lookup(nr: u64) -> Option<&'static Syscall> {
    let i = *INDEX.get(usize::try_from(nr).ok()?)?;
    SYSCALLS.get(usize::from(i))
}

/// The name of syscall `nr`, or None if Linux has none.
pub fn name(nr: u64) -> Option<&'static str> {
    lookup(nr).map(|s| s.name)
}

/// The number of the syscall called `name`.
pub fn number(name: &str) -> Option<u64> {
    SYSCALLS.iter().find(|s| s.name == name).map(|s| s.nr)
}

syscall_table! { |k, f, a|
    0 read(fd, ptr, size) [blocks] => fd::read(k, a[0], a[1], a[2]);
    1 write(fd, ptr, size) [blocks] => fd::write(k, a[0], a[1], a[2]);
    2 open(path, flags, mode) => path::openat(k, AT_FDCWD, a[0], a[1], a[2]);
    3 close(fd) => fd::close(k, a[0]);
    4 stat(path, ptr) => path::fstatat(k, AT_FDCWD, a[0], a[1], 0);
    5 fstat(fd, ptr) => fd::fstat(k, a[0], a[1]);
    6 lstat(path, ptr) => path::fstatat(k, AT_FDCWD, a[0], a[1], 0x100);
    7 poll(ptr, int, int) => fd::poll(k, f, a[0], a[1], a[2]);
    8 lseek(fd, off, int) => fd::lseek(k, a[0], a[1], a[2]);
    9 mmap(ptr, size, flags, flags, fd, off) => mem::mmap(k, a[0], a[1], a[2], a[3], a[4], a[5]);
    10 mprotect(ptr, size, flags) => mem::mprotect(a[0], a[1], a[2]);
    11 munmap(ptr, size) => mem::munmap(a[0], a[1]);
    12 brk(ptr) => mem::brk(k, a[0]);
    13 rt_sigaction(int, ptr, ptr, size) => signal::rt_sigaction(k, a[0], a[1], a[2], a[3]);
    14 rt_sigprocmask(int, ptr, ptr, size) => signal::rt_sigprocmask(f, a[0], a[1], a[2], a[3]);
    15 rt_sigreturn;
    16 ioctl(fd, flags, ptr) => fd::ioctl(k, a[0], a[1], a[2]);
    17 pread64(fd, ptr, size, off) [blocks] => fd::pread(k, a[0], a[1], a[2], a[3]);
    18 pwrite64(fd, ptr, size, off) [blocks] => fd::pwrite(k, a[0], a[1], a[2], a[3]);
    19 readv(fd, ptr, int) [blocks] => fd::readv(k, a[0], a[1], a[2], None);
    20 writev(fd, ptr, int) [blocks] => fd::writev(k, a[0], a[1], a[2], None);
    21 access(path, mode) => path::faccessat(k, AT_FDCWD, a[0], a[1], 0);
    22 pipe(ptr) => fd::pipe2(k, a[0], 0);
    23 select(int, ptr, ptr, ptr, ptr) => fd::select(k, f, a[0], a[1], a[2], a[3], a[4], None);
    24 sched_yield() => Ok(0);
    25 mremap(ptr, size, size, flags, ptr) => mem::mremap(a[0], a[1], a[2], a[3], a[4]);
    26 msync(ptr, size, flags) => mem::msync(a[0], a[1], a[2]);
    27 mincore(ptr, size, ptr) => Ok(0);
    28 madvise(ptr, size, int) => mem::madvise(a[0], a[1], a[2]);
    29 shmget;
    30 shmat;
    31 shmctl;
    32 dup(fd) => fd::dup(k, a[0]);
    33 dup2(fd, fd) => fd::dup2(k, a[0], a[1]);
    34 pause() => signal::pause(f);
    35 nanosleep(ptr, ptr) [blocks] => time::nanosleep(a[0], a[1]);
    36 getitimer(int, ptr) => signal::getitimer(a[0], a[1]);
    37 alarm(int) => Ok(host::int_syscall(37, [a[0], 0, 0, 0, 0, 0]));
    38 setitimer(int, ptr, ptr) => signal::setitimer(a[0], a[1], a[2]);
    39 getpid() => Ok(host::int_syscall(39, [0; 6]));
    40 sendfile(fd, fd, ptr, size) => fd::sendfile(k, a[0], a[1], a[2], a[3]);
    41 socket(int, int, int) => net::socket(k, a[0], a[1], a[2]);
    42 connect(fd, ptr, size) [blocks] => net::connect_or_bind(k, a[0], a[1], a[2], false);
    43 accept(fd, ptr, ptr) [blocks] => net::accept4(k, a[0], a[1], a[2], 0);
    44 sendto(fd, ptr, size, flags, ptr, size) [blocks] => net::sendto(k, a[0], a[1], a[2], a[3], a[4], a[5]);
    45 recvfrom(fd, ptr, size, flags, ptr, ptr) [blocks] => net::recvfrom(k, a[0], a[1], a[2], a[3], a[4], a[5]);
    46 sendmsg(fd, ptr, flags) [blocks] => net::sendmsg(k, a[0], a[1], a[2]);
    47 recvmsg(fd, ptr, flags) [blocks] => net::recvmsg(k, a[0], a[1], a[2]);
    48 shutdown(fd, int) => net::int_op(k, 48, a[0], a[1]);
    49 bind(fd, ptr, size) => net::connect_or_bind(k, a[0], a[1], a[2], true);
    50 listen(fd, int) => net::int_op(k, 50, a[0], a[1]);
    51 getsockname(fd, ptr, ptr) => net::sockname(k, a[0], a[1], a[2], false);
    52 getpeername(fd, ptr, ptr) => net::sockname(k, a[0], a[1], a[2], true);
    53 socketpair(int, int, int, ptr) => net::socketpair(k, a[0], a[1], a[2], a[3]);
    54 setsockopt(fd, int, int, ptr, size) => net::setsockopt(k, a[0], a[1], a[2], a[3], a[4]);
    55 getsockopt(fd, int, int, ptr, ptr) => net::getsockopt(k, a[0], a[1], a[2], a[3], a[4]);
    56 clone(flags, ptr, ptr, ptr, ptr) => exec::clone(f, a[0], a[1], a[2], a[3], a[4]);
    57 fork() => exec::fork(f);
    58 vfork() => exec::fork(f);
    59 execve(path, ptr, ptr) => exec::execve(k, f, a[0], a[1], a[2]);
    60 exit(int) [exits] => process::exit(a[0]);
    61 wait4(int, ptr, flags, ptr) [blocks] => exec::wait4(a[0], a[1], a[2], a[3]);
    62 kill(int, int) => signal::kill(a[0], a[1]);
    63 uname(ptr) => process::uname(k, a[0]);
    64 semget;
    65 semop;
    66 semctl;
    67 shmdt;
    68 msgget;
    69 msgsnd;
    70 msgrcv;
    71 msgctl;
    72 fcntl(fd, int, ptr) => fd::fcntl(k, a[0], a[1], a[2], f);
    73 flock(fd, int) => fd::flock(k, a[0], a[1], f);
    74 fsync(fd) => fd::fsync(k, a[0]);
    75 fdatasync(fd) => fd::fsync(k, a[0]);
    76 truncate(path, off) => path::truncate(k, a[0], a[1]);
    77 ftruncate(fd, off) => fd::ftruncate(k, a[0], a[1]);
    78 getdents;
    79 getcwd(ptr, size) => path::getcwd(k, a[0], a[1]);
    80 chdir(path) => path::chdir(k, a[0]);
    81 fchdir(fd) => path::fchdir(k, a[0]);
    82 rename(path, path) => path::renameat(k, AT_FDCWD, a[0], AT_FDCWD, a[1], 0);
    83 mkdir(path, mode) => path::mkdirat(k, AT_FDCWD, a[0], a[1]);
    84 rmdir(path) => path::unlinkat(k, AT_FDCWD, a[0], 0x200);
    85 creat(path, mode) => path::openat(k, AT_FDCWD, a[0], 0o1101, a[1]);
    86 link(path, path) => path::linkat(k, AT_FDCWD, a[0], AT_FDCWD, a[1], 0);
    87 unlink(path) => path::unlinkat(k, AT_FDCWD, a[0], 0);
    88 symlink(path, path) => path::symlinkat(k, a[0], AT_FDCWD, a[1]);
    89 readlink(path, ptr, size) => path::readlinkat(k, AT_FDCWD, a[0], a[1], a[2]);
    90 chmod(path, mode) => path::fchmodat(k, AT_FDCWD, a[0], a[1]);
    91 fchmod(fd, mode) => fd::fchmod(k, a[0], a[1]);
    92 chown(path, int, int) => path::fchownat(k, AT_FDCWD, a[0], a[1], a[2], 0);
    93 fchown(fd, int, int) => fd::fchown(k, a[0], a[1], a[2]);
    94 lchown(path, int, int) => path::fchownat(k, AT_FDCWD, a[0], a[1], a[2], 0x100);
    95 umask(mode) => path::umask(k, a[0]);
    96 gettimeofday(ptr, ptr) => time::gettimeofday(a[0], a[1]);
    97 getrlimit(int, ptr) => process::getrlimit(a[0], a[1]);
    98 getrusage(int, ptr) => process::getrusage(a[0], a[1]);
    99 sysinfo(ptr) => process::sysinfo(k, a[0]);
    100 times(ptr) => process::times(a[0]);
    101 ptrace;
    102 getuid() => Ok(host::int_syscall(102, a));
    103 syslog;
    104 getgid() => Ok(host::int_syscall(104, a));
    105 setuid(int) => Ok(0);
    106 setgid(int) => Ok(0);
    107 geteuid() => Ok(host::int_syscall(107, a));
    108 getegid() => Ok(host::int_syscall(108, a));
    109 setpgid(int, int) => signal::host_int(109, a[0], a[1]);
    110 getppid() => Ok(host::int_syscall(110, a));
    111 getpgrp() => Ok(host::int_syscall(111, a));
    112 setsid() => signal::host_int(112, 0, 0);
    113 setreuid(int, int) => Ok(0);
    114 setregid(int, int) => Ok(0);
    115 getgroups(int, ptr) => process::getgroups(a[0], a[1]);
    116 setgroups(int, ptr) => Ok(0);
    117 setresuid(int, int, int) => Ok(0);
    118 getresuid(ptr, ptr, ptr) => process::getres_ids(118, a[0], a[1], a[2]);
    119 setresgid(int, int, int) => Ok(0);
    120 getresgid(ptr, ptr, ptr) => process::getres_ids(120, a[0], a[1], a[2]);
    121 getpgid(int) => Ok(host::int_syscall(121, a));
    122 setfsuid(int) => Ok(0);
    123 setfsgid(int) => Ok(0);
    124 getsid(int) => Ok(host::int_syscall(124, a));
    125 capget;
    126 capset;
    127 rt_sigpending(ptr, size) => signal::rt_sigpending(f, a[0], a[1]);
    128 rt_sigtimedwait(ptr, ptr, ptr, size) [blocks] => signal::rt_sigtimedwait(a[0], a[1], a[2], a[3]);
    129 rt_sigqueueinfo(int, int, ptr) => signal::sigqueueinfo(None, a[0], a[1], a[2]);
    130 rt_sigsuspend(ptr, size) => signal::rt_sigsuspend(f, a[0], a[1]);
    131 sigaltstack(ptr, ptr) => signal::sigaltstack(a[0], a[1]);
    132 utime;
    133 mknod;
    134 uselib;
    135 personality;
    136 ustat;
    137 statfs(path, ptr) => path::statfs(k, a[0], a[1]);
    138 fstatfs(fd, ptr) => fd::fstatfs(k, a[0], a[1]);
    139 sysfs;
    140 getpriority(int, int) => Ok(20);
    141 setpriority(int, int, int) => Ok(0);
    142 sched_setparam;
    143 sched_getparam;
    144 sched_setscheduler;
    145 sched_getscheduler;
    146 sched_get_priority_max;
    147 sched_get_priority_min;
    148 sched_rr_get_interval;
    149 mlock;
    150 munlock;
    151 mlockall;
    152 munlockall;
    153 vhangup;
    154 modify_ldt;
    155 pivot_root;
    156 _sysctl;
    157 prctl(int, int, int, int, int) => process::prctl(a[0], a[1]);
    158 arch_prctl(int, ptr) => process::arch_prctl(f, a[0], a[1]);
    159 adjtimex;
    160 setrlimit(int, ptr) => Ok(0);
    161 chroot;
    162 sync() => Ok(0);
    163 acct;
    164 settimeofday;
    165 mount(path, path, path, flags, ptr) => mount::mount(k, a[0], a[1], a[2], a[3], a[4]);
    166 umount2(path, flags) => mount::umount2(k, a[0], a[1]);
    167 swapon;
    168 swapoff;
    169 reboot;
    170 sethostname;
    171 setdomainname;
    172 iopl;
    173 ioperm;
    174 create_module;
    175 init_module;
    176 delete_module;
    177 get_kernel_syms;
    178 query_module;
    179 quotactl;
    180 nfsservctl;
    181 getpmsg;
    182 putpmsg;
    183 afs_syscall;
    184 tuxcall;
    185 security;
    186 gettid() => Ok(host::int_syscall(186, a));
    187 readahead;
    188 setxattr(path, ptr, ptr, size, flags) => Err(Errno::EOPNOTSUPP);
    189 lsetxattr(path, ptr, ptr, size, flags) => Err(Errno::EOPNOTSUPP);
    190 fsetxattr(fd, ptr, ptr, size, flags) => Err(Errno::EOPNOTSUPP);
    191 getxattr(path, ptr, ptr, size) => Err(Errno::ENODATA);
    192 lgetxattr(path, ptr, ptr, size) => Err(Errno::ENODATA);
    193 fgetxattr(fd, ptr, ptr, size) => Err(Errno::ENODATA);
    194 listxattr(path, ptr, size) => Ok(0);
    195 llistxattr(path, ptr, size) => Ok(0);
    196 flistxattr(fd, ptr, size) => Ok(0);
    197 removexattr(path, ptr) => Err(Errno::EOPNOTSUPP);
    198 lremovexattr(path, ptr) => Err(Errno::EOPNOTSUPP);
    199 fremovexattr(fd, ptr) => Err(Errno::EOPNOTSUPP);
    200 tkill(int, int) => signal::tgkill(200, a[0], a[1], a[2]);
    201 time(ptr) => time::time_syscall(a[0]);
    202 futex(ptr, int, int, ptr, ptr, int) [blocks] => process::futex(a[0], a[1], a[2], a[3], a[4], a[5]);
    203 sched_setaffinity(int, size, ptr) => Ok(0);
    204 sched_getaffinity(int, size, ptr) => process::sched_getaffinity(a[0], a[1], a[2]);
    205 set_thread_area;
    206 io_setup;
    207 io_destroy;
    208 io_getevents;
    209 io_submit;
    210 io_cancel;
    211 get_thread_area;
    212 lookup_dcookie;
    213 epoll_create(int) => net::epoll_create(k, 0);
    214 epoll_ctl_old;
    215 epoll_wait_old;
    216 remap_file_pages;
    217 getdents64(fd, ptr, size) => fd::getdents64(k, a[0], a[1], a[2]);
    218 set_tid_address(ptr) => process::set_tid_address(a[0]);
    219 restart_syscall;
    220 semtimedop;
    221 fadvise64(fd, off, size, int) => Ok(0);
    222 timer_create;
    223 timer_settime;
    224 timer_gettime;
    225 timer_getoverrun;
    226 timer_delete;
    227 clock_settime;
    228 clock_gettime(int, ptr) => time::clock_gettime(a[0], a[1]);
    229 clock_getres(int, ptr) => time::clock_getres(a[0], a[1]);
    230 clock_nanosleep(int, flags, ptr, ptr) [blocks] => time::clock_nanosleep(a[0], a[1], a[2], a[3]);
    231 exit_group(int) [exits] => process::exit_group(a[0]);
    232 epoll_wait(fd, ptr, int, int) => net::epoll_pwait(k, f, a[0], a[1], a[2], a[3], false, 0, 0);
    233 epoll_ctl(fd, int, fd, ptr) => net::epoll_ctl(k, a[0], a[1], a[2], a[3]);
    234 tgkill(int, int, int) => signal::tgkill(234, a[0], a[1], a[2]);
    235 utimes;
    236 vserver;
    237 mbind;
    238 set_mempolicy;
    239 get_mempolicy;
    240 mq_open;
    241 mq_unlink;
    242 mq_timedsend;
    243 mq_timedreceive;
    244 mq_notify;
    245 mq_getsetattr;
    246 kexec_load;
    247 waitid;
    248 add_key;
    249 request_key;
    250 keyctl;
    251 ioprio_set;
    252 ioprio_get;
    253 inotify_init;
    254 inotify_add_watch;
    255 inotify_rm_watch;
    256 migrate_pages;
    257 openat(fd, path, flags, mode) => path::openat(k, a[0], a[1], a[2], a[3]);
    258 mkdirat(fd, path, mode) => path::mkdirat(k, a[0], a[1], a[2]);
    259 mknodat;
    260 fchownat(fd, path, int, int, flags) => path::fchownat(k, a[0], a[1], a[2], a[3], a[4]);
    261 futimesat;
    262 newfstatat(fd, path, ptr, flags) => path::fstatat(k, a[0], a[1], a[2], a[3]);
    263 unlinkat(fd, path, flags) => path::unlinkat(k, a[0], a[1], a[2]);
    264 renameat(fd, path, fd, path) => path::renameat(k, a[0], a[1], a[2], a[3], 0);
    265 linkat(fd, path, fd, path, flags) => path::linkat(k, a[0], a[1], a[2], a[3], a[4]);
    266 symlinkat(path, fd, path) => path::symlinkat(k, a[0], a[1], a[2]);
    267 readlinkat(fd, path, ptr, size) => path::readlinkat(k, a[0], a[1], a[2], a[3]);
    268 fchmodat(fd, path, mode) => path::fchmodat(k, a[0], a[1], a[2]);
    269 faccessat(fd, path, mode) => path::faccessat(k, a[0], a[1], a[2], 0);
    270 pselect6(int, ptr, ptr, ptr, ptr, ptr) => fd::select(k, f, a[0], a[1], a[2], a[3], a[4], Some(a[5]));
    271 ppoll(ptr, int, ptr, ptr, size) => fd::ppoll_ts(k, f, a[0], a[1], a[2], a[3], a[4]);
    272 unshare;
    273 set_robust_list(ptr, size) => Ok(0);
    274 get_robust_list;
    275 splice;
    276 tee;
    277 sync_file_range;
    278 vmsplice;
    279 move_pages;
    280 utimensat(fd, path, ptr, flags) => path::utimensat(k, a[0], a[1], a[2], a[3]);
    281 epoll_pwait(fd, ptr, int, int, ptr, size) => net::epoll_pwait(k, f, a[0], a[1], a[2], a[3], true, a[4], a[5]);
    282 signalfd;
    283 timerfd_create;
    284 eventfd(int) => net::eventfd(k, a[0], 0);
    285 fallocate(fd, int, off, off) => fd::fallocate(k, a[0], a[1], a[2], a[3]);
    286 timerfd_settime;
    287 timerfd_gettime;
    288 accept4(fd, ptr, ptr, flags) [blocks] => net::accept4(k, a[0], a[1], a[2], a[3]);
    289 signalfd4;
    290 eventfd2(int, flags) => net::eventfd(k, a[0], a[1]);
    291 epoll_create1(flags) => net::epoll_create(k, a[0]);
    292 dup3(fd, fd, flags) => fd::dup3(k, a[0], a[1], a[2]);
    293 pipe2(ptr, flags) => fd::pipe2(k, a[0], a[1]);
    294 inotify_init1;
    295 preadv(fd, ptr, int, off) [blocks] => fd::readv(k, a[0], a[1], a[2], Some(a[3]));
    296 pwritev(fd, ptr, int, off) [blocks] => fd::writev(k, a[0], a[1], a[2], Some(a[3]));
    297 rt_tgsigqueueinfo(int, int, int, ptr) => signal::sigqueueinfo(Some(a[0]), a[1], a[2], a[3]);
    298 perf_event_open;
    299 recvmmsg;
    300 fanotify_init;
    301 fanotify_mark;
    302 prlimit64(int, int, ptr, ptr) => process::prlimit64(a[0], a[1], a[2], a[3]);
    303 name_to_handle_at;
    304 open_by_handle_at;
    305 clock_adjtime;
    306 syncfs(fd) => Ok(0);
    307 sendmmsg;
    308 setns;
    309 getcpu(ptr, ptr, ptr) => process::getcpu(a[0], a[1]);
    310 process_vm_readv;
    311 process_vm_writev;
    312 kcmp;
    313 finit_module;
    314 sched_setattr;
    315 sched_getattr;
    316 renameat2(fd, path, fd, path, flags) => path::renameat(k, a[0], a[1], a[2], a[3], a[4]);
    317 seccomp;
    318 getrandom(ptr, size, flags) => process::getrandom(a[0], a[1], a[2]);
    319 memfd_create;
    320 kexec_file_load;
    321 bpf;
    322 execveat;
    323 userfaultfd;
    324 membarrier;
    325 mlock2;
    326 copy_file_range(fd, ptr, fd, ptr, size, flags) => fd::copy_file_range(k, a[0], a[1], a[2], a[3], a[4], a[5]);
    327 preadv2(fd, ptr, int, off, flags) => fd::readv(k, a[0], a[1], a[2], Some(a[3]));
    328 pwritev2(fd, ptr, int, off, flags) => fd::writev(k, a[0], a[1], a[2], Some(a[3]));
    329 pkey_mprotect;
    330 pkey_alloc;
    331 pkey_free;
    332 statx(fd, path, flags, flags, ptr) => path::statx(k, a[0], a[1], a[2], a[3], a[4]);
    333 io_pgetevents;
    334 rseq(ptr, size, flags, int) => Err(Errno::ENOSYS);
    424 pidfd_send_signal;
    425 io_uring_setup;
    426 io_uring_enter;
    427 io_uring_register;
    428 open_tree;
    429 move_mount;
    430 fsopen;
    431 fsconfig;
    432 fsmount;
    433 fspick;
    434 pidfd_open;
    435 clone3(ptr, size) => Err(Errno::ENOSYS);
    436 close_range(fd, fd, flags) => fd::close_range(k, a[0], a[1], a[2]);
    437 openat2;
    438 pidfd_getfd;
    439 faccessat2(fd, path, mode, flags) => path::faccessat(k, a[0], a[1], a[2], a[3]);
    440 process_madvise;
    441 epoll_pwait2;
    442 mount_setattr;
    443 quotactl_fd;
    444 landlock_create_ruleset;
    445 landlock_add_rule;
    446 landlock_restrict_self;
    447 memfd_secret;
    448 process_mrelease;
    449 futex_waitv;
    450 set_mempolicy_home_node;
    451 cachestat;
    452 fchmodat2(fd, path, mode, flags) => path::fchmodat(k, a[0], a[1], a[2]);
    453 map_shadow_stack;
    454 futex_wake;
    455 futex_wait;
    456 futex_requeue;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_ordered_and_unique() {
        for w in SYSCALLS.windows(2) {
            assert!(w[0].nr < w[1].nr, "{} then {}", w[0].name, w[1].name);
        }
        assert!(SYSCALLS
            .last()
            .is_some_and(|s| (s.nr as usize) < INDEX.len()));
    }

    #[test]
    fn names_match_linux_numbers() {
        // Spot checks against arch/x86/entry/syscalls/syscall_64.tbl.
        for (nr, n) in [
            (0, "read"),
            (59, "execve"),
            (158, "arch_prctl"),
            (217, "getdents64"),
            (257, "openat"),
            (302, "prlimit64"),
            (332, "statx"),
            (334, "rseq"),
            (424, "pidfd_send_signal"),
            (439, "faccessat2"),
            (456, "futex_requeue"),
        ] {
            assert_eq!(name(nr), Some(n), "nr {nr}");
            assert_eq!(number(n), Some(nr), "{n}");
        }
        assert_eq!(name(400), None);
        assert_eq!(name(u64::MAX), None);
    }

    #[test]
    fn flags_and_formats_come_from_the_declaration() {
        let openat = lookup(257).expect("openat");
        assert_eq!(
            openat.args,
            Some(&[Arg::Fd, Arg::Path, Arg::Flags, Arg::Mode][..])
        );
        assert!(!openat.blocks());
        assert!(lookup(0).is_some_and(|s| s.blocks()));
        assert!(lookup(231).is_some_and(|s| s.exits()));
        assert!(lookup(29).is_some_and(|s| !s.implemented()));
    }
}
