//! Block and inode allocation in the group bitmaps. Group and superblock
//! free counts move with every bit, so they always match the bitmaps.

use super::disk::Inode;
use super::state::State;
use crate::{Errno, FsResult};

/// First clear bit in `bits[from..limit)`.
fn find_clear(bits: &[u8], from: u32, limit: u32) -> Option<u32> {
    let mut i = from;
    while i < limit {
        let byte = bits[(i / 8) as usize];
        if byte == 0xff && i.is_multiple_of(8) {
            i += 8;
            continue;
        }
        if byte & (1 << (i % 8)) == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl State {
    /// Group of a block.
    pub fn block_group(&self, blk: u32) -> u32 {
        (blk.saturating_sub(self.sb.first_data_block) / self.sb.blocks_per_group)
            .min(self.sb.group_count - 1)
    }

    /// Allocates a block, preferring `goal` and the blocks after it.
    pub fn alloc_block(&mut self, goal: u32) -> FsResult<u32> {
        self.writable()?;
        let n = self.sb.group_count;
        let g0 = self.block_group(goal);
        for k in 0..n {
            let g = (g0 + k) % n;
            let gd = &self.groups[g as usize];
            if gd.free_blocks == 0 {
                continue;
            }
            let limit = self.sb.blocks_in_group(g);
            let start = if k == 0 {
                goal.saturating_sub(self.sb.first_data_block + g * self.sb.blocks_per_group)
                    .min(limit)
            } else {
                0
            };
            let bmp_blk = gd.block_bitmap;
            let mut bits = self.io.read_block(bmp_blk)?;
            let Some(bit) = find_clear(&bits, start, limit).or_else(|| find_clear(&bits, 0, start))
            else {
                continue;
            };
            bits[(bit / 8) as usize] |= 1 << (bit % 8);
            self.io.write_blocks(bmp_blk, &bits)?;
            let gd = &mut self.groups[g as usize];
            gd.free_blocks = gd.free_blocks.saturating_sub(1);
            self.sb.free_blocks = self.sb.free_blocks.saturating_sub(1);
            self.dirty_groups.insert(g);
            self.dirty_sb = true;
            return Ok(self.sb.first_data_block + g * self.sb.blocks_per_group + bit);
        }
        Err(Errno::ENOSPC)
    }

    /// Frees a block; a block already free means a corrupt block map.
    pub fn free_block(&mut self, blk: u32) -> FsResult<()> {
        self.writable()?;
        if blk < self.sb.first_data_block || blk >= self.sb.blocks_count {
            return Err(self.corrupt("freeing a block outside the file system"));
        }
        let g = self.block_group(blk);
        let bit = blk - self.sb.first_data_block - g * self.sb.blocks_per_group;
        let bmp_blk = self.groups[g as usize].block_bitmap;
        let mut bits = self.io.read_block(bmp_blk)?;
        let mask = 1u8 << (bit % 8);
        if bits[(bit / 8) as usize] & mask == 0 {
            return Err(self.corrupt("freeing a block that is already free"));
        }
        bits[(bit / 8) as usize] &= !mask;
        self.io.write_blocks(bmp_blk, &bits)?;
        let gd = &mut self.groups[g as usize];
        gd.free_blocks = gd.free_blocks.saturating_add(1);
        self.sb.free_blocks = self
            .sb
            .free_blocks
            .saturating_add(1)
            .min(self.sb.blocks_count);
        self.dirty_groups.insert(g);
        self.dirty_sb = true;
        Ok(())
    }

    /// Allocates an inode number: directories go to the group with the most
    /// free blocks among those with free inodes (spreading the tree, as
    /// Linux does), other inodes near their parent's group.
    pub fn alloc_inode(&mut self, parent: u32, dir: bool) -> FsResult<u32> {
        self.writable()?;
        let n = self.sb.group_count;
        let ipg = self.sb.inodes_per_group;
        let parent_group = (parent.saturating_sub(1) / ipg).min(n - 1);
        let mut order: Vec<u32> = (0..n).map(|k| (parent_group + k) % n).collect();
        if dir {
            order.sort_by_key(|&g| std::cmp::Reverse(self.groups[g as usize].free_blocks));
        }
        for g in order {
            if self.groups[g as usize].free_inodes == 0 {
                continue;
            }
            // Group 0 starts with the reserved inodes.
            let start = if g == 0 { self.sb.first_ino - 1 } else { 0 };
            if start >= ipg {
                continue;
            }
            let bmp_blk = self.groups[g as usize].inode_bitmap;
            let mut bits = self.io.read_block(bmp_blk)?;
            let Some(bit) = find_clear(&bits, start, ipg) else {
                continue;
            };
            bits[(bit / 8) as usize] |= 1 << (bit % 8);
            self.io.write_blocks(bmp_blk, &bits)?;
            let gd = &mut self.groups[g as usize];
            gd.free_inodes = gd.free_inodes.saturating_sub(1);
            if dir {
                gd.used_dirs = gd.used_dirs.saturating_add(1);
            }
            self.sb.free_inodes = self.sb.free_inodes.saturating_sub(1);
            self.dirty_groups.insert(g);
            self.dirty_sb = true;
            return Ok(g * ipg + bit + 1);
        }
        Err(Errno::ENOSPC)
    }

    /// Frees an inode number.
    pub fn free_inode_bit(&mut self, ino: u32, dir: bool) -> FsResult<()> {
        self.writable()?;
        let ipg = self.sb.inodes_per_group;
        let g = (ino - 1) / ipg;
        let bit = (ino - 1) % ipg;
        let bmp_blk = self.groups.get(g as usize).ok_or(Errno::EIO)?.inode_bitmap;
        let mut bits = self.io.read_block(bmp_blk)?;
        let mask = 1u8 << (bit % 8);
        if bits[(bit / 8) as usize] & mask == 0 {
            return Err(self.corrupt("freeing an inode that is already free"));
        }
        bits[(bit / 8) as usize] &= !mask;
        self.io.write_blocks(bmp_blk, &bits)?;
        let gd = &mut self.groups[g as usize];
        gd.free_inodes = gd.free_inodes.saturating_add(1);
        if dir {
            gd.used_dirs = gd.used_dirs.saturating_sub(1);
        }
        self.sb.free_inodes = self
            .sb
            .free_inodes
            .saturating_add(1)
            .min(self.sb.inodes_count);
        self.dirty_groups.insert(g);
        self.dirty_sb = true;
        Ok(())
    }

    /// Drops the inode's reference to its extended-attribute block, freeing
    /// the block when no other inode shares it.
    pub fn release_xattr_block(&mut self, i: &mut Inode) -> FsResult<()> {
        let blk = i.file_acl;
        if blk == 0 {
            return Ok(());
        }
        i.file_acl = 0;
        i.blocks = i.blocks.saturating_sub(self.bs() / 512);
        if blk < self.sb.first_data_block || blk >= self.sb.blocks_count {
            return Err(self.corrupt("extended-attribute block outside the file system"));
        }
        let mut b = self.io.read_block(blk)?;
        let magic = super::disk::le32(&b, 0);
        let refs = super::disk::le32(&b, 4);
        if magic != 0xEA02_0000 {
            return Err(self.corrupt("bad extended-attribute block"));
        }
        if refs > 1 {
            super::disk::put32(&mut b, 4, refs - 1);
            self.io.write_blocks(blk, &b)
        } else {
            self.free_block(blk)
        }
    }
}
