//! Shared memory that survives fork: a memfd mapped `MAP_SHARED`, so a
//! parent and every child forked after [`SharedRegion::new`] see the same
//! bytes. The writable file-system state of guest processes lives here
//! (docs/DESIGN.md "Processes"). The memfd is sparse: pages cost memory only
//! once written.
//!
//! All access is bounds-checked; the atomics need natural alignment.

use crate::raw::{check, nr, syscall6};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};

const MEMFD_CREATE: u64 = 319;
const FTRUNCATE: u64 = 77;
const FUTEX: u64 = 202;
const MFD_CLOEXEC: u64 = 1;
const PROT_RW: u64 = 3;
const MAP_SHARED: u64 = 1;
const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const PIDFD_OPEN: u64 = 434;
const POLL: u64 = 7;
const MADV_REMOVE: u64 = 9;
/// Bit 31 of a lock word: someone sleeps on it.
const LOCK_WAITERS: u32 = 1 << 31;
/// How long a lock waiter sleeps before it checks that the owner is alive.
pub const LOCK_WAIT_MS: u64 = 50;

/// Why a region could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// A host call failed.
    #[error("shared memory: {call} failed: {errno}")]
    Host {
        /// Which call.
        call: &'static str,
        /// The host errno.
        errno: crate::errno::Errno,
    },
    /// A zero or absurd size was asked for.
    #[error("shared memory: bad size {0}")]
    BadSize(u64),
}

/// A `MAP_SHARED` mapping of an anonymous memfd, inherited across fork.
#[derive(Debug)]
pub struct SharedRegion {
    base: *mut u8,
    len: usize,
    /// The memfd, when kept open (so its pages can be mapped elsewhere too).
    fd: Option<i32>,
}

// SAFETY: the region is plain shared memory; every access goes through
// bounds-checked copies or atomics, which are valid from any thread.
unsafe impl Send for SharedRegion {}
// SAFETY: as above; `&self` methods never hand out non-atomic references.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// Maps a new zero-filled region of `len` bytes (rounded up to pages).
    /// The memfd is closed at once: the mapping keeps the memory alive and
    /// no host descriptor is left for the guest to collide with.
    pub fn new(name: &str, len: u64) -> Result<SharedRegion, ShmError> {
        Self::create(name, len, false)
    }

    /// Like [`SharedRegion::new`], but the memfd stays open (and is
    /// inherited across fork) so [`SharedRegion::fd`] can map its pages
    /// into guest memory as well.
    pub fn with_fd(name: &str, len: u64) -> Result<SharedRegion, ShmError> {
        Self::create(name, len, true)
    }

    fn create(name: &str, len: u64, keep_fd: bool) -> Result<SharedRegion, ShmError> {
        if len == 0 || len > 1 << 46 {
            return Err(ShmError::BadSize(len));
        }
        let len = len.div_ceil(4096) * 4096;
        let mut cname: Vec<u8> = name.bytes().filter(|&b| b != 0).take(200).collect();
        cname.push(0);
        let host = |call, r| check(r).map_err(|errno| ShmError::Host { call, errno });
        // SAFETY: `cname` is a NUL-terminated buffer alive for the call.
        let fd = host("memfd_create", unsafe {
            syscall6(MEMFD_CREATE, cname.as_ptr() as u64, MFD_CLOEXEC, 0, 0, 0, 0)
        })?;
        // SAFETY: ftruncate on the descriptor just created; no memory involved.
        let t = host("ftruncate", unsafe {
            syscall6(FTRUNCATE, fd, len, 0, 0, 0, 0)
        });
        let m = t.and_then(|_| {
            // SAFETY: a fresh mapping at an address the kernel picks; it
            // overlaps nothing Rust uses.
            host("mmap", unsafe {
                syscall6(nr::MMAP, 0, len, PROT_RW, MAP_SHARED, fd, 0)
            })
        });
        if !keep_fd || m.is_err() {
            // SAFETY: closing our own descriptor; the mapping stays valid.
            unsafe { syscall6(nr::CLOSE, fd, 0, 0, 0, 0, 0) };
        }
        let addr = m?;
        Ok(SharedRegion {
            base: addr as *mut u8,
            len: len as usize,
            fd: keep_fd.then_some(fd as i32),
        })
    }

    /// The memfd behind the region (only for [`SharedRegion::with_fd`]).
    pub fn fd(&self) -> Option<i32> {
        self.fd
    }

    /// Sets `n` bytes at `off` to zero; false when out of range.
    pub fn zero(&self, off: usize, n: usize) -> bool {
        match self.range(off, n) {
            Some(p) => {
                // SAFETY: in range of the live mapping; no Rust reference to
                // these bytes exists (see `write`).
                unsafe { std::ptr::write_bytes(p, 0, n) };
                true
            }
            None => false,
        }
    }

    /// Gives the memory of whole pages [off, off+n) back to the host: they
    /// read as zeros afterwards, through this mapping and every other
    /// mapping of the memfd in any process. False when out of range or not
    /// page aligned.
    pub fn punch(&self, off: usize, n: usize) -> bool {
        if !off.is_multiple_of(4096) || !n.is_multiple_of(4096) || n == 0 {
            return false;
        }
        let Some(p) = self.range(off, n) else {
            return false;
        };
        // SAFETY: page-aligned range inside our own shared mapping;
        // MADV_REMOVE only frees its backing (the bytes become zeros), it
        // does not unmap anything.
        check(unsafe { syscall6(nr::MADVISE, p as u64, n as u64, MADV_REMOVE, 0, 0, 0) }).is_ok()
    }

    /// Takes the lock whose u32 word is at `off` (aligned): the word holds
    /// the owner's host thread id (bit 31: someone waits). A waiter checks
    /// every [`LOCK_WAIT_MS`] that the owner still runs and takes the lock
    /// over from a dead (or zombie) one, so a process killed while holding
    /// it cannot stop the others. Works between threads and processes.
    pub fn lock_owner(&self, off: usize) {
        let Some(word) = self.atomic_u32(off) else {
            return;
        };
        let me = host_tid() & !LOCK_WAITERS;
        if word.compare_exchange(0, me, SeqCst, Relaxed).is_ok() {
            return;
        }
        loop {
            let cur = word.load(SeqCst);
            if cur == 0 {
                // Take it marked contended: others may still sleep on it.
                if word
                    .compare_exchange(0, me | LOCK_WAITERS, SeqCst, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            let owner = cur & !LOCK_WAITERS;
            if owner == me {
                // Held by this thread id: a thread that died holding it
                // whose id was reused, or a fork child's copy of its
                // parent's thread. Never wait for ourselves.
                if word
                    .compare_exchange(cur, me | LOCK_WAITERS, SeqCst, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if cur & LOCK_WAITERS == 0
                && word
                    .compare_exchange(cur, cur | LOCK_WAITERS, SeqCst, Relaxed)
                    .is_err()
            {
                continue;
            }
            self.futex_wait(off, cur | LOCK_WAITERS, LOCK_WAIT_MS);
            if word.load(SeqCst) == cur | LOCK_WAITERS
                && !process_alive(owner)
                && word
                    .compare_exchange(cur | LOCK_WAITERS, me | LOCK_WAITERS, SeqCst, Relaxed)
                    .is_ok()
            {
                return;
            }
        }
    }

    /// Releases a lock taken with [`SharedRegion::lock_owner`].
    pub fn unlock_owner(&self, off: usize) {
        if let Some(word) = self.atomic_u32(off) {
            if word.swap(0, SeqCst) & LOCK_WAITERS != 0 {
                self.futex_wake(off, 1);
            }
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (regions have at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self, off: usize, n: usize) -> Option<*mut u8> {
        match off.checked_add(n) {
            // SAFETY: off + n <= len, so the pointer stays inside the mapping.
            Some(end) if end <= self.len => Some(unsafe { self.base.add(off) }),
            _ => None,
        }
    }

    /// Copies `buf.len()` bytes at `off` into `buf`; false when out of range.
    /// Concurrent writers of the same bytes must be excluded by the caller's
    /// lock (the copy is not atomic).
    pub fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        match self.range(off, buf.len()) {
            Some(p) => {
                // SAFETY: `p..p+len` is inside the live mapping; a racing
                // writer in another process can only make the bytes stale,
                // never unsafe for `u8`. `buf` may be guest memory mapped from
                // the same memfd (a read() into a shared mapping of the same
                // file), so the copy allows overlap.
                unsafe { std::ptr::copy(p, buf.as_mut_ptr(), buf.len()) };
                true
            }
            None => false,
        }
    }

    /// Copies `data` to `off`; false when out of range.
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        match self.range(off, data.len()) {
            Some(p) => {
                // SAFETY: as in `read` (overlap allowed: `data` may be a guest
                // mapping of these very pages); no Rust reference to these
                // bytes exists.
                unsafe { std::ptr::copy(data.as_ptr(), p, data.len()) };
                true
            }
            None => false,
        }
    }

    /// The 32-bit atomic at `off` (4-byte aligned, in range).
    pub fn atomic_u32(&self, off: usize) -> Option<&AtomicU32> {
        if !off.is_multiple_of(4) {
            return None;
        }
        let p = self.range(off, 4)?;
        // SAFETY: aligned, in range, lives as long as `self`; shared memory
        // is only ever accessed atomically at this offset by convention.
        Some(unsafe { AtomicU32::from_ptr(p as *mut u32) })
    }

    /// The 64-bit atomic at `off` (8-byte aligned, in range).
    pub fn atomic_u64(&self, off: usize) -> Option<&AtomicU64> {
        if !off.is_multiple_of(8) {
            return None;
        }
        let p = self.range(off, 8)?;
        // SAFETY: as in `atomic_u32`.
        Some(unsafe { AtomicU64::from_ptr(p as *mut u64) })
    }

    /// Sleeps while the u32 at `off` equals `expected`, at most `timeout_ms`.
    pub fn futex_wait(&self, off: usize, expected: u32, timeout_ms: u64) {
        let Some(a) = self.atomic_u32(off) else {
            return;
        };
        let ts: [i64; 2] = [
            (timeout_ms / 1000) as i64,
            ((timeout_ms % 1000) * 1_000_000) as i64,
        ];
        // SAFETY: the futex word is an aligned u32 in the mapping; `ts` lives
        // for the call. A shared (non-PRIVATE) futex works across processes.
        unsafe {
            syscall6(
                FUTEX,
                a.as_ptr() as u64,
                FUTEX_WAIT,
                u64::from(expected),
                ts.as_ptr() as u64,
                0,
                0,
            )
        };
    }

    /// Takes the lock whose word is the u32 at `off`: 0 when free, else the
    /// owner's host pid (bit 31: someone waits). A waiter that times out
    /// takes the lock over from an owner that no longer runs, so a process
    /// killed while holding it cannot hang the others. Threads of one
    /// process must be serialised by the caller (an in-process mutex): the
    /// word only tells processes apart, and a word left holding this
    /// process's own pid (a fork child inherits a word its parent's thread
    /// held, or a pid was reused) is taken over at once.
    pub fn lock_word(&self, off: usize) {
        self.lock_word_as(off, host_pid());
    }

    /// [`SharedRegion::lock_word`] for a caller that knows its pid `me`
    /// (saves a host call per lock).
    pub fn lock_word_as(&self, off: usize, me: u32) {
        use std::sync::atomic::Ordering::{Relaxed, SeqCst};
        let Some(word) = self.atomic_u32(off) else {
            return;
        };
        if word.compare_exchange(0, me, SeqCst, Relaxed).is_ok() {
            return;
        }
        loop {
            let cur = word.load(SeqCst);
            if cur == 0 {
                // Taken marked contended: others may still sleep on it.
                if word
                    .compare_exchange(0, me | LOCK_WAITERS, SeqCst, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            let owner = cur & !LOCK_WAITERS;
            if owner == me {
                if word
                    .compare_exchange(cur, me | LOCK_WAITERS, SeqCst, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if cur & LOCK_WAITERS == 0
                && word
                    .compare_exchange(cur, cur | LOCK_WAITERS, SeqCst, Relaxed)
                    .is_err()
            {
                continue;
            }
            self.futex_wait(off, cur | LOCK_WAITERS, LOCK_WAIT_MS);
            if word.load(SeqCst) == cur | LOCK_WAITERS
                && !process_running(owner)
                && word
                    .compare_exchange(cur | LOCK_WAITERS, me | LOCK_WAITERS, SeqCst, Relaxed)
                    .is_ok()
            {
                return;
            }
        }
    }

    /// Releases a lock taken with [`SharedRegion::lock_word`].
    pub fn unlock_word(&self, off: usize) {
        if let Some(word) = self.atomic_u32(off) {
            if word.swap(0, std::sync::atomic::Ordering::SeqCst) & LOCK_WAITERS != 0 {
                self.futex_wake(off, 1);
            }
        }
    }

    /// Wakes up to `n` waiters on the u32 at `off`.
    pub fn futex_wake(&self, off: usize, n: u32) {
        if let Some(a) = self.atomic_u32(off) {
            // SAFETY: as in `futex_wait`; no memory is written.
            unsafe { syscall6(FUTEX, a.as_ptr() as u64, FUTEX_WAKE, u64::from(n), 0, 0, 0) };
        }
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no references into it outlive
        // `self` (accessors borrow `self`).
        unsafe { syscall6(nr::MUNMAP, self.base as u64, self.len as u64, 0, 0, 0, 0) };
        if let Some(fd) = self.fd {
            // SAFETY: closing the memfd this region owns.
            unsafe { syscall6(nr::CLOSE, fd as u64, 0, 0, 0, 0, 0) };
        }
    }
}

/// This process's host pid.
pub fn host_pid() -> u32 {
    // SAFETY: getpid has no arguments and touches no memory.
    unsafe { syscall6(nr::GETPID, 0, 0, 0, 0, 0, 0) as u32 }
}

/// This thread's host thread id.
pub fn host_tid() -> u32 {
    // SAFETY: gettid has no arguments and touches no memory.
    unsafe { syscall6(nr::GETTID, 0, 0, 0, 0, 0, 0) as u32 }
}

/// True when host process (or thread) `pid` still exists and has not
/// exited: a zombie, which runs no code any more but exists until its
/// parent reaps it, counts as gone (a lock it held will never be released,
/// and its parent may be the one waiting for the lock).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|i| stat.get(i + 2).copied());
            !matches!(state, Some(b'Z' | b'X' | b'x'))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => {
            // SAFETY: signal 0 only checks existence and permission.
            let r = unsafe { syscall6(nr::KILL, u64::from(pid), 0, 0, 0, 0, 0) };
            r != -3 // ESRCH
        }
    }
}

/// True when host process `pid` exists and has not exited: unlike
/// [`process_alive`], a zombie (exited, not yet waited for) counts as gone,
/// so what it held can be released before its parent reaps it. A pidfd
/// becomes readable when its process exits; without pidfds (old kernels)
/// this falls back to [`process_alive`].
pub fn process_running(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: pidfd_open takes no pointers.
    let fd = match check(unsafe { syscall6(PIDFD_OPEN, u64::from(pid), 0, 0, 0, 0, 0) }) {
        Ok(fd) => fd,
        Err(e) if e == crate::errno::Errno::ESRCH => return false,
        Err(_) => return process_alive(pid),
    };
    const POLLIN: i16 = 1;
    let mut pfd = [0u8; 8];
    pfd[..4].copy_from_slice(&(fd as i32).to_le_bytes());
    pfd[4..6].copy_from_slice(&POLLIN.to_le_bytes());
    // SAFETY: one pollfd of 8 bytes, alive for the call; timeout 0.
    let n = unsafe { syscall6(POLL, pfd.as_mut_ptr() as u64, 1, 0, 0, 0, 0) };
    // SAFETY: closing the descriptor opened above.
    unsafe { syscall6(nr::CLOSE, fd, 0, 0, 0, 0, 0) };
    let revents = i16::from_le_bytes([pfd[6], pfd[7]]);
    !(n > 0 && revents & POLLIN != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn bounds_and_atomics() {
        let r = SharedRegion::new("t", 5000).unwrap();
        assert_eq!(r.len(), 8192);
        assert!(r.write(8190, b"ab"));
        assert!(!r.write(8191, b"ab"));
        let mut b = [0u8; 2];
        assert!(r.read(8190, &mut b));
        assert_eq!(&b, b"ab");
        assert!(r.atomic_u32(2).is_none());
        assert!(r.atomic_u64(8192).is_none());
        r.atomic_u64(8).unwrap().fetch_add(5, Ordering::SeqCst);
        assert_eq!(r.atomic_u64(8).unwrap().load(Ordering::SeqCst), 5);
        r.futex_wait(8, 1, 1); // value differs: returns at once
        assert!(process_alive(host_pid()));
        assert!(process_running(host_pid()));
        r.lock_word(16);
        assert_eq!(r.atomic_u32(16).unwrap().load(Ordering::SeqCst), host_pid());
        r.unlock_word(16);
        assert_eq!(r.atomic_u32(16).unwrap().load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_zombie_is_not_running_and_its_lock_is_taken_over() {
        let r = SharedRegion::new("t", 4096).unwrap();
        let pid = match crate::host::fork().unwrap() {
            0 => {
                r.lock_word(0);
                crate::host::exit_group(0)
            }
            pid => pid,
        };
        // Not waited for yet: a zombie holding the lock.
        while r.atomic_u32(0).unwrap().load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        while process_running(pid) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(process_alive(pid), "a zombie still exists");
        r.lock_word(0);
        r.unlock_word(0);
        crate::host::wait4(pid as i32, 0).unwrap();
    }
}
