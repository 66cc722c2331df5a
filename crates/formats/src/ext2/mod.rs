//! ext2 images: on-disk structures and an image builder that writes a tree
//! straight into an image file followed by its dm-verity hash tree.
//!
//! Written here rather than taken from a crate: no crate writes classic
//! ext2 (rev 1, 32-byte group descriptors, indirect block maps, only the
//! filetype, sparse_super and large_file features) that both Linux and the
//! Mystikos driver read, and the builder must stream file data, hash it for
//! verity as it goes and stay reproducible.
//!
//! - [`structs`]: superblock, group descriptor, inode, directory entry.
//! - [`tree`]: the tree to pack, scanned from a host directory or built in memory.
//! - [`layout`]: group geometry and the size policy.
//! - [`build`]: the image writer, with its hooks for an encrypting layer
//!   (a header placed before the file system and a transform applied to
//!   every payload byte before it is written and hashed).

mod builder;
pub mod empty;
pub mod layout;
mod sink;
pub mod structs;
pub mod tree;

pub use builder::{
    build, build_streamed, max_file_size, Image, Options, Payload, Progress, StreamSource,
    Transform,
};
pub use layout::Geometry;
pub use tree::{FileData, Meta, Node, NodeId, NodeKind, Tree};

use std::path::{Path, PathBuf};

/// What went wrong reading a tree, building an image or parsing one.
#[derive(Debug, thiserror::Error)]
pub enum Ext2Error {
    /// A file of the source tree could not be read.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (in the message, not a separate cause).
        err: std::io::Error,
    },
    /// A file of the source tree cannot be stored.
    #[error("{}: {msg}", path.display())]
    Source {
        /// The file.
        path: PathBuf,
        /// Why.
        msg: String,
    },
    /// The in-memory tree is not a valid tree.
    #[error("invalid tree: {0}")]
    Tree(String),
    /// An option is out of range.
    #[error("{0}")]
    Config(String),
    /// The tree does not fit.
    #[error("tree too big: {0}")]
    TooBig(String),
    /// Writing the image failed.
    #[error("writing {}: {err}", path.display())]
    Write {
        /// The image.
        path: PathBuf,
        /// The error (in the message, not a separate cause).
        err: std::io::Error,
    },
    /// An on-disk structure is invalid.
    #[error("corrupt ext2 file system: {0}")]
    Corrupt(String),
}

impl Ext2Error {
    /// An I/O error on a source file.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Ext2Error::Io {
            path: path.to_path_buf(),
            err: source,
        }
    }
}
