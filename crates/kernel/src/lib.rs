//! The guest kernel: VFS, fd table, syscalls, ELF loader, procfs and devfs.
//!
//! One guest process is one host process. [`run`] builds the file-system
//! namespace, loads the program, forks, and in the child arms Syscall User
//! Dispatch and jumps to the guest; the parent waits and returns the exit
//! status. Every guest syscall then arrives in [`syscalls::dispatch`].
#![forbid(unsafe_code)]

pub mod devfs;
pub mod elf;
pub mod file;
pub mod locks;
pub mod ofd;
pub mod pagestore;
pub mod procfs;
pub mod stat;
pub mod syscalls;
pub mod vfs;

use file::{lock, FdTable, FileKind, OpenFile, O_RDWR};
use myst_fs::{Errno, FileSystem, FileType};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use vfs::{Chain, Resolved, Vfs};

/// The root file system handed to the kernel by the CLI.
pub struct RootFs {
    /// The file system.
    pub fs: Arc<dyn FileSystem>,
    /// Type name for /proc/mounts ("hostfs", "ramfs", "ext2").
    pub fstype: &'static str,
    /// Source for /proc/mounts (the image or directory).
    pub source: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything `run` needs to start a guest.
pub struct Config {
    /// Root file system.
    pub root: RootFs,
    /// Absolute path of the program in the guest.
    pub program: Vec<u8>,
    /// argv (argv[0] included).
    pub argv: Vec<Vec<u8>>,
    /// Environment ("K=V").
    pub envp: Vec<Vec<u8>>,
    /// Memory budget in bytes.
    pub memory_size: u64,
    /// Main stack size in bytes.
    pub stack_size: u64,
    /// Print each syscall on stderr.
    pub strace: bool,
    /// Only these syscalls are printed (names; empty: all).
    pub strace_filter: Vec<String>,
    /// Unknown syscalls return ENOSYS (true) or stop the program (false).
    pub unhandled_enosys: bool,
    /// Initial working directory.
    pub cwd: Vec<u8>,
    /// Host name reported by uname.
    pub hostname: Option<String>,
    /// Rewrite hot syscall sites to skip the signal round trip.
    pub rewrite_syscalls: bool,
    /// Default thread stack size (reported as RLIMIT_STACK, which glibc
    /// uses for its threads); None: the host's limit.
    pub thread_stack_size: Option<u64>,
    /// At most this many CPUs in sched_getaffinity and /proc/cpuinfo.
    pub max_affinity_cpus: Option<u64>,
    /// brk never grows the heap (the C library then uses mmap).
    pub no_brk: bool,
    /// The main stack is executable.
    pub exec_stack: bool,
    /// File systems mounted before the program starts (config.json Mount entries).
    pub mounts: Vec<MountSpec>,
    /// Trust anchors for ext2 images mounted by the guest with mount().
    pub trust: myst_blockdev::trust::TrustPolicy,
    /// Owner mappings of hostfs mounts the guest makes.
    pub host_ids: myst_fs::hostfs::IdMap,
}

/// A file system to mount before the program starts.
pub struct MountSpec {
    /// Absolute guest path; created (in the mount table only) when missing.
    pub target: Vec<u8>,
    /// The file system.
    pub fs: Arc<dyn FileSystem>,
    /// Type name for /proc/mounts.
    pub fstype: &'static str,
    /// Source for /proc/mounts.
    pub source: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Errors starting a guest.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The program path does not name a file.
    #[error("program {path} not found in the root file system ({err})")]
    ProgramNotFound {
        /// Guest path.
        path: String,
        /// Why.
        err: Errno,
    },
    /// The program is not a loadable ELF executable.
    #[error("cannot run {path}: {err}")]
    NotExecutable {
        /// Guest path.
        path: String,
        /// Why.
        err: String,
    },
    /// The program path is not absolute.
    #[error("the program path must be absolute (start with /): {0}")]
    RelativePath(String),
    /// A configuration mount could not be made.
    #[error("cannot mount {target}: {err}")]
    Mount {
        /// Guest path.
        target: String,
        /// Why.
        err: Errno,
    },
    /// The working directory is not a directory.
    #[error("working directory {path}: {err}")]
    Cwd {
        /// Guest path.
        path: String,
        /// Why.
        err: Errno,
    },
    /// Platform setup failed.
    #[error(transparent)]
    Platform(#[from] myst_platform::PlatformError),
    /// fork or wait failed.
    #[error("{0} failed: {1}")]
    Host(&'static str, Errno),
}

/// Current directory and umask.
pub struct FsCtx {
    /// Working directory.
    pub cwd: Chain,
    /// File creation mask.
    pub umask: u32,
}

/// Heap (brk) state.
pub struct Brk {
    /// Lowest brk value.
    pub start: u64,
    /// Current brk value.
    pub cur: u64,
    /// End of the memory mapped for the heap.
    pub mapped_end: u64,
}

/// The guest process's kernel state.
pub struct Kernel {
    /// Mount table.
    pub vfs: Vfs,
    /// The root as a chain.
    pub root: Chain,
    /// cwd and umask.
    pub fs_ctx: Mutex<FsCtx>,
    /// Descriptor table.
    pub fds: Mutex<FdTable>,
    /// Heap.
    pub brk: Mutex<Brk>,
    /// Guest signal actions as the guest set them (k_sigaction layout).
    pub sigactions: Mutex<Vec<[u64; 4]>>,
    /// Signals whose guest disposition is default or ignore (bit N-1 for signal N).
    pub no_handler: std::sync::atomic::AtomicU64,
    /// Guest path of the program.
    pub exe: Mutex<Vec<u8>>,
    /// argv, for /proc/self/cmdline.
    pub argv: Mutex<Vec<Vec<u8>>>,
    /// Environment, for /proc/self/environ.
    pub envp: Mutex<Vec<Vec<u8>>>,
    /// The auxiliary vector given to the program, for /proc/self/auxv.
    pub auxv: Mutex<Vec<u8>>,
    /// Main stack size for programs started by execve.
    pub stack_size: u64,
    /// --strace.
    pub strace: bool,
    /// Syscall numbers --strace prints (None: all).
    pub strace_only: Option<HashSet<u64>>,
    /// ENOSYS (true) or fatal (false) for unknown syscalls.
    pub unhandled_enosys: bool,
    /// Unknown syscalls already logged.
    pub logged: Mutex<HashSet<u64>>,
    /// Memory budget.
    pub memory_size: u64,
    /// Host name.
    pub hostname: Option<String>,
    /// RLIMIT_STACK reported to the guest (ThreadStackSize).
    pub thread_stack_size: Option<u64>,
    /// CPU limit for affinity and /proc/cpuinfo (MaxAffinityCPUs).
    pub max_affinity_cpus: Option<u64>,
    /// brk never grows (NoBrk).
    pub no_brk: bool,
    /// Executable main stack (ExecStack).
    pub exec_stack: bool,
    /// Trust anchors for guest mount() of ext2 images.
    pub trust: myst_blockdev::trust::TrustPolicy,
    /// Owner mappings for guest mount() of hostfs.
    pub host_ids: myst_fs::hostfs::IdMap,
}

static KERNEL: OnceLock<Kernel> = OnceLock::new();

/// The kernel of this process (set by `run` before the guest starts).
pub fn kernel() -> &'static Kernel {
    match KERNEL.get() {
        Some(k) => k,
        None => {
            myst_platform::host::write_stderr(b"myst: kernel used before start\n");
            myst_platform::host::exit_group(134)
        }
    }
}

/// /tmp and /dev/shm: an ext2 file system in shared memory, so forked
/// guest processes see one /tmp; a per-process ramfs if that fails.
fn shared_tmp(name: &str, size: u64) -> Arc<dyn FileSystem> {
    match myst_fs::ext2::tmp::shared_empty(name, size, 0o1777) {
        Ok(fs) => pagestore::wrap(Arc::new(fs), false),
        Err(e) => {
            let msg = format!("myst: warning: {e}; {name} is not shared across fork\n");
            myst_platform::host::write_stderr(msg.as_bytes());
            pagestore::wrap(Arc::new(myst_fs::ramfs::RamFs::new(0o1777, size)), true)
        }
    }
}

fn build_vfs(root: RootFs, memory_size: u64) -> (Vfs, Chain) {
    // A hostfs root maps host files directly; the others share file pages
    // through the page store.
    let root_fs = match root.fstype {
        "hostfs" => root.fs,
        "ramfs" => pagestore::wrap(root.fs, true),
        _ => pagestore::wrap(root.fs, false),
    };
    let vfs = Vfs::new(
        root_fs,
        root.fstype,
        root.source,
        root.read_only,
        Some(procfs::magic_fd),
    );
    let root_chain = Chain::root(vfs.root());
    vfs.mount(
        &root_chain,
        b"proc",
        Arc::new(procfs::ProcFs::new()),
        "proc",
        "proc".into(),
        false,
    );
    let dev = vfs.mount(
        &root_chain,
        b"dev",
        Arc::new(devfs::DevFs::new()),
        "devtmpfs",
        "devtmpfs".into(),
        false,
    );
    let dev_chain = root_chain.child(
        b"dev",
        vfs::Loc {
            ino: dev.fs.root(),
            mnt: dev,
        },
    );
    vfs.mount(
        &dev_chain,
        b"shm",
        shared_tmp("/dev/shm", memory_size),
        "tmpfs",
        "tmpfs".into(),
        false,
    );
    let tmp = shared_tmp("/tmp", memory_size);
    vfs.mount(&root_chain, b"tmp", tmp, "tmpfs", "tmpfs".into(), false);
    (vfs, root_chain)
}

/// Reads a whole file of a mounted file system.
pub fn read_whole(loc: &vfs::Loc, size: u64) -> Result<Vec<u8>, Errno> {
    if size > 1 << 30 {
        return Err(Errno::EFBIG.with("program files are limited to 1 GiB"));
    }
    let mut data = vec![0u8; usize::try_from(size).map_err(|_| Errno::EFBIG)?];
    let mut off = 0;
    while off < data.len() {
        let n = loc.mnt.fs.read(loc.ino, off as u64, &mut data[off..])?;
        if n == 0 {
            data.truncate(off);
            break;
        }
        off += n;
    }
    Ok(data)
}

/// Loads `path` (and its interpreter) and builds the initial stack; returns
/// (entry, stack pointer).
pub fn load_program(
    k: &Kernel,
    path: &[u8],
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    stack_size: u64,
) -> Result<(u64, u64), KernelError> {
    let shown = String::from_utf8_lossy(path).into_owned();
    let not_exec = |err: String| KernelError::NotExecutable {
        path: shown.clone(),
        err,
    };
    let (chain, attr) = match k.vfs.resolve(&k.root, &k.root, path, true) {
        Ok(Resolved::Node(c, a)) => (c, a),
        Ok(Resolved::Fd(_)) => return Err(not_exec("not a regular file".into())),
        Err(err) => return Err(KernelError::ProgramNotFound { path: shown, err }),
    };
    if attr.kind != FileType::Regular {
        return Err(not_exec("not a regular file".into()));
    }
    let data =
        read_whole(chain.loc(), attr.size).map_err(|e| not_exec(format!("read failed: {e}")))?;
    if !elf::is_elf(&data) {
        return Err(not_exec(if data.starts_with(b"#!") {
            "a script whose interpreter is a script too (not supported); run the interpreter instead".into()
        } else {
            "not an ELF executable".into()
        }));
    }
    let name: Arc<str> = Arc::from(String::from_utf8_lossy(path).as_ref());
    let image = elf::load(&data, name).map_err(|e| not_exec(e.to_string()))?;
    let mut entry = image.entry;
    let mut base = 0;
    if let Some(interp) = &image.interp {
        let ishown = String::from_utf8_lossy(interp).into_owned();
        let (ichain, iattr) = match k.vfs.resolve(&k.root, &k.root, interp, true) {
            Ok(Resolved::Node(c, a)) => (c, a),
            _ => {
                return Err(not_exec(format!(
                    "its interpreter {ishown} is missing in the root file system"
                )))
            }
        };
        let idata = read_whole(ichain.loc(), iattr.size)
            .map_err(|e| not_exec(format!("reading {ishown}: {e}")))?;
        let iimage = elf::load(&idata, Arc::from(ishown.as_str()))
            .map_err(|e| not_exec(format!("{ishown}: {e}")))?;
        entry = iimage.entry;
        base = iimage.bias;
    }
    {
        let mut b = lock(&k.brk);
        // NoBrk: a break that never moves (brk answers the current break,
        // as Linux does when it cannot grow the heap).
        b.start = if k.no_brk { u64::MAX } else { image.end };
        b.cur = image.end;
        b.mapped_end = image.end;
    }
    let (uid, gid) = (
        myst_platform::host::int_syscall(102, [0; 6]) as u64,
        myst_platform::host::int_syscall(104, [0; 6]) as u64,
    );
    use elf::at;
    let auxv = [
        (
            at::SYSINFO_EHDR,
            myst_platform::host::getauxval(at::SYSINFO_EHDR),
        ),
        (
            at::MINSIGSTKSZ,
            myst_platform::host::getauxval(at::MINSIGSTKSZ),
        ),
        (at::HWCAP, myst_platform::host::getauxval(at::HWCAP)),
        (at::PAGESZ, 4096),
        (at::CLKTCK, 100),
        (at::PHDR, image.phdr),
        (at::PHENT, 56),
        (at::PHNUM, image.phnum),
        (at::BASE, base),
        (at::FLAGS, 0),
        (at::ENTRY, image.entry),
        (at::UID, uid),
        (at::EUID, uid),
        (at::GID, gid),
        (at::EGID, gid),
        (at::SECURE, 0),
        (at::HWCAP2, myst_platform::host::getauxval(at::HWCAP2)),
    ];
    let (sp, stack_base, auxv_bytes) = elf::build_stack(stack_size, argv, envp, path, &auxv)
        .map_err(|e| not_exec(format!("building the stack: {e}")))?;
    if k.exec_stack {
        // build_stack maps at least 64 KiB.
        myst_platform::guestmem::protect(stack_base, stack_size.max(64 * 1024), 7)
            .map_err(|e| not_exec(format!("making the stack executable: errno {e}")))?;
    }
    *lock(&k.auxv) = auxv_bytes;
    Ok((entry, sp))
}

/// When `path` is a `#!` script: its interpreter and the argv execve would
/// give it (interpreter, optional argument, script path, the script's
/// arguments). Otherwise (or when it cannot be read; load_program then says
/// why) `path` and `argv` unchanged.
fn script_interpreter(k: &Kernel, path: &[u8], argv: &[Vec<u8>]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let unchanged = || (path.to_vec(), argv.to_vec());
    let Ok(Resolved::Node(chain, attr)) = k.vfs.resolve(&k.root, &k.root, path, true) else {
        return unchanged();
    };
    if attr.kind != FileType::Regular {
        return unchanged();
    }
    let mut head = vec![0u8; 256];
    let Ok(n) = chain.loc().mnt.fs.read(chain.loc().ino, 0, &mut head) else {
        return unchanged();
    };
    head.truncate(n);
    let Some(line) = head.strip_prefix(b"#!") else {
        return unchanged();
    };
    let line = line.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut parts = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|p| !p.is_empty());
    let Some(interp) = parts.next() else {
        return unchanged();
    };
    let rest: Vec<u8> = parts.collect::<Vec<_>>().join(&b' ');
    let mut new_argv = vec![interp.to_vec()];
    if !rest.is_empty() {
        new_argv.push(rest);
    }
    new_argv.push(path.to_vec());
    new_argv.extend(argv.iter().skip(1).cloned());
    (interp.to_vec(), new_argv)
}

/// Starts the guest and waits for it; returns its exit status (128+N when
/// signal N killed it).
pub fn run(config: Config) -> Result<i32, KernelError> {
    myst_platform::sud::check_support()?;
    if !config.program.starts_with(b"/") {
        return Err(KernelError::RelativePath(
            String::from_utf8_lossy(&config.program).into_owned(),
        ));
    }
    if let Err(e) = pagestore::init(config.memory_size) {
        let msg = format!("myst: warning: no page store ({e}): shared file mappings give ENODEV\n");
        myst_platform::host::write_stderr(msg.as_bytes());
    }
    let (vfs, root) = build_vfs(config.root, config.memory_size);
    // Parents before the mounts inside them, whatever the config's order.
    let mut mounts = config.mounts;
    mounts.sort_by_key(|m| {
        m.target
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .count()
    });
    for m in mounts {
        let shown = || String::from_utf8_lossy(&m.target).into_owned();
        // Configuration mounts may replace the built-in ones (/tmp).
        vfs.mount_at(
            &root,
            &root,
            &m.target,
            m.fs,
            m.fstype,
            m.source,
            m.read_only,
            true,
            true,
        )
        .map_err(|err| KernelError::Mount {
            target: shown(),
            err,
        })?;
    }
    let cwd_shown = || String::from_utf8_lossy(&config.cwd).into_owned();
    let cwd = match vfs.resolve(&root, &root, &config.cwd, true) {
        Ok(Resolved::Node(c, a)) if a.kind == FileType::Directory => c,
        Ok(_) => {
            return Err(KernelError::Cwd {
                path: cwd_shown(),
                err: Errno::ENOTDIR,
            })
        }
        Err(err) => {
            return Err(KernelError::Cwd {
                path: cwd_shown(),
                err,
            })
        }
    };
    let mut fds = FdTable::new();
    for fd in 0..3 {
        let file = OpenFile::new(
            FileKind::Host { fd, _owner: None },
            O_RDWR,
            format!("/dev/fd/{fd}").into_bytes(),
        );
        fds.set(fd as usize, file, false);
    }
    let k = Kernel {
        vfs,
        root,
        fs_ctx: Mutex::new(FsCtx { cwd, umask: 0o022 }),
        fds: Mutex::new(fds),
        brk: Mutex::new(Brk {
            start: 0,
            cur: 0,
            mapped_end: 0,
        }),
        sigactions: Mutex::new(vec![[0u64; 4]; 65]),
        no_handler: std::sync::atomic::AtomicU64::new(!0),
        exe: Mutex::new(config.program.clone()),
        argv: Mutex::new(config.argv.clone()),
        envp: Mutex::new(config.envp.clone()),
        auxv: Mutex::new(Vec::new()),
        stack_size: config.stack_size,
        strace: config.strace || !config.strace_filter.is_empty(),
        strace_only: if config.strace_filter.is_empty() {
            None
        } else {
            Some(
                config
                    .strace_filter
                    .iter()
                    .filter_map(|n| syscalls::table::number(n))
                    .collect(),
            )
        },
        unhandled_enosys: config.unhandled_enosys,
        logged: Mutex::new(HashSet::new()),
        memory_size: config.memory_size,
        hostname: config.hostname.clone(),
        thread_stack_size: config.thread_stack_size,
        max_affinity_cpus: config.max_affinity_cpus,
        no_brk: config.no_brk,
        exec_stack: config.exec_stack,
        trust: config.trust.clone(),
        host_ids: config.host_ids.clone(),
    };
    let k = KERNEL.get_or_init(|| k);
    // A `#!` script as the program runs its interpreter, as execve does.
    let (program, argv) = script_interpreter(k, &config.program, &config.argv);
    if program != config.program {
        *lock(&k.exe) = program.clone();
        *lock(&k.argv) = argv.clone();
    }
    let (entry, sp) = load_program(k, &program, &argv, &config.envp, config.stack_size)?;
    myst_platform::guestmem::set_budget(
        config
            .memory_size
            .saturating_add(myst_platform::guestmem::used_bytes()),
    );
    myst_platform::sud::set_dispatcher(syscalls::dispatch);
    myst_platform::rewrite::enable(config.rewrite_syscalls);
    ofd::init();
    let child = myst_platform::host::fork().map_err(|e| KernelError::Host("fork", e))?;
    if child == 0 {
        ofd::register_self();
        match myst_platform::sud::enter_guest(entry, sp) {
            Ok(never) => match never {},
            Err(e) => {
                myst_platform::host::write_stderr(format!("myst: error: {e}\n").as_bytes());
                myst_platform::host::exit_group(1);
            }
        }
    }
    myst_platform::sud::supervise(child as i32)
        .map_err(|e| KernelError::Host("waiting for the program", e))
}
