//! Processes: fork/vfork/clone (without CLONE_VM threads) as host forks,
//! execve replacing the guest image in place, wait4 on host children.

use super::{copy_out, read_path, read_u64, write_i32, SysResult};
use crate::file::lock;
use crate::vfs::Resolved;
use crate::{load_program, Kernel};
use myst_fs::{Errno, FileType};
use myst_platform::sud::{self, SyscallFrame};
use myst_platform::{guestmem, host};

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_THREAD: u64 = 0x10000;
const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x100000;
const CLONE_CHILD_CLEARTID: u64 = 0x200000;
const CLONE_CHILD_SETTID: u64 = 0x1000000;

fn do_fork(frame: &mut SyscallFrame, stack: u64) -> SysResult {
    // The child gets a reference on every shared open file description
    // and on every page-store file it maps before it exists; the table
    // stays locked so none is opened or closed in between.
    let k = crate::kernel();
    let fds = lock(&k.fds);
    let files: Vec<_> = fds.list().into_iter().map(|(_, e)| e.file).collect();
    let ticket = crate::ofd::fork_prepare(files.iter().filter_map(|f| f.desc()))?;
    let held = crate::pagestore::before_fork();
    let pid = match host::fork() {
        Ok(pid) => pid,
        Err(e) => {
            crate::pagestore::fork_failed(&held);
            crate::ofd::fork_abort(ticket);
            return Err(e.with("fork"));
        }
    };
    if pid == 0 {
        crate::ofd::fork_child(ticket);
    } else {
        crate::ofd::fork_parent(ticket, pid);
    }
    drop(fds);
    drop(files);
    if pid == 0 {
        if let Err(e) = sud::rearm_after_fork() {
            host::write_stderr(format!("myst: error: fork child: {e}\n").as_bytes());
            host::exit_group(127);
        }
        if stack != 0 {
            frame.set_sp(stack);
        }
        return Ok(0);
    }
    Ok(pid as i64)
}

/// fork(2) and vfork(2) (a vfork child gets a copy of memory, like fork).
pub fn fork(frame: &mut SyscallFrame) -> SysResult {
    do_fork(frame, 0)
}

/// clone(2): threads (CLONE_VM|CLONE_THREAD) become host threads; process
/// clones become host forks.
pub fn clone(
    frame: &mut SyscallFrame,
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> SysResult {
    if flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0 {
        if flags & CLONE_THREAD == 0 || flags & CLONE_SIGHAND == 0 || stack == 0 {
            return Err(Errno::EINVAL.with("only POSIX threads share memory"));
        }
        let mut regs = frame.regs();
        regs[sud::REG_INDEX_RAX] = 0;
        regs[sud::REG_INDEX_RSP] = stack;
        regs[sud::REG_INDEX_RIP] = frame.ip();
        let fs = if flags & CLONE_SETTLS != 0 {
            tls
        } else {
            frame.guest_fs()
        };
        let check_word = |a: u64| guestmem::with_slice_mut(a, 4, |_| ()).is_ok();
        if flags & CLONE_CHILD_CLEARTID != 0 && !check_word(ctid) {
            return Err(Errno::EFAULT);
        }
        let clear = if flags & CLONE_CHILD_CLEARTID != 0 {
            ctid
        } else {
            0
        };
        let tid = sud::spawn_thread(regs, fs, frame.sigmask(), clear, |tid| {
            if flags & CLONE_PARENT_SETTID != 0 {
                let _ = write_i32(ptid, tid);
            }
            if flags & CLONE_CHILD_SETTID != 0 {
                let _ = write_i32(ctid, tid);
            }
        })
        .map_err(|_| Errno::EAGAIN)?;
        return Ok(tid as i64);
    }
    if flags & CLONE_THREAD != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & (CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_SETTLS) != 0
        && flags & CLONE_VFORK == 0
    {
        return Err(Errno::EINVAL);
    }
    let r = do_fork(frame, stack)?;
    if r == 0 {
        if flags & CLONE_CHILD_SETTID != 0 && ctid != 0 {
            let tid = host::int_syscall(186, [0; 6]) as i32;
            let _ = write_i32(ctid, tid);
        }
        let _ = CLONE_CHILD_CLEARTID;
    } else if flags & CLONE_PARENT_SETTID != 0 && ptid != 0 {
        let _ = write_i32(ptid, r as i32);
    }
    Ok(r)
}

/// wait4(2) on host children.
pub fn wait4(pid: u64, status: u64, options: u64, rusage: u64) -> SysResult {
    let (p, st) = host::wait4(pid as i64 as i32, options as i32)?;
    // An exited or killed child (not one that stopped or continued) may
    // have left locks and open file references behind.
    if p > 0 && st & 0x7f != 0x7f && st != 0xffff {
        crate::ofd::reap_pid(p as u32);
    }
    if p > 0 && status != 0 {
        write_i32(status, st)?;
    }
    if rusage != 0 {
        copy_out(rusage, &[0u8; 144])?;
    }
    Ok(p as i64)
}

fn read_strv(addr: u64) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    let mut total = 0usize;
    for i in 0..65536u64 {
        let p = read_u64(addr.wrapping_add(i * 8))?;
        if p == 0 {
            return Ok(out);
        }
        let s = match guestmem::read_cstr(p, 128 * 1024) {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Errno::E2BIG),
            Err(_) => return Err(Errno::EFAULT),
        };
        total += s.len() + 1;
        if total > 2 << 20 {
            return Err(Errno::E2BIG);
        }
        out.push(s);
    }
    Err(Errno::E2BIG)
}

/// execve(2): replaces the guest image in this process.
pub fn execve(
    k: &Kernel,
    frame: &mut SyscallFrame,
    pathp: u64,
    argvp: u64,
    envpp: u64,
) -> SysResult {
    let path = read_path(pathp)?;
    let mut argv = read_strv(argvp)?;
    let envp = read_strv(envpp)?;
    let cwd = lock(&k.fs_ctx).cwd.clone();
    let resolve = |p: &[u8]| -> Result<(Vec<u8>, Vec<u8>), Errno> {
        let start = if p.starts_with(b"/") {
            k.root.clone()
        } else {
            cwd.clone()
        };
        match k.vfs.resolve(&k.root, &start, p, true)? {
            Resolved::Node(c, a) => {
                if a.kind != FileType::Regular {
                    return Err(Errno::EACCES);
                }
                if a.perm & 0o111 == 0 {
                    return Err(Errno::EACCES);
                }
                let head = {
                    let mut b = vec![0u8; 256];
                    let n = c.loc().mnt.fs.read(c.loc().ino, 0, &mut b)?;
                    b.truncate(n);
                    b
                };
                Ok((c.path(), head))
            }
            Resolved::Fd(_) => Err(Errno::EACCES),
        }
    };
    let (mut abs, head) = resolve(&path)?;
    if head.starts_with(b"#!") {
        let line = head[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        let mut parts = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|s| !s.is_empty());
        let interp = parts.next().ok_or(Errno::ENOEXEC)?.to_vec();
        let rest: Vec<u8> = parts.collect::<Vec<_>>().join(&b' ');
        let mut new_argv = vec![interp.clone()];
        if !rest.is_empty() {
            new_argv.push(rest);
        }
        new_argv.push(path.clone());
        new_argv.extend(argv.iter().skip(1).cloned());
        argv = new_argv;
        let (iabs, ihead) = resolve(&interp)?;
        if !ihead.starts_with(b"\x7fELF") {
            return Err(Errno::ENOEXEC);
        }
        abs = iabs;
    } else if !head.starts_with(b"\x7fELF") {
        return Err(Errno::ENOEXEC);
    }
    // Point of no return: the old image goes away.
    for r in guestmem::regions() {
        let _ = guestmem::unmap(r.start, r.end - r.start);
    }
    let (entry, sp) = match load_program(k, &abs, &argv, &envp, k.stack_size) {
        Ok(v) => v,
        Err(e) => {
            host::write_stderr(format!("myst: execve: {e}\n").as_bytes());
            host::exit_group(127);
        }
    };
    // Close-on-exec descriptors, caught signals back to default.
    {
        let mut t = lock(&k.fds);
        for (fd, e) in t.list() {
            if e.cloexec {
                let _ = t.close(fd);
            }
        }
    }
    {
        let mut acts = lock(&k.sigactions);
        for (sig, a) in acts.iter_mut().enumerate().skip(1) {
            if a[0] > 1 {
                let _ = host::sigaction(
                    sig as i32,
                    Some([0, 0x0400_0000, sud::restorer_address(), 0]),
                );
                *a = [0; 4];
                k.no_handler
                    .fetch_or(1 << (sig - 1), std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    *lock(&k.exe) = abs;
    *lock(&k.argv) = argv;
    *lock(&k.envp) = envp;
    frame.reset_to(entry, sp);
    Ok(0)
}
