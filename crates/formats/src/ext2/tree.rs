//! The tree an ext2 image is built from: either scanned from a directory on
//! the host or described in memory (tests, other tools).
//!
//! Nodes are numbered; a directory lists `(name, node)` pairs, so a node
//! listed twice is a hard link. Node 0 is the root directory.

use super::Ext2Error;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Index of a node in [`Tree::nodes`].
pub type NodeId = usize;

/// Ownership, permissions and time of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits, set-id and sticky bits (`0o7777`); the type comes
    /// from the node kind.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    /// A file on the host, read while the image is written. `size` is the
    /// size seen when the tree was scanned; a file that has shrunk by then
    /// is an error, bytes it has gained are ignored.
    Host {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Bytes held in memory.
    Memory(Vec<u8>),
    /// A sparse file: `size` bytes, zero except for the given extents
    /// (offset, bytes), which must be sorted and must not overlap.
    Sparse {
        /// File size.
        size: u64,
        /// Data extents.
        extents: Vec<(u64, Vec<u8>)>,
    },
    /// `size` bytes at `offset` of stream number `stream` of the
    /// [`StreamSource`](super::StreamSource) given to
    /// [`build_streamed`](super::build_streamed) (a layer of a container
    /// image, say). Such files are written after all other inodes, in the
    /// order (stream, offset), so that a source that can only read forward
    /// (a decompressor) reads each stream once from start to end.
    Stream {
        /// Stream number.
        stream: u32,
        /// Offset of the first byte in the stream.
        offset: u64,
        /// File size.
        size: u64,
    },
}

impl FileData {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            FileData::Host { size, .. }
            | FileData::Sparse { size, .. }
            | FileData::Stream { size, .. } => *size,
            FileData::Memory(v) => v.len() as u64,
        }
    }
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory and its entries (names without `/`, NUL, `.` or `..`).
    Dir(Vec<(Vec<u8>, NodeId)>),
    /// A regular file.
    File(FileData),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Ownership, permissions, time.
    pub meta: Meta,
    /// Kind and content.
    pub kind: NodeKind,
}

/// A tree to pack. Node 0 is the root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// All nodes; directories refer to their children by index.
    pub nodes: Vec<Node>,
    /// For a tree scanned from the host: what `du -b -s` reports for it
    /// (sizes as the host file system gives them, each inode once), which
    /// the Mystikos size policy starts from. None: computed from the tree.
    pub host_apparent_size: Option<u64>,
}

impl Tree {
    /// A tree with only a root directory.
    pub fn new(root: Meta) -> Self {
        Tree {
            nodes: vec![Node {
                meta: root,
                kind: NodeKind::Dir(Vec::new()),
            }],
            host_apparent_size: None,
        }
    }

    /// The root node.
    pub const ROOT: NodeId = 0;

    /// Adds a node under directory `parent` as `name` and returns its id.
    /// Panics if `parent` is not a directory of this tree (a programming
    /// error; the builder validates names).
    pub fn add(&mut self, parent: NodeId, name: &[u8], meta: Meta, kind: NodeKind) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(Node { meta, kind });
        self.link(parent, name, id);
        id
    }

    /// Adds another name for an existing node (a hard link).
    pub fn link(&mut self, parent: NodeId, name: &[u8], target: NodeId) {
        match &mut self.nodes[parent].kind {
            NodeKind::Dir(entries) => entries.push((name.to_vec(), target)),
            _ => panic!("Tree::link: node {parent} is not a directory"),
        }
    }

    /// Scans a directory on the host (without following symbolic links).
    /// Entries are sorted by name bytes; files sharing a device and inode
    /// number become hard links. Files are not read here.
    pub fn from_dir(root: &Path) -> Result<Self, Ext2Error> {
        Self::from_dir_with_progress(root, &mut |_| {})
    }

    /// [`Tree::from_dir`], calling `progress` with the number of entries
    /// seen so far after each directory.
    pub fn from_dir_with_progress(
        root: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Self, Ext2Error> {
        let md = std::fs::symlink_metadata(root).map_err(|e| Ext2Error::io(root, e))?;
        if !md.is_dir() {
            return Err(Ext2Error::Source {
                path: root.to_path_buf(),
                msg: "not a directory".into(),
            });
        }
        let mut tree = Tree::new(meta_of(&md));
        let mut apparent = md.len();
        let mut links: HashMap<(u64, u64), NodeId> = HashMap::new();
        // Explicit stack: deep trees must not overflow the thread stack.
        let mut stack: Vec<(NodeId, PathBuf)> = vec![(Tree::ROOT, root.to_path_buf())];
        while let Some((dir_id, dir_path)) = stack.pop() {
            let rd = std::fs::read_dir(&dir_path).map_err(|e| Ext2Error::io(&dir_path, e))?;
            let mut names = Vec::new();
            for ent in rd {
                let ent = ent.map_err(|e| Ext2Error::io(&dir_path, e))?;
                names.push(ent.file_name());
            }
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                let path = dir_path.join(&name);
                let md = std::fs::symlink_metadata(&path).map_err(|e| Ext2Error::io(&path, e))?;
                let name = name.as_bytes();
                let ft = md.file_type();
                if !ft.is_dir() && md.nlink() > 1 {
                    if let Some(&id) = links.get(&(md.dev(), md.ino())) {
                        tree.link(dir_id, name, id);
                        continue;
                    }
                }
                apparent += md.len();
                let meta = meta_of(&md);
                let kind = if ft.is_dir() {
                    NodeKind::Dir(Vec::new())
                } else if ft.is_file() {
                    NodeKind::File(FileData::Host {
                        path: path.clone(),
                        size: md.len(),
                    })
                } else if ft.is_symlink() {
                    let t = std::fs::read_link(&path).map_err(|e| Ext2Error::io(&path, e))?;
                    NodeKind::Symlink(t.as_os_str().as_bytes().to_vec())
                } else if ft.is_char_device() || ft.is_block_device() {
                    let (major, minor) = split_dev(md.rdev());
                    if ft.is_char_device() {
                        NodeKind::CharDev { major, minor }
                    } else {
                        NodeKind::BlockDev { major, minor }
                    }
                } else if ft.is_fifo() {
                    NodeKind::Fifo
                } else if ft.is_socket() {
                    NodeKind::Socket
                } else {
                    return Err(Ext2Error::Source {
                        path,
                        msg: "unknown file type".into(),
                    });
                };
                let is_dir = ft.is_dir();
                let id = tree.add(dir_id, name, meta, kind);
                if is_dir {
                    stack.push((id, path));
                } else if md.nlink() > 1 {
                    links.insert((md.dev(), md.ino()), id);
                }
            }
            progress(tree.nodes.len() as u64);
        }
        tree.host_apparent_size = Some(apparent);
        Ok(tree)
    }
}

fn meta_of(md: &std::fs::Metadata) -> Meta {
    Meta {
        perm: (md.mode() & 0o7777) as u16,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
    }
}

/// Splits a Linux `dev_t` into major and minor (glibc's encoding).
pub fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}
