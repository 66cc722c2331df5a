//! /dev: null, zero, full, random, urandom, tty, stdin/stdout/stderr, fd.

use myst_fs::{
    Attr, DirEntry, Errno, FileSystem, FileType, FsResult, Ino, NewInode, SetAttr, StatFs, Timespec,
};

/// Inode of /dev/tty (opened as the host's terminal).
pub const TTY: Ino = 7;

struct Node {
    ino: Ino,
    name: &'static [u8],
    kind: FileType,
    rdev: u64,
    link: &'static [u8],
}

const NODES: &[Node] = &[
    Node {
        ino: 2,
        name: b"null",
        kind: FileType::CharDev,
        rdev: 0x103,
        link: b"",
    },
    Node {
        ino: 3,
        name: b"zero",
        kind: FileType::CharDev,
        rdev: 0x105,
        link: b"",
    },
    Node {
        ino: 4,
        name: b"full",
        kind: FileType::CharDev,
        rdev: 0x107,
        link: b"",
    },
    Node {
        ino: 5,
        name: b"random",
        kind: FileType::CharDev,
        rdev: 0x108,
        link: b"",
    },
    Node {
        ino: 6,
        name: b"urandom",
        kind: FileType::CharDev,
        rdev: 0x109,
        link: b"",
    },
    Node {
        ino: TTY,
        name: b"tty",
        kind: FileType::CharDev,
        rdev: 0x500,
        link: b"",
    },
    Node {
        ino: 8,
        name: b"stdin",
        kind: FileType::Symlink,
        rdev: 0,
        link: b"/proc/self/fd/0",
    },
    Node {
        ino: 9,
        name: b"stdout",
        kind: FileType::Symlink,
        rdev: 0,
        link: b"/proc/self/fd/1",
    },
    Node {
        ino: 10,
        name: b"stderr",
        kind: FileType::Symlink,
        rdev: 0,
        link: b"/proc/self/fd/2",
    },
    Node {
        ino: 11,
        name: b"fd",
        kind: FileType::Symlink,
        rdev: 0,
        link: b"/proc/self/fd",
    },
];

/// The device file system.
pub struct DevFs {
    time: Timespec,
}

impl DevFs {
    /// A new /dev.
    pub fn new() -> DevFs {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        DevFs {
            time: Timespec {
                sec: d.as_secs() as i64,
                nsec: 0,
            },
        }
    }
}

impl Default for DevFs {
    fn default() -> Self {
        Self::new()
    }
}

fn node(ino: Ino) -> FsResult<&'static Node> {
    NODES.iter().find(|n| n.ino == ino).ok_or(Errno::ENOENT)
}

impl FileSystem for DevFs {
    fn root(&self) -> Ino {
        1
    }

    fn lookup(&self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        if dir != 1 {
            return Err(Errno::ENOTDIR);
        }
        if name == b"." || name == b".." {
            return Ok(1);
        }
        NODES
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.ino)
            .ok_or(Errno::ENOENT)
    }

    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let (kind, perm, rdev, size) = if ino == 1 {
            (FileType::Directory, 0o755, 0, 0)
        } else {
            let n = node(ino)?;
            let perm = if n.kind == FileType::Symlink {
                0o777
            } else {
                0o666
            };
            (n.kind, perm, n.rdev, n.link.len() as u64)
        };
        Ok(Attr {
            ino,
            kind,
            perm,
            nlink: if ino == 1 { 2 } else { 1 },
            uid: 0,
            gid: 0,
            size,
            blocks: 0,
            blksize: 4096,
            rdev,
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
        })
    }

    fn setattr(&self, ino: Ino, _set: &SetAttr) -> FsResult<Attr> {
        self.getattr(ino)
    }

    fn read(&self, ino: Ino, _offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        match ino {
            2 => Ok(0),
            3 | 4 => {
                buf.fill(0);
                Ok(buf.len())
            }
            5 | 6 => {
                myst_platform::host::getrandom(buf).map_err(|e| e.with("getrandom"))?;
                Ok(buf.len())
            }
            1 => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    fn write(&self, ino: Ino, _offset: u64, data: &[u8]) -> FsResult<usize> {
        match ino {
            2 | 3 | 5 | 6 => Ok(data.len()),
            4 => Err(Errno::ENOSPC),
            1 => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    fn readdir(&self, dir: Ino) -> FsResult<Vec<DirEntry>> {
        if dir != 1 {
            return Err(Errno::ENOTDIR);
        }
        let mut v = vec![
            DirEntry {
                name: b".".to_vec(),
                ino: 1,
                kind: FileType::Directory,
            },
            DirEntry {
                name: b"..".to_vec(),
                ino: 1,
                kind: FileType::Directory,
            },
        ];
        v.extend(NODES.iter().map(|n| DirEntry {
            name: n.name.to_vec(),
            ino: n.ino,
            kind: n.kind,
        }));
        Ok(v)
    }

    fn create(&self, _dir: Ino, _name: &[u8], _new: &NewInode) -> FsResult<Ino> {
        Err(Errno::EPERM)
    }

    fn symlink(&self, _dir: Ino, _name: &[u8], _target: &[u8], _new: &NewInode) -> FsResult<Ino> {
        Err(Errno::EPERM)
    }

    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let n = node(ino)?;
        if n.kind != FileType::Symlink {
            return Err(Errno::EINVAL);
        }
        Ok(n.link.to_vec())
    }

    fn link(&self, _ino: Ino, _dir: Ino, _name: &[u8]) -> FsResult<()> {
        Err(Errno::EPERM)
    }

    fn unlink(&self, _dir: Ino, _name: &[u8]) -> FsResult<()> {
        Err(Errno::EPERM)
    }

    fn rmdir(&self, _dir: Ino, _name: &[u8]) -> FsResult<()> {
        Err(Errno::EPERM)
    }

    fn rename(&self, _o: Ino, _a: &[u8], _n: Ino, _b: &[u8]) -> FsResult<()> {
        Err(Errno::EPERM)
    }

    fn statfs(&self) -> FsResult<StatFs> {
        Ok(StatFs {
            fs_type: 0x1021994,
            bsize: 4096,
            namelen: 255,
            ..Default::default()
        })
    }

    fn fsync(&self, _ino: Ino) -> FsResult<()> {
        Ok(())
    }
}
