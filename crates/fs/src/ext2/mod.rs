//! The read-write ext2 driver. Filled in by the storage-stack work.
