//! ext2 on-disk structures: the superblock, group descriptors, inodes and
//! directory entries, parsed into validated values. Every number read from
//! the image is untrusted; everything here checks ranges and never panics.

use crate::{FileType, Timespec};

/// ext2 magic.
pub const MAGIC: u16 = 0xEF53;
/// Byte offset of the primary superblock.
pub const SB_OFFSET: u64 = 1024;
/// Size of the superblock.
pub const SB_SIZE: usize = 1024;
/// Size of a (32-bit) group descriptor.
pub const GD_SIZE: usize = 32;
/// Root directory inode.
pub const ROOT_INO: u32 = 2;
/// Number of block pointers in an inode.
pub const N_BLOCKS: usize = 15;
/// Direct pointers.
pub const N_DIRECT: usize = 12;

/// Inode flag: hashed-index directory (read linearly; cleared on modification).
pub const INDEX_FL: u32 = 0x1000;
/// Inode flag: extents (refused).
pub const EXTENTS_FL: u32 = 0x80000;
/// Inode flag: inline data (refused).
pub const INLINE_DATA_FL: u32 = 0x1000_0000;

/// compat: has a journal (ext3).
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// incompat: directory entries carry the file type.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
/// incompat: the journal needs replaying.
pub const INCOMPAT_RECOVER: u32 = 0x4;
/// incompat: flexible block groups (metadata placement only).
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
/// incompat: metadata checksum seed in the superblock.
pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// ro_compat: large files (size_high used).
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;

/// incompat features and their names, for refusals.
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "compression"),
    (INCOMPAT_RECOVER, "needs_recovery"),
    (0x8, "journal_dev"),
    (0x10, "meta_bg"),
    (0x40, "extents"),
    (0x80, "64bit"),
    (0x100, "mmp"),
    (0x400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];

/// ro_compat features this driver writes correctly.
const RO_COMPAT_RW_OK: u32 = 0x1 | RO_COMPAT_LARGE_FILE | 0x4 | 0x20 | 0x40;

/// ro_compat features that force a read-only mount, with names.
const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (0x8, "huge_file"),
    (0x10, "uninit_bg"),
    (0x80, "snapshot"),
    (0x100, "quota"),
    (0x200, "bigalloc"),
    (0x400, "metadata_csum"),
    (0x800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x4000, "shared_blocks"),
    (0x8000, "verity"),
    (0x10000, "orphan_present"),
];

/// Little-endian u16 at `o` (callers pass in-bounds offsets of fixed-size buffers).
pub fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

/// Little-endian u32 at `o`.
pub fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Stores a little-endian u16.
pub fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

/// Stores a little-endian u32.
pub fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Why the superblock was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SuperError {
    /// Wrong magic.
    #[error("not an ext2 file system (magic {0:#06x}, expected 0xef53)")]
    BadMagic(u16),
    /// A feature the driver cannot handle.
    #[error("unsupported ext2 feature: {0}")]
    Unsupported(String),
    /// Inconsistent geometry.
    #[error("corrupt ext2 superblock: {0}")]
    Corrupt(String),
}

/// The validated superblock and the raw bytes it came from (written back
/// with updated counts).
#[derive(Debug, Clone)]
pub struct Superblock {
    /// The 1024 raw bytes.
    pub raw: Vec<u8>,
    /// Total inodes.
    pub inodes_count: u32,
    /// Total blocks.
    pub blocks_count: u32,
    /// Blocks reserved for root.
    pub r_blocks_count: u32,
    /// Free blocks.
    pub free_blocks: u32,
    /// Free inodes.
    pub free_inodes: u32,
    /// First data block (1 for 1 KiB blocks, else 0).
    pub first_data_block: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Revision (0 or 1).
    pub rev: u32,
    /// First non-reserved inode.
    pub first_ino: u32,
    /// Bytes per on-disk inode.
    pub inode_size: u32,
    /// compat features.
    pub compat: u32,
    /// incompat features.
    pub incompat: u32,
    /// ro_compat features.
    pub ro_compat: u32,
    /// Number of block groups.
    pub group_count: u32,
    /// i_extra_isize for new inodes.
    pub want_extra_isize: u16,
}

impl Superblock {
    /// Parses and validates the superblock (1024 bytes at byte 1024).
    pub fn parse(raw: &[u8]) -> Result<Superblock, SuperError> {
        if raw.len() < SB_SIZE {
            return Err(SuperError::Corrupt("superblock truncated".into()));
        }
        let raw = raw[..SB_SIZE].to_vec();
        let magic = le16(&raw, 56);
        if magic != MAGIC {
            return Err(SuperError::BadMagic(magic));
        }
        let corrupt = |m: String| Err(SuperError::Corrupt(m));
        let log_bs = le32(&raw, 24);
        if log_bs > 6 {
            return corrupt(format!("block size 1024<<{log_bs} (at most 64 KiB)"));
        }
        let block_size = 1024u32 << log_bs;
        let rev = le32(&raw, 76);
        if rev > 1 {
            return corrupt(format!("revision {rev} (0 or 1 expected)"));
        }
        let (first_ino, inode_size, compat, incompat, ro_compat) = if rev == 0 {
            (11, 128, 0, 0, 0)
        } else {
            (
                le32(&raw, 84),
                u32::from(le16(&raw, 88)),
                le32(&raw, 92),
                le32(&raw, 96),
                le32(&raw, 100),
            )
        };
        if !inode_size.is_power_of_two() || inode_size < 128 || inode_size > block_size {
            return corrupt(format!("inode size {inode_size}"));
        }
        let sb = Superblock {
            inodes_count: le32(&raw, 0),
            blocks_count: le32(&raw, 4),
            r_blocks_count: le32(&raw, 8),
            free_blocks: le32(&raw, 12),
            free_inodes: le32(&raw, 16),
            first_data_block: le32(&raw, 20),
            block_size,
            blocks_per_group: le32(&raw, 32),
            inodes_per_group: le32(&raw, 40),
            rev,
            first_ino,
            inode_size,
            compat,
            incompat,
            ro_compat,
            group_count: 0,
            want_extra_isize: if rev == 1 { le16(&raw, 350) } else { 0 },
            raw,
        };
        sb.validate()
    }

    fn validate(mut self) -> Result<Superblock, SuperError> {
        let corrupt = |m: String| Err(SuperError::Corrupt(m));
        let bits = self.block_size * 8;
        if self.first_data_block != u32::from(self.block_size == 1024) {
            return corrupt(format!(
                "first data block {} with {}-byte blocks",
                self.first_data_block, self.block_size
            ));
        }
        if self.blocks_per_group == 0 || self.blocks_per_group > bits {
            return corrupt(format!("{} blocks per group", self.blocks_per_group));
        }
        if self.inodes_per_group == 0 || self.inodes_per_group > bits {
            return corrupt(format!("{} inodes per group", self.inodes_per_group));
        }
        if self.blocks_count <= self.first_data_block {
            return corrupt(format!("{} blocks", self.blocks_count));
        }
        let groups = (self.blocks_count - self.first_data_block).div_ceil(self.blocks_per_group);
        if u64::from(groups) * u64::from(self.inodes_per_group) != u64::from(self.inodes_count) {
            return corrupt(format!(
                "{} inodes, but {groups} groups of {} inodes",
                self.inodes_count, self.inodes_per_group
            ));
        }
        // Without meta_bg the descriptor table sits in group 0, before its bitmaps.
        let gdt_blocks = (u64::from(groups) * GD_SIZE as u64).div_ceil(u64::from(self.block_size));
        if gdt_blocks >= u64::from(self.blocks_per_group) {
            return corrupt(format!("{groups} group descriptors do not fit in group 0"));
        }
        if self.first_ino <= ROOT_INO || self.first_ino > self.inodes_count {
            return corrupt(format!("first inode {}", self.first_ino));
        }
        if self.free_blocks > self.blocks_count || self.free_inodes > self.inodes_count {
            return corrupt("free counts exceed totals".into());
        }
        let max_extra = (self.inode_size - 128) as u16;
        if self.inode_size == 128 {
            self.want_extra_isize = 0;
        } else if self.want_extra_isize < 4
            || self.want_extra_isize > max_extra
            || !self.want_extra_isize.is_multiple_of(4)
        {
            self.want_extra_isize = 32.min(max_extra);
        }
        self.group_count = groups;
        Ok(self)
    }

    /// Refuses incompatible features; returns the name of a ro_compat
    /// feature that forces a read-only mount, if any.
    pub fn check_features(&self) -> Result<Option<&'static str>, SuperError> {
        for &(bit, name) in INCOMPAT_NAMES {
            if self.incompat & bit != 0 {
                return Err(SuperError::Unsupported(name.to_string()));
            }
        }
        let unknown = self.incompat & !(INCOMPAT_FILETYPE | INCOMPAT_FLEX_BG | INCOMPAT_CSUM_SEED);
        if unknown != 0 {
            return Err(SuperError::Unsupported(format!(
                "unknown incompatible feature bits {unknown:#x}"
            )));
        }
        for &(bit, name) in RO_COMPAT_NAMES {
            if self.ro_compat & bit != 0 {
                return Ok(Some(name));
            }
        }
        if self.ro_compat & !RO_COMPAT_RW_OK != 0 {
            return Ok(Some("unknown ro_compat feature"));
        }
        if self.incompat & INCOMPAT_CSUM_SEED != 0 {
            return Ok(Some("metadata_csum_seed"));
        }
        Ok(None)
    }

    /// True when directory entries carry a file type.
    pub fn has_filetype(&self) -> bool {
        self.incompat & INCOMPAT_FILETYPE != 0
    }

    /// Block pointers per indirect block.
    pub fn ptrs_per_block(&self) -> u64 {
        u64::from(self.block_size / 4)
    }

    /// Blocks in group `g` (the last group may be short).
    pub fn blocks_in_group(&self, g: u32) -> u32 {
        let start =
            u64::from(self.first_data_block) + u64::from(g) * u64::from(self.blocks_per_group);
        let left = u64::from(self.blocks_count).saturating_sub(start);
        left.min(u64::from(self.blocks_per_group)) as u32
    }

    /// Blocks of one group's inode table.
    pub fn inode_table_blocks(&self) -> u32 {
        // At most (8 * 64 Ki) inodes of 64 KiB over 64 KiB blocks: fits in u32.
        (u64::from(self.inodes_per_group) * u64::from(self.inode_size))
            .div_ceil(u64::from(self.block_size)) as u32
    }

    /// The raw bytes with the in-memory counts and features stored.
    pub fn to_raw(&mut self) -> &[u8] {
        put32(&mut self.raw, 12, self.free_blocks);
        put32(&mut self.raw, 16, self.free_inodes);
        if self.rev == 1 {
            put32(&mut self.raw, 100, self.ro_compat);
        }
        &self.raw
    }
}

/// A validated group descriptor.
#[derive(Debug, Clone)]
pub struct Group {
    /// The 32 raw bytes.
    pub raw: [u8; GD_SIZE],
    /// Block bitmap block.
    pub block_bitmap: u32,
    /// Inode bitmap block.
    pub inode_bitmap: u32,
    /// First inode table block.
    pub inode_table: u32,
    /// Free blocks.
    pub free_blocks: u16,
    /// Free inodes.
    pub free_inodes: u16,
    /// Directories.
    pub used_dirs: u16,
}

impl Group {
    /// Parses descriptor `g` and checks its blocks lie inside the file system.
    pub fn parse(raw: &[u8], g: u32, sb: &Superblock) -> Result<Group, SuperError> {
        let mut r = [0u8; GD_SIZE];
        r.copy_from_slice(&raw[..GD_SIZE]);
        let gd = Group {
            block_bitmap: le32(&r, 0),
            inode_bitmap: le32(&r, 4),
            inode_table: le32(&r, 8),
            free_blocks: le16(&r, 12),
            free_inodes: le16(&r, 14),
            used_dirs: le16(&r, 16),
            raw: r,
        };
        let inside = |b: u32, n: u32| {
            b >= sb.first_data_block && u64::from(b) + u64::from(n) <= u64::from(sb.blocks_count)
        };
        if !inside(gd.block_bitmap, 1)
            || !inside(gd.inode_bitmap, 1)
            || !inside(gd.inode_table, sb.inode_table_blocks())
        {
            return Err(SuperError::Corrupt(format!(
                "group {g}: bitmap or inode table outside the file system"
            )));
        }
        Ok(gd)
    }

    /// The raw bytes with the in-memory counts stored.
    pub fn to_raw(&mut self) -> [u8; GD_SIZE] {
        put16(&mut self.raw, 12, self.free_blocks);
        put16(&mut self.raw, 14, self.free_inodes);
        put16(&mut self.raw, 16, self.used_dirs);
        self.raw
    }
}

/// An inode as read from disk, with its raw bytes kept so unknown fields
/// (in-inode extended attributes, checksums) survive a write.
#[derive(Debug, Clone)]
pub struct Inode {
    /// Inode number.
    pub ino: u32,
    /// Raw bytes (inode_size long).
    pub raw: Vec<u8>,
    /// Mode (type and permissions).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Access time.
    pub atime: Timespec,
    /// Change time.
    pub ctime: Timespec,
    /// Modification time.
    pub mtime: Timespec,
    /// Deletion time.
    pub dtime: u32,
    /// Link count.
    pub links: u16,
    /// Allocated 512-byte sectors.
    pub blocks: u64,
    /// Flags.
    pub flags: u32,
    /// Block pointers (or symlink target / device number).
    pub block: [u32; N_BLOCKS],
    /// Extended-attribute block.
    pub file_acl: u32,
    /// `i_generation`: set anew when the inode number is given to a new file.
    pub generation: u32,
}

fn time_from(lo: u32, extra: Option<u32>) -> Timespec {
    let mut sec = i64::from(lo as i32);
    let mut nsec = 0;
    if let Some(x) = extra {
        sec += i64::from(x & 3) << 32;
        nsec = (x >> 2).min(999_999_999);
    }
    Timespec { sec, nsec }
}

/// Encodes a time as (seconds field, extra field). Without the extra field
/// the range is that of an i32; with it, 1901..2446 (clamped).
fn time_to(t: Timespec, has_extra: bool) -> (u32, u32) {
    let (min, max) = if has_extra {
        (i64::from(i32::MIN), (3i64 << 32) + i64::from(i32::MAX))
    } else {
        (i64::from(i32::MIN), i64::from(i32::MAX))
    };
    let sec = t.sec.clamp(min, max);
    let lo = sec as i32;
    let epoch = ((sec - i64::from(lo)) >> 32) as u32 & 3;
    (lo as u32, epoch | (t.nsec.min(999_999_999) << 2))
}

impl Inode {
    /// Extra inode bytes in use (0 for 128-byte inodes or a bad value).
    fn extra_isize(&self) -> usize {
        if self.raw.len() <= 128 {
            return 0;
        }
        let e = usize::from(le16(&self.raw, 128));
        if 128 + e > self.raw.len() {
            0
        } else {
            e
        }
    }

    fn extra(&self, off: usize) -> Option<u32> {
        (self.extra_isize() >= off + 4 - 128).then(|| le32(&self.raw, off))
    }

    /// Parses an inode from its `raw` bytes (at least 128).
    pub fn parse(ino: u32, raw: Vec<u8>) -> Inode {
        let r = &raw;
        let mut block = [0u32; N_BLOCKS];
        for (i, b) in block.iter_mut().enumerate() {
            *b = le32(r, 40 + 4 * i);
        }
        let mode = le16(r, 0);
        let size_lo = u64::from(le32(r, 4));
        let size = if FileType::from_mode(u32::from(mode)) == Some(FileType::Regular) {
            size_lo | u64::from(le32(r, 108)) << 32
        } else {
            size_lo
        };
        let mut i = Inode {
            ino,
            mode,
            uid: u32::from(le16(r, 2)) | u32::from(le16(r, 120)) << 16,
            gid: u32::from(le16(r, 24)) | u32::from(le16(r, 122)) << 16,
            size,
            atime: Timespec::default(),
            ctime: Timespec::default(),
            mtime: Timespec::default(),
            dtime: le32(r, 20),
            links: le16(r, 26),
            blocks: u64::from(le32(r, 28)),
            flags: le32(r, 32),
            block,
            file_acl: le32(r, 104),
            generation: le32(r, 100),
            raw: Vec::new(),
        };
        i.raw = raw;
        i.atime = time_from(le32(&i.raw, 8), i.extra(140));
        i.ctime = time_from(le32(&i.raw, 12), i.extra(132));
        i.mtime = time_from(le32(&i.raw, 16), i.extra(136));
        i
    }

    /// A fresh inode of `size` bytes with the given extra size.
    pub fn empty(ino: u32, inode_size: usize, extra_isize: u16) -> Inode {
        let mut raw = vec![0u8; inode_size];
        if inode_size > 128 {
            put16(&mut raw, 128, extra_isize);
        }
        Inode::parse(ino, raw)
    }

    /// Stores the fields into the raw bytes and returns them.
    pub fn to_raw(&mut self) -> &[u8] {
        let extra = self.extra_isize();
        let r = &mut self.raw;
        put16(r, 0, self.mode);
        put16(r, 2, self.uid as u16);
        put32(r, 4, self.size as u32);
        put32(r, 20, self.dtime);
        put16(r, 24, self.gid as u16);
        put16(r, 26, self.links);
        put32(r, 28, self.blocks as u32);
        put32(r, 32, self.flags);
        for (i, b) in self.block.iter().enumerate() {
            put32(r, 40 + 4 * i, *b);
        }
        put32(r, 100, self.generation);
        put32(r, 104, self.file_acl);
        if FileType::from_mode(u32::from(self.mode)) == Some(FileType::Regular) {
            put32(r, 108, (self.size >> 32) as u32);
        }
        put16(r, 120, (self.uid >> 16) as u16);
        put16(r, 122, (self.gid >> 16) as u16);
        for (t, lo_off, ex_off) in [
            (self.atime, 8, 140),
            (self.ctime, 12, 132),
            (self.mtime, 16, 136),
        ] {
            let has_extra = extra >= ex_off + 4 - 128;
            let (lo, ex) = time_to(t, has_extra);
            put32(r, lo_off, lo);
            if has_extra {
                put32(r, ex_off, ex);
            }
        }
        &self.raw
    }

    /// The file type, if the mode names a valid one.
    pub fn kind(&self) -> Option<FileType> {
        FileType::from_mode(u32::from(self.mode))
    }

    /// True for a symlink whose target lives in the block pointers.
    pub fn is_fast_symlink(&self, block_size: u32) -> bool {
        let ea = if self.file_acl != 0 {
            u64::from(block_size / 512)
        } else {
            0
        };
        self.kind() == Some(FileType::Symlink) && self.blocks.saturating_sub(ea) == 0
    }

    /// True when the block pointers are block pointers (not a device
    /// number or an inline symlink).
    pub fn has_block_map(&self, block_size: u32) -> bool {
        match self.kind() {
            Some(FileType::Regular) | Some(FileType::Directory) => true,
            Some(FileType::Symlink) => !self.is_fast_symlink(block_size),
            _ => false,
        }
    }

    /// The device number (Linux `makedev` encoding) of a device inode.
    pub fn rdev(&self) -> u64 {
        let (major, minor) = if self.block[0] != 0 {
            let d = self.block[0];
            ((d >> 8) & 0xff, d & 0xff)
        } else {
            let d = self.block[1];
            ((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00))
        };
        makedev(major, minor)
    }

    /// Stores a device number the way Linux ext2 does.
    pub fn set_rdev(&mut self, rdev: u64) {
        let (major, minor) = (dev_major(rdev), dev_minor(rdev));
        if major < 256 && minor < 256 {
            self.block[0] = (major << 8) | minor;
            self.block[1] = 0;
        } else {
            self.block[0] = 0;
            self.block[1] = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        }
    }
}

/// glibc `makedev`.
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xfffff000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffffff00) << 12) | (mi & 0xff)
}

/// glibc `major`.
pub fn dev_major(d: u64) -> u32 {
    (((d >> 32) & 0xfffff000) | ((d >> 8) & 0xfff)) as u32
}

/// glibc `minor`.
pub fn dev_minor(d: u64) -> u32 {
    (((d >> 12) & 0xffffff00) | (d & 0xff)) as u32
}

/// ext2 directory-entry type byte of a file type.
pub fn dirent_type(k: FileType) -> u8 {
    myst_formats::ext2::structs::ft::of(k)
}

/// File type of an ext2 directory-entry type byte.
pub fn dirent_kind(t: u8) -> Option<FileType> {
    myst_formats::ext2::structs::ft::kind(t)
}

/// One parsed directory entry.
#[derive(Debug, Clone)]
pub struct RawDirent {
    /// Byte offset inside the block.
    pub off: usize,
    /// Inode (0 = unused).
    pub ino: u32,
    /// Record length.
    pub rec_len: usize,
    /// Name.
    pub name: Vec<u8>,
    /// Type byte (0 without the filetype feature).
    pub ftype: u8,
}

/// Space a name of `len` bytes needs.
pub fn dirent_size(len: usize) -> usize {
    (8 + len + 3) & !3
}

/// Decodes a stored record length (65536 is stored as 65535 or 0).
fn rec_len_from_disk(v: u16, bs: usize) -> usize {
    if (v == 65535 || v == 0) && bs == 65536 {
        65536
    } else {
        usize::from(v)
    }
}

/// Encodes a record length.
pub fn rec_len_to_disk(len: usize) -> u16 {
    if len >= 65536 {
        65535
    } else {
        len as u16
    }
}

/// Parses all entries of one directory block, checking each record
/// (as Linux's ext2_check_page does). `None` when the block is corrupt.
pub fn parse_dir_block(b: &[u8], filetype: bool, inodes_count: u32) -> Option<Vec<RawDirent>> {
    let bs = b.len();
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < bs {
        if off + 8 > bs {
            return None;
        }
        let ino = le32(b, off);
        let rec_len = rec_len_from_disk(le16(b, off + 4), bs);
        let (name_len, ftype) = if filetype {
            (usize::from(b[off + 6]), b[off + 7])
        } else {
            (usize::from(le16(b, off + 6)), 0)
        };
        if rec_len < 12 || !rec_len.is_multiple_of(4) || off + rec_len > bs {
            return None;
        }
        if ino != 0
            && (rec_len < dirent_size(name_len)
                || ino > inodes_count
                || name_len == 0
                || name_len > 255)
        {
            return None;
        }
        let name = if ino != 0 {
            b[off + 8..off + 8 + name_len].to_vec()
        } else {
            Vec::new()
        };
        out.push(RawDirent {
            off,
            ino,
            rec_len,
            name,
            ftype,
        });
        off += rec_len;
    }
    Some(out)
}

/// Writes a directory entry header and name at `off`.
pub fn put_dirent(
    b: &mut [u8],
    off: usize,
    ino: u32,
    rec_len: usize,
    name: &[u8],
    ftype: u8,
    filetype: bool,
) {
    put32(b, off, ino);
    put16(b, off + 4, rec_len_to_disk(rec_len));
    if filetype {
        b[off + 6] = name.len() as u8;
        b[off + 7] = ftype;
    } else {
        put16(b, off + 6, name.len() as u16);
    }
    b[off + 8..off + 8 + name.len()].copy_from_slice(name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A plausible superblock to mutate.
    fn base_sb() -> Vec<u8> {
        let mut b = vec![0u8; SB_SIZE];
        put32(&mut b, 0, 2048); // inodes
        put32(&mut b, 4, 8192); // blocks
        put32(&mut b, 12, 100);
        put32(&mut b, 16, 100);
        put32(&mut b, 20, 1);
        put32(&mut b, 32, 8192);
        put32(&mut b, 40, 2048);
        put16(&mut b, 56, MAGIC);
        put32(&mut b, 76, 1);
        put32(&mut b, 84, 11);
        put16(&mut b, 88, 256);
        put32(&mut b, 96, INCOMPAT_FILETYPE);
        b
    }

    #[test]
    fn base_superblock_is_valid() {
        let sb = Superblock::parse(&base_sb()).unwrap();
        assert_eq!(
            (sb.group_count, sb.block_size, sb.want_extra_isize),
            (1, 1024, 32)
        );
        assert_eq!(sb.check_features(), Ok(None));
    }

    proptest! {
        #[test]
        fn superblock_parse_never_panics(muts in proptest::collection::vec((0usize..SB_SIZE, any::<u8>()), 0..12)) {
            let mut b = base_sb();
            for (o, v) in muts {
                b[o] = v;
            }
            if let Ok(sb) = Superblock::parse(&b) {
                let _ = sb.check_features();
                prop_assert!(sb.group_count >= 1);
                prop_assert!(sb.inode_table_blocks() >= 1);
                let raw = vec![0xffu8; GD_SIZE];
                let _ = Group::parse(&raw, 0, &sb);
            }
        }

        #[test]
        fn inode_parse_and_serialize_never_panic(raw in proptest::collection::vec(any::<u8>(), 128..=256usize)) {
            let size = if raw.len() >= 256 { 256 } else { 128 };
            let mut i = Inode::parse(5, raw[..size].to_vec());
            let _ = (i.kind(), i.rdev(), i.is_fast_symlink(1024), i.has_block_map(4096));
            let before = i.clone();
            let again = Inode::parse(5, i.to_raw().to_vec());
            prop_assert_eq!(again.mode, before.mode);
            prop_assert_eq!(again.block, before.block);
            prop_assert_eq!((again.uid, again.gid, again.links), (before.uid, before.gid, before.links));
        }

        #[test]
        fn dir_block_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 1024), filetype: bool) {
            if let Some(ents) = parse_dir_block(&b, filetype, 1000) {
                // Accepted blocks are tiled exactly by their records.
                let mut off = 0;
                for e in &ents {
                    prop_assert_eq!(e.off, off);
                    off += e.rec_len;
                }
                prop_assert_eq!(off, b.len());
            }
        }

        #[test]
        fn device_numbers_round_trip(major in 0u32..4096, minor in 0u32..(1 << 20)) {
            let mut i = Inode::empty(3, 128, 0);
            i.set_rdev(makedev(major, minor));
            let d = i.rdev();
            prop_assert_eq!((dev_major(d), dev_minor(d)), (major, minor));
        }

        #[test]
        fn times_round_trip_in_256_byte_inodes(sec in i64::from(i32::MIN)..(3i64 << 32), nsec in 0u32..1_000_000_000) {
            let mut i = Inode::empty(3, 256, 32);
            i.mtime = Timespec { sec, nsec };
            let back = Inode::parse(3, i.to_raw().to_vec());
            prop_assert_eq!(back.mtime, Timespec { sec, nsec });
        }
    }
}
