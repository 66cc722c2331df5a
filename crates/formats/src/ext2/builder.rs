//! The image builder: lays out a [`Tree`] as an ext2 file system, streams
//! file data into the image file, writes the metadata, and appends the
//! dm-verity superblock and hash tree.
//!
//! Layout decisions, all deterministic so that the same tree and options
//! give the same bytes:
//! - inodes are numbered in traversal order: root 2, lost+found 11, then
//!   the children of each directory (sorted by name) before its
//!   subdirectories' contents;
//! - blocks are allocated sequentially in the same order: a directory's
//!   blocks, then each child's data followed by its indirect blocks;
//! - file blocks that are all zeros become holes (as `mke2fs -d` does);
//! - atime and ctime are set to the mtime (so that reading or copying the
//!   tree does not change the image), every time is clamped to
//!   `source_date_epoch` when given and to the signed 32-bit range ext2 has;
//! - the verity salt, the ext2 UUID and hash seed are derived from a digest
//!   of the tree's metadata and the geometry, and the verity UUID from the
//!   root hash, instead of being random.

use super::layout::{self, Geometry, Needs};
use super::sink::{self, Channels, Shared, Sink};
use super::structs::*;
use super::tree::{FileData, Meta, NodeId, NodeKind, Tree};
use super::Ext2Error;
use crate::verity::{self, Digest32, BLOCK_SIZE as VBS};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use super::sink::Transform;

/// Build options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// 1024, 2048 or 4096.
    pub block_size: u64,
    /// The file system is at least this many bytes (`--size`); it is never
    /// smaller than the size policy gives.
    pub min_size: u64,
    /// Clamp every time to this (`SOURCE_DATE_EPOCH`), and use it for the
    /// superblock times.
    pub source_date_epoch: Option<i64>,
    /// Worker threads (transform, hash; one more thread writes); 0 picks
    /// one per CPU (at most 8).
    pub threads: usize,
    /// Write aligned blocks with `O_DIRECT` when the file system allows it.
    pub direct_io: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            block_size: 4096,
            min_size: 0,
            source_date_epoch: None,
            threads: 0,
            direct_io: true,
        }
    }
}

/// What goes around the file system in the data area covered by verity:
/// `[header][transform(ext2)]`. A plain image has an empty header and no
/// transform; an encrypted one has the LUKS header and the cipher.
#[derive(Clone, Copy, Default)]
pub struct Payload<'a> {
    /// Bytes placed before the file system (a multiple of 4096), written
    /// as they are.
    pub header: &'a [u8],
    /// Applied to every block of the file system (all of it, free blocks
    /// included) before it is written and hashed: `transform(buf, off)`
    /// with `buf` whole blocks starting at byte `off` of the file system,
    /// called from worker threads in any order. A block may be transformed
    /// more than once (indirect blocks are written as zeros first, then
    /// with their pointers), so it must be a pure function of the bytes
    /// and their offset, sector by sector, as AES-XTS plain64 is.
    pub transform: Option<&'a Transform<'a>>,
}

/// Receives progress while the image is written.
pub trait Progress: Sync {
    /// Called once with the number of regular files and their total size.
    fn start(&self, files: u64, bytes: u64);
    /// Called as files are written.
    fn advance(&self, files: u64, bytes: u64);
}

/// Where the bytes of [`FileData::Stream`] files come from. Reads come in
/// the order (stream, offset) unless a stream is read by something else
/// in between; an implementation may restart a stream to go backwards.
pub trait StreamSource {
    /// Fills `buf` from byte `off` of stream `stream`.
    fn read_at(&mut self, stream: u32, off: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A [`StreamSource`] for trees without stream files.
struct NoStreams;

impl StreamSource for NoStreams {
    fn read_at(&mut self, stream: u32, _off: u64, _buf: &mut [u8]) -> io::Result<()> {
        Err(io::Error::other(format!(
            "no stream source given for stream {stream}"
        )))
    }
}

/// The result of [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Offset of the verity superblock = size of the data area
    /// (header + file system).
    pub hash_offset: u64,
    /// Offset where the FSSIG trailer goes (end of the hash tree).
    pub end: u64,
    /// The verity root hash.
    pub root_hash: Digest32,
    /// The verity salt.
    pub salt: [u8; 32],
    /// The verity UUID.
    pub verity_uuid: [u8; 16],
    /// The ext2 UUID.
    pub uuid: [u8; 16],
    /// The file-system geometry.
    pub geometry: Geometry,
    /// Inodes in use (reserved ones included).
    pub used_inodes: u64,
    /// Blocks in use (metadata included).
    pub used_blocks: u64,
}

/// Largest regular file size Linux's ext2 driver allows with this block
/// size (`ext2_max_size` in fs/ext2/super.c: the block map and the 32-bit
/// count of 512-byte sectors both limit it).
pub fn max_file_size(block_size: u64) -> u64 {
    let bits = block_size.trailing_zeros() as u64;
    let ppb = 1u64 << (bits - 2);
    let mut upper = ((1u64 << 32) - 1) >> (bits - 9);
    let mut res = N_DIRECT as u64 + ppb + ppb * ppb + ppb * ppb * ppb;
    let meta = 1 + (1 + ppb) + (1 + ppb + ppb * ppb);
    if res + meta > upper {
        res = upper;
        upper -= N_DIRECT as u64;
        let mut meta = 1;
        upper -= ppb;
        if upper < ppb * ppb {
            meta += 1 + upper.div_ceil(ppb);
        } else {
            meta += 1 + ppb;
            upper -= ppb * ppb;
            meta += 1 + upper.div_ceil(ppb) + upper.div_ceil(ppb * ppb);
        }
        res -= meta;
    }
    res << bits
}

/// Indirect blocks a dense map of `n` blocks needs.
fn indirect_blocks(n: u64, ppb: u64) -> u64 {
    let mut left = n.saturating_sub(N_DIRECT as u64);
    if left == 0 {
        return 0;
    }
    let mut ind = 1;
    let single = left.min(ppb);
    left -= single;
    if left == 0 {
        return ind;
    }
    let double = left.min(ppb * ppb);
    ind += 1 + double.div_ceil(ppb);
    left -= double;
    if left == 0 {
        return ind;
    }
    ind + 1 + left.div_ceil(ppb * ppb) + left.div_ceil(ppb)
}

/// A node as the builder sees it: tree nodes plus a made-up lost+found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    Node(NodeId),
    LostFound,
}

/// One inode to write, in inode-number order.
struct Plan {
    src: Src,
    links: u32,
    /// For directories: entries (name, inode, file type), `.` and `..` first.
    entries: Vec<(Vec<u8>, u32, u8)>,
    /// Data blocks (directories, slow symlinks) or an upper bound (files).
    blocks: u64,
}

/// The checked tree, numbered and measured.
struct Prepared {
    /// Inodes in number order: `plans[0]` is the root (2), `plans[i]` for
    /// i >= 1 is inode 10 + i (see [`ino_of_index`]).
    plans: Vec<Plan>,
    /// What sizing needs.
    needs: Needs,
    /// Digest of everything but file contents (for salt and UUIDs).
    digest: [u8; 32],
    /// Regular files and their bytes (for progress).
    files: u64,
    file_bytes: u64,
    /// Superblock times (and lost+found's).
    fs_time: u32,
}

/// Inode number of `plans[i]`: root is 2, the rest start at 11.
fn ino_of_index(i: usize) -> u32 {
    if i == 0 {
        ROOT_INO
    } else {
        FIRST_INO + i as u32 - 1
    }
}

fn index_of_ino(ino: u32) -> usize {
    if ino == ROOT_INO {
        0
    } else {
        (ino - FIRST_INO + 1) as usize
    }
}

fn clamp_time(t: i64, sde: Option<i64>) -> u32 {
    let t = match sde {
        Some(e) => t.min(e),
        None => t,
    };
    t.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32 as u32
}

fn kind_type(kind: &NodeKind) -> (u16, u8) {
    match kind {
        NodeKind::Dir(_) => (S_IFDIR, ft::DIR),
        NodeKind::File(_) => (S_IFREG, ft::REG),
        NodeKind::Symlink(_) => (S_IFLNK, ft::SYMLINK),
        NodeKind::CharDev { .. } => (S_IFCHR, ft::CHR),
        NodeKind::BlockDev { .. } => (S_IFBLK, ft::BLK),
        NodeKind::Fifo => (S_IFIFO, ft::FIFO),
        NodeKind::Socket => (S_IFSOCK, ft::SOCK),
    }
}

/// Blocks a directory with these entries takes (entries never straddle
/// blocks; the last one in a block is stretched to its end).
fn dir_blocks(entries: &[(Vec<u8>, u32, u8)], bs: u64) -> u64 {
    let mut blocks = 1;
    let mut used = 0u64;
    for (name, _, _) in entries {
        let need = dir_rec_len(name.len()) as u64;
        if used + need > bs {
            blocks += 1;
            used = 0;
        }
        used += need;
    }
    blocks
}

/// lost+found gets about 16 KiB of empty directory blocks (as mke2fs
/// makes it), so that e2fsck can reconnect files without allocating.
fn lost_found_blocks(bs: u64) -> u64 {
    (16384 / bs).clamp(2, N_DIRECT as u64)
}

fn tree_err(msg: impl Into<String>) -> Ext2Error {
    Ext2Error::Tree(msg.into())
}

fn check_name(name: &[u8]) -> Result<(), Ext2Error> {
    if name.is_empty()
        || name.len() > NAME_MAX
        || name.contains(&b'/')
        || name.contains(&0)
        || name == b"."
        || name == b".."
    {
        return Err(tree_err(format!(
            "invalid name {:?} (1 to 255 bytes, no '/' or NUL, not . or ..)",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// A human-readable path for error messages.
fn node_path(paths: &[Option<PathBuf>], id: NodeId) -> String {
    paths
        .get(id)
        .and_then(|p| p.as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("node {id}"))
}

/// Numbers the inodes, checks the tree, computes directory contents,
/// link counts, sizes and the metadata digest.
fn prepare(tree: &Tree, opts: &Options) -> Result<Prepared, Ext2Error> {
    let bs = opts.block_size;
    let ppb = bs / 4;
    let sde = opts.source_date_epoch;
    let n = tree.nodes.len();
    if n == 0 || !matches!(tree.nodes[0].kind, NodeKind::Dir(_)) {
        return Err(tree_err("node 0 must be the root directory"));
    }
    let max_file = max_file_size(bs);
    // Inode of each node (0 = not reached yet), and relative paths for messages.
    let mut ino_of: Vec<u32> = vec![0; n];
    let mut paths: Vec<Option<PathBuf>> = vec![None; n];
    paths[0] = Some(PathBuf::from("/"));
    let mut plans: Vec<Plan> = Vec::new();
    let mut refs: Vec<u32> = vec![0; n];
    let mut max_mtime = i64::MIN;

    // lost+found: the tree's own, if it is a directory, else a new one.
    let root_entries = match &tree.nodes[0].kind {
        NodeKind::Dir(e) => e,
        _ => return Err(tree_err("root is not a directory")),
    };
    let own_lf = root_entries
        .iter()
        .find(|(name, _)| name.as_slice() == b"lost+found")
        .map(|&(_, id)| id);
    if let Some(id) = own_lf {
        if !matches!(tree.nodes.get(id).map(|n| &n.kind), Some(NodeKind::Dir(_))) {
            return Err(tree_err(
                "/lost+found in the tree is not a directory; ext2 needs it as one",
            ));
        }
    }
    plans.push(Plan {
        src: Src::Node(0),
        links: 2,
        entries: Vec::new(),
        blocks: 0,
    });
    ino_of[0] = ROOT_INO;
    let lf_src = match own_lf {
        Some(id) => {
            ino_of[id] = FIRST_INO;
            paths[id] = Some(PathBuf::from("/lost+found"));
            Src::Node(id)
        }
        None => Src::LostFound,
    };
    plans.push(Plan {
        src: lf_src,
        links: 2,
        entries: Vec::new(),
        blocks: 0,
    });

    if own_lf.is_none() {
        // The made-up lost+found has no entries beyond . and ..
        plans[1].entries = vec![
            (b".".to_vec(), FIRST_INO, ft::DIR),
            (b"..".to_vec(), ROOT_INO, ft::DIR),
        ];
    }
    // Directories to fill: (plan index, parent inode); root first.
    let mut work: Vec<(usize, u32)> = vec![(0, ROOT_INO)];
    while let Some((pi, parent_ino)) = work.pop() {
        let Src::Node(dir_id) = plans[pi].src else {
            continue;
        };
        let NodeKind::Dir(children) = &tree.nodes[dir_id].kind else {
            return Err(tree_err("internal: not a directory"));
        };
        let my_ino = ino_of_index(pi);
        let mut entries: Vec<(Vec<u8>, u32, u8)> = Vec::with_capacity(children.len() + 2);
        entries.push((b".".to_vec(), my_ino, ft::DIR));
        entries.push((b"..".to_vec(), parent_ino, ft::DIR));
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(children.len());
        let mut subdirs: Vec<usize> = Vec::new();
        let mut subdir_count = 0u32;
        for (name, child) in children {
            let child = *child;
            check_name(name)
                .map_err(|e| Ext2Error::Tree(format!("{} in {}", e, node_path(&paths, dir_id))))?;
            if !seen.insert(name.as_slice()) {
                return Err(tree_err(format!(
                    "{}: duplicate name {:?}",
                    node_path(&paths, dir_id),
                    String::from_utf8_lossy(name)
                )));
            }
            let node = tree
                .nodes
                .get(child)
                .ok_or_else(|| tree_err(format!("entry refers to missing node {child}")))?;
            let (_, ftype) = kind_type(&node.kind);
            refs[child] += 1;
            let is_dir = matches!(node.kind, NodeKind::Dir(_));
            if child == 0 || (is_dir && refs[child] > 1) {
                return Err(tree_err(format!(
                    "directory {} is linked more than once",
                    node_path(&paths, child)
                )));
            }
            if paths[child].is_none() {
                let base = paths[dir_id].clone().unwrap_or_default();
                paths[child] = Some(base.join(std::ffi::OsStr::from_bytes(name)));
            }
            let ino = if ino_of[child] != 0 {
                ino_of[child]
            } else {
                let ino = ino_of_index(plans.len());
                if plans.len() as u64 >= u64::from(u32::MAX - FIRST_INO) {
                    return Err(Ext2Error::TooBig("more than 2^32 inodes".into()));
                }
                ino_of[child] = ino;
                plans.push(Plan {
                    src: Src::Node(child),
                    links: 0,
                    entries: Vec::new(),
                    blocks: 0,
                });
                ino
            };
            if is_dir {
                subdir_count += 1;
                subdirs.push(index_of_ino(ino));
            }
            entries.push((name.clone(), ino, ftype));
        }
        if dir_id == 0 && own_lf.is_none() {
            entries.push((b"lost+found".to_vec(), FIRST_INO, ft::DIR));
            entries[2..].sort_by(|a, b| a.0.cmp(&b.0));
            subdir_count += 1;
        }
        let links = 2 + subdir_count;
        if links > DIR_LINK_MAX {
            return Err(Ext2Error::Source {
                path: PathBuf::from(node_path(&paths, dir_id)),
                msg: format!(
                    "{subdir_count} subdirectories; ext2 allows at most {}",
                    DIR_LINK_MAX - 2
                ),
            });
        }
        plans[pi].links = links;
        plans[pi].entries = entries;
        for &si in subdirs.iter().rev() {
            work.push((si, my_ino));
        }
    }

    // Link counts, sizes, needs and the digest, in inode order.
    let mut needs = Needs {
        inodes: u64::from(FIRST_INO) - 1 + plans.len() as u64 - 1,
        ..Needs::default()
    };
    let mut files = 0u64;
    let mut file_bytes = 0u64;
    let mut h = Sha256::new();
    h.update(b"myst-mkext2 v1\0");
    h.update(bs.to_le_bytes());
    h.update(opts.min_size.to_le_bytes());
    h.update(sde.unwrap_or(i64::MIN).to_le_bytes());
    let lf_blocks = lost_found_blocks(bs);
    for (i, plan) in plans.iter_mut().enumerate() {
        let ino = ino_of_index(i);
        h.update(ino.to_le_bytes());
        let (meta, kind) = match plan.src {
            Src::LostFound => {
                plan.blocks = lf_blocks;
                needs.blocks += lf_blocks;
                needs.apparent += lf_blocks * bs;
                h.update(b"L");
                continue;
            }
            Src::Node(id) => (&tree.nodes[id].meta, &tree.nodes[id].kind),
        };
        let path = || {
            PathBuf::from(node_path(
                &paths,
                match plan.src {
                    Src::Node(id) => id,
                    Src::LostFound => 0,
                },
            ))
        };
        if let Src::Node(id) = plan.src {
            if !matches!(kind, NodeKind::Dir(_)) {
                plan.links = refs[id];
                if plan.links > LINK_MAX {
                    return Err(Ext2Error::Source {
                        path: path(),
                        msg: format!("{} hard links; ext2 allows at most {LINK_MAX}", plan.links),
                    });
                }
            }
        }
        max_mtime = max_mtime.max(meta.mtime);
        let (mode_type, _) = kind_type(kind);
        h.update(mode_type.to_le_bytes());
        h.update(meta.perm.to_le_bytes());
        h.update(meta.uid.to_le_bytes());
        h.update(meta.gid.to_le_bytes());
        h.update(clamp_time(meta.mtime, sde).to_le_bytes());
        h.update(plan.links.to_le_bytes());
        match kind {
            NodeKind::Dir(_) => {
                let mut b = dir_blocks(&plan.entries, bs);
                if ino == FIRST_INO {
                    b = b.max(lf_blocks);
                }
                plan.blocks = b;
                needs.blocks += b + indirect_blocks(b, ppb);
                needs.apparent += b * bs;
                for (name, eino, eft) in &plan.entries {
                    h.update((name.len() as u32).to_le_bytes());
                    h.update(name);
                    h.update(eino.to_le_bytes());
                    h.update([*eft]);
                }
            }
            NodeKind::File(data) => {
                let size = data.size();
                if size > max_file {
                    return Err(Ext2Error::Source {
                        path: path(),
                        msg: format!(
                            "{size} bytes is larger than the largest ext2 file with {bs}-byte blocks ({max_file} bytes)"
                        ),
                    });
                }
                if let FileData::Sparse { size, extents } = data {
                    let mut end = 0u64;
                    for (off, bytes) in extents {
                        let e = off
                            .checked_add(bytes.len() as u64)
                            .filter(|&e| *off >= end && e <= *size)
                            .ok_or_else(|| {
                                tree_err(format!(
                                    "{}: sparse extents overlap, are unsorted or pass the end",
                                    path().display()
                                ))
                            })?;
                        end = e;
                    }
                }
                let b = size.div_ceil(bs);
                plan.blocks = b;
                needs.blocks += b + indirect_blocks(b, ppb);
                needs.apparent += size;
                files += 1;
                file_bytes += size;
                h.update(size.to_le_bytes());
            }
            NodeKind::Symlink(target) => {
                if target.is_empty() || target.contains(&0) || target.len() as u64 >= bs {
                    return Err(Ext2Error::Source {
                        path: path(),
                        msg: format!(
                            "symbolic link target of {} bytes (ext2 with {bs}-byte blocks stores 1 to {} bytes without NUL)",
                            target.len(),
                            bs - 1
                        ),
                    });
                }
                plan.blocks = u64::from(target.len() >= 60);
                needs.blocks += plan.blocks;
                needs.apparent += target.len() as u64;
                h.update((target.len() as u32).to_le_bytes());
                h.update(target);
            }
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                if *major > 0xfff || *minor > 0xfffff {
                    return Err(Ext2Error::Source {
                        path: path(),
                        msg: format!(
                            "device {major}:{minor} does not fit ext2's 12:20-bit encoding"
                        ),
                    });
                }
                h.update(major.to_le_bytes());
                h.update(minor.to_le_bytes());
            }
            NodeKind::Fifo | NodeKind::Socket => {}
        }
    }
    if let Some(a) = tree.host_apparent_size {
        needs.apparent = a;
    }
    let fs_time = match sde {
        Some(e) => clamp_time(e, None),
        None if max_mtime == i64::MIN => 0,
        None => clamp_time(max_mtime, None),
    };
    Ok(Prepared {
        plans,
        needs,
        digest: h.finalize().into(),
        files,
        file_bytes,
        fs_time,
    })
}

fn derive(tag: &[u8], digest: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"myst-mkext2 ");
    h.update(tag);
    h.update(digest);
    h.finalize().into()
}

/// A UUID from a digest, marked as RFC 9562 version 8 (custom).
fn uuid_from(d: &[u8; 32]) -> [u8; 16] {
    let mut u = [0u8; 16];
    u.copy_from_slice(&d[..16]);
    u[6] = (u[6] & 0x0f) | 0x80;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// Reads a file's bytes and tells where its data is.
trait Source {
    /// Start of the next data region at or after `from`, or None.
    fn next_data(&mut self, from: u64) -> io::Result<Option<u64>>;
    /// End of the data region containing `from`.
    fn next_hole(&mut self, from: u64) -> io::Result<u64>;
    /// Fills `buf` from offset `off`.
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()>;
}

struct MemSource<'a>(&'a [u8]);

impl Source for MemSource<'_> {
    fn next_data(&mut self, from: u64) -> io::Result<Option<u64>> {
        Ok((from < self.0.len() as u64).then_some(from))
    }
    fn next_hole(&mut self, _from: u64) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let off = off as usize;
        buf.copy_from_slice(&self.0[off..off + buf.len()]);
        Ok(())
    }
}

struct SparseSource<'a> {
    extents: &'a [(u64, Vec<u8>)],
}

impl Source for SparseSource<'_> {
    fn next_data(&mut self, from: u64) -> io::Result<Option<u64>> {
        Ok(self
            .extents
            .iter()
            .find(|(o, b)| o + b.len() as u64 > from && !b.is_empty())
            .map(|(o, _)| (*o).max(from)))
    }
    fn next_hole(&mut self, from: u64) -> io::Result<u64> {
        Ok(self
            .extents
            .iter()
            .find(|(o, b)| *o <= from && o + b.len() as u64 > from)
            .map(|(o, b)| o + b.len() as u64)
            .unwrap_or(from))
    }
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        buf.fill(0);
        let end = off + buf.len() as u64;
        for (o, b) in self.extents {
            let (s, e) = (*o, o + b.len() as u64);
            if e <= off || s >= end {
                continue;
            }
            let from = s.max(off);
            let to = e.min(end);
            buf[(from - off) as usize..(to - off) as usize]
                .copy_from_slice(&b[(from - s) as usize..(to - s) as usize]);
        }
        Ok(())
    }
}

/// A [`FileData::Stream`] file.
struct StreamFile<'a> {
    streams: &'a mut dyn StreamSource,
    stream: u32,
    base: u64,
    size: u64,
}

impl Source for StreamFile<'_> {
    fn next_data(&mut self, from: u64) -> io::Result<Option<u64>> {
        Ok((from < self.size).then_some(from))
    }
    fn next_hole(&mut self, _from: u64) -> io::Result<u64> {
        Ok(self.size)
    }
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let at = self
            .base
            .checked_add(off)
            .ok_or_else(|| io::Error::other("stream offset overflows"))?;
        self.streams.read_at(self.stream, at, buf)
    }
}

/// Files smaller than this are read without asking for holes first.
const SEEK_HOLES_FROM: u64 = 1 << 20;

struct HostSource {
    file: File,
    size: u64,
    seek_holes: bool,
}

impl HostSource {
    fn open(path: &Path, size: u64) -> io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        // NOFOLLOW: a file swapped for a symlink is not followed;
        // NONBLOCK: a file swapped for a FIFO does not hang the build.
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // A file replaced by a directory fails to read (EISDIR); by a
        // FIFO or a socket, reads fail or come up short: both are errors.
        let file = File::from(fd);
        Ok(HostSource {
            file,
            size,
            seek_holes: size >= SEEK_HOLES_FROM,
        })
    }
}

impl Source for HostSource {
    fn next_data(&mut self, from: u64) -> io::Result<Option<u64>> {
        if from >= self.size {
            return Ok(None);
        }
        if !self.seek_holes {
            return Ok(Some(from));
        }
        match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Data(from)) {
            Ok(o) => Ok(Some(o)),
            Err(rustix::io::Errno::NXIO) => Ok(None),
            Err(_) => {
                // No SEEK_DATA on this file system: read everything.
                self.seek_holes = false;
                Ok(Some(from))
            }
        }
    }
    fn next_hole(&mut self, from: u64) -> io::Result<u64> {
        if !self.seek_holes {
            return Ok(self.size);
        }
        match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Hole(from)) {
            Ok(o) => Ok(o),
            Err(_) => Ok(self.size),
        }
    }
    fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::other("file shrank while the image was being built")
            } else {
                e
            }
        })
    }
}

fn is_zero(b: &[u8]) -> bool {
    // Data blocks almost always differ from zero in their first bytes:
    // look there first, then compare in 64-byte strides (wide loads).
    if b.iter().take(16).any(|&x| x != 0) {
        return false;
    }
    let chunks = b.chunks_exact(64);
    let rest = chunks.remainder();
    chunks
        .into_iter()
        .all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
        && rest.iter().all(|&x| x == 0)
}

/// Sequential block allocator over the groups' data areas.
struct Alloc<'g> {
    geo: &'g Geometry,
    group: u64,
    next: u64,
    /// End (exclusive) of the allocated blocks in each group.
    ends: Vec<u64>,
}

impl<'g> Alloc<'g> {
    fn new(geo: &'g Geometry) -> Self {
        let ends = (0..geo.groups).map(|g| geo.data_start(g)).collect();
        Alloc {
            geo,
            group: 0,
            next: geo.data_start(0),
            ends,
        }
    }

    /// The next free block and how many follow it contiguously.
    fn peek(&mut self) -> Result<(u64, u64), Ext2Error> {
        loop {
            let end = self.geo.group_start(self.group) + self.geo.group_len(self.group);
            if self.next < end {
                return Ok((self.next, end - self.next));
            }
            self.group += 1;
            if self.group >= self.geo.groups {
                return Err(Ext2Error::TooBig(format!(
                    "the tree needs more than the {} data blocks of the file system (did files grow while it was built?)",
                    self.geo.data_blocks()
                )));
            }
            self.next = self.geo.data_start(self.group);
        }
    }

    /// Takes `n` blocks from the run [`Alloc::peek`] returned.
    fn take(&mut self, n: u64) {
        self.next += n;
        self.ends[self.group as usize] = self.next;
    }

    /// Gives back the last `n` blocks taken (in the current group).
    fn untake(&mut self, n: u64) {
        self.next -= n;
        self.ends[self.group as usize] = self.next;
    }

    /// Leaves the rest of the current group free.
    fn skip_group(&mut self) {
        self.next = self.geo.group_start(self.group) + self.geo.group_len(self.group);
    }
}

/// A block number and its contents.
type Block = (u64, Vec<u8>);

/// An indirect block a logical block needs, parents first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// The triple indirect block.
    Top,
    /// A double indirect block: 0 = `i_block[13]`, m >= 1 = the m-th
    /// under the triple.
    Mid(u64),
    /// A single indirect block: leaf `i` maps logical blocks
    /// `12 + i*ppb ..`; 0 = `i_block[12]`, 1..=ppb under the double,
    /// the rest under the triple.
    Leaf(u64),
}

/// Maps logical to physical blocks of one inode. Logical blocks arrive in
/// increasing order; the indirect blocks they need are allocated just
/// before them (as mke2fs places them) and filled in when the map is done.
struct MapBuilder {
    ppb: u64,
    i_block: [u32; N_BLOCKS],
    data: u64,
    leaves: Vec<(u64, u64, Vec<u32>)>,
    mids: Vec<(u64, u64, Vec<u32>)>,
    top: Option<(u64, Vec<u32>)>,
}

impl MapBuilder {
    fn new(bs: u64) -> Self {
        MapBuilder {
            ppb: bs / 4,
            i_block: [0; N_BLOCKS],
            data: 0,
            leaves: Vec::new(),
            mids: Vec::new(),
            top: None,
        }
    }

    fn leaf_of(&self, logical: u64) -> Option<u64> {
        logical.checked_sub(N_DIRECT as u64).map(|l| l / self.ppb)
    }

    fn mid_of(&self, leaf: u64) -> Option<u64> {
        match leaf {
            0 => None,
            l if l <= self.ppb => Some(0),
            l => Some(1 + (l - 1 - self.ppb) / self.ppb),
        }
    }

    /// Blocks after `logical` (included) that share its indirect block.
    fn span(&self, logical: u64) -> u64 {
        match logical.checked_sub(N_DIRECT as u64) {
            None => N_DIRECT as u64 - logical,
            Some(l) => self.ppb - l % self.ppb,
        }
    }

    /// The indirect blocks `logical` needs that do not exist yet.
    fn missing(&self, logical: u64) -> Vec<Level> {
        let mut out = Vec::new();
        let Some(leaf) = self.leaf_of(logical) else {
            return out;
        };
        if leaf > self.ppb && self.top.is_none() {
            out.push(Level::Top);
        }
        if let Some(mid) = self.mid_of(leaf) {
            if self.mids.last().map(|m| m.0) != Some(mid) {
                out.push(Level::Mid(mid));
            }
        }
        if self.leaves.last().map(|l| l.0) != Some(leaf) {
            out.push(Level::Leaf(leaf));
        }
        out
    }

    fn set_parent(&mut self, level: Level, value: u32) {
        let ppb = self.ppb;
        match level {
            Level::Top => self.i_block[14] = value,
            Level::Mid(0) => self.i_block[13] = value,
            Level::Mid(m) => {
                if let Some(t) = &mut self.top {
                    t.1[(m - 1) as usize] = value;
                }
            }
            Level::Leaf(0) => self.i_block[12] = value,
            Level::Leaf(l) => {
                let slot = if l <= ppb { l - 1 } else { (l - 1 - ppb) % ppb };
                if let Some(m) = self.mids.last_mut() {
                    m.2[slot as usize] = value;
                }
            }
        }
    }

    /// Creates the indirect blocks `levels` (from [`MapBuilder::missing`])
    /// at the given physical blocks.
    fn open(&mut self, levels: &[Level], phys: u64) {
        for (i, &level) in levels.iter().enumerate() {
            let p = phys + i as u64;
            let zeros = vec![0u32; self.ppb as usize];
            match level {
                Level::Top => self.top = Some((p, zeros)),
                Level::Mid(m) => self.mids.push((m, p, zeros)),
                Level::Leaf(l) => self.leaves.push((l, p, zeros)),
            }
            self.set_parent(level, p as u32);
        }
    }

    /// Undoes [`MapBuilder::open`] (the blocks they were for were all zeros).
    fn cancel(&mut self, levels: &[Level]) {
        for &level in levels.iter().rev() {
            self.set_parent(level, 0);
            match level {
                Level::Top => self.top = None,
                Level::Mid(_) => {
                    self.mids.pop();
                }
                Level::Leaf(_) => {
                    self.leaves.pop();
                }
            }
        }
    }

    /// Maps `logical` to `physical`; its indirect blocks must be open.
    fn add(&mut self, logical: u64, physical: u64) {
        self.data += 1;
        match logical.checked_sub(N_DIRECT as u64) {
            None => self.i_block[logical as usize] = physical as u32,
            Some(l) => {
                if let Some(leaf) = self.leaves.last_mut() {
                    leaf.2[(l % self.ppb) as usize] = physical as u32;
                }
            }
        }
    }

    /// `i_block`, the blocks used (data + indirect) and the contents of
    /// the indirect blocks.
    fn finish(self) -> ([u32; N_BLOCKS], u64, Vec<Block>) {
        let mut blocks = Vec::new();
        let all = self
            .leaves
            .into_iter()
            .map(|(_, p, v)| (p, v))
            .chain(self.mids.into_iter().map(|(_, p, v)| (p, v)))
            .chain(self.top);
        for (p, v) in all {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            blocks.push((p, bytes));
        }
        let total = self.data + blocks.len() as u64;
        (self.i_block, total, blocks)
    }
}

struct Writer<'a, 'p> {
    geo: &'a Geometry,
    bs: u64,
    alloc: Alloc<'a>,
    sink: Sink<'a>,
    progress: Option<&'p dyn Progress>,
    chunk_blocks: usize,
}

impl Writer<'_, '_> {
    /// Streams a file's data into the image; all-zero blocks become holes
    /// when `holes` is set. Returns `i_block` and the blocks used.
    fn write_data(
        &mut self,
        src: &mut dyn Source,
        size: u64,
        holes: bool,
        path: &dyn Fn() -> PathBuf,
    ) -> Result<([u32; N_BLOCKS], u64), Ext2Error> {
        let bs = self.bs;
        let mut map = MapBuilder::new(bs);
        let mut pos = 0u64; // next logical block not yet handled
        let rd = |e: io::Error| Ext2Error::io(&path(), e);
        while pos * bs < size {
            let Some(ds) = src.next_data(pos * bs).map_err(rd)? else {
                break;
            };
            if ds >= size {
                break;
            }
            let de = src.next_hole(ds).map_err(rd)?.clamp(ds + 1, size);
            let mut lb = (ds / bs).max(pos);
            let lb_end = de.div_ceil(bs);
            while lb < lb_end {
                let levels = map.missing(lb);
                let m = levels.len() as u64;
                let (phys, run) = self.alloc.peek()?;
                if run < m + 1 {
                    // Keep an indirect block next to its first data block.
                    self.alloc.skip_group();
                    continue;
                }
                self.sink.ensure_at(phys)?;
                if self.sink.room()? < m as usize + 1 {
                    self.sink.flush()?;
                    self.sink.ensure_at(phys)?;
                }
                let room = self.sink.room()? as u64 - m;
                if m > 0 {
                    // Placeholders, filled in when the map is complete.
                    self.sink.slot(m as usize).fill(0);
                    self.sink.commit(m as usize);
                    self.alloc.take(m);
                    map.open(&levels, phys);
                }
                let dphys = phys + m;
                let n = (lb_end - lb)
                    .min(run - m)
                    .min(room)
                    .min(map.span(lb))
                    .min(self.chunk_blocks as u64);
                let n = n as usize;
                let off = lb * bs;
                let want = (n as u64 * bs).min(size - off) as usize;
                let slot = self.sink.slot(n);
                src.read_at(&mut slot[..want], off).map_err(rd)?;
                slot[want..].fill(0);
                let mut k = 0usize;
                let b = bs as usize;
                for i in 0..n {
                    if holes && is_zero(&slot[i * b..(i + 1) * b]) {
                        continue;
                    }
                    if i != k {
                        slot.copy_within(i * b..(i + 1) * b, k * b);
                    }
                    map.add(lb + i as u64, dphys + k as u64);
                    k += 1;
                }
                if k == 0 && m > 0 {
                    // All zeros: no indirect block after all.
                    self.sink.uncommit(m as usize);
                    self.alloc.untake(m);
                    map.cancel(&levels);
                }
                self.sink.commit(k);
                self.alloc.take(k as u64);
                if let Some(p) = self.progress {
                    p.advance(0, want as u64);
                }
                lb += n as u64;
            }
            pos = lb_end;
        }
        let (i_block, total, indirect) = map.finish();
        for (p, bytes) in indirect {
            self.sink.defer(p, bytes);
        }
        Ok((i_block, total))
    }
}

/// Builds the image into `out` (a new, empty file; `out_path` names it in
/// errors): `[payload.header][ext2, transformed][verity superblock + tree]`.
/// The FSSIG trailer is left to the caller, at [`Image::end`].
pub fn build(
    tree: &Tree,
    out: &File,
    out_path: &Path,
    opts: &Options,
    payload: &Payload,
    progress: Option<&dyn Progress>,
) -> Result<Image, Ext2Error> {
    build_streamed(tree, out, out_path, opts, payload, progress, &mut NoStreams)
}

/// [`build`] for a tree with [`FileData::Stream`] files, read from
/// `streams` (from the calling thread only).
pub fn build_streamed(
    tree: &Tree,
    out: &File,
    out_path: &Path,
    opts: &Options,
    payload: &Payload,
    progress: Option<&dyn Progress>,
    streams: &mut dyn StreamSource,
) -> Result<Image, Ext2Error> {
    let bs = opts.block_size;
    if ![1024, 2048, 4096].contains(&bs) {
        return Err(Ext2Error::Config(format!(
            "block size {bs}: use 1024, 2048 or 4096"
        )));
    }
    if !payload.header.len().is_multiple_of(VBS) {
        return Err(Ext2Error::Config(format!(
            "header of {} bytes is not a multiple of 4096",
            payload.header.len()
        )));
    }
    let prep = prepare(tree, opts)?;
    let geo = layout::plan(&prep.needs, bs, opts.min_size)?;
    if (prep.plans.len() as u64 + u64::from(FIRST_INO) - 2) > geo.inodes_count() {
        return Err(Ext2Error::TooBig("not enough inodes".into()));
    }
    let mut h = Sha256::new();
    h.update(prep.digest);
    h.update(geo.blocks_count.to_le_bytes());
    h.update(geo.inodes_per_group.to_le_bytes());
    h.update(Sha256::digest(payload.header));
    let digest: [u8; 32] = h.finalize().into();
    let salt = derive(b"verity salt", &digest);
    let uuid = uuid_from(&derive(b"ext2 uuid", &digest));
    let mut hash_seed = [0u8; 16];
    hash_seed.copy_from_slice(&derive(b"ext2 hash seed", &digest)[..16]);

    let header_len = payload.header.len() as u64;
    let hash_offset = header_len + geo.bytes();
    let data_blocks = hash_offset / VBS as u64;
    let vgeo = verity::Geometry::new(data_blocks);
    let end = hash_offset + vgeo.area_bytes();
    out.set_len(end).map_err(|e| Ext2Error::Write {
        path: out_path.to_path_buf(),
        err: e,
    })?;
    let zero_leaf = verity::hash_block(&salt, &[0u8; VBS]);
    let shared = Shared {
        leaves: Mutex::new(vec![zero_leaf; data_blocks as usize]),
        salt,
        file: out,
        direct: if opts.direct_io {
            sink::open_direct(out_path)
        } else {
            None
        },
        transform: payload.transform,
        error: Mutex::new(None),
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8)
    } else {
        opts.threads
    };
    if let Some(p) = progress {
        p.start(prep.files, prep.file_bytes);
    }

    let Channels {
        job_tx,
        job_rx,
        write_tx,
        write_rx,
        free_tx,
        free_rx,
    } = Channels::new();
    let (counts, tail) = std::thread::scope(|s| {
        let job_rx = &job_rx;
        let shared = &shared;
        if threads > 0 {
            for _ in 0..threads {
                let writer = write_tx.clone();
                s.spawn(move || shared.run(job_rx, writer));
            }
            s.spawn(move || shared.run_writer(write_rx, free_tx));
        }
        drop(write_tx);
        let mut sink = Sink::new(
            out_path,
            shared,
            header_len,
            bs as usize,
            geo.blocks_count,
            (threads > 0).then_some(job_tx),
            free_rx,
        );
        if !payload.header.is_empty() {
            sink.write_raw(0, payload.header)?;
        }
        let mut w = Writer {
            geo: &geo,
            bs,
            alloc: Alloc::new(&geo),
            sink,
            progress,
            chunk_blocks: (1 << 20) / bs as usize,
        };
        let counts = write_fs(&mut w, tree, &prep, opts, uuid, hash_seed, streams)?;
        let tail = w.sink.finish()?;
        Ok::<_, Ext2Error>((counts, tail))
    })?;
    let (used_blocks, used_inodes) = counts;
    let werr = |e| Ext2Error::Write {
        path: out_path.to_path_buf(),
        err: e,
    };
    if let Some(e) = shared.take_error() {
        return Err(werr(e));
    }
    sink::complete(&shared, out_path, tail)?;
    let leaves = shared
        .leaves
        .into_inner()
        .map_err(|_| Ext2Error::Config("a worker thread failed".into()))?;
    let tree_at = hash_offset + VBS as u64;
    let root_hash = verity::write_tree(&salt, &leaves, |off, bytes| {
        out.write_all_at(bytes, tree_at + off)
    })
    .map_err(werr)?;
    drop(leaves);
    let verity_uuid = uuid_from(&derive(b"verity uuid", &root_hash));
    let sb = verity::Superblock {
        uuid: verity_uuid,
        data_blocks,
        salt,
    };
    out.write_all_at(&sb.to_block(), hash_offset)
        .map_err(werr)?;
    Ok(Image {
        hash_offset,
        end,
        root_hash,
        salt,
        verity_uuid,
        uuid,
        geometry: geo,
        used_inodes,
        used_blocks,
    })
}

/// Writes data, inode tables, bitmaps, descriptors and superblocks.
/// Returns (used blocks, used inodes).
fn write_fs(
    w: &mut Writer,
    tree: &Tree,
    prep: &Prepared,
    opts: &Options,
    uuid: [u8; 16],
    hash_seed: [u8; 16],
    streams: &mut dyn StreamSource,
) -> Result<(u64, u64), Ext2Error> {
    let bs = w.bs;
    let geo = w.geo;
    let sde = opts.source_date_epoch;
    let last_ino = ino_of_index(prep.plans.len() - 1).max(FIRST_INO);
    let mut inodes: Vec<Inode> = vec![Inode::default(); last_ino as usize];
    let mut dirs_per_group = vec![0u64; geo.groups as usize];
    let bs_sectors = (bs / 512) as u32;
    // Stream files, written after everything else in (stream, offset)
    // order: (stream, offset, size, inode index, path).
    let mut deferred: Vec<(u32, u64, u64, usize, PathBuf)> = Vec::new();
    let file_blocks = |inode: &mut Inode,
                       (map, used): ([u32; N_BLOCKS], u64),
                       size: u64,
                       path: &dyn Fn() -> PathBuf|
     -> Result<(), Ext2Error> {
        let sectors = used
            .checked_mul(u64::from(bs_sectors))
            .filter(|&s| s <= u64::from(u32::MAX))
            .ok_or_else(|| Ext2Error::Source {
                path: path(),
                msg: "too many blocks for ext2's 32-bit sector count".into(),
            })?;
        inode.block = map;
        inode.blocks = sectors as u32;
        inode.size = size;
        Ok(())
    };

    for (i, plan) in prep.plans.iter().enumerate() {
        let ino = ino_of_index(i);
        let (meta, kind): (Meta, Option<&NodeKind>) = match plan.src {
            Src::Node(id) => (tree.nodes[id].meta, Some(&tree.nodes[id].kind)),
            Src::LostFound => (
                Meta {
                    perm: 0o700,
                    uid: 0,
                    gid: 0,
                    mtime: i64::from(prep.fs_time as i32),
                },
                None,
            ),
        };
        let node_id = match plan.src {
            Src::Node(id) => id,
            Src::LostFound => 0,
        };
        let path = || -> PathBuf {
            match (&plan.src, kind) {
                (_, Some(NodeKind::File(FileData::Host { path, .. }))) => path.clone(),
                (Src::LostFound, _) => PathBuf::from("lost+found"),
                _ => PathBuf::from(format!("inode {ino} (node {node_id})")),
            }
        };
        let t = clamp_time(meta.mtime, sde);
        let mut inode = Inode {
            uid: meta.uid,
            gid: meta.gid,
            atime: t,
            ctime: t,
            mtime: t,
            links_count: plan.links as u16,
            extra_isize: EXTRA_ISIZE,
            ..Inode::default()
        };
        let is_dir = matches!(kind, None | Some(NodeKind::Dir(_)));
        let mode_type = match kind {
            None => S_IFDIR,
            Some(k) => kind_type(k).0,
        };
        inode.mode = mode_type | (meta.perm & 0o7777);
        if is_dir {
            dirs_per_group[((ino - 1) as u64 / geo.inodes_per_group) as usize] += 1;
            let content = dir_content(&plan.entries, plan.blocks, bs);
            let (map, used) =
                w.write_data(&mut MemSource(&content), content.len() as u64, false, &path)?;
            inode.block = map;
            inode.blocks = (used as u32) * bs_sectors;
            inode.size = content.len() as u64;
        } else {
            match kind {
                Some(NodeKind::File(data)) => {
                    let size = data.size();
                    let written = match data {
                        FileData::Memory(v) => {
                            w.write_data(&mut MemSource(v), size, true, &path)?
                        }
                        FileData::Sparse { size, extents } => {
                            w.write_data(&mut SparseSource { extents }, *size, true, &path)?
                        }
                        FileData::Host { size: 0, .. } | FileData::Stream { size: 0, .. } => {
                            ([0; N_BLOCKS], 0)
                        }
                        FileData::Host { path: p, size } => {
                            let mut src =
                                HostSource::open(p, *size).map_err(|e| Ext2Error::io(p, e))?;
                            w.write_data(&mut src, *size, true, &path)?
                        }
                        FileData::Stream {
                            stream,
                            offset,
                            size,
                        } => {
                            deferred.push((*stream, *offset, *size, i, path()));
                            ([0; N_BLOCKS], 0)
                        }
                    };
                    file_blocks(&mut inode, written, size, &path)?;
                    if let Some(p) = w.progress {
                        p.advance(1, 0);
                    }
                }
                Some(NodeKind::Symlink(target)) => {
                    inode.size = target.len() as u64;
                    if target.len() < 60 {
                        let mut raw = [0u8; 60];
                        raw[..target.len()].copy_from_slice(target);
                        for (j, c) in raw.chunks(4).enumerate() {
                            inode.block[j] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        }
                    } else {
                        let mut content = vec![0u8; bs as usize];
                        content[..target.len()].copy_from_slice(target);
                        let (map, used) =
                            w.write_data(&mut MemSource(&content), bs, false, &path)?;
                        inode.block = map;
                        inode.blocks = (used as u32) * bs_sectors;
                    }
                }
                Some(NodeKind::CharDev { major, minor })
                | Some(NodeKind::BlockDev { major, minor }) => {
                    let d = encode_device(*major, *minor);
                    inode.block[0] = d[0];
                    inode.block[1] = d[1];
                }
                _ => {}
            }
        }
        inodes[(ino - 1) as usize] = inode;
    }
    deferred.sort_by_key(|d| (d.0, d.1, d.3));
    for (stream, offset, size, i, p) in deferred {
        let path = || p.clone();
        let mut src = StreamFile {
            streams: &mut *streams,
            stream,
            base: offset,
            size,
        };
        let written = w.write_data(&mut src, size, true, &path)?;
        let ino = ino_of_index(i);
        file_blocks(&mut inodes[(ino - 1) as usize], written, size, &path)?;
    }

    // Inode tables: only blocks holding used inodes are written; the rest
    // stays zero (a hole).
    let isz = usize::from(INODE_SIZE);
    let per_block = bs as usize / isz;
    let ipg = geo.inodes_per_group;
    for g in 0..geo.groups {
        let first = g * ipg; // index of the group's first inode
        if first >= u64::from(last_ino) {
            break;
        }
        let n = (u64::from(last_ino) - first).min(ipg) as usize;
        let blocks = n.div_ceil(per_block);
        let mut table = vec![0u8; blocks * bs as usize];
        for k in 0..n {
            inodes[first as usize + k].write_to(&mut table[k * isz..(k + 1) * isz]);
        }
        // Unused reserved inodes stay all zero, as e2fsck expects.
        for k in 0..n {
            let ino = first + k as u64 + 1;
            if ino != u64::from(ROOT_INO) && ino < u64::from(FIRST_INO) {
                table[k * isz..(k + 1) * isz].fill(0);
            }
        }
        w.sink.put(geo.inode_table(g), &table)?;
    }

    // Bitmaps and descriptors.
    let bits = (bs * 8) as usize;
    let mut descs = Vec::with_capacity(geo.groups as usize);
    let mut free_blocks_total = 0u64;
    let mut free_inodes_total = 0u64;
    for g in 0..geo.groups {
        let len = geo.group_len(g);
        let used_data = w.alloc.ends[g as usize] - geo.data_start(g);
        let used = geo.overhead(g) + used_data;
        let mut bb = vec![0u8; bs as usize];
        set_bits(&mut bb, 0, used as usize);
        set_bits(&mut bb, len as usize, bits);
        let first = g * ipg;
        let used_i = u64::from(last_ino).saturating_sub(first).min(ipg);
        let mut ib = vec![0u8; bs as usize];
        set_bits(&mut ib, 0, used_i as usize);
        set_bits(&mut ib, ipg as usize, bits);
        let mut both = bb;
        both.extend_from_slice(&ib);
        w.sink.put(geo.block_bitmap(g), &both)?;
        let free_b = len - used;
        let free_i = ipg - used_i;
        free_blocks_total += free_b;
        free_inodes_total += free_i;
        descs.push(GroupDesc {
            block_bitmap: geo.block_bitmap(g) as u32,
            inode_bitmap: geo.inode_bitmap(g) as u32,
            inode_table: geo.inode_table(g) as u32,
            free_blocks_count: free_b as u16,
            free_inodes_count: free_i as u16,
            used_dirs_count: dirs_per_group[g as usize] as u16,
            flags: 0,
        });
    }
    let mut gdt = vec![0u8; (geo.gdt_blocks * bs) as usize];
    for (i, d) in descs.iter().enumerate() {
        gdt[i * GROUP_DESC_SIZE..(i + 1) * GROUP_DESC_SIZE].copy_from_slice(&d.to_bytes());
    }
    let t = prep.fs_time;
    let mut sb = Superblock {
        inodes_count: geo.inodes_count() as u32,
        blocks_count: geo.blocks_count as u32,
        r_blocks_count: 0,
        free_blocks_count: free_blocks_total as u32,
        free_inodes_count: free_inodes_total as u32,
        first_data_block: geo.first_data_block as u32,
        log_block_size: (bs / 1024).trailing_zeros(),
        blocks_per_group: geo.blocks_per_group as u32,
        inodes_per_group: geo.inodes_per_group as u32,
        mtime: 0,
        wtime: t,
        mnt_count: 0,
        max_mnt_count: 0xffff,
        state: STATE_VALID,
        errors: ERRORS_CONTINUE,
        lastcheck: t,
        rev_level: 1,
        first_ino: FIRST_INO,
        inode_size: INODE_SIZE,
        block_group_nr: 0,
        feature_compat: 0,
        feature_incompat: FEATURE_INCOMPAT_FILETYPE,
        feature_ro_compat: FEATURE_RO_COMPAT_SPARSE_SUPER | FEATURE_RO_COMPAT_LARGE_FILE,
        uuid,
        volume_name: [0; 16],
        hash_seed,
        def_hash_version: 1,
        mkfs_time: t,
        min_extra_isize: EXTRA_ISIZE,
        want_extra_isize: EXTRA_ISIZE,
        flags: FLAGS_SIGNED_HASH,
    };
    for g in (0..geo.groups).filter(|&g| layout::has_super(g)) {
        sb.block_group_nr = g as u16;
        let mut blk = vec![0u8; bs as usize];
        // The primary sits at byte 1024; with 1 KiB blocks that is block 1
        // (the group start), otherwise 1024 bytes into block 0. Backups
        // start their group's first block.
        let at = if g == 0 && bs > 1024 { 1024 } else { 0 };
        blk[at..at + SUPERBLOCK_SIZE].copy_from_slice(&sb.to_bytes());
        blk.extend_from_slice(&gdt);
        let first = if g == 0 && bs > 1024 {
            0
        } else {
            geo.group_start(g)
        };
        w.sink.put(first, &blk)?;
    }
    let used_blocks = geo.blocks_count - geo.first_data_block - free_blocks_total;
    Ok((used_blocks, u64::from(last_ino)))
}

/// Sets bits `from..to` of a bitmap.
fn set_bits(map: &mut [u8], from: usize, to: usize) {
    for b in from..to.min(map.len() * 8) {
        map[b / 8] |= 1 << (b % 8);
    }
}

/// The bytes of a directory of `blocks` blocks holding `entries`.
fn dir_content(entries: &[(Vec<u8>, u32, u8)], blocks: u64, bs: u64) -> Vec<u8> {
    let bs = bs as usize;
    let mut out = vec![0u8; blocks as usize * bs];
    let mut blk = 0usize;
    let mut off = 0usize;
    let mut last: Option<usize> = None; // offset of the previous entry in this block
    for (name, ino, ftype) in entries {
        let need = dir_rec_len(name.len());
        if off + need > bs {
            if let Some(l) = last {
                let rl = (bs - (l - blk * bs)) as u16;
                out[l + 4..l + 6].copy_from_slice(&rl.to_le_bytes());
            }
            blk += 1;
            off = 0;
        }
        let at = blk * bs + off;
        DirEntry {
            inode: *ino,
            rec_len: need as u16,
            file_type: *ftype,
            name,
        }
        .write_to(&mut out[at..at + need]);
        last = Some(at);
        off += need;
    }
    if let Some(l) = last {
        let rl = (bs - (l - blk * bs)) as u16;
        out[l + 4..l + 6].copy_from_slice(&rl.to_le_bytes());
    }
    // Remaining blocks (lost+found's spare room) hold one empty entry each.
    for b in blk + 1..blocks as usize {
        let at = b * bs;
        out[at + 4..at + 6].copy_from_slice(&(bs as u16).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_sizes_match_linux() {
        // Values of ext2_max_size() on x86-64.
        assert_eq!(max_file_size(1024), 17_247_252_480);
        assert_eq!(max_file_size(2048), 275_415_851_008);
        assert_eq!(max_file_size(4096), 2_196_873_666_560);
    }

    #[test]
    fn indirect_counts() {
        assert_eq!(indirect_blocks(12, 1024), 0);
        assert_eq!(indirect_blocks(13, 1024), 1);
        assert_eq!(indirect_blocks(12 + 1024, 1024), 1);
        assert_eq!(indirect_blocks(12 + 1025, 1024), 3);
        assert_eq!(
            indirect_blocks(12 + 1024 + 1024 * 1024 + 1, 1024),
            1 + 1 + 1024 + 3
        );
    }

    #[test]
    fn dir_layout() {
        let entries: Vec<(Vec<u8>, u32, u8)> = (0..500)
            .map(|i| (format!("name-{i:05}").into_bytes(), 12 + i, ft::REG))
            .collect();
        let blocks = dir_blocks(&entries, 1024);
        let content = dir_content(&entries, blocks, 1024);
        let mut names = Vec::new();
        for b in content.chunks(1024) {
            for e in parse_dir_block(b).unwrap() {
                names.push(e.name.to_vec());
            }
        }
        assert_eq!(names.len(), 500);
        assert_eq!(names[499], b"name-00499");
    }
}
