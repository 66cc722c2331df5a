//! `myst excpio`: extract a newc archive, safely.
//!
//! Two passes. The first reads every header (and checks CRC archives' data)
//! and refuses the archive before anything is written if it is truncated,
//! has absurd sizes, absolute names, `..` components, or a name that goes
//! through a symlink the archive itself creates. The second extracts, walking
//! every path from DIR one component at a time with `O_NOFOLLOW`, so no
//! symlink, whether from the archive or already in DIR, is ever followed; and
//! it replaces existing non-directories instead of writing through them.
//!
//! GNU cpio and bsdtar store a hard-linked file's data only on its last link
//! (earlier links: nlink > 1, no data); those names are linked to the data
//! once it arrives, so every name gets the contents.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use myst_formats::cpio::{
    display_name, safe_components, FileType, Meta, StreamEntry, StreamReader,
};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// Extract a CPIO (newc) archive into a directory.
#[derive(clap::Args)]
#[command(long_about = "\
Extract a CPIO (newc or crc) archive into a directory, creating it if needed.

Accepts archives from myst, Mystikos, GNU cpio (including its hard-link
convention) and bsdtar. Modes, symlink targets and mtimes are restored, and
owners too when run as root. Device nodes, FIFOs and sockets are skipped with
a warning. The archive is refused, before anything is written, if it is
truncated, holds absurd sizes, absolute names, `..` components or names that
go through a symbolic link; symlinks already in DIR are never followed.

Example: myst excpio rootfs.cpio outdir")]
pub struct Args {
    /// Archive to read.
    pub cpio: PathBuf,
    /// Directory to extract into.
    pub dir: PathBuf,
}

/// Longest symlink target accepted (PATH_MAX without the NUL).
const MAX_TARGET: u32 = 4095;

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let name = args.cpio.display().to_string();
    let mut f = File::open(&args.cpio).with_context(|| name.clone())?;
    let len = f.metadata().with_context(|| name.clone())?.len();
    check_archive(&f, len).with_context(|| name.clone())?;
    f.rewind().with_context(|| name.clone())?;

    fs::create_dir_all(&args.dir).with_context(|| format!("{}", args.dir.display()))?;
    let root = rustix::fs::open(
        &args.dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| anyhow!("{}: {e}", args.dir.display()))?;
    let mut x = Extractor {
        root,
        dir: &args.dir,
        as_root: rustix::process::geteuid().is_root(),
        dirs: Vec::new(),
        links: HashMap::new(),
        cache: None,
        buf: vec![0u8; 1 << 18],
    };
    let mut r = StreamReader::with_len(BufReader::with_capacity(1 << 18, &f), len);
    while let Some(e) = r.next_entry().with_context(|| name.clone())? {
        x.entry(&e, &mut r)
            .with_context(|| format!("{name}: entry {:?}", display_name(&e.name)))?;
    }
    x.finish()
        .with_context(|| format!("{}", args.dir.display()))?;
    Ok(0)
}

/// Pass one: structure, sizes and names, without writing anything.
fn check_archive(f: &File, len: u64) -> anyhow::Result<()> {
    let mut r = StreamReader::with_len(BufReader::with_capacity(1 << 16, f), len);
    // Paths (components joined by '/') that the archive makes symlinks.
    let mut symlinks: HashSet<Vec<u8>> = HashSet::new();
    while let Some(e) = r.next_entry()? {
        let shown = display_name(&e.name);
        let comps = safe_components(&e.name)?;
        let mut prefix = Vec::new();
        for (i, c) in comps.iter().enumerate() {
            if i + 1 == comps.len() {
                break;
            }
            if i > 0 {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(c);
            if symlinks.contains(&prefix) {
                bail!(
                    "refusing entry {shown:?}: it goes through {:?}, a symbolic link earlier in the archive",
                    display_name(&prefix)
                );
            }
        }
        if comps.is_empty() && e.file_type != FileType::Directory {
            bail!(
                "refusing entry {shown:?}: it names the extraction directory but is a {:?}",
                e.file_type
            );
        }
        let key = comps.join(&b'/');
        if e.file_type == FileType::Symlink {
            if e.size > MAX_TARGET {
                bail!(
                    "entry {shown:?}: symlink target of {} bytes is absurd (at most {MAX_TARGET})",
                    e.size
                );
            }
            if e.size == 0 && e.meta.nlink <= 1 {
                bail!("entry {shown:?}: symlink with an empty target");
            }
            symlinks.insert(key);
        } else {
            symlinks.remove(&key);
        }
        r.skip_data()?;
    }
    Ok(())
}

/// (dev major, dev minor, ino): what pairs up the links of one file.
type LinkKey = (u32, u32, u32);

enum Link {
    /// Names seen without data, waiting for the link that carries it.
    Waiting(Vec<(Vec<Vec<u8>>, Meta, FileType)>),
    /// The name that holds the data.
    Done(Vec<Vec<u8>>),
}

struct Extractor<'a> {
    root: OwnedFd,
    dir: &'a Path,
    as_root: bool,
    /// Directories whose mode and mtime are set at the end (children change mtimes).
    dirs: Vec<(Vec<Vec<u8>>, Meta)>,
    links: HashMap<LinkKey, Link>,
    /// The last parent directory opened, by its components.
    cache: Option<(Vec<Vec<u8>>, OwnedFd)>,
    buf: Vec<u8>,
}

fn errno(e: Errno, what: &str) -> anyhow::Error {
    anyhow!("{what}: {e}")
}

fn timestamps(mtime: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::from(mtime),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn ids(meta: &Meta) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    // u32::MAX means "leave unchanged" to chown, not an owner.
    let uid = (meta.uid != u32::MAX).then(|| rustix::fs::Uid::from_raw(meta.uid));
    let gid = (meta.gid != u32::MAX).then(|| rustix::fs::Gid::from_raw(meta.gid));
    (uid, gid)
}

fn perm(meta: &Meta) -> Mode {
    Mode::from_bits_truncate(meta.permissions())
}

impl Extractor<'_> {
    fn entry<R: std::io::Read>(
        &mut self,
        e: &StreamEntry,
        r: &mut StreamReader<R>,
    ) -> anyhow::Result<()> {
        let comps: Vec<Vec<u8>> = safe_components(&e.name)?
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        // Checked in the first pass too; the archive may have changed since.
        if e.file_type == FileType::Symlink && e.size > MAX_TARGET {
            bail!("symlink target of {} bytes is absurd", e.size);
        }
        match e.file_type {
            FileType::Directory => self.make_dir(comps, e.meta),
            FileType::Regular | FileType::Symlink if e.meta.nlink > 1 => self.linked(comps, e, r),
            FileType::Regular => self.make_file(&comps, &e.meta, r),
            FileType::Symlink => {
                let target = r.read_data_to_vec()?;
                self.make_symlink(&comps, &e.meta, &target)
            }
            ft => {
                eprintln!(
                    "myst: warning: skipping {:?}: a {ft:?} is not extracted",
                    display_name(&e.name)
                );
                Ok(())
            }
        }
    }

    /// Opens the directory `comps` below DIR, never following a symlink;
    /// with `create`, missing directories are made on the way.
    fn open_dir(&self, comps: &[Vec<u8>], create: bool) -> anyhow::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = rustix::fs::openat(&self.root, ".", flags, Mode::empty())
            .map_err(|e| errno(e, "opening the extraction directory"))?;
        for (i, c) in comps.iter().enumerate() {
            let shown = || display_name(&comps[..=i].join(&b'/'));
            let next = match rustix::fs::openat(&fd, c.as_slice(), flags, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, c.as_slice(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(errno(e, &format!("creating {:?}", shown()))),
                    }
                    rustix::fs::openat(&fd, c.as_slice(), flags, Mode::empty())
                }
                other => other,
            };
            fd = match next {
                Ok(n) => n,
                Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                    let st = rustix::fs::statat(&fd, c.as_slice(), AtFlags::SYMLINK_NOFOLLOW);
                    if st.is_ok_and(|s| FileType::from_mode(s.st_mode) == Some(FileType::Symlink)) {
                        bail!(
                            "refusing to go through {:?}: it is a symbolic link",
                            shown()
                        );
                    }
                    return Err(errno(e, &format!("{:?}", shown())));
                }
                Err(e) => return Err(errno(e, &format!("{:?}", shown()))),
            };
        }
        Ok(fd)
    }

    /// The parent directory of `comps` (creating missing ones) and the leaf name.
    fn parent<'c>(&mut self, comps: &'c [Vec<u8>]) -> anyhow::Result<(OwnedFd, &'c [u8])> {
        let Some((leaf, dir)) = comps.split_last() else {
            bail!("the extraction directory itself cannot be replaced");
        };
        if let Some((c, fd)) = &self.cache {
            if c.as_slice() == dir {
                return Ok((fd.try_clone()?, leaf));
            }
        }
        let fd = self.open_dir(dir, true)?;
        self.cache = Some((dir.to_vec(), fd.try_clone()?));
        Ok((fd, leaf))
    }

    /// Removes whatever non-directory is at `leaf`, so that nothing is
    /// written through an existing symlink or into an existing hard link.
    fn clear(&self, dir: &OwnedFd, leaf: &[u8]) -> anyhow::Result<()> {
        match rustix::fs::unlinkat(dir, leaf, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM)
                if rustix::fs::statat(dir, leaf, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|s| FileType::from_mode(s.st_mode) == Some(FileType::Directory)) =>
            {
                bail!("a directory is already there")
            }
            Err(e) => Err(errno(e, "removing what is already there")),
        }
    }

    fn make_dir(&mut self, comps: Vec<Vec<u8>>, meta: Meta) -> anyhow::Result<()> {
        if !comps.is_empty() {
            let (dir, leaf) = self.parent(&comps)?;
            // Owner-writable until finish() sets the real mode.
            match rustix::fs::mkdirat(&dir, leaf, Mode::RWXU) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    let st = rustix::fs::statat(&dir, leaf, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| errno(e, "stat"))?;
                    if FileType::from_mode(st.st_mode) != Some(FileType::Directory) {
                        self.clear(&dir, leaf)?;
                        rustix::fs::mkdirat(&dir, leaf, Mode::RWXU)
                            .map_err(|e| errno(e, "mkdir"))?;
                    }
                }
                Err(e) => return Err(errno(e, "mkdir")),
            }
        }
        self.dirs.push((comps, meta));
        Ok(())
    }

    fn make_file<R: std::io::Read>(
        &mut self,
        comps: &[Vec<u8>],
        meta: &Meta,
        r: &mut StreamReader<R>,
    ) -> anyhow::Result<()> {
        let (dir, leaf) = self.parent(comps)?;
        self.clear(&dir, leaf)?;
        let fd = rustix::fs::openat(
            &dir,
            leaf,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| errno(e, "create"))?;
        let mut file = File::from(fd);
        loop {
            let n = r.read_data(&mut self.buf)?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buf[..n]).context("write")?;
        }
        self.set_attrs(file.as_fd(), meta)
    }

    fn make_symlink(
        &mut self,
        comps: &[Vec<u8>],
        meta: &Meta,
        target: &[u8],
    ) -> anyhow::Result<()> {
        if target.is_empty() {
            bail!("symlink with an empty target");
        }
        let (dir, leaf) = self.parent(comps)?;
        self.clear(&dir, leaf)?;
        rustix::fs::symlinkat(target, &dir, leaf).map_err(|e| errno(e, "symlink"))?;
        if self.as_root {
            let (u, g) = ids(meta);
            rustix::fs::chownat(&dir, leaf, u, g, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| errno(e, "chown"))?;
        }
        rustix::fs::utimensat(
            &dir,
            leaf,
            &timestamps(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| errno(e, "setting the mtime"))
    }

    /// Owner (as root), then mode (chown clears setuid), then mtime.
    fn set_attrs(&self, fd: std::os::fd::BorrowedFd<'_>, meta: &Meta) -> anyhow::Result<()> {
        if self.as_root {
            let (u, g) = ids(meta);
            rustix::fs::fchown(fd, u, g).map_err(|e| errno(e, "chown"))?;
        }
        rustix::fs::fchmod(fd, perm(meta)).map_err(|e| errno(e, "chmod"))?;
        rustix::fs::futimens(fd, &timestamps(meta.mtime)).map_err(|e| errno(e, "setting the mtime"))
    }

    /// A file or symlink with nlink > 1: GNU cpio and bsdtar put its data on
    /// the last link only, so the names before it are linked once it comes.
    fn linked<R: std::io::Read>(
        &mut self,
        comps: Vec<Vec<u8>>,
        e: &StreamEntry,
        r: &mut StreamReader<R>,
    ) -> anyhow::Result<()> {
        let key = (e.meta.dev_major, e.meta.dev_minor, e.meta.ino);
        if e.size == 0 {
            match self.links.get_mut(&key) {
                Some(Link::Done(src)) => {
                    let src = src.clone();
                    return self.hard_link(&src, &comps);
                }
                Some(Link::Waiting(names)) => names.push((comps, e.meta, e.file_type)),
                None => {
                    self.links
                        .insert(key, Link::Waiting(vec![(comps, e.meta, e.file_type)]));
                }
            }
            return Ok(());
        }
        if e.file_type == FileType::Symlink {
            let target = r.read_data_to_vec()?;
            self.make_symlink(&comps, &e.meta, &target)?;
        } else {
            self.make_file(&comps, &e.meta, r)?;
        }
        if let Some(Link::Waiting(names)) = self.links.remove(&key) {
            for (n, _, _) in names {
                self.hard_link(&comps, &n)?;
            }
        }
        self.links.insert(key, Link::Done(comps));
        Ok(())
    }

    fn hard_link(&mut self, src: &[Vec<u8>], dst: &[Vec<u8>]) -> anyhow::Result<()> {
        let (sdir, sleaf) = self.parent(src)?;
        let (ddir, dleaf) = self.parent(dst)?;
        self.clear(&ddir, dleaf)
            .with_context(|| format!("linking {:?}", display_name(&dst.join(&b'/'))))?;
        // Flags 0: a symlink at the source is linked itself, never followed.
        rustix::fs::linkat(&sdir, sleaf, &ddir, dleaf, AtFlags::empty()).map_err(|e| {
            errno(
                e,
                &format!(
                    "linking {:?} to {:?}",
                    display_name(&dst.join(&b'/')),
                    display_name(&src.join(&b'/'))
                ),
            )
        })
    }

    /// Links whose data never came (empty files), then directory modes and mtimes.
    fn finish(&mut self) -> anyhow::Result<()> {
        let waiting: Vec<_> = self
            .links
            .drain()
            .filter_map(|(_, l)| match l {
                Link::Waiting(n) => Some(n),
                Link::Done(_) => None,
            })
            .collect();
        for names in waiting {
            let mut it = names.into_iter();
            if let Some((first, meta, ft)) = it.next() {
                let shown = display_name(&first.join(&b'/'));
                if ft == FileType::Symlink {
                    bail!("symlink {shown:?}: no link of it carries a target");
                }
                let mut empty = StreamReader::new(std::io::empty());
                self.make_file(&first, &meta, &mut empty)
                    .with_context(|| format!("{shown:?}"))?;
                for (n, _, _) in it {
                    self.hard_link(&first, &n)?;
                }
            }
        }
        self.cache = None;
        // The last entry for a directory wins.
        let mut last: HashMap<Vec<Vec<u8>>, Meta> = HashMap::new();
        for (comps, meta) in std::mem::take(&mut self.dirs) {
            last.insert(comps, meta);
        }
        let mut dirs: Vec<_> = last.into_iter().collect();
        // Deepest first, so a parent made read-only does not block its children.
        dirs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        for (comps, meta) in &dirs {
            let shown = display_name(&comps.join(&b'/'));
            let fd = self
                .open_dir(comps, false)
                .with_context(|| format!("{shown:?}"))?;
            self.set_attrs(fd.as_fd(), meta)
                .with_context(|| format!("{}/{shown}", self.dir.display()))?;
        }
        Ok(())
    }
}
