//! Inodes the VFS keeps in use (open files), with counts. On a device
//! shared across fork (the /tmp, /dev/shm and root overlays in shared
//! memory) the counts are one table for every process, in shared memory,
//! so an inode unlinked in one process stays alive while any process has
//! it open, and is freed by whichever process lets go last. Otherwise a
//! per-process map.
//!
//! The shared table is only touched under the device's cross-process lock
//! (every ext2 operation holds it), so plain loads and stores suffice; it
//! is open addressing of `ino << 32 | orphan << 31 | count` words with
//! backward-shift deletion (no tombstones). The orphan bit marks an inode
//! unlinked while held: whichever process drops the last hold frees it.

use myst_platform::shm::SharedRegion;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

/// Inodes open at once in the shared table.
const SHARED_CAP: usize = 1 << 16;
/// The orphan bit of a shared entry.
const ORPHAN: u32 = 1 << 31;
/// The count bits of a shared entry.
const COUNT: u32 = ORPHAN - 1;

/// Hold counts.
pub enum Holds {
    /// This process's own.
    Private(HashMap<u32, u32>),
    /// One table for every process sharing the device.
    Shared(SharedRegion),
}

impl Holds {
    /// Counts shared with forked processes when `shared` (and shared
    /// memory is available), else private.
    pub fn new(shared: bool) -> Holds {
        if shared {
            if let Ok(r) = SharedRegion::new("myst-ext2-holds", (SHARED_CAP * 8) as u64) {
                return Holds::Shared(r);
            }
        }
        Holds::Private(HashMap::new())
    }

    /// True for the shared table.
    pub fn is_shared(&self) -> bool {
        matches!(self, Holds::Shared(_))
    }

    fn slot(r: &SharedRegion, ino: u32) -> Option<(usize, u32)> {
        let mut i = (ino as usize).wrapping_mul(0x9e37_79b9) % SHARED_CAP;
        for _ in 0..SHARED_CAP {
            let w = r.atomic_u64(i * 8)?.load(Relaxed);
            if w == 0 || (w >> 32) as u32 == ino {
                return Some((i, w as u32));
            }
            i = (i + 1) % SHARED_CAP;
        }
        None
    }

    /// How many holds `ino` has.
    pub fn count(&self, ino: u32) -> u32 {
        match self {
            Holds::Private(m) => m.get(&ino).copied().unwrap_or(0),
            Holds::Shared(r) => Holds::slot(r, ino).map_or(0, |(_, n)| n & COUNT),
        }
    }

    /// Marks a held inode as unlinked (shared table only; a private table
    /// leaves that to the caller's own orphan set).
    pub fn mark_orphan(&mut self, ino: u32) {
        if let Holds::Shared(r) = self {
            if let Some((i, n)) = Holds::slot(r, ino) {
                if n & COUNT > 0 {
                    if let Some(a) = r.atomic_u64(i * 8) {
                        a.store(u64::from(ino) << 32 | u64::from(n | ORPHAN), Relaxed);
                    }
                }
            }
        }
    }

    /// One more hold; false when the shared table is full.
    pub fn add(&mut self, ino: u32) -> bool {
        match self {
            Holds::Private(m) => {
                *m.entry(ino).or_insert(0) += 1;
                true
            }
            Holds::Shared(r) => match Holds::slot(r, ino) {
                Some((i, n)) if n & COUNT < COUNT => match r.atomic_u64(i * 8) {
                    Some(a) => {
                        a.store(u64::from(ino) << 32 | u64::from(n + 1), Relaxed);
                        true
                    }
                    None => false,
                },
                _ => false,
            },
        }
    }

    /// One hold less: the holds left and whether the inode was marked an
    /// orphan, or None when `ino` had none.
    pub fn sub(&mut self, ino: u32) -> Option<(u32, bool)> {
        match self {
            Holds::Private(m) => {
                let n = m.get_mut(&ino)?;
                *n -= 1;
                let left = *n;
                if left == 0 {
                    m.remove(&ino);
                }
                Some((left, false))
            }
            Holds::Shared(r) => {
                let (i, n) = Holds::slot(r, ino)?;
                let (count, orphan) = (n & COUNT, n & ORPHAN != 0);
                if count == 0 {
                    return None;
                }
                let a = r.atomic_u64(i * 8)?;
                if count > 1 {
                    a.store(u64::from(ino) << 32 | u64::from(n - 1), Relaxed);
                    return Some((count - 1, orphan));
                }
                // Backward-shift deletion keeps every probe chain unbroken.
                let mut hole = i;
                let mut j = (i + 1) % SHARED_CAP;
                loop {
                    let w = r.atomic_u64(j * 8)?.load(Relaxed);
                    if w == 0 {
                        break;
                    }
                    let home = ((w >> 32) as usize).wrapping_mul(0x9e37_79b9) % SHARED_CAP;
                    // Move `j` into the hole unless its home lies in (hole, j].
                    let stays = if hole <= j {
                        hole < home && home <= j
                    } else {
                        hole < home || home <= j
                    };
                    if !stays {
                        r.atomic_u64(hole * 8)?.store(w, Relaxed);
                        hole = j;
                    }
                    j = (j + 1) % SHARED_CAP;
                }
                r.atomic_u64(hole * 8)?.store(0, Relaxed);
                Some((0, orphan))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counts_with_collisions_and_deletion() {
        let mut h = Holds::new(true);
        assert!(h.is_shared());
        // Many inodes, some colliding, added and removed in mixed order.
        let inos: Vec<u32> = (1..2000).map(|i| i * 7919 % 100_003).collect();
        for &i in &inos {
            assert!(h.add(i));
            assert!(h.add(i));
        }
        for &i in inos.iter().step_by(2) {
            assert_eq!(h.sub(i), Some((1, false)));
            h.mark_orphan(i);
            assert_eq!(h.sub(i), Some((0, true)));
            assert_eq!(h.sub(i), None);
        }
        for (k, &i) in inos.iter().enumerate() {
            assert_eq!(h.count(i), if k % 2 == 0 { 0 } else { 2 }, "ino {i}");
        }
        let mut p = Holds::new(false);
        assert!(!p.is_shared());
        assert!(p.add(5));
        assert_eq!(p.count(5), 1);
        assert_eq!(p.sub(5), Some((0, false)));
        assert_eq!(p.sub(5), None);
    }

    #[test]
    fn shared_counts_cross_fork() {
        let mut h = Holds::new(true);
        h.add(42);
        match myst_platform::host::fork().unwrap() {
            0 => {
                let ok = h.count(42) == 1 && h.add(42);
                myst_platform::host::exit_group(if ok { 0 } else { 1 })
            }
            pid => {
                let (_, st) = myst_platform::host::wait4(pid as i32, 0).unwrap();
                assert_eq!(st, 0);
                assert_eq!(h.count(42), 2, "the child's hold is seen");
            }
        }
    }
}
