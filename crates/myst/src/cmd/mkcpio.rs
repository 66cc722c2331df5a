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
use myst_formats::mode::{S_IFDIR, S_IFLNK, S_IFREG, S_IPERM};
use myst_formats::oci::{LayerStreams, MKind, MNode};

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

From a container image SOURCE, the merged layers are packed the same way.

Examples:
  myst mkcpio appdir rootfs.cpio
  myst mkcpio docker-archive:./app.tar app.cpio
  myst mkcpio --config-out config.json oci:./layout:app app.cpio",
    after_long_help = crate::image_source::HELP)]
pub struct Args {
    /// With an image SOURCE: write the image's Entrypoint/Cmd/Env/WorkingDir
    /// as a Mystikos config.json here (for `exec-linux --app-config-path`).
    #[arg(long, value_name = "FILE")]
    pub config_out: Option<PathBuf>,
    /// Directory to pack (may be `.`), or a container image: oci:PATH[:REF],
    /// oci-archive:PATH[:REF], docker-archive:PATH[:REF].
    #[arg(value_name = "SOURCE")]
    pub dir: PathBuf,
    /// Archive to write.
    pub out: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let sde = source_date_epoch()?;
    let image_ref = crate::image_source::parse(&args.dir);
    let root_md = match &image_ref {
        Some(_) => None,
        None => {
            if args.config_out.is_some() {
                bail!("--config-out needs a container image SOURCE (oci:, oci-archive: or docker-archive:)");
            }
            let md = fs::metadata(&args.dir).with_context(|| format!("{}", args.dir.display()))?;
            if !md.is_dir() {
                bail!("{}: not a directory", args.dir.display());
            }
            Some(md)
        }
    };
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
    let mut config = None;
    match (&image_ref, &root_md) {
        (Some(r), _) => {
            let opened = crate::image_source::open(r)?;
            if let Some(c) = &args.config_out {
                config = Some(crate::image_source::config_file(&opened, c, true)?);
            }
            p.pack_image(&opened)?;
            opened
                .image
                .reverify()
                .with_context(|| opened.image.source.clone())?;
        }
        (None, Some(md)) => p.pack_dir(&args.dir, b".".to_vec(), md)?,
        (None, None) => bail!("internal: no source"),
    }
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
    if let Some(c) = config {
        crate::image_source::persist_config(c)?;
    }
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

    fn image_meta(&mut self, node: &MNode, type_bits: u32, nlink: u32) -> Meta {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let mut mtime = u32::try_from(node.meta.mtime.max(0)).unwrap_or(u32::MAX);
        if let Some(sde) = self.sde {
            mtime = mtime.min(sde);
        }
        Meta {
            ino,
            mode: type_bits | (u32::from(node.meta.perm) & S_IPERM),
            uid: node.meta.uid,
            gid: node.meta.gid,
            nlink,
            mtime,
            ..Meta::default()
        }
    }

    /// Packs the merged tree of a container image: the same order and
    /// rules as a directory (depth first, sorted, hard links as copies,
    /// device nodes and FIFOs skipped); file data is read from the layers.
    fn pack_image(&mut self, o: &crate::image_source::Opened) -> anyhow::Result<()> {
        let mut streams = LayerStreams::new(&o.image.layers);
        let m = &o.merged;
        let src = &o.image.source;
        m.walk(|rel, id| -> anyhow::Result<()> {
            let node = &m.nodes[id];
            if rel.len() > MYSTIKOS_MAX_NAME {
                bail!(
                    "{src}: /{}: its archive name is {} bytes; names longer than {MYSTIKOS_MAX_NAME} bytes do not fit a Mystikos ramfs",
                    display_name(rel),
                    rel.len()
                );
            }
            match &node.kind {
                MKind::Dir(ch) => {
                    let subdirs = ch
                        .values()
                        .filter(|(n, _)| matches!(m.nodes[*n].kind, MKind::Dir(_)))
                        .count();
                    let nlink = u32::try_from(subdirs).unwrap_or(u32::MAX).saturating_add(2);
                    let meta = self.image_meta(node, S_IFDIR, nlink);
                    self.w
                        .append_data(rel, &meta, b"")
                        .with_context(|| self.write_err())?;
                }
                MKind::File {
                    layer,
                    offset,
                    size,
                } => {
                    if *size >= 1 << 32 {
                        bail!(
                            "{src}: /{}: file is {size} bytes; a CPIO (newc) entry holds less than 4 GiB",
                            display_name(rel)
                        );
                    }
                    let meta = self.image_meta(node, S_IFREG, 1);
                    let reader = crate::image_source::StreamReader {
                        streams: &mut streams,
                        layer: *layer,
                        pos: *offset,
                        end: offset + size,
                    };
                    self.w
                        .append_reader(rel, &meta, *size, reader)
                        .with_context(|| format!("{src} -> {}", self.out.display()))?;
                }
                MKind::Symlink(t) => {
                    let meta = self.image_meta(node, S_IFLNK, 1);
                    self.w
                        .append_data(rel, &meta, t)
                        .with_context(|| self.write_err())?;
                }
                MKind::CharDev(..) | MKind::BlockDev(..) | MKind::Fifo => {
                    let what = if matches!(node.kind, MKind::Fifo) {
                        "FIFO"
                    } else {
                        "device node"
                    };
                    eprintln!(
                        "myst: warning: skipping /{} of {src}: a {what} cannot go in a CPIO image",
                        display_name(rel)
                    );
                }
            }
            Ok(())
        })
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
