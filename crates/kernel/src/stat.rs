//! Linux x86-64 layouts of `struct stat`, `struct statx`, `struct statfs`
//! and `linux_dirent64`, built from file-system attributes.

use myst_fs::{Attr, StatFs};

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

/// Encodes a device number the way Linux's new_encode_dev does.
pub fn encode_dev(major: u32, minor: u32) -> u64 {
    ((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) as u64
}

/// Device number the guest sees for mount `id`.
pub fn mount_dev(id: u32) -> u64 {
    encode_dev(0, 30 + id)
}

/// `struct stat` (144 bytes).
pub fn stat(a: &Attr, dev: u64) -> [u8; 144] {
    let mut b = [0u8; 144];
    put(&mut b, 0, &dev.to_le_bytes());
    put(&mut b, 8, &a.ino.to_le_bytes());
    put(&mut b, 16, &(a.nlink as u64).to_le_bytes());
    put(&mut b, 24, &a.mode().to_le_bytes());
    put(&mut b, 28, &a.uid.to_le_bytes());
    put(&mut b, 32, &a.gid.to_le_bytes());
    put(&mut b, 40, &a.rdev.to_le_bytes());
    put(&mut b, 48, &a.size.to_le_bytes());
    put(&mut b, 56, &(a.blksize as u64).to_le_bytes());
    put(&mut b, 64, &a.blocks.to_le_bytes());
    put(&mut b, 72, &a.atime.sec.to_le_bytes());
    put(&mut b, 80, &(a.atime.nsec as u64).to_le_bytes());
    put(&mut b, 88, &a.mtime.sec.to_le_bytes());
    put(&mut b, 96, &(a.mtime.nsec as u64).to_le_bytes());
    put(&mut b, 104, &a.ctime.sec.to_le_bytes());
    put(&mut b, 112, &(a.ctime.nsec as u64).to_le_bytes());
    b
}

/// Decodes the fields of a host `struct stat` the guest sees (used as is).
pub fn statx_from_stat(st: &[u8; 144]) -> [u8; 256] {
    let g8 = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&st[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let g4 = |o: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&st[o..o + 4]);
        u32::from_le_bytes(a)
    };
    let dev = g8(0);
    let rdev = g8(40);
    let attr = Attr {
        ino: g8(8),
        kind: myst_fs::FileType::from_mode(g4(24)).unwrap_or(myst_fs::FileType::Regular),
        perm: g4(24) & 0o7777,
        nlink: g8(16) as u32,
        uid: g4(28),
        gid: g4(32),
        size: g8(48),
        blocks: g8(64),
        blksize: g8(56) as u32,
        rdev,
        atime: myst_fs::Timespec {
            sec: g8(72) as i64,
            nsec: g8(80) as u32,
        },
        mtime: myst_fs::Timespec {
            sec: g8(88) as i64,
            nsec: g8(96) as u32,
        },
        ctime: myst_fs::Timespec {
            sec: g8(104) as i64,
            nsec: g8(112) as u32,
        },
    };
    statx(&attr, dev)
}

fn dev_major(d: u64) -> u32 {
    (((d >> 8) & 0xfff) | ((d >> 32) & !0xfff)) as u32
}

fn dev_minor(d: u64) -> u32 {
    ((d & 0xff) | ((d >> 12) & !0xff)) as u32
}

/// `struct statx` (256 bytes) with the basic fields.
pub fn statx(a: &Attr, dev: u64) -> [u8; 256] {
    let mut b = [0u8; 256];
    put(&mut b, 0, &0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
    put(&mut b, 4, &a.blksize.to_le_bytes());
    put(&mut b, 16, &a.nlink.to_le_bytes());
    put(&mut b, 20, &a.uid.to_le_bytes());
    put(&mut b, 24, &a.gid.to_le_bytes());
    put(&mut b, 28, &(a.mode() as u16).to_le_bytes());
    put(&mut b, 32, &a.ino.to_le_bytes());
    put(&mut b, 40, &a.size.to_le_bytes());
    put(&mut b, 48, &a.blocks.to_le_bytes());
    for (off, t) in [(64, a.atime), (96, a.ctime), (112, a.mtime)] {
        put(&mut b, off, &t.sec.to_le_bytes());
        put(&mut b, off + 8, &t.nsec.to_le_bytes());
    }
    put(&mut b, 128, &dev_major(a.rdev).to_le_bytes());
    put(&mut b, 132, &dev_minor(a.rdev).to_le_bytes());
    put(&mut b, 136, &dev_major(dev).to_le_bytes());
    put(&mut b, 140, &dev_minor(dev).to_le_bytes());
    b
}

/// `struct statfs` (120 bytes).
pub fn statfs(s: &StatFs) -> [u8; 120] {
    let mut b = [0u8; 120];
    let fields = [
        s.fs_type, s.bsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree,
    ];
    for (i, v) in fields.iter().enumerate() {
        put(&mut b, i * 8, &v.to_le_bytes());
    }
    // f_fsid (8 bytes) at 56, f_namelen at 64, f_frsize at 72, f_flags at 80.
    put(&mut b, 64, &s.namelen.to_le_bytes());
    put(&mut b, 72, &s.bsize.to_le_bytes());
    b
}

/// Appends one `linux_dirent64`; false if it does not fit in `max` bytes.
pub fn push_dirent(
    out: &mut Vec<u8>,
    max: usize,
    ino: u64,
    off: u64,
    kind: u8,
    name: &[u8],
) -> bool {
    let reclen = (19 + name.len() + 1 + 7) & !7;
    if out.len() + reclen > max {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(&ino.to_le_bytes());
    out.extend_from_slice(&off.to_le_bytes());
    out.extend_from_slice(&(reclen as u16).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(name);
    out.resize(start + reclen, 0);
    true
}
