//! mount(2) and umount2(2), and the file systems that they and the
//! configuration mounts of config.json create.
//!
//! Types: `ext2` (source: host path of an image, opened through the
//! storage stack under the trust rules of docs/FORMATS.md §6; data: NULL,
//! `key=<128 hex digits>` or Mystikos's `{"key", "<hex>", NULL}` array for
//! a LUKS image), `hostfs` (source: an absolute host path of a directory
//! or of one regular file), `ramfs` (source: a CPIO archive in the guest's
//! file system, or empty/NULL for an empty one) and `tmpfs` (empty, in
//! memory). MS_RDONLY is honoured; MS_REMOUNT, MS_BIND and MS_MOVE are
//! EINVAL; propagation changes (MS_PRIVATE, ...) are accepted as no-ops.
//!
//! The mount table lives in the process's kernel: a child forked after a
//! mount sees it; a mount or unmount made later by a child is its own (and
//! its descendants'), like a private mount namespace.

use super::{read_path, read_u64, SysResult};
use crate::Kernel;
use myst_blockdev::overlay::BlockStore;
use myst_blockdev::shared::SharedStore;
use myst_blockdev::trust::{evaluate, StackConfig, TrustPolicy};
use myst_formats::cpio;
use myst_formats::fssig::Fssig;
use myst_fs::ext2::{mount_image, ImageMountError};
use myst_fs::ramfs::{Backing, ImportEntry, RamFs};
use myst_fs::{Errno, FileSystem, FileType};
use myst_platform::guestmem;
use std::path::Path;
use std::sync::Arc;

const MS_RDONLY: u64 = 1;
const MS_REMOUNT: u64 = 32;
const MS_BIND: u64 = 4096;
const MS_MOVE: u64 = 8192;
const MS_PROPAGATION: u64 = (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20);
const MS_MGC_MSK: u64 = 0xffff_0000;
const MS_MGC_VAL: u64 = 0xc0ed_0000;

const MNT_FORCE: u64 = 1;
const MNT_DETACH: u64 = 2;
const MNT_EXPIRE: u64 = 4;
const UMOUNT_NOFOLLOW: u64 = 8;

/// Loads a CPIO archive (newc) into an in-memory file system bounded by
/// `budget` bytes. File contents stay in the archive's buffer (zero copy)
/// until written.
pub fn ramfs_from_cpio(archive: Arc<Vec<u8>>, budget: u64) -> Result<RamFs, String> {
    let base = archive.as_ptr() as usize;
    let mut list = Vec::new();
    for entry in cpio::entries(&archive) {
        let e = entry.map_err(|e| e.to_string())?;
        let kind = e.file_type;
        let m = e.meta;
        let link_key = (kind == FileType::Regular && m.nlink > 1)
            .then_some(((m.dev_major as u64) << 48) ^ ((m.dev_minor as u64) << 32) ^ m.ino as u64);
        let rdev =
            ((m.rdev_minor & 0xff) | (m.rdev_major << 8) | ((m.rdev_minor & !0xff) << 12)) as u64;
        list.push(ImportEntry {
            name: e.name,
            kind,
            perm: m.permissions(),
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime as i64,
            rdev,
            link_key,
            // The reader lends slices of the archive: their offset is where
            // the data lies in the shared buffer.
            data: (e.data.as_ptr() as usize - base, e.data.len()),
        });
    }
    let fs = RamFs::new(0o755, budget);
    let backing: Backing = archive.clone();
    fs.import(&backing, list).map_err(|e| e.to_string())?;
    Ok(fs)
}

/// An ext2 image opened for mounting.
pub struct OpenedExt2 {
    /// The file system.
    pub fs: Arc<dyn FileSystem>,
    /// The one-line warning to print when it is not verified by an anchor.
    pub warning: Option<String>,
}

/// Opens the ext2 image at `path` under `policy` (docs/FORMATS.md §6). Not
/// strict and not verified by an anchor: checked against its own FSSIG
/// root hash (that detects corruption, not a substituted image) or read
/// raw without a trailer, with a warning. `writable`: ephemeral writes in a
/// shared-memory store of that budget (seen by processes forked later),
/// never written to the image; `None`: read-only.
pub fn open_ext2(
    path: &Path,
    policy: &TrustPolicy,
    key: Option<Vec<u8>>,
    writable: Option<u64>,
) -> Result<OpenedExt2, ImageMountError> {
    let mut policy = policy.clone();
    let own = Fssig::read_file(path).ok();
    let mut self_trusted = false;
    if !policy.strict && !evaluate(own.as_ref(), &policy).is_verified() {
        if let Some(f) = &own {
            policy.root_hashes.push(f.root_hash);
            self_trusted = true;
        }
    }
    let overlay_store = writable.and_then(|budget| {
        SharedStore::new(myst_formats::verity::BLOCK_SIZE, budget)
            .map_err(|e| {
                eprintln!(
                    "myst: warning: {e}; writes to {} are not shared across fork",
                    path.display()
                )
            })
            .ok()
            .map(|s| Arc::new(s) as Arc<dyn BlockStore>)
    });
    let config = StackConfig {
        overlay_budget: writable,
        overlay_store,
        key,
        ..Default::default()
    };
    let m = mount_image(path, &policy, &config)?;
    let warning = if self_trusted {
        Some(format!(
            "{}: neither signed by a trusted key (--pubkey) nor its root hash trusted (--roothash); checking its blocks against its own root hash (detects corruption, not a substituted image)",
            path.display()
        ))
    } else {
        m.image.warning(path)
    };
    Ok(OpenedExt2 { fs: m.fs, warning })
}

/// Parses the key of an encrypted image from mount()'s `data`: NULL (no
/// key), a string of comma-separated options with `key=<128 hex digits>`,
/// or Mystikos's NULL-terminated string array `{"key", "<hex>", NULL}`.
fn key_from_data(data: u64) -> Result<Option<Vec<u8>>, Errno> {
    if data == 0 {
        return Ok(None);
    }
    let hex = |s: &[u8]| -> Result<Vec<u8>, Errno> {
        let bad = Errno::EINVAL.with("the key must be 128 hexadecimal digits");
        if s.len() != 128 {
            return Err(bad);
        }
        s.chunks(2)
            .map(|p| {
                std::str::from_utf8(p)
                    .ok()
                    .and_then(|t| u8::from_str_radix(t, 16).ok())
                    .ok_or(bad)
            })
            .collect()
    };
    if let Ok(Some(s)) = guestmem::read_cstr(data, 4095) {
        if s.iter().all(|b| b.is_ascii_graphic()) {
            let mut key = None;
            let mut options = true;
            for opt in s.split(|&b| b == b',').filter(|o| !o.is_empty()) {
                if let Some(h) = opt.strip_prefix(b"key=") {
                    key = Some(hex(h)?);
                } else if opt != b"ro" && opt != b"rw" {
                    options = false;
                }
            }
            if options && (key.is_some() || s.is_empty()) {
                return Ok(key);
            }
        }
    }
    let p0 = read_u64(data)?;
    let name = match guestmem::read_cstr(p0, 64) {
        Ok(Some(n)) => n,
        _ => return Err(Errno::EINVAL.with("unrecognised mount data")),
    };
    if name != b"key" {
        return Err(Errno::EINVAL.with("unrecognised mount data"));
    }
    let p1 = read_u64(data.checked_add(8).ok_or(Errno::EFAULT)?)?;
    match guestmem::read_cstr(p1, 256) {
        Ok(Some(h)) => Ok(Some(hex(&h)?)),
        _ => Err(Errno::EFAULT),
    }
}

fn host_path(src: u64) -> Result<String, Errno> {
    if src == 0 {
        return Err(Errno::EINVAL.with("a source is needed"));
    }
    let p = read_path(src)?;
    if !p.starts_with(b"/") {
        return Err(Errno::EINVAL.with("the source must be an absolute host path"));
    }
    String::from_utf8(p).map_err(|_| Errno::EINVAL)
}

fn warn(msg: &str) {
    myst_platform::host::write_stderr(format!("myst: warning: {msg}\n").as_bytes());
}

/// mount(2).
pub fn mount(k: &Kernel, src: u64, tgt: u64, fstype: u64, flags: u64, data: u64) -> SysResult {
    let mut flags = flags;
    if flags & MS_MGC_MSK == MS_MGC_VAL {
        flags &= !MS_MGC_MSK;
    }
    let target = read_path(tgt)?;
    let cwd = crate::file::lock(&k.fs_ctx).cwd.clone();
    if flags & MS_PROPAGATION != 0 {
        // One mount table per process tree: nothing propagates anyway.
        return match k.vfs.resolve(&k.root, &cwd, &target, true)? {
            crate::vfs::Resolved::Node(..) => Ok(0),
            crate::vfs::Resolved::Fd(_) => Err(Errno::EINVAL),
        };
    }
    if flags & (MS_REMOUNT | MS_BIND | MS_MOVE) != 0 {
        return Err(Errno::EINVAL.with("remount, bind and move mounts are not supported"));
    }
    if fstype == 0 {
        return Err(Errno::EINVAL);
    }
    let fstype = read_path(fstype)?;
    let read_only = flags & MS_RDONLY != 0;
    let (fs, name, source): (Arc<dyn FileSystem>, &'static str, String) = match &fstype[..] {
        b"ext2" => {
            let path = host_path(src)?;
            let key = key_from_data(data)?;
            let writable = (!read_only).then_some(k.memory_size);
            let opened = open_ext2(Path::new(&path), &k.trust, key, writable).map_err(|e| {
                warn(&format!("mount {path}: {e}"));
                e.errno()
            })?;
            if let Some(w) = &opened.warning {
                warn(w);
            }
            (opened.fs, "ext2", path)
        }
        b"hostfs" => {
            if k.trust.strict {
                return Err(Errno::EPERM.with("hostfs cannot be verified (--strict)"));
            }
            let path = host_path(src)?;
            let fs = myst_fs::hostfs::HostFs::open(Path::new(&path))
                .map_err(Errno::from)?
                .with_id_map(k.host_ids.clone());
            (Arc::new(fs), "hostfs", path)
        }
        b"ramfs" => {
            let archive = if src == 0 {
                None
            } else {
                Some(read_path(src)?).filter(|p| !p.is_empty())
            };
            match archive {
                None => (
                    Arc::new(RamFs::new(0o755, k.memory_size)),
                    "ramfs",
                    "ramfs".into(),
                ),
                Some(p) => {
                    let (chain, attr) = match k.vfs.resolve(&k.root, &cwd, &p, true)? {
                        crate::vfs::Resolved::Node(c, a) => (c, a),
                        crate::vfs::Resolved::Fd(_) => return Err(Errno::EINVAL),
                    };
                    if attr.kind != FileType::Regular {
                        return Err(Errno::EINVAL.with("a ramfs source is a CPIO file"));
                    }
                    let bytes = crate::read_whole(chain.loc(), attr.size)?;
                    let fs = ramfs_from_cpio(Arc::new(bytes), k.memory_size).map_err(|e| {
                        warn(&format!(
                            "mount {}: not a usable CPIO archive: {e}",
                            String::from_utf8_lossy(&p)
                        ));
                        Errno::EINVAL
                    })?;
                    (
                        Arc::new(fs),
                        "ramfs",
                        String::from_utf8_lossy(&p).into_owned(),
                    )
                }
            }
        }
        b"tmpfs" => (
            Arc::new(RamFs::new(0o1777, k.memory_size)),
            "tmpfs",
            "tmpfs".into(),
        ),
        _ => return Err(Errno::ENODEV),
    };
    k.vfs.mount_at(
        &k.root, &cwd, &target, fs, name, source, read_only, false, false,
    )?;
    Ok(0)
}

/// umount2(2): flags 0, MNT_FORCE (as 0), MNT_DETACH and UMOUNT_NOFOLLOW;
/// MNT_EXPIRE is EINVAL.
pub fn umount2(k: &Kernel, tgt: u64, flags: u64) -> SysResult {
    if flags & !(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW) != 0
        || flags & MNT_EXPIRE != 0
    {
        return Err(Errno::EINVAL);
    }
    let target = read_path(tgt)?;
    let cwd = crate::file::lock(&k.fs_ctx).cwd.clone();
    let chain = match k
        .vfs
        .resolve(&k.root, &cwd, &target, flags & UMOUNT_NOFOLLOW == 0)?
    {
        crate::vfs::Resolved::Node(c, _) => c,
        crate::vfs::Resolved::Fd(_) => return Err(Errno::EINVAL),
    };
    drop(cwd);
    k.vfs.umount(&chain, flags & MNT_DETACH != 0)?;
    Ok(0)
}
