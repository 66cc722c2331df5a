//! ramfs: an in-memory file system (/tmp, /dev/shm, and the root of a CPIO
//! archive). File contents taken from an archive stay in the archive's buffer
//! until first written (zero copy); written files own their bytes. A byte
//! budget bounds what writes may add (ENOSPC, never a crash).

use crate::{
    Attr, DirEntry, Errno, FileSystem, FileType, FsResult, Ino, NewInode, SetAttr, StatFs, Timespec,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shared read-only bytes a file's contents can point into.
pub type Backing = Arc<dyn AsRef<[u8]> + Send + Sync>;

enum Data {
    Owned(Vec<u8>),
    Shared {
        buf: Backing,
        start: usize,
        len: usize,
    },
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Owned(v) => v,
            Data::Shared { buf, start, len } => {
                let all = (**buf).as_ref();
                all.get(*start..start.saturating_add(*len)).unwrap_or(&[])
            }
        }
    }

    fn owned(&mut self) -> &mut Vec<u8> {
        if let Data::Shared { .. } = self {
            *self = Data::Owned(self.bytes().to_vec());
        }
        match self {
            Data::Owned(v) => v,
            Data::Shared { .. } => unreachable!("converted above"),
        }
    }
}

enum Content {
    File(Data),
    Dir {
        entries: BTreeMap<Vec<u8>, Ino>,
        parent: Ino,
    },
    Symlink(Vec<u8>),
    Other,
}

struct Node {
    attr: Attr,
    content: Content,
    /// Distinguishes files created after a fork in different processes
    /// (their private copies hand out the same inode numbers).
    generation: u64,
}

struct Inner {
    nodes: HashMap<Ino, Node>,
    next: Ino,
    used: u64,
    /// Inodes the VFS keeps in use (open files), with their use counts.
    holds: HashMap<Ino, u32>,
    /// Inodes without links that are kept until their last release.
    orphans: HashSet<Ino>,
}

/// An in-memory file system.
pub struct RamFs {
    inner: RwLock<Inner>,
    limit: u64,
    magic: u64,
}

const ROOT: Ino = 1;

fn now() -> Timespec {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec {
        sec: d.as_secs() as i64,
        nsec: d.subsec_nanos(),
    }
}

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Errno::EINVAL.with("bad name"));
    }
    if name.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

impl RamFs {
    /// An empty file system whose root has permissions `perm`, holding at
    /// most `limit` bytes of written data.
    pub fn new(perm: u32, limit: u64) -> RamFs {
        let t = now();
        let root = Node {
            attr: Attr {
                ino: ROOT,
                kind: FileType::Directory,
                perm,
                nlink: 2,
                uid: 0,
                gid: 0,
                size: 0,
                blocks: 0,
                blksize: 4096,
                rdev: 0,
                atime: t,
                mtime: t,
                ctime: t,
            },
            content: Content::Dir {
                entries: BTreeMap::new(),
                parent: ROOT,
            },
            generation: 0,
        };
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, root);
        RamFs {
            inner: RwLock::new(Inner {
                nodes,
                next: 2,
                used: 0,
                holds: HashMap::new(),
                orphans: HashSet::new(),
            }),
            limit,
            magic: 0x858458f6,
        }
    }

    fn r(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn w(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a regular file whose contents are `len` bytes of `buf` from
    /// `start` (not copied). Used to populate the file system from an archive.
    pub fn create_shared(
        &self,
        dir: Ino,
        name: &[u8],
        new: &NewInode,
        buf: Backing,
        start: usize,
        len: usize,
    ) -> FsResult<Ino> {
        if (*buf)
            .as_ref()
            .get(start..start.saturating_add(len))
            .is_none()
        {
            return Err(Errno::EINVAL.with("file data outside the archive"));
        }
        let ino = self.create(dir, name, new)?;
        let mut g = self.w();
        if let Some(n) = g.nodes.get_mut(&ino) {
            n.content = Content::File(Data::Shared { buf, start, len });
            n.attr.size = len as u64;
            n.attr.blocks = (len as u64).div_ceil(512);
        }
        Ok(ino)
    }

    /// Sets attributes exactly (owner, permissions, times), for archive import.
    pub fn set_exact(
        &self,
        ino: Ino,
        uid: u32,
        gid: u32,
        perm: u32,
        mtime: Timespec,
    ) -> FsResult<()> {
        let mut g = self.w();
        let n = g.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        n.attr.uid = uid;
        n.attr.gid = gid;
        n.attr.perm = perm & 0o7777;
        n.attr.mtime = mtime;
        n.attr.atime = mtime;
        n.attr.ctime = mtime;
        Ok(())
    }
}

/// One archive entry to import (see [`RamFs::import`]); `data` is a range of
/// the shared archive buffer (file contents or symlink target).
#[derive(Debug, Clone)]
pub struct ImportEntry<'a> {
    /// Path relative to the root (`a/b/c`; a leading `./` or `/` is ignored).
    pub name: &'a [u8],
    /// Type.
    pub kind: FileType,
    /// Permission bits.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds).
    pub mtime: i64,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Hard-link group key (equal keys name one file) when the archive says
    /// the file has several links.
    pub link_key: Option<u64>,
    /// Start and length of the data in the archive buffer.
    pub data: (usize, usize),
}

/// Why an archive could not become a file system.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A name with `..` or an empty component after normalisation.
    #[error("entry {0:?}: unsafe or empty path")]
    BadName(String),
    /// A path component is not a directory.
    #[error("entry {0:?}: a parent is not a directory")]
    NotDir(String),
    /// A file-system error while importing.
    #[error("entry {0:?}: {1}")]
    Fs(String, Errno),
}

impl RamFs {
    /// Builds the tree of `entries`, whose data lie in `archive` (not copied).
    /// Missing parent directories are created; a later entry for an existing
    /// path replaces its attributes (and contents, for files).
    pub fn import<'a>(
        &self,
        archive: &Backing,
        entries: impl IntoIterator<Item = ImportEntry<'a>>,
    ) -> Result<(), ImportError> {
        let mut links: HashMap<u64, Ino> = HashMap::new();
        // Creating an entry touches its directory, so directory times are
        // applied once everything is in place.
        let mut dir_times: Vec<(Ino, Timespec)> = Vec::new();
        let t = now();
        for e in entries {
            let shown = || String::from_utf8_lossy(e.name).into_owned();
            let fs_err = |err: Errno| ImportError::Fs(shown(), err);
            let parts: Vec<&[u8]> = e
                .name
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .collect();
            if parts.iter().any(|c| *c == b"..") {
                return Err(ImportError::BadName(shown()));
            }
            let mtime = Timespec {
                sec: e.mtime,
                nsec: 0,
            };
            let Some((last, dirs)) = parts.split_last() else {
                // The root itself (".").
                if e.kind == FileType::Directory {
                    self.set_exact(ROOT, e.uid, e.gid, e.perm, mtime)
                        .map_err(fs_err)?;
                    dir_times.push((ROOT, mtime));
                }
                continue;
            };
            let mut dir = ROOT;
            for d in dirs {
                dir = match self.lookup(dir, d) {
                    Ok(ino) => {
                        if self.getattr(ino).map_err(fs_err)?.kind != FileType::Directory {
                            return Err(ImportError::NotDir(shown()));
                        }
                        ino
                    }
                    Err(_) => {
                        let new = NewInode {
                            kind: FileType::Directory,
                            perm: 0o755,
                            uid: 0,
                            gid: 0,
                            rdev: 0,
                            time: t,
                        };
                        self.create(dir, d, &new).map_err(fs_err)?
                    }
                };
            }
            let new = NewInode {
                kind: e.kind,
                perm: e.perm,
                uid: e.uid,
                gid: e.gid,
                rdev: e.rdev,
                time: mtime,
            };
            let existing = self.lookup(dir, last).ok();
            let (start, len) = e.data;
            if (**archive)
                .as_ref()
                .get(start..start.saturating_add(len))
                .is_none()
            {
                return Err(fs_err(Errno::EINVAL.with("data outside the archive")));
            }
            let ino = match (e.kind, existing) {
                (FileType::Directory, Some(ino)) => ino,
                (FileType::Directory, None) => self.create(dir, last, &new).map_err(fs_err)?,
                (kind, existing) => {
                    if let Some(old) = existing {
                        let old_kind = self.getattr(old).map_err(fs_err)?.kind;
                        if old_kind == FileType::Directory {
                            self.rmdir(dir, last).map_err(fs_err)?;
                        } else {
                            self.unlink(dir, last).map_err(fs_err)?;
                        }
                    }
                    match (kind, e.link_key.and_then(|k| links.get(&k).copied())) {
                        (FileType::Regular, Some(first)) => {
                            self.link(first, dir, last).map_err(fs_err)?;
                            if len > 0 {
                                self.set_shared(first, archive.clone(), start, len)
                                    .map_err(fs_err)?;
                            }
                            first
                        }
                        (FileType::Regular, None) => {
                            let ino = self
                                .create_shared(dir, last, &new, archive.clone(), start, len)
                                .map_err(fs_err)?;
                            if let Some(k) = e.link_key {
                                links.insert(k, ino);
                            }
                            ino
                        }
                        (FileType::Symlink, _) => {
                            let target = (**archive).as_ref()[start..start + len].to_vec();
                            self.symlink(dir, last, &target, &new).map_err(fs_err)?
                        }
                        _ => self.create(dir, last, &new).map_err(fs_err)?,
                    }
                }
            };
            if e.kind != FileType::Symlink {
                self.set_exact(ino, e.uid, e.gid, e.perm, mtime)
                    .map_err(fs_err)?;
            }
            if e.kind == FileType::Directory {
                dir_times.push((ino, mtime));
            }
        }
        let mut g = self.w();
        for (ino, mtime) in dir_times {
            if let Some(n) = g.nodes.get_mut(&ino) {
                n.attr.mtime = mtime;
                n.attr.atime = mtime;
                n.attr.ctime = mtime;
            }
        }
        Ok(())
    }

    /// Points a regular file's contents at `len` bytes of `buf` from `start`.
    pub fn set_shared(&self, ino: Ino, buf: Backing, start: usize, len: usize) -> FsResult<()> {
        if (*buf)
            .as_ref()
            .get(start..start.saturating_add(len))
            .is_none()
        {
            return Err(Errno::EINVAL.with("file data outside the archive"));
        }
        let mut g = self.w();
        let n = g.node_mut(ino)?;
        let Content::File(d) = &mut n.content else {
            return Err(Errno::EINVAL);
        };
        let freed = match d {
            Data::Owned(v) => v.len() as u64,
            Data::Shared { .. } => 0,
        };
        *d = Data::Shared { buf, start, len };
        n.attr.size = len as u64;
        n.attr.blocks = (len as u64).div_ceil(512);
        g.used = g.used.saturating_sub(freed);
        Ok(())
    }
}

impl Inner {
    fn node(&self, ino: Ino) -> FsResult<&Node> {
        self.nodes
            .get(&ino)
            .ok_or(Errno::ENOENT.with("stale inode"))
    }

    fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        self.nodes
            .get_mut(&ino)
            .ok_or(Errno::ENOENT.with("stale inode"))
    }

    fn entries(&self, dir: Ino) -> FsResult<&BTreeMap<Vec<u8>, Ino>> {
        match &self.node(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> FsResult<&mut BTreeMap<Vec<u8>, Ino>> {
        match &mut self.node_mut(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn touch(&mut self, ino: Ino) {
        let t = now();
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.mtime = t;
            n.attr.ctime = t;
        }
    }

    /// Drops one link to `ino`; frees it when none remain.
    fn drop_link(&mut self, ino: Ino) {
        let free = match self.nodes.get_mut(&ino) {
            Some(n) => {
                n.attr.nlink = n.attr.nlink.saturating_sub(1);
                n.attr.ctime = now();
                n.attr.nlink == 0 || n.attr.kind == FileType::Directory
            }
            None => false,
        };
        if free {
            if self.holds.contains_key(&ino) {
                // Still open: POSIX keeps the data until the last close.
                self.orphans.insert(ino);
            } else {
                self.free_node(ino);
            }
        }
    }

    /// Removes an inode and gives its written bytes back to the budget.
    fn free_node(&mut self, ino: Ino) {
        if let Some(Node {
            content: Content::File(Data::Owned(v)),
            ..
        }) = self.nodes.remove(&ino)
        {
            self.used = self.used.saturating_sub(v.len() as u64);
        }
    }
}

impl FileSystem for RamFs {
    fn root(&self) -> Ino {
        ROOT
    }

    fn lookup(&self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        let g = self.r();
        match name {
            b"." => {
                g.entries(dir)?;
                Ok(dir)
            }
            b".." => match &g.node(dir)?.content {
                Content::Dir { parent, .. } => Ok(*parent),
                _ => Err(Errno::ENOTDIR),
            },
            _ => g.entries(dir)?.get(name).copied().ok_or(Errno::ENOENT),
        }
    }

    fn lookup_attr(&self, dir: Ino, name: &[u8]) -> FsResult<Attr> {
        let ino = self.lookup(dir, name)?;
        self.getattr(ino)
    }

    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        Ok(self.r().node(ino)?.attr.clone())
    }

    fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        let mut g = self.w();
        if let Some(size) = set.size {
            let limit = self.limit;
            let used = g.used;
            let n = g.node_mut(ino)?;
            let Content::File(data) = &mut n.content else {
                return Err(if n.attr.kind == FileType::Directory {
                    Errno::EISDIR
                } else {
                    Errno::EINVAL
                });
            };
            let v = data.owned();
            let old = v.len() as u64;
            if size > old && used.saturating_add(size - old) > limit {
                return Err(Errno::ENOSPC);
            }
            let new_len = usize::try_from(size).map_err(|_| Errno::EFBIG)?;
            v.resize(new_len, 0);
            n.attr.size = size;
            n.attr.blocks = size.div_ceil(512);
            g.used = used.saturating_sub(old).saturating_add(size);
            g.touch(ino);
        }
        let n = g.node_mut(ino)?;
        if let Some(p) = set.perm {
            n.attr.perm = p & 0o7777;
        }
        if let Some(u) = set.uid {
            n.attr.uid = u;
        }
        if let Some(gid) = set.gid {
            n.attr.gid = gid;
        }
        if let Some(a) = set.atime {
            n.attr.atime = a;
        }
        if let Some(m) = set.mtime {
            n.attr.mtime = m;
        }
        n.attr.ctime = now();
        Ok(n.attr.clone())
    }

    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let g = self.r();
        let n = g.node(ino)?;
        let bytes = match &n.content {
            Content::File(d) => d.bytes(),
            Content::Dir { .. } => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        };
        let Ok(off) = usize::try_from(offset) else {
            return Ok(0);
        };
        if off >= bytes.len() {
            return Ok(0);
        }
        let n = buf.len().min(bytes.len() - off);
        buf[..n].copy_from_slice(&bytes[off..off + n]);
        Ok(n)
    }

    fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<usize> {
        let mut g = self.w();
        let limit = self.limit;
        let used = g.used;
        let n = g.node_mut(ino)?;
        let Content::File(d) = &mut n.content else {
            return Err(Errno::EISDIR);
        };
        let off = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
        let end = off.checked_add(data.len()).ok_or(Errno::EFBIG)?;
        let v = d.owned();
        let old = v.len();
        if end > old {
            if used.saturating_add((end - old) as u64) > limit {
                return Err(Errno::ENOSPC);
            }
            v.resize(end, 0);
        }
        v[off..end].copy_from_slice(data);
        let new_len = v.len() as u64;
        n.attr.size = new_len;
        n.attr.blocks = new_len.div_ceil(512);
        g.used = used.saturating_add(new_len.saturating_sub(old as u64));
        g.touch(ino);
        Ok(data.len())
    }

    fn readdir(&self, dir: Ino) -> FsResult<Vec<DirEntry>> {
        let g = self.r();
        let (entries, parent) = match &g.node(dir)?.content {
            Content::Dir { entries, parent } => (entries, *parent),
            _ => return Err(Errno::ENOTDIR),
        };
        let mut out = vec![
            DirEntry {
                name: b".".to_vec(),
                ino: dir,
                kind: FileType::Directory,
            },
            DirEntry {
                name: b"..".to_vec(),
                ino: parent,
                kind: FileType::Directory,
            },
        ];
        for (name, &ino) in entries {
            let kind = g
                .node(ino)
                .map(|n| n.attr.kind)
                .unwrap_or(FileType::Regular);
            out.push(DirEntry {
                name: name.clone(),
                ino,
                kind,
            });
        }
        Ok(out)
    }

    fn create(&self, dir: Ino, name: &[u8], new: &NewInode) -> FsResult<Ino> {
        check_name(name)?;
        let mut g = self.w();
        if g.entries(dir)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = g.next;
        g.next += 1;
        let content = match new.kind {
            FileType::Regular => Content::File(Data::Owned(Vec::new())),
            FileType::Directory => Content::Dir {
                entries: BTreeMap::new(),
                parent: dir,
            },
            _ => Content::Other,
        };
        let is_dir = new.kind == FileType::Directory;
        g.nodes.insert(
            ino,
            Node {
                attr: Attr {
                    ino,
                    kind: new.kind,
                    perm: new.perm & 0o7777,
                    nlink: if is_dir { 2 } else { 1 },
                    uid: new.uid,
                    gid: new.gid,
                    size: 0,
                    blocks: 0,
                    blksize: 4096,
                    rdev: new.rdev,
                    atime: new.time,
                    mtime: new.time,
                    ctime: new.time,
                },
                content,
                generation: u64::from(crate::fresh_generation()),
            },
        );
        g.entries_mut(dir)?.insert(name.to_vec(), ino);
        if is_dir {
            g.node_mut(dir)?.attr.nlink += 1;
        }
        g.touch(dir);
        Ok(ino)
    }

    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], new: &NewInode) -> FsResult<Ino> {
        let n = NewInode {
            kind: FileType::Symlink,
            ..*new
        };
        let ino = self.create(dir, name, &n)?;
        let mut g = self.w();
        let node = g.node_mut(ino)?;
        node.content = Content::Symlink(target.to_vec());
        node.attr.size = target.len() as u64;
        node.attr.perm = 0o777;
        Ok(ino)
    }

    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        match &self.r().node(ino)?.content {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn link(&self, ino: Ino, dir: Ino, name: &[u8]) -> FsResult<()> {
        check_name(name)?;
        let mut g = self.w();
        if g.node(ino)?.attr.kind == FileType::Directory {
            return Err(Errno::EPERM);
        }
        if g.entries(dir)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        g.entries_mut(dir)?.insert(name.to_vec(), ino);
        let n = g.node_mut(ino)?;
        n.attr.nlink += 1;
        n.attr.ctime = now();
        g.touch(dir);
        Ok(())
    }

    fn unlink(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        let mut g = self.w();
        let ino = *g.entries(dir)?.get(name).ok_or(Errno::ENOENT)?;
        if g.node(ino)?.attr.kind == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        g.entries_mut(dir)?.remove(name);
        g.touch(dir);
        g.drop_link(ino);
        Ok(())
    }

    fn rmdir(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        let mut g = self.w();
        let ino = *g.entries(dir)?.get(name).ok_or(Errno::ENOENT)?;
        if !g.entries(ino)?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        g.entries_mut(dir)?.remove(name);
        g.node_mut(dir)?.attr.nlink -= 1;
        g.touch(dir);
        g.drop_link(ino);
        Ok(())
    }

    fn rename(&self, old_dir: Ino, old: &[u8], new_dir: Ino, new: &[u8]) -> FsResult<()> {
        check_name(new)?;
        let mut g = self.w();
        let ino = *g.entries(old_dir)?.get(old).ok_or(Errno::ENOENT)?;
        g.entries(new_dir)?;
        if old_dir == new_dir && old == new {
            return Ok(());
        }
        let is_dir = g.node(ino)?.attr.kind == FileType::Directory;
        if is_dir {
            // A directory may not move below itself.
            let mut at = new_dir;
            loop {
                if at == ino {
                    return Err(Errno::EINVAL);
                }
                match &g.node(at)?.content {
                    Content::Dir { parent, .. } if *parent != at => at = *parent,
                    _ => break,
                }
            }
        }
        if let Some(&target) = g.entries(new_dir)?.get(new) {
            if target == ino {
                return Ok(());
            }
            let t_dir = g.node(target)?.attr.kind == FileType::Directory;
            match (is_dir, t_dir) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) => {
                    if !g.entries(target)?.is_empty() {
                        return Err(Errno::ENOTEMPTY);
                    }
                    g.node_mut(new_dir)?.attr.nlink -= 1;
                }
                _ => {}
            }
            g.entries_mut(new_dir)?.remove(new);
            g.drop_link(target);
        }
        g.entries_mut(old_dir)?.remove(old);
        g.entries_mut(new_dir)?.insert(new.to_vec(), ino);
        if is_dir && old_dir != new_dir {
            g.node_mut(old_dir)?.attr.nlink -= 1;
            g.node_mut(new_dir)?.attr.nlink += 1;
            if let Content::Dir { parent, .. } = &mut g.node_mut(ino)?.content {
                *parent = new_dir;
            }
        }
        g.touch(old_dir);
        g.touch(new_dir);
        g.node_mut(ino)?.attr.ctime = now();
        Ok(())
    }

    fn statfs(&self) -> FsResult<StatFs> {
        let g = self.r();
        let blocks = self.limit / 4096;
        let free = self.limit.saturating_sub(g.used) / 4096;
        Ok(StatFs {
            fs_type: self.magic,
            bsize: 4096,
            blocks,
            bfree: free,
            bavail: free,
            files: 1 << 20,
            ffree: (1u64 << 20).saturating_sub(g.nodes.len() as u64),
            namelen: 255,
        })
    }

    fn fsync(&self, _ino: Ino) -> FsResult<()> {
        Ok(())
    }

    fn generation(&self, ino: Ino) -> FsResult<u64> {
        Ok(self.r().node(ino)?.generation)
    }

    fn retain(&self, ino: Ino) {
        *self.w().holds.entry(ino).or_insert(0) += 1;
    }

    fn release(&self, ino: Ino) {
        let mut g = self.w();
        let Some(n) = g.holds.get_mut(&ino) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n > 0 {
            return;
        }
        g.holds.remove(&ino);
        if g.orphans.remove(&ino) {
            g.free_node(ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nf(kind: FileType) -> NewInode {
        NewInode {
            kind,
            perm: 0o644,
            uid: 1,
            gid: 2,
            rdev: 0,
            time: Timespec::default(),
        }
    }

    #[test]
    fn files_dirs_links_budget() {
        let fs = RamFs::new(0o1777, 10);
        let d = fs.create(ROOT, b"d", &nf(FileType::Directory)).unwrap();
        let f = fs.create(d, b"f", &nf(FileType::Regular)).unwrap();
        assert_eq!(
            fs.create(d, b"f", &nf(FileType::Regular)),
            Err(Errno::EEXIST)
        );
        assert_eq!(fs.write(f, 2, b"abc").unwrap(), 3);
        assert_eq!(fs.write(f, 0, b"0123456789ab"), Err(Errno::ENOSPC));
        let mut b = [0u8; 10];
        assert_eq!(fs.read(f, 0, &mut b).unwrap(), 5);
        assert_eq!(&b[..5], b"\0\0abc");
        fs.link(f, ROOT, b"hard").unwrap();
        assert_eq!(fs.getattr(f).unwrap().nlink, 2);
        assert_eq!(fs.rmdir(ROOT, b"d"), Err(Errno::ENOTEMPTY));
        fs.unlink(d, b"f").unwrap();
        fs.rmdir(ROOT, b"d").unwrap();
        assert_eq!(fs.read(f, 0, &mut b).unwrap(), 5);
        fs.rename(ROOT, b"hard", ROOT, b"soft").unwrap();
        assert_eq!(fs.lookup(ROOT, b"soft").unwrap(), f);
        let s = fs
            .symlink(ROOT, b"l", b"/x/y", &nf(FileType::Symlink))
            .unwrap();
        assert_eq!(fs.readlink(s).unwrap(), b"/x/y");
        let shared: Backing = Arc::new(b"archive-bytes".to_vec());
        let z = fs
            .create_shared(ROOT, b"z", &nf(FileType::Regular), shared, 8, 5)
            .unwrap();
        assert_eq!(fs.read(z, 0, &mut b).unwrap(), 5);
        assert_eq!(&b[..5], b"bytes");
    }

    #[test]
    fn import_tree_with_links_and_missing_parents() {
        let archive: Backing = Arc::new(b"helloworld/target".to_vec());
        let e = |name: &'static [u8], kind, data, key| ImportEntry {
            name,
            kind,
            perm: 0o640,
            uid: 5,
            gid: 6,
            mtime: 1000,
            rdev: 0,
            link_key: key,
            data,
        };
        let fs = RamFs::new(0o755, 1 << 20);
        fs.import(
            &archive,
            vec![
                e(b".", FileType::Directory, (0, 0), None),
                e(b"a/b/file", FileType::Regular, (0, 5), None),
                e(b"a/l", FileType::Symlink, (10, 7), None),
                e(b"h1", FileType::Regular, (0, 0), Some(7)),
                e(b"h2", FileType::Regular, (5, 5), Some(7)),
            ],
        )
        .unwrap();
        let a = fs.lookup(ROOT, b"a").unwrap();
        let b = fs.lookup(a, b"b").unwrap();
        let f = fs.lookup(b, b"file").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(fs.read(f, 0, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(fs.getattr(f).unwrap().uid, 5);
        let l = fs.lookup(a, b"l").unwrap();
        assert_eq!(fs.readlink(l).unwrap(), b"/target");
        let h1 = fs.lookup(ROOT, b"h1").unwrap();
        assert_eq!(fs.lookup(ROOT, b"h2").unwrap(), h1);
        assert_eq!(fs.read(h1, 0, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"world");
        assert_eq!(fs.getattr(h1).unwrap().nlink, 2);
        let bad = fs.import(&archive, vec![e(b"../x", FileType::Regular, (0, 1), None)]);
        assert!(matches!(bad, Err(ImportError::BadName(_))));
        let bad = fs.import(&archive, vec![e(b"x", FileType::Regular, (15, 5), None)]);
        assert!(bad.is_err());
    }

    #[test]
    fn unlinked_file_lives_until_released() {
        let fs = RamFs::new(0o755, 1 << 20);
        let f = fs.create(ROOT, b"f", &nf(FileType::Regular)).unwrap();
        fs.retain(f);
        fs.unlink(ROOT, b"f").unwrap();
        assert_eq!(fs.lookup(ROOT, b"f").unwrap_err(), Errno::ENOENT);
        assert_eq!(fs.write(f, 0, b"still here").unwrap(), 10);
        let mut b = [0u8; 16];
        assert_eq!(fs.read(f, 0, &mut b).unwrap(), 10);
        assert_eq!(&b[..10], b"still here");
        assert_eq!(fs.getattr(f).unwrap().nlink, 0);
        assert_eq!(fs.r().used, 10);
        fs.release(f);
        assert!(fs.getattr(f).is_err());
        assert_eq!(fs.r().used, 0, "the bytes went back to the budget");
        // Without a hold, unlink frees at once; a stray release is harmless.
        let g = fs.create(ROOT, b"g", &nf(FileType::Regular)).unwrap();
        fs.unlink(ROOT, b"g").unwrap();
        assert!(fs.getattr(g).is_err());
        fs.release(g);
        // A removed directory that is still open stays until released.
        let d = fs.create(ROOT, b"d", &nf(FileType::Directory)).unwrap();
        fs.retain(d);
        fs.rmdir(ROOT, b"d").unwrap();
        assert!(fs.readdir(d).is_ok());
        fs.release(d);
        assert!(fs.getattr(d).is_err());
    }

    #[test]
    fn import_keeps_directory_times_after_adding_children() {
        let archive: Backing = Arc::new(b"data".to_vec());
        let e = |name: &'static [u8], kind, data| ImportEntry {
            name,
            kind,
            perm: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1000,
            rdev: 0,
            link_key: None,
            data,
        };
        let fs = RamFs::new(0o755, 1 << 20);
        fs.import(
            &archive,
            vec![
                e(b".", FileType::Directory, (0, 0)),
                e(b"d", FileType::Directory, (0, 0)),
                e(b"d/f", FileType::Regular, (0, 4)),
                e(b"d/sub", FileType::Directory, (0, 0)),
                e(b"d/sub/g", FileType::Regular, (0, 4)),
            ],
        )
        .unwrap();
        let d = fs.lookup(ROOT, b"d").unwrap();
        let sub = fs.lookup(d, b"sub").unwrap();
        for ino in [ROOT, d, sub] {
            assert_eq!(fs.getattr(ino).unwrap().mtime.sec, 1000);
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(&b"a"[..]),
                Just(&b"b"[..]),
                Just(&b"."[..]),
                Just(&b".."[..]),
                Just(&b""[..])
            ],
            1..4,
        )
        .prop_map(|parts| parts.join(&b'/'))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any list of archive entries imports or fails with an error; files
        /// that exist afterwards hold exactly their archive bytes.
        #[test]
        fn import_never_panics(entries in proptest::collection::vec((name(), 0u8..4, 0usize..40, 0usize..40), 0..12)) {
            let archive: Backing = Arc::new((0u8..32).collect::<Vec<u8>>());
            let list: Vec<ImportEntry> = entries
                .iter()
                .map(|(n, k, start, len)| ImportEntry {
                    name: n,
                    kind: [FileType::Regular, FileType::Directory, FileType::Symlink, FileType::Fifo][*k as usize],
                    perm: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: 0,
                    rdev: 0,
                    link_key: None,
                    data: (*start, *len),
                })
                .collect();
            let fs = RamFs::new(0o755, 1 << 20);
            let has_dotdot = entries.iter().any(|(n, _, _, _)| n.split(|&b| b == b'/').any(|c| c == b".."));
            if let Ok(()) = fs.import(&archive, list.clone()) {
                prop_assert!(!has_dotdot);
                for e in &list {
                    let parts: Vec<&[u8]> = e.name.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
                    if e.kind != FileType::Regular || parts.is_empty() {
                        continue;
                    }
                    let mut at = fs.root();
                    let mut found = true;
                    for p in &parts {
                        match fs.lookup(at, p) {
                            Ok(i) => at = i,
                            Err(_) => { found = false; break; }
                        }
                    }
                    if found && fs.getattr(at).map(|a| a.kind == FileType::Regular).unwrap_or(false) {
                        let mut buf = vec![0u8; 64];
                        let n = fs.read(at, 0, &mut buf).unwrap_or(0);
                        prop_assert!(n <= 40);
                    }
                }
            }
        }
    }
}
