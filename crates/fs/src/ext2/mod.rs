//! The read-write ext2 driver, over any [`BlockDevice`].
//!
//! Mounts what `myst mkext2` and stock `mke2fs -t ext2` write (1, 2 and
//! 4 KiB blocks, 128- and 256-byte inodes, dir_index directories read
//! linearly, ext_attr and resize_inode tolerated) and ext3 images that need
//! no journal recovery (the journal is left alone). Refuses extents, 64bit,
//! meta_bg, inline_data, needs_recovery and unknown incompatible features
//! with an error naming the feature; unknown read-only-compatible features
//! (metadata_csum, uninit_bg, ...) give a read-only mount.
//!
//! Everything read from the image is untrusted: pointers, counts, record
//! lengths and sizes are checked, loops are bounded, corruption is EIO.
//! One mutex protects the state; writes go to the device below, which for
//! images is the ephemeral overlay.
//!
//! Written here rather than taken from a crate: no maintained crate offers
//! a read-write ext2 driver over an arbitrary block device.

mod alloc;
mod bmap;
mod dir;
pub mod disk;
mod holds;
mod io;
mod ops;
mod state;
pub mod tmp;

use crate::{Attr, DirEntry, Errno, FileSystem, FsResult, Ino, NewInode, SetAttr, StatFs};
use disk::{Group, SuperError, Superblock, GD_SIZE, ROOT_INO, SB_OFFSET, SB_SIZE};
use myst_blockdev::trust::{open_image, Image, OpenError, StackConfig, TrustPolicy, Verification};
use myst_blockdev::BlockDevice;
use state::State;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Reading the device failed.
    #[error("{name}: reading the superblock or group descriptors: {errno}")]
    Io {
        /// The device name.
        name: String,
        /// What failed.
        errno: Errno,
    },
    /// The superblock or group descriptors are unusable.
    #[error("{name}: {source}")]
    Super {
        /// The device name.
        name: String,
        /// What is wrong.
        source: SuperError,
    },
    /// The device is smaller than the file system.
    #[error("{name}: the file system needs {needed} bytes but the device has {have}")]
    TooSmall {
        /// The device name.
        name: String,
        /// Bytes the superblock implies.
        needed: u64,
        /// Bytes available.
        have: u64,
    },
    /// The root directory is unusable.
    #[error("{name}: root directory: {errno}")]
    BadRoot {
        /// The device name.
        name: String,
        /// Why.
        errno: Errno,
    },
}

impl MountError {
    /// The errno a mount() call returns for this error.
    pub fn errno(&self) -> Errno {
        match self {
            MountError::Io { errno, .. } => *errno,
            MountError::BadRoot { errno, .. } => *errno,
            _ => Errno::EINVAL,
        }
    }
}

/// Mount options.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// Refuse writes (EROFS) even on a writable device.
    pub read_only: bool,
    /// Name used in log lines and errors (usually the image path).
    pub name: String,
}

/// A mounted ext2 file system.
pub struct Ext2Fs {
    state: Mutex<State>,
    /// Hold counts are one table for every process sharing the device.
    shared_holds: bool,
}

impl Ext2Fs {
    /// Mounts the ext2 file system on `dev`. A read-only device (no
    /// overlay) or a read-only-compatible feature gives a read-only mount.
    pub fn mount(dev: Arc<dyn BlockDevice>, opts: &MountOptions) -> Result<Ext2Fs, MountError> {
        let name = if opts.name.is_empty() {
            "ext2".to_string()
        } else {
            opts.name.clone()
        };
        let sup = |source| MountError::Super {
            name: name.clone(),
            source,
        };
        let ioerr = |errno: Errno| MountError::Io {
            name: name.clone(),
            errno,
        };
        // Read the superblock with a 1 KiB-block view; fix the size after.
        let probe = io::Io::new(dev.clone(), 1024);
        let mut raw = vec![0u8; SB_SIZE];
        probe
            .read_bytes(SB_OFFSET, &mut raw)
            .map_err(|e| match dev.block_count() {
                0 => MountError::TooSmall {
                    name: name.clone(),
                    needed: 2048,
                    have: 0,
                },
                _ => ioerr(e),
            })?;
        let sb = Superblock::parse(&raw).map_err(sup)?;
        let ro_feature = sb.check_features().map_err(sup)?;
        let bs = u64::from(sb.block_size);
        let needed = u64::from(sb.blocks_count) * bs;
        if needed > probe.dev_bytes {
            return Err(MountError::TooSmall {
                name,
                needed,
                have: probe.dev_bytes,
            });
        }
        let dbs = dev.block_size() as u64;
        if bs % dbs != 0 && !dbs.is_multiple_of(bs) {
            return Err(sup(SuperError::Corrupt(format!(
                "block size {bs} does not fit the device's {dbs}-byte blocks"
            ))));
        }
        let io = io::Io::new(dev.clone(), bs);
        let gdt_offset = (u64::from(sb.first_data_block) + 1) * bs;
        let gdt_len = sb.group_count as usize * GD_SIZE;
        if gdt_offset + gdt_len as u64 > needed {
            return Err(sup(SuperError::Corrupt(
                "group descriptors beyond the end".into(),
            )));
        }
        let mut gdt = vec![0u8; gdt_len];
        io.read_bytes(gdt_offset, &mut gdt).map_err(ioerr)?;
        let groups = gdt
            .chunks_exact(GD_SIZE)
            .enumerate()
            .map(|(g, r)| Group::parse(r, g as u32, &sb))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sup)?;
        let read_only = if opts.read_only {
            Some("mounted read-only".to_string())
        } else if !dev.is_writable() {
            Some("the device is read-only".to_string())
        } else {
            ro_feature.map(|f| {
                eprintln!("myst: ext2: {name}: feature {f} is not supported for writing; mounting read-only");
                format!("feature {f}")
            })
        };
        let st = State {
            io,
            sb,
            groups,
            read_only,
            name: name.clone(),
            holds: holds::Holds::new(dev.shared_generation().is_some()),
            orphans: HashSet::new(),
            dirty_sb: false,
            dirty_groups: BTreeSet::new(),
            gdt_offset,
            names: HashMap::new(),
            names_cached: 0,
            generation: dev.shared_generation(),
        };
        match st.dir_check_root() {
            Ok(()) => {}
            Err(errno) => return Err(MountError::BadRoot { name, errno }),
        }
        Ok(Ext2Fs {
            shared_holds: st.holds.is_shared(),
            state: Mutex::new(st),
        })
    }

    /// Why the mount is read-only, if it is.
    pub fn read_only_reason(&self) -> Option<String> {
        self.lock().ok().and_then(|s| s.read_only.clone())
    }

    /// Locks the state: the in-process mutex, then the device's
    /// cross-process lock. When another process changed the shared device
    /// since this one last looked, the cached superblock, group descriptors
    /// and directory indexes are re-read first.
    fn lock(&self) -> FsResult<Locked<'_>> {
        let st = self
            .state
            .lock()
            .map_err(|_| Errno::EIO.with("ext2 state poisoned by a panic"))?;
        st.io.dev().shared_lock();
        // Until the state is known current, dropping the guard must not
        // record the generation (a failed reload is retried next time).
        let mut g = Locked { st, current: false };
        let now = g.st.io.dev().shared_generation();
        if now != g.st.generation {
            g.st.reload()?;
        }
        g.current = true;
        Ok(g)
    }

    /// Runs a mutating operation and writes back changed metadata, even on
    /// error. Refuses (ENOSPC) up front when the write budget is down to the
    /// metadata reserve.
    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> FsResult<T>) -> FsResult<T> {
        let mut st = self.lock()?;
        st.writable()?;
        st.ensure_budget(0)?;
        let r = f(&mut st);
        let c = st.commit();
        let v = r?;
        c?;
        Ok(v)
    }
}

/// The state, held under both locks; dropping it records the device
/// generation (everything written so far is this process's own view) and
/// releases the cross-process lock.
struct Locked<'a> {
    st: MutexGuard<'a, State>,
    current: bool,
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.st
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.st
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let dev = self.st.io.dev().clone();
        if self.current {
            self.st.generation = dev.shared_generation();
        }
        dev.shared_unlock();
    }
}

impl State {
    /// Re-reads the superblock and group descriptors and drops directory
    /// indexes: another process sharing the device wrote to it.
    fn reload(&mut self) -> FsResult<()> {
        let mut raw = vec![0u8; SB_SIZE];
        self.io.read_bytes(SB_OFFSET, &mut raw)?;
        let sb = Superblock::parse(&raw)
            .map_err(|_| self.corrupt("superblock changed by another process is invalid"))?;
        if sb.block_size != self.sb.block_size || sb.group_count != self.sb.group_count {
            return Err(self.corrupt("superblock geometry changed by another process"));
        }
        let mut gdt = vec![0u8; sb.group_count as usize * GD_SIZE];
        self.io.read_bytes(self.gdt_offset, &mut gdt)?;
        let groups = gdt
            .chunks_exact(GD_SIZE)
            .enumerate()
            .map(|(g, r)| Group::parse(r, g as u32, &sb))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| self.corrupt("group descriptor changed by another process is invalid"))?;
        self.sb = sb;
        self.groups = groups;
        self.names.clear();
        self.names_cached = 0;
        self.dirty_sb = false;
        self.dirty_groups.clear();
        self.generation = self.io.dev().shared_generation();
        Ok(())
    }

    fn dir_check_root(&self) -> FsResult<()> {
        let root = self.inode(u64::from(ROOT_INO))?;
        if root.kind() != Some(crate::FileType::Directory) {
            return Err(Errno::ENOTDIR.with("root inode is not a directory"));
        }
        Ok(())
    }
}

impl FileSystem for Ext2Fs {
    fn root(&self) -> Ino {
        u64::from(ROOT_INO)
    }
    fn lookup(&self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        self.lock()?.lookup(dir, name)
    }
    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let st = self.lock()?;
        let i = st.inode(ino)?;
        Ok(st.attr(&i))
    }
    fn setattr(&self, ino: Ino, set: &SetAttr) -> FsResult<Attr> {
        self.mutate(|s| s.setattr(ino, set))
    }
    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        self.lock()?.read(ino, offset, buf)
    }
    fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<usize> {
        self.mutate(|s| s.write(ino, offset, data))
    }
    fn append(&self, ino: Ino, data: &[u8]) -> FsResult<(u64, usize)> {
        self.mutate(|s| {
            let i = s.inode(ino)?;
            let start = s.attr(&i).size;
            Ok((start, s.write(ino, start, data)?))
        })
    }
    fn readdir(&self, dir: Ino) -> FsResult<Vec<DirEntry>> {
        self.lock()?.readdir(dir)
    }
    fn create(&self, dir: Ino, name: &[u8], new: &NewInode) -> FsResult<Ino> {
        if new.kind == crate::FileType::Symlink {
            return Err(Errno::EINVAL.with("symlinks are made with symlink()"));
        }
        // ext2 (like Linux's dev_t) holds 12-bit majors and 20-bit minors.
        if matches!(
            new.kind,
            crate::FileType::CharDev | crate::FileType::BlockDev
        ) && (disk::dev_major(new.rdev) >= 1 << 12 || disk::dev_minor(new.rdev) >= 1 << 20)
        {
            return Err(Errno::EINVAL.with("device number out of range"));
        }
        self.mutate(|s| s.create(dir, name, new, None))
    }
    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8], new: &NewInode) -> FsResult<Ino> {
        let new = NewInode {
            kind: crate::FileType::Symlink,
            perm: 0o777,
            ..*new
        };
        self.mutate(|s| s.create(dir, name, &new, Some(target)))
    }
    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.lock()?.readlink(ino)
    }
    fn link(&self, ino: Ino, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.mutate(|s| s.link(ino, dir, name))
    }
    fn unlink(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.mutate(|s| s.unlink(dir, name))
    }
    fn rmdir(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.mutate(|s| s.rmdir(dir, name))
    }
    fn rename(&self, old_dir: Ino, old: &[u8], new_dir: Ino, new: &[u8]) -> FsResult<()> {
        self.mutate(|s| s.rename(old_dir, old, new_dir, new))
    }
    fn statfs(&self) -> FsResult<StatFs> {
        Ok(self.lock()?.statfs())
    }
    fn fsync(&self, _ino: Ino) -> FsResult<()> {
        let st = self.lock()?;
        st.io.dev().flush().map_err(Errno::from)
    }
    fn generation(&self, ino: Ino) -> FsResult<u64> {
        // A deleted inode is a normal answer here (a mapping outlived its
        // file), not a corruption to report.
        let st = self.lock()?;
        let n = u32::try_from(ino).map_err(|_| Errno::ENOENT)?;
        let i = st.read_inode_raw(n)?;
        if i.kind().is_none()
            || (i.links == 0 && !st.orphans.contains(&n) && st.holds.count(n) == 0)
        {
            return Err(Errno::ENOENT);
        }
        Ok(u64::from(i.generation))
    }
    fn retain(&self, ino: Ino) {
        if let (Ok(mut st), Ok(i)) = (self.lock(), u32::try_from(ino)) {
            if !st.holds.add(i) {
                eprintln!(
                    "myst: ext2: {}: too many open inodes; inode {i} may be freed while open",
                    st.name
                );
            }
        }
    }
    fn shared_holds(&self) -> bool {
        self.shared_holds
    }
    fn release(&self, ino: Ino) {
        if let Ok(i) = u32::try_from(ino) {
            // Freeing an orphan rewrites blocks it already wrote; no budget check.
            let r = self.lock().and_then(|mut st| {
                let r = st.release(i);
                st.commit().and(r)
            });
            if let Err(e) = r {
                eprintln!("myst: ext2: freeing unlinked inode {i}: {e}");
            }
        }
    }
}

/// Why an image could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum ImageMountError {
    /// The storage stack refused the image.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The file system is unusable.
    #[error(transparent)]
    Mount(#[from] MountError),
}

impl ImageMountError {
    /// The errno a mount() call returns.
    pub fn errno(&self) -> Errno {
        match self {
            ImageMountError::Open(e) => e.errno().with("cannot open image"),
            ImageMountError::Mount(e) => e.errno(),
        }
    }
}

/// An ext2 image mounted through the storage stack.
pub struct MountedImage {
    /// The file system.
    pub fs: Arc<Ext2Fs>,
    /// How the image was trusted.
    pub verification: Verification,
    /// The stack (for overlay statistics).
    pub image: Image,
}

/// Opens `path` under the trust rules (docs/FORMATS.md §6), builds the storage
/// stack (`config.overlay_budget` or `overlay_store` for ephemeral writes) and mounts
/// its ext2 file system. This is what the runtime calls for an ext2 rootfs
/// or mount.
pub fn mount_image(
    path: &Path,
    policy: &TrustPolicy,
    config: &StackConfig,
) -> Result<MountedImage, ImageMountError> {
    let image = open_image(path, policy, config)?;
    let opts = MountOptions {
        read_only: !config.writable(),
        name: path.display().to_string(),
    };
    let fs = Arc::new(Ext2Fs::mount(image.device.clone(), &opts)?);
    Ok(MountedImage {
        fs,
        verification: image.verification.clone(),
        image,
    })
}
