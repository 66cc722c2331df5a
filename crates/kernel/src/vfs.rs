//! The VFS: mount table and path walk (symlinks, `..` across mounts).
//!
//! A resolved path is kept as the chain of (name, location) from the root, so
//! `..` simply pops (crossing mounts for free), and the canonical path of any
//! location (getcwd, /proc/self/fd) is the chain's names.

use myst_fs::{Attr, Errno, FileSystem, FileType, FsResult, Ino};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Most symlinks followed in one walk (Linux's limit).
const MAX_SYMLINKS: u32 = 40;

/// One mounted file system.
pub struct Mount {
    /// Unique id (also the guest-visible st_dev minor).
    pub id: u32,
    /// The file system.
    pub fs: Arc<dyn FileSystem>,
    /// Type name for /proc/mounts.
    pub fstype: &'static str,
    /// Source for /proc/mounts.
    pub source: String,
    /// Absolute mount point.
    pub target: Vec<u8>,
    /// Mounted read-only.
    pub read_only: bool,
    /// Where it sits: (parent mount id, parent directory inode); (0, 0) for the root.
    pub parent: MountKey,
}

/// A location: an inode in a mounted file system.
#[derive(Clone)]
pub struct Loc {
    /// The mount.
    pub mnt: Arc<Mount>,
    /// The inode.
    pub ino: Ino,
}

impl Loc {
    /// Attributes of this location.
    pub fn attr(&self) -> FsResult<Attr> {
        self.mnt.fs.getattr(self.ino)
    }

    /// Same file system object.
    pub fn same(&self, other: &Loc) -> bool {
        self.mnt.id == other.mnt.id && self.ino == other.ino
    }
}

/// A resolved path: names and locations from the root down.
#[derive(Clone)]
pub struct Chain {
    items: Vec<(Vec<u8>, Loc)>,
}

impl Chain {
    /// The chain holding only `root`.
    pub fn root(root: Loc) -> Chain {
        Chain {
            items: vec![(Vec::new(), root)],
        }
    }

    /// The location at the end.
    pub fn loc(&self) -> &Loc {
        // A chain always holds at least the root.
        &self.items[self.items.len() - 1].1
    }

    /// The absolute canonical path.
    pub fn path(&self) -> Vec<u8> {
        if self.items.len() == 1 {
            return b"/".to_vec();
        }
        let mut p = Vec::new();
        for (name, _) in &self.items[1..] {
            p.push(b'/');
            p.extend_from_slice(name);
        }
        p
    }

    /// The chain extended by one component.
    pub fn child(&self, name: &[u8], loc: Loc) -> Chain {
        let mut c = self.clone();
        c.items.push((name.to_vec(), loc));
        c
    }

    fn pop(&mut self) {
        if self.items.len() > 1 {
            self.items.pop();
        }
    }

    /// The chain of the parent directory and the last name (None for `/`).
    pub fn split_last(&self) -> Option<(Chain, Vec<u8>)> {
        if self.items.len() < 2 {
            return None;
        }
        let mut parent = self.clone();
        let (name, _) = parent.items.pop()?;
        Some((parent, name))
    }

    /// How many components of the chain lie in mount `id`.
    fn uses(&self, id: u32) -> usize {
        self.items.iter().filter(|(_, l)| l.mnt.id == id).count()
    }
}

/// What a path names.
pub enum Resolved {
    /// A file system object.
    Node(Chain, Attr),
    /// A /proc/self/fd/N magic link: the open file of descriptor N.
    Fd(i32),
}

/// Hook deciding whether a symlink is a magic fd link (procfs).
pub type MagicFn = fn(&Loc) -> Option<i32>;

/// Where mounts sit: (parent mount id, parent directory inode) -> names.
pub type MountKey = (u32, Ino);
/// The mounts in one directory, by name.
type MountList = Vec<(Vec<u8>, Arc<Mount>)>;

/// The mount table.
pub struct Vfs {
    root: Loc,
    /// Mounts keyed by (parent mount, parent directory inode, name), so a
    /// mount point need not exist in the parent file system.
    mounts: RwLock<HashMap<MountKey, MountList>>,
    all: RwLock<Vec<Arc<Mount>>>,
    next_id: RwLock<u32>,
    magic: Option<MagicFn>,
}

fn split(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| c.to_vec())
        .collect()
}

impl Vfs {
    /// A VFS whose root is `fs`.
    pub fn new(
        fs: Arc<dyn FileSystem>,
        fstype: &'static str,
        source: String,
        read_only: bool,
        magic: Option<MagicFn>,
    ) -> Vfs {
        let mnt = Arc::new(Mount {
            id: 1,
            fstype,
            source,
            target: b"/".to_vec(),
            read_only,
            fs: fs.clone(),
            parent: (0, 0),
        });
        let root = Loc {
            ino: fs.root(),
            mnt: mnt.clone(),
        };
        Vfs {
            root,
            mounts: RwLock::new(HashMap::new()),
            all: RwLock::new(vec![mnt]),
            next_id: RwLock::new(2),
            magic,
        }
    }

    /// The root location.
    pub fn root(&self) -> Loc {
        self.root.clone()
    }

    /// All mounts, root first (for /proc/mounts).
    pub fn mounts(&self) -> Vec<Arc<Mount>> {
        self.all.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Mounts `fs` at `name` in directory `parent`.
    pub fn mount(
        &self,
        parent: &Chain,
        name: &[u8],
        fs: Arc<dyn FileSystem>,
        fstype: &'static str,
        source: String,
        read_only: bool,
    ) -> Arc<Mount> {
        let mut idg = self.next_id.write().unwrap_or_else(|p| p.into_inner());
        let id = *idg;
        *idg += 1;
        let mut target = parent.path();
        if target != b"/" {
            target.push(b'/');
        }
        target.extend_from_slice(name);
        let key = (parent.loc().mnt.id, parent.loc().ino);
        let m = Arc::new(Mount {
            id,
            fs,
            fstype,
            source,
            target,
            read_only,
            parent: key,
        });
        let mut g = self.mounts.write().unwrap_or_else(|p| p.into_inner());
        let mut all = self.all.write().unwrap_or_else(|p| p.into_inner());
        let list = g.entry(key).or_default();
        // A mount replaced at the same place leaves the table (and its
        // own sub-mounts, which nothing reaches any more, with it).
        let mut gone = Vec::new();
        list.retain(|(n, old)| {
            if n == name {
                gone.push(old.clone());
            }
            n != name
        });
        list.push((name.to_vec(), m.clone()));
        for old in gone {
            Self::detach(&mut g, &mut all, &old);
        }
        all.push(m.clone());
        m
    }

    /// Removes `m` and every mount below it from the tables.
    fn detach(g: &mut HashMap<MountKey, MountList>, all: &mut Vec<Arc<Mount>>, m: &Arc<Mount>) {
        let children: Vec<Arc<Mount>> = g
            .iter()
            .filter(|(k, _)| k.0 == m.id)
            .flat_map(|(_, l)| l.iter().map(|(_, c)| c.clone()))
            .collect();
        for c in &children {
            Self::detach(g, all, c);
        }
        g.retain(|k, _| k.0 != m.id);
        if let Some(list) = g.get_mut(&m.parent) {
            list.retain(|(_, x)| x.id != m.id);
            if list.is_empty() {
                g.remove(&m.parent);
            }
        }
        all.retain(|x| x.id != m.id);
    }

    /// Mounts `fs` at `path` (resolved from `start`, symlinks followed).
    /// An existing target must be a directory when `fs` is rooted in one,
    /// and not a directory when `fs` is a single file. A missing target is
    /// an error unless `create`; then the mount point appears in its parent
    /// directory without being written to the parent file system. A target
    /// that already has a mount is EBUSY unless `replace`.
    #[allow(clippy::too_many_arguments)]
    pub fn mount_at(
        &self,
        root: &Chain,
        start: &Chain,
        path: &[u8],
        fs: Arc<dyn FileSystem>,
        fstype: &'static str,
        source: String,
        read_only: bool,
        create: bool,
        replace: bool,
    ) -> FsResult<Arc<Mount>> {
        let src_kind = fs.getattr(fs.root())?.kind;
        let (parent, name) = match self.resolve(root, start, path, true) {
            Ok(Resolved::Node(c, attr)) => {
                let is_dir = attr.kind == FileType::Directory;
                if (src_kind == FileType::Directory) != is_dir {
                    return Err(if is_dir {
                        Errno::EISDIR
                    } else {
                        Errno::ENOTDIR
                    });
                }
                c.split_last().ok_or(Errno::EBUSY)?
            }
            Ok(Resolved::Fd(_)) => return Err(Errno::EINVAL),
            Err(e) if e.code == Errno::ENOENT.code && create => {
                match self.resolve_parent(root, start, path)? {
                    (p, Some(n)) => (p, n),
                    (_, None) => return Err(Errno::EBUSY),
                }
            }
            Err(e) => return Err(e),
        };
        if !replace && self.mounted(parent.loc(), &name).is_some() {
            return Err(Errno::EBUSY.with("something is already mounted there"));
        }
        Ok(self.mount(&parent, &name, fs, fstype, source, read_only))
    }

    /// Unmounts the mount whose root `target` is. Without `detach`, a mount
    /// with mounts below it, or still used (an open file, a working
    /// directory, anything holding a location in it besides `target`), is
    /// EBUSY; with `detach` it leaves the tree at once (with the mounts
    /// below it) and its file system lives on until the last user is gone.
    pub fn umount(&self, target: &Chain, detach: bool) -> FsResult<()> {
        let loc = target.loc();
        let m = loc.mnt.clone();
        if loc.ino != m.fs.root() {
            return Err(Errno::EINVAL.with("not a mount point"));
        }
        if m.id == self.root.mnt.id {
            return Err(Errno::EBUSY.with("the root cannot be unmounted"));
        }
        let mut g = self.mounts.write().unwrap_or_else(|p| p.into_inner());
        let mut all = self.all.write().unwrap_or_else(|p| p.into_inner());
        if !all.iter().any(|x| x.id == m.id) {
            return Err(Errno::EINVAL.with("not mounted"));
        }
        if !detach {
            if g.iter().any(|(k, l)| k.0 == m.id && !l.is_empty()) {
                return Err(Errno::EBUSY.with("file systems are mounted below it"));
            }
            // The tables (2), `m` and `target`'s own components.
            let expected = 3 + target.uses(m.id);
            if Arc::strong_count(&m) > expected {
                return Err(Errno::EBUSY.with("files are open on it"));
            }
        }
        Self::detach(&mut g, &mut all, &m);
        Ok(())
    }

    /// Names mounted directly in directory `dir` (shown by getdents even if
    /// the parent file system has no such entry).
    pub fn mounted_names(&self, dir: &Loc) -> Vec<(Vec<u8>, Arc<Mount>)> {
        self.mounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(dir.mnt.id, dir.ino))
            .cloned()
            .unwrap_or_default()
    }

    fn mounted(&self, dir: &Loc, name: &[u8]) -> Option<Arc<Mount>> {
        let g = self.mounts.read().unwrap_or_else(|p| p.into_inner());
        if g.is_empty() {
            return None;
        }
        g.get(&(dir.mnt.id, dir.ino))?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.clone())
    }

    /// One lookup step: `name` in directory `dir`, crossing into mounts.
    pub fn step(&self, dir: &Loc, name: &[u8]) -> FsResult<(Loc, Attr)> {
        if let Some(m) = self.mounted(dir, name) {
            let ino = m.fs.root();
            let attr = m.fs.getattr(ino)?;
            return Ok((Loc { mnt: m, ino }, attr));
        }
        let attr = dir.mnt.fs.lookup_attr(dir.ino, name)?;
        Ok((
            Loc {
                mnt: dir.mnt.clone(),
                ino: attr.ino,
            },
            attr,
        ))
    }

    /// Resolves `path` relative to `start` (used when the path is relative)
    /// with `root` as `/`. `follow` decides whether a final symlink is followed.
    pub fn resolve(
        &self,
        root: &Chain,
        start: &Chain,
        path: &[u8],
        follow: bool,
    ) -> FsResult<Resolved> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= 4096 {
            return Err(Errno::ENAMETOOLONG);
        }
        let trailing_slash = path.ends_with(b"/");
        let follow = follow || trailing_slash;
        let mut chain = if path[0] == b'/' {
            root.clone()
        } else {
            start.clone()
        };
        // The root and working directories are directories; their attributes
        // are fetched only if the path ends on them.
        let mut attr_known = false;
        let mut attr = Attr {
            ino: chain.loc().ino,
            kind: FileType::Directory,
            perm: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            blksize: 0,
            rdev: 0,
            atime: Default::default(),
            mtime: Default::default(),
            ctime: Default::default(),
        };
        let mut todo: Vec<Vec<u8>> = split(path);
        todo.reverse();
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == b"." {
                if attr.kind != FileType::Directory {
                    return Err(Errno::ENOTDIR);
                }
                continue;
            }
            if name == b".." {
                if attr.kind != FileType::Directory {
                    return Err(Errno::ENOTDIR);
                }
                if chain.items.len() > root.items.len() || !chain.loc().same(root.loc()) {
                    chain.pop();
                }
                attr = chain.loc().attr()?;
                attr_known = true;
                continue;
            }
            if attr.kind != FileType::Directory {
                return Err(Errno::ENOTDIR);
            }
            if name.len() > 255 {
                return Err(Errno::ENAMETOOLONG);
            }
            let (loc, a) = self.step(chain.loc(), &name)?;
            let last = todo.is_empty();
            if a.kind == FileType::Symlink && (!last || follow) {
                if last {
                    if let Some(fd) = self.magic.and_then(|m| m(&loc)) {
                        return Ok(Resolved::Fd(fd));
                    }
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = loc.mnt.fs.readlink(loc.ino)?;
                if target.is_empty() {
                    return Err(Errno::ENOENT);
                }
                if target[0] == b'/' {
                    chain = root.clone();
                    attr.kind = FileType::Directory;
                    attr_known = false;
                }
                let mut parts = split(&target);
                parts.reverse();
                todo.extend(parts);
                continue;
            }
            chain.items.push((name, loc));
            attr = a;
            attr_known = true;
        }
        if !attr_known {
            attr = chain.loc().attr()?;
        }
        if trailing_slash && attr.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(Resolved::Node(chain, attr))
    }

    /// Resolves all but the last component; returns the parent directory and
    /// the last name (None for paths like `/`, `.` or `..` that have no last
    /// name to create or remove).
    pub fn resolve_parent(
        &self,
        root: &Chain,
        start: &Chain,
        path: &[u8],
    ) -> FsResult<(Chain, Option<Vec<u8>>)> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= 4096 {
            return Err(Errno::ENAMETOOLONG);
        }
        let trimmed = {
            let mut end = path.len();
            while end > 1 && path[end - 1] == b'/' {
                end -= 1;
            }
            &path[..end]
        };
        let (dir_part, last) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(0) => (&b"/"[..], &trimmed[1..]),
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (&b"."[..], trimmed),
        };
        let chain = match self.resolve(root, start, dir_part, true)? {
            Resolved::Node(c, a) => {
                if a.kind != FileType::Directory {
                    return Err(Errno::ENOTDIR);
                }
                c
            }
            Resolved::Fd(_) => return Err(Errno::ENOTDIR),
        };
        if last.is_empty() || last == b"." || last == b".." || last == b"/" {
            return Ok((chain, None));
        }
        if last.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok((chain, Some(last.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myst_fs::ramfs::RamFs;
    use myst_fs::{NewInode, Timespec};

    fn new(kind: FileType) -> NewInode {
        NewInode {
            kind,
            perm: 0o755,
            uid: 0,
            gid: 0,
            rdev: 0,
            time: Timespec::default(),
        }
    }

    /// / (ramfs) with /a/b/file, /a/up -> .., /a/abs -> /a/b, /loop -> loop,
    /// and a second ramfs mounted at /a/m holding /x.
    fn setup() -> (Vfs, Chain) {
        let root = Arc::new(RamFs::new(0o755, 1 << 20));
        let a = root
            .create(root.root(), b"a", &new(FileType::Directory))
            .unwrap();
        let b = root.create(a, b"b", &new(FileType::Directory)).unwrap();
        root.create(b, b"file", &new(FileType::Regular)).unwrap();
        root.symlink(a, b"up", b"..", &new(FileType::Symlink))
            .unwrap();
        root.symlink(a, b"abs", b"/a/b", &new(FileType::Symlink))
            .unwrap();
        root.symlink(root.root(), b"loop", b"loop", &new(FileType::Symlink))
            .unwrap();
        let vfs = Vfs::new(root, "ramfs", "test".into(), false, None);
        let rc = Chain::root(vfs.root());
        let a_chain = match vfs.resolve(&rc, &rc, b"/a", true).unwrap() {
            Resolved::Node(c, _) => c,
            Resolved::Fd(_) => unreachable!(),
        };
        let other = Arc::new(RamFs::new(0o755, 1 << 20));
        other
            .create(other.root(), b"x", &new(FileType::Regular))
            .unwrap();
        vfs.mount(&a_chain, b"m", other, "ramfs", "other".into(), false);
        (vfs, rc)
    }

    fn path_of(vfs: &Vfs, rc: &Chain, p: &[u8], follow: bool) -> Result<Vec<u8>, Errno> {
        match vfs.resolve(rc, rc, p, follow)? {
            Resolved::Node(c, _) => Ok(c.path()),
            Resolved::Fd(_) => Ok(b"fd".to_vec()),
        }
    }

    #[test]
    fn walks() {
        let (vfs, rc) = setup();
        assert_eq!(
            path_of(&vfs, &rc, b"/a/b/file", true).unwrap(),
            b"/a/b/file"
        );
        assert_eq!(
            path_of(&vfs, &rc, b"//a/./b//file", true).unwrap(),
            b"/a/b/file"
        );
        assert_eq!(
            path_of(&vfs, &rc, b"/a/abs/file", true).unwrap(),
            b"/a/b/file"
        );
        assert_eq!(path_of(&vfs, &rc, b"/a/up/a/b", true).unwrap(), b"/a/b");
        assert_eq!(path_of(&vfs, &rc, b"/../../a", true).unwrap(), b"/a");
        // `..` out of a mounted file system goes back to its mount point's parent.
        assert_eq!(path_of(&vfs, &rc, b"/a/m/x", true).unwrap(), b"/a/m/x");
        assert_eq!(path_of(&vfs, &rc, b"/a/m/../b", true).unwrap(), b"/a/b");
        assert_eq!(path_of(&vfs, &rc, b"/a/m/..", true).unwrap(), b"/a");
        // The final symlink is kept when not following.
        assert_eq!(path_of(&vfs, &rc, b"/a/abs", false).unwrap(), b"/a/abs");
        assert_eq!(path_of(&vfs, &rc, b"/a/abs/", false).unwrap(), b"/a/b");
    }

    #[test]
    fn errors() {
        let (vfs, rc) = setup();
        let code = |p: &[u8]| path_of(&vfs, &rc, p, true).unwrap_err().code;
        assert_eq!(code(b"/nope"), Errno::ENOENT.code);
        assert_eq!(code(b"/a/b/file/x"), Errno::ENOTDIR.code);
        assert_eq!(code(b"/a/b/file/"), Errno::ENOTDIR.code);
        assert_eq!(code(b"/loop"), Errno::ELOOP.code);
        assert_eq!(code(b""), Errno::ENOENT.code);
        let long = vec![b'n'; 300];
        assert_eq!(code(&long), Errno::ENAMETOOLONG.code);
    }

    fn chain_of(vfs: &Vfs, rc: &Chain, p: &[u8]) -> Chain {
        match vfs.resolve(rc, rc, p, true) {
            Ok(Resolved::Node(c, _)) => c,
            _ => panic!("{} does not resolve", String::from_utf8_lossy(p)),
        }
    }

    #[test]
    fn mount_at_and_umount() {
        let (vfs, rc) = setup();
        let fs = || -> Arc<dyn FileSystem> {
            let f = Arc::new(RamFs::new(0o755, 1 << 20));
            f.create(f.root(), b"inside", &new(FileType::Regular))
                .unwrap();
            f
        };
        // A missing target only with `create`; it is not written to the parent.
        let code = |r: FsResult<Arc<Mount>>| r.err().map(|e| e.code);
        assert_eq!(
            code(vfs.mount_at(
                &rc,
                &rc,
                b"/a/new",
                fs(),
                "ramfs",
                "x".into(),
                false,
                false,
                false
            )),
            Some(Errno::ENOENT.code)
        );
        vfs.mount_at(
            &rc,
            &rc,
            b"/a/new",
            fs(),
            "ramfs",
            "x".into(),
            false,
            true,
            false,
        )
        .unwrap();
        assert_eq!(
            path_of(&vfs, &rc, b"/a/new/inside", true).unwrap(),
            b"/a/new/inside"
        );
        assert_eq!(
            vfs.root()
                .mnt
                .fs
                .lookup(vfs.root().ino, b"new")
                .err()
                .map(|e| e.code),
            Some(Errno::ENOENT.code)
        );
        // A file is no mount point for a directory; a mounted place is busy.
        assert_eq!(
            code(vfs.mount_at(
                &rc,
                &rc,
                b"/a/b/file",
                fs(),
                "ramfs",
                "x".into(),
                false,
                false,
                false
            )),
            Some(Errno::ENOTDIR.code)
        );
        assert_eq!(
            code(vfs.mount_at(
                &rc,
                &rc,
                b"/a/new",
                fs(),
                "ramfs",
                "x".into(),
                false,
                false,
                false
            )),
            Some(Errno::EBUSY.code)
        );
        // Through a symlink: mounted where it points.
        vfs.mount_at(
            &rc,
            &rc,
            b"/a/abs",
            fs(),
            "ramfs",
            "y".into(),
            true,
            false,
            false,
        )
        .unwrap();
        assert!(vfs
            .mounts()
            .iter()
            .any(|m| m.target == b"/a/b" && m.read_only));
        // Busy while a location inside is held, not once it is dropped.
        let held = chain_of(&vfs, &rc, b"/a/new/inside");
        let target = chain_of(&vfs, &rc, b"/a/new");
        assert_eq!(
            vfs.umount(&target, false).err().map(|e| e.code),
            Some(Errno::EBUSY.code)
        );
        drop(held);
        vfs.umount(&target, false).unwrap();
        assert_eq!(
            path_of(&vfs, &rc, b"/a/new", true).err().map(|e| e.code),
            Some(Errno::ENOENT.code)
        );
        // Not a mount point / the root.
        let a = chain_of(&vfs, &rc, b"/a");
        assert_eq!(
            vfs.umount(&a, false).err().map(|e| e.code),
            Some(Errno::EINVAL.code)
        );
        assert_eq!(
            vfs.umount(&rc, false).err().map(|e| e.code),
            Some(Errno::EBUSY.code)
        );
        // Detach takes the mounts below along.
        vfs.mount_at(
            &rc,
            &rc,
            b"/a/m/sub",
            fs(),
            "ramfs",
            "z".into(),
            false,
            true,
            false,
        )
        .unwrap();
        let m = chain_of(&vfs, &rc, b"/a/m");
        assert_eq!(
            vfs.umount(&m, false).err().map(|e| e.code),
            Some(Errno::EBUSY.code)
        );
        vfs.umount(&m, true).unwrap();
        assert!(!vfs.mounts().iter().any(|x| x.target.starts_with(b"/a/m")));
    }

    #[test]
    fn parents() {
        let (vfs, rc) = setup();
        let (c, n) = vfs.resolve_parent(&rc, &rc, b"/a/b/new").unwrap();
        assert_eq!((c.path(), n), (b"/a/b".to_vec(), Some(b"new".to_vec())));
        let (c, n) = vfs.resolve_parent(&rc, &rc, b"/a/abs/new/").unwrap();
        assert_eq!((c.path(), n), (b"/a/b".to_vec(), Some(b"new".to_vec())));
        let (_, n) = vfs.resolve_parent(&rc, &rc, b"/").unwrap();
        assert_eq!(n, None);
        assert_eq!(
            vfs.resolve_parent(&rc, &rc, b"/a/b/file/x")
                .err()
                .map(|e| e.code),
            Some(Errno::ENOTDIR.code)
        );
        let names: Vec<Vec<u8>> = vfs
            .mounted_names(&match vfs.resolve(&rc, &rc, b"/a", true).unwrap() {
                Resolved::Node(c, _) => c.loc().clone(),
                Resolved::Fd(_) => unreachable!(),
            })
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec![b"m".to_vec()]);
    }
}
