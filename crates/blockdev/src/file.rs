//! The image file on the host, read with positioned reads (`pread`), so
//! concurrent readers need no shared file offset. The file is opened
//! read-only: nothing myst does ever writes to an image.

use crate::{check_range, BlockDevice, BlockError, BlockResult};
use myst_platform::hostio::ReadOnlyFile;
use std::path::Path;

/// A read-only block device over a host file. A final partial block reads
/// as if padded with zeros.
#[derive(Debug)]
pub struct HostFile {
    file: ReadOnlyFile,
    name: String,
    len: u64,
    block_size: usize,
    blocks: u64,
}

impl HostFile {
    /// Opens `path` read-only with `block_size`-byte blocks.
    pub fn open(path: &Path, block_size: usize) -> BlockResult<HostFile> {
        let name = path.display().to_string();
        let io = |source| BlockError::Io {
            device: name.clone(),
            offset: 0,
            source,
        };
        let file = ReadOnlyFile::open(path).map_err(io)?;
        Self::from_file(file, name, block_size)
    }

    /// Wraps an already open file, exposing the bytes it had when opened.
    pub fn from_file(file: ReadOnlyFile, name: String, block_size: usize) -> BlockResult<Self> {
        let len = file.len();
        if !block_size.is_power_of_two() || !(512..=crate::MAX_BLOCK_SIZE).contains(&block_size) {
            return Err(BlockError::BadBuffer { len: 0, block_size });
        }
        Ok(HostFile {
            file,
            name,
            len,
            block_size,
            blocks: len.div_ceil(block_size as u64),
        })
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The name used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads `buf.len()` bytes at byte `offset` (inside the file).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            match self.file.pread(&mut buf[done..], pos) {
                Ok(0) => {
                    if pos >= self.len {
                        // The zero padding of the last block.
                        buf[done..].fill(0);
                        return Ok(());
                    }
                    return Err(BlockError::ShortRead {
                        device: self.name.clone(),
                        offset: pos,
                    });
                }
                Ok(n) => done += n,
                Err(source) => {
                    return Err(BlockError::Io {
                        device: self.name.clone(),
                        offset: pos,
                        source,
                    })
                }
            }
        }
        // Bytes past the recorded length (the file grew) stay invisible.
        if offset + buf.len() as u64 > self.len {
            let keep = (self.len.saturating_sub(offset) as usize).min(buf.len());
            buf[keep..].fill(0);
        }
        Ok(())
    }
}

impl BlockDevice for HostFile {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
        check_range(first, buf.len(), self.block_size, self.blocks)?;
        self.read_at(first * self.block_size as u64, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_blocks_and_pads_the_tail() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let d = HostFile::open(f.path(), 4096).unwrap();
        assert_eq!(d.block_count(), 2);
        let mut buf = vec![0xffu8; 8192];
        d.read_blocks(0, &mut buf).unwrap();
        assert_eq!(&buf[..5000], &data[..]);
        assert!(buf[5000..].iter().all(|&b| b == 0));
        assert!(d.read_blocks(1, &mut buf).is_err());
        assert!(d.write_blocks(0, &buf[..4096]).is_err());
        assert!(!d.is_writable());
    }
}
