//! Applying layers: the merged tree of metadata.
//!
//! Layers are applied base first, each tar entry in order, as the OCI image
//! spec ("Applying Changesets") says:
//! - `DIR/.wh.NAME` removes NAME (and all below it) as the lower layers
//!   left it; `DIR/.wh..wh..opq` removes every entry of DIR that came from
//!   a lower layer. Entries of the same layer are never hidden by its own
//!   whiteouts, wherever they come in the tar. Whiteout files are not
//!   themselves in the result.
//! - An entry replaces what was at its path, except that a directory over
//!   a directory keeps the lower one's entries and takes the new metadata.
//! - A hard link names the node its target (in this or a lower layer)
//!   has at that moment; a later change of either path makes a new node
//!   for that path only.
//! - Missing parent directories are made (mode 0755, owner 0:0, time 0).
//! - Paths are relative: absolute paths, `..` components and paths whose
//!   directories pass through a symbolic link are refused (nothing is
//!   ever resolved through a link, so nothing can escape the root).
//!
//! A regular file's bytes are not copied: the node keeps (layer, offset in
//! the uncompressed tar, size), read again when the image is written.

use super::blob::hex;
use super::streams::decoded;
use super::{Image, OciError};
use crate::ext2::{FileData, Meta, NodeKind, Tree};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read};

/// What a merged node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MKind {
    /// A directory: name → (node, layer that put it there).
    Dir(BTreeMap<Vec<u8>, (usize, u32)>),
    /// A regular file: `size` bytes at `offset` of the uncompressed tar of
    /// layer `layer` (from 0).
    File {
        /// Layer index, from 0.
        layer: u32,
        /// Offset in the uncompressed tar.
        offset: u64,
        /// Size.
        size: u64,
    },
    /// A symbolic link.
    Symlink(Vec<u8>),
    /// A character device.
    CharDev(u32, u32),
    /// A block device.
    BlockDev(u32, u32),
    /// A FIFO.
    Fifo,
}

/// A node of the merged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MNode {
    /// Ownership, mode, time.
    pub meta: Meta,
    /// What it is.
    pub kind: MKind,
}

/// The file system the layers of an image make. Node 0 is the root.
/// Nodes no longer reachable (replaced or whited out) stay in the vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// All nodes.
    pub nodes: Vec<MNode>,
}

const DIR_META: Meta = Meta {
    perm: 0o755,
    uid: 0,
    gid: 0,
    mtime: 0,
};

/// A name as text for messages.
fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Reads through a stream, hashing it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Ends a tar stream that stops right after its last entry's data (umoci
/// 0.4 writes layers without the final padding and end-of-archive blocks;
/// Go's archive/tar reads them) with the zeros it lacks, and remembers
/// where the real stream ended so that an entry cut short is still an
/// error (see [`Merged::apply`]).
struct PadAtEof<R> {
    inner: R,
    pos: u64,
    eof_at: Option<u64>,
    zeros_left: u64,
}

impl<R: Read> Read for PadAtEof<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.eof_at.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.pos += n as u64;
                return Ok(n);
            }
            self.eof_at = Some(self.pos);
            self.zeros_left = (512 - self.pos % 512) % 512 + 1024;
        }
        let n = (buf.len() as u64).min(self.zeros_left) as usize;
        buf[..n].fill(0);
        self.zeros_left -= n as u64;
        Ok(n)
    }
}

/// Splits a tar path into components: `.` and empty ones dropped,
/// absolute paths and `..` refused.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    // The root alone may be written "/" (umoci does); any other absolute
    // path is refused.
    if !path.is_empty() && path.iter().all(|&b| b == b'/') {
        return Ok(Vec::new());
    }
    if path.first() == Some(&b'/') {
        return Err(format!("{}: absolute path in a layer", show(path)));
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(format!("{}: path with a '..' component", show(path))),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl Default for Merged {
    fn default() -> Self {
        Self::new()
    }
}

impl Merged {
    /// An empty root.
    pub fn new() -> Self {
        Merged {
            nodes: vec![MNode {
                meta: DIR_META,
                kind: MKind::Dir(BTreeMap::new()),
            }],
        }
    }

    /// Checks each layer's blob digest, then applies the layers in order.
    pub fn from_image(image: &Image) -> Result<Merged, OciError> {
        let mut m = Merged::new();
        for (i, layer) in image.layers.iter().enumerate() {
            let lerr = |msg: String| OciError::Layer {
                layer: i + 1,
                blob: layer.blob.name.clone(),
                msg,
            };
            if let Some(d) = &layer.digest {
                layer.blob.verify(d, None)?;
            }
            let reader = decoded(layer)?;
            let mut h = Hashing {
                inner: reader,
                hash: Sha256::new(),
            };
            m.apply(&mut h, i as u32).map_err(lerr)?;
            // The rest of the stream (end blocks, padding) belongs to the diff_id.
            io::copy(&mut h, &mut io::sink())
                .map_err(|e| lerr(format!("reading the end of the layer: {e}")))?;
            let actual = format!("sha256:{}", hex(&h.hash.finalize()));
            if let Some(want) = &layer.diff_id {
                if &actual != want {
                    return Err(OciError::Digest {
                        blob: layer.blob.name.clone(),
                        msg: format!(
                            "its uncompressed tar has digest {actual}, the config's diff_id is {want}"
                        ),
                    });
                }
            }
        }
        Ok(m)
    }

    /// Applies one layer (its uncompressed tar) as layer number `layer`.
    pub fn apply(&mut self, tar_stream: &mut dyn Read, layer: u32) -> Result<(), String> {
        let mut padded = PadAtEof {
            inner: tar_stream,
            pos: 0,
            eof_at: None,
            zeros_left: 0,
        };
        let mut end = 0u64;
        let mut last = Vec::new();
        {
            let mut ar = tar::Archive::new(&mut padded);
            let entries = ar
                .entries()
                .map_err(|e| format!("not a tar archive: {e}"))?;
            for e in entries {
                let mut e = e.map_err(|e| format!("truncated or corrupt tar: {e}"))?;
                let data_end = e.raw_file_position().saturating_add(e.size());
                if data_end >= end {
                    end = data_end;
                    last = e.path_bytes().into_owned();
                }
                self.apply_entry(&mut e, layer)?;
            }
        }
        if let Some(eof) = padded.eof_at {
            if end > eof {
                return Err(format!(
                    "truncated tar: {} ends at byte {end}, the layer at byte {eof}",
                    show(&last)
                ));
            }
        }
        Ok(())
    }

    fn apply_entry<R: Read>(&mut self, e: &mut tar::Entry<R>, layer: u32) -> Result<(), String> {
        let path = e.path_bytes().into_owned();
        let et = e.header().entry_type();
        use tar::EntryType as T;
        if matches!(et, T::XGlobalHeader | T::XHeader) {
            return Ok(());
        }
        let comps = components(&path)?;
        let here = || show(&path);
        let mode = e
            .header()
            .mode()
            .map_err(|err| format!("{}: bad mode: {err}", here()))?;
        let id = |v: io::Result<u64>, what: &str| -> Result<u32, String> {
            let v = v.map_err(|err| format!("{}: bad {what}: {err}", here()))?;
            u32::try_from(v).map_err(|_| format!("{}: {what} {v} does not fit in 32 bits", here()))
        };
        let uid = id(e.header().uid(), "uid")?;
        let gid = id(e.header().gid(), "gid")?;
        let mut mtime = e
            .header()
            .mtime()
            .map_err(|err| format!("{}: bad mtime: {err}", here()))? as i64;
        if let Ok(Some(pax)) = e.pax_extensions() {
            for ext in pax.flatten() {
                if ext.key_bytes() == b"mtime" {
                    let v = show(ext.value_bytes());
                    let int = v.split('.').next().unwrap_or("");
                    if let Ok(t) = int.parse::<i64>() {
                        mtime = t;
                    }
                }
            }
        }
        let meta = Meta {
            perm: (mode & crate::mode::S_IPERM) as u16,
            uid,
            gid,
            mtime,
        };
        let Some((name, parents)) = comps.split_last() else {
            // The root itself ("./").
            if et.is_dir() {
                self.nodes[0].meta = meta;
                return Ok(());
            }
            return Err(format!("{}: the root is not a directory", here()));
        };
        let name = name.to_vec();
        if name == b".wh..wh..opq" {
            let dir = self.dir(parents, true, layer, &path)?.ok_or("no dir")?;
            if let MKind::Dir(children) = &mut self.nodes[dir].kind {
                children.retain(|_, (_, l)| *l >= layer);
            }
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            if let Some(dir) = self.dir(parents, false, layer, &path)? {
                if let MKind::Dir(children) = &mut self.nodes[dir].kind {
                    if children.get(hidden).is_some_and(|(_, l)| *l < layer) {
                        children.remove(hidden);
                    }
                }
            }
            return Ok(());
        }
        let parent = self.dir(parents, true, layer, &path)?.ok_or("no dir")?;
        let kind = match et {
            T::Regular | T::Continuous => MKind::File {
                layer,
                offset: e.raw_file_position(),
                size: e.size(),
            },
            T::Directory => MKind::Dir(BTreeMap::new()),
            T::Symlink => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| format!("{}: symbolic link without a target", here()))?;
                if t.is_empty() {
                    return Err(format!("{}: symbolic link with an empty target", here()));
                }
                MKind::Symlink(t.into_owned())
            }
            T::Char | T::Block => {
                let dev = |v: io::Result<Option<u32>>| -> Result<u32, String> {
                    Ok(
                        v.map_err(|err| format!("{}: bad device number: {err}", here()))?
                            .unwrap_or(0),
                    )
                };
                let (ma, mi) = (
                    dev(e.header().device_major())?,
                    dev(e.header().device_minor())?,
                );
                if et == T::Char {
                    MKind::CharDev(ma, mi)
                } else {
                    MKind::BlockDev(ma, mi)
                }
            }
            T::Fifo => MKind::Fifo,
            T::Link => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| format!("{}: hard link without a target", here()))?
                    .into_owned();
                let target = self
                    .lookup_plain(&t)
                    .map_err(|m| format!("{}: hard link to {}: {m}", here(), show(&t)))?;
                if matches!(self.nodes[target].kind, MKind::Dir(_)) {
                    return Err(format!(
                        "{}: hard link to the directory {}",
                        here(),
                        show(&t)
                    ));
                }
                if let MKind::Dir(children) = &mut self.nodes[parent].kind {
                    children.insert(name, (target, layer));
                }
                return Ok(());
            }
            T::GNUSparse => {
                return Err(format!("{}: sparse tar entries are not supported", here()))
            }
            other => {
                return Err(format!(
                    "{}: unsupported tar entry type {:?}",
                    here(),
                    other.as_byte() as char
                ))
            }
        };
        let existing = match &self.nodes[parent].kind {
            MKind::Dir(c) => c.get(&name).map(|&(n, _)| n),
            _ => None,
        };
        if let (Some(old), MKind::Dir(_)) = (existing, &kind) {
            if matches!(self.nodes[old].kind, MKind::Dir(_)) {
                self.nodes[old].meta = meta;
                if let MKind::Dir(c) = &mut self.nodes[parent].kind {
                    c.insert(name, (old, layer));
                }
                return Ok(());
            }
        }
        let nid = self.nodes.len();
        self.nodes.push(MNode { meta, kind });
        if let MKind::Dir(c) = &mut self.nodes[parent].kind {
            c.insert(name, (nid, layer));
        }
        Ok(())
    }

    /// The directory at `comps`, made if missing and `create` (else None).
    fn dir(
        &mut self,
        comps: &[&[u8]],
        create: bool,
        layer: u32,
        path: &[u8],
    ) -> Result<Option<usize>, String> {
        let mut cur = 0usize;
        for (k, c) in comps.iter().enumerate() {
            let next = match &self.nodes[cur].kind {
                MKind::Dir(ch) => ch.get(*c).map(|&(n, _)| n),
                _ => None,
            };
            cur = match next {
                Some(n) => match &self.nodes[n].kind {
                    MKind::Dir(_) => n,
                    MKind::Symlink(_) => {
                        return Err(format!(
                            "{}: passes through the symbolic link /{}",
                            show(path),
                            show(&comps[..=k].join(&b'/'))
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "{}: /{} is not a directory",
                            show(path),
                            show(&comps[..=k].join(&b'/'))
                        ))
                    }
                },
                None if create => {
                    let n = self.nodes.len();
                    self.nodes.push(MNode {
                        meta: DIR_META,
                        kind: MKind::Dir(BTreeMap::new()),
                    });
                    if let MKind::Dir(ch) = &mut self.nodes[cur].kind {
                        ch.insert(c.to_vec(), (n, layer));
                    }
                    n
                }
                None => return Ok(None),
            };
        }
        Ok(Some(cur))
    }

    /// The node at a tar path, without following any symbolic link.
    fn lookup_plain(&self, path: &[u8]) -> Result<usize, String> {
        let comps = components(path)?;
        let mut cur = 0usize;
        for c in comps {
            cur = match &self.nodes[cur].kind {
                MKind::Dir(ch) => ch.get(c).map(|&(n, _)| n).ok_or("no such file")?,
                MKind::Symlink(_) => return Err("passes through a symbolic link".into()),
                _ => return Err("not a directory on the way".into()),
            };
        }
        Ok(cur)
    }

    /// The node an absolute path names inside the image, following
    /// symbolic links as the kernel would with the image as root.
    pub fn resolve(&self, path: &[u8]) -> Option<usize> {
        let mut todo: Vec<Vec<u8>> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(|c| c.to_vec())
            .rev()
            .collect();
        let mut stack: Vec<usize> = vec![0];
        let mut links = 0;
        while let Some(c) = todo.pop() {
            let cur = *stack.last()?;
            match c.as_slice() {
                b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let MKind::Dir(ch) = &self.nodes[cur].kind else {
                return None;
            };
            let &(n, _) = ch.get(&c)?;
            if let MKind::Symlink(t) = &self.nodes[n].kind {
                links += 1;
                if links > 40 {
                    return None;
                }
                if t.first() == Some(&b'/') {
                    stack.truncate(1);
                }
                todo.extend(
                    t.split(|&b| b == b'/')
                        .filter(|c| !c.is_empty())
                        .map(|c| c.to_vec())
                        .rev(),
                );
            } else {
                stack.push(n);
            }
        }
        stack.last().copied()
    }

    /// Visits the reachable tree depth first, parents before children,
    /// children sorted by name bytes: `f(path, node id)` with paths like
    /// `.`, `bin`, `bin/sh`.
    pub fn walk<E, F>(&self, mut f: F) -> Result<(), E>
    where
        F: FnMut(&[u8], usize) -> Result<(), E>,
    {
        let mut stack: Vec<(Vec<u8>, usize)> = vec![(b".".to_vec(), 0)];
        while let Some((path, id)) = stack.pop() {
            f(&path, id)?;
            if let MKind::Dir(ch) = &self.nodes[id].kind {
                for (name, &(n, _)) in ch.iter().rev() {
                    let p = if id == 0 {
                        name.clone()
                    } else {
                        let mut p = path.clone();
                        p.push(b'/');
                        p.extend_from_slice(name);
                        p
                    };
                    stack.push((p, n));
                }
            }
        }
        Ok(())
    }

    /// The tree for the ext2 builder; regular files are
    /// [`FileData::Stream`] with stream = layer index, to be read from
    /// [`LayerStreams`](super::LayerStreams).
    pub fn to_ext2(&self) -> Tree {
        let mut tree = Tree::new(self.nodes[0].meta);
        let mut map: Vec<Option<usize>> = vec![None; self.nodes.len()];
        map[0] = Some(Tree::ROOT);
        let mut stack = vec![(0usize, Tree::ROOT)];
        while let Some((mid, tid)) = stack.pop() {
            let MKind::Dir(ch) = &self.nodes[mid].kind else {
                continue;
            };
            for (name, &(n, _)) in ch {
                if let Some(t) = map[n] {
                    tree.link(tid, name, t);
                    continue;
                }
                let node = &self.nodes[n];
                let kind = match &node.kind {
                    MKind::Dir(_) => NodeKind::Dir(Vec::new()),
                    MKind::File {
                        layer,
                        offset,
                        size,
                    } => NodeKind::File(FileData::Stream {
                        stream: *layer,
                        offset: *offset,
                        size: *size,
                    }),
                    MKind::Symlink(t) => NodeKind::Symlink(t.clone()),
                    MKind::CharDev(major, minor) => NodeKind::CharDev {
                        major: *major,
                        minor: *minor,
                    },
                    MKind::BlockDev(major, minor) => NodeKind::BlockDev {
                        major: *major,
                        minor: *minor,
                    },
                    MKind::Fifo => NodeKind::Fifo,
                };
                let t = tree.add(tid, name, node.meta, kind);
                map[n] = Some(t);
                if matches!(node.kind, MKind::Dir(_)) {
                    stack.push((n, t));
                }
            }
        }
        tree
    }

    /// Regular files (each node once) and their bytes.
    pub fn count(&self) -> (u64, u64) {
        let mut seen = vec![false; self.nodes.len()];
        let mut files = (0u64, 0u64);
        let _ = self.walk::<(), _>(|_, id| {
            if let MKind::File { size, .. } = self.nodes[id].kind {
                if !seen[id] {
                    seen[id] = true;
                    files.0 += 1;
                    files.1 += size;
                }
            }
            Ok(())
        });
        files
    }
}
