//! Directories: linear lists of entries in blocks. Hashed-index (dir_index)
//! directories read correctly as linear ones (the index hides in entries
//! Linux never returns); when such a directory is modified its index flag
//! is cleared, so the stale index is never trusted again.

use super::disk::{
    dirent_size, dirent_type, parse_dir_block, put_dirent, Inode, RawDirent, INDEX_FL,
};
use super::state::State;
use crate::{Errno, FileType, FsResult};
use std::collections::HashMap;

/// Names held by all directory indexes together before they are dropped.
const NAME_CACHE_MAX: usize = 1 << 16;

/// A directory entry and where it is.
pub struct Found {
    /// Physical block.
    pub pblk: u32,
    /// The entry.
    pub ent: RawDirent,
    /// Offset of the previous entry in the same block, if any.
    pub prev: Option<usize>,
}

impl State {
    /// Number of blocks of a directory, checking its size.
    fn dir_blocks(&self, d: &Inode) -> FsResult<u64> {
        let bs = self.bs();
        if !d.size.is_multiple_of(bs) || d.size / bs > u64::from(self.sb.blocks_count) {
            return Err(self.corrupt("directory size is not a whole number of blocks"));
        }
        Ok(d.size / bs)
    }

    fn parse_block(&self, b: &[u8]) -> FsResult<Vec<RawDirent>> {
        parse_dir_block(b, self.sb.has_filetype(), self.sb.inodes_count)
            .ok_or_else(|| self.corrupt("corrupt directory block"))
    }

    /// Calls `f` for each directory block with its parsed entries; stops
    /// when `f` returns `Some`.
    fn scan_dir<T>(
        &self,
        d: &Inode,
        mut f: impl FnMut(u64, u32, &[u8], &[RawDirent]) -> Option<T>,
    ) -> FsResult<Option<T>> {
        let n = self.dir_blocks(d)?;
        // Map in chunks so a huge (corrupt) directory does not allocate a huge map.
        let mut l = 0u64;
        while l < n {
            let chunk = (n - l).min(1024);
            let map = self.map_blocks(d, l, chunk)?;
            for (k, &pblk) in map.iter().enumerate() {
                if pblk == 0 {
                    return Err(self.corrupt("hole in a directory"));
                }
                let b = self.io.read_block(pblk)?;
                let ents = self.parse_block(&b)?;
                if let Some(t) = f(l + k as u64, pblk, &b, &ents) {
                    return Ok(Some(t));
                }
            }
            l += chunk;
        }
        Ok(None)
    }

    /// All live entries of a directory.
    pub fn dir_entries(&self, d: &Inode) -> FsResult<Vec<RawDirent>> {
        let mut out = Vec::new();
        self.scan_dir::<()>(d, |_, _, _, ents| {
            out.extend(ents.iter().filter(|e| e.ino != 0).cloned());
            None
        })?;
        Ok(out)
    }

    /// Finds `name` in a directory.
    pub fn find_entry(&self, d: &Inode, name: &[u8]) -> FsResult<Option<Found>> {
        self.scan_dir(d, |_, pblk, _, ents| {
            let mut prev = None;
            for e in ents {
                if e.ino != 0 && e.name == name {
                    return Some(Found {
                        pblk,
                        ent: e.clone(),
                        prev,
                    });
                }
                prev = Some(e.off);
            }
            None
        })
    }

    /// True when a directory holds nothing but `.` and `..`.
    pub fn dir_is_empty(&self, d: &Inode) -> FsResult<bool> {
        let other = self.scan_dir(d, |_, _, _, ents| {
            ents.iter()
                .find(|e| e.ino != 0 && e.name != b"." && e.name != b"..")
                .map(|_| ())
        })?;
        Ok(other.is_none())
    }

    fn ftype(&self, kind: FileType) -> u8 {
        if self.sb.has_filetype() {
            dirent_type(kind)
        } else {
            0
        }
    }

    /// Marks a directory modified: drops its hashed index and its cached names.
    fn dir_modified(&mut self, d: &mut Inode) {
        d.flags &= !INDEX_FL;
        self.forget_names(d.ino);
    }

    /// Drops the cached name index of a directory.
    pub fn forget_names(&mut self, ino: u32) {
        if let Some(m) = self.names.remove(&ino) {
            self.names_cached -= m.len();
        }
    }

    /// Looks `name` up through the name index of directories of several
    /// blocks (built on first use), or by a scan for small ones.
    pub fn lookup_name(&mut self, d: &Inode, name: &[u8]) -> FsResult<Option<u32>> {
        if d.size <= self.bs() {
            return Ok(self.find_entry(d, name)?.map(|f| f.ent.ino));
        }
        if let Some(m) = self.names.get(&d.ino) {
            return Ok(m.get(name).copied());
        }
        let mut m = HashMap::new();
        for e in self.dir_entries(d)? {
            m.entry(e.name).or_insert(e.ino);
        }
        let found = m.get(name).copied();
        if self.names_cached + m.len() > NAME_CACHE_MAX {
            self.names.clear();
            self.names_cached = 0;
        }
        self.names_cached += m.len();
        self.names.insert(d.ino, m);
        Ok(found)
    }

    /// Adds an entry (the name must not exist). Writes the directory inode.
    pub fn add_entry(
        &mut self,
        d: &mut Inode,
        name: &[u8],
        ino: u32,
        kind: FileType,
    ) -> FsResult<()> {
        let need = dirent_size(name.len());
        let ft = self.ftype(kind);
        let filetype = self.sb.has_filetype();
        // First fit: an unused record or the slack after a live one.
        let slot = self.scan_dir(d, |_, pblk, b, ents| {
            for e in ents {
                if e.ino == 0 && e.rec_len >= need {
                    return Some((pblk, b.to_vec(), e.off, e.rec_len, None));
                }
                let used = dirent_size(e.name.len());
                if e.ino != 0 && e.rec_len >= used + need {
                    return Some((pblk, b.to_vec(), e.off, e.rec_len, Some(used)));
                }
            }
            None
        })?;
        self.dir_modified(d);
        if let Some((pblk, mut b, off, rec_len, split)) = slot {
            match split {
                None => put_dirent(&mut b, off, ino, rec_len, name, ft, filetype),
                Some(used) => {
                    super::disk::put16(&mut b, off + 4, super::disk::rec_len_to_disk(used));
                    put_dirent(&mut b, off + used, ino, rec_len - used, name, ft, filetype);
                }
            }
            self.io.write_blocks(pblk, &b)?;
            return self.write_inode(d);
        }
        // A new block at the end.
        let lblk = self.dir_blocks(d)?;
        let bs = self.bs() as usize;
        let goal = match lblk {
            0 => 0,
            _ => self.map_block(d, lblk - 1)?,
        };
        let r = self.alloc_map(d, lblk, goal);
        let (pblk, _) = match r {
            Ok(v) => v,
            Err(e) => {
                self.write_inode(d)?;
                return Err(e);
            }
        };
        let mut b = vec![0u8; bs];
        put_dirent(&mut b, 0, ino, bs, name, ft, filetype);
        if let Err(e) = self.io.write_blocks(pblk, &b) {
            // Give the block (and any new indirect block) back.
            let _ = self.truncate_blocks(d, lblk);
            self.write_inode(d)?;
            return Err(e);
        }
        d.size += bs as u64;
        self.write_inode(d)
    }

    /// Removes entry `name`, returning it. Writes the directory inode.
    pub fn remove_entry(&mut self, d: &mut Inode, name: &[u8]) -> FsResult<RawDirent> {
        let f = self.find_entry(d, name)?.ok_or(Errno::ENOENT)?;
        let mut b = self.io.read_block(f.pblk)?;
        match f.prev {
            // Merge into the previous record, as Linux does.
            Some(p) => {
                let prev_len = super::disk::le16(&b, p + 4);
                let merged = usize::from(prev_len) + f.ent.rec_len;
                super::disk::put16(&mut b, p + 4, super::disk::rec_len_to_disk(merged));
            }
            None => super::disk::put32(&mut b, f.ent.off, 0),
        }
        self.io.write_blocks(f.pblk, &b)?;
        self.dir_modified(d);
        self.write_inode(d)?;
        Ok(f.ent)
    }

    /// Points existing entry `name` at another inode. Writes the directory inode.
    pub fn set_entry(
        &mut self,
        d: &mut Inode,
        name: &[u8],
        ino: u32,
        kind: FileType,
    ) -> FsResult<()> {
        let f = self.find_entry(d, name)?.ok_or(Errno::ENOENT)?;
        let mut b = self.io.read_block(f.pblk)?;
        super::disk::put32(&mut b, f.ent.off, ino);
        if self.sb.has_filetype() {
            b[f.ent.off + 7] = self.ftype(kind);
        }
        self.io.write_blocks(f.pblk, &b)?;
        self.dir_modified(d);
        self.write_inode(d)
    }

    /// The first block of a new directory: `.` and `..`.
    pub fn new_dir_block(&self, ino: u32, parent: u32) -> Vec<u8> {
        let bs = self.bs() as usize;
        let mut b = vec![0u8; bs];
        let ft = self.ftype(FileType::Directory);
        let filetype = self.sb.has_filetype();
        put_dirent(&mut b, 0, ino, 12, b".", ft, filetype);
        put_dirent(&mut b, 12, parent, bs - 12, b"..", ft, filetype);
        b
    }

    /// The inode `..` names.
    pub fn parent_of(&self, d: &Inode) -> FsResult<u32> {
        let f = self.find_entry(d, b"..")?;
        match f {
            Some(f) => Ok(f.ent.ino),
            None => Err(self.corrupt("directory without a `..` entry")),
        }
    }
}
