//! Guest memory: the record of every mapping the guest owns, the host calls
//! that change it, and checked copies between guest and runtime memory.
//!
//! The guest gets memory only through these functions (its mmap, brk and the
//! ELF loader all land here), so the record is complete. A copy is allowed
//! only if the whole range lies in guest mappings with the needed protection;
//! a guest pointer into myst's own memory is refused (EFAULT), never followed.
//! Copies hold the record's read lock, map changes its write lock, so no
//! guest thread can unmap memory while the runtime copies into it. The lock
//! is never held across a host call that may block (host I/O goes through
//! bounce buffers, see crate::host): a thread waiting in read() must not stop
//! another thread's mmap.

use crate::errno::Errno;
use crate::raw::{check, nr, syscall6};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Readable.
pub const PROT_READ: u32 = 1;
/// Writable.
pub const PROT_WRITE: u32 = 2;
/// Executable.
pub const PROT_EXEC: u32 = 4;

/// Shared mapping.
pub const MAP_SHARED: u32 = 0x01;
/// Private (copy-on-write) mapping.
pub const MAP_PRIVATE: u32 = 0x02;
/// Place exactly at the address, replacing what is there.
pub const MAP_FIXED: u32 = 0x10;
/// Anonymous memory.
pub const MAP_ANONYMOUS: u32 = 0x20;
const MAP_LOCKED: u32 = 0x2000;
const MAP_NORESERVE: u32 = 0x4000;
const MAP_POPULATE: u32 = 0x8000;
const MAP_STACK: u32 = 0x20000;
/// Place exactly at the address, failing if anything is there.
pub const MAP_FIXED_NOREPLACE: u32 = 0x100000;
const MREMAP_MAYMOVE: u32 = 1;
const MREMAP_FIXED: u32 = 2;

const PAGE: u64 = 4096;
const EINVAL: Errno = Errno::EINVAL;
const ENOMEM: Errno = Errno::ENOMEM;
const EEXIST: Errno = Errno::EEXIST;

/// A guest address range the runtime may not touch (EFAULT for the guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault;

/// One guest mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// Shared (visible to forked children) rather than private.
    pub shared: bool,
    /// What /proc/self/maps shows (a path, `[stack]`, `[heap]`), if anything.
    pub name: Option<Arc<str>>,
    /// The file this region maps from a host descriptor (MAP_SHARED file
    /// mappings and direct host-file mappings), if any.
    pub file: Option<FileTag>,
    /// mprotect may add PROT_WRITE (false for a shared mapping of a
    /// read-only descriptor).
    pub may_write: bool,
    /// Mapped with MAP_LOCKED.
    pub locked: bool,
}

/// What a file-backed region maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileTag {
    /// The kernel's page-store file index; 0 for a host file mapped
    /// directly (the host keeps those coherent, nothing to track).
    pub id: u64,
    /// File page mapped at the region's first byte.
    pub pgoff: u64,
    /// The file was opened for writing, so a shared mapping may be made
    /// writable by mprotect.
    pub writable: bool,
}

/// Called (without the record's lock) after an operation removed
/// page-store file pieces from this process: the pieces, then the store
/// file ids of which this process now has no region at all.
pub type UnmapHook = fn(&[Region], &[u64]);

static UNMAP_HOOK: OnceLock<UnmapHook> = OnceLock::new();

/// Sets the hook told about removed page-store mappings (once, at start-up).
pub fn set_unmap_hook(hook: UnmapHook) {
    let _ = UNMAP_HOOK.set(hook);
}

/// Tells the hook what `removed` took away (store-backed pieces only).
fn notify(removed: Vec<Region>, gone: Vec<u64>) {
    if removed.is_empty() && gone.is_empty() {
        return;
    }
    if let Some(h) = UNMAP_HOOK.get() {
        h(&removed, &gone);
    }
}

#[derive(Default)]
struct Map {
    regions: BTreeMap<u64, Region>,
    /// Regions per page-store file id (ids with at least one region).
    file_regions: BTreeMap<u64, u32>,
    /// Bytes of accessible (not PROT_NONE) guest memory.
    used: u64,
    /// Most accessible guest memory allowed (the MemorySize budget).
    budget: u64,
}

static MAP: RwLock<Map> = RwLock::new(Map {
    regions: BTreeMap::new(),
    file_regions: BTreeMap::new(),
    used: 0,
    budget: u64::MAX,
});

/// Sets the budget of accessible guest memory (mmap/brk fail with ENOMEM past it).
pub fn set_budget(bytes: u64) {
    write_map().budget = bytes;
}

/// Bytes of accessible guest memory mapped now.
pub fn used_bytes() -> u64 {
    read_map().used
}

/// Budget cost of a region: accessible private memory. Shared file
/// mappings cost nothing here: their pages are the page store's (counted
/// once there, for every process) or the host's page cache.
fn cost(r: &Region) -> u64 {
    if r.prot == 0 || (r.shared && r.file.is_some()) {
        0
    } else {
        r.end - r.start
    }
}

/// The page-store id of a region, if it maps store pages.
fn store_id(r: &Region) -> Option<u64> {
    r.file.filter(|t| t.id != 0).map(|t| t.id)
}

/// The same region cut to [start, end) (inside it), file offset adjusted.
fn piece(r: &Region, start: u64, end: u64) -> Region {
    let mut p = Region {
        start,
        end,
        ..r.clone()
    };
    if let Some(t) = &mut p.file {
        t.pgoff += (start - r.start) / PAGE;
    }
    p
}

fn read_map() -> RwLockReadGuard<'static, Map> {
    MAP.read().unwrap_or_else(|p| p.into_inner())
}

fn write_map() -> RwLockWriteGuard<'static, Map> {
    MAP.write().unwrap_or_else(|p| p.into_inner())
}

impl Map {
    /// Removes [start, end) from the record, splitting regions at the edges;
    /// returns the removed pieces.
    fn carve(&mut self, start: u64, end: u64) -> Vec<Region> {
        let mut keys: Vec<u64> = Vec::new();
        if let Some((&k, r)) = self.regions.range(..start).next_back() {
            if r.end > start {
                keys.push(k);
            }
        }
        keys.extend(self.regions.range(start..end).map(|(&k, _)| k));
        let mut removed = Vec::new();
        for k in keys {
            let Some(r) = self.take(k) else {
                continue;
            };
            if r.start < start {
                self.put(piece(&r, r.start, start));
            }
            if r.end > end {
                self.put(piece(&r, end, r.end));
            }
            let p = piece(&r, r.start.max(start), r.end.min(end));
            self.used = self.used.saturating_sub(cost(&p));
            removed.push(p);
        }
        removed
    }

    /// Removes the region starting at `k` (cost unchanged: see callers).
    fn take(&mut self, k: u64) -> Option<Region> {
        let r = self.regions.remove(&k)?;
        if let Some(id) = store_id(&r) {
            if let Some(n) = self.file_regions.get_mut(&id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.file_regions.remove(&id);
                }
            }
        }
        Some(r)
    }

    /// Adds a region without touching the cost (split pieces of one region).
    fn put(&mut self, r: Region) {
        if let Some(id) = store_id(&r) {
            *self.file_regions.entry(id).or_insert(0) += 1;
        }
        self.regions.insert(r.start, r);
    }

    fn insert(&mut self, r: Region) -> Vec<Region> {
        let removed = self.carve(r.start, r.end);
        self.used += cost(&r);
        self.put(r);
        removed
    }

    /// Store-backed pieces of `removed`, and the store ids of which no
    /// region is left.
    fn released(&self, removed: Vec<Region>) -> (Vec<Region>, Vec<u64>) {
        let pieces: Vec<Region> = removed
            .into_iter()
            .filter(|r| store_id(r).is_some())
            .collect();
        let mut gone: Vec<u64> = pieces
            .iter()
            .filter_map(store_id)
            .filter(|id| !self.file_regions.contains_key(id))
            .collect();
        gone.sort_unstable();
        gone.dedup();
        (pieces, gone)
    }

    /// Whether adding `extra` accessible bytes (after freeing `freed`) stays in budget.
    fn fits(&self, extra: u64, freed: u64) -> bool {
        self.used.saturating_sub(freed).saturating_add(extra) <= self.budget
    }

    /// The recorded pieces of [start, end).
    fn pieces_in(&self, start: u64, end: u64) -> Vec<Region> {
        let mut out = Vec::new();
        if let Some((_, r)) = self.regions.range(..start).next_back() {
            if r.end > start {
                out.push(piece(r, start, r.end.min(end)));
            }
        }
        for (_, r) in self.regions.range(start..end) {
            out.push(piece(r, r.start, r.end.min(end)));
        }
        out
    }

    /// Accessible bytes currently recorded in [start, end).
    fn cost_in(&self, start: u64, end: u64) -> u64 {
        self.pieces_in(start, end).iter().map(cost).sum()
    }

    /// Whether [start, end) is entirely guest memory with at least `prot`.
    fn covered(&self, start: u64, end: u64, prot: u32) -> bool {
        if start >= end {
            return true;
        }
        let mut at = start;
        let Some((_, first)) = self.regions.range(..=start).next_back() else {
            return false;
        };
        let mut iter = self.regions.range(first.start..);
        loop {
            let Some((_, r)) = iter.next() else {
                return false;
            };
            if r.start > at || r.end <= at || r.prot & prot != prot {
                return false;
            }
            at = r.end;
            if at >= end {
                return true;
            }
        }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        if let Some((_, r)) = self.regions.range(..end).next_back() {
            return r.end > start;
        }
        false
    }
}

fn range_end(addr: u64, len: u64) -> Result<u64, Fault> {
    addr.checked_add(len).ok_or(Fault)
}

fn page_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE - 1).map(|l| l & !(PAGE - 1))
}

fn host_mmap(addr: u64, len: u64, prot: u32, flags: u32) -> Result<u64, Errno> {
    // SAFETY: anonymous mapping; callers never pass MAP_FIXED over memory
    // that is not the guest's (see `map`).
    check(unsafe { syscall6(nr::MMAP, addr, len, prot as u64, flags as u64, u64::MAX, 0) })
}

/// Guest ranges a blocking host call is reading or writing right now
/// (without the record's lock), and placeholders left where such a range
/// was unmapped meanwhile.
struct Pins {
    active: Vec<(u64, u64)>,
    deferred: Vec<(u64, u64)>,
}

static PINS: std::sync::Mutex<Pins> = std::sync::Mutex::new(Pins {
    active: Vec::new(),
    deferred: Vec::new(),
});

fn pins() -> std::sync::MutexGuard<'static, Pins> {
    PINS.lock().unwrap_or_else(|p| p.into_inner())
}

fn overlaps_any(list: &[(u64, u64)], start: u64, end: u64) -> bool {
    list.iter().any(|&(a, b)| a < end && start < b)
}

/// Gives guest address space back to the host, unless a blocking call
/// still uses part of it: then the range is replaced at once by an
/// inaccessible placeholder (the host cannot hand it to myst's own
/// allocations, and the call gets EFAULT), unmapped when the call ends.
/// Called with the record's write lock held.
fn release_range(addr: u64, len: u64) {
    let mut p = pins();
    if overlaps_any(&p.active, addr, addr + len) {
        // SAFETY: [addr, addr+len) was guest memory until now (the caller
        // removed it from the record under the write lock); MAP_FIXED
        // replaces exactly it with an inaccessible anonymous mapping.
        let r = unsafe {
            syscall6(
                nr::MMAP,
                addr,
                len,
                0,
                (MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE) as u64,
                u64::MAX,
                0,
            )
        };
        if check(r).is_ok() {
            p.deferred.push((addr, addr + len));
            return;
        }
    }
    drop(p);
    host_munmap(addr, len);
}

/// Runs `f` on the address of guest memory [addr, addr+len) with at least
/// `prot`, without holding the record's lock: for host calls that may
/// block (pipes, sockets, terminals), so that other threads can map and
/// unmap meanwhile. While `f` runs the range stays guest memory or
/// becomes an inaccessible placeholder (see `release_range`), never
/// memory of myst's own; `f` must only hand the address to the host.
pub fn with_pinned<R>(
    addr: u64,
    len: usize,
    prot: u32,
    f: impl FnOnce(u64) -> R,
) -> Result<R, Fault> {
    let end = range_end(addr, len as u64)?;
    {
        let m = read_map();
        if !m.covered(addr, end, prot) {
            return Err(Fault);
        }
        // Registered under the read lock: no unmap can come between the
        // check and the pin.
        pins().active.push((addr, end));
    }
    let r = f(addr);
    let mut p = pins();
    if let Some(i) = p.active.iter().position(|&r| r == (addr, end)) {
        p.active.swap_remove(i);
    }
    let Pins { active, deferred } = &mut *p;
    deferred.retain(|&(a, b)| {
        if overlaps_any(active, a, b) {
            return true;
        }
        // The placeholder is not in the record and nothing can map over
        // it (guest mappings need recorded or free space).
        host_munmap(a, b - a);
        false
    });
    Ok(r)
}

fn host_munmap(addr: u64, len: u64) {
    // SAFETY: callers pass only ranges recorded as guest memory.
    unsafe { syscall6(nr::MUNMAP, addr, len, 0, 0, 0, 0) };
}

/// Maps anonymous guest memory (the guest's mmap; private file contents are
/// copied in by the caller). `flags` are the guest's MAP_* flags. Returns
/// the address.
pub fn map(
    addr: u64,
    len: u64,
    prot: u32,
    flags: u32,
    name: Option<Arc<str>>,
) -> Result<u64, Errno> {
    map_inner(addr, len, prot, flags, name, None, true).map(|(at, _)| at)
}

/// Like [`map`]; `may_write` false keeps mprotect from adding PROT_WRITE
/// (a shared mapping of /dev/zero opened read-only).
pub fn map_limited(
    addr: u64,
    len: u64,
    prot: u32,
    flags: u32,
    name: Option<Arc<str>>,
    may_write: bool,
) -> Result<u64, Errno> {
    map_inner(addr, len, prot, flags, name, None, may_write).map(|(at, _)| at)
}

/// One piece of a file mapping: `len` bytes at byte `at` of the mapping
/// come from byte `off` of the host descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Offset inside the mapping (page aligned).
    pub at: u64,
    /// Offset in the host descriptor (page aligned).
    pub off: u64,
    /// Length (page aligned).
    pub len: u64,
}

/// Maps runs of the host descriptor `fd` (the page store's memfd, or a
/// host file of hostfs) as guest memory, shared or private as the guest's
/// `flags` say; the runs must cover the whole mapping. Returns the address,
/// and whether this process had no region of `tag.id` before (page-store
/// ids only; false for id 0).
#[allow(clippy::too_many_arguments)]
pub fn map_fd(
    addr: u64,
    len: u64,
    prot: u32,
    flags: u32,
    name: Option<Arc<str>>,
    fd: i32,
    runs: &[Run],
    tag: FileTag,
) -> Result<(u64, bool), Errno> {
    let len = page_up(len).ok_or(ENOMEM)?;
    let mut covered = 0;
    for r in runs {
        if r.at != covered || !r.off.is_multiple_of(PAGE) || !r.len.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        covered += r.len;
    }
    if covered != len || fd < 0 {
        return Err(EINVAL);
    }
    let may_write = flags & 0x3 != MAP_SHARED || tag.writable;
    map_inner(
        addr,
        len,
        prot,
        flags,
        name,
        Some((fd, runs, tag)),
        may_write,
    )
}

type Backing<'a> = Option<(i32, &'a [Run], FileTag)>;

fn map_inner(
    addr: u64,
    len: u64,
    prot: u32,
    flags: u32,
    name: Option<Arc<str>>,
    backing: Backing,
    may_write: bool,
) -> Result<(u64, bool), Errno> {
    let len = page_up(len).ok_or(ENOMEM)?;
    if len == 0 {
        return Err(EINVAL);
    }
    let shared = flags & 0x3 == MAP_SHARED;
    let share_flags = if shared { MAP_SHARED } else { MAP_PRIVATE };
    let host_flags =
        share_flags | MAP_ANONYMOUS | (flags & (MAP_NORESERVE | MAP_POPULATE | MAP_STACK));
    let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
    let region = |at: u64| Region {
        start: at,
        end: at + len,
        prot,
        shared,
        name: name.clone(),
        file: backing.map(|(_, _, t)| t),
        may_write,
        locked: flags & MAP_LOCKED != 0,
    };
    let mut m = write_map();
    let freed = if flags & MAP_FIXED != 0 {
        m.cost_in(addr, addr.saturating_add(len))
    } else {
        0
    };
    if !m.fits(cost(&region(0)), freed) {
        return Err(ENOMEM);
    }
    let mut removed = Vec::new();
    let at =
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            if !addr.is_multiple_of(PAGE) {
                return Err(EINVAL);
            }
            let end = addr.checked_add(len).ok_or(ENOMEM)?;
            if flags & MAP_FIXED_NOREPLACE == 0 {
                if m.covered(addr, end, 0) {
                    host_mmap(addr, len, prot, host_flags | MAP_FIXED)?
                } else {
                    // Part of the range is not the guest's: drop the guest's
                    // pieces, then map only if nothing else (myst) is there.
                    for piece in m.carve(addr, end) {
                        host_munmap(piece.start, piece.end - piece.start);
                        removed.push(piece);
                    }
                    let r = host_mmap(addr, len, prot, host_flags | MAP_FIXED_NOREPLACE)
                        .map_err(|e| if e == EEXIST { ENOMEM } else { e });
                    if let Err(e) = r {
                        let (pieces, gone) = m.released(removed);
                        drop(m);
                        notify(pieces, gone);
                        return Err(e);
                    }
                    addr
                }
            } else {
                host_mmap(addr, len, prot, host_flags | MAP_FIXED_NOREPLACE)?
            }
        } else {
            host_mmap(addr & !(PAGE - 1), len, prot, host_flags)?
        };
    // The range [at, at+len) is ours now (anonymous); put the file runs over it.
    if let Some((fd, runs, _)) = backing {
        for r in runs {
            // SAFETY: [at+r.at, +r.len) lies inside the placeholder just
            // mapped for the guest under the record's write lock; MAP_FIXED
            // replaces only it.
            let res = check(unsafe {
                syscall6(
                    nr::MMAP,
                    at + r.at,
                    r.len,
                    prot as u64,
                    (share_flags | MAP_FIXED) as u64,
                    fd as u64,
                    r.off,
                )
            });
            if let Err(e) = res {
                release_range(at, len);
                // Whatever the guest had there is gone too (MAP_FIXED).
                removed.extend(m.carve(at, at + len));
                let (pieces, gone) = m.released(removed);
                drop(m);
                notify(pieces, gone);
                return Err(e);
            }
        }
    }
    let new = region(at);
    let first = store_id(&new).is_some_and(|id| !m.file_regions.contains_key(&id));
    removed.extend(m.insert(new));
    let (pieces, gone) = m.released(removed);
    drop(m);
    notify(pieces, gone);
    Ok((at, first))
}

/// Unmaps the guest's memory in [addr, addr+len); non-guest parts are left alone.
pub fn unmap(addr: u64, len: u64) -> Result<(), Errno> {
    if !addr.is_multiple_of(PAGE) || len == 0 {
        return Err(EINVAL);
    }
    let len = page_up(len).ok_or(EINVAL)?;
    let end = addr.checked_add(len).ok_or(EINVAL)?;
    let mut m = write_map();
    let removed = m.carve(addr, end);
    for piece in &removed {
        release_range(piece.start, piece.end - piece.start);
    }
    let (pieces, gone) = m.released(removed);
    drop(m);
    notify(pieces, gone);
    Ok(())
}

/// EACCES: an mprotect that would make a shared mapping of a read-only file writable.
const EACCES: Errno = Errno::EACCES;

/// Changes protection of guest memory; ENOMEM if part of the range is not the guest's.
pub fn protect(addr: u64, len: u64, prot: u32) -> Result<(), Errno> {
    if !addr.is_multiple_of(PAGE) {
        return Err(EINVAL);
    }
    let len = page_up(len).ok_or(ENOMEM)?;
    let end = addr.checked_add(len).ok_or(ENOMEM)?;
    let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
    let mut m = write_map();
    if !m.covered(addr, end, 0) {
        return Err(ENOMEM);
    }
    let pieces = m.pieces_in(addr, end);
    if prot & PROT_WRITE != 0 && pieces.iter().any(|p| !p.may_write) {
        return Err(EACCES);
    }
    let new_cost: u64 = pieces
        .iter()
        .map(|p| cost(&Region { prot, ..p.clone() }))
        .sum();
    if !m.fits(new_cost, m.cost_in(addr, end)) {
        return Err(ENOMEM);
    }
    // SAFETY: the whole range is guest memory (checked above, under the lock).
    check(unsafe { syscall6(nr::MPROTECT, addr, len, prot as u64, 0, 0, 0) })?;
    for piece in m.carve(addr, end) {
        m.insert(Region { prot, ..piece });
    }
    Ok(())
}

/// The guest's mremap, for a range inside one guest mapping. Growing a
/// mapping of page-store pages is the kernel's job (the next file pages
/// are not the next memfd pages): EINVAL here.
pub fn remap(
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: u32,
    new_addr: u64,
) -> Result<u64, Errno> {
    if !old.is_multiple_of(PAGE) || flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0 {
        return Err(EINVAL);
    }
    let old_len = page_up(old_len).ok_or(EINVAL)?;
    let new_len = page_up(new_len).ok_or(ENOMEM)?;
    if old_len == 0 || new_len == 0 {
        return Err(EINVAL);
    }
    let old_end = old.checked_add(old_len).ok_or(EINVAL)?;
    let mut m = write_map();
    let Some((_, r)) = m.regions.range(..=old).next_back() else {
        return Err(EFAULT_MREMAP);
    };
    if r.end < old_end {
        return Err(EFAULT_MREMAP);
    }
    let template = piece(r, old, old_end);
    if new_len > old_len && store_id(&template).is_some() {
        return Err(EINVAL);
    }
    if cost(&template) != 0 && new_len > old_len && !m.fits(new_len - old_len, 0) {
        return Err(ENOMEM);
    }
    // Pages a blocking call uses must stay where they are (the old range
    // would be free for the host to reuse at once).
    let pinned = overlaps_any(&pins().active, old, old_end);
    if pinned && flags & MREMAP_FIXED != 0 {
        return Err(ENOMEM);
    }
    let flags = if pinned {
        flags & !MREMAP_MAYMOVE
    } else {
        flags
    };
    let mut removed = Vec::new();
    let ret = if flags & MREMAP_FIXED != 0 {
        if !new_addr.is_multiple_of(PAGE) || flags & MREMAP_MAYMOVE == 0 {
            return Err(EINVAL);
        }
        let new_end = new_addr.checked_add(new_len).ok_or(EINVAL)?;
        if new_addr < old_end && old < new_end {
            return Err(EINVAL);
        }
        for piece in m.carve(new_addr, new_end) {
            release_range(piece.start, piece.end - piece.start);
            removed.push(piece);
        }
        // Claim the target first: fails if myst owns anything there.
        let r = host_mmap(
            new_addr,
            new_len,
            0,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
        )
        .map_err(|e| if e == EEXIST { ENOMEM } else { e })
        .and_then(|_| {
            // SAFETY: the old range is guest memory, the target is our placeholder.
            check(unsafe { syscall6(nr::MREMAP, old, old_len, new_len, flags as u64, new_addr, 0) })
        });
        match r {
            Ok(v) => v,
            Err(e) => {
                let (pieces, gone) = m.released(removed);
                drop(m);
                notify(pieces, gone);
                return Err(e);
            }
        }
    } else {
        // SAFETY: the old range is guest memory; without MREMAP_FIXED the
        // kernel never moves onto existing mappings.
        check(unsafe {
            syscall6(
                nr::MREMAP,
                old,
                old_len,
                new_len,
                (flags & MREMAP_MAYMOVE) as u64,
                0,
                0,
            )
        })?
    };
    // The old pages moved (or shrank): not an unmap of the file's pages.
    m.carve(old, old_end);
    m.insert(Region {
        start: ret,
        end: ret + new_len,
        ..template
    });
    let (pieces, gone) = m.released(removed);
    drop(m);
    notify(pieces, gone);
    Ok(ret)
}

/// The recorded region containing `addr`.
pub fn region_at(addr: u64) -> Option<Region> {
    let m = read_map();
    let (_, r) = m.regions.range(..=addr).next_back()?;
    (r.end > addr).then(|| r.clone())
}

/// The recorded pieces of [addr, addr+len) (cut to the range).
pub fn regions_in(addr: u64, len: u64) -> Vec<Region> {
    read_map().pieces_in(addr, addr.saturating_add(len))
}

/// The page-store ids this process has regions of.
pub fn file_ids() -> Vec<u64> {
    read_map().file_regions.keys().copied().collect()
}

/// msync of guest memory mapped from a host file (hostfs): the host writes
/// the pages back. ENOMEM if part of the range is not the guest's.
pub fn host_msync(addr: u64, len: u64, flags: u32) -> Result<(), Errno> {
    let len = page_up(len).ok_or(ENOMEM)?;
    let end = addr.checked_add(len).ok_or(ENOMEM)?;
    let m = read_map();
    if !m.covered(addr, end, 0) {
        return Err(ENOMEM);
    }
    // SAFETY: the range is guest memory (checked under the lock); msync
    // only writes dirty pages back, it changes no mapping.
    check(unsafe { syscall6(nr::MSYNC, addr, len, flags as u64, 0, 0, 0) }).map(|_| ())
}

const EFAULT_MREMAP: Errno = Errno::EFAULT;

/// Whether [addr, addr+len) is free of guest mappings.
pub fn is_free(addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => !read_map().overlaps(addr, end),
        None => false,
    }
}

/// Runs `f` (a fork) with the map locked, so the child never inherits it
/// locked by a thread it does not have.
pub(crate) fn with_map_locked<R>(f: impl FnOnce() -> R) -> R {
    let m = write_map();
    let r = f();
    drop(m);
    r
}

/// Checks that [addr, addr+len) is writable guest memory now (a later copy
/// checks again).
pub fn check_writable(addr: u64, len: usize) -> Result<(), Fault> {
    let end = range_end(addr, len as u64)?;
    if read_map().covered(addr, end, PROT_WRITE) {
        Ok(())
    } else {
        Err(Fault)
    }
}

/// Checks that [addr, addr+len) is readable guest memory now.
pub fn check_readable(addr: u64, len: usize) -> Result<(), Fault> {
    let end = range_end(addr, len as u64)?;
    if read_map().covered(addr, end, PROT_READ) {
        Ok(())
    } else {
        Err(Fault)
    }
}

/// Copies guest memory at `addr` into `buf` (the range must be readable guest memory).
pub fn copy_in(addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
    let end = range_end(addr, buf.len() as u64)?;
    let m = read_map();
    if !m.covered(addr, end, PROT_READ) {
        return Err(Fault);
    }
    // SAFETY: the range is mapped readable guest memory and stays mapped while
    // the read lock is held; guest threads may change the bytes concurrently,
    // which only affects the values copied.
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
    Ok(())
}

/// Copies `data` into guest memory at `addr` (the range must be writable guest memory).
pub fn copy_out(addr: u64, data: &[u8]) -> Result<(), Fault> {
    let end = range_end(addr, data.len() as u64)?;
    let m = read_map();
    if !m.covered(addr, end, PROT_WRITE) {
        return Err(Fault);
    }
    // SAFETY: the range is mapped writable guest memory, disjoint from all of
    // the runtime's memory, and stays mapped while the lock is held.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
    Ok(())
}

/// Reads a NUL-terminated string of at most `max` bytes (NUL excluded) from
/// the guest. `Ok(None)` if no NUL came within `max` bytes.
pub fn read_cstr(addr: u64, max: usize) -> Result<Option<Vec<u8>>, Fault> {
    let m = read_map();
    let mut out = Vec::new();
    let mut at = addr;
    loop {
        let Some((_, r)) = m.regions.range(..=at).next_back() else {
            return Err(Fault);
        };
        if r.end <= at || r.prot & PROT_READ == 0 {
            return Err(Fault);
        }
        let avail = (r.end - at).min((max + 1 - out.len()) as u64) as usize;
        // SAFETY: [at, at+avail) lies inside one readable guest region, which
        // stays mapped while the lock is held.
        let bytes = unsafe { core::slice::from_raw_parts(at as *const u8, avail) };
        if let Some(pos) = bytes.iter().position(|&b| b == 0) {
            out.extend_from_slice(&bytes[..pos]);
            return Ok(Some(out));
        }
        out.extend_from_slice(bytes);
        if out.len() > max {
            return Ok(None);
        }
        at += avail as u64;
    }
}

/// Runs `f` on guest memory [addr, addr+len) as a byte slice, without a copy.
pub fn with_slice<R>(addr: u64, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, Fault> {
    let end = range_end(addr, len as u64)?;
    let m = read_map();
    if !m.covered(addr, end, PROT_READ) {
        return Err(Fault);
    }
    if len == 0 {
        return Ok(f(&[]));
    }
    // SAFETY: readable guest memory, mapped while the lock is held (see copy_in).
    let s = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    Ok(f(s))
}

/// Runs `f` on writable guest memory [addr, addr+len) as a mutable byte slice.
pub fn with_slice_mut<R>(
    addr: u64,
    len: usize,
    f: impl FnOnce(&mut [u8]) -> R,
) -> Result<R, Fault> {
    let end = range_end(addr, len as u64)?;
    let m = read_map();
    if !m.covered(addr, end, PROT_WRITE) {
        return Err(Fault);
    }
    if len == 0 {
        return Ok(f(&mut []));
    }
    // SAFETY: writable guest memory, disjoint from the runtime's memory and
    // mapped while the lock is held (see copy_out).
    let s = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
    Ok(f(s))
}

/// All guest mappings, in address order (for /proc/self/maps).
pub fn regions() -> Vec<Region> {
    read_map().regions.values().cloned().collect()
}

/// Renames the mapping that starts at `start` (what /proc/self/maps shows).
pub fn set_name(start: u64, name: Arc<str>) {
    if let Some(r) = write_map().regions.get_mut(&start) {
        r.name = Some(name);
    }
}

/// Forwards madvise for a range of guest memory (MADV_DONTNEED zeroes private
/// anonymous pages, which programs may rely on).
pub fn advise(addr: u64, len: u64, advice: u32) -> Result<(), Errno> {
    if !addr.is_multiple_of(PAGE) {
        return Err(EINVAL);
    }
    let len = page_up(len).ok_or(EINVAL)?;
    let end = addr.checked_add(len).ok_or(EINVAL)?;
    let m = read_map();
    if !m.covered(addr, end, 0) {
        return Err(ENOMEM);
    }
    // Only advice that changes nothing outside the range, and cannot free
    // memory the record still lists as mapped in a harmful way.
    const ALLOWED: &[u32] = &[
        0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, 23,
    ];
    if !ALLOWED.contains(&advice) {
        return Err(EINVAL);
    }
    // SAFETY: the range is guest memory (checked under the lock).
    check(unsafe { syscall6(nr::MADVISE, addr, len, advice as u64, 0, 0, 0) }).map(|_| ())
}

/// The host futex on guest memory: `uaddr` (and `uaddr2` when used) must be
/// guest words, `timeout` a guest timespec or 0.
pub fn futex(uaddr: u64, op: u32, val: u32, timeout: u64, uaddr2: u64, val3: u32) -> i64 {
    let cmd = op & 0x7f;
    // Commands the host kernel writes a guest word for: WAKE_OP (uaddr2),
    // the PI family (uaddr, uaddr2 for CMP_REQUEUE_PI).
    let writes = matches!(cmd, 5..=8 | 11..=13);
    let need = if writes {
        PROT_READ | PROT_WRITE
    } else {
        PROT_READ
    };
    let m = read_map();
    if !uaddr.is_multiple_of(4) || !m.covered(uaddr, uaddr.saturating_add(4), need) {
        return Errno::EFAULT.to_ret();
    }
    // Commands whose 4th argument is a timespec pointer.
    let uses_timeout = matches!(cmd, 0 | 6 | 9 | 11 | 13);
    if uses_timeout && timeout != 0 && !m.covered(timeout, timeout.saturating_add(16), PROT_READ) {
        return -14;
    }
    let uses_uaddr2 = matches!(cmd, 3 | 4 | 5 | 11 | 12);
    if uses_uaddr2 && !m.covered(uaddr2, uaddr2.saturating_add(4), need) {
        return Errno::EFAULT.to_ret();
    }
    if writes {
        // The record stays locked so the words cannot become runtime
        // memory while the host writes them. WAKE_OP, UNLOCK_PI, TRYLOCK_PI
        // and CMP_REQUEUE_PI do not wait; LOCK_PI and WAIT_REQUEUE_PI can
        // (priority-inheritance mutexes), and delay map changes meanwhile.
        // SAFETY: the words are writable guest memory, mapped while the
        // lock is held; the timeout is read only.
        return unsafe {
            crate::sud::blocking6(
                202,
                uaddr,
                op as u64,
                val as u64,
                timeout,
                uaddr2,
                val3 as u64,
            )
        };
    }
    drop(m);
    // WAIT, WAKE, REQUEUE and the bitset forms wait without the lock: the
    // host kernel only reads the words and the timeout, and compares and
    // wakes on the addresses; if the guest unmaps them meanwhile, a wait
    // just ends or fails with EFAULT.
    // SAFETY: the host reads, never writes, through these pointers.
    unsafe {
        crate::sud::blocking6(
            202,
            uaddr,
            op as u64,
            val as u64,
            timeout,
            uaddr2,
            val3 as u64,
        )
    }
}

/// set_tid_address for a guest word; returns the tid or -EFAULT.
pub fn set_tid_address(addr: u64) -> i64 {
    let m = read_map();
    if addr != 0 && !m.covered(addr, addr.saturating_add(4), PROT_WRITE) {
        return Errno::EFAULT.to_ret();
    }
    // SAFETY: the host kernel writes 0 to this guest word when the thread
    // exits; it is guest memory (checked above).
    unsafe { syscall6(218, addr, 0, 0, 0, 0, 0) }
}

/// Copies guest code (executable memory) for inspection.
pub(crate) fn copy_in_exec(addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
    let end = range_end(addr, buf.len() as u64)?;
    let m = read_map();
    if !m.covered(addr, end, PROT_EXEC | PROT_READ) {
        return Err(Fault);
    }
    // SAFETY: readable guest memory, mapped while the lock is held.
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
    Ok(())
}

/// Overwrites guest code at `addr` (inside one executable guest mapping),
/// making its pages writable only for the copy. Callers make sure no other
/// guest thread runs.
pub(crate) fn patch_code(addr: u64, bytes: &[u8]) -> Result<(), Fault> {
    let end = range_end(addr, bytes.len() as u64)?;
    let m = write_map();
    let Some((_, r)) = m.regions.range(..=addr).next_back() else {
        return Err(Fault);
    };
    if r.end < end || r.prot & PROT_EXEC == 0 {
        return Err(Fault);
    }
    let prot = r.prot as u64;
    let first = addr & !(PAGE - 1);
    let last = (end + PAGE - 1) & !(PAGE - 1);
    // SAFETY: the pages are guest code (checked under the write lock, so no
    // map change races); they get their protection back right after.
    unsafe {
        if check(syscall6(
            nr::MPROTECT,
            first,
            last - first,
            prot | PROT_WRITE as u64,
            0,
            0,
            0,
        ))
        .is_err()
        {
            return Err(Fault);
        }
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len());
        syscall6(nr::MPROTECT, first, last - first, prot, 0, 0, 0);
    }
    drop(m);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_copy_protect_unmap() {
        let a = map(
            0,
            3 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            None,
        )
        .unwrap();
        copy_out(a + PAGE - 2, b"hello\0").unwrap();
        let mut buf = [0u8; 5];
        copy_in(a + PAGE - 2, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(read_cstr(a + PAGE - 2, 100).unwrap().unwrap(), b"hello");
        assert_eq!(read_cstr(a + PAGE - 2, 3).unwrap(), None);
        protect(a + PAGE, PAGE, PROT_READ).unwrap();
        assert_eq!(copy_out(a + PAGE, b"x"), Err(Fault));
        assert!(copy_out(a, b"x").is_ok());
        copy_in(a, &mut buf).unwrap();
        unmap(a + 2 * PAGE, PAGE).unwrap();
        assert_eq!(copy_in(a + 2 * PAGE, &mut buf), Err(Fault));
        // Runtime memory is never guest memory.
        let local = [0u8; 16];
        assert_eq!(copy_in(local.as_ptr() as u64, &mut buf), Err(Fault));
        unmap(a, 2 * PAGE).unwrap();
        assert!(is_free(a, 3 * PAGE));
    }
}
