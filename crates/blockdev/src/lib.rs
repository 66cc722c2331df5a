//! Block devices for myst's file systems: one `BlockDevice` trait and its
//! stackable layers (host file -> verity -> LUKS/XTS -> cache -> overlay).
//! Filled in by the storage-stack work.
#![forbid(unsafe_code)]
