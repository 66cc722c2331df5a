//! dm-verity: every data block read is hashed and compared with its leaf in
//! the hash tree, and every hash block is verified up to the trusted root
//! hash before it is believed. Verified hash blocks stay cached, so a cold
//! read costs one SHA-256 per data block plus, once per 128 data blocks, a
//! cached-leaf lookup.
//!
//! Large requests go down to the host as one positioned read and are hashed
//! in one pass, which keeps sequential reads close to the SHA-256 limit.
//!
//! Written here (not taken from a crate): no crate verifies this layout
//! block by block against an untrusted host file.

use crate::{check_range, log, BlockDevice, BlockError, BlockResult};
use myst_formats::verity::{
    Digest32, Geometry, Superblock, BLOCK_SIZE, DIGESTS_PER_BLOCK, DIGEST_SIZE,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Why a verity device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum VerityOpenError {
    /// Reading the superblock or the top hash block failed.
    #[error(transparent)]
    Io(#[from] BlockError),
    /// The superblock is invalid.
    #[error("{device}: verity superblock at byte {hash_offset}: {source}")]
    Superblock {
        /// Which device.
        device: String,
        /// Where the superblock was looked for.
        hash_offset: u64,
        /// What is wrong.
        source: myst_formats::verity::VerityError,
    },
    /// The lower device does not have 4096-byte blocks, or the hash offset is unaligned.
    #[error("{device}: verity needs 4096-byte blocks and a 4096-aligned hash offset")]
    Geometry {
        /// Which device.
        device: String,
    },
    /// The hash tree does not fit in the device.
    #[error("{device}: the hash tree ({blocks} blocks after byte {hash_offset}) does not fit in the image")]
    TreeTooLarge {
        /// Which device.
        device: String,
        /// Where the verity area starts.
        hash_offset: u64,
        /// Hash blocks the superblock implies.
        blocks: u64,
    },
    /// The top hash block does not match the trusted root hash.
    #[error("{device}: root hash mismatch (the image was modified or the root hash is wrong)")]
    RootMismatch {
        /// Which device.
        device: String,
    },
}

impl VerityOpenError {
    /// The errno this error turns into.
    pub fn errno(&self) -> crate::Errno {
        match self {
            VerityOpenError::Io(e) => e.errno(),
            VerityOpenError::RootMismatch { .. } => crate::Errno::EIO,
            _ => crate::Errno::EINVAL,
        }
    }
}

/// Default bound on cached hash blocks (64 MiB, enough for 8 GiB of data).
pub const DEFAULT_HASH_CACHE_BLOCKS: usize = 16384;

/// Verified hash blocks by (level, index).
type HashCache = HashMap<(usize, u64), Arc<Vec<u8>>>;

/// A read-only device exposing the verified data area of a verity image.
pub struct VerityDevice {
    lower: Arc<dyn BlockDevice>,
    name: String,
    data_blocks: u64,
    /// Block index in `lower` of the first hash block.
    tree_start: u64,
    geo: Geometry,
    root: Digest32,
    /// SHA-256 state after absorbing the salt; cloned per block.
    salted: Sha256,
    hash_cache: RwLock<HashCache>,
    hash_cache_cap: usize,
    /// One data block and no hash tree.
    single: bool,
}

impl std::fmt::Debug for VerityDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerityDevice")
            .field("name", &self.name)
            .field("data_blocks", &self.data_blocks)
            .finish()
    }
}

impl VerityDevice {
    /// Opens the verity area at byte `hash_offset` of `lower` (4096-byte
    /// blocks), trusting only `root_hash`. Validates the superblock
    /// (docs/FORMATS.md §3) and verifies the top hash block against the root.
    pub fn open(
        lower: Arc<dyn BlockDevice>,
        name: &str,
        hash_offset: u64,
        root_hash: Digest32,
    ) -> Result<VerityDevice, VerityOpenError> {
        let device = name.to_string();
        if lower.block_size() != BLOCK_SIZE || !hash_offset.is_multiple_of(BLOCK_SIZE as u64) {
            return Err(VerityOpenError::Geometry { device });
        }
        let sb_block = hash_offset / BLOCK_SIZE as u64;
        let mut buf = vec![0u8; BLOCK_SIZE];
        lower.read_block(sb_block, &mut buf)?;
        let sb =
            Superblock::parse(&buf, hash_offset).map_err(|source| VerityOpenError::Superblock {
                device: device.clone(),
                hash_offset,
                source,
            })?;
        // veritysetup (like the kernel) uses no hash levels for a single
        // data block: the root hash is that block's digest.
        let single = sb.data_blocks == 1;
        let geo = Geometry::new(sb.data_blocks);
        let tree_start = sb_block + 1;
        let fits = tree_start
            .checked_add(if single { 0 } else { geo.total_blocks() })
            .is_some_and(|end| end <= lower.block_count());
        if !fits {
            return Err(VerityOpenError::TreeTooLarge {
                device,
                hash_offset,
                blocks: geo.total_blocks(),
            });
        }
        let mut salted = Sha256::new();
        salted.update(sb.salt);
        let dev = VerityDevice {
            lower,
            name: device.clone(),
            data_blocks: sb.data_blocks,
            tree_start,
            geo,
            root: root_hash,
            salted,
            hash_cache: RwLock::new(HashMap::new()),
            hash_cache_cap: DEFAULT_HASH_CACHE_BLOCKS,
            single,
        };
        if single {
            return Ok(dev);
        }
        let top = dev.geo.level_blocks.len() - 1;
        match dev.hash_block(top, 0) {
            Ok(_) => Ok(dev),
            Err(BlockError::Integrity { .. }) => Err(VerityOpenError::RootMismatch { device }),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes the bound on cached hash blocks.
    pub fn set_hash_cache_blocks(&mut self, blocks: usize) {
        self.hash_cache_cap = blocks.max(16);
    }

    fn digest(&self, block: &[u8]) -> Digest32 {
        self.salted.clone().chain_update(block).finalize().into()
    }

    fn integrity(&self, what: String, block: u64) -> BlockError {
        log(&format!(
            "verity: {}: hash mismatch in {what} {block}; the read fails with EIO",
            self.name
        ));
        BlockError::Integrity {
            device: self.name.clone(),
            what,
            block,
        }
    }

    /// The verified hash block `index` of `level` (0 = leaves).
    fn hash_block(&self, level: usize, index: u64) -> BlockResult<Arc<Vec<u8>>> {
        if let Ok(c) = self.hash_cache.read() {
            if let Some(b) = c.get(&(level, index)) {
                return Ok(b.clone());
            }
        }
        let levels = self.geo.level_blocks.len();
        let in_level = self.geo.level_blocks.get(level).copied().unwrap_or(0);
        if index >= in_level {
            return Err(BlockError::OutOfRange {
                first: index,
                end: index + 1,
                count: in_level,
            });
        }
        let mut buf = vec![0u8; BLOCK_SIZE];
        self.lower.read_block(
            self.tree_start + self.geo.level_start(level) + index,
            &mut buf,
        )?;
        let expected: Digest32 = if level + 1 == levels {
            self.root
        } else {
            let parent = self.hash_block(level + 1, index / DIGESTS_PER_BLOCK as u64)?;
            let at = (index % DIGESTS_PER_BLOCK as u64) as usize * DIGEST_SIZE;
            let mut d = [0u8; DIGEST_SIZE];
            d.copy_from_slice(&parent[at..at + DIGEST_SIZE]);
            d
        };
        if self.digest(&buf) != expected {
            return Err(self.integrity(format!("hash block (level {level})"), index));
        }
        let b = Arc::new(buf);
        if let Ok(mut c) = self.hash_cache.write() {
            if c.len() >= self.hash_cache_cap {
                // Leaves are the bulk and cheap to re-verify; upper levels stay.
                c.retain(|&(l, _), _| l != 0);
            }
            c.insert((level, index), b.clone());
        }
        Ok(b)
    }
}

impl BlockDevice for VerityDevice {
    fn block_size(&self) -> usize {
        BLOCK_SIZE
    }
    fn block_count(&self) -> u64 {
        self.data_blocks
    }
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
        let n = check_range(first, buf.len(), BLOCK_SIZE, self.data_blocks)?;
        if n == 0 {
            return Ok(());
        }
        self.lower.read_blocks(first, buf)?;
        if self.single {
            if self.digest(buf) != self.root {
                return Err(self.integrity("data block".to_string(), 0));
            }
            return Ok(());
        }
        let per = DIGESTS_PER_BLOCK as u64;
        let mut leaf: Option<(u64, Arc<Vec<u8>>)> = None;
        for (i, block) in buf.chunks_exact(BLOCK_SIZE).enumerate() {
            let b = first + i as u64;
            let leaf_index = b / per;
            let hb = match &leaf {
                Some((idx, hb)) if *idx == leaf_index => hb.clone(),
                _ => {
                    let hb = self.hash_block(0, leaf_index)?;
                    leaf = Some((leaf_index, hb.clone()));
                    hb
                }
            };
            let at = (b % per) as usize * DIGEST_SIZE;
            if self.digest(block)[..] != hb[at..at + DIGEST_SIZE] {
                return Err(self.integrity("data block".to_string(), b));
            }
        }
        Ok(())
    }
}
