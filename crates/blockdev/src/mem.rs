//! An in-memory, writable block device: test images and RAM disks.

use crate::{check_range, BlockDevice, BlockError, BlockResult};
use std::sync::RwLock;

/// A writable device whose blocks live in one `Vec<u8>`.
#[derive(Debug)]
pub struct MemDevice {
    block_size: usize,
    data: RwLock<Vec<u8>>,
}

impl MemDevice {
    /// A zero-filled device of `blocks` blocks.
    pub fn new(block_size: usize, blocks: u64) -> Self {
        Self::from_vec(block_size, vec![0; block_size * blocks as usize])
    }

    /// A device holding `data`, zero-padded to whole blocks.
    pub fn from_vec(block_size: usize, mut data: Vec<u8>) -> Self {
        let len = data.len().div_ceil(block_size) * block_size;
        data.resize(len, 0);
        MemDevice {
            block_size,
            data: RwLock::new(data),
        }
    }

    /// A copy of the whole contents.
    pub fn to_vec(&self) -> Vec<u8> {
        match self.data.read() {
            Ok(d) => d.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl BlockDevice for MemDevice {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn block_count(&self) -> u64 {
        let len = match self.data.read() {
            Ok(d) => d.len(),
            Err(p) => p.into_inner().len(),
        };
        (len / self.block_size) as u64
    }
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
        let d = self.data.read().map_err(|_| BlockError::ReadOnly)?;
        check_range(
            first,
            buf.len(),
            self.block_size,
            (d.len() / self.block_size) as u64,
        )?;
        let off = first as usize * self.block_size;
        buf.copy_from_slice(&d[off..off + buf.len()]);
        Ok(())
    }
    fn write_blocks(&self, first: u64, data: &[u8]) -> BlockResult<()> {
        let mut d = self.data.write().map_err(|_| BlockError::ReadOnly)?;
        check_range(
            first,
            data.len(),
            self.block_size,
            (d.len() / self.block_size) as u64,
        )?;
        let off = first as usize * self.block_size;
        d[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn is_writable(&self) -> bool {
        true
    }
}

/// A read-only device of zero blocks that takes no memory: the lower layer
/// of an in-memory file system whose every written block lives in an
/// overlay store.
#[derive(Debug)]
pub struct ZeroDevice {
    block_size: usize,
    blocks: u64,
}

impl ZeroDevice {
    /// `blocks` zero blocks of `block_size` bytes.
    pub fn new(block_size: usize, blocks: u64) -> Self {
        ZeroDevice { block_size, blocks }
    }
}

impl BlockDevice for ZeroDevice {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
        check_range(first, buf.len(), self.block_size, self.blocks)?;
        buf.fill(0);
        Ok(())
    }
}
