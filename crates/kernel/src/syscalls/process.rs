//! Process basics: exit, ids, uname, sysinfo, limits, arch_prctl, prctl,
//! scheduling, futex, getrandom.

use super::{copy_out, write_u64, SysResult};
use crate::Kernel;
use myst_fs::Errno;
use myst_platform::host;
use myst_platform::sud::SyscallFrame;

/// exit(2): ends the calling thread (the process ends with its last thread).
pub fn exit(code: u64) -> SysResult {
    myst_platform::sud::exit_thread(code as i32 & 0xff)
}

/// set_tid_address(2): the host kernel clears and wakes this guest word
/// when the thread exits (pthread_join relies on it).
pub fn set_tid_address(addr: u64) -> SysResult {
    let r = myst_platform::guestmem::set_tid_address(addr);
    if r < 0 {
        Err(Errno::EFAULT)
    } else {
        Ok(r)
    }
}

/// exit_group(2).
pub fn exit_group(code: u64) -> SysResult {
    // Locks and shared open files go now, not when someone notices.
    crate::ofd::exit_self();
    crate::pagestore::at_exit();
    host::exit_group(code as i32 & 0xff)
}

/// uname(2): the host's, with the configured host name.
pub fn uname(k: &Kernel, buf: u64) -> SysResult {
    let mut u = host::uname();
    if let Some(h) = &k.hostname {
        let field = &mut u[65..130];
        field.fill(0);
        let n = h.len().min(64);
        field[..n].copy_from_slice(&h.as_bytes()[..n]);
    }
    copy_out(buf, &u)?;
    Ok(0)
}

/// sysinfo(2): memory figures from the budget.
pub fn sysinfo(k: &Kernel, buf: u64) -> SysResult {
    let mut s = host::sysinfo();
    let used = myst_platform::guestmem::used_bytes();
    s[32..40].copy_from_slice(&k.memory_size.to_le_bytes());
    s[40..48].copy_from_slice(&k.memory_size.saturating_sub(used).to_le_bytes());
    s[64..80].fill(0);
    s[80..82].copy_from_slice(&1u16.to_le_bytes());
    s[104..108].copy_from_slice(&1u32.to_le_bytes());
    copy_out(buf, &s)?;
    Ok(0)
}

fn limit(res: u64) -> Result<[u64; 2], Errno> {
    if res == 7 {
        return Ok([1024, 1024]);
    }
    // RLIMIT_STACK: glibc sizes its threads' default stacks from it.
    if let (3, Some(t)) = (res, crate::kernel().thread_stack_size) {
        return Ok([t, u64::MAX]);
    }
    host::prlimit(res as u32, None)
}

/// getrlimit(2).
pub fn getrlimit(res: u64, buf: u64) -> SysResult {
    let l = limit(res)?;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&l[0].to_le_bytes());
    b[8..].copy_from_slice(&l[1].to_le_bytes());
    copy_out(buf, &b)?;
    Ok(0)
}

/// prlimit64(2) on this process; new limits are accepted and not applied
/// to the host (except what the runtime itself enforces).
pub fn prlimit64(pid: u64, res: u64, new: u64, old: u64) -> SysResult {
    let me = host::int_syscall(39, [0; 6]) as u64;
    if pid != 0 && pid != me {
        return Err(Errno::ESRCH);
    }
    if res > 15 {
        return Err(Errno::EINVAL);
    }
    if old != 0 {
        getrlimit(res, old)?;
    }
    if new != 0 {
        super::copy_in(new, 16)?;
    }
    Ok(0)
}

/// getrusage(2): zeros (no accounting yet).
pub fn getrusage(_who: u64, buf: u64) -> SysResult {
    copy_out(buf, &[0u8; 144])?;
    Ok(0)
}

/// times(2).
pub fn times(buf: u64) -> SysResult {
    if buf != 0 {
        copy_out(buf, &[0u8; 32])?;
    }
    let (s, ns) = host::clock_gettime(1)?;
    Ok(s * 100 + ns / 10_000_000)
}

/// getgroups(2): no supplementary groups.
pub fn getgroups(_size: u64, _list: u64) -> SysResult {
    Ok(0)
}

/// getresuid/getresgid.
pub fn getres_ids(nr: u64, a: u64, b: u64, c: u64) -> SysResult {
    let id = host::int_syscall(if nr == 118 { 102 } else { 104 }, [0; 6]) as u32;
    for p in [a, b, c] {
        copy_out(p, &id.to_le_bytes())?;
    }
    Ok(0)
}

/// arch_prctl(2): the guest's FS base is kept in the thread's control block
/// and installed when the syscall returns.
pub fn arch_prctl(frame: &mut SyscallFrame, code: u64, addr: u64) -> SysResult {
    match code {
        0x1001 => {
            frame.set_guest_gs(addr);
            Ok(0)
        }
        0x1002 => {
            if addr >= 1 << 47 {
                return Err(Errno::EPERM);
            }
            frame.set_guest_fs(addr);
            Ok(0)
        }
        0x1003 => {
            write_u64(addr, frame.guest_fs())?;
            Ok(0)
        }
        0x1004 => {
            write_u64(addr, frame.guest_gs())?;
            Ok(0)
        }
        0x1011 => Ok(1),
        _ => Err(Errno::EINVAL),
    }
}

/// prctl(2): the harmless subset.
pub fn prctl(option: u64, arg: u64) -> SysResult {
    match option {
        15 => Ok(0),
        16 => {
            copy_out(arg, b"myst-guest\0\0\0\0\0\0")?;
            Ok(0)
        }
        3 => Ok(1),
        4 | 36 | 38 | 1 | 8 => Ok(0),
        39 => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// The CPU mask the guest sees (`len` bytes at most): the host's, keeping
/// only its first MaxAffinityCPUs CPUs when that is configured.
pub fn cpu_mask(k: &Kernel, len: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    let n = host::sched_getaffinity(&mut buf)?;
    buf.truncate(n);
    if let Some(max) = k.max_affinity_cpus {
        let mut left = max;
        for byte in buf.iter_mut() {
            for bit in 0..8 {
                if *byte & (1 << bit) != 0 {
                    if left == 0 {
                        *byte &= !(1 << bit);
                    } else {
                        left -= 1;
                    }
                }
            }
        }
    }
    Ok(buf)
}

/// sched_getaffinity(2).
pub fn sched_getaffinity(_pid: u64, size: u64, mask: u64) -> SysResult {
    if size == 0 || !size.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let buf = cpu_mask(crate::kernel(), size.min(1024) as usize)?;
    copy_out(mask, &buf)?;
    Ok(buf.len() as i64)
}

/// getcpu(2): the CPU and NUMA node the calling thread runs on, as the host
/// reports them (either pointer may be NULL; the third argument is unused
/// since Linux 2.6.24).
pub fn getcpu(cpu: u64, node: u64) -> SysResult {
    let (c, n) = host::getcpu()?;
    if cpu != 0 {
        copy_out(cpu, &c.to_le_bytes())?;
    }
    if node != 0 {
        copy_out(node, &n.to_le_bytes())?;
    }
    Ok(0)
}

/// futex(2) on guest memory, forwarded to the host.
pub fn futex(uaddr: u64, op: u64, val: u64, timeout: u64, uaddr2: u64, val3: u64) -> SysResult {
    let r =
        myst_platform::guestmem::futex(uaddr, op as u32, val as u32, timeout, uaddr2, val3 as u32);
    Errno::result(r)
}

/// getrandom(2).
pub fn getrandom(buf: u64, len: u64, _flags: u64) -> SysResult {
    let len = len.min(33_554_431) as usize;
    let mut v = vec![0u8; len];
    host::getrandom(&mut v)?;
    copy_out(buf, &v)?;
    Ok(len as i64)
}
