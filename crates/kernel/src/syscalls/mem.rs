//! Memory: mmap (anonymous and of guest files), munmap, mprotect, mremap,
//! msync, brk, madvise. Every change goes through platform's guest-memory
//! record. Shared file mappings map page-store pages (see
//! [`crate::pagestore`]) or, on hostfs, the host file itself.

use super::{file_of, SysResult};
use crate::file::{lock, FileKind};
use crate::{pagestore, Kernel};
use myst_fs::{Errno, FileType};
use myst_platform::guestmem::{
    self, FileTag, Run, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED,
    PROT_WRITE,
};
use std::os::fd::AsRawFd;
use std::sync::Arc;

const PAGE: u64 = 4096;
/// makedev(1, 5).
const DEV_ZERO: u64 = (1 << 8) | 5;
const MAP_SHARED_VALIDATE: u32 = 3;
/// The flags Linux accepts with MAP_SHARED_VALIDATE (its LEGACY_MAP_MASK).
const LEGACY_MAP_MASK: u32 = 0x3
    | 0x10
    | 0x20
    | 0x40
    | 0x80
    | 0x100
    | 0x800
    | 0x1000
    | 0x2000
    | 0x4000
    | 0x8000
    | 0x10000
    | 0x20000
    | 0x40000
    | 0x400_0000
    | 0xfc00_0000;

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
    // Linux's order: the offset, then the descriptor, then the rest.
    if !off.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    let f = if flags & MAP_ANONYMOUS == 0 {
        Some(file_of(k, fd)?)
    } else {
        None
    };
    if len == 0 || len > 1 << 46 {
        return Err(Errno::EINVAL);
    }
    let kind = flags & 0xf;
    if kind != 1 && kind != 2 && kind != 3 {
        return Err(Errno::EINVAL);
    }
    let Some(f) = f else {
        return guestmem::map(addr, len, prot, flags, None).map(|a| a as i64);
    };
    if kind == MAP_SHARED_VALIDATE && flags & !LEGACY_MAP_MASK != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let shared = kind == 1 || kind == 3;
    let (loc, path) = match &f.kind {
        FileKind::Node {
            chain,
            kind: FileType::Regular,
        } => (chain.loc().clone(), chain.path()),
        FileKind::Node {
            chain,
            kind: FileType::CharDev,
        } if chain.loc().attr().is_ok_and(|a| a.rdev == DEV_ZERO) => {
            if !f.readable() || (shared && prot & PROT_WRITE != 0 && !f.writable()) {
                return Err(Errno::EACCES);
            }
            // /dev/zero: anonymous memory, shared or private as asked; a
            // shared one from a read-only descriptor never becomes writable.
            let may_write = !shared || f.writable();
            return guestmem::map_limited(addr, len, prot, flags | MAP_ANONYMOUS, None, may_write)
                .map(|a| a as i64);
        }
        FileKind::Node { .. } => return Err(Errno::ENODEV),
        FileKind::Host { .. } => return Err(Errno::ENODEV),
    };
    if !f.readable() {
        return Err(Errno::EACCES);
    }
    if shared && prot & PROT_WRITE != 0 && !f.writable() {
        return Err(Errno::EACCES);
    }
    let len = len.div_ceil(PAGE) * PAGE;
    let name: Arc<str> = Arc::from(String::from_utf8_lossy(&path).as_ref());
    let fs = &loc.mnt.fs;
    // hostfs: the host file itself, shared or private; the host keeps it
    // coherent with read/write and other processes.
    if let Some(file) = fs.host_file(loc.ino, shared && f.writable()) {
        let file = file?;
        let tag = FileTag {
            id: 0,
            pgoff: off / PAGE,
            writable: f.writable(),
        };
        let runs = [Run { at: 0, off, len }];
        let host_flags = if shared { MAP_SHARED } else { MAP_PRIVATE } | (flags & !0xf);
        let r = guestmem::map_fd(
            addr,
            len,
            prot,
            host_flags,
            Some(name.clone()),
            file.as_raw_fd(),
            &runs,
            tag,
        );
        match r {
            Ok((at, _)) => return Ok(at as i64),
            // A host that refuses (noexec mount, odd file): copy instead.
            Err(e) if !shared && [Errno::EPERM, Errno::EACCES, Errno::ENODEV].contains(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if shared {
        let cached = fs
            .as_any()
            .and_then(|a| a.downcast_ref::<pagestore::CachedFs>())
            .ok_or(Errno::ENODEV.with("this file system has no shared mappings"))?;
        let store = pagestore::store().ok_or(Errno::ENODEV)?;
        let m = cached.map_pages(loc.ino, off / PAGE, len / PAGE, f.writable())?;
        let r = guestmem::map_fd(
            addr,
            len,
            prot,
            (flags & !0xf) | MAP_SHARED,
            Some(name),
            store.fd(),
            &m.runs,
            m.tag,
        );
        return match r {
            Ok((at, first)) => {
                if !first {
                    // This process already holds the file's reference.
                    pagestore::unref(m.tag.id);
                }
                Ok(at as i64)
            }
            Err(e) => {
                pagestore::unref(m.tag.id);
                Err(e)
            }
        };
    }
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
    let grows_store = guestmem::region_at(old).and_then(|r| {
        let t = r.file.filter(|t| t.id != 0 && r.shared)?;
        (new_len.div_ceil(PAGE) > old_len.div_ceil(PAGE)).then_some((r, t))
    });
    if let Some((r, t)) = grows_store {
        return mremap_store(&r, t, old, old_len, new_len, flags as u32, new_addr);
    }
    guestmem::remap(old, old_len, new_len, flags as u32, new_addr).map(|a| a as i64)
}

/// Grows a mapping of page-store pages: the file's next pages are mapped
/// from their own slots (in place when the range after it is free, else at
/// a new address when MREMAP_MAYMOVE allows).
fn mremap_store(
    r: &guestmem::Region,
    t: FileTag,
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: u32,
    new_addr: u64,
) -> SysResult {
    const MAYMOVE: u32 = 1;
    const FIXED: u32 = 2;
    if !old.is_multiple_of(PAGE) || flags & !(MAYMOVE | FIXED) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & FIXED != 0 && (flags & MAYMOVE == 0 || !new_addr.is_multiple_of(PAGE)) {
        return Err(Errno::EINVAL);
    }
    let old_len = old_len.div_ceil(PAGE) * PAGE;
    let new_len = new_len
        .checked_next_multiple_of(PAGE)
        .ok_or(Errno::ENOMEM)?;
    let old_end = old.checked_add(old_len).ok_or(Errno::EINVAL)?;
    if old_len == 0 || r.end < old_end {
        return Err(Errno::EFAULT);
    }
    let pgoff = t.pgoff + (old - r.start) / PAGE;
    let store = pagestore::store().ok_or(Errno::ENODEV)?;
    let map = |at: u64, first: u64, len: u64, place: u32| -> Result<u64, Errno> {
        let m = pagestore::map_again(t.id, first, len / PAGE, t.writable)?;
        let res = guestmem::map_fd(
            at,
            len,
            r.prot,
            MAP_SHARED | place,
            r.name.clone(),
            store.fd(),
            &m.runs,
            m.tag,
        );
        // The process keeps a region of the file throughout, so the new
        // reference is one too many.
        pagestore::unref(m.tag.id);
        res.map(|(a, _)| a)
    };
    if flags & FIXED == 0 {
        // In place: the next file pages right after the old ones, if
        // nothing (of the guest or of myst) is there.
        let tail = new_len - old_len;
        if map(old_end, pgoff + old_len / PAGE, tail, MAP_FIXED_NOREPLACE).is_ok() {
            return Ok(old as i64);
        }
        if flags & MAYMOVE == 0 {
            return Err(Errno::ENOMEM);
        }
    }
    let (target, place) = if flags & FIXED != 0 {
        (new_addr, MAP_FIXED)
    } else {
        (0, 0)
    };
    let at = map(target, pgoff, new_len, place)?;
    let _ = guestmem::unmap(old, old_len);
    Ok(at as i64)
}

/// msync(2): pages of shared file mappings go back to their file system.
pub fn msync(addr: u64, len: u64, flags: u64) -> SysResult {
    const MS_ASYNC: u64 = 1;
    const MS_INVALIDATE: u64 = 2;
    const MS_SYNC: u64 = 4;
    if !addr.is_multiple_of(PAGE)
        || flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
        || flags & (MS_ASYNC | MS_SYNC) == MS_ASYNC | MS_SYNC
    {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE).ok_or(Errno::ENOMEM)?;
    let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
    let pieces = guestmem::regions_in(addr, len);
    let mut at = addr;
    for p in &pieces {
        if p.start != at {
            return Err(Errno::ENOMEM);
        }
        at = p.end;
    }
    if at < end {
        return Err(Errno::ENOMEM);
    }
    if flags & MS_INVALIDATE != 0 && pieces.iter().any(|p| p.locked) {
        return Err(Errno::EBUSY);
    }
    for p in pieces {
        match p.file {
            Some(t) if p.shared && t.id != 0 => {
                pagestore::writeback(t.id, t.pgoff, (p.end - p.start) / PAGE)?;
            }
            Some(_) if p.shared => {
                guestmem::host_msync(p.start, p.end - p.start, flags as u32)?;
            }
            _ => {}
        }
    }
    Ok(0)
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
