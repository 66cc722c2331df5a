//! The file-system operations on the locked state: what `FileSystem`
//! methods do, in terms of inodes, directories and the block map.

use super::disk::{dirent_kind, Inode, ROOT_INO};
use super::state::{now, State, LINK_MAX};
use crate::{Attr, DirEntry, Errno, FileType, FsResult, Ino, NewInode, SetAttr, StatFs};

/// Checks a name for create-like calls.
pub fn check_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::EINVAL.with("invalid file name"));
    }
    if name.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    if name == b"." || name == b".." {
        return Err(Errno::EEXIST);
    }
    Ok(())
}

impl State {
    /// Reads a directory inode.
    fn dir(&self, ino: Ino) -> FsResult<Inode> {
        let d = self.inode(ino)?;
        if d.kind() != Some(FileType::Directory) {
            return Err(Errno::ENOTDIR);
        }
        Ok(d)
    }

    /// Attributes of an inode.
    pub fn attr(&self, i: &Inode) -> Attr {
        let kind = i.kind().unwrap_or(FileType::Regular);
        Attr {
            ino: u64::from(i.ino),
            kind,
            perm: u32::from(i.mode) & 0o7777,
            nlink: u32::from(i.links),
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            blocks: i.blocks,
            blksize: self.bs() as u32,
            rdev: match kind {
                FileType::CharDev | FileType::BlockDev => i.rdev(),
                _ => 0,
            },
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
        }
    }

    /// `lookup`.
    pub fn lookup(&mut self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        let d = self.dir(dir)?;
        if name.is_empty() {
            return Err(Errno::ENOENT);
        }
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        if name == b"." {
            return Ok(dir);
        }
        match self.lookup_name(&d, name)? {
            Some(ino) => Ok(u64::from(ino)),
            None => Err(Errno::ENOENT),
        }
    }

    /// `readdir`.
    pub fn readdir(&self, dir: Ino) -> FsResult<Vec<DirEntry>> {
        let d = self.dir(dir)?;
        let mut out = Vec::new();
        for e in self.dir_entries(&d)? {
            let kind = match (self.sb.has_filetype(), dirent_kind(e.ftype)) {
                (true, Some(k)) => k,
                _ => self.read_inode_raw(e.ino)?.kind().ok_or_else(|| {
                    self.corrupt("directory entry names an inode with a bad mode")
                })?,
            };
            out.push(DirEntry {
                name: e.name,
                ino: u64::from(e.ino),
                kind,
            });
        }
        Ok(out)
    }

    /// `read`.
    pub fn read(&self, ino: Ino, off: u64, buf: &mut [u8]) -> FsResult<usize> {
        let i = self.inode(ino)?;
        match i.kind() {
            Some(FileType::Regular) => self.read_data(&i, off, buf),
            Some(FileType::Directory) => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `write`.
    pub fn write(&mut self, ino: Ino, off: u64, data: &[u8]) -> FsResult<usize> {
        self.writable()?;
        let mut i = self.inode(ino)?;
        match i.kind() {
            Some(FileType::Regular) => {}
            Some(FileType::Directory) => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let r = self.write_data(&mut i, off, data);
        if !data.is_empty() {
            let t = now();
            i.mtime = t;
            i.ctime = t;
        }
        self.write_inode(&mut i)?;
        r
    }

    /// `readlink`.
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let i = self.inode(ino)?;
        if i.kind() != Some(FileType::Symlink) {
            return Err(Errno::EINVAL);
        }
        if i.is_fast_symlink(self.sb.block_size) {
            if i.size > 60 {
                return Err(self.corrupt("fast symlink longer than 60 bytes"));
            }
            return Ok(i.raw[40..40 + i.size as usize].to_vec());
        }
        if i.size >= self.bs() {
            return Err(self.corrupt("symlink longer than a block"));
        }
        let mut b = vec![0u8; i.size as usize];
        self.read_data(&i, 0, &mut b)?;
        Ok(b)
    }

    /// `setattr`.
    pub fn setattr(&mut self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        self.writable()?;
        let mut i = self.inode(ino)?;
        let t = now();
        let mut result = Ok(());
        if let Some(size) = set.size {
            match i.kind() {
                Some(FileType::Regular) => {}
                Some(FileType::Directory) => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            self.allow_size(size)?;
            let bs = self.bs();
            if size < i.size {
                result = self.truncate_blocks(&mut i, size.div_ceil(bs));
                if result.is_ok() {
                    result = self.zero_tail(&i, size, size.next_multiple_of(bs));
                }
            } else if size > i.size {
                result = self.zero_tail(&i, i.size, size);
            }
            if result.is_ok() && size != i.size {
                i.size = size;
                i.mtime = t;
            }
        }
        if let Some(p) = set.perm {
            i.mode = myst_formats::mode::with_perm(u32::from(i.mode), p) as u16;
        }
        if let Some(u) = set.uid {
            i.uid = u;
        }
        if let Some(g) = set.gid {
            i.gid = g;
        }
        if let Some(a) = set.atime {
            i.atime = a;
        }
        if let Some(m) = set.mtime {
            i.mtime = m;
        }
        i.ctime = t;
        self.write_inode(&mut i)?;
        result?;
        Ok(self.attr(&i))
    }

    /// Creates an inode of any type and links it into `dir` as `name`.
    pub fn create(
        &mut self,
        dir: Ino,
        name: &[u8],
        new: &NewInode,
        target: Option<&[u8]>,
    ) -> FsResult<Ino> {
        self.writable()?;
        check_name(name)?;
        let mut d = self.dir(dir)?;
        if self.find_entry(&d, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let is_dir = new.kind == FileType::Directory;
        if is_dir && d.links >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        if let Some(t) = target {
            if t.is_empty() {
                return Err(Errno::ENOENT);
            }
            if t.len() as u64 >= self.bs().min(4096) {
                return Err(Errno::ENAMETOOLONG);
            }
        }
        let ino = self.alloc_inode(d.ino, is_dir)?;
        let mut i = Inode::empty(ino, self.sb.inode_size as usize, self.sb.want_extra_isize);
        i.mode = (new.kind.mode_bits() | (new.perm & 0o7777)) as u16;
        i.uid = new.uid;
        i.gid = new.gid;
        i.atime = new.time;
        i.mtime = new.time;
        i.ctime = new.time;
        i.links = if is_dir { 2 } else { 1 };
        i.generation = crate::fresh_generation();
        let built = self.init_inode(&mut i, new, d.ino, target);
        let linked = built.and_then(|_| self.add_entry(&mut d, name, ino, new.kind));
        if let Err(e) = linked {
            // Undo: free what the new inode holds and its number.
            let _ = self.truncate_blocks(&mut i, 0);
            i.links = 0;
            i.dtime = new.time.sec as u32;
            let _ = self.write_inode(&mut i);
            let _ = self.free_inode_bit(ino, is_dir);
            return Err(e);
        }
        if is_dir {
            d = self.inode(dir)?;
            d.links += 1;
        }
        d.mtime = new.time;
        d.ctime = new.time;
        self.write_inode(&mut d)?;
        Ok(u64::from(ino))
    }

    /// Fills a freshly allocated inode (directory block, symlink target,
    /// device number) and writes it.
    fn init_inode(
        &mut self,
        i: &mut Inode,
        new: &NewInode,
        parent: u32,
        target: Option<&[u8]>,
    ) -> FsResult<()> {
        match new.kind {
            FileType::Directory => {
                let goal = self.sb.first_data_block
                    + ((i.ino - 1) / self.sb.inodes_per_group) * self.sb.blocks_per_group;
                let (pblk, _) = self.alloc_map(i, 0, goal)?;
                let b = self.new_dir_block(i.ino, parent);
                self.io.write_blocks(pblk, &b)?;
                i.size = self.bs();
            }
            FileType::Symlink => {
                let t = target.unwrap_or_default();
                if t.len() < 60 {
                    i.raw[40..40 + t.len()].copy_from_slice(t);
                    for (k, b) in i.block.iter_mut().enumerate() {
                        *b = super::disk::le32(&i.raw, 40 + 4 * k);
                    }
                    i.size = t.len() as u64;
                } else {
                    let mut data = t.to_vec();
                    data.resize(self.bs() as usize, 0);
                    let (pblk, _) = self.alloc_map(i, 0, 0)?;
                    self.io.write_blocks(pblk, &data)?;
                    i.size = t.len() as u64;
                }
            }
            FileType::CharDev | FileType::BlockDev => i.set_rdev(new.rdev),
            _ => {}
        }
        self.write_inode(i)
    }

    /// `link`.
    pub fn link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        check_name(name)?;
        let mut i = self.inode(ino)?;
        if i.kind() == Some(FileType::Directory) {
            return Err(Errno::EPERM);
        }
        if i.links >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        if i.links == 0 {
            return Err(Errno::ENOENT);
        }
        let mut d = self.dir(dir)?;
        if self.find_entry(&d, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let kind = i.kind().unwrap_or(FileType::Regular);
        self.add_entry(&mut d, name, i.ino, kind)?;
        let t = now();
        i.links += 1;
        i.ctime = t;
        self.write_inode(&mut i)?;
        let mut d = self.inode(dir)?;
        d.mtime = t;
        d.ctime = t;
        self.write_inode(&mut d)
    }

    /// Drops one link of a non-directory; frees it (or orphans it while in use) at zero.
    fn drop_link(&mut self, ino: u32, t: crate::Timespec) -> FsResult<()> {
        let mut i = self.read_inode_raw(ino)?;
        i.links = i.links.saturating_sub(1);
        i.ctime = t;
        self.write_inode(&mut i)?;
        if i.links == 0 {
            self.unlinked(i)?;
        }
        Ok(())
    }

    /// An inode lost its last link: free it now or when the VFS lets go.
    fn unlinked(&mut self, i: Inode) -> FsResult<()> {
        if self.holds.count(i.ino) > 0 {
            // With shared holds the process that frees it may be another
            // one: the mark is in the shared table.
            self.holds.mark_orphan(i.ino);
            self.orphans.insert(i.ino);
            Ok(())
        } else {
            self.destroy(i)
        }
    }

    /// Frees an inode and all it holds.
    pub fn destroy(&mut self, mut i: Inode) -> FsResult<()> {
        self.orphans.remove(&i.ino);
        self.forget_names(i.ino);
        let is_dir = i.kind() == Some(FileType::Directory);
        let mut r = Ok(());
        if i.has_block_map(self.sb.block_size) {
            r = self.truncate_blocks(&mut i, 0);
        }
        if r.is_ok() {
            r = self.release_xattr_block(&mut i);
        }
        i.links = 0;
        i.dtime = now().sec as u32;
        if i.has_block_map(self.sb.block_size) {
            i.size = 0;
        }
        self.write_inode(&mut i)?;
        r?;
        self.free_inode_bit(i.ino, is_dir)
    }

    /// `unlink`.
    pub fn unlink(&mut self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        let mut d = self.dir(dir)?;
        if name == b"." || name == b".." {
            return Err(Errno::EISDIR);
        }
        let f = self.find_entry(&d, name)?.ok_or(Errno::ENOENT)?;
        let target = self.inode(u64::from(f.ent.ino))?;
        if target.kind() == Some(FileType::Directory) {
            return Err(Errno::EISDIR);
        }
        self.remove_entry(&mut d, name)?;
        let t = now();
        let mut d = self.inode(dir)?;
        d.mtime = t;
        d.ctime = t;
        self.write_inode(&mut d)?;
        self.drop_link(target.ino, t)
    }

    /// `rmdir`.
    pub fn rmdir(&mut self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        let mut d = self.dir(dir)?;
        if name == b"." {
            return Err(Errno::EINVAL);
        }
        if name == b".." {
            return Err(Errno::ENOTEMPTY);
        }
        let f = self.find_entry(&d, name)?.ok_or(Errno::ENOENT)?;
        let mut target = self.inode(u64::from(f.ent.ino))?;
        if target.kind() != Some(FileType::Directory) {
            return Err(Errno::ENOTDIR);
        }
        if target.ino == ROOT_INO {
            return Err(Errno::EBUSY);
        }
        if !self.dir_is_empty(&target)? {
            return Err(Errno::ENOTEMPTY);
        }
        self.remove_entry(&mut d, name)?;
        let t = now();
        let mut d = self.inode(dir)?;
        d.links = d.links.saturating_sub(1).max(1);
        d.mtime = t;
        d.ctime = t;
        self.write_inode(&mut d)?;
        target.links = 0;
        target.ctime = t;
        self.write_inode(&mut target)?;
        self.unlinked(target)
    }

    /// True when `anc` is `d` or one of its ancestors.
    fn is_ancestor(&self, anc: u32, d: u32) -> FsResult<bool> {
        let mut cur = d;
        let mut seen = std::collections::HashSet::new();
        loop {
            if cur == anc {
                return Ok(true);
            }
            if cur == ROOT_INO {
                return Ok(false);
            }
            if !seen.insert(cur) {
                return Err(self.corrupt("cycle in the directory tree"));
            }
            let i = self.inode(u64::from(cur))?;
            if i.kind() != Some(FileType::Directory) {
                return Err(self.corrupt("`..` names a non-directory"));
            }
            cur = self.parent_of(&i)?;
        }
    }

    /// `rename`.
    pub fn rename(&mut self, od: Ino, on: &[u8], nd: Ino, nn: &[u8]) -> FsResult<()> {
        self.writable()?;
        if on == b"." || on == b".." {
            return Err(Errno::EINVAL);
        }
        check_name(nn).map_err(|e| if e == Errno::EEXIST { Errno::EINVAL } else { e })?;
        let src_dir = self.dir(od)?;
        let dst_dir = self.dir(nd)?;
        let f = self.find_entry(&src_dir, on)?.ok_or(Errno::ENOENT)?;
        let mut src = self.inode(u64::from(f.ent.ino))?;
        let kind = src.kind().unwrap_or(FileType::Regular);
        let is_dir = kind == FileType::Directory;
        if od == nd && on == nn {
            return Ok(());
        }
        if is_dir && self.is_ancestor(src.ino, dst_dir.ino)? {
            return Err(Errno::EINVAL);
        }
        let t = now();
        let existing = self.find_entry(&dst_dir, nn)?;
        let moved_dir = is_dir && od != nd;
        match existing {
            Some(e) => {
                if e.ent.ino == src.ino {
                    return Ok(());
                }
                let mut victim = self.inode(u64::from(e.ent.ino))?;
                let victim_dir = victim.kind() == Some(FileType::Directory);
                if is_dir && !victim_dir {
                    return Err(Errno::ENOTDIR);
                }
                if !is_dir && victim_dir {
                    return Err(Errno::EISDIR);
                }
                if victim_dir && !self.dir_is_empty(&victim)? {
                    return Err(Errno::ENOTEMPTY);
                }
                let mut dd = dst_dir;
                self.set_entry(&mut dd, nn, src.ino, kind)?;
                if victim_dir {
                    victim.links = 0;
                    victim.ctime = t;
                    self.write_inode(&mut victim)?;
                    // The victim's `..` goes away; a moved directory's `..` replaces it.
                    if !moved_dir {
                        let mut dd = self.inode(nd)?;
                        dd.links = dd.links.saturating_sub(1).max(1);
                        self.write_inode(&mut dd)?;
                    }
                    self.unlinked(victim)?;
                } else {
                    self.drop_link(victim.ino, t)?;
                }
            }
            None => {
                if moved_dir && dst_dir.links >= LINK_MAX {
                    return Err(Errno::EMLINK);
                }
                let mut dd = dst_dir;
                self.add_entry(&mut dd, nn, src.ino, kind)?;
                if moved_dir {
                    let mut dd = self.inode(nd)?;
                    dd.links += 1;
                    self.write_inode(&mut dd)?;
                }
            }
        }
        let mut sd = self.inode(od)?;
        self.remove_entry(&mut sd, on)?;
        if moved_dir {
            self.set_entry(&mut src, b"..", nd as u32, FileType::Directory)?;
            src = self.inode(u64::from(src.ino))?;
            let mut sd = self.inode(od)?;
            sd.links = sd.links.saturating_sub(1).max(1);
            self.write_inode(&mut sd)?;
        }
        src.ctime = t;
        self.write_inode(&mut src)?;
        for d in [od, nd] {
            let mut di = self.inode(d)?;
            di.mtime = t;
            di.ctime = t;
            self.write_inode(&mut di)?;
        }
        Ok(())
    }

    /// `statfs`.
    pub fn statfs(&self) -> StatFs {
        StatFs {
            fs_type: 0xEF53,
            bsize: self.bs(),
            blocks: u64::from(self.sb.blocks_count),
            bfree: u64::from(self.sb.free_blocks),
            bavail: u64::from(self.sb.free_blocks.saturating_sub(self.sb.r_blocks_count)),
            files: u64::from(self.sb.inodes_count),
            ffree: u64::from(self.sb.free_inodes),
            namelen: 255,
        }
    }

    /// `release`: frees an orphan when its last user goes.
    pub fn release(&mut self, ino: u32) -> FsResult<()> {
        let Some((0, shared_orphan)) = self.holds.sub(ino) else {
            return Ok(());
        };
        if self.read_only.is_some() {
            return Ok(());
        }
        if self.holds.is_shared() {
            // Unlinked in whichever process sharing the device.
            if shared_orphan {
                let i = self.read_inode_raw(ino)?;
                if i.links == 0 {
                    self.destroy(i)?;
                }
            }
            self.orphans.remove(&ino);
        } else if self.orphans.contains(&ino) {
            let i = self.read_inode_raw(ino)?;
            self.destroy(i)?;
        }
        Ok(())
    }
}
