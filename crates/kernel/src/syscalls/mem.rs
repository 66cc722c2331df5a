//! Memory: mmap (anonymous and of guest files), munmap, mprotect, mremap,
//! brk, madvise. Every change goes through platform's guest-memory record.

use super::{file_of, SysResult};
use crate::file::{lock, FileKind};
use crate::Kernel;
use myst_fs::{Errno, FileType};
use myst_platform::guestmem::{self, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, PROT_WRITE};
use std::sync::Arc;

const PAGE: u64 = 4096;

/// mmap(2).
pub fn mmap(
    k: &Kernel,
    addr: u64,
    len: u64,
    prot: u64,
    flags: u64,
    fd: u64,
    off: u64,
) -> SysResult {
    let flags = flags as u32;
    let prot = prot as u32;
    if len == 0 || !off.is_multiple_of(PAGE) || len > 1 << 46 {
        return Err(Errno::EINVAL);
    }
    let kind = flags & 0xf;
    if kind != 1 && kind != 2 && kind != 3 {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_ANONYMOUS != 0 {
        return guestmem::map(addr, len, prot, flags, None).map(|a| a as i64);
    }
    let f = file_of(k, fd)?;
    let (loc, path) = match &f.kind {
        FileKind::Node {
            chain,
            kind: FileType::Regular,
        } => (chain.loc().clone(), chain.path()),
        FileKind::Node { .. } => return Err(Errno::ENODEV),
        FileKind::Host { .. } => return Err(Errno::ENODEV),
    };
    if !f.readable() {
        return Err(Errno::EACCES);
    }
    if kind == 1 && prot & PROT_WRITE != 0 {
        // Writes through a shared mapping would have to reach the file.
        return Err(Errno::ENODEV.with("shared writable file mappings are not supported"));
    }
    let name: Arc<str> = Arc::from(String::from_utf8_lossy(&path).as_ref());
    let private = (flags & !0xf) | 2;
    let at = guestmem::map(addr, len, prot | PROT_WRITE | 1, private, Some(name))?;
    let size = loc.attr()?.size;
    let avail = size.saturating_sub(off).min(len);
    let mut done = 0u64;
    while done < avail {
        let chunk = (avail - done).min(1 << 24) as usize;
        let r = guestmem::with_slice_mut(at + done, chunk, |s| {
            loc.mnt.fs.read(loc.ino, off.saturating_add(done), s)
        });
        let n = match r {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                let _ = guestmem::unmap(at, len);
                return Err(e);
            }
            Err(_) => {
                let _ = guestmem::unmap(at, len);
                return Err(Errno::EFAULT);
            }
        };
        if n == 0 {
            break;
        }
        done += n as u64;
    }
    if prot != prot | PROT_WRITE | 1 {
        guestmem::protect(at, len, prot)?;
    }
    Ok(at as i64)
}

/// munmap(2).
pub fn munmap(addr: u64, len: u64) -> SysResult {
    guestmem::unmap(addr, len).map(|_| 0)
}

/// mprotect(2).
pub fn mprotect(addr: u64, len: u64, prot: u64) -> SysResult {
    if len == 0 {
        return Ok(0);
    }
    guestmem::protect(addr, len, prot as u32).map(|_| 0)
}

/// mremap(2).
pub fn mremap(old: u64, old_len: u64, new_len: u64, flags: u64, new_addr: u64) -> SysResult {
    guestmem::remap(old, old_len, new_len, flags as u32, new_addr).map(|a| a as i64)
}

/// madvise(2).
pub fn madvise(addr: u64, len: u64, advice: u64) -> SysResult {
    if len == 0 {
        return Ok(0);
    }
    guestmem::advise(addr, len, advice as u32).map(|_| 0)
}

/// brk(2): grows or shrinks the heap after the program image; returns the
/// new break (the old one when it cannot move).
pub fn brk(k: &Kernel, addr: u64) -> SysResult {
    let mut b = lock(&k.brk);
    if addr == 0 || addr < b.start {
        return Ok(b.cur as i64);
    }
    let want_end = addr
        .checked_add(PAGE - 1)
        .map(|a| a & !(PAGE - 1))
        .ok_or(Errno::ENOMEM)?;
    let mapped = b
        .mapped_end
        .checked_add(PAGE - 1)
        .map(|a| a & !(PAGE - 1))
        .unwrap_or(b.mapped_end);
    if want_end > mapped {
        let flags = 2 | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
        if guestmem::map(
            mapped,
            want_end - mapped,
            3,
            flags,
            Some(Arc::from("[heap]")),
        )
        .is_err()
        {
            return Ok(b.cur as i64);
        }
        b.mapped_end = want_end;
    } else if want_end < mapped {
        let _ = guestmem::unmap(want_end, mapped - want_end);
        b.mapped_end = want_end;
    }
    b.cur = addr;
    Ok(addr as i64)
}
