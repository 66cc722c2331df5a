//! Pure on-disk formats of myst, with no policy: each module writes and
//! parses one format and validates everything it reads.
//!
//! - [`cpio`]: SVR4 newc archives (writer and zero-copy reader).
//! - [`ext2`]: the ext2 image builder.
//! - [`verity`]: the dm-verity superblock and hash tree (veritysetup format 1).
//! - [`fssig`]: the 4096-byte FSSIG trailer Mystikos appends to ext2 images.
//! - [`sign`]: RSA PKCS#1 v1.5 signatures over root hashes.
//! - [`luks`]: the LUKS1 header, key slots and master-key digest.
//! - [`mode`]: file types and mode bits, the one definition every layer uses.
//! - [`xts`]: batched AES-256-XTS (plain64) over 512-byte sectors.
#![forbid(unsafe_code)]

pub mod cpio;
pub mod ext2;
pub mod fssig;
pub mod luks;
pub mod mode;
pub mod oci;
pub mod sign;
pub mod verity;
pub mod xts;
