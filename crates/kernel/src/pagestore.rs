//! The page store: pages of mapped files, held once for the whole guest in
//! shared memory, so MAP_SHARED file mappings are shared for real between
//! all guest processes (docs/DESIGN.md "Page store and shared mappings").
//!
//! Two memfd regions are made at start-up, before the first fork, so every
//! guest process inherits them: the data (page slots, sparse: a slot costs
//! memory only once written) and an index. The index maps a file —
//! (file-system id, inode, inode generation) — and a page number to a slot;
//! guest mappings map the slots of the memfd directly (host MAP_SHARED), so a
//! store through one mapping is at once in every other mapping of the file,
//! in every process.
//!
//! While a file has pages here they are its contents: [`CachedFs`], the
//! wrapper every page-store file system is mounted through, serves read()
//! of those pages from the store and writes write() both to the file system
//! and into the store, so read(), write() and every mapping agree. Pages go
//! back to the file system on msync, munmap and fsync, and when the last
//! mapping of the file in the guest is gone the pages are written back and
//! freed.
//!
//! The index is changed under one cross-process lock (the owner's thread id
//! in a futex word; a waiter takes it over from a dead or zombie owner). The
//! lock is taken before any file-system lock, never the other way round.
//! File-system calls made under it are bounded (no pipe, socket or futex
//! waits).

use myst_fs::{Attr, DirEntry, Errno, FileSystem, FsResult, Ino, NewInode, SetAttr, StatFs};
use myst_platform::guestmem::{self, FileTag, Region, Run};
use myst_platform::shm::SharedRegion;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, OnceLock};

const PAGE: u64 = 4096;
const PAGE_US: usize = 4096;

// Index header (u64 words).
const H_LOCK: usize = 0;
const H_FSID: usize = 8;
const H_BUMP: usize = 16;
const H_FREE: usize = 24;
const H_GEN: usize = 32;
const H_FILES: usize = 40;
const H_USED: usize = 48;
const HEADER: usize = 64;

// One file entry (64 bytes).
const F_LEN: usize = 64;
const F_STATE: usize = 0;
const F_FSID: usize = 8;
const F_INO: usize = 16;
const F_IGEN: usize = 24;
const F_MAPS: usize = 32;
const F_PAGES: usize = 40;
const F_HIGH: usize = 48;
const F_FLAGS: usize = 56;
/// F_FLAGS: the pages stay after the last mapping (per-process file system).
const KEEP: u64 = 1;
/// F_FLAGS: a mapping that can write was made; only then can the store
/// hold data the file system lacks (write() writes through).
const WMAPPED: u64 = 2;
const ST_EMPTY: u64 = 0;
const ST_LIVE: u64 = 1;
const ST_FREED: u64 = 2;

/// Largest page number of a file the store keys (2^52 bytes).
const MAX_PAGE: u64 = 1 << 40;
const NFILES: usize = 4096;

/// The guest-wide page store.
pub struct Store {
    index: SharedRegion,
    data: SharedRegion,
    fd: i32,
    nslots: u64,
    files_off: usize,
    pt_off: usize,
    pt_cap: usize,
    next_off: usize,
    budget: u64,
}

static STORE: OnceLock<Store> = OnceLock::new();

/// Inner file systems of this process's page-store mounts, by id (for
/// write-back from the unmap hook, which knows only store ids), and whether
/// each is private to a process after fork (ramfs).
type MountList = Vec<(u64, Arc<dyn FileSystem>, bool)>;
static MOUNTS: Mutex<MountList> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes the store (before the first fork), holding at most `bytes` of
/// file pages, and hooks it into guest memory bookkeeping.
pub fn init(bytes: u64) -> Result<(), String> {
    let s = Store::new(bytes)?;
    STORE
        .set(s)
        .map_err(|_| "page store made twice".to_string())?;
    guestmem::set_unmap_hook(on_unmap);
    Ok(())
}

impl Store {
    fn new(bytes: u64) -> Result<Store, String> {
        let nslots = (bytes / PAGE).clamp(256, 1 << 26);
        let pt_cap = (nslots as usize * 2).next_power_of_two();
        let files_off = HEADER;
        let pt_off = files_off + NFILES * F_LEN;
        let next_off = pt_off + pt_cap * 16;
        let index_len = next_off + nslots as usize * 8;
        let index = SharedRegion::new("myst-pagestore-index", index_len as u64)
            .map_err(|e| e.to_string())?;
        let data =
            SharedRegion::with_fd("myst-pagestore", nslots * PAGE).map_err(|e| e.to_string())?;
        let fd = data.fd().ok_or("page store: no memfd")?;
        let s = Store {
            index,
            data,
            fd,
            nslots,
            files_off,
            pt_off,
            pt_cap,
            next_off,
            budget: nslots * PAGE,
        };
        s.set_word(H_FSID, 1);
        Ok(s)
    }
}

/// The store, once made.
pub fn store() -> Option<&'static Store> {
    STORE.get()
}

/// The index, locked.
struct Locked<'a> {
    s: &'a Store,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.s.index.unlock_owner(H_LOCK);
    }
}

impl Store {
    fn word(&self, off: usize) -> u64 {
        self.index
            .atomic_u64(off)
            .map(|a| a.load(SeqCst))
            .unwrap_or(0)
    }

    fn set_word(&self, off: usize, v: u64) {
        if let Some(a) = self.index.atomic_u64(off) {
            a.store(v, SeqCst);
        }
    }

    fn add_word(&self, off: usize, d: i64) {
        if let Some(a) = self.index.atomic_u64(off) {
            a.fetch_add(d as u64, SeqCst);
        }
    }

    fn lock(&self) -> Locked<'_> {
        self.index.lock_owner(H_LOCK);
        Locked { s: self }
    }

    /// A new file-system id, unique in the guest.
    pub fn new_fsid(&self) -> u64 {
        self.index
            .atomic_u64(H_FSID)
            .map(|a| a.fetch_add(1, SeqCst))
            .unwrap_or(0)
    }

    /// Files with pages in the store (read without the lock).
    fn files_live(&self) -> u64 {
        self.word(H_FILES)
    }

    /// Bumped whenever a file gets an entry (read without the lock).
    fn gen(&self) -> u64 {
        self.word(H_GEN)
    }

    /// Page slots in use (for /proc/meminfo-like reporting and tests).
    pub fn used_bytes(&self) -> u64 {
        self.word(H_USED) * PAGE
    }

    /// The memfd to map slots from.
    pub fn fd(&self) -> i32 {
        self.fd
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Locked<'_> {
    fn f(&self, idx: usize, field: usize) -> usize {
        self.s.files_off + idx * F_LEN + field
    }

    fn file_word(&self, idx: usize, field: usize) -> u64 {
        self.s.word(self.f(idx, field))
    }

    fn set_file_word(&self, idx: usize, field: usize, v: u64) {
        self.s.set_word(self.f(idx, field), v)
    }

    /// The live entry of (fsid, ino) whose generation is `igen` (None:
    /// any generation).
    fn find_file(&self, fsid: u64, ino: u64, igen: Option<u64>) -> Option<usize> {
        let mut i = (mix(fsid, ino) as usize) % NFILES;
        for _ in 0..NFILES {
            match self.file_word(i, F_STATE) {
                ST_EMPTY => return None,
                ST_LIVE
                    if self.file_word(i, F_FSID) == fsid
                        && self.file_word(i, F_INO) == ino
                        && igen.is_none_or(|g| self.file_word(i, F_IGEN) == g) =>
                {
                    return Some(i)
                }
                _ => {}
            }
            i = (i + 1) % NFILES;
        }
        None
    }

    fn insert_file(&self, fsid: u64, ino: u64, igen: u64, keep: bool) -> FsResult<usize> {
        let mut i = (mix(fsid, ino) as usize) % NFILES;
        for _ in 0..NFILES {
            if self.file_word(i, F_STATE) != ST_LIVE {
                for (field, v) in [
                    (F_FSID, fsid),
                    (F_INO, ino),
                    (F_IGEN, igen),
                    (F_MAPS, 0),
                    (F_PAGES, 0),
                    (F_HIGH, 0),
                    (F_FLAGS, if keep { KEEP } else { 0 }),
                ] {
                    self.set_file_word(i, field, v);
                }
                self.set_file_word(i, F_STATE, ST_LIVE);
                // FILES before GEN: see CachedFs::write's fast path.
                self.s.add_word(H_FILES, 1);
                self.s.add_word(H_GEN, 1);
                return Ok(i);
            }
            i = (i + 1) % NFILES;
        }
        Err(Errno::ENOMEM.with("page store: too many mapped files"))
    }

    fn pt(&self, i: usize) -> usize {
        self.s.pt_off + i * 16
    }

    fn home(&self, key: u64) -> usize {
        (mix(key, 0) as usize) & (self.s.pt_cap - 1)
    }

    fn key(idx: usize, page: u64) -> u64 {
        ((idx as u64 + 1) << 40) | page
    }

    fn page_slot(&self, idx: usize, page: u64) -> Option<u64> {
        let key = Self::key(idx, page);
        let mask = self.s.pt_cap - 1;
        let mut i = self.home(key);
        for _ in 0..self.s.pt_cap {
            match self.s.word(self.pt(i)) {
                0 => return None,
                k if k == key => return self.s.word(self.pt(i) + 8).checked_sub(1),
                _ => {}
            }
            i = (i + 1) & mask;
        }
        None
    }

    fn put_page(&self, idx: usize, page: u64, slot: u64) -> FsResult<()> {
        let key = Self::key(idx, page);
        let mask = self.s.pt_cap - 1;
        let mut i = self.home(key);
        for _ in 0..self.s.pt_cap {
            let k = self.s.word(self.pt(i));
            if k == 0 || k == key {
                self.s.set_word(self.pt(i) + 8, slot + 1);
                self.s.set_word(self.pt(i), key);
                if k == 0 {
                    self.set_file_word(idx, F_PAGES, self.file_word(idx, F_PAGES) + 1);
                    if page + 1 > self.file_word(idx, F_HIGH) {
                        self.set_file_word(idx, F_HIGH, page + 1);
                    }
                }
                return Ok(());
            }
            i = (i + 1) & mask;
        }
        Err(Errno::ENOMEM.with("page store index full"))
    }

    /// Removes a page entry (linear probing, backward-shift deletion).
    fn del_page(&self, idx: usize, page: u64) {
        let key = Self::key(idx, page);
        let mask = self.s.pt_cap - 1;
        let mut i = self.home(key);
        let mut found = None;
        for _ in 0..self.s.pt_cap {
            match self.s.word(self.pt(i)) {
                0 => break,
                k if k == key => {
                    found = Some(i);
                    break;
                }
                _ => {}
            }
            i = (i + 1) & mask;
        }
        let Some(mut hole) = found else {
            return;
        };
        self.set_file_word(idx, F_PAGES, self.file_word(idx, F_PAGES).saturating_sub(1));
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let k = self.s.word(self.pt(j));
            if k == 0 {
                break;
            }
            let h = self.home(k);
            // Entry j may move to the hole if its home is not in (hole, j].
            let in_between = if hole <= j {
                hole < h && h <= j
            } else {
                hole < h || h <= j
            };
            if !in_between {
                let v = self.s.word(self.pt(j) + 8);
                self.s.set_word(self.pt(hole), k);
                self.s.set_word(self.pt(hole) + 8, v);
                hole = j;
            }
        }
        self.s.set_word(self.pt(hole), 0);
        self.s.set_word(self.pt(hole) + 8, 0);
    }

    /// (page, slot) of every page of file `idx`.
    fn pages_of(&self, idx: usize) -> Vec<(u64, u64)> {
        let high = self.file_word(idx, F_HIGH);
        let mut out = Vec::new();
        if high <= (self.s.pt_cap / 4) as u64 {
            for p in 0..high {
                if let Some(s) = self.page_slot(idx, p) {
                    out.push((p, s));
                }
            }
        } else {
            let prefix = (idx as u64 + 1) << 40;
            for i in 0..self.s.pt_cap {
                let k = self.s.word(self.pt(i));
                if k != 0 && k & !(MAX_PAGE - 1) == prefix {
                    if let Some(s) = self.s.word(self.pt(i) + 8).checked_sub(1) {
                        out.push((k & (MAX_PAGE - 1), s));
                    }
                }
            }
            out.sort_unstable();
        }
        out
    }

    fn alloc_slot(&self) -> Option<u64> {
        let head = self.s.word(H_FREE);
        let slot = if head != 0 {
            let slot = head - 1;
            let next = self.s.word(self.s.next_off + slot as usize * 8);
            self.s.set_word(H_FREE, next);
            slot
        } else {
            let b = self.s.word(H_BUMP);
            if b >= self.s.nslots {
                return None;
            }
            self.s.set_word(H_BUMP, b + 1);
            b
        };
        self.s.add_word(H_USED, 1);
        Some(slot)
    }

    fn free_slot(&self, slot: u64) {
        // A freed slot reads as zeros when handed out again.
        self.s.data.punch(slot as usize * PAGE_US, PAGE_US);
        self.s
            .set_word(self.s.next_off + slot as usize * 8, self.s.word(H_FREE));
        self.s.set_word(H_FREE, slot + 1);
        self.s.add_word(H_USED, -1);
    }

    fn slot_off(slot: u64) -> usize {
        slot as usize * PAGE_US
    }

    /// The entry of `ino` of `fs` (mounted as `fsid`), if it has one.
    fn lookup(&self, fs: &dyn FileSystem, fsid: u64, ino: Ino) -> FsResult<Option<usize>> {
        if self.find_file(fsid, ino, None).is_none() {
            return Ok(None);
        }
        let igen = fs.generation(ino)?;
        Ok(self.find_file(fsid, ino, Some(igen)))
    }

    /// Copies file bytes [off, off+buf.len()) from present pages into
    /// `buf`; `miss` fills pieces whose page is not in the store.
    fn read_pages(
        &self,
        idx: usize,
        off: u64,
        buf: &mut [u8],
        mut miss: impl FnMut(u64, &mut [u8]) -> FsResult<()>,
    ) -> FsResult<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let in_page = (pos % PAGE) as usize;
            let n = (PAGE_US - in_page).min(buf.len() - done);
            match self.page_slot(idx, pos / PAGE) {
                Some(slot) => {
                    if !self
                        .s
                        .data
                        .read(Self::slot_off(slot) + in_page, &mut buf[done..done + n])
                    {
                        return Err(Errno::EIO.with("page store slot out of range"));
                    }
                }
                None => miss(pos, &mut buf[done..done + n])?,
            }
            done += n;
        }
        Ok(())
    }

    /// Copies `data` into the present pages of file bytes [off, off+len).
    fn write_pages(&self, idx: usize, off: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let pos = off + done as u64;
            let in_page = (pos % PAGE) as usize;
            let n = (PAGE_US - in_page).min(data.len() - done);
            if let Some(slot) = self.page_slot(idx, pos / PAGE) {
                self.s
                    .data
                    .write(Self::slot_off(slot) + in_page, &data[done..done + n]);
            }
            done += n;
        }
    }

    /// Zeroes file bytes [from, to) in present pages (whole pages are
    /// given back to the host, and read as zeros in every mapping).
    fn zero_pages(&self, idx: usize, from: u64, to: u64) {
        if from >= to {
            return;
        }
        for (p, slot) in self.pages_of(idx) {
            let (ps, pe) = (p * PAGE, p * PAGE + PAGE);
            let (a, b) = (from.max(ps), to.min(pe));
            if a >= b {
                continue;
            }
            if a == ps && b == pe {
                self.s.data.punch(Self::slot_off(slot), PAGE_US);
            } else {
                self.s
                    .data
                    .zero(Self::slot_off(slot) + (a - ps) as usize, (b - a) as usize);
            }
        }
    }

    /// Writes pages [first, end) of file `idx` present in the store back
    /// to the file system (up to the file's size).
    fn writeback(&self, fs: &dyn FileSystem, idx: usize, first: u64, end: u64) -> FsResult<()> {
        if self.file_word(idx, F_FLAGS) & WMAPPED == 0 {
            // Only read-only mappings: the file system has every byte.
            return Ok(());
        }
        let ino = self.file_word(idx, F_INO);
        // Mappings do not keep the inode: once the file is deleted (and its
        // number perhaps given to a new file) its pages have nowhere to go.
        if fs.generation(ino).ok() != Some(self.file_word(idx, F_IGEN)) {
            return Ok(());
        }
        let Ok(attr) = fs.getattr(ino) else {
            return Ok(());
        };
        let size = attr.size;
        let mut buf = vec![0u8; PAGE_US];
        let mut result = Ok(());
        for (p, slot) in self.pages_of(idx) {
            if p < first || p >= end || p * PAGE >= size {
                continue;
            }
            let n = (size - p * PAGE).min(PAGE) as usize;
            if !self.s.data.read(Self::slot_off(slot), &mut buf[..n]) {
                continue;
            }
            if let Err(e) = fs.write(ino, p * PAGE, &buf[..n]) {
                result = Err(e);
            }
        }
        result
    }

    /// Drops one mapping reference of file `idx`; the last one writes the
    /// pages back and frees them.
    fn unref(&self, idx: usize, fs: Option<&dyn FileSystem>) -> FsResult<()> {
        let maps = self.file_word(idx, F_MAPS).saturating_sub(1);
        self.set_file_word(idx, F_MAPS, maps);
        if maps > 0 {
            return Ok(());
        }
        let Some(fs) = fs else {
            // No way to write back from this process: keep the pages (they
            // stay the file's contents for every reader).
            return Ok(());
        };
        let r = self.writeback(fs, idx, 0, MAX_PAGE);
        if r.is_err() || self.file_word(idx, F_FLAGS) & KEEP != 0 {
            // Keep the only up-to-date copy rather than lose data (and the
            // one copy of a per-process file system's file).
            return r;
        }
        self.free_file(idx);
        Ok(())
    }

    /// Frees all pages of file `idx` and its entry.
    fn free_file(&self, idx: usize) {
        for (p, slot) in self.pages_of(idx) {
            self.del_page(idx, p);
            self.free_slot(slot);
        }
        self.set_file_word(idx, F_STATE, ST_FREED);
        self.s.add_word(H_FILES, -1);
    }

    /// Makes room: frees the pages of files nobody maps (written back to
    /// this process's file system first, when it has it), except `busy`.
    fn evict(&self, busy: usize) {
        for i in 0..NFILES {
            if i == busy || self.file_word(i, F_STATE) != ST_LIVE || self.file_word(i, F_MAPS) != 0
            {
                continue;
            }
            if let Some(fs) = mount_fs(self.file_word(i, F_FSID)) {
                if self.writeback(&*fs, i, 0, MAX_PAGE).is_err() {
                    continue;
                }
            }
            self.free_file(i);
        }
    }
}

fn mount_fs(fsid: u64) -> Option<Arc<dyn FileSystem>> {
    lock(&MOUNTS)
        .iter()
        .find(|(id, _, _)| *id == fsid)
        .map(|(_, f, _)| f.clone())
}

/// A file system mounted through the page store: file pages that are in
/// the store are the file's contents for read() and write() too.
pub struct CachedFs {
    inner: Arc<dyn FileSystem>,
    fsid: u64,
    keep: bool,
}

/// `fs`, mounted through the page store when there is one. `private`: the
/// file system is a per-process copy after fork (ramfs); the store then
/// keeps a file's pages after its last mapping is gone (until the store
/// needs the room), as the one copy of them all processes share.
pub fn wrap(fs: Arc<dyn FileSystem>, private: bool) -> Arc<dyn FileSystem> {
    match store() {
        Some(s) => {
            let fsid = s.new_fsid();
            lock(&MOUNTS).push((fsid, fs.clone(), private));
            Arc::new(CachedFs {
                inner: fs,
                fsid,
                keep: private,
            })
        }
        None => fs,
    }
}

fn keep_of(fsid: u64) -> bool {
    lock(&MOUNTS)
        .iter()
        .any(|(id, _, keep)| *id == fsid && *keep)
}

/// A guest mapping of file pages from the store, ready for guestmem.
pub struct StoreMapping {
    /// The tag of the new region.
    pub tag: FileTag,
    /// Slots as runs of the memfd.
    pub runs: Vec<Run>,
}

impl CachedFs {
    /// The file system below.
    pub fn inner(&self) -> &Arc<dyn FileSystem> {
        &self.inner
    }

    /// Takes a mapping reference on `npages` pages of `ino` from page
    /// `pgoff`, bringing missing pages in from the file system. Pages past
    /// the end of the file are zeros. ENOMEM when the store is full.
    pub fn map_pages(
        &self,
        ino: Ino,
        pgoff: u64,
        npages: u64,
        writable: bool,
    ) -> FsResult<StoreMapping> {
        let s = store().ok_or(Errno::ENODEV)?;
        map_pages(
            s,
            &*self.inner,
            self.fsid,
            self.keep,
            ino,
            pgoff,
            npages,
            writable,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn map_pages(
    s: &Store,
    fs: &dyn FileSystem,
    fsid: u64,
    keep: bool,
    ino: Ino,
    pgoff: u64,
    npages: u64,
    writable: bool,
) -> FsResult<StoreMapping> {
    let end = pgoff.checked_add(npages).ok_or(Errno::EOVERFLOW)?;
    if end > MAX_PAGE {
        return Err(Errno::EOVERFLOW);
    }
    if npages > s.nslots {
        return Err(Errno::ENOMEM.with("mapping larger than the page store"));
    }
    let g = s.lock();
    let igen = fs.generation(ino)?;
    let size = fs.getattr(ino)?.size;
    let idx = match g.find_file(fsid, ino, Some(igen)) {
        Some(i) => i,
        None => g.insert_file(fsid, ino, igen, keep)?,
    };
    g.set_file_word(idx, F_MAPS, g.file_word(idx, F_MAPS) + 1);
    if writable {
        g.set_file_word(idx, F_FLAGS, g.file_word(idx, F_FLAGS) | WMAPPED);
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut buf = vec![0u8; PAGE_US];
    let mut failed = None;
    for p in pgoff..end {
        let slot = match g.page_slot(idx, p) {
            Some(slot) => slot,
            None => {
                let Some(slot) = g.alloc_slot().or_else(|| {
                    g.evict(idx);
                    g.alloc_slot()
                }) else {
                    failed = Some(Errno::ENOMEM.with("page store full"));
                    break;
                };
                if p * PAGE < size {
                    buf.fill(0);
                    let want = (size - p * PAGE).min(PAGE) as usize;
                    let mut got = 0;
                    while got < want {
                        match fs.read(ino, p * PAGE + got as u64, &mut buf[got..want]) {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if failed.is_some() {
                        g.free_slot(slot);
                        break;
                    }
                    g.s.data.write(Locked::slot_off(slot), &buf[..want]);
                }
                if let Err(e) = g.put_page(idx, p, slot) {
                    g.free_slot(slot);
                    failed = Some(e);
                    break;
                }
                slot
            }
        };
        let at = (p - pgoff) * PAGE;
        match runs.last_mut() {
            Some(r) if r.off + r.len == slot * PAGE => r.len += PAGE,
            _ => runs.push(Run {
                at,
                off: slot * PAGE,
                len: PAGE,
            }),
        }
    }
    if let Some(e) = failed {
        let _ = g.unref(idx, Some(fs));
        return Err(e);
    }
    Ok(StoreMapping {
        tag: FileTag {
            id: idx as u64 + 1,
            pgoff,
            writable,
        },
        runs,
    })
}

/// The store-file index of a guestmem tag id.
fn idx_of(id: u64) -> Option<usize> {
    usize::try_from(id.checked_sub(1)?)
        .ok()
        .filter(|&i| i < NFILES)
}

/// The same file's pages again for a region being grown by mremap: a new
/// mapping reference on pages [pgoff, pgoff+npages) of store file `id`.
pub fn map_again(id: u64, pgoff: u64, npages: u64, writable: bool) -> FsResult<StoreMapping> {
    let s = store().ok_or(Errno::ENODEV)?;
    let idx = idx_of(id).ok_or(Errno::EINVAL)?;
    let (fsid, ino, igen) = {
        let g = s.lock();
        (
            g.file_word(idx, F_FSID),
            g.file_word(idx, F_INO),
            g.file_word(idx, F_IGEN),
        )
    };
    let fs = mount_fs(fsid).ok_or(Errno::ENODEV)?;
    if fs.generation(ino).ok() != Some(igen) {
        // The file was deleted since it was mapped.
        return Err(Errno::ENOMEM.with("mremap of a mapping of a deleted file"));
    }
    map_pages(s, &*fs, fsid, keep_of(fsid), ino, pgoff, npages, writable)
}

/// Drops one mapping reference of store file `id` (the last one writes
/// back and frees its pages).
pub fn unref(id: u64) {
    let (Some(s), Some(idx)) = (store(), idx_of(id)) else {
        return;
    };
    let g = s.lock();
    let (fsid, ino) = (g.file_word(idx, F_FSID), g.file_word(idx, F_INO));
    let fs = mount_fs(fsid);
    if let Err(e) = g.unref(idx, fs.as_deref()) {
        let msg = format!("myst: page store: writing back inode {ino}: {e}\n");
        myst_platform::host::write_stderr(msg.as_bytes());
    }
}

/// Writes pages [first, first+n) of store file `id` back to its file system.
pub fn writeback(id: u64, first: u64, n: u64) -> FsResult<()> {
    let (Some(s), Some(idx)) = (store(), idx_of(id)) else {
        return Ok(());
    };
    let g = s.lock();
    if g.file_word(idx, F_STATE) != ST_LIVE {
        return Ok(());
    }
    let Some(fs) = mount_fs(g.file_word(idx, F_FSID)) else {
        return Ok(());
    };
    g.writeback(&*fs, idx, first, first.saturating_add(n))
}

/// The unmap hook: removed pieces are written back, and files this
/// process no longer maps at all lose its reference.
fn on_unmap(pieces: &[Region], gone: &[u64]) {
    for p in pieces {
        if let Some(t) = p.file {
            if p.shared {
                let _ = writeback(t.id, t.pgoff, (p.end - p.start) / PAGE);
            }
        }
    }
    for &id in gone {
        unref(id);
    }
}

/// Before a fork: the child will have this process's mappings, so each
/// mapped file gets one more reference now (not after the fork, when the
/// parent might already have dropped its own). Returns what to undo if
/// the fork fails.
pub fn before_fork() -> Vec<u64> {
    let Some(s) = store() else {
        return Vec::new();
    };
    let ids = guestmem::file_ids();
    if ids.is_empty() {
        return ids;
    }
    let g = s.lock();
    for &id in &ids {
        if let Some(idx) = idx_of(id) {
            g.set_file_word(idx, F_MAPS, g.file_word(idx, F_MAPS) + 1);
        }
    }
    ids
}

/// After a failed fork: takes back [`before_fork`]'s references.
pub fn fork_failed(ids: &[u64]) {
    for &id in ids {
        unref(id);
    }
}

/// At process exit: every mapping of this process goes away.
pub fn at_exit() {
    for id in guestmem::file_ids() {
        unref(id);
    }
}

impl FileSystem for CachedFs {
    fn root(&self) -> Ino {
        self.inner.root()
    }
    fn lookup(&self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        self.inner.lookup(dir, name)
    }
    fn lookup_attr(&self, dir: Ino, name: &[u8]) -> FsResult<Attr> {
        self.inner.lookup_attr(dir, name)
    }
    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        self.inner.getattr(ino)
    }
    fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        let (Some(s), Some(_)) = (store(), set.size) else {
            return self.inner.setattr(ino, set);
        };
        let g1 = s.gen();
        if s.files_live() == 0 {
            let a = self.inner.setattr(ino, set)?;
            if s.gen() == g1 {
                return Ok(a);
            }
            // A mapping appeared meanwhile: make its pages agree.
            let g = s.lock();
            if let Some(idx) = g.lookup(&*self.inner, self.fsid, ino)? {
                let size = self.inner.getattr(ino)?.size;
                g.zero_pages(idx, size, MAX_PAGE * PAGE);
            }
            return Ok(a);
        }
        let g = s.lock();
        let Some(idx) = g.lookup(&*self.inner, self.fsid, ino)? else {
            return self.inner.setattr(ino, set);
        };
        let old = self.inner.getattr(ino)?.size;
        let a = self.inner.setattr(ino, set)?;
        if a.size < old {
            g.zero_pages(idx, a.size, MAX_PAGE * PAGE);
        } else {
            g.zero_pages(idx, old, a.size);
        }
        Ok(a)
    }
    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let Some(s) = store() else {
            return self.inner.read(ino, offset, buf);
        };
        if s.files_live() == 0 {
            return self.inner.read(ino, offset, buf);
        }
        let g = s.lock();
        let Some(idx) = g.lookup(&*self.inner, self.fsid, ino)? else {
            drop(g);
            return self.inner.read(ino, offset, buf);
        };
        let size = self.inner.getattr(ino)?.size;
        if offset >= size {
            return Ok(0);
        }
        let n = ((size - offset).min(buf.len() as u64)) as usize;
        let inner = &self.inner;
        g.read_pages(idx, offset, &mut buf[..n], |pos, piece| {
            let mut got = 0;
            while got < piece.len() {
                match inner.read(ino, pos + got as u64, &mut piece[got..])? {
                    0 => {
                        piece[got..].fill(0);
                        break;
                    }
                    k => got += k,
                }
            }
            Ok(())
        })?;
        Ok(n)
    }
    fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<usize> {
        let Some(s) = store() else {
            return self.inner.write(ino, offset, data);
        };
        // Fast path: no file has pages in the store. GEN is read before
        // FILES and a new entry bumps FILES before GEN, so a mapping made
        // while this write ran shows up as a changed GEN afterwards.
        let g1 = s.gen();
        if s.files_live() == 0 {
            let n = self.inner.write(ino, offset, data)?;
            if s.gen() != g1 {
                let g = s.lock();
                if let Some(idx) = g.lookup(&*self.inner, self.fsid, ino)? {
                    g.write_pages(idx, offset, &data[..n]);
                }
            }
            return Ok(n);
        }
        let g = s.lock();
        let Some(idx) = g.lookup(&*self.inner, self.fsid, ino)? else {
            return self.inner.write(ino, offset, data);
        };
        let old = self.inner.getattr(ino)?.size;
        let n = self.inner.write(ino, offset, data)?;
        if offset > old {
            g.zero_pages(idx, old, offset);
        }
        g.write_pages(idx, offset, &data[..n]);
        Ok(n)
    }
    fn append(&self, ino: Ino, data: &[u8]) -> FsResult<(u64, usize)> {
        let Some(s) = store() else {
            return self.inner.append(ino, data);
        };
        let g1 = s.gen();
        if s.files_live() == 0 {
            let (start, n) = self.inner.append(ino, data)?;
            if s.gen() != g1 {
                let g = s.lock();
                if let Some(idx) = g.lookup(&*self.inner, self.fsid, ino)? {
                    g.write_pages(idx, start, &data[..n]);
                }
            }
            return Ok((start, n));
        }
        let g = s.lock();
        let Some(idx) = g.lookup(&*self.inner, self.fsid, ino)? else {
            return self.inner.append(ino, data);
        };
        let (start, n) = self.inner.append(ino, data)?;
        g.write_pages(idx, start, &data[..n]);
        Ok((start, n))
    }
    fn readdir(&self, dir: Ino) -> FsResult<Vec<DirEntry>> {
        self.inner.readdir(dir)
    }
    fn create(&self, dir: Ino, name: &[u8], new: &NewInode) -> FsResult<Ino> {
        self.inner.create(dir, name, new)
    }
    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], new: &NewInode) -> FsResult<Ino> {
        self.inner.symlink(dir, name, target, new)
    }
    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.inner.readlink(ino)
    }
    fn link(&self, ino: Ino, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.inner.link(ino, dir, name)
    }
    fn unlink(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.inner.unlink(dir, name)
    }
    fn rmdir(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.inner.rmdir(dir, name)
    }
    fn rename(&self, old_dir: Ino, old: &[u8], new_dir: Ino, new: &[u8]) -> FsResult<()> {
        self.inner.rename(old_dir, old, new_dir, new)
    }
    fn statfs(&self) -> FsResult<StatFs> {
        self.inner.statfs()
    }
    fn fsync(&self, ino: Ino) -> FsResult<()> {
        if let Some(s) = store() {
            if s.files_live() != 0 {
                let g = s.lock();
                if let Some(idx) = g.lookup(&*self.inner, self.fsid, ino)? {
                    g.writeback(&*self.inner, idx, 0, MAX_PAGE)?;
                }
            }
        }
        self.inner.fsync(ino)
    }
    fn retain(&self, ino: Ino) {
        self.inner.retain(ino)
    }
    fn release(&self, ino: Ino) {
        self.inner.release(ino)
    }
    fn shared_holds(&self) -> bool {
        self.inner.shared_holds()
    }
    fn generation(&self, ino: Ino) -> FsResult<u64> {
        self.inner.generation(ino)
    }
    fn host_file(&self, ino: Ino, write: bool) -> Option<FsResult<Arc<std::fs::File>>> {
        self.inner.host_file(ino, write)
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl Store {
    /// The most file-page bytes the store holds.
    pub fn budget(&self) -> u64 {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myst_fs::ramfs::RamFs;
    use myst_fs::{FileType, NewInode, Timespec};
    use std::collections::HashMap;

    #[test]
    fn page_table_matches_a_model() {
        let s = Store::new(1 << 20).expect("store");
        let g = s.lock();
        let a = g.insert_file(1, 10, 7, false).expect("file");
        let b = g.insert_file(1, 11, 7, false).expect("file");
        assert_eq!(g.find_file(1, 10, Some(7)), Some(a));
        assert_eq!(g.find_file(1, 10, Some(8)), None);
        assert_eq!(g.find_file(2, 10, None), None);
        let mut model: HashMap<(usize, u64), u64> = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let idx = if x & 1 == 0 { a } else { b };
            let page = (x >> 8) % 300;
            if (x >> 40).is_multiple_of(3) {
                g.del_page(idx, page);
                model.remove(&(idx, page));
            } else if !model.contains_key(&(idx, page)) && model.len() < 200 {
                g.put_page(idx, page, step).expect("put");
                model.insert((idx, page), step);
            }
            if step.is_multiple_of(97) {
                for (&(i, p), &slot) in &model {
                    assert_eq!(g.page_slot(i, p), Some(slot), "page {p} of {i}");
                }
                for p in 0..300 {
                    for i in [a, b] {
                        assert_eq!(g.page_slot(i, p), model.get(&(i, p)).copied());
                    }
                }
            }
        }
        let mut pages: Vec<(u64, u64)> = g.pages_of(a);
        pages.sort_unstable();
        let mut want: Vec<(u64, u64)> = model
            .iter()
            .filter(|((i, _), _)| *i == a)
            .map(|((_, p), s)| (*p, *s))
            .collect();
        want.sort_unstable();
        assert_eq!(pages, want);
        assert_eq!(g.file_word(a, F_PAGES), want.len() as u64);
    }

    #[test]
    fn slots_are_reused_zeroed_and_bounded() {
        let s = Store::new(256 * PAGE).expect("store");
        let g = s.lock();
        let mut got = Vec::new();
        while let Some(slot) = g.alloc_slot() {
            got.push(slot);
        }
        assert_eq!(got.len(), 256, "the store holds exactly its budget");
        assert!(s.data.write(Locked::slot_off(got[3]), b"dirty"));
        g.free_slot(got[3]);
        let again = g.alloc_slot().expect("a freed slot");
        assert_eq!(again, got[3]);
        let mut b = [9u8; 5];
        assert!(s.data.read(Locked::slot_off(again), &mut b));
        assert_eq!(b, [0; 5], "a reused slot reads as zeros");
    }

    #[test]
    fn store_pages_are_the_file_for_read_and_write() {
        let s = Store::new(1 << 20).expect("store");
        let ram = Arc::new(RamFs::new(0o755, 1 << 20));
        let new = NewInode {
            kind: FileType::Regular,
            perm: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            time: Timespec::default(),
        };
        let ino = ram.create(ram.root(), b"f", &new).expect("create");
        ram.write(ino, 0, &[b'a'; 6000]).expect("write");
        let m = map_pages(&s, &*ram, 5, false, ino, 0, 3, true).expect("map");
        assert_eq!(m.runs.iter().map(|r| r.len).sum::<u64>(), 3 * PAGE);
        let g = s.lock();
        let idx = g.find_file(5, ino, None).expect("entry");
        // A store "through the mapping": straight into the slot.
        let slot = g.page_slot(idx, 1).expect("page 1");
        assert!(s.data.write(Locked::slot_off(slot) + 10, b"MAPPED"));
        let mut buf = [0u8; 6];
        g.read_pages(idx, PAGE + 10, &mut buf, |_, _| panic!("page is present"))
            .expect("read");
        assert_eq!(&buf, b"MAPPED");
        // Past the end of the file the pages are zeros.
        let slot2 = g.page_slot(idx, 2).expect("page 2");
        let mut z = [1u8; 8];
        assert!(s.data.read(Locked::slot_off(slot2), &mut z));
        assert_eq!(z, [0; 8]);
        // write() goes into present pages too.
        g.write_pages(idx, 5, b"xyz");
        let mut w = [0u8; 3];
        g.read_pages(idx, 5, &mut w, |_, _| panic!("present"))
            .expect("read");
        assert_eq!(&w, b"xyz");
        // Write-back puts the mapped bytes into the file system, the last
        // reference frees the pages.
        g.writeback(&*ram, idx, 0, MAX_PAGE).expect("writeback");
        let mut f = [0u8; 6];
        ram.read(ino, PAGE + 10, &mut f).expect("read file");
        assert_eq!(&f, b"MAPPED");
        let used = s.used_bytes();
        assert_eq!(used, 3 * PAGE);
        g.unref(idx, Some(&*ram)).expect("unref");
        assert_eq!(s.used_bytes(), 0);
        assert_eq!(g.find_file(5, ino, None), None);
    }
}
