//! dm-verity superblock and hash tree, as `veritysetup format` (format 1,
//! sha256, 4096-byte data and hash blocks, 32-byte salt) writes them.
//!
//! Layout at the hash offset S: a 512-byte superblock padded with zeros to
//! 4096 bytes, then the hash tree, top level first and leaves last. A leaf is
//! `SHA256(salt || data block)`, an upper entry `SHA256(salt || hash block)`,
//! and the root hash `SHA256(salt || top block)`.
//!
//! Written here rather than taken from a crate: no crate writes this exact
//! on-disk layout, and the tree geometry is shared by the image writer and the
//! runtime's verifying block device.

use sha2::{Digest, Sha256};

/// Size of data and hash blocks (the only size myst writes or accepts).
pub const BLOCK_SIZE: usize = 4096;
/// Bytes of a SHA-256 digest.
pub const DIGEST_SIZE: usize = 32;
/// Digests per hash block.
pub const DIGESTS_PER_BLOCK: usize = BLOCK_SIZE / DIGEST_SIZE;
/// Bytes of the superblock proper (the rest of its 4096-byte block is zeros).
pub const SUPERBLOCK_SIZE: usize = 512;
/// Salt length myst writes and accepts.
pub const SALT_SIZE: usize = 32;
/// A digest.
pub type Digest32 = [u8; DIGEST_SIZE];

const MAGIC: &[u8; 8] = b"verity\0\0";

/// What is wrong with a verity superblock.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerityError {
    /// The buffer is shorter than a superblock.
    #[error("verity superblock truncated: {0} bytes, need 512")]
    Truncated(usize),
    /// The magic is not `verity\0\0`.
    #[error("no verity superblock (bad magic)")]
    BadMagic,
    /// A field holds a value myst does not accept.
    #[error("unsupported verity superblock: {field} is {value}, expected {expected}")]
    Unsupported {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: String,
        /// Value accepted.
        expected: &'static str,
    },
    /// The data area would overlap the hash area.
    #[error("verity superblock claims {data_blocks} data blocks, more than the {limit} before the hash offset")]
    DataBlocksTooLarge {
        /// Claimed data blocks.
        data_blocks: u64,
        /// Blocks before the hash offset.
        limit: u64,
    },
}

/// A validated verity superblock (only the fields that can vary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// The UUID veritysetup shows.
    pub uuid: [u8; 16],
    /// Number of 4096-byte data blocks covered by the tree.
    pub data_blocks: u64,
    /// The salt.
    pub salt: [u8; SALT_SIZE],
}

impl Superblock {
    /// The 4096-byte block written at the hash offset.
    pub fn to_block(&self) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[16..32].copy_from_slice(&self.uuid);
        b[32..38].copy_from_slice(b"sha256");
        b[64..68].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        b[68..72].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        b[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        b[80..82].copy_from_slice(&(SALT_SIZE as u16).to_le_bytes());
        b[88..88 + SALT_SIZE].copy_from_slice(&self.salt);
        b
    }

    /// Parses and validates a superblock found at `hash_offset`. Every field
    /// is untrusted: only what myst writes (and veritysetup writes by default)
    /// is accepted, and the data area must end at or before the hash offset.
    pub fn parse(buf: &[u8], hash_offset: u64) -> Result<Self, VerityError> {
        if buf.len() < SUPERBLOCK_SIZE {
            return Err(VerityError::Truncated(buf.len()));
        }
        if &buf[0..8] != MAGIC {
            return Err(VerityError::BadMagic);
        }
        let u32_at = |o: usize| u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let check = |field, value: u64, want: u64, expected| {
            if value == want {
                Ok(())
            } else {
                Err(VerityError::Unsupported {
                    field,
                    value: value.to_string(),
                    expected,
                })
            }
        };
        check("version", u32_at(8).into(), 1, "1")?;
        check("hash_type", u32_at(12).into(), 1, "1")?;
        let alg = &buf[32..64];
        let alg_end = alg.iter().position(|&c| c == 0).unwrap_or(alg.len());
        if &alg[..alg_end] != b"sha256" || alg[alg_end..].iter().any(|&c| c != 0) {
            return Err(VerityError::Unsupported {
                field: "algorithm",
                value: String::from_utf8_lossy(&alg[..alg_end]).into_owned(),
                expected: "sha256",
            });
        }
        check(
            "data_block_size",
            u32_at(64).into(),
            BLOCK_SIZE as u64,
            "4096",
        )?;
        check(
            "hash_block_size",
            u32_at(68).into(),
            BLOCK_SIZE as u64,
            "4096",
        )?;
        let salt_size = u16::from_le_bytes([buf[80], buf[81]]);
        check("salt_size", salt_size.into(), SALT_SIZE as u64, "32")?;
        let mut data_blocks_b = [0u8; 8];
        data_blocks_b.copy_from_slice(&buf[72..80]);
        let data_blocks = u64::from_le_bytes(data_blocks_b);
        let limit = hash_offset / BLOCK_SIZE as u64;
        if data_blocks > limit || data_blocks == 0 {
            return Err(VerityError::DataBlocksTooLarge { data_blocks, limit });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&buf[16..32]);
        let mut salt = [0u8; SALT_SIZE];
        salt.copy_from_slice(&buf[88..88 + SALT_SIZE]);
        Ok(Superblock {
            uuid,
            data_blocks,
            salt,
        })
    }
}

/// Shape of the hash tree for a number of data blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Hash blocks per level, leaves first (`levels[0]` hashes data blocks).
    pub level_blocks: Vec<u64>,
}

impl Geometry {
    /// Geometry for `data_blocks` data blocks. For a single data block the
    /// kernel and veritysetup use no hash level at all (the root hash is the
    /// data block's digest); this geometry still has one level there, so
    /// callers handle that case themselves (images myst writes are at least
    /// 8 MiB, and the verifying block device special-cases it).
    pub fn new(data_blocks: u64) -> Self {
        let per = DIGESTS_PER_BLOCK as u64;
        let mut level_blocks = Vec::new();
        let mut n = data_blocks.max(1);
        loop {
            let blocks = n.div_ceil(per);
            level_blocks.push(blocks);
            if blocks == 1 {
                break;
            }
            n = blocks;
        }
        Geometry { level_blocks }
    }

    /// Total hash blocks in the tree.
    pub fn total_blocks(&self) -> u64 {
        self.level_blocks.iter().sum()
    }

    /// Index (in hash blocks from the start of the tree, which begins one
    /// block after the superblock) of the first block of `level`
    /// (0 = leaves). Upper levels come first on disk.
    pub fn level_start(&self, level: usize) -> u64 {
        self.level_blocks[level + 1..].iter().sum()
    }

    /// Bytes of the verity area: superblock block plus tree.
    pub fn area_bytes(&self) -> u64 {
        (1 + self.total_blocks()) * BLOCK_SIZE as u64
    }
}

/// `SHA256(salt || block)`.
pub fn hash_block(salt: &[u8], block: &[u8]) -> Digest32 {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Builds the hash tree from the leaf digests (one per data block). Returns
/// the tree bytes in on-disk order (top level first) and the root hash.
pub fn build_tree(salt: &[u8], leaves: &[Digest32]) -> (Vec<u8>, Digest32) {
    let geo = Geometry::new(leaves.len() as u64);
    let mut levels: Vec<Vec<u8>> = Vec::with_capacity(geo.level_blocks.len());
    let mut digests: Vec<Digest32> = leaves.to_vec();
    if digests.is_empty() {
        digests.push(hash_block(salt, &[0u8; BLOCK_SIZE]));
    }
    for &blocks in &geo.level_blocks {
        let mut level = vec![0u8; blocks as usize * BLOCK_SIZE];
        for (i, d) in digests.iter().enumerate() {
            level[i * DIGEST_SIZE..(i + 1) * DIGEST_SIZE].copy_from_slice(d);
        }
        digests = level
            .chunks(BLOCK_SIZE)
            .map(|b| hash_block(salt, b))
            .collect();
        levels.push(level);
    }
    let root = digests[0];
    let mut out = Vec::with_capacity(geo.total_blocks() as usize * BLOCK_SIZE);
    for level in levels.iter().rev() {
        out.extend_from_slice(level);
    }
    (out, root)
}

/// Writes the hash tree for `leaves` through `write(offset in the tree,
/// bytes)` (top level first on disk, as [`build_tree`] lays it out, padding
/// included) and returns the root hash. Unlike [`build_tree`] it holds no
/// copy of the leaf level, so large images need little memory beyond the
/// leaves themselves.
pub fn write_tree<E>(
    salt: &[u8],
    leaves: &[Digest32],
    mut write: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<Digest32, E> {
    let zero_leaf;
    let leaves = if leaves.is_empty() {
        zero_leaf = [hash_block(salt, &[0u8; BLOCK_SIZE])];
        &zero_leaf[..]
    } else {
        leaves
    };
    let geo = Geometry::new(leaves.len() as u64);
    let mut upper: Vec<Digest32> = Vec::new();
    for level in 0..geo.level_blocks.len() {
        let digests: &[Digest32] = if level == 0 { leaves } else { &upper };
        let bytes = digests.as_flattened();
        let start = geo.level_start(level) * BLOCK_SIZE as u64;
        write(start, bytes)?;
        let pad = (BLOCK_SIZE - bytes.len() % BLOCK_SIZE) % BLOCK_SIZE;
        if pad > 0 {
            write(start + bytes.len() as u64, &vec![0u8; pad])?;
        }
        let next: Vec<Digest32> = bytes
            .chunks(BLOCK_SIZE)
            .map(|c| {
                if c.len() == BLOCK_SIZE {
                    hash_block(salt, c)
                } else {
                    let mut b = vec![0u8; BLOCK_SIZE];
                    b[..c.len()].copy_from_slice(c);
                    hash_block(salt, &b)
                }
            })
            .collect();
        upper = next;
    }
    Ok(upper[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_formats_doc() {
        // N=2048 -> 16 leaf blocks + 1 top.
        let g = Geometry::new(2048);
        assert_eq!(g.level_blocks, vec![16, 1]);
        assert_eq!(g.level_start(1), 0);
        assert_eq!(g.level_start(0), 1);
        assert_eq!(Geometry::new(128).level_blocks, vec![1]);
        assert_eq!(Geometry::new(129).level_blocks, vec![2, 1]);
        assert_eq!(Geometry::new(128 * 128 + 1).level_blocks, vec![129, 2, 1]);
    }

    #[test]
    fn superblock_round_trip_and_rejects() {
        let sb = Superblock {
            uuid: [7; 16],
            data_blocks: 10,
            salt: [9; 32],
        };
        let b = sb.to_block();
        assert_eq!(Superblock::parse(&b, 10 * 4096).unwrap(), sb);
        assert!(matches!(
            Superblock::parse(&b, 9 * 4096),
            Err(VerityError::DataBlocksTooLarge { .. })
        ));
        let mut bad = b.clone();
        bad[32] = b'm';
        assert!(Superblock::parse(&bad, 10 * 4096).is_err());
        let mut bad = b.clone();
        bad[80] = 16;
        assert!(Superblock::parse(&bad, 10 * 4096).is_err());
        assert_eq!(
            Superblock::parse(&b[..100], 0),
            Err(VerityError::Truncated(100))
        );
    }

    #[test]
    fn write_tree_matches_build_tree() {
        let salt = [3u8; 32];
        for n in [0usize, 1, 3, 128, 129, 128 * 128 + 5] {
            let leaves: Vec<Digest32> = (0..n)
                .map(|i| hash_block(&salt, &(i as u64).to_le_bytes()))
                .collect();
            let (tree, root) = build_tree(&salt, &leaves);
            let mut out = vec![0xeeu8; tree.len()];
            let r = write_tree(&salt, &leaves, |off, b| {
                out[off as usize..off as usize + b.len()].copy_from_slice(b);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(r, root, "{n} leaves");
            assert!(out == tree, "{n} leaves");
        }
    }

    #[test]
    fn tree_root_of_single_block_level() {
        let salt = [1u8; 32];
        let leaves: Vec<Digest32> = (0..3u8).map(|i| hash_block(&salt, &[i; 4096])).collect();
        let (tree, root) = build_tree(&salt, &leaves);
        assert_eq!(tree.len(), 4096);
        assert_eq!(&tree[32..64], &leaves[1]);
        assert_eq!(root, hash_block(&salt, &tree));
    }
}
