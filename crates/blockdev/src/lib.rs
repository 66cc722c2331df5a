//! Block devices for myst's file systems: one [`BlockDevice`] trait and its
//! stackable layers, bottom to top:
//!
//! - [`file::HostFile`]: the image file on the (untrusted) host, read with
//!   positioned reads, never opened for writing;
//! - [`verity::VerityDevice`]: dm-verity checking of every data block read
//!   against a trusted root hash;
//! - [`crypt::CryptDevice`]: LUKS1 / AES-XTS decryption (when an encrypted
//!   image is opened with its key; a wrong key is refused at open);
//! - [`cache::CacheDevice`]: a bounded LRU of verified plaintext blocks;
//! - [`overlay::Overlay`]: copy-on-write ephemeral writes kept in a
//!   [`overlay::BlockStore`], never sent to the host.
//!
//! [`trust::open_image`] applies the trust rules of docs/FORMATS.md §6 and builds
//! the right stack for an image path. [`mem::MemDevice`] is an in-memory
//! device for tests and RAM disks.
#![forbid(unsafe_code)]

pub mod cache;
pub mod crypt;
pub mod file;
pub mod mem;
pub mod overlay;
pub mod shared;
pub mod trust;
pub mod verity;

pub use myst_platform::errno::Errno;
use std::sync::Arc;

/// Largest block size a device may have (ext2 allows 64 KiB blocks).
pub const MAX_BLOCK_SIZE: usize = 65536;

/// Why a block operation failed. Every variant maps to a Linux errno
/// ([`BlockError::errno`]); integrity failures are EIO.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The host failed a read.
    #[error("{device}: I/O error at byte {offset}: {source}")]
    Io {
        /// Which device (usually the image path).
        device: String,
        /// Byte offset of the failed access.
        offset: u64,
        /// The host error.
        source: std::io::Error,
    },
    /// The host file ended before the device did (it shrank underneath us).
    #[error("{device}: short read at byte {offset} (file truncated?)")]
    ShortRead {
        /// Which device.
        device: String,
        /// Byte offset where data ran out.
        offset: u64,
    },
    /// A block failed its integrity check (verity hash mismatch).
    #[error("{device}: integrity check failed for {what} {block}")]
    Integrity {
        /// Which device.
        device: String,
        /// "data block", "hash block (level N)", ...
        what: String,
        /// The block number.
        block: u64,
    },
    /// The access reaches past the end of the device.
    #[error("blocks {first}..{end} are beyond the device's {count} blocks")]
    OutOfRange {
        /// First block asked for.
        first: u64,
        /// One past the last block asked for.
        end: u64,
        /// Blocks on the device.
        count: u64,
    },
    /// The buffer is not a whole number of blocks.
    #[error("buffer of {len} bytes is not a whole number of {block_size}-byte blocks")]
    BadBuffer {
        /// Buffer length.
        len: usize,
        /// Device block size.
        block_size: usize,
    },
    /// Writes are not possible on this device.
    #[error("device is read-only")]
    ReadOnly,
    /// The ephemeral write budget is exhausted.
    #[error("ephemeral write budget of {budget} bytes exhausted")]
    NoSpace {
        /// The budget in bytes.
        budget: u64,
    },
}

impl BlockError {
    /// The Linux errno this error turns into.
    pub fn errno(&self) -> Errno {
        match self {
            BlockError::ReadOnly => Errno::EROFS.with("device is read-only"),
            BlockError::NoSpace { .. } => Errno::ENOSPC.with("ephemeral write budget exhausted"),
            BlockError::BadBuffer { .. } => Errno::EINVAL.with("bad block request"),
            BlockError::Integrity { .. } => Errno::EIO.with("integrity check failed"),
            _ => Errno::EIO.with("block device I/O error"),
        }
    }

    /// True for an integrity (hash) failure.
    pub fn is_integrity(&self) -> bool {
        matches!(self, BlockError::Integrity { .. })
    }
}

/// Result of block operations.
pub type BlockResult<T> = Result<T, BlockError>;

/// A device of fixed-size blocks. Reads and writes take whole blocks; a
/// buffer holds `buf.len() / block_size()` consecutive blocks, so layers can
/// pass large sequential requests down in one call.
pub trait BlockDevice: Send + Sync {
    /// Bytes per block (a power of two, at most [`MAX_BLOCK_SIZE`]).
    fn block_size(&self) -> usize;
    /// Number of blocks.
    fn block_count(&self) -> u64;
    /// Reads consecutive blocks starting at `first` into `buf`.
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()>;
    /// Writes consecutive blocks starting at `first`.
    fn write_blocks(&self, _first: u64, _data: &[u8]) -> BlockResult<()> {
        Err(BlockError::ReadOnly)
    }
    /// True when `write_blocks` can succeed.
    fn is_writable(&self) -> bool {
        false
    }
    /// Makes written blocks durable where that means anything.
    fn flush(&self) -> BlockResult<()> {
        Ok(())
    }
    /// How many blocks not written before can still be written (`None`: no
    /// limit). File systems keep a reserve so metadata updates never hit
    /// the end of an ephemeral write budget halfway through an operation.
    fn fresh_blocks_left(&self) -> Option<u64> {
        None
    }
    /// The generation of shared written state (`None`: not shared across
    /// processes). It changes whenever any process writes, so a file system
    /// can tell that its cached metadata may be stale.
    fn shared_generation(&self) -> Option<u64> {
        None
    }
    /// Takes the cross-process lock of shared written state (a no-op when
    /// not shared). Pairs with [`BlockDevice::shared_unlock`].
    fn shared_lock(&self) {}
    /// Releases the lock taken by [`BlockDevice::shared_lock`].
    fn shared_unlock(&self) {}
    /// Reads one block.
    fn read_block(&self, block: u64, buf: &mut [u8]) -> BlockResult<()> {
        self.read_blocks(block, buf)
    }
    /// Writes one block.
    fn write_block(&self, block: u64, data: &[u8]) -> BlockResult<()> {
        self.write_blocks(block, data)
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for Arc<T> {
    fn block_size(&self) -> usize {
        (**self).block_size()
    }
    fn block_count(&self) -> u64 {
        (**self).block_count()
    }
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
        (**self).read_blocks(first, buf)
    }
    fn write_blocks(&self, first: u64, data: &[u8]) -> BlockResult<()> {
        (**self).write_blocks(first, data)
    }
    fn is_writable(&self) -> bool {
        (**self).is_writable()
    }
    fn flush(&self) -> BlockResult<()> {
        (**self).flush()
    }
    fn fresh_blocks_left(&self) -> Option<u64> {
        (**self).fresh_blocks_left()
    }
    fn shared_generation(&self) -> Option<u64> {
        (**self).shared_generation()
    }
    fn shared_lock(&self) {
        (**self).shared_lock()
    }
    fn shared_unlock(&self) {
        (**self).shared_unlock()
    }
}

/// Checks that `len` bytes starting at block `first` are whole blocks inside
/// a device of `count` blocks of `block_size` bytes; returns the block count.
pub fn check_range(first: u64, len: usize, block_size: usize, count: u64) -> BlockResult<u64> {
    if block_size == 0 || !len.is_multiple_of(block_size) {
        return Err(BlockError::BadBuffer { len, block_size });
    }
    let n = (len / block_size) as u64;
    match first.checked_add(n) {
        Some(end) if end <= count => Ok(n),
        end => Err(BlockError::OutOfRange {
            first,
            end: end.unwrap_or(u64::MAX),
            count,
        }),
    }
}

/// Where layers report integrity failures and other events worth a log line.
/// The default writes to stderr; the runtime may install its own sink.
static LOGGER: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Installs the log sink (first call wins).
pub fn set_logger(f: fn(&str)) {
    let _ = LOGGER.set(f);
}

/// Emits one log line.
pub(crate) fn log(msg: &str) {
    match LOGGER.get() {
        Some(f) => f(msg),
        None => eprintln!("myst: {msg}"),
    }
}

impl From<&BlockError> for Errno {
    fn from(e: &BlockError) -> Errno {
        e.errno()
    }
}

impl From<BlockError> for Errno {
    fn from(e: BlockError) -> Errno {
        e.errno()
    }
}
