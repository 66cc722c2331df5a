//! Block group geometry and the size policy.
//!
//! Each group is `[superblock + descriptor table copy, if a backup group]
//! [block bitmap][inode bitmap][inode table][data ...]`, the classic ext2
//! layout without reserved descriptor blocks, flex_bg or meta_bg.

use super::structs::{GROUP_DESC_SIZE, INODE_SIZE};
use super::Ext2Error;

/// Apparent-size rounding of the Mystikos size policy.
const MIB: u64 = 1 << 20;
/// Smallest image Mystikos makes.
pub const MIN_SIZE: u64 = 8 * MIB;
/// One inode per this many bytes of file system, at least (mke2fs's default
/// inode ratio for ext2 file systems of 512 MiB and more).
const INODE_RATIO: u64 = 16384;

/// True when group `g` holds a superblock backup under sparse_super
/// (groups 0, 1 and powers of 3, 5 and 7).
pub fn has_super(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&p| {
        let mut x = p;
        while x < g {
            x *= p;
        }
        x == g
    })
}

/// The shape of a file system: sizes, groups, where each group's metadata is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Block size in bytes.
    pub block_size: u64,
    /// Total blocks (block 0 included).
    pub blocks_count: u64,
    /// 1 for 1 KiB blocks, else 0.
    pub first_data_block: u64,
    /// Blocks per group (8 × block size).
    pub blocks_per_group: u64,
    /// Number of groups.
    pub groups: u64,
    /// Inodes per group.
    pub inodes_per_group: u64,
    /// Blocks of the descriptor table.
    pub gdt_blocks: u64,
    /// Blocks of each group's inode table.
    pub inode_table_blocks: u64,
}

impl Geometry {
    /// A geometry of at least `size` bytes with at least `inodes` inodes.
    /// The size is rounded up to whole 4096-byte units, and grown when the
    /// last group would be too small to hold its own metadata.
    pub fn new(size: u64, block_size: u64, inodes: u64) -> Result<Self, Ext2Error> {
        if ![1024, 2048, 4096].contains(&block_size) {
            return Err(Ext2Error::Config(format!(
                "block size {block_size}: use 1024, 2048 or 4096"
            )));
        }
        let unit = 4096 / block_size;
        let first_data_block = u64::from(block_size == 1024);
        let bpg = block_size * 8;
        let mut blocks = size.div_ceil(4096) * unit;
        let inodes_per_block = block_size / u64::from(INODE_SIZE);
        // inodes_per_group must fill whole bitmap bytes and whole table blocks.
        let align = if inodes_per_block > 8 {
            inodes_per_block
        } else {
            8
        };
        let max_ipg = (bpg / align) * align;
        loop {
            if blocks > u64::from(u32::MAX) {
                return Err(Ext2Error::TooBig(format!(
                    "{} bytes exceed the ext2 limit of 2^32 blocks of {block_size} bytes",
                    blocks * block_size
                )));
            }
            let groups = (blocks - first_data_block).div_ceil(bpg);
            let gdt_blocks = (groups * GROUP_DESC_SIZE as u64).div_ceil(block_size);
            let ipg = inodes.div_ceil(groups).div_ceil(align) * align;
            let ipg = ipg.clamp(align, max_ipg);
            let itb = ipg * u64::from(INODE_SIZE) / block_size;
            let geo = Geometry {
                block_size,
                blocks_count: blocks,
                first_data_block,
                blocks_per_group: bpg,
                groups,
                inodes_per_group: ipg,
                gdt_blocks,
                inode_table_blocks: itb,
            };
            // The last group must hold its metadata and a little data.
            let last = groups - 1;
            let need = geo.overhead(last) + 16;
            if geo.group_len(last) < need {
                blocks = (geo.group_start(last) + need).div_ceil(unit) * unit;
                continue;
            }
            return Ok(geo);
        }
    }

    /// First block of group `g`.
    pub fn group_start(&self, g: u64) -> u64 {
        self.first_data_block + g * self.blocks_per_group
    }

    /// Blocks in group `g` (the last group may be shorter).
    pub fn group_len(&self, g: u64) -> u64 {
        let start = self.group_start(g);
        (self.blocks_count - start).min(self.blocks_per_group)
    }

    /// Superblock + descriptor copy blocks at the start of group `g`.
    pub fn super_blocks(&self, g: u64) -> u64 {
        if has_super(g) {
            1 + self.gdt_blocks
        } else {
            0
        }
    }

    /// Block bitmap of group `g`.
    pub fn block_bitmap(&self, g: u64) -> u64 {
        self.group_start(g) + self.super_blocks(g)
    }

    /// Inode bitmap of group `g`.
    pub fn inode_bitmap(&self, g: u64) -> u64 {
        self.block_bitmap(g) + 1
    }

    /// First block of the inode table of group `g`.
    pub fn inode_table(&self, g: u64) -> u64 {
        self.block_bitmap(g) + 2
    }

    /// First data block of group `g`.
    pub fn data_start(&self, g: u64) -> u64 {
        self.inode_table(g) + self.inode_table_blocks
    }

    /// Metadata blocks of group `g`.
    pub fn overhead(&self, g: u64) -> u64 {
        self.super_blocks(g) + 2 + self.inode_table_blocks
    }

    /// Total inodes.
    pub fn inodes_count(&self) -> u64 {
        self.groups * self.inodes_per_group
    }

    /// Blocks available for data in all groups.
    pub fn data_blocks(&self) -> u64 {
        (0..self.groups)
            .map(|g| self.group_len(g) - self.overhead(g))
            .sum()
    }

    /// Size of the file system in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks_count * self.block_size
    }
}

/// What the tree needs, for sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// Sum of the sizes of all files, directories and symbolic links, each
    /// inode once (what `du -b` adds up).
    pub apparent: u64,
    /// Data and indirect blocks the tree takes at most.
    pub blocks: u64,
    /// Inodes in use, reserved ones included.
    pub inodes: u64,
}

/// The Mystikos size policy: the apparent size rounded up to 1 MiB, plus
/// 50%, at least 8 MiB.
pub fn mystikos_size(apparent: u64) -> u64 {
    let n = apparent.div_ceil(MIB) * MIB;
    (n + n / 2).max(MIN_SIZE)
}

/// Chooses the geometry: the Mystikos size (or `min_size`, if larger),
/// grown until the tree fits with room to spare for writes at run time:
/// a quarter of its blocks (at least 1 MiB) and a quarter of its inodes
/// (at least 16) stay free.
pub fn plan(needs: &Needs, block_size: u64, min_size: u64) -> Result<Geometry, Ext2Error> {
    let spare_blocks = (needs.blocks / 4).max(MIB / block_size);
    let want_blocks = needs.blocks + spare_blocks;
    let want_inodes = needs.inodes + (needs.inodes / 4).max(16);
    let mut size = mystikos_size(needs.apparent).max(min_size);
    loop {
        let inodes = want_inodes.max(size / INODE_RATIO);
        let geo = Geometry::new(size, block_size, inodes)?;
        let data = geo.data_blocks();
        let inodes_ok = geo.inodes_count() >= want_inodes;
        if data >= want_blocks && inodes_ok {
            return Ok(geo);
        }
        // Grow by the shortfall (inode tables included), in whole MiB.
        let short_blocks = want_blocks.saturating_sub(data);
        let short_inodes = want_inodes.saturating_sub(geo.inodes_count());
        let grow = short_blocks * block_size
            + short_inodes * u64::from(INODE_SIZE)
            + if inodes_ok {
                0
            } else {
                block_size * 8 * block_size
            };
        size = (geo.bytes() + grow.max(MIB)).div_ceil(MIB) * MIB;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_groups() {
        let got: Vec<u64> = (0..100).filter(|&g| has_super(g)).collect();
        assert_eq!(got, vec![0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    #[test]
    fn mystikos_policy() {
        assert_eq!(mystikos_size(0), 8 * MIB);
        assert_eq!(mystikos_size(10 * MIB + 1), 11 * MIB + 11 * MIB / 2);
        assert_eq!(mystikos_size(100 * MIB), 150 * MIB);
    }

    #[test]
    fn geometry_is_consistent() {
        for bs in [1024, 2048, 4096] {
            for size in [8 * MIB, 100 * MIB + 4096, 1 << 30] {
                let g = Geometry::new(size, bs, 5000).unwrap();
                assert!(g.bytes() >= size);
                assert_eq!(g.bytes() % 4096, 0);
                assert!(g.inodes_count() >= 5000);
                assert_eq!(g.inodes_per_group % 8, 0);
                assert_eq!((g.inodes_per_group * 256) % bs, 0);
                for grp in 0..g.groups {
                    assert!(g.group_len(grp) > g.overhead(grp));
                }
            }
        }
    }

    #[test]
    fn plan_fits_many_small_files() {
        // 100,000 one-byte files: the Mystikos size (8 MiB) cannot hold them.
        let needs = Needs {
            apparent: 100_000,
            blocks: 100_000 + 200,
            inodes: 100_012,
        };
        let g = plan(&needs, 4096, 0).unwrap();
        assert!(g.data_blocks() >= needs.blocks * 5 / 4);
        assert!(g.inodes_count() >= needs.inodes * 5 / 4);
        let g1 = plan(&needs, 1024, 0).unwrap();
        assert!(g1.inodes_count() >= needs.inodes);
    }

    #[test]
    fn plan_honours_min_size() {
        let needs = Needs {
            apparent: 1000,
            blocks: 10,
            inodes: 20,
        };
        assert_eq!(plan(&needs, 4096, 0).unwrap().bytes(), 8 * MIB);
        assert_eq!(plan(&needs, 4096, 64 * MIB).unwrap().bytes(), 64 * MIB);
    }
}
