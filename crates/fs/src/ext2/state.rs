//! The mounted file system's state: superblock, group descriptors, inode
//! I/O and the write-back of changed metadata. One `State` sits behind the
//! `Ext2Fs` mutex.

use super::disk::{Group, Inode, Superblock, GD_SIZE, ROOT_INO, SB_OFFSET};
use super::io::Io;
use crate::{Errno, FsResult, Timespec};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Largest link count this driver creates (Linux ext2's EXT2_LINK_MAX).
pub const LINK_MAX: u16 = 32000;

/// Device blocks kept free in an ephemeral write budget for the metadata
/// of one operation (bitmaps, descriptors, superblock, inodes, directory
/// and indirect blocks of up to two directories): ENOSPC comes before an
/// operation starts, never halfway through it.
pub const BUDGET_RESERVE: u64 = 32;

/// Everything behind the lock.
pub struct State {
    /// The device.
    pub io: Io,
    /// The superblock.
    pub sb: Superblock,
    /// Group descriptors.
    pub groups: Vec<Group>,
    /// Why writes are refused, when they are.
    pub read_only: Option<String>,
    /// Name for log lines.
    pub name: String,
    /// Inodes the VFS keeps in use, with counts (for every process when
    /// the device is shared).
    pub holds: super::holds::Holds,
    /// Unlinked inodes still in use; freed on their last release.
    pub orphans: HashSet<u32>,
    /// The superblock needs writing.
    pub dirty_sb: bool,
    /// Group descriptors that need writing.
    pub dirty_groups: BTreeSet<u32>,
    /// Byte offset of the group descriptor table.
    pub gdt_offset: u64,
    /// Name -> inode indexes of large directories, for lookup.
    pub names: HashMap<u32, HashMap<Vec<u8>, u32>>,
    /// Entries in `names`.
    pub names_cached: usize,
    /// The shared device's generation when the cached state above was last
    /// known current (`None`: the device is not shared across processes).
    pub generation: Option<u64>,
}

/// The current time.
pub fn now() -> Timespec {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => Timespec {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        },
        Err(_) => Timespec::default(),
    }
}

/// An errno for on-disk corruption, logged with the file system name.
pub fn corrupt(name: &str, what: &'static str) -> Errno {
    eprintln!("myst: ext2: {name}: {what}");
    Errno::EIO.with(what)
}

impl State {
    /// Refuses writes on a read-only mount.
    pub fn writable(&self) -> FsResult<()> {
        match self.read_only {
            Some(_) => Err(Errno::EROFS),
            None => Ok(()),
        }
    }

    /// Fails with ENOSPC unless the device can take `blocks` new blocks
    /// and still keep [`BUDGET_RESERVE`] for the metadata of the operation.
    pub fn ensure_budget(&self, blocks: u64) -> FsResult<()> {
        match self.io.dev().fresh_blocks_left() {
            Some(left) if left < BUDGET_RESERVE + blocks => {
                Err(Errno::ENOSPC.with("ephemeral write budget exhausted"))
            }
            _ => Ok(()),
        }
    }

    /// Block size in bytes.
    pub fn bs(&self) -> u64 {
        self.io.bs
    }

    /// Reports corruption.
    pub fn corrupt(&self, what: &'static str) -> Errno {
        corrupt(&self.name, what)
    }

    /// Byte offset of inode `ino`.
    fn inode_offset(&self, ino: u32) -> FsResult<u64> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(Errno::ENOENT.with("inode number out of range"));
        }
        let g = (ino - 1) / self.sb.inodes_per_group;
        let idx = (ino - 1) % self.sb.inodes_per_group;
        let gd = self.groups.get(g as usize).ok_or(Errno::EIO)?;
        Ok(u64::from(gd.inode_table) * self.bs() + u64::from(idx) * u64::from(self.sb.inode_size))
    }

    /// Reads inode `ino` without checking it is in use.
    pub fn read_inode_raw(&self, ino: u32) -> FsResult<Inode> {
        let off = self.inode_offset(ino)?;
        let mut raw = vec![0u8; self.sb.inode_size as usize];
        self.io.read_bytes(off, &mut raw)?;
        Ok(Inode::parse(ino, raw))
    }

    /// Reads inode `ino` and checks it looks like a live inode this driver handles.
    pub fn inode(&self, ino: u64) -> FsResult<Inode> {
        let ino = u32::try_from(ino).map_err(|_| Errno::ENOENT)?;
        let i = self.read_inode_raw(ino)?;
        if i.kind().is_none() {
            return Err(self.corrupt("inode with an invalid or zero mode"));
        }
        if i.flags & (super::disk::EXTENTS_FL | super::disk::INLINE_DATA_FL) != 0 {
            return Err(self.corrupt("inode uses extents or inline data"));
        }
        if i.links == 0
            && ino != ROOT_INO
            && !self.orphans.contains(&ino)
            && self.holds.count(ino) == 0
        {
            return Err(self.corrupt("directory entry names a deleted inode"));
        }
        Ok(i)
    }

    /// Writes an inode back.
    pub fn write_inode(&self, i: &mut Inode) -> FsResult<()> {
        self.writable()?;
        let off = self.inode_offset(i.ino)?;
        self.io.write_bytes(off, i.to_raw())
    }

    /// Writes the superblock and changed group descriptors.
    pub fn commit(&mut self) -> FsResult<()> {
        if self.read_only.is_some() {
            return Ok(());
        }
        if self.dirty_sb {
            let raw = self.sb.to_raw().to_vec();
            self.io.write_bytes(SB_OFFSET, &raw)?;
            self.dirty_sb = false;
        }
        while let Some(g) = self.dirty_groups.pop_first() {
            if let Some(gd) = self.groups.get_mut(g as usize) {
                let raw = gd.to_raw();
                self.io
                    .write_bytes(self.gdt_offset + u64::from(g) * GD_SIZE as u64, &raw)?;
            }
        }
        Ok(())
    }
}
