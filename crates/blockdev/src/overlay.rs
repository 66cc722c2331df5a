//! The ephemeral overlay: copy-on-write writes kept in a [`BlockStore`],
//! never sent to the host. Reads of written blocks come from the store,
//! the rest from the (read-only, verified) device below.
//!
//! Written blocks are never evicted (Mystikos can lose them); a full store
//! turns into ENOSPC. The store is a trait so that a shared-memory (memfd)
//! store can let forked processes see one file system.

use crate::{check_range, BlockDevice, BlockError, BlockResult};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Where an overlay keeps written blocks.
pub trait BlockStore: Send + Sync {
    /// Bytes per block.
    fn block_size(&self) -> usize;
    /// Copies block `block` into `out` if it was written; true when found.
    fn get(&self, block: u64, out: &mut [u8]) -> BlockResult<bool>;
    /// Stores (or replaces) a block; `NoSpace` when the budget is used up.
    fn put(&self, block: u64, data: &[u8]) -> BlockResult<()>;
    /// True when some block was ever written (a fast path for reads).
    fn is_empty(&self) -> bool;
    /// Bytes of block data held.
    fn used_bytes(&self) -> u64;
    /// New blocks that still fit in the budget (`None`: no limit).
    fn blocks_left(&self) -> Option<u64> {
        None
    }
    /// See [`BlockDevice::shared_generation`].
    fn generation(&self) -> Option<u64> {
        None
    }
    /// See [`BlockDevice::shared_lock`].
    fn lock(&self) {}
    /// See [`BlockDevice::shared_unlock`].
    fn unlock(&self) {}
}

/// A [`BlockStore`] in process memory with a byte budget.
#[derive(Debug)]
pub struct MemStore {
    block_size: usize,
    budget: u64,
    blocks: RwLock<HashMap<u64, Box<[u8]>>>,
}

impl MemStore {
    /// A store of `block_size`-byte blocks holding at most `budget` bytes.
    pub fn new(block_size: usize, budget: u64) -> Self {
        MemStore {
            block_size,
            budget,
            blocks: RwLock::new(HashMap::new()),
        }
    }
}

impl BlockStore for MemStore {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn get(&self, block: u64, out: &mut [u8]) -> BlockResult<bool> {
        let m = self.blocks.read().map_err(|_| BlockError::ReadOnly)?;
        match m.get(&block) {
            Some(b) => {
                out.copy_from_slice(b);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn put(&self, block: u64, data: &[u8]) -> BlockResult<()> {
        let mut m = self.blocks.write().map_err(|_| BlockError::ReadOnly)?;
        if let Some(b) = m.get_mut(&block) {
            b.copy_from_slice(data);
            return Ok(());
        }
        let used = m.len() as u64 * self.block_size as u64;
        if used + self.block_size as u64 > self.budget {
            return Err(BlockError::NoSpace {
                budget: self.budget,
            });
        }
        m.insert(block, data.into());
        Ok(())
    }
    fn is_empty(&self) -> bool {
        self.blocks.read().map(|m| m.is_empty()).unwrap_or(false)
    }
    fn used_bytes(&self) -> u64 {
        self.blocks
            .read()
            .map(|m| m.len() as u64 * self.block_size as u64)
            .unwrap_or(0)
    }
    fn blocks_left(&self) -> Option<u64> {
        Some(self.budget.saturating_sub(self.used_bytes()) / self.block_size as u64)
    }
}

/// A writable device: reads fall through to `lower` unless the block was
/// written; writes go to the store only.
pub struct Overlay {
    lower: Arc<dyn BlockDevice>,
    store: Arc<dyn BlockStore>,
    bs: usize,
}

impl Overlay {
    /// Layers `store` over `lower`; the block sizes must match.
    pub fn new(lower: Arc<dyn BlockDevice>, store: Arc<dyn BlockStore>) -> BlockResult<Self> {
        let bs = lower.block_size();
        if store.block_size() != bs {
            return Err(BlockError::BadBuffer {
                len: store.block_size(),
                block_size: bs,
            });
        }
        Ok(Overlay { lower, store, bs })
    }

    /// An overlay with a [`MemStore`] of `budget` bytes.
    pub fn in_memory(lower: Arc<dyn BlockDevice>, budget: u64) -> Self {
        let bs = lower.block_size();
        Overlay {
            lower,
            store: Arc::new(MemStore::new(bs, budget)),
            bs,
        }
    }

    /// The store holding the written blocks.
    pub fn store(&self) -> &Arc<dyn BlockStore> {
        &self.store
    }
}

impl BlockDevice for Overlay {
    fn block_size(&self) -> usize {
        self.bs
    }
    fn block_count(&self) -> u64 {
        self.lower.block_count()
    }
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
        let n = check_range(first, buf.len(), self.bs, self.lower.block_count())? as usize;
        if self.store.is_empty() {
            return self.lower.read_blocks(first, buf);
        }
        let bs = self.bs;
        let mut run: Option<usize> = None;
        for i in 0..=n {
            let found = i < n
                && self
                    .store
                    .get(first + i as u64, &mut buf[i * bs..(i + 1) * bs])?;
            match (found || i == n, run) {
                (true, Some(s)) => {
                    self.lower
                        .read_blocks(first + s as u64, &mut buf[s * bs..i * bs])?;
                    run = None;
                }
                (false, None) => run = Some(i),
                _ => {}
            }
        }
        Ok(())
    }
    fn write_blocks(&self, first: u64, data: &[u8]) -> BlockResult<()> {
        check_range(first, data.len(), self.bs, self.lower.block_count())?;
        for (i, b) in data.chunks_exact(self.bs).enumerate() {
            self.store.put(first + i as u64, b)?;
        }
        Ok(())
    }
    fn is_writable(&self) -> bool {
        true
    }
    fn fresh_blocks_left(&self) -> Option<u64> {
        self.store.blocks_left()
    }
    fn shared_generation(&self) -> Option<u64> {
        self.store.generation()
    }
    fn shared_lock(&self) {
        self.store.lock()
    }
    fn shared_unlock(&self) {
        self.store.unlock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemDevice;

    #[test]
    fn copy_on_write_and_budget() {
        let base: Vec<u8> = (0..8 * 512).map(|i| (i / 512) as u8).collect();
        let lower = Arc::new(MemDevice::from_vec(512, base.clone()));
        let ov = Overlay::in_memory(lower.clone(), 2 * 512);
        ov.write_block(3, &[0xaa; 512]).unwrap();
        ov.write_block(5, &[0xbb; 512]).unwrap();
        ov.write_block(3, &[0xcc; 512]).unwrap();
        let err = ov.write_block(6, &[0xdd; 512]).unwrap_err();
        assert_eq!(err.errno(), crate::Errno::ENOSPC);
        let mut all = vec![0u8; 8 * 512];
        ov.read_blocks(0, &mut all).unwrap();
        for b in 0..8 {
            let want = match b {
                3 => 0xcc,
                5 => 0xbb,
                _ => b as u8,
            };
            assert!(
                all[b * 512..(b + 1) * 512].iter().all(|&x| x == want),
                "block {b}"
            );
        }
        assert_eq!(lower.to_vec(), base, "the lower device is untouched");
        assert_eq!(ov.store().used_bytes(), 1024);
        assert_eq!(ov.fresh_blocks_left(), Some(0));
    }
}
