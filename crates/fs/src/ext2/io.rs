//! Byte-range access to the block device in file-system blocks. The device
//! block size may differ from the ext2 block size (a 1 KiB-block file
//! system on a 4 KiB verity device): unaligned ranges are read through a
//! bounce buffer and written read-modify-write.

use crate::{Errno, FsResult};
use myst_blockdev::BlockDevice;
use std::sync::Arc;

/// The device plus the file-system block size.
pub struct Io {
    dev: Arc<dyn BlockDevice>,
    dbs: u64,
    /// ext2 block size.
    pub bs: u64,
    /// Device size in bytes.
    pub dev_bytes: u64,
}

impl Io {
    /// Wraps `dev` for a file system of `bs`-byte blocks.
    pub fn new(dev: Arc<dyn BlockDevice>, bs: u64) -> Io {
        let dbs = dev.block_size() as u64;
        let dev_bytes = dev.block_count().saturating_mul(dbs);
        Io {
            dev,
            dbs,
            bs,
            dev_bytes,
        }
    }

    /// The device.
    pub fn dev(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    fn check(&self, off: u64, len: usize) -> FsResult<()> {
        match off.checked_add(len as u64) {
            Some(end) if end <= self.dev_bytes => Ok(()),
            _ => Err(Errno::EIO.with("access beyond the end of the device")),
        }
    }

    /// Reads `buf.len()` bytes at byte `off`.
    pub fn read_bytes(&self, off: u64, buf: &mut [u8]) -> FsResult<()> {
        self.check(off, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        if off.is_multiple_of(self.dbs) && (buf.len() as u64).is_multiple_of(self.dbs) {
            return self
                .dev
                .read_blocks(off / self.dbs, buf)
                .map_err(Errno::from);
        }
        let first = off / self.dbs;
        let end = (off + buf.len() as u64).div_ceil(self.dbs);
        let mut tmp = vec![0u8; ((end - first) * self.dbs) as usize];
        self.dev.read_blocks(first, &mut tmp).map_err(Errno::from)?;
        let s = (off - first * self.dbs) as usize;
        buf.copy_from_slice(&tmp[s..s + buf.len()]);
        Ok(())
    }

    /// Writes `data` at byte `off`.
    pub fn write_bytes(&self, off: u64, data: &[u8]) -> FsResult<()> {
        self.check(off, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        if off.is_multiple_of(self.dbs) && (data.len() as u64).is_multiple_of(self.dbs) {
            return self
                .dev
                .write_blocks(off / self.dbs, data)
                .map_err(Errno::from);
        }
        let first = off / self.dbs;
        let end = (off + data.len() as u64).div_ceil(self.dbs);
        let mut tmp = vec![0u8; ((end - first) * self.dbs) as usize];
        self.dev.read_blocks(first, &mut tmp).map_err(Errno::from)?;
        let s = (off - first * self.dbs) as usize;
        tmp[s..s + data.len()].copy_from_slice(data);
        self.dev.write_blocks(first, &tmp).map_err(Errno::from)
    }

    /// Reads consecutive file-system blocks starting at `blk`.
    pub fn read_blocks(&self, blk: u32, buf: &mut [u8]) -> FsResult<()> {
        self.read_bytes(u64::from(blk) * self.bs, buf)
    }

    /// Reads one file-system block into a new buffer.
    pub fn read_block(&self, blk: u32) -> FsResult<Vec<u8>> {
        let mut b = vec![0u8; self.bs as usize];
        self.read_blocks(blk, &mut b)?;
        Ok(b)
    }

    /// Writes consecutive file-system blocks starting at `blk`.
    pub fn write_blocks(&self, blk: u32, data: &[u8]) -> FsResult<()> {
        self.write_bytes(u64::from(blk) * self.bs, data)
    }
}
