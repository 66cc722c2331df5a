//! The runtime's /tmp and /dev/shm: an empty ext2 file system whose blocks
//! all live in a shared-memory overlay store over zeros, so a guest
//! process and its forked children see one /tmp.

use super::{Ext2Fs, MountError, MountOptions};
use myst_blockdev::mem::ZeroDevice;
use myst_blockdev::overlay::{BlockStore, Overlay};
use myst_blockdev::shared::SharedStore;
use myst_blockdev::BlockDevice;
use myst_formats::ext2::empty::{empty_fs, BLOCK_SIZE};
use std::sync::Arc;

/// Why the shared file system could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SharedTmpError {
    /// Shared memory could not be mapped.
    #[error("{name}: {msg}")]
    Shm {
        /// Mount name.
        name: String,
        /// The platform error.
        msg: String,
    },
    /// Formatting failed.
    #[error("{name}: cannot format: {msg}")]
    Format {
        /// Mount name.
        name: String,
        /// What went wrong.
        msg: String,
    },
    /// The new file system did not mount.
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// An empty, writable ext2 file system of about `size` bytes (root
/// permissions `perm`) in memory shared with forked children. Blocks cost
/// memory only once written.
pub fn shared_empty(name: &str, size: u64, perm: u16) -> Result<Ext2Fs, SharedTmpError> {
    let fmt = |msg: String| SharedTmpError::Format {
        name: name.to_string(),
        msg,
    };
    let now = super::state::now().sec.clamp(0, i64::from(u32::MAX)) as u32;
    let (geo, blocks) = empty_fs(size, perm, now).map_err(|e| fmt(e.to_string()))?;
    // Room for the whole file system: data plus its metadata.
    let budget = geo.bytes();
    let store = SharedStore::new(BLOCK_SIZE as usize, budget).map_err(|e| SharedTmpError::Shm {
        name: name.to_string(),
        msg: e.to_string(),
    })?;
    let lower: Arc<dyn BlockDevice> =
        Arc::new(ZeroDevice::new(BLOCK_SIZE as usize, geo.blocks_count));
    let store: Arc<dyn BlockStore> = Arc::new(store);
    let dev = Overlay::new(lower, store).map_err(|e| fmt(e.to_string()))?;
    for (b, data) in &blocks {
        dev.write_block(*b, data).map_err(|e| fmt(e.to_string()))?;
    }
    let opts = MountOptions {
        read_only: false,
        name: name.to_string(),
    };
    Ok(Ext2Fs::mount(Arc::new(dev), &opts)?)
}
