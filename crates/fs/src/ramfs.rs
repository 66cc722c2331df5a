//! ramfs: an in-memory file system (/tmp, /dev/shm, and the root of a CPIO
//! archive). File contents taken from an archive stay in the archive's buffer
//! until first written (zero copy); written files own their bytes. A byte
//! budget bounds what writes may add (ENOSPC, never a crash).

use crate::{
    Attr, DirEntry, Errno, FileSystem, FileType, FsResult, Ino, NewInode, SetAttr, StatFs, Timespec,
};
use std::collections::{BTreeMap, HashMap};
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
}

struct Inner {
    nodes: HashMap<Ino, Node>,
    next: Ino,
    used: u64,
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
        };
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, root);
        RamFs {
            inner: RwLock::new(Inner {
                nodes,
                next: 2,
                used: 0,
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
            if let Some(Node {
                content: Content::File(Data::Owned(v)),
                ..
            }) = self.nodes.remove(&ino)
            {
                self.used = self.used.saturating_sub(v.len() as u64);
            }
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
}
