//! `myst cat`: prints one file of an ext2 image, read through the storage
//! stack, following symlinks inside the image.

use super::extract::{open_fs, Source};
use anyhow::{bail, Context};
use myst_fs::{FileSystem, FileType, Ino};
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;

/// Print one file of an ext2 image, read through the verifying storage stack.
#[derive(clap::Args)]
#[command(
    long_about = "Print one file of an ext2 image, read through the verifying storage stack.\n\n\
Symlinks are followed inside the image. With --roothash or --pubkey every block\n\
is verified and a modified block fails with an I/O error; without them the\n\
image is read unverified and a warning says so.\n\n\
Example: myst cat --roothash=roothash rootfs.img /etc/hostname"
)]
pub struct Args {
    /// Key file (64 raw bytes) of an encrypted image.
    #[arg(long, value_name = "KEYFILE")]
    pub key: Option<PathBuf>,
    /// Trust this root hash: a file with 64 hex digits, as `myst fssig --roothash` prints (repeatable).
    #[arg(long, value_name = "FILE")]
    pub roothash: Vec<PathBuf>,
    /// Trust images signed by this RSA public key, PEM (repeatable).
    #[arg(long, value_name = "PEM")]
    pub pubkey: Vec<PathBuf>,
    /// Image to read.
    pub img: PathBuf,
    /// Absolute path inside the image.
    pub path: String,
}

/// Resolves `path` from the root, following symlinks (at most 40).
pub fn resolve(fs: &dyn FileSystem, path: &[u8]) -> anyhow::Result<Ino> {
    let show = String::from_utf8_lossy(path).into_owned();
    let mut comps: VecDeque<Vec<u8>> = path.split(|&c| c == b'/').map(<[u8]>::to_vec).collect();
    let mut cur = fs.root();
    let mut follows = 0;
    while let Some(c) = comps.pop_front() {
        if c.is_empty() || c == b"." {
            continue;
        }
        let ino = fs
            .lookup(cur, &c)
            .with_context(|| format!("{show}: looking up {:?}", String::from_utf8_lossy(&c)))?;
        let a = fs.getattr(ino).with_context(|| show.clone())?;
        if a.kind == FileType::Symlink {
            follows += 1;
            if follows > 40 {
                bail!("{show}: too many levels of symbolic links");
            }
            let t = fs.readlink(ino).with_context(|| show.clone())?;
            if t.first() == Some(&b'/') {
                cur = fs.root();
            }
            for part in t.split(|&c| c == b'/').rev() {
                comps.push_front(part.to_vec());
            }
        } else {
            if !comps.iter().all(|c| c.is_empty()) && a.kind != FileType::Directory {
                bail!(
                    "{show}: {:?} is not a directory",
                    String::from_utf8_lossy(&c)
                );
            }
            cur = ino;
        }
    }
    Ok(cur)
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let fs = open_fs(&Source {
        img: &args.img,
        key: args.key.as_deref(),
        roothash: &args.roothash,
        pubkey: &args.pubkey,
    })?;
    let ino = resolve(fs.as_ref(), args.path.as_bytes())?;
    let a = fs.getattr(ino).with_context(|| args.path.clone())?;
    match a.kind {
        FileType::Regular => {}
        FileType::Directory => bail!("{}: is a directory", args.path),
        _ => bail!("{}: not a regular file", args.path),
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < a.size {
        let n = fs
            .read(ino, off, &mut buf)
            .with_context(|| format!("{}: reading at byte {off}", args.path))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).context("writing to stdout")?;
        off += n as u64;
    }
    out.flush().context("writing to stdout")?;
    Ok(0)
}
