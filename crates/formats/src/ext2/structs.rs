//! ext2 on-disk structures (revision 1): superblock, group descriptor,
//! inode and directory entry, each with a writer and a validating parser.
//!
//! Only the fields myst writes or a reader needs are kept; everything else
//! is written as zero. Parsers treat their input as untrusted: they check
//! sizes and ranges and never panic.

use super::Ext2Error;
use crate::mode;

/// Byte offset of the primary superblock.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Bytes of a superblock.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// `s_magic`.
pub const MAGIC: u16 = 0xef53;
/// Inode of the root directory.
pub const ROOT_INO: u32 = 2;
/// First non-reserved inode (lost+found).
pub const FIRST_INO: u32 = 11;
/// Inode size myst writes (what mke2fs writes by default).
pub const INODE_SIZE: u16 = 256;
/// Inode size of revision 0 file systems.
pub const GOOD_OLD_INODE_SIZE: u16 = 128;
/// Extra inode bytes myst uses beyond the first 128 (`i_extra_isize`).
pub const EXTRA_ISIZE: u16 = 32;
/// Bytes of a classic group descriptor.
pub const GROUP_DESC_SIZE: usize = 32;
/// Direct block pointers in an inode.
pub const N_DIRECT: usize = 12;
/// Block pointers in an inode (direct + single, double, triple indirect).
pub const N_BLOCKS: usize = 15;
/// Longest file name.
pub const NAME_MAX: usize = 255;
/// Largest link count the on-disk field holds that Linux still accepts.
pub const LINK_MAX: u32 = 65000;
/// Largest directory link count Linux's ext2 driver accepts (no dir_nlink).
pub const DIR_LINK_MAX: u32 = 32000;

/// `s_feature_incompat`: directory entries carry a file type.
pub const FEATURE_INCOMPAT_FILETYPE: u32 = 0x0002;
/// `s_feature_ro_compat`: superblock backups only in groups 0, 1, 3^n, 5^n, 7^n.
pub const FEATURE_RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
/// `s_feature_ro_compat`: files may be 2 GiB or larger.
pub const FEATURE_RO_COMPAT_LARGE_FILE: u32 = 0x0002;

/// `s_state`: cleanly unmounted.
pub const STATE_VALID: u16 = 1;
/// `s_errors`: continue on errors.
pub const ERRORS_CONTINUE: u16 = 1;
/// `s_flags`: directory hashes use signed chars (what x86 mke2fs sets).
pub const FLAGS_SIGNED_HASH: u32 = 0x0001;

// Mode bits in the 16-bit `i_mode` field: the definitions of crate::mode.
/// Mode type bits.
pub const S_IFMT: u16 = mode::S_IFMT as u16;
/// Socket.
pub const S_IFSOCK: u16 = mode::S_IFSOCK as u16;
/// Symbolic link.
pub const S_IFLNK: u16 = mode::S_IFLNK as u16;
/// Regular file.
pub const S_IFREG: u16 = mode::S_IFREG as u16;
/// Block device.
pub const S_IFBLK: u16 = mode::S_IFBLK as u16;
/// Directory.
pub const S_IFDIR: u16 = mode::S_IFDIR as u16;
/// Character device.
pub const S_IFCHR: u16 = mode::S_IFCHR as u16;
/// FIFO.
pub const S_IFIFO: u16 = mode::S_IFIFO as u16;

/// Directory entry file types (`filetype` feature).
pub mod ft {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHR: u8 = 3;
    /// Block device.
    pub const BLK: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;

    use crate::mode::FileType;

    /// The directory-entry type byte of `t`.
    pub const fn of(t: FileType) -> u8 {
        match t {
            FileType::Regular => REG,
            FileType::Directory => DIR,
            FileType::CharDev => CHR,
            FileType::BlockDev => BLK,
            FileType::Fifo => FIFO,
            FileType::Socket => SOCK,
            FileType::Symlink => SYMLINK,
        }
    }

    /// The file type a directory-entry type byte names, if any.
    pub const fn kind(b: u8) -> Option<FileType> {
        Some(match b {
            REG => FileType::Regular,
            DIR => FileType::Directory,
            CHR => FileType::CharDev,
            BLK => FileType::BlockDev,
            FIFO => FileType::Fifo,
            SOCK => FileType::Socket,
            SYMLINK => FileType::Symlink,
            _ => return None,
        })
    }
}

fn rd16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn wr16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn wr32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

fn bad(what: impl Into<String>) -> Ext2Error {
    Ext2Error::Corrupt(what.into())
}

/// The fields of an ext2 superblock that myst writes and reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Superblock {
    /// `s_inodes_count`.
    pub inodes_count: u32,
    /// `s_blocks_count` (including block 0).
    pub blocks_count: u32,
    /// `s_r_blocks_count`.
    pub r_blocks_count: u32,
    /// `s_free_blocks_count`.
    pub free_blocks_count: u32,
    /// `s_free_inodes_count`.
    pub free_inodes_count: u32,
    /// `s_first_data_block` (1 for 1 KiB blocks, else 0).
    pub first_data_block: u32,
    /// `s_log_block_size`: block size is `1024 << log_block_size`.
    pub log_block_size: u32,
    /// `s_blocks_per_group`.
    pub blocks_per_group: u32,
    /// `s_inodes_per_group`.
    pub inodes_per_group: u32,
    /// `s_mtime`.
    pub mtime: u32,
    /// `s_wtime`.
    pub wtime: u32,
    /// `s_mnt_count`.
    pub mnt_count: u16,
    /// `s_max_mnt_count` (0xffff = no forced check).
    pub max_mnt_count: u16,
    /// `s_state`.
    pub state: u16,
    /// `s_errors`.
    pub errors: u16,
    /// `s_lastcheck`.
    pub lastcheck: u32,
    /// `s_rev_level` (0 or 1).
    pub rev_level: u32,
    /// `s_first_ino`.
    pub first_ino: u32,
    /// `s_inode_size`.
    pub inode_size: u16,
    /// `s_block_group_nr`: the group holding this copy.
    pub block_group_nr: u16,
    /// `s_feature_compat`.
    pub feature_compat: u32,
    /// `s_feature_incompat`.
    pub feature_incompat: u32,
    /// `s_feature_ro_compat`.
    pub feature_ro_compat: u32,
    /// `s_uuid`.
    pub uuid: [u8; 16],
    /// `s_volume_name`.
    pub volume_name: [u8; 16],
    /// `s_hash_seed`.
    pub hash_seed: [u8; 16],
    /// `s_def_hash_version`.
    pub def_hash_version: u8,
    /// `s_mkfs_time`.
    pub mkfs_time: u32,
    /// `s_min_extra_isize`.
    pub min_extra_isize: u16,
    /// `s_want_extra_isize`.
    pub want_extra_isize: u16,
    /// `s_flags`.
    pub flags: u32,
}

impl Superblock {
    /// Block size in bytes.
    pub fn block_size(&self) -> u64 {
        1024u64 << self.log_block_size.min(16)
    }

    /// Number of block groups.
    pub fn group_count(&self) -> u64 {
        let data = u64::from(self.blocks_count).saturating_sub(u64::from(self.first_data_block));
        data.div_ceil(u64::from(self.blocks_per_group.max(1)))
    }

    /// The 1024 bytes of the superblock.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        wr32(&mut b, 0, self.inodes_count);
        wr32(&mut b, 4, self.blocks_count);
        wr32(&mut b, 8, self.r_blocks_count);
        wr32(&mut b, 12, self.free_blocks_count);
        wr32(&mut b, 16, self.free_inodes_count);
        wr32(&mut b, 20, self.first_data_block);
        wr32(&mut b, 24, self.log_block_size);
        wr32(&mut b, 28, self.log_block_size); // s_log_frag_size
        wr32(&mut b, 32, self.blocks_per_group);
        wr32(&mut b, 36, self.blocks_per_group); // s_frags_per_group
        wr32(&mut b, 40, self.inodes_per_group);
        wr32(&mut b, 44, self.mtime);
        wr32(&mut b, 48, self.wtime);
        wr16(&mut b, 52, self.mnt_count);
        wr16(&mut b, 54, self.max_mnt_count);
        wr16(&mut b, 56, MAGIC);
        wr16(&mut b, 58, self.state);
        wr16(&mut b, 60, self.errors);
        wr32(&mut b, 64, self.lastcheck);
        wr32(&mut b, 76, self.rev_level);
        wr32(&mut b, 84, self.first_ino);
        wr16(&mut b, 88, self.inode_size);
        wr16(&mut b, 90, self.block_group_nr);
        wr32(&mut b, 92, self.feature_compat);
        wr32(&mut b, 96, self.feature_incompat);
        wr32(&mut b, 100, self.feature_ro_compat);
        b[104..120].copy_from_slice(&self.uuid);
        b[120..136].copy_from_slice(&self.volume_name);
        b[236..252].copy_from_slice(&self.hash_seed);
        b[252] = self.def_hash_version;
        wr32(&mut b, 264, self.mkfs_time);
        wr16(&mut b, 348, self.min_extra_isize);
        wr16(&mut b, 350, self.want_extra_isize);
        wr32(&mut b, 352, self.flags);
        b
    }

    /// Parses and validates a superblock (the 1024 bytes at offset 1024).
    /// Checks the magic, the revision, the block size (1 to 64 KiB), the
    /// group geometry, the inode size and that the counts are coherent.
    pub fn parse(b: &[u8]) -> Result<Self, Ext2Error> {
        if b.len() < SUPERBLOCK_SIZE {
            return Err(bad(format!("superblock truncated ({} bytes)", b.len())));
        }
        if rd16(b, 56) != MAGIC {
            return Err(bad("no ext2 superblock (bad magic)"));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[104..120]);
        let mut volume_name = [0u8; 16];
        volume_name.copy_from_slice(&b[120..136]);
        let mut hash_seed = [0u8; 16];
        hash_seed.copy_from_slice(&b[236..252]);
        let sb = Superblock {
            inodes_count: rd32(b, 0),
            blocks_count: rd32(b, 4),
            r_blocks_count: rd32(b, 8),
            free_blocks_count: rd32(b, 12),
            free_inodes_count: rd32(b, 16),
            first_data_block: rd32(b, 20),
            log_block_size: rd32(b, 24),
            blocks_per_group: rd32(b, 32),
            inodes_per_group: rd32(b, 40),
            mtime: rd32(b, 44),
            wtime: rd32(b, 48),
            mnt_count: rd16(b, 52),
            max_mnt_count: rd16(b, 54),
            state: rd16(b, 58),
            errors: rd16(b, 60),
            lastcheck: rd32(b, 64),
            rev_level: rd32(b, 76),
            first_ino: rd32(b, 84),
            inode_size: rd16(b, 88),
            block_group_nr: rd16(b, 90),
            feature_compat: rd32(b, 92),
            feature_incompat: rd32(b, 96),
            feature_ro_compat: rd32(b, 100),
            uuid,
            volume_name,
            hash_seed,
            def_hash_version: b[252],
            mkfs_time: rd32(b, 264),
            min_extra_isize: rd16(b, 348),
            want_extra_isize: rd16(b, 350),
            flags: rd32(b, 352),
        };
        sb.validate()?;
        Ok(sb)
    }

    fn validate(&self) -> Result<(), Ext2Error> {
        if self.rev_level > 1 {
            return Err(bad(format!("unknown revision {}", self.rev_level)));
        }
        if self.log_block_size > 6 {
            return Err(bad(format!(
                "block size 1024<<{} is too large",
                self.log_block_size
            )));
        }
        let bs = self.block_size();
        let want_first = u32::from(bs == 1024);
        if self.first_data_block != want_first {
            return Err(bad(format!(
                "first data block {} with {bs}-byte blocks",
                self.first_data_block
            )));
        }
        let bits = bs * 8;
        if self.blocks_per_group == 0 || u64::from(self.blocks_per_group) > bits {
            return Err(bad(format!(
                "{} blocks per group (1..={bits})",
                self.blocks_per_group
            )));
        }
        if self.inodes_per_group == 0 || u64::from(self.inodes_per_group) > bits {
            return Err(bad(format!(
                "{} inodes per group (1..={bits})",
                self.inodes_per_group
            )));
        }
        if self.blocks_count <= self.first_data_block {
            return Err(bad(format!("{} blocks", self.blocks_count)));
        }
        let isz = self.inode_size();
        if isz < GOOD_OLD_INODE_SIZE || !isz.is_power_of_two() || u64::from(isz) > bs {
            return Err(bad(format!("inode size {isz}")));
        }
        if self.rev_level == 1 && self.first_ino < FIRST_INO {
            return Err(bad(format!("first inode {}", self.first_ino)));
        }
        let max_inodes = self.group_count() * u64::from(self.inodes_per_group);
        if u64::from(self.inodes_count) > max_inodes || self.inodes_count < FIRST_INO {
            return Err(bad(format!(
                "{} inodes for {} groups of {}",
                self.inodes_count,
                self.group_count(),
                self.inodes_per_group
            )));
        }
        if self.free_blocks_count > self.blocks_count || self.free_inodes_count > self.inodes_count
        {
            return Err(bad("free counts exceed totals"));
        }
        Ok(())
    }

    /// Inode size in bytes (128 for revision 0).
    pub fn inode_size(&self) -> u16 {
        if self.rev_level == 0 {
            GOOD_OLD_INODE_SIZE
        } else {
            self.inode_size
        }
    }
}

/// A classic 32-byte block group descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupDesc {
    /// `bg_block_bitmap`.
    pub block_bitmap: u32,
    /// `bg_inode_bitmap`.
    pub inode_bitmap: u32,
    /// `bg_inode_table`.
    pub inode_table: u32,
    /// `bg_free_blocks_count`.
    pub free_blocks_count: u16,
    /// `bg_free_inodes_count`.
    pub free_inodes_count: u16,
    /// `bg_used_dirs_count`.
    pub used_dirs_count: u16,
    /// `bg_flags`.
    pub flags: u16,
}

impl GroupDesc {
    /// The 32 bytes of the descriptor.
    pub fn to_bytes(&self) -> [u8; GROUP_DESC_SIZE] {
        let mut b = [0u8; GROUP_DESC_SIZE];
        wr32(&mut b, 0, self.block_bitmap);
        wr32(&mut b, 4, self.inode_bitmap);
        wr32(&mut b, 8, self.inode_table);
        wr16(&mut b, 12, self.free_blocks_count);
        wr16(&mut b, 14, self.free_inodes_count);
        wr16(&mut b, 16, self.used_dirs_count);
        wr16(&mut b, 18, self.flags);
        b
    }

    /// Parses a descriptor and checks that its bitmaps and inode table lie
    /// inside a file system of `blocks_count` blocks.
    pub fn parse(b: &[u8], blocks_count: u32) -> Result<Self, Ext2Error> {
        if b.len() < GROUP_DESC_SIZE {
            return Err(bad("group descriptor truncated"));
        }
        let d = GroupDesc {
            block_bitmap: rd32(b, 0),
            inode_bitmap: rd32(b, 4),
            inode_table: rd32(b, 8),
            free_blocks_count: rd16(b, 12),
            free_inodes_count: rd16(b, 14),
            used_dirs_count: rd16(b, 16),
            flags: rd16(b, 18),
        };
        for (name, v) in [
            ("block bitmap", d.block_bitmap),
            ("inode bitmap", d.inode_bitmap),
            ("inode table", d.inode_table),
        ] {
            if v == 0 || v >= blocks_count {
                return Err(bad(format!(
                    "group descriptor: {name} at block {v} outside 1..{blocks_count}"
                )));
            }
        }
        Ok(d)
    }
}

/// An inode (the classic 128 bytes plus `i_extra_isize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inode {
    /// `i_mode`: type and permission bits.
    pub mode: u16,
    /// Owner (low and high halves).
    pub uid: u32,
    /// Group (low and high halves).
    pub gid: u32,
    /// Size in bytes (`i_size` and `i_size_high`).
    pub size: u64,
    /// `i_atime` (seconds, signed on Linux).
    pub atime: u32,
    /// `i_ctime`.
    pub ctime: u32,
    /// `i_mtime`.
    pub mtime: u32,
    /// `i_dtime`.
    pub dtime: u32,
    /// `i_links_count`.
    pub links_count: u16,
    /// `i_blocks`: 512-byte sectors allocated, indirect blocks included.
    pub blocks: u32,
    /// `i_flags`.
    pub flags: u32,
    /// `i_block`: block map, inline symlink target or device number.
    pub block: [u32; N_BLOCKS],
    /// `i_generation`.
    pub generation: u32,
    /// `i_file_acl`.
    pub file_acl: u32,
    /// `i_extra_isize` (only stored when the inode is larger than 128 bytes).
    pub extra_isize: u16,
}

impl Inode {
    /// Writes the inode into `b` (at least 128 bytes; `i_extra_isize` is
    /// written when `b` is larger). The rest of `b` is left as it is.
    pub fn write_to(&self, b: &mut [u8]) {
        wr16(b, 0, self.mode);
        wr16(b, 2, self.uid as u16);
        wr32(b, 4, self.size as u32);
        wr32(b, 8, self.atime);
        wr32(b, 12, self.ctime);
        wr32(b, 16, self.mtime);
        wr32(b, 20, self.dtime);
        wr16(b, 24, self.gid as u16);
        wr16(b, 26, self.links_count);
        wr32(b, 28, self.blocks);
        wr32(b, 32, self.flags);
        for (i, v) in self.block.iter().enumerate() {
            wr32(b, 40 + 4 * i, *v);
        }
        wr32(b, 100, self.generation);
        wr32(b, 104, self.file_acl);
        wr32(b, 108, (self.size >> 32) as u32);
        wr16(b, 120, (self.uid >> 16) as u16);
        wr16(b, 122, (self.gid >> 16) as u16);
        if b.len() > usize::from(GOOD_OLD_INODE_SIZE) + 2 {
            wr16(b, 128, self.extra_isize);
        }
    }

    /// Parses an inode of `b.len()` bytes (128 or more).
    pub fn parse(b: &[u8]) -> Result<Self, Ext2Error> {
        if b.len() < usize::from(GOOD_OLD_INODE_SIZE) {
            return Err(bad(format!("inode truncated ({} bytes)", b.len())));
        }
        let mut block = [0u32; N_BLOCKS];
        for (i, v) in block.iter_mut().enumerate() {
            *v = rd32(b, 40 + 4 * i);
        }
        let extra_isize = if b.len() > usize::from(GOOD_OLD_INODE_SIZE) + 2 {
            let e = rd16(b, 128);
            if usize::from(e) + usize::from(GOOD_OLD_INODE_SIZE) > b.len() {
                return Err(bad(format!("inode extra size {e} exceeds the inode")));
            }
            e
        } else {
            0
        };
        Ok(Inode {
            mode: rd16(b, 0),
            uid: u32::from(rd16(b, 2)) | (u32::from(rd16(b, 120)) << 16),
            size: u64::from(rd32(b, 4)) | (u64::from(rd32(b, 108)) << 32),
            atime: rd32(b, 8),
            ctime: rd32(b, 12),
            mtime: rd32(b, 16),
            dtime: rd32(b, 20),
            gid: u32::from(rd16(b, 24)) | (u32::from(rd16(b, 122)) << 16),
            links_count: rd16(b, 26),
            blocks: rd32(b, 28),
            flags: rd32(b, 32),
            block,
            generation: rd32(b, 100),
            file_acl: rd32(b, 104),
            extra_isize,
        })
    }

    /// The directory entry file type of this inode's mode.
    pub fn file_type(&self) -> u8 {
        mode_file_type(self.mode)
    }
}

/// The directory entry file type for a mode.
pub fn mode_file_type(mode: u16) -> u8 {
    match mode::FileType::from_mode(mode as u32) {
        Some(t) => ft::of(t),
        None => ft::UNKNOWN,
    }
}

/// Encodes a device number the way Linux ext2 stores it in `i_block`:
/// the old 16-bit form in `i_block[0]` when it fits, else the new 32-bit
/// form in `i_block[1]`.
pub fn encode_device(major: u32, minor: u32) -> [u32; 2] {
    if major < 256 && minor < 256 {
        [(major << 8) | minor, 0]
    } else {
        [
            0,
            (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12),
        ]
    }
}

/// Decodes a device number from `i_block[0..2]` as Linux does.
pub fn decode_device(block: &[u32; N_BLOCKS]) -> (u32, u32) {
    if block[0] != 0 {
        ((block[0] >> 8) & 0xff, block[0] & 0xff)
    } else {
        let d = block[1];
        ((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00))
    }
}

/// Bytes a directory entry with a name of `name_len` bytes needs.
pub fn dir_rec_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

/// One directory entry, borrowed from a directory block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Inode number (0 = unused slot).
    pub inode: u32,
    /// Bytes from this entry to the next.
    pub rec_len: u16,
    /// File type (`ft::*`).
    pub file_type: u8,
    /// The name.
    pub name: &'a [u8],
}

impl DirEntry<'_> {
    /// Writes the entry at the start of `b` (which must hold `rec_len` bytes).
    pub fn write_to(&self, b: &mut [u8]) {
        wr32(b, 0, self.inode);
        wr16(b, 4, self.rec_len);
        b[6] = self.name.len() as u8;
        b[7] = self.file_type;
        b[8..8 + self.name.len()].copy_from_slice(self.name);
    }
}

/// Parses all entries of one directory block, validating each record
/// length (at least 8 + name, a multiple of 4, inside the block) and name.
pub fn parse_dir_block(block: &[u8]) -> Result<Vec<DirEntry<'_>>, Ext2Error> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < block.len() {
        if block.len() - off < 8 {
            return Err(bad(format!("directory entry at {off} truncated")));
        }
        let inode = rd32(block, off);
        let rec_len = rd16(block, off + 4);
        let name_len = usize::from(block[off + 6]);
        let file_type = block[off + 7];
        let rl = usize::from(rec_len);
        if rl < 8 || rl % 4 != 0 || rl > block.len() - off {
            return Err(bad(format!("directory entry at {off}: record length {rl}")));
        }
        if inode != 0 && dir_rec_len(name_len) > rl {
            return Err(bad(format!(
                "directory entry at {off}: name of {name_len} bytes in record of {rl}"
            )));
        }
        if inode != 0 {
            let name = &block[off + 8..off + 8 + name_len];
            if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
                return Err(bad(format!("directory entry at {off}: invalid name")));
            }
            out.push(DirEntry {
                inode,
                rec_len,
                file_type,
                name,
            });
        }
        off += rl;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_sb() -> impl Strategy<Value = Superblock> {
        (
            (0u32..=2, 1u32..=4, 1u32..=64, 0u32..4),
            (
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<u32>(),
                any::<u16>(),
            ),
        )
            .prop_map(|((log, groups, ipg8, extra), (uuid, seed, t, nr))| {
                let bs = 1024u32 << log;
                let bpg = bs * 8;
                let first = u32::from(bs == 1024);
                let ipg = ipg8 * 8;
                Superblock {
                    inodes_count: ipg * groups,
                    blocks_count: first + bpg * groups - extra,
                    r_blocks_count: 0,
                    free_blocks_count: 5,
                    free_inodes_count: 1,
                    first_data_block: first,
                    log_block_size: log,
                    blocks_per_group: bpg,
                    inodes_per_group: ipg,
                    mtime: t,
                    wtime: t ^ 1,
                    mnt_count: 0,
                    max_mnt_count: 0xffff,
                    state: STATE_VALID,
                    errors: ERRORS_CONTINUE,
                    lastcheck: t,
                    rev_level: 1,
                    first_ino: FIRST_INO,
                    inode_size: INODE_SIZE,
                    block_group_nr: nr,
                    feature_compat: 0,
                    feature_incompat: FEATURE_INCOMPAT_FILETYPE,
                    feature_ro_compat: 3,
                    uuid,
                    volume_name: [0; 16],
                    hash_seed: seed,
                    def_hash_version: 1,
                    mkfs_time: t,
                    min_extra_isize: 32,
                    want_extra_isize: 32,
                    flags: FLAGS_SIGNED_HASH,
                }
            })
            .prop_filter("enough inodes", |sb| sb.inodes_count >= FIRST_INO)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn superblock_round_trip(sb in arb_sb()) {
            let b = sb.to_bytes();
            prop_assert_eq!(Superblock::parse(&b).unwrap(), sb);
        }

        #[test]
        fn superblock_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..1100), magic in any::<bool>()) {
            let mut b = b;
            if magic && b.len() > 58 {
                b[56] = 0x53;
                b[57] = 0xef;
            }
            let _ = Superblock::parse(&b);
        }

        #[test]
        fn group_desc_round_trip(bb in 1u32..1000, ib in 1u32..1000, it in 1u32..1000, f in any::<u16>(), fi in any::<u16>(), d in any::<u16>()) {
            let g = GroupDesc { block_bitmap: bb, inode_bitmap: ib, inode_table: it, free_blocks_count: f, free_inodes_count: fi, used_dirs_count: d, flags: 0 };
            prop_assert_eq!(GroupDesc::parse(&g.to_bytes(), 1000).unwrap(), g);
            prop_assert!(GroupDesc::parse(&g.to_bytes(), 1).is_err());
        }

        #[test]
        fn group_desc_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40), n in any::<u32>()) {
            let _ = GroupDesc::parse(&b, n);
        }

        #[test]
        fn inode_round_trip(mode in any::<u16>(), uid in any::<u32>(), gid in any::<u32>(), size in any::<u64>(),
                            t in any::<[u32; 3]>(), links in any::<u16>(), blocks in any::<u32>(), block in any::<[u32; 15]>()) {
            let i = Inode { mode, uid, gid, size, atime: t[0], ctime: t[1], mtime: t[2], dtime: 0, links_count: links,
                            blocks, flags: 0, block, generation: 0, file_acl: 0, extra_isize: EXTRA_ISIZE };
            let mut b = [0u8; 256];
            i.write_to(&mut b);
            prop_assert_eq!(Inode::parse(&b).unwrap(), i);
            let mut small = [0u8; 128];
            i.write_to(&mut small);
            prop_assert_eq!(Inode::parse(&small).unwrap(), Inode { extra_isize: 0, ..i });
        }

        #[test]
        fn inode_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Inode::parse(&b);
        }

        #[test]
        fn dir_block_round_trip(names in proptest::collection::vec("[a-z0-9._-]{1,40}", 1..20)) {
            let mut block = vec![0u8; 4096];
            let mut off = 0;
            let mut written = Vec::new();
            for (i, n) in names.iter().enumerate() {
                let need = dir_rec_len(n.len());
                if off + need > 4096 { break; }
                let last = i + 1 == names.len() || off + need + dir_rec_len(names[i + 1].len()) > 4096;
                let rec = if last { 4096 - off } else { need };
                DirEntry { inode: i as u32 + 12, rec_len: rec as u16, file_type: ft::REG, name: n.as_bytes() }
                    .write_to(&mut block[off..off + rec]);
                written.push(n.clone());
                off += rec;
                if last { break; }
            }
            let parsed = parse_dir_block(&block).unwrap();
            let got: Vec<String> = parsed.iter().map(|e| String::from_utf8(e.name.to_vec()).unwrap()).collect();
            prop_assert_eq!(got, written);
        }

        #[test]
        fn dir_block_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_dir_block(&b);
        }

        #[test]
        fn device_round_trip(major in 0u32..4096, minor in 0u32..(1 << 20)) {
            let e = encode_device(major, minor);
            let mut block = [0u32; 15];
            block[0] = e[0];
            block[1] = e[1];
            prop_assume!(!(major == 0 && minor == 0));
            prop_assert_eq!(decode_device(&block), (major, minor));
        }
    }
}
