//! [`SharedStore`]: an overlay [`BlockStore`] in shared memory (a memfd
//! mapped `MAP_SHARED`), so a guest parent and the children it forks write
//! to one ephemeral file system (docs/DESIGN.md "Processes").
//!
//! Layout of the region: a 64-byte header (lock word, generation, slots
//! used), an open-addressing table of `(block + 1, slot + 1)` pairs of
//! u64 atomics, then the data slots. Slots are handed out in order and
//! never freed (like [`crate::overlay::MemStore`]); a full budget is ENOSPC.
//!
//! The lock is a futex word holding the owner's host pid (bit 31: someone
//! waits). A waiter that times out checks that the owner still lives and
//! takes the lock over from a dead one, so a guest process killed in the
//! middle of an operation cannot hang the others.

use crate::overlay::BlockStore;
use crate::{BlockError, BlockResult};
use myst_platform::shm::{host_pid, process_alive, SharedRegion, ShmError};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

const LOCK: usize = 0;
const GEN: usize = 8;
const USED: usize = 16;
const HEADER: usize = 64;
const WAITERS: u32 = 1 << 31;
/// How long a waiter sleeps before checking that the owner is alive.
const WAIT_MS: u64 = 50;

/// A block store in memory shared with forked children.
#[derive(Debug)]
pub struct SharedStore {
    region: SharedRegion,
    block_size: usize,
    budget: u64,
    max_slots: u64,
    /// Table entries (a power of two).
    cap: usize,
    data_off: usize,
}

impl SharedStore {
    /// A store of `block_size`-byte blocks holding at most `budget` bytes.
    /// Create it before forking: children inherit the mapping.
    pub fn new(block_size: usize, budget: u64) -> Result<SharedStore, ShmError> {
        if block_size == 0 || block_size > crate::MAX_BLOCK_SIZE {
            return Err(ShmError::BadSize(block_size as u64));
        }
        let max_slots = budget / block_size as u64;
        let cap = (max_slots.max(8) * 2).next_power_of_two();
        let data_off = HEADER as u64 + cap * 16;
        let data_off = data_off.div_ceil(block_size as u64) * block_size as u64;
        let len = max_slots
            .checked_mul(block_size as u64)
            .and_then(|d| d.checked_add(data_off))
            .ok_or(ShmError::BadSize(budget))?;
        let region = SharedRegion::new("myst-overlay", len)?;
        Ok(SharedStore {
            region,
            block_size,
            budget,
            max_slots,
            cap: cap as usize,
            data_off: data_off as usize,
        })
    }

    fn u64_at(&self, off: usize) -> BlockResult<&std::sync::atomic::AtomicU64> {
        self.region.atomic_u64(off).ok_or(BlockError::OutOfRange {
            first: off as u64,
            end: off as u64 + 8,
            count: self.region.len() as u64,
        })
    }

    /// The table index of `block`: Ok(Some(entry)) when present, Ok(None)
    /// when absent; with `claim`, an absent block gets a fresh entry.
    fn find(&self, block: u64, claim: bool) -> BlockResult<Option<usize>> {
        let key = block.wrapping_add(1);
        let mask = self.cap - 1;
        let mut i = (block.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) as usize & mask;
        for _ in 0..self.cap {
            let k = self.u64_at(HEADER + i * 16)?;
            match k.load(Acquire) {
                cur if cur == key => return Ok(Some(i)),
                0 if !claim => return Ok(None),
                0 => match k.compare_exchange(0, key, AcqRel, Acquire) {
                    Ok(_) => return Ok(Some(i)),
                    Err(cur) if cur == key => return Ok(Some(i)),
                    Err(_) => {}
                },
                _ => {}
            }
            i = (i + 1) & mask;
        }
        if claim {
            Err(BlockError::NoSpace {
                budget: self.budget,
            })
        } else {
            Ok(None)
        }
    }

    fn slot_off(&self, slot: u64) -> usize {
        self.data_off + (slot as usize - 1) * self.block_size
    }
}

impl BlockStore for SharedStore {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn get(&self, block: u64, out: &mut [u8]) -> BlockResult<bool> {
        let Some(i) = self.find(block, false)? else {
            return Ok(false);
        };
        let slot = self.u64_at(HEADER + i * 16 + 8)?.load(Acquire);
        if slot == 0 {
            return Ok(false);
        }
        if out.len() != self.block_size || !self.region.read(self.slot_off(slot), out) {
            return Err(BlockError::BadBuffer {
                len: out.len(),
                block_size: self.block_size,
            });
        }
        Ok(true)
    }
    fn put(&self, block: u64, data: &[u8]) -> BlockResult<()> {
        if data.len() != self.block_size {
            return Err(BlockError::BadBuffer {
                len: data.len(),
                block_size: self.block_size,
            });
        }
        let i = self.find(block, true)?.ok_or(BlockError::NoSpace {
            budget: self.budget,
        })?;
        let slot_word = self.u64_at(HEADER + i * 16 + 8)?;
        let mut slot = slot_word.load(Acquire);
        if slot == 0 {
            let used = self.u64_at(USED)?;
            let n = used.fetch_add(1, AcqRel);
            if n >= self.max_slots {
                used.fetch_sub(1, AcqRel);
                return Err(BlockError::NoSpace {
                    budget: self.budget,
                });
            }
            // A racing writer of the same block may win; its slot is used
            // and ours is lost (a leak, never a wrong read).
            slot = match slot_word.compare_exchange(0, n + 1, AcqRel, Acquire) {
                Ok(_) => n + 1,
                Err(cur) => cur,
            };
        }
        if !self.region.write(self.slot_off(slot), data) {
            return Err(BlockError::BadBuffer {
                len: data.len(),
                block_size: self.block_size,
            });
        }
        self.u64_at(GEN)?.fetch_add(1, Release);
        Ok(())
    }
    fn is_empty(&self) -> bool {
        self.u64_at(USED)
            .map(|u| u.load(Acquire) == 0)
            .unwrap_or(false)
    }
    fn used_bytes(&self) -> u64 {
        self.u64_at(USED)
            .map(|u| u.load(Relaxed).min(self.max_slots) * self.block_size as u64)
            .unwrap_or(0)
    }
    fn blocks_left(&self) -> Option<u64> {
        Some(
            self.max_slots
                .saturating_sub(self.used_bytes() / self.block_size as u64),
        )
    }
    fn generation(&self) -> Option<u64> {
        self.u64_at(GEN).ok().map(|g| g.load(Acquire))
    }
    fn lock(&self) {
        let Some(word) = self.region.atomic_u32(LOCK) else {
            return;
        };
        let me = host_pid();
        if word.compare_exchange(0, me, SeqCst, Relaxed).is_ok() {
            return;
        }
        loop {
            let cur = word.load(SeqCst);
            if cur == 0 {
                // Take it marked contended: others may still sleep on it.
                if word
                    .compare_exchange(0, me | WAITERS, SeqCst, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            let owner = cur & !WAITERS;
            if owner == me {
                // Left held by this pid: a fork child inherits the word of
                // a parent thread that was mid-operation, or a pid reused.
                // Never wait for ourselves.
                if word
                    .compare_exchange(cur, me | WAITERS, SeqCst, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if cur & WAITERS == 0
                && word
                    .compare_exchange(cur, cur | WAITERS, SeqCst, Relaxed)
                    .is_err()
            {
                continue;
            }
            self.region.futex_wait(LOCK, cur | WAITERS, WAIT_MS);
            if word.load(SeqCst) == cur | WAITERS
                && !process_alive(owner)
                && word
                    .compare_exchange(cur | WAITERS, me | WAITERS, SeqCst, Relaxed)
                    .is_ok()
            {
                return;
            }
        }
    }
    fn unlock(&self) {
        let Some(word) = self.region.atomic_u32(LOCK) else {
            return;
        };
        if word.swap(0, SeqCst) & WAITERS != 0 {
            self.region.futex_wake(LOCK, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemDevice;
    use crate::overlay::Overlay;
    use crate::BlockDevice;
    use std::sync::Arc;

    #[test]
    fn store_budget_and_generation() {
        let s = SharedStore::new(512, 3 * 512).unwrap();
        assert!(s.is_empty());
        let g0 = s.generation().unwrap();
        s.put(7, &[1; 512]).unwrap();
        s.put(1 << 40, &[2; 512]).unwrap();
        s.put(7, &[3; 512]).unwrap();
        s.put(9, &[4; 512]).unwrap();
        assert_eq!(
            s.put(10, &[5; 512]).unwrap_err().errno(),
            crate::Errno::ENOSPC
        );
        assert!(s.generation().unwrap() >= g0 + 4);
        let mut b = [0u8; 512];
        assert!(s.get(7, &mut b).unwrap());
        assert_eq!(b, [3; 512]);
        assert!(s.get(1 << 40, &mut b).unwrap());
        assert_eq!(b, [2; 512]);
        assert!(!s.get(10, &mut b).unwrap());
        assert!(!s.get(8, &mut b).unwrap());
        assert_eq!(s.used_bytes(), 3 * 512);
        assert_eq!(s.blocks_left(), Some(0));
        s.lock();
        s.unlock();
        s.lock();
        s.unlock();
    }

    #[test]
    fn overlay_on_shared_store() {
        let lower = Arc::new(MemDevice::from_vec(512, vec![9; 4 * 512]));
        let ov = Overlay::new(lower, Arc::new(SharedStore::new(512, 1 << 20).unwrap())).unwrap();
        ov.write_block(2, &[1; 512]).unwrap();
        let mut all = vec![0u8; 4 * 512];
        ov.read_blocks(0, &mut all).unwrap();
        assert!(all[..1024].iter().all(|&x| x == 9));
        assert!(all[1024..1536].iter().all(|&x| x == 1));
        assert!(ov.shared_generation().is_some());
    }

    /// Forks; the child runs `f` (no allocation, no locks of this process)
    /// and exits with its result; the parent gets the child's exit code.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        use myst_platform::host;
        match host::fork().unwrap() {
            0 => host::exit_group(f()),
            pid => {
                let (_, status) = host::wait4(pid as i32, 0).unwrap();
                (status >> 8) & 0xff
            }
        }
    }

    #[test]
    fn writes_cross_a_real_fork() {
        let s = SharedStore::new(512, 64 * 512).unwrap();
        s.put(1, &[1; 512]).unwrap();
        let code = in_child(|| {
            let mut b = [0u8; 512];
            if !matches!(s.get(1, &mut b), Ok(true)) || b != [1; 512] {
                return 2;
            }
            s.lock();
            let r = s.put(5, &[5; 512]).is_ok() && s.put(1, &[6; 512]).is_ok();
            s.unlock();
            if r {
                0
            } else {
                3
            }
        });
        assert_eq!(code, 0);
        let mut b = [0u8; 512];
        assert!(
            s.get(5, &mut b).unwrap(),
            "the child's new block is visible"
        );
        assert_eq!(b, [5; 512]);
        assert!(s.get(1, &mut b).unwrap());
        assert_eq!(b, [6; 512], "the child's rewrite is visible");
        assert_eq!(s.used_bytes(), 2 * 512);
    }

    #[test]
    fn lock_excludes_and_survives_a_dead_owner() {
        let s = SharedStore::new(512, 64 * 512).unwrap();
        s.lock();
        let pid = match myst_platform::host::fork().unwrap() {
            0 => {
                s.lock();
                let ok = s.put(3, &[3; 512]).is_ok();
                s.unlock();
                myst_platform::host::exit_group(if ok { 0 } else { 1 })
            }
            pid => pid,
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut b = [0u8; 512];
        assert!(
            !s.get(3, &mut b).unwrap(),
            "the child wrote while we held the lock"
        );
        s.unlock();
        let (_, status) = myst_platform::host::wait4(pid as i32, 0).unwrap();
        assert_eq!(status, 0);
        assert!(s.get(3, &mut b).unwrap());
        // A child that dies holding the lock does not hang us.
        let code = in_child(|| {
            s.lock();
            0
        });
        assert_eq!(code, 0);
        s.lock();
        s.put(4, &[4; 512]).unwrap();
        s.unlock();
    }
}
