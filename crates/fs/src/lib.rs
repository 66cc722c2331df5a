//! File systems behind one trait: ext2 (read-write), hostfs, ramfs.
#![forbid(unsafe_code)]

pub mod ext2;
