//! `myst mkcpio`: pack a directory tree into a newc archive for a ramfs root.
//!
//! The archive is reproducible: entries come depth first with each
//! directory's children sorted by name bytes (so parents precede children and
//! `.` comes first), inode numbers are counted from 1 in that order, device
//! numbers are 0, and a directory's link count is 2 plus its subdirectories.
//! Only the tree's contents and metadata (mode, uid, gid, mtime clamped to
//! SOURCE_DATE_EPOCH) reach the bytes. Hard links become full copies (nlink 1),
//! which every reader, Mystikos's included, understands.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use myst_formats::cpio::{display_name, Meta, Writer, MYSTIKOS_MAX_NAME, S_IFMT};

/// Files at least this large are copied into the archive by the kernel;
/// smaller ones go through the writer's buffer, which batches their headers
/// and data into few large writes.
const COPY_IN_KERNEL: u64 = 256 << 10;

/// Pack a directory tree into a CPIO (newc) archive for a ramfs root.
#[derive(clap::Args)]
#[command(long_about = "\
Pack a directory tree into a CPIO (newc) archive for a ramfs root.

The archive holds directories, regular files and symbolic links with their
mode, owner and mtime; hard links are stored as full copies. Device nodes,
FIFOs and sockets are skipped with a warning. Entries are sorted by name, so
the same tree always gives the same bytes; set SOURCE_DATE_EPOCH to clamp
mtimes. Files of 4 GiB or more and names longer than 255 bytes are errors.
The archive is written to a temporary file next to OUT and renamed into place,
so a failed run leaves no partial archive.

Example: myst mkcpio appdir rootfs.cpio")]
pub struct Args {
    /// Directory to pack (may be `.`).
    pub dir: PathBuf,
    /// Archive to write.
    pub out: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let sde = source_date_epoch()?;
    let root_md = fs::metadata(&args.dir).with_context(|| format!("{}", args.dir.display()))?;
    if !root_md.is_dir() {
        bail!("{}: not a directory", args.dir.display());
    }
    if args.out.is_dir() {
        bail!(
            "{}: is a directory, expected an archive file name",
            args.out.display()
        );
    }
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base = args
        .out
        .file_name()
        .with_context(|| format!("{}: not a file name", args.out.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", base.to_string_lossy()))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(parent)
        .with_context(|| format!("{}: cannot create a temporary file", parent.display()))?;

    // Never pack the archive into itself when OUT lies inside DIR.
    let mut skip = vec![id(&tmp.as_file().metadata()?)];
    if let Ok(md) = fs::metadata(&args.out) {
        skip.push(id(&md));
    }

    let mut p = Packer {
        w: Writer::new(tmp.as_file()),
        next_ino: 1,
        sde,
        skip,
        out: &args.out,
    };
    p.pack_dir(&args.dir, b".".to_vec(), &root_md)?;
    let mut file =
        p.w.finish()
            .with_context(|| format!("{}", args.out.display()))?;
    file.flush()?;
    tmp.persist(&args.out).with_context(|| {
        format!(
            "{}: cannot rename the temporary archive into place",
            args.out.display()
        )
    })?;
    Ok(0)
}

/// SOURCE_DATE_EPOCH, when set: mtimes later than it are clamped to it.
fn source_date_epoch() -> anyhow::Result<Option<u32>> {
    match std::env::var_os("SOURCE_DATE_EPOCH") {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            let s = v.to_string_lossy();
            let n: u64 = s
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))?;
            Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
        }
    }
}

fn id(md: &Metadata) -> (u64, u64) {
    (md.dev(), md.ino())
}

struct Packer<'a> {
    w: Writer<&'a File>,
    next_ino: u32,
    sde: Option<u32>,
    skip: Vec<(u64, u64)>,
    out: &'a Path,
}

impl Packer<'_> {
    fn meta(&mut self, md: &Metadata, nlink: u32) -> Meta {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        // newc holds unsigned 32-bit times: before 1970 becomes 0, after 2106 the maximum.
        let mut mtime = u32::try_from(md.mtime().max(0)).unwrap_or(u32::MAX);
        if let Some(sde) = self.sde {
            mtime = mtime.min(sde);
        }
        Meta {
            ino,
            mode: md.mode() & (S_IFMT | myst_formats::mode::S_IPERM),
            uid: md.uid(),
            gid: md.gid(),
            nlink,
            mtime,
            ..Meta::default()
        }
    }

    fn write_err(&self) -> String {
        format!("{}", self.out.display())
    }

    /// Lists a directory: (name, metadata) sorted by name bytes.
    fn list(&self, dir: &Path) -> anyhow::Result<Vec<(Vec<u8>, Metadata)>> {
        let mut kids = Vec::new();
        for e in fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
            let e = e.with_context(|| format!("{}", dir.display()))?;
            let md = e
                .metadata()
                .with_context(|| format!("{}", e.path().display()))?;
            if self.skip.contains(&id(&md)) {
                continue;
            }
            kids.push((e.file_name().into_vec(), md));
        }
        kids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(kids)
    }

    fn pack_dir(&mut self, path: &Path, rel: Vec<u8>, md: &Metadata) -> anyhow::Result<()> {
        let kids = self.list(path)?;
        let subdirs = kids.iter().filter(|(_, m)| m.is_dir()).count();
        let nlink = u32::try_from(subdirs).unwrap_or(u32::MAX).saturating_add(2);
        let meta = self.meta(md, nlink);
        self.w
            .append_data(&rel, &meta, b"")
            .with_context(|| self.write_err())?;
        for (name, md) in kids {
            let child = path.join(OsStr::from_bytes(&name));
            let rel = if rel == b"." {
                name
            } else {
                [&rel[..], b"/", &name[..]].concat()
            };
            if rel.len() > MYSTIKOS_MAX_NAME {
                bail!(
                    "{}: its archive name is {} bytes; names longer than {MYSTIKOS_MAX_NAME} bytes do not fit a Mystikos ramfs",
                    child.display(),
                    rel.len()
                );
            }
            let ft = md.file_type();
            if ft.is_dir() {
                self.pack_dir(&child, rel, &md)?;
            } else if ft.is_file() {
                self.pack_file(&child, &rel, &md)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&child)
                    .with_context(|| format!("{}", child.display()))?
                    .into_os_string()
                    .into_vec();
                let meta = self.meta(&md, 1);
                self.w
                    .append_data(&rel, &meta, &target)
                    .with_context(|| self.write_err())?;
            } else {
                use std::os::unix::fs::FileTypeExt;
                let what = if ft.is_block_device() || ft.is_char_device() {
                    "device node"
                } else if ft.is_fifo() {
                    "FIFO"
                } else {
                    "socket"
                };
                eprintln!(
                    "myst: warning: skipping {} ({}): a {what} cannot go in a CPIO image",
                    child.display(),
                    display_name(&rel)
                );
            }
        }
        Ok(())
    }

    fn pack_file(&mut self, path: &Path, rel: &[u8], md: &Metadata) -> anyhow::Result<()> {
        let size = md.len();
        if size >= 1 << 32 {
            bail!(
                "{}: file is {size} bytes; a CPIO (newc) entry holds less than 4 GiB",
                path.display()
            );
        }
        let f = File::open(path).with_context(|| format!("{}", path.display()))?;
        let meta = self.meta(md, 1);
        let r = if size >= COPY_IN_KERNEL {
            // std::io::copy between files uses copy_file_range: no copy
            // through user space.
            self.w.append_with(rel, &meta, size, |out| {
                std::io::copy(&mut (&f).take(size), out)
            })
        } else {
            self.w.append_reader(rel, &meta, size, &f)
        };
        r.with_context(|| format!("{} -> {}", path.display(), self.out.display()))
    }
}
