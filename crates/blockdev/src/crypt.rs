//! The crypt layer: a LUKS1 (aes-xts-plain64) volume opened with its
//! 64-byte key. The header is validated and the key checked against the
//! master-key digest at open, so a wrong key is refused there instead of
//! surfacing later as a corrupt file system. Blocks are decrypted on read
//! (and encrypted on write, when the device below is writable) with the
//! batched XTS of `myst_formats::xts`.
//!
//! In an image the crypt layer sits above verity: verity covers the
//! ciphertext (header included), so tampering is caught before decryption.

use crate::{check_range, BlockDevice, BlockError, BlockResult};
use myst_formats::luks::{LuksError, LuksVolume, KEY_BYTES};
use std::sync::Arc;

/// Why a LUKS volume could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptOpenError {
    /// Reading the header failed.
    #[error(transparent)]
    Io(#[from] BlockError),
    /// The header is invalid or the key is wrong.
    #[error("{device}: {source}")]
    Luks {
        /// Which device.
        device: String,
        /// What is wrong.
        source: LuksError,
    },
    /// The payload does not start on a device block.
    #[error(
        "{device}: LUKS payload offset {offset} is not a multiple of the {block_size}-byte blocks"
    )]
    Unaligned {
        /// Which device.
        device: String,
        /// Payload offset in bytes.
        offset: u64,
        /// Block size of the device below.
        block_size: usize,
    },
}

impl CryptOpenError {
    /// The errno: EKEYREJECTED for a wrong key, EINVAL for a bad header, EIO for I/O.
    pub fn errno(&self) -> crate::Errno {
        match self {
            CryptOpenError::Io(e) => e.errno(),
            CryptOpenError::Luks {
                source: LuksError::WrongKey,
                ..
            } => crate::Errno::EKEYREJECTED,
            _ => crate::Errno::EINVAL,
        }
    }

    /// True when the key does not match the volume.
    pub fn is_wrong_key(&self) -> bool {
        matches!(
            self,
            CryptOpenError::Luks {
                source: LuksError::WrongKey,
                ..
            }
        )
    }
}

/// The decrypted payload of a LUKS1 volume.
pub struct CryptDevice {
    lower: Arc<dyn BlockDevice>,
    vol: LuksVolume,
    bs: usize,
    /// First block of the payload in `lower`.
    payload_block: u64,
    blocks: u64,
}

impl std::fmt::Debug for CryptDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptDevice")
            .field("payload_block", &self.payload_block)
            .field("blocks", &self.blocks)
            .finish_non_exhaustive()
    }
}

impl CryptDevice {
    /// Opens the LUKS1 volume on the first `limit` bytes of `lower` (all of
    /// it when `None`) with `key`.
    pub fn open(
        lower: Arc<dyn BlockDevice>,
        name: &str,
        key: &[u8; KEY_BYTES],
        limit: Option<u64>,
    ) -> Result<CryptDevice, CryptOpenError> {
        let bs = lower.block_size();
        let lower_bytes = lower.block_count().saturating_mul(bs as u64);
        let size = limit.map_or(lower_bytes, |l| l.min(lower_bytes));
        // The header proper is 592 bytes; read whole blocks covering 4 KiB.
        let head_blocks = 4096usize.div_ceil(bs).min(lower.block_count() as usize);
        let mut head = vec![0u8; head_blocks * bs];
        lower.read_blocks(0, &mut head)?;
        let luks = |source| CryptOpenError::Luks {
            device: name.to_string(),
            source,
        };
        let vol = LuksVolume::open(&head, size, key).map_err(luks)?;
        let offset = vol.payload_offset_bytes();
        if offset % bs as u64 != 0 {
            return Err(CryptOpenError::Unaligned {
                device: name.to_string(),
                offset,
                block_size: bs,
            });
        }
        Ok(CryptDevice {
            lower,
            bs,
            payload_block: offset / bs as u64,
            blocks: (size.saturating_sub(offset)) / bs as u64,
            vol,
        })
    }

    fn crypt_err(&self, first: u64, e: LuksError) -> BlockError {
        BlockError::Io {
            device: "crypt".into(),
            offset: first * self.bs as u64,
            source: std::io::Error::other(e.to_string()),
        }
    }
}

impl BlockDevice for CryptDevice {
    fn block_size(&self) -> usize {
        self.bs
    }
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
        check_range(first, buf.len(), self.bs, self.blocks)?;
        self.lower.read_blocks(self.payload_block + first, buf)?;
        self.vol
            .decrypt_payload(buf, first * self.bs as u64)
            .map_err(|e| self.crypt_err(first, e))
    }
    fn write_blocks(&self, first: u64, data: &[u8]) -> BlockResult<()> {
        check_range(first, data.len(), self.bs, self.blocks)?;
        if !self.lower.is_writable() {
            return Err(BlockError::ReadOnly);
        }
        let mut c = data.to_vec();
        self.vol
            .encrypt_payload(&mut c, first * self.bs as u64)
            .map_err(|e| self.crypt_err(first, e))?;
        self.lower.write_blocks(self.payload_block + first, &c)
    }
    fn is_writable(&self) -> bool {
        self.lower.is_writable()
    }
    fn flush(&self) -> BlockResult<()> {
        self.lower.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemDevice;
    use myst_formats::luks::{LuksParams, LuksWriter};

    fn key(seed: u8) -> [u8; 64] {
        core::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
    }

    #[test]
    fn decrypts_writer_output_and_refuses_a_wrong_key() {
        let k = key(1);
        let w = LuksWriter::new(&k, &LuksParams::default()).unwrap();
        let plain: Vec<u8> = (0..64 * 4096u32).map(|i| (i % 253) as u8).collect();
        let mut ct = plain.clone();
        w.encrypt_payload(&mut ct, 0).unwrap();
        let mut img = w.header.clone();
        img.extend_from_slice(&ct);
        let dev = Arc::new(MemDevice::from_vec(4096, img));
        let c = CryptDevice::open(dev.clone(), "t", &k, None).unwrap();
        assert_eq!(c.block_count(), 64);
        let mut b = vec![0u8; 64 * 4096];
        c.read_blocks(0, &mut b).unwrap();
        assert!(b == plain);
        let mut one = vec![0u8; 4096];
        c.read_block(37, &mut one).unwrap();
        assert!(one[..] == plain[37 * 4096..38 * 4096]);
        // Writes round-trip through encryption.
        c.write_block(5, &[9u8; 4096]).unwrap();
        c.read_block(5, &mut one).unwrap();
        assert!(one.iter().all(|&x| x == 9));
        assert_ne!(dev.to_vec()[w.header.len() + 5 * 4096..][..16], [9u8; 16]);
        let err = CryptDevice::open(dev.clone(), "t", &key(2), None).unwrap_err();
        assert!(
            err.is_wrong_key() && err.errno() == crate::Errno::EKEYREJECTED,
            "{err}"
        );
        let plain_dev = Arc::new(MemDevice::from_vec(4096, plain));
        assert_eq!(
            CryptDevice::open(plain_dev, "t", &k, None)
                .unwrap_err()
                .errno(),
            crate::Errno::EINVAL
        );
    }
}
