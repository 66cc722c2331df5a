//! Pure on-disk formats of myst, with no policy: each module writes and
//! parses one format and validates everything it reads.
//!
//! - [`verity`]: the dm-verity superblock and hash tree (veritysetup format 1).
//! - [`fssig`]: the 4096-byte FSSIG trailer Mystikos appends to ext2 images.
#![forbid(unsafe_code)]

pub mod fssig;
pub mod verity;
