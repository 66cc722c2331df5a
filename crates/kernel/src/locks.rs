//! File locks shared by every guest process: POSIX record locks (owned by
//! a process), open-file-description locks (F_OFD_*, owned by a
//! description) and flock(2) locks (owned by a description, whole file),
//! with Linux's rules: POSIX and OFD locks conflict with each other and
//! not with flock; a process's POSIX locks go when it closes any
//! descriptor of the file or exits; OFD locks and flocks go when their
//! description's last descriptor closes.
//!
//! The records live in the shared region of [`crate::ofd`] and change
//! under its table lock, keyed by file identity (mount id + inode). A
//! blocked F_SETLKW or flock holds no lock while it waits: it sleeps on
//! the table's lock-change futex word (bumped whenever a lock goes away),
//! lets default-action signals through, returns EINTR for a signal the
//! guest handles, and, when it times out, sweeps the locks of processes
//! that died without releasing them.

use crate::ofd::{self, table, Table, H_LOCK_HW, H_LOCK_USED, LOCK_OFF, LOCK_SIZE, NLOCK};
use myst_fs::Errno;
use std::sync::atomic::Ordering::Relaxed;

/// ENOLCK: the lock table is full, or locks are not shared.
pub const ENOLCK: Errno = Errno::ENOLCK.with("no lock records left");

/// Linux's OFFSET_MAX: "to the end of the file".
pub const OFFSET_MAX: u64 = i64::MAX as u64;

/// Which kind of lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// fcntl F_SETLK/F_SETLKW: owned by the process.
    Posix,
    /// fcntl F_OFD_SETLK/F_OFD_SETLKW: owned by the open file description.
    Ofd,
    /// flock(2): owned by the open file description, whole file.
    Flock,
}

impl Class {
    fn code(self) -> u32 {
        match self {
            Class::Posix => 0,
            Class::Ofd => 1,
            Class::Flock => 2,
        }
    }
    fn from_code(c: u32) -> Class {
        match c {
            0 => Class::Posix,
            1 => Class::Ofd,
            _ => Class::Flock,
        }
    }
    /// POSIX and OFD locks share one lock space; flock has its own.
    fn space(self) -> u32 {
        u32::from(self == Class::Flock)
    }
}

/// A byte range, both ends included (end OFFSET_MAX: to end of file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

/// A lock that stands in the way (F_GETLK's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// A write (exclusive) lock.
    pub write: bool,
    /// Its range.
    pub range: Range,
    /// The owning process for POSIX locks; -1 for OFD locks.
    pub pid: i32,
}

/// How a blocking wait may be interrupted.
#[derive(Debug, Clone, Copy)]
pub struct Interrupt {
    /// The guest's signal mask during the call.
    pub guest_mask: u64,
    /// Signals whose guest disposition is default or ignore.
    pub no_handler: u64,
}

/// The owner key of this process's POSIX locks.
pub fn posix_owner(pix: u32) -> u64 {
    1 << 63 | u64::from(pix)
}

const F_USED: u32 = 1;
const F_WRITE: u32 = 8;
const SIGSYS_BIT: u64 = 1 << 30;
/// How long a waiter sleeps before looking for dead lock holders.
const WAIT_MS: u64 = 50;

#[derive(Debug, Clone, Copy)]
struct Rec {
    idx: u32,
    class: Class,
    write: bool,
    key: ofd::FileKey,
    owner: u64,
    range: Range,
    pid: i32,
}

fn rec_off(i: u32) -> usize {
    LOCK_OFF + i as usize * LOCK_SIZE
}

fn read_rec(t: &Table, i: u32) -> Option<Rec> {
    let o = rec_off(i);
    let st = t.get32(o);
    if st & F_USED == 0 {
        return None;
    }
    Some(Rec {
        idx: i,
        class: Class::from_code((st >> 1) & 3),
        write: st & F_WRITE != 0,
        key: ofd::FileKey {
            mnt: t.get32(o + 4),
            ino: t.get64(o + 8),
        },
        owner: t.get64(o + 16),
        range: Range {
            start: t.get64(o + 24),
            end: t.get64(o + 32),
        },
        pid: t.get32(o + 40) as i32,
    })
}

fn write_rec(t: &Table, r: &Rec) {
    let o = rec_off(r.idx);
    t.set32(o + 4, r.key.mnt);
    t.set64(o + 8, r.key.ino);
    t.set64(o + 16, r.owner);
    t.set64(o + 24, r.range.start);
    t.set64(o + 32, r.range.end);
    t.set32(o + 40, r.pid as u32);
    let st = F_USED | r.class.code() << 1 | if r.write { F_WRITE } else { 0 };
    t.set32(o, st);
}

fn records(t: &Table) -> impl Iterator<Item = Rec> + '_ {
    (0..t.get32(H_LOCK_HW).min(NLOCK)).filter_map(move |i| read_rec(t, i))
}

fn free_rec(t: &Table, i: u32) {
    t.set32(rec_off(i), 0);
    t.set32(H_LOCK_USED, t.get32(H_LOCK_USED).saturating_sub(1));
    let mut hw = t.get32(H_LOCK_HW).min(NLOCK);
    while hw > 0 && t.get32(rec_off(hw - 1)) & F_USED == 0 {
        hw -= 1;
    }
    t.set32(H_LOCK_HW, hw);
}

/// Stores `r` in a free record (its `idx` is chosen here).
fn add_rec(t: &Table, mut r: Rec) -> Result<(), Errno> {
    let hw = t.get32(H_LOCK_HW).min(NLOCK);
    let idx = match (0..hw).find(|&i| t.get32(rec_off(i)) & F_USED == 0) {
        Some(i) => i,
        None if hw < NLOCK => {
            t.set32(H_LOCK_HW, hw + 1);
            hw
        }
        None => return Err(ENOLCK),
    };
    r.idx = idx;
    write_rec(t, &r);
    t.set32(H_LOCK_USED, t.get32(H_LOCK_USED) + 1);
    Ok(())
}

fn overlaps(a: Range, b: Range) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// The first lock of another owner that conflicts with the request.
fn conflict(
    t: &Table,
    key: ofd::FileKey,
    class: Class,
    owner: u64,
    write: bool,
    range: Range,
) -> Option<Rec> {
    records(t).find(|r| {
        r.key == key
            && r.class.space() == class.space()
            && r.owner != owner
            && (r.write || write)
            && overlaps(r.range, range)
    })
}

/// Frees every lock of `owner`; true when there was one.
pub(crate) fn drop_owner(t: &Table, owner: u64) -> bool {
    let mine: Vec<u32> = records(t)
        .filter(|r| r.owner == owner)
        .map(|r| r.idx)
        .collect();
    for &i in &mine {
        free_rec(t, i);
    }
    !mine.is_empty()
}

/// Sets (`new` Some(write)) or removes (`new` None) `owner`'s lock over
/// `range`, with Linux's splitting and merging of the owner's own locks.
/// There is no conflict with other owners (checked by the caller).
#[allow(clippy::too_many_arguments)]
fn apply(
    t: &Table,
    key: ofd::FileKey,
    class: Class,
    owner: u64,
    pid: i32,
    new: Option<bool>,
    range: Range,
) -> Result<(), Errno> {
    let own: Vec<Rec> = records(t)
        .filter(|r| r.key == key && r.owner == owner && r.class == class)
        .collect();
    let mut merged = range;
    let mut deletes = Vec::new();
    let mut updates = Vec::new();
    let mut adds = Vec::new();
    for r in own {
        if Some(r.write) == new {
            // Same type: overlapping or adjacent locks become one.
            if r.range.start <= merged.end.saturating_add(1)
                && merged.start <= r.range.end.saturating_add(1)
            {
                merged.start = merged.start.min(r.range.start);
                merged.end = merged.end.max(r.range.end);
                deletes.push(r.idx);
            }
            continue;
        }
        if !overlaps(r.range, range) {
            continue;
        }
        let left = r.range.start < range.start;
        let right = r.range.end > range.end;
        let piece = |start, end| Rec {
            range: Range { start, end },
            ..r
        };
        match (left, right) {
            (false, false) => deletes.push(r.idx),
            (true, false) => updates.push(piece(r.range.start, range.start - 1)),
            (false, true) => updates.push(piece(range.end + 1, r.range.end)),
            (true, true) => {
                updates.push(piece(r.range.start, range.start - 1));
                adds.push(piece(range.end + 1, r.range.end));
            }
        }
    }
    if let Some(write) = new {
        adds.push(Rec {
            idx: 0,
            class,
            write,
            key,
            owner,
            range: merged,
            pid,
        });
    }
    let used = t.get32(H_LOCK_USED) as usize;
    if used - deletes.len().min(used) + adds.len() > NLOCK as usize {
        return Err(ENOLCK);
    }
    for i in deletes {
        free_rec(t, i);
    }
    for r in &updates {
        write_rec(t, r);
    }
    for r in adds {
        add_rec(t, r)?;
    }
    Ok(())
}

/// One try of a lock request: done, or blocked by a lock whose owner is
/// the given process (None: an OFD lock or a flock).
enum Step {
    Done,
    Blocked(Option<u32>),
}

fn posix_pix(owner: u64) -> Option<u32> {
    (owner >> 63 == 1).then_some(owner as u32)
}

/// Whether `me` waiting for `by` closes a cycle of waiting processes
/// (Linux follows at most 10 links too).
fn deadlock(t: &Table, me: u32, by: u32) -> bool {
    let mut cur = by;
    for _ in 0..=10 {
        match t.blocked_on(cur) {
            None => return false,
            Some(n) if n == me => return true,
            Some(n) => cur = n,
        }
    }
    false
}

/// Runs `attempt` under the table lock until it is done; `int` None means
/// non-blocking (EAGAIN when blocked). `posix_me`: the caller's process,
/// for deadlock detection of POSIX lock waits.
fn until_done(
    int: Option<&Interrupt>,
    posix_me: Option<u32>,
    mut attempt: impl FnMut(&Table) -> Result<Step, Errno>,
) -> Result<(), Errno> {
    // Whether this call counts in H_WAITERS (from its first sleep on).
    let mut waiting = false;
    let unwait = |t: &Table, waiting: &mut bool| {
        if std::mem::take(waiting) {
            t.set32(ofd::H_WAITERS, t.get32(ofd::H_WAITERS).saturating_sub(1));
        }
    };
    loop {
        let seq = {
            let t = table().ok_or(ENOLCK)?;
            unwait(&t, &mut waiting);
            let step = attempt(&t);
            let clear = |t: &Table| {
                if let Some(me) = posix_me {
                    t.set_blocked_on(me, None);
                }
            };
            match step {
                Ok(Step::Done) => {
                    clear(&t);
                    return Ok(());
                }
                Err(e) => {
                    clear(&t);
                    return Err(e);
                }
                Ok(Step::Blocked(by)) => {
                    if int.is_none() {
                        clear(&t);
                        return Err(Errno::EAGAIN);
                    }
                    if let Some(me) = posix_me {
                        if let Some(by) = by {
                            if deadlock(&t, me, by) {
                                clear(&t);
                                return Err(Errno::EDEADLK);
                            }
                        }
                        t.set_blocked_on(me, by);
                    }
                    t.set32(ofd::H_WAITERS, t.get32(ofd::H_WAITERS) + 1);
                    waiting = true;
                    t.get32(ofd::H_SEQ)
                }
            }
        };
        let Some(int) = int else {
            return Err(Errno::EAGAIN);
        };
        myst_platform::sud::interruptible(int.no_handler & !int.guest_mask, || {
            ofd::wait_seq(seq, WAIT_MS)
        });
        let pending = (myst_platform::host::sigpending() | myst_platform::sud::deferred_signals())
            & !int.guest_mask
            & !SIGSYS_BIT;
        if pending & !int.no_handler != 0 {
            // The handler runs when this call returns (EINTR, like Linux
            // without SA_RESTART).
            if let Some(t) = table() {
                unwait(&t, &mut waiting);
                if let Some(me) = posix_me {
                    t.set_blocked_on(me, None);
                }
            }
            return Err(Errno::EINTR);
        }
        let moved = table().is_some_and(|t| t.get32(ofd::H_SEQ) != seq);
        if !moved {
            // Nothing was unlocked: perhaps the holder died without
            // releasing (killed, not yet waited for).
            ofd::sweep();
        }
    }
}

/// F_GETLK / F_OFD_GETLK: the first lock of another owner in the way of
/// the request.
pub fn test(
    key: ofd::FileKey,
    class: Class,
    owner: u64,
    write: bool,
    range: Range,
) -> Result<Option<Held>, Errno> {
    let t = table().ok_or(ENOLCK)?;
    Ok(conflict(&t, key, class, owner, write, range).map(|r| Held {
        write: r.write,
        range: r.range,
        pid: r.pid,
    }))
}

/// The owner key of this process's POSIX locks (ENOLCK when locks are not
/// shared).
pub fn my_posix_owner() -> Result<u64, Errno> {
    ofd::my_pix().map(posix_owner).ok_or(ENOLCK)
}

/// F_SETLK(W) / F_OFD_SETLK(W): sets (`new` Some(write)) or removes a
/// lock; `int` Some waits (F_SETLKW).
pub fn set(
    key: ofd::FileKey,
    class: Class,
    owner: u64,
    new: Option<bool>,
    range: Range,
    int: Option<&Interrupt>,
) -> Result<(), Errno> {
    let pid = if class == Class::Posix {
        ofd::me() as i32
    } else {
        -1
    };
    let posix_me = if class == Class::Posix {
        posix_pix(owner)
    } else {
        None
    };
    until_done(int, posix_me, |t| {
        if let Some(write) = new {
            if let Some(r) = conflict(t, key, class, owner, write, range) {
                return Ok(Step::Blocked(posix_pix(r.owner)));
            }
        }
        apply(t, key, class, owner, pid, new, range)?;
        if new.is_some() && class == Class::Posix {
            ofd::POSIX_LOCKS.store(true, Relaxed);
        }
        // Waiters look again (an unlock, or a write lock turned read).
        t.bump();
        Ok(Step::Done)
    })
}

/// flock(2): `new` Some(exclusive) locks, None unlocks; `int` None is
/// LOCK_NB. Changing the type of a held lock drops it first, as Linux
/// does (another process may get in between).
pub fn flock(
    key: ofd::FileKey,
    owner: u64,
    new: Option<bool>,
    int: Option<&Interrupt>,
) -> Result<(), Errno> {
    let whole = Range {
        start: 0,
        end: OFFSET_MAX,
    };
    until_done(int, None, |t| {
        let own = records(t).find(|r| r.key == key && r.owner == owner && r.class == Class::Flock);
        match (own, new) {
            (Some(r), Some(w)) if r.write == w => return Ok(Step::Done),
            (Some(r), _) => {
                free_rec(t, r.idx);
                t.bump();
            }
            (None, _) => {}
        }
        let Some(write) = new else {
            return Ok(Step::Done);
        };
        if conflict(t, key, Class::Flock, owner, write, whole).is_some() {
            return Ok(Step::Blocked(None));
        }
        add_rec(
            t,
            Rec {
                idx: 0,
                class: Class::Flock,
                write,
                key,
                owner,
                range: whole,
                pid: -1,
            },
        )?;
        Ok(Step::Done)
    })
}

/// A descriptor of `key` was closed by this process: its POSIX locks on
/// the file go (POSIX's rule, whatever descriptor set them).
pub fn close_file(key: ofd::FileKey) {
    if !ofd::POSIX_LOCKS.load(Relaxed) {
        return;
    }
    let (Some(pix), Some(t)) = (ofd::my_pix(), table()) else {
        return;
    };
    let owner = posix_owner(pix);
    let mine: Vec<u32> = records(&t)
        .filter(|r| r.key == key && r.owner == owner)
        .map(|r| r.idx)
        .collect();
    for &i in &mine {
        free_rec(&t, i);
    }
    if !mine.is_empty() {
        t.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myst_platform::shm::host_pid;

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    /// Splitting, merging and conflicts, flock's separate space, the close
    /// rule, and references of a real fork child: given back by its own
    /// close, or reaped after it exits without closing. One test: the
    /// table and this process's entry are process-wide.
    #[test]
    fn locks_and_references() {
        ofd::init();
        ofd::register_self();
        let key = ofd::FileKey { mnt: 99, ino: 5 };
        let me = my_posix_owner().unwrap();
        let other = posix_owner(ofd::NPROC - 1);
        let pid = host_pid() as i32;
        let held = |write, range| Some(Held { write, range, pid });
        set(key, Class::Posix, me, Some(true), r(0, 99), None).unwrap();
        assert_eq!(
            test(key, Class::Posix, other, false, r(50, 50)).unwrap(),
            held(true, r(0, 99))
        );
        assert_eq!(test(key, Class::Posix, me, true, r(0, 9)).unwrap(), None);
        set(key, Class::Posix, me, None, r(40, 59), None).unwrap();
        assert_eq!(
            test(key, Class::Posix, other, true, r(0, OFFSET_MAX)).unwrap(),
            held(true, r(0, 39))
        );
        assert_eq!(
            test(key, Class::Posix, other, true, r(40, 59)).unwrap(),
            None
        );
        assert_eq!(
            test(key, Class::Posix, other, true, r(59, 60)).unwrap(),
            held(true, r(60, 99))
        );
        // A read lock in the middle of a write lock splits it in three.
        set(key, Class::Posix, me, Some(false), r(10, 19), None).unwrap();
        assert_eq!(
            test(key, Class::Posix, other, false, r(10, 19)).unwrap(),
            None
        );
        assert_eq!(
            test(key, Class::Posix, other, false, r(15, 25)).unwrap(),
            held(true, r(20, 39))
        );
        // Same-type neighbours merge.
        set(key, Class::Posix, me, Some(true), r(0, 99), None).unwrap();
        set(key, Class::Posix, me, Some(true), r(100, 199), None).unwrap();
        assert_eq!(
            test(key, Class::Posix, other, false, r(150, 150)).unwrap(),
            held(true, r(0, 199))
        );
        assert_eq!(
            set(key, Class::Posix, other, Some(false), r(5, 5), None).unwrap_err(),
            Errno::EAGAIN
        );
        // OFD locks conflict with POSIX locks; flock is a space of its own.
        let d1 = u64::from(u32::MAX - 1);
        let d2 = u64::from(u32::MAX - 2);
        assert_eq!(
            set(key, Class::Ofd, d1, Some(false), r(0, 0), None).unwrap_err(),
            Errno::EAGAIN
        );
        flock(key, d1, Some(true), None).unwrap();
        flock(key, d1, Some(true), None).unwrap();
        assert_eq!(
            flock(key, d2, Some(false), None).unwrap_err(),
            Errno::EAGAIN
        );
        flock(key, d1, Some(false), None).unwrap();
        flock(key, d2, Some(false), None).unwrap();
        flock(key, d1, None, None).unwrap();
        flock(key, d2, None, None).unwrap();
        // Closing any descriptor of the file drops this process's POSIX locks.
        close_file(ofd::FileKey { mnt: 99, ino: 6 });
        assert!(test(key, Class::Posix, other, true, r(0, 0))
            .unwrap()
            .is_some());
        close_file(key);
        assert_eq!(
            test(key, Class::Posix, other, true, r(0, OFFSET_MAX)).unwrap(),
            None
        );

        let d = ofd::Desc::new(1, key, false).unwrap().unwrap();
        d.set_pos(7);
        for child_closes in [true, false] {
            let ticket = ofd::fork_prepare(std::iter::once(&d)).unwrap();
            assert_eq!(d.refs(), 2);
            match myst_platform::host::fork().unwrap() {
                0 => {
                    ofd::fork_child(ticket);
                    d.set_pos(d.pos() + 1);
                    if child_closes {
                        d.put();
                    }
                    myst_platform::host::exit_group(0)
                }
                child => {
                    ofd::fork_parent(ticket, child);
                    let (_, st) = myst_platform::host::wait4(child as i32, 0).unwrap();
                    assert_eq!(st, 0);
                    assert_eq!(d.refs(), if child_closes { 1 } else { 2 });
                    ofd::reap_pid(child);
                    assert_eq!(d.refs(), 1);
                }
            }
        }
        assert_eq!(d.pos(), 9, "the children's offset moves are ours");
        assert!(d.put(), "the last reference frees the description");
    }
}
