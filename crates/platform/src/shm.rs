//! Shared memory that survives fork: a memfd mapped `MAP_SHARED`, so a
//! parent and every child forked after [`SharedRegion::new`] see the same
//! bytes. The writable file-system state of guest processes lives here
//! (docs/DESIGN.md "Processes"). The memfd is sparse: pages cost memory only
//! once written.
//!
//! All access is bounds-checked; the atomics need natural alignment.

use crate::raw::{check, nr, syscall6};
use std::sync::atomic::{AtomicU32, AtomicU64};

const MEMFD_CREATE: u64 = 319;
const FTRUNCATE: u64 = 77;
const FUTEX: u64 = 202;
const MFD_CLOEXEC: u64 = 1;
const PROT_RW: u64 = 3;
const MAP_SHARED: u64 = 1;
const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;

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
        // SAFETY: closing our own descriptor; the mapping stays valid.
        unsafe { syscall6(nr::CLOSE, fd, 0, 0, 0, 0, 0) };
        let addr = m?;
        Ok(SharedRegion {
            base: addr as *mut u8,
            len: len as usize,
        })
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
                // SAFETY: `p..p+len` is inside the live mapping and `buf` is a
                // distinct Rust buffer; a racing writer in another process
                // can only make the bytes stale, never unsafe for `u8`.
                unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
                true
            }
            None => false,
        }
    }

    /// Copies `data` to `off`; false when out of range.
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        match self.range(off, data.len()) {
            Some(p) => {
                // SAFETY: as in `read`; no Rust reference to these bytes exists.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
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
    }
}

/// This process's host pid.
pub fn host_pid() -> u32 {
    // SAFETY: getpid has no arguments and touches no memory.
    unsafe { syscall6(nr::GETPID, 0, 0, 0, 0, 0, 0) as u32 }
}

/// True when host process `pid` still exists (kill with signal 0).
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks existence and permission.
    let r = unsafe { syscall6(nr::KILL, u64::from(pid), 0, 0, 0, 0, 0) };
    r != -3 // ESRCH
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
    }
}
