//! Open file descriptions shared by every guest process (DESIGN.md "Open
//! file descriptions and locks").
//!
//! One guest process is one host process, so what Linux keeps in one
//! `struct file` (offset, status flags, the locks it owns) must live in
//! memory all of them see: a [`SharedRegion`] made before the first guest
//! process starts and inherited by every fork. It holds
//!
//! - a process table: one entry per guest process (its host pid, and the
//!   process it waits for in F_SETLKW, for deadlock detection);
//! - the descriptions of file-system-backed files: a generation, a count of
//!   the processes holding it, status flags, offset with its own lock word
//!   (Linux's f_pos_lock), and the file it opens (mount id + inode);
//! - one bitmap per process of the descriptions it holds, so the
//!   references of a process that died without closing can be dropped by
//!   whoever notices (its parent's wait4, or a lock waiter's sweep);
//! - the lock table (see [`crate::locks`]).
//!
//! Everything but the offset, the flags and the offset lock word is
//! changed under one cross-process table lock (a futex word holding the
//! owner's pid, taken over from a dead owner). Within a process, the
//! [`crate::file::OpenFile`] objects in its descriptor table are plain
//! `Arc`s; the process holds one reference on the shared description for
//! as long as it has any descriptor of it.
//!
//! Host-backed descriptors (pipes, sockets, ttys) are host objects the
//! host already shares; they have no entry here.

use myst_fs::Errno;
use myst_platform::shm::{host_pid, process_running, SharedRegion};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Guest processes alive at once.
pub(crate) const NPROC: u32 = 4096;
/// Open file descriptions at once (ENFILE beyond).
pub(crate) const NDESC: u32 = 32768;
/// Lock records at once (ENOLCK beyond).
pub(crate) const NLOCK: u32 = 16384;

// Header words.
const H_LOCK: usize = 0;
/// Bumped (and waited on) whenever a lock goes away.
pub(crate) const H_SEQ: usize = 4;
const H_DESC_FREE: usize = 8;
const H_DESC_HW: usize = 12;
const H_PROC_FREE: usize = 16;
const H_PROC_HW: usize = 20;
pub(crate) const H_LOCK_HW: usize = 24;
pub(crate) const H_LOCK_USED: usize = 28;
/// Lock waiters that may be asleep on [`H_SEQ`].
pub(crate) const H_WAITERS: usize = 32;
const HEADER: usize = 4096;

// Process entries: pid, state, blocked_on (pix + 1), next free (pix + 1),
// generation (bumped at each allocation: a fork's parent and child tell
// their entry from a later reuse of it).
const PROC_OFF: usize = HEADER;
const PROC_SIZE: usize = 20;
const P_PID: usize = 0;
const P_STATE: usize = 4;
const P_BLOCKED: usize = 8;
const P_NEXT: usize = 12;
const P_GEN: usize = 16;
const STATE_FREE: u32 = 0;
const STATE_STARTING: u32 = 1;
const STATE_LIVE: u32 = 2;

// Descriptions.
const DESC_OFF: usize = PROC_OFF + NPROC as usize * PROC_SIZE;
const DESC_SIZE: usize = 64;
const D_GEN: usize = 0; // odd while in use
const D_REFS: usize = 4;
const D_FLAGS: usize = 8;
const D_POSLOCK: usize = 12;
const D_MNT: usize = 16;
const D_GLOBAL: usize = 20;
const D_INO: usize = 24;
const D_POS: usize = 32;
const D_NEXT: usize = 40;

// Per-process bitmaps of held descriptions.
const BITMAP_OFF: usize = DESC_OFF + NDESC as usize * DESC_SIZE;
const BITMAP_SIZE: usize = NDESC as usize / 8;

/// Where the lock records start.
pub(crate) const LOCK_OFF: usize = BITMAP_OFF + NPROC as usize * BITMAP_SIZE;
/// Size of one lock record.
pub(crate) const LOCK_SIZE: usize = 48;
const TOTAL: usize = LOCK_OFF + NLOCK as usize * LOCK_SIZE;

struct Shared {
    region: SharedRegion,
    /// Serialises this process's threads before the cross-process word.
    local: Mutex<()>,
}

static SHARED: OnceLock<Option<Shared>> = OnceLock::new();
/// This process's entry in the process table, plus one (0: none).
static MY_PIX: AtomicU32 = AtomicU32::new(0);
/// This process's host pid (set when it registers, and in fork children).
static MY_PID: AtomicU32 = AtomicU32::new(0);
/// This process may own POSIX record locks (close then looks for them).
pub(crate) static POSIX_LOCKS: AtomicBool = AtomicBool::new(false);

fn shared() -> Option<&'static Shared> {
    SHARED.get().and_then(|s| s.as_ref())
}

/// Makes the shared region. Call once, before the first guest process is
/// forked; without it (memfd unavailable) descriptions stay per process.
pub fn init() {
    SHARED.get_or_init(|| match SharedRegion::new("myst-ofd", TOTAL as u64) {
        Ok(region) if region.len() >= TOTAL => Some(Shared {
            region,
            local: Mutex::new(()),
        }),
        Ok(_) => None,
        Err(e) => {
            let msg = format!(
                "myst: warning: {e}; open file descriptions and locks are not shared across fork\n"
            );
            myst_platform::host::write_stderr(msg.as_bytes());
            None
        }
    });
}

/// Registers the calling process (the first guest process) in the table.
pub fn register_self() {
    MY_PID.store(host_pid(), Relaxed);
    if let Some(t) = table() {
        if let Ok(pix) = t.alloc_proc() {
            t.set32(proc_at(pix) + P_PID, host_pid());
            t.set32(proc_at(pix) + P_STATE, STATE_LIVE);
            MY_PIX.store(pix + 1, Relaxed);
        }
    }
}

/// This process's table index.
pub(crate) fn my_pix() -> Option<u32> {
    MY_PIX.load(Relaxed).checked_sub(1)
}

/// This process's pid, without a host call once known.
pub(crate) fn me() -> u32 {
    match MY_PID.load(Relaxed) {
        0 => host_pid(),
        pid => pid,
    }
}

fn proc_at(pix: u32) -> usize {
    PROC_OFF + pix as usize * PROC_SIZE
}

fn desc_at(slot: u32) -> usize {
    DESC_OFF + slot as usize * DESC_SIZE
}

fn bitmap_word(pix: u32, slot: u32) -> (usize, u64) {
    (
        BITMAP_OFF + pix as usize * BITMAP_SIZE + (slot as usize / 64) * 8,
        1u64 << (slot % 64),
    )
}

/// The table, locked against every other process and thread.
pub(crate) struct Table {
    s: &'static Shared,
    local: Option<MutexGuard<'static, ()>>,
    word: bool,
}

/// Locks the table (None when descriptions are not shared).
pub(crate) fn table() -> Option<Table> {
    let s = shared()?;
    let g = s.local.lock().unwrap_or_else(|p| p.into_inner());
    s.region.lock_word_as(H_LOCK, me());
    Some(Table {
        s,
        local: Some(g),
        word: true,
    })
}

impl Drop for Table {
    fn drop(&mut self) {
        if self.word {
            self.s.region.unlock_word(H_LOCK);
        }
    }
}

impl Table {
    /// Lets other processes in but keeps this process's other threads out
    /// (across a fork: no thread can be inside a table operation when the
    /// child's copy of the in-process mutex is made).
    fn keep_local(mut self) -> Option<MutexGuard<'static, ()>> {
        self.s.region.unlock_word(H_LOCK);
        self.word = false;
        self.local.take()
    }

    pub(crate) fn get32(&self, off: usize) -> u32 {
        self.s.region.atomic_u32(off).map_or(0, |a| a.load(Relaxed))
    }
    pub(crate) fn set32(&self, off: usize, v: u32) {
        if let Some(a) = self.s.region.atomic_u32(off) {
            a.store(v, Relaxed);
        }
    }
    pub(crate) fn get64(&self, off: usize) -> u64 {
        self.s.region.atomic_u64(off).map_or(0, |a| a.load(Relaxed))
    }
    pub(crate) fn set64(&self, off: usize, v: u64) {
        if let Some(a) = self.s.region.atomic_u64(off) {
            a.store(v, Relaxed);
        }
    }

    /// Wakes every lock waiter (something was unlocked). Waiters count
    /// themselves in [`H_WAITERS`] under the table lock before they sleep,
    /// so without any there is no host call.
    pub(crate) fn bump(&self) {
        if let Some(a) = self.s.region.atomic_u32(H_SEQ) {
            a.fetch_add(1, Ordering::SeqCst);
        }
        if self.get32(H_WAITERS) > 0 {
            self.s.region.futex_wake(H_SEQ, i32::MAX as u32);
        }
    }

    /// A process's pid (0 while starting or free).
    pub(crate) fn proc_pid(&self, pix: u32) -> u32 {
        self.get32(proc_at(pix) + P_PID)
    }

    /// The process `pix` waits for in F_SETLKW (pix), if any.
    pub(crate) fn blocked_on(&self, pix: u32) -> Option<u32> {
        if pix >= NPROC {
            return None;
        }
        self.get32(proc_at(pix) + P_BLOCKED).checked_sub(1)
    }

    /// Records what `pix` waits for.
    pub(crate) fn set_blocked_on(&self, pix: u32, on: Option<u32>) {
        self.set32(proc_at(pix) + P_BLOCKED, on.map_or(0, |p| p + 1));
    }

    fn alloc_proc(&self) -> Result<u32, Errno> {
        let head = self.get32(H_PROC_FREE);
        let pix = if let Some(pix) = head.checked_sub(1) {
            self.set32(H_PROC_FREE, self.get32(proc_at(pix) + P_NEXT));
            pix
        } else {
            let hw = self.get32(H_PROC_HW);
            if hw >= NPROC {
                return Err(Errno::EAGAIN.with("too many guest processes"));
            }
            self.set32(H_PROC_HW, hw + 1);
            hw
        };
        let p = proc_at(pix);
        self.set32(p + P_PID, 0);
        self.set32(p + P_STATE, STATE_STARTING);
        self.set32(p + P_BLOCKED, 0);
        self.set32(p + P_NEXT, 0);
        self.set32(p + P_GEN, self.get32(p + P_GEN).wrapping_add(1));
        Ok(pix)
    }

    fn free_proc(&self, pix: u32) {
        let p = proc_at(pix);
        if self.get32(p + P_STATE) == STATE_FREE {
            return; // never twice on the free list
        }
        self.set32(p + P_PID, 0);
        self.set32(p + P_STATE, STATE_FREE);
        self.set32(p + P_BLOCKED, 0);
        self.set32(p + P_NEXT, self.get32(H_PROC_FREE));
        self.set32(H_PROC_FREE, pix + 1);
    }

    fn hold(&self, pix: u32, slot: u32) -> bool {
        let (off, bit) = bitmap_word(pix, slot);
        let w = self.get64(off);
        self.set64(off, w | bit);
        w & bit == 0
    }

    fn unhold(&self, pix: u32, slot: u32) -> bool {
        let (off, bit) = bitmap_word(pix, slot);
        let w = self.get64(off);
        self.set64(off, w & !bit);
        w & bit != 0
    }

    /// Drops one process reference of `slot`; frees the description at
    /// zero and returns what its file needs released.
    fn unref(&self, slot: u32) -> Option<Freed> {
        let d = desc_at(slot);
        let refs = self.get32(d + D_REFS).saturating_sub(1);
        self.set32(d + D_REFS, refs);
        if refs > 0 {
            return None;
        }
        let gen = self.get32(d + D_GEN);
        let freed = Freed {
            mnt: self.get32(d + D_MNT),
            ino: self.get64(d + D_INO),
            global_hold: self.get32(d + D_GLOBAL) != 0,
        };
        if crate::locks::drop_owner(self, desc_owner(slot, gen)) {
            self.bump();
        }
        self.set32(d + D_GEN, gen.wrapping_add(1));
        self.set32(d + D_NEXT, self.get32(H_DESC_FREE));
        self.set32(H_DESC_FREE, slot + 1);
        Some(freed)
    }

    /// Drops everything process `pix` holds and frees its entry.
    fn reap(&self, pix: u32, freed: &mut Vec<Freed>) {
        if crate::locks::drop_owner(self, crate::locks::posix_owner(pix)) {
            self.bump();
        }
        let base = BITMAP_OFF + pix as usize * BITMAP_SIZE;
        for w in 0..BITMAP_SIZE / 8 {
            let bits = self.get64(base + w * 8);
            if bits == 0 {
                continue;
            }
            self.set64(base + w * 8, 0);
            for b in 0..64 {
                if bits & (1 << b) != 0 {
                    freed.extend(self.unref((w * 64 + b) as u32));
                }
            }
        }
        // Processes blocked on this one no longer are.
        for other in 0..self.get32(H_PROC_HW).min(NPROC) {
            if self.blocked_on(other) == Some(pix) {
                self.set_blocked_on(other, None);
            }
        }
        self.free_proc(pix);
    }
}

/// The owner key of the locks a description owns (OFD locks and flock).
pub(crate) fn desc_owner(slot: u32, gen: u32) -> u64 {
    u64::from(gen) << 32 | u64::from(slot)
}

/// A file whose last description went away.
struct Freed {
    mnt: u32,
    ino: u64,
    global_hold: bool,
}

/// Ends the file-system holds of freed descriptions (the table lock is
/// no longer held: the file system takes its own locks).
fn release_all(freed: Vec<Freed>) {
    if freed.iter().all(|f| !f.global_hold) {
        return;
    }
    let Some(k) = crate::KERNEL.get() else {
        return;
    };
    let mounts = k.vfs.mounts();
    for f in freed.into_iter().filter(|f| f.global_hold) {
        if let Some(m) = mounts.iter().find(|m| m.id == f.mnt) {
            m.fs.release(f.ino);
        }
    }
}

/// A process's handle on a shared open file description.
#[derive(Debug)]
pub struct Desc {
    slot: u32,
    gen: u32,
}

/// What identifies the file a description opens, for the lock table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    /// Mount id.
    pub mnt: u32,
    /// Inode.
    pub ino: u64,
}

impl Desc {
    /// A new description held by this process (None when descriptions are
    /// not shared; ENFILE when the table is full). `global_hold`: the
    /// file system's hold on the inode is one for all processes and is
    /// released when the description is freed, in whichever process.
    pub fn new(flags: u32, key: FileKey, global_hold: bool) -> Result<Option<Desc>, Errno> {
        let (Some(mut t), Some(pix)) = (table(), my_pix()) else {
            return Ok(None);
        };
        let mut swept = false;
        let slot = loop {
            if let Some(slot) = t.get32(H_DESC_FREE).checked_sub(1) {
                t.set32(H_DESC_FREE, t.get32(desc_at(slot) + D_NEXT));
                break slot;
            }
            let hw = t.get32(H_DESC_HW);
            if hw < NDESC {
                t.set32(H_DESC_HW, hw + 1);
                break hw;
            }
            if swept {
                return Err(Errno::ENFILE);
            }
            // Full: perhaps of what dead processes left behind.
            drop(t);
            sweep();
            swept = true;
            t = table().ok_or(Errno::ENFILE)?;
        };
        let d = desc_at(slot);
        let gen = t.get32(d + D_GEN) | 1;
        t.set32(d + D_GEN, gen);
        t.set32(d + D_REFS, 1);
        t.set32(d + D_FLAGS, flags);
        t.set32(d + D_POSLOCK, 0);
        t.set32(d + D_MNT, key.mnt);
        t.set32(d + D_GLOBAL, u32::from(global_hold));
        t.set64(d + D_INO, key.ino);
        t.set64(d + D_POS, 0);
        t.hold(pix, slot);
        Ok(Some(Desc { slot, gen }))
    }

    fn region(&self) -> Option<&'static SharedRegion> {
        shared().map(|s| &s.region)
    }

    fn u32_word(&self, field: usize) -> Option<&'static AtomicU32> {
        self.region()?.atomic_u32(desc_at(self.slot) + field)
    }

    fn u64_word(&self, field: usize) -> Option<&'static AtomicU64> {
        self.region()?.atomic_u64(desc_at(self.slot) + field)
    }

    /// Status flags and access mode.
    pub fn flags(&self) -> u32 {
        self.u32_word(D_FLAGS)
            .map_or(0, |a| a.load(Ordering::SeqCst))
    }

    /// Replaces the status flags.
    pub fn set_flags(&self, v: u32) {
        if let Some(a) = self.u32_word(D_FLAGS) {
            a.store(v, Ordering::SeqCst);
        }
    }

    /// Takes the offset lock (callers hold the in-process one first).
    pub fn lock_pos(&self) {
        if let Some(r) = self.region() {
            r.lock_word_as(desc_at(self.slot) + D_POSLOCK, me());
        }
    }

    /// Releases the offset lock.
    pub fn unlock_pos(&self) {
        if let Some(r) = self.region() {
            r.unlock_word(desc_at(self.slot) + D_POSLOCK);
        }
    }

    /// The offset.
    pub fn pos(&self) -> u64 {
        self.u64_word(D_POS).map_or(0, |a| a.load(Ordering::SeqCst))
    }

    /// Sets the offset.
    pub fn set_pos(&self, v: u64) {
        if let Some(a) = self.u64_word(D_POS) {
            a.store(v, Ordering::SeqCst);
        }
    }

    /// Processes holding the description.
    #[cfg(test)]
    pub(crate) fn refs(&self) -> u32 {
        self.u32_word(D_REFS)
            .map_or(0, |a| a.load(Ordering::SeqCst))
    }

    /// The owner key of the OFD and flock locks of this description.
    pub fn owner(&self) -> u64 {
        desc_owner(self.slot, self.gen)
    }

    /// Drops this process's reference (the last descriptor of it in this
    /// process closed). Returns true when that freed the description
    /// (its OFD locks and flocks are gone then).
    pub fn put(&self) -> bool {
        let (Some(t), Some(pix)) = (table(), my_pix()) else {
            return false;
        };
        // A stale handle (the reference was reaped) or one never held by
        // this process changes nothing.
        if t.get32(desc_at(self.slot) + D_GEN) != self.gen || !t.unhold(pix, self.slot) {
            return false;
        }
        let freed = t.unref(self.slot);
        drop(t);
        freed.is_some()
    }
}

/// What a fork in progress reserved for the child, and this process's
/// table mutex, held until the fork is done.
pub struct ForkTicket {
    /// The child's entry and its generation.
    child: Option<(u32, u32)>,
    local: Option<MutexGuard<'static, ()>>,
}

/// Before fork: reserves the child's process entry and gives it a
/// reference on each description in `descs` (the open files of the
/// forking process, which must not change until the fork is done).
pub fn fork_prepare<'a>(descs: impl Iterator<Item = &'a Desc>) -> Result<ForkTicket, Errno> {
    let Some(mut t) = table() else {
        return Ok(ForkTicket {
            child: None,
            local: None,
        });
    };
    let child = match t.alloc_proc() {
        Ok(c) => c,
        Err(_) => {
            // Full: perhaps of processes that died unwaited for.
            drop(t);
            sweep();
            t = table().ok_or(Errno::EAGAIN)?;
            t.alloc_proc()?
        }
    };
    for d in descs {
        if t.get32(desc_at(d.slot) + D_GEN) == d.gen && t.hold(child, d.slot) {
            let r = desc_at(d.slot) + D_REFS;
            t.set32(r, t.get32(r) + 1);
        }
    }
    let gen = t.get32(proc_at(child) + P_GEN);
    Ok(ForkTicket {
        child: Some((child, gen)),
        local: t.keep_local(),
    })
}

/// In the parent after a successful fork.
pub fn fork_parent(mut ticket: ForkTicket, pid: u32) {
    drop(ticket.local.take());
    // Only while the child has not claimed the entry itself: it may have
    // run, exited and given the entry back (even to another process) by now.
    if let (Some(t), Some((c, gen))) = (table(), ticket.child) {
        let p = proc_at(c);
        if t.get32(p + P_STATE) == STATE_STARTING && t.get32(p + P_GEN) == gen {
            t.set32(p + P_PID, pid);
            t.set32(p + P_STATE, STATE_LIVE);
        }
    }
}

/// In the child after fork: this process is the ticket's entry. POSIX
/// locks are not inherited (they belong to the parent's entry).
pub fn fork_child(mut ticket: ForkTicket) {
    drop(ticket.local.take());
    POSIX_LOCKS.store(false, Relaxed);
    MY_PID.store(host_pid(), Relaxed);
    if let (Some(t), Some((c, _))) = (table(), ticket.child) {
        t.set32(proc_at(c) + P_PID, host_pid());
        t.set32(proc_at(c) + P_STATE, STATE_LIVE);
        MY_PIX.store(c + 1, Relaxed);
    } else {
        MY_PIX.store(0, Relaxed);
    }
}

/// After a failed fork: gives back what the child would have held.
pub fn fork_abort(mut ticket: ForkTicket) {
    drop(ticket.local.take());
    if let (Some(t), Some((c, _))) = (table(), ticket.child) {
        let mut freed = Vec::new();
        t.reap(c, &mut freed);
        drop(t);
        release_all(freed);
    }
}

/// A child process `pid` ended (its parent's wait4 collected it): drops
/// its locks and its references.
pub fn reap_pid(pid: u32) {
    let Some(t) = table() else {
        return;
    };
    let mut freed = Vec::new();
    for pix in 0..t.get32(H_PROC_HW).min(NPROC) {
        if t.get32(proc_at(pix) + P_STATE) == STATE_LIVE && t.proc_pid(pix) == pid {
            t.reap(pix, &mut freed);
        }
    }
    drop(t);
    release_all(freed);
}

/// This process is exiting: its locks and references go now.
pub fn exit_self() {
    let Some(pix) = my_pix() else {
        return;
    };
    let Some(t) = table() else {
        return;
    };
    MY_PIX.store(0, Relaxed);
    let mut freed = Vec::new();
    t.reap(pix, &mut freed);
    drop(t);
    release_all(freed);
}

/// Drops what processes that ended without closing held (killed by a
/// signal, not yet waited for, or orphaned): a lock waiter calls this
/// when it times out. Entries still starting (pid not yet known) are
/// left alone.
pub(crate) fn sweep() {
    let entries: Vec<(u32, u32, u32)> = {
        let Some(t) = table() else {
            return;
        };
        (0..t.get32(H_PROC_HW).min(NPROC))
            .filter(|&p| t.get32(proc_at(p) + P_STATE) == STATE_LIVE)
            .map(|p| (p, t.proc_pid(p), t.get32(proc_at(p) + P_GEN)))
            .collect()
    };
    // Liveness is checked without the table lock (three host calls each).
    let dead: Vec<(u32, u32, u32)> = entries
        .into_iter()
        .filter(|&(_, pid, _)| pid != 0 && !process_running(pid))
        .collect();
    if dead.is_empty() {
        return;
    }
    let Some(t) = table() else {
        return;
    };
    let mut freed = Vec::new();
    for (pix, pid, gen) in dead {
        let p = proc_at(pix);
        if t.get32(p + P_STATE) == STATE_LIVE && t.proc_pid(pix) == pid && t.get32(p + P_GEN) == gen
        {
            t.reap(pix, &mut freed);
        }
    }
    drop(t);
    release_all(freed);
}

/// Waits until the lock-change sequence moves past `seq` or `ms` pass.
pub(crate) fn wait_seq(seq: u32, ms: u64) {
    if let Some(s) = shared() {
        s.region.futex_wait(H_SEQ, seq, ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_fits() {
        assert!(LOCK_OFF + NLOCK as usize * LOCK_SIZE == TOTAL);
        assert!(DESC_OFF >= PROC_OFF + NPROC as usize * PROC_SIZE);
        assert_eq!(BITMAP_SIZE * 8, NDESC as usize);
        assert_eq!(LOCK_OFF % 8, 0);
        assert_eq!(DESC_OFF % 8, 0);
        assert_eq!(PROC_OFF % 4, 0);
    }
}
