//! /proc for the guest: self/exe, self/fd, self/cwd, self/maps, self/cmdline,
//! self/environ, self/status, self/auxv, self/mounts, self/mountinfo, cpuinfo,
//! meminfo, mounts, uptime, version.
//! Contents are generated from the kernel's state on every read.

use crate::file::{lock, FileKind};
use crate::kernel;
use crate::vfs::Loc;
use myst_fs::{
    Attr, DirEntry, Errno, FileSystem, FileType, FsResult, Ino, NewInode, SetAttr, StatFs, Timespec,
};

const ROOT: Ino = 1;
const PID_DIR: Ino = 2;
const SELF_LINK: Ino = 3;
const FD_DIR: Ino = 23;
const FD_BASE: Ino = 1 << 32;

struct Entry {
    ino: Ino,
    name: &'static [u8],
    kind: FileType,
}

const fn e(ino: Ino, name: &'static [u8], kind: FileType) -> Entry {
    Entry { ino, name, kind }
}

const ROOT_ENTRIES: &[Entry] = &[
    e(SELF_LINK, b"self", FileType::Symlink),
    e(10, b"cpuinfo", FileType::Regular),
    e(11, b"meminfo", FileType::Regular),
    e(12, b"mounts", FileType::Regular),
    e(13, b"uptime", FileType::Regular),
    e(14, b"version", FileType::Regular),
    e(15, b"filesystems", FileType::Regular),
    e(16, b"loadavg", FileType::Regular),
];

const PID_ENTRIES: &[Entry] = &[
    e(20, b"exe", FileType::Symlink),
    e(21, b"cwd", FileType::Symlink),
    e(22, b"root", FileType::Symlink),
    e(FD_DIR, b"fd", FileType::Directory),
    e(24, b"maps", FileType::Regular),
    e(25, b"cmdline", FileType::Regular),
    e(26, b"environ", FileType::Regular),
    e(27, b"status", FileType::Regular),
    e(28, b"stat", FileType::Regular),
    e(29, b"mounts", FileType::Regular),
    e(30, b"comm", FileType::Regular),
    e(31, b"auxv", FileType::Regular),
    e(32, b"mountinfo", FileType::Regular),
];

/// The /proc file system.
pub struct ProcFs {
    time: Timespec,
}

impl ProcFs {
    /// A new /proc.
    pub fn new() -> ProcFs {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        ProcFs {
            time: Timespec {
                sec: d.as_secs() as i64,
                nsec: 0,
            },
        }
    }
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new()
    }
}

fn pid() -> i64 {
    myst_platform::host::int_syscall(39, [0; 6])
}

/// If `loc` is a /proc/self/fd/N link, N (opening it reopens that descriptor).
pub fn magic_fd(loc: &Loc) -> Option<i32> {
    if loc.mnt.fstype == "proc" && loc.ino >= FD_BASE {
        i32::try_from(loc.ino - FD_BASE).ok()
    } else {
        None
    }
}

fn kind_of(ino: Ino) -> FsResult<FileType> {
    if ino == ROOT || ino == PID_DIR {
        return Ok(FileType::Directory);
    }
    if ino >= FD_BASE {
        return Ok(FileType::Symlink);
    }
    ROOT_ENTRIES
        .iter()
        .chain(PID_ENTRIES)
        .find(|x| x.ino == ino)
        .map(|x| x.kind)
        .ok_or(Errno::ENOENT)
}

/// A field of /proc/mounts with space, tab, newline and backslash octal-escaped, as Linux does.
fn escaped(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    for &b in field {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// /proc/self/mountinfo: id, parent id, st_dev, root, mount point,
/// options, separator, type, source, super options.
fn mountinfo_text() -> Vec<u8> {
    let mut out = Vec::new();
    for m in kernel().vfs.mounts() {
        let dev = crate::stat::mount_dev(m.id);
        let (major, minor) = ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & !0xff));
        let rw = if m.read_only { "ro" } else { "rw" };
        // The root's parent is itself, as in a chroot.
        let parent = if m.parent.0 == 0 { m.id } else { m.parent.0 };
        out.extend_from_slice(format!("{} {parent} {major}:{minor} / ", m.id).as_bytes());
        out.extend_from_slice(&escaped(&m.target));
        out.extend_from_slice(format!(" {rw},relatime - {} ", m.fstype).as_bytes());
        out.extend_from_slice(&escaped(m.source.as_bytes()));
        out.extend_from_slice(format!(" {rw}\n").as_bytes());
    }
    out
}

/// /proc/cpuinfo: the host's, keeping only the CPUs of the guest's
/// affinity mask when MaxAffinityCPUs limits it.
fn cpuinfo_text() -> Vec<u8> {
    let host = std::fs::read("/proc/cpuinfo").unwrap_or_else(|_| b"processor\t: 0\n\n".to_vec());
    let k = kernel();
    if k.max_affinity_cpus.is_none() {
        return host;
    }
    let Ok(mask) = crate::syscalls::process::cpu_mask(k, 1024) else {
        return host;
    };
    let allowed = |n: usize| mask.get(n / 8).is_some_and(|b| b & (1 << (n % 8)) != 0);
    let text = String::from_utf8_lossy(&host);
    let mut out = String::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let cpu = block.lines().find_map(|l| {
            let (key, val) = l.split_once(':')?;
            (key.trim() == "processor").then(|| val.trim().parse::<usize>().ok())?
        });
        if cpu.is_some_and(allowed) {
            out.push_str(block.trim_start_matches('\n'));
            out.push_str("\n\n");
        }
    }
    out.into_bytes()
}

fn mounts_text() -> Vec<u8> {
    let mut out = Vec::new();
    for m in kernel().vfs.mounts() {
        out.extend_from_slice(&escaped(m.source.as_bytes()));
        out.push(b' ');
        out.extend_from_slice(&escaped(&m.target));
        out.extend_from_slice(
            format!(
                " {} {} 0 0\n",
                m.fstype,
                if m.read_only { "ro" } else { "rw" }
            )
            .as_bytes(),
        );
    }
    out
}

fn maps_text() -> Vec<u8> {
    let mut out = Vec::new();
    for r in myst_platform::guestmem::regions() {
        let p = |bit: u32, c: char| if r.prot & bit != 0 { c } else { '-' };
        let line = format!(
            "{:08x}-{:08x} {}{}{}{} 00000000 00:00 0                          {}\n",
            r.start,
            r.end,
            p(1, 'r'),
            p(2, 'w'),
            p(4, 'x'),
            if r.shared { 's' } else { 'p' },
            r.name.as_deref().unwrap_or("")
        );
        out.extend_from_slice(line.trim_end_matches(' ').as_bytes());
    }
    out
}

fn status_text() -> Vec<u8> {
    let k = kernel();
    let exe = lock(&k.exe).clone();
    let name = exe.rsplit(|&b| b == b'/').next().unwrap_or(b"");
    let uid = myst_platform::host::int_syscall(102, [0; 6]);
    let gid = myst_platform::host::int_syscall(104, [0; 6]);
    let ppid = myst_platform::host::int_syscall(110, [0; 6]);
    let vm = myst_platform::guestmem::used_bytes() / 1024;
    format!(
        "Name:\t{}\nUmask:\t{:04o}\nState:\tR (running)\nTgid:\t{p}\nPid:\t{p}\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\nVmSize:\t{vm} kB\nVmRSS:\t{vm} kB\nThreads:\t1\n",
        String::from_utf8_lossy(name),
        lock(&k.fs_ctx).umask,
        p = pid(),
    )
    .into_bytes()
}

fn generate(ino: Ino) -> FsResult<Vec<u8>> {
    let k = kernel();
    Ok(match ino {
        10 => cpuinfo_text(),
        11 => {
            let total = k.memory_size / 1024;
            let free = total.saturating_sub(myst_platform::guestmem::used_bytes() / 1024);
            format!("MemTotal:       {total:8} kB\nMemFree:        {free:8} kB\nMemAvailable:   {free:8} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n").into_bytes()
        }
        12 | 29 => mounts_text(),
        13 => {
            let (s, ns) = myst_platform::host::clock_gettime(7).unwrap_or((0, 0));
            format!(
                "{}.{:02} {}.{:02}\n",
                s,
                ns / 10_000_000,
                s,
                ns / 10_000_000
            )
            .into_bytes()
        }
        14 => b"Linux version 5.15.0 (myst) #1 SMP\n".to_vec(),
        15 => b"nodev\tproc\nnodev\ttmpfs\nnodev\tdevtmpfs\nnodev\thostfs\nnodev\tramfs\n\text2\n"
            .to_vec(),
        16 => b"0.00 0.00 0.00 1/1 1\n".to_vec(),
        24 => maps_text(),
        25 => lock(&k.argv)
            .iter()
            .flat_map(|a| a.iter().copied().chain([0]))
            .collect(),
        26 => lock(&k.envp)
            .iter()
            .flat_map(|a| a.iter().copied().chain([0]))
            .collect(),
        27 => status_text(),
        28 => {
            let exe = lock(&k.exe).clone();
            let name = exe.rsplit(|&b| b == b'/').next().unwrap_or(b"");
            let ppid = myst_platform::host::int_syscall(110, [0; 6]);
            format!(
                "{} ({}) R {} {} {} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0\n",
                pid(),
                String::from_utf8_lossy(name),
                ppid,
                pid(),
                pid()
            )
            .into_bytes()
        }
        30 => {
            let mut n = lock(&k.exe)
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or(b"")
                .to_vec();
            n.truncate(15);
            n.push(b'\n');
            n
        }
        31 => lock(&k.auxv).clone(),
        32 => mountinfo_text(),
        _ => return Err(Errno::EINVAL),
    })
}

impl FileSystem for ProcFs {
    fn root(&self) -> Ino {
        ROOT
    }

    fn lookup(&self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        match dir {
            ROOT => {
                if name == b"." || name == b".." {
                    return Ok(ROOT);
                }
                if name == pid().to_string().as_bytes() {
                    return Ok(PID_DIR);
                }
                ROOT_ENTRIES
                    .iter()
                    .find(|x| x.name == name)
                    .map(|x| x.ino)
                    .ok_or(Errno::ENOENT)
            }
            PID_DIR => match name {
                b"." => Ok(PID_DIR),
                b".." => Ok(ROOT),
                _ => PID_ENTRIES
                    .iter()
                    .find(|x| x.name == name)
                    .map(|x| x.ino)
                    .ok_or(Errno::ENOENT),
            },
            FD_DIR => match name {
                b"." => Ok(FD_DIR),
                b".." => Ok(PID_DIR),
                _ => {
                    let s = std::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
                    let fd: i32 = s.parse().map_err(|_| Errno::ENOENT)?;
                    lock(&kernel().fds).get(fd).map_err(|_| Errno::ENOENT)?;
                    Ok(FD_BASE + fd as u64)
                }
            },
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let kind = kind_of(ino)?;
        let perm = match kind {
            FileType::Directory => 0o555,
            FileType::Symlink => 0o777,
            _ => 0o444,
        };
        Ok(Attr {
            ino,
            kind,
            perm,
            nlink: 1,
            uid: myst_platform::host::int_syscall(102, [0; 6]) as u32,
            gid: myst_platform::host::int_syscall(104, [0; 6]) as u32,
            size: 0,
            blocks: 0,
            blksize: 1024,
            rdev: 0,
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
        })
    }

    fn setattr(&self, _ino: Ino, _set: &SetAttr) -> FsResult<Attr> {
        Err(Errno::EPERM)
    }

    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        if kind_of(ino)? == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        let data = generate(ino)?;
        let off = usize::try_from(offset).unwrap_or(usize::MAX);
        if off >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - off);
        buf[..n].copy_from_slice(&data[off..off + n]);
        Ok(n)
    }

    fn write(&self, _ino: Ino, _offset: u64, _data: &[u8]) -> FsResult<usize> {
        Err(Errno::EACCES)
    }

    fn readdir(&self, dir: Ino) -> FsResult<Vec<DirEntry>> {
        let mk = |name: &[u8], ino: Ino, kind: FileType| DirEntry {
            name: name.to_vec(),
            ino,
            kind,
        };
        let mut v = vec![mk(b".", dir, FileType::Directory)];
        match dir {
            ROOT => {
                v.push(mk(b"..", ROOT, FileType::Directory));
                v.push(mk(
                    pid().to_string().as_bytes(),
                    PID_DIR,
                    FileType::Directory,
                ));
                v.extend(ROOT_ENTRIES.iter().map(|x| mk(x.name, x.ino, x.kind)));
            }
            PID_DIR => {
                v.push(mk(b"..", ROOT, FileType::Directory));
                v.extend(PID_ENTRIES.iter().map(|x| mk(x.name, x.ino, x.kind)));
            }
            FD_DIR => {
                v.push(mk(b"..", PID_DIR, FileType::Directory));
                let fds = lock(&kernel().fds).list();
                for (fd, _) in fds {
                    v.push(mk(
                        fd.to_string().as_bytes(),
                        FD_BASE + fd as u64,
                        FileType::Symlink,
                    ));
                }
            }
            _ => return Err(Errno::ENOTDIR),
        }
        Ok(v)
    }

    fn create(&self, _dir: Ino, _name: &[u8], _new: &NewInode) -> FsResult<Ino> {
        Err(Errno::EACCES)
    }

    fn symlink(&self, _dir: Ino, _name: &[u8], _target: &[u8], _new: &NewInode) -> FsResult<Ino> {
        Err(Errno::EACCES)
    }

    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let k = kernel();
        match ino {
            SELF_LINK => Ok(pid().to_string().into_bytes()),
            20 => Ok(lock(&k.exe).clone()),
            21 => Ok(lock(&k.fs_ctx).cwd.path()),
            22 => Ok(b"/".to_vec()),
            _ if ino >= FD_BASE => {
                let fd = i32::try_from(ino - FD_BASE).map_err(|_| Errno::ENOENT)?;
                let file = lock(&k.fds)
                    .get(fd)
                    .map_err(|_| Errno::ENOENT)?
                    .file
                    .clone();
                Ok(match &file.kind {
                    FileKind::Node { chain, .. } => chain.path(),
                    FileKind::Host { fd, .. } => std::fs::read_link(format!("/proc/self/fd/{fd}"))
                        .map(|p| {
                            use std::os::unix::ffi::OsStrExt;
                            p.as_os_str().as_bytes().to_vec()
                        })
                        .unwrap_or_else(|_| file.path.clone()),
                })
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn link(&self, _ino: Ino, _dir: Ino, _name: &[u8]) -> FsResult<()> {
        Err(Errno::EACCES)
    }

    fn unlink(&self, _dir: Ino, _name: &[u8]) -> FsResult<()> {
        Err(Errno::EACCES)
    }

    fn rmdir(&self, _dir: Ino, _name: &[u8]) -> FsResult<()> {
        Err(Errno::EACCES)
    }

    fn rename(&self, _o: Ino, _a: &[u8], _n: Ino, _b: &[u8]) -> FsResult<()> {
        Err(Errno::EACCES)
    }

    fn statfs(&self) -> FsResult<StatFs> {
        Ok(StatFs {
            fs_type: 0x9fa0,
            bsize: 4096,
            namelen: 255,
            ..Default::default()
        })
    }

    fn fsync(&self, _ino: Ino) -> FsResult<()> {
        Ok(())
    }
}
