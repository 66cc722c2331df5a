//! The classic ext2 block map (12 direct pointers, then single, double and
//! triple indirect blocks): lookup of block ranges, allocation on write,
//! truncation, and file data reads and writes on top of it.
//!
//! Pointers come from the image and are checked before use; truncation
//! is bounded by the inode's block count, so a block map with cycles or
//! shared blocks ends in EIO, never in a loop.

use super::disk::{le32, put32, Inode, N_DIRECT, RO_COMPAT_LARGE_FILE};
use super::state::State;
use crate::{Errno, FsResult};

/// Where the pointer for one logical block lives.
struct MapPath {
    /// Slot in the inode's block array.
    slot: usize,
    /// Indirection levels below that slot.
    depth: usize,
    /// Index in each indirect block, outermost first.
    idx: [usize; 3],
}

impl State {
    /// Pointers per indirect block.
    fn ptrs(&self) -> u64 {
        self.sb.ptrs_per_block()
    }

    /// Largest file size the block map (and i_blocks) allows.
    pub fn max_file_size(&self) -> u64 {
        let p = self.ptrs();
        let blocks = N_DIRECT as u64 + p + p * p + p * p * p;
        blocks.saturating_mul(self.bs()).min(1 << 41)
    }

    fn map_path(&self, lblk: u64) -> FsResult<MapPath> {
        let p = self.ptrs();
        if lblk < N_DIRECT as u64 {
            return Ok(MapPath {
                slot: lblk as usize,
                depth: 0,
                idx: [0; 3],
            });
        }
        let mut l = lblk - N_DIRECT as u64;
        if l < p {
            return Ok(MapPath {
                slot: 12,
                depth: 1,
                idx: [l as usize, 0, 0],
            });
        }
        l -= p;
        if l < p * p {
            return Ok(MapPath {
                slot: 13,
                depth: 2,
                idx: [(l / p) as usize, (l % p) as usize, 0],
            });
        }
        l -= p * p;
        if l < p * p * p {
            return Ok(MapPath {
                slot: 14,
                depth: 3,
                idx: [
                    (l / (p * p)) as usize,
                    ((l / p) % p) as usize,
                    (l % p) as usize,
                ],
            });
        }
        Err(Errno::EFBIG)
    }

    /// Checks a block pointer read from disk (0 is a hole).
    pub fn check_ptr(&self, p: u32) -> FsResult<u32> {
        if p != 0 && (p < self.sb.first_data_block || p >= self.sb.blocks_count) {
            return Err(self.corrupt("block pointer outside the file system"));
        }
        Ok(p)
    }

    /// Physical blocks of logical blocks `first..first+count` (0 = hole).
    /// Each indirect block is read once per call.
    pub fn map_blocks(&self, i: &Inode, first: u64, count: u64) -> FsResult<Vec<u32>> {
        let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
        let mut cache: [Option<(u32, Vec<u8>)>; 3] = [None, None, None];
        for l in first..first.saturating_add(count) {
            let path = self.map_path(l)?;
            let mut ptr = self.check_ptr(i.block[path.slot])?;
            for (slot, &idx) in cache.iter_mut().zip(&path.idx).take(path.depth) {
                if ptr == 0 {
                    break;
                }
                if slot.as_ref().map(|c| c.0) != Some(ptr) {
                    *slot = Some((ptr, self.io.read_block(ptr)?));
                }
                let Some((_, data)) = slot else {
                    return Err(Errno::EIO);
                };
                ptr = self.check_ptr(le32(data, idx * 4))?;
            }
            out.push(ptr);
        }
        Ok(out)
    }

    /// Physical block of one logical block (0 = hole).
    pub fn map_block(&self, i: &Inode, lblk: u64) -> FsResult<u32> {
        Ok(self.map_blocks(i, lblk, 1)?.first().copied().unwrap_or(0))
    }

    fn charge_block(&self, i: &mut Inode) -> FsResult<()> {
        let b = i.blocks + self.bs() / 512;
        if b > u64::from(u32::MAX) {
            return Err(Errno::EFBIG);
        }
        i.blocks = b;
        Ok(())
    }

    fn alloc_zeroed(&mut self, goal: u32) -> FsResult<u32> {
        let b = self.alloc_block(goal)?;
        self.io.write_blocks(b, &vec![0u8; self.bs() as usize])?;
        Ok(b)
    }

    /// Maps logical block `lblk`, allocating it (and indirect blocks) when
    /// missing. Returns the physical block and whether it is new (its
    /// contents are then undefined and the caller must write all of it).
    /// The caller writes the inode back.
    pub fn alloc_map(&mut self, i: &mut Inode, lblk: u64, goal: u32) -> FsResult<(u32, bool)> {
        let path = self.map_path(lblk)?;
        let mut ptr = self.check_ptr(i.block[path.slot])?;
        let mut new = false;
        if ptr == 0 {
            self.charge_block(i)?;
            ptr = if path.depth > 0 {
                self.alloc_zeroed(goal)
            } else {
                self.alloc_block(goal)
            }
            .inspect_err(|_| i.blocks -= self.bs() / 512)?;
            i.block[path.slot] = ptr;
            new = path.depth == 0;
        }
        for d in 0..path.depth {
            let mut b = self.io.read_block(ptr)?;
            let at = path.idx[d] * 4;
            let mut e = self.check_ptr(le32(&b, at))?;
            if e == 0 {
                let last = d + 1 == path.depth;
                self.charge_block(i)?;
                e = if last {
                    self.alloc_block(goal)
                } else {
                    self.alloc_zeroed(goal)
                }
                .inspect_err(|_| i.blocks -= self.bs() / 512)?;
                put32(&mut b, at, e);
                self.io.write_blocks(ptr, &b)?;
                new = last;
            }
            ptr = e;
        }
        Ok((ptr, new))
    }

    /// Frees every block of logical index `keep` and beyond, with the
    /// indirect blocks that become empty. The caller writes the inode back.
    pub fn truncate_blocks(&mut self, i: &mut Inode, keep: u64) -> FsResult<()> {
        let bpb = self.bs() / 512;
        let mut budget = i.blocks / bpb + 8;
        let mut freed = 0u64;
        let mut result = Ok(());
        for s in 0..N_DIRECT {
            if s as u64 >= keep && i.block[s] != 0 {
                if let Err(e) = self.check_ptr(i.block[s]).and_then(|b| self.free_block(b)) {
                    result = Err(e);
                    break;
                }
                i.block[s] = 0;
                freed += 1;
            }
        }
        let p = self.ptrs();
        let mut base = N_DIRECT as u64;
        let mut cover = 1u64;
        for (slot, depth) in [(12usize, 1u32), (13, 2), (14, 3)] {
            if result.is_err() {
                break;
            }
            cover *= p;
            let k = keep.saturating_sub(base);
            if k < cover && i.block[slot] != 0 {
                match self.trunc_tree(i.block[slot], depth, k, &mut freed, &mut budget) {
                    Ok(true) => i.block[slot] = 0,
                    Ok(false) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            base += cover;
        }
        i.blocks = i.blocks.saturating_sub(freed * bpb);
        result
    }

    /// Frees the part of the subtree under `blk` (`depth` levels of
    /// indirection; 0 = a data block) at relative index `keep` and beyond.
    /// Returns true when `blk` itself was freed.
    fn trunc_tree(
        &mut self,
        blk: u32,
        depth: u32,
        keep: u64,
        freed: &mut u64,
        budget: &mut u64,
    ) -> FsResult<bool> {
        let blk = self.check_ptr(blk)?;
        if *budget == 0 {
            return Err(self.corrupt("block map larger than the inode's block count"));
        }
        *budget -= 1;
        if depth == 0 {
            if keep == 0 {
                self.free_block(blk)?;
                *freed += 1;
                return Ok(true);
            }
            return Ok(false);
        }
        let p = self.ptrs();
        let span = p.pow(depth - 1);
        let mut b = self.io.read_block(blk)?;
        let first_child = keep / span;
        let mut changed = false;
        for c in first_child..p {
            let e = le32(&b, c as usize * 4);
            if e == 0 {
                continue;
            }
            let ck = if c == first_child { keep - c * span } else { 0 };
            if self.trunc_tree(e, depth - 1, ck, freed, budget)? {
                put32(&mut b, c as usize * 4, 0);
                changed = true;
            }
        }
        if keep == 0 {
            self.free_block(blk)?;
            *freed += 1;
            return Ok(true);
        }
        if changed {
            self.io.write_blocks(blk, &b)?;
        }
        Ok(false)
    }

    /// Zeroes bytes `from..to` of the block holding byte `from`, if that
    /// block is allocated (keeps "bytes past EOF read as zero" true when a
    /// file grows or shrinks).
    pub fn zero_tail(&mut self, i: &Inode, from: u64, to: u64) -> FsResult<()> {
        let bs = self.bs();
        let s = from % bs;
        if s == 0 || to <= from {
            return Ok(());
        }
        let lblk = from / bs;
        let pblk = self.map_block(i, lblk)?;
        if pblk == 0 {
            return Ok(());
        }
        let e = (to - lblk * bs).min(bs);
        let mut b = self.io.read_block(pblk)?;
        b[s as usize..e as usize].fill(0);
        self.io.write_blocks(pblk, &b)
    }

    /// Reads file data at `off` (bounded by the inode size).
    pub fn read_data(&self, i: &Inode, off: u64, buf: &mut [u8]) -> FsResult<usize> {
        if off >= i.size || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(i.size - off) as usize;
        let bs = self.bs();
        let bsu = bs as usize;
        let first = off / bs;
        let last = (off + n as u64 - 1) / bs;
        let map = self.map_blocks(i, first, last - first + 1)?;
        let mut pos = 0usize;
        let mut k = 0usize;
        while pos < n {
            let cur = off + pos as u64;
            let s = (cur % bs) as usize;
            let take = (bsu - s).min(n - pos);
            let pblk = map.get(k).copied().ok_or(Errno::EIO)?;
            if pblk == 0 {
                buf[pos..pos + take].fill(0);
                pos += take;
                k += 1;
            } else if s == 0 && take == bsu {
                let mut r = 1usize;
                while k + r < map.len()
                    && pos + (r + 1) * bsu <= n
                    && u64::from(map[k + r]) == u64::from(pblk) + r as u64
                {
                    r += 1;
                }
                self.io.read_blocks(pblk, &mut buf[pos..pos + r * bsu])?;
                pos += r * bsu;
                k += r;
            } else {
                let b = self.io.read_block(pblk)?;
                buf[pos..pos + take].copy_from_slice(&b[s..s + take]);
                pos += take;
                k += 1;
            }
        }
        Ok(n)
    }

    /// Makes sure the superblock allows files of `size` bytes.
    pub fn allow_size(&mut self, size: u64) -> FsResult<()> {
        if size > self.max_file_size() {
            return Err(Errno::EFBIG);
        }
        if size > i32::MAX as u64 && self.sb.ro_compat & RO_COMPAT_LARGE_FILE == 0 {
            if self.sb.rev == 0 {
                return Err(Errno::EFBIG);
            }
            self.sb.ro_compat |= RO_COMPAT_LARGE_FILE;
            self.dirty_sb = true;
        }
        Ok(())
    }

    /// Writes file data at `off`, allocating blocks; returns bytes written
    /// (short on ENOSPC after some progress). On failure, blocks allocated
    /// past the new end of file are freed again, so the file system stays
    /// consistent. The caller writes the inode.
    pub fn write_data(&mut self, i: &mut Inode, off: u64, data: &[u8]) -> FsResult<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let end = off.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        self.allow_size(end)?;
        if off > i.size {
            self.zero_tail(i, i.size, off)?;
        }
        let mut done = 0usize;
        let r = self.write_blocks_of(i, off, data, &mut done);
        if done > 0 {
            i.size = i.size.max(off + done as u64);
        }
        if r.is_err() {
            let keep = i.size.div_ceil(self.bs());
            self.truncate_blocks(i, keep)?;
        }
        match r {
            Err(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// The loop of [`State::write_data`]; `done` counts the bytes whose
    /// blocks have been written.
    fn write_blocks_of(
        &mut self,
        i: &mut Inode,
        off: u64,
        data: &[u8],
        done: &mut usize,
    ) -> FsResult<()> {
        let bs = self.bs();
        let bsu = bs as usize;
        let mut goal = match i.block[0] {
            0 => {
                let g = (i.ino - 1) / self.sb.inodes_per_group;
                self.sb.first_data_block + g * self.sb.blocks_per_group
            }
            b => b,
        };
        let mut pos = 0usize;
        // Whole blocks at consecutive physical blocks, written together:
        // (first block, start in data, blocks).
        let mut run: Option<(u32, usize, usize)> = None;
        let flush = |st: &mut State,
                     run: &mut Option<(u32, usize, usize)>,
                     done: &mut usize|
         -> FsResult<()> {
            if let Some((p0, d0, n)) = run.take() {
                st.io.write_blocks(p0, &data[d0..d0 + n * bsu])?;
                *done = d0 + n * bsu;
            }
            Ok(())
        };
        while pos < data.len() {
            let cur = off + pos as u64;
            let s = (cur % bs) as usize;
            let take = (bsu - s).min(data.len() - pos);
            let pending = run.map_or(0, |r| r.2 as u64);
            if let Err(e) = self.ensure_budget(pending + 1) {
                flush(self, &mut run, done)?;
                return Err(e);
            }
            let (pblk, new) = match self.alloc_map(i, cur / bs, goal) {
                Ok(v) => v,
                Err(e) => {
                    flush(self, &mut run, done)?;
                    return Err(e);
                }
            };
            goal = pblk.saturating_add(1);
            if s == 0 && take == bsu {
                match &mut run {
                    Some((p0, _, n)) if u64::from(*p0) + *n as u64 == u64::from(pblk) => *n += 1,
                    _ => {
                        flush(self, &mut run, done)?;
                        run = Some((pblk, pos, 1));
                    }
                }
            } else {
                flush(self, &mut run, done)?;
                let mut b = if new {
                    vec![0u8; bsu]
                } else {
                    self.io.read_block(pblk)?
                };
                b[s..s + take].copy_from_slice(&data[pos..pos + take]);
                self.io.write_blocks(pblk, &b)?;
                *done = pos + take;
            }
            pos += take;
        }
        flush(self, &mut run, done)
    }
}
