//! `myst extract`: copies the whole tree of an ext2 image out through the
//! storage stack (verity and decryption when trust anchors or a key are
//! given), restoring types, modes, owners (as root), times, symlinks, hard
//! links and device nodes (as root).

use anyhow::{bail, Context};
use myst_blockdev::trust::{StackConfig, TrustPolicy, TrustedKey};
use myst_fs::ext2::mount_image;
use myst_fs::{Attr, FileSystem, FileType, Ino};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Extract the whole tree of an ext2 image through the verifying storage stack.
#[derive(clap::Args)]
#[command(
    long_about = "Extract the whole tree of an ext2 image through the verifying storage stack.\n\n\
Every block is checked against the trusted root hash (--roothash) or the\n\
image's signature (--pubkey); a modified block fails with an I/O error instead\n\
of producing wrong data. Without either, the image is read unverified and a\n\
warning says so. Owners and device nodes are restored only when run as root.\n\n\
Example: myst extract --pubkey=pub.pem rootfs.img outdir"
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
    /// Directory to extract into (created if missing; existing entries are not overwritten).
    pub dir: PathBuf,
}

/// Trust anchors and key shared by `extract` and `cat`.
pub struct Source<'a> {
    /// The image.
    pub img: &'a Path,
    /// Key file.
    pub key: Option<&'a Path>,
    /// Root-hash files.
    pub roothash: &'a [PathBuf],
    /// Public-key files.
    pub pubkey: &'a [PathBuf],
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    if t.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Opens and mounts an image read-only under the given trust anchors. With
/// anchors the image must verify; without, it is read raw after one
/// warning line on stderr.
pub fn open_fs(src: &Source) -> anyhow::Result<Arc<myst_fs::ext2::Ext2Fs>> {
    let mut policy = TrustPolicy::default();
    for f in src.roothash {
        let text =
            std::fs::read(f).with_context(|| format!("reading root hash file {}", f.display()))?;
        let h = parse_hex32(&String::from_utf8_lossy(&text)).with_context(|| {
            format!(
                "{}: expected 64 hexadecimal digits (a root hash)",
                f.display()
            )
        })?;
        policy.root_hashes.push(h);
    }
    for f in src.pubkey {
        let pem = std::fs::read_to_string(f)
            .with_context(|| format!("reading public key {}", f.display()))?;
        policy
            .public_keys
            .push(TrustedKey::from_pem(&pem).with_context(|| f.display().to_string())?);
    }
    // Anchors given: the user asked for verification, so it must succeed.
    policy.strict = !policy.root_hashes.is_empty() || !policy.public_keys.is_empty();
    let mut config = StackConfig::default();
    if let Some(k) = src.key {
        let key = std::fs::read(k).with_context(|| format!("reading key file {}", k.display()))?;
        if key.len() != 64 {
            bail!(
                "{}: a key file holds 64 raw bytes, this one has {}",
                k.display(),
                key.len()
            );
        }
        config.key = Some(key);
    }
    let m =
        mount_image(src.img, &policy, &config).with_context(|| src.img.display().to_string())?;
    if let Some(w) = m.image.warning(src.img) {
        eprintln!("myst: warning: {w}");
    }
    Ok(m.fs)
}

/// Checks a directory entry name from the image before it becomes a host path.
fn safe_name(name: &[u8], at: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        bail!(
            "invalid file name {:?} in {at}",
            String::from_utf8_lossy(name)
        );
    }
    Ok(())
}

fn ts(t: myst_fs::Timespec) -> rustix::fs::Timespec {
    rustix::fs::Timespec {
        tv_sec: t.sec,
        tv_nsec: i64::from(t.nsec.min(999_999_999)),
    }
}

struct Extractor<'a> {
    fs: &'a dyn FileSystem,
    root: bool,
    /// Inodes with several links already extracted, by path.
    links: HashMap<Ino, PathBuf>,
    skipped_devices: usize,
}

impl Extractor<'_> {
    fn owner_mode_times(&self, path: &Path, a: &Attr) -> anyhow::Result<()> {
        let ctx = || path.display().to_string();
        if self.root {
            std::os::unix::fs::lchown(path, Some(a.uid), Some(a.gid)).with_context(ctx)?;
        }
        if a.kind != FileType::Symlink {
            // After chown, which clears set-id bits.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(a.perm & 0o7777))
                .with_context(ctx)?;
        }
        let times = rustix::fs::Timestamps {
            last_access: ts(a.atime),
            last_modification: ts(a.mtime),
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)
        .with_context(ctx)
    }

    fn file(&mut self, ino: Ino, a: &Attr, path: &Path, img_path: &str) -> anyhow::Result<()> {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| path.display().to_string())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < a.size {
            let n = self
                .fs
                .read(ino, off, &mut buf)
                .with_context(|| format!("reading {img_path} at byte {off}"))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .with_context(|| path.display().to_string())?;
            off += n as u64;
        }
        drop(out);
        self.owner_mode_times(path, a)
    }

    fn special(&mut self, a: &Attr, path: &Path) -> anyhow::Result<bool> {
        use rustix::fs::FileType as T;
        let (t, dev) = match a.kind {
            FileType::Fifo => (T::Fifo, 0),
            FileType::Socket => (T::Socket, 0),
            FileType::CharDev | FileType::BlockDev if !self.root => {
                self.skipped_devices += 1;
                return Ok(false);
            }
            FileType::CharDev => (T::CharacterDevice, a.rdev),
            _ => (T::BlockDevice, a.rdev),
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            t,
            rustix::fs::Mode::from_raw_mode(0o600),
            dev,
        )
        .map_err(std::io::Error::from)
        .with_context(|| path.display().to_string())?;
        self.owner_mode_times(path, a)?;
        Ok(true)
    }

    fn run(&mut self, dest: &Path) -> anyhow::Result<usize> {
        let fs = self.fs;
        let mut count = 0usize;
        let mut seen_dirs = HashSet::new();
        // Directories get their modes and times after their contents.
        let mut dirs_done: Vec<(PathBuf, Attr)> = Vec::new();
        let mut stack: Vec<(Ino, PathBuf, String)> =
            vec![(fs.root(), dest.to_path_buf(), String::new())];
        while let Some((dir, host, img_path)) = stack.pop() {
            if !seen_dirs.insert(dir) {
                bail!("directory cycle at {}/ (corrupt image)", img_path);
            }
            let entries = fs
                .readdir(dir)
                .with_context(|| format!("reading directory {img_path}/"))?;
            for e in entries {
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                safe_name(&e.name, &format!("{img_path}/"))?;
                let ip = format!("{img_path}/{}", String::from_utf8_lossy(&e.name));
                let hp = host.join(OsStr::from_bytes(&e.name));
                let a = fs.getattr(e.ino).with_context(|| ip.clone())?;
                if a.kind != FileType::Directory && a.nlink > 1 {
                    if let Some(first) = self.links.get(&e.ino) {
                        std::fs::hard_link(first, &hp).with_context(|| hp.display().to_string())?;
                        count += 1;
                        continue;
                    }
                    self.links.insert(e.ino, hp.clone());
                }
                match a.kind {
                    FileType::Directory => {
                        std::fs::create_dir(&hp).with_context(|| hp.display().to_string())?;
                        std::fs::set_permissions(&hp, std::fs::Permissions::from_mode(0o700))?;
                        dirs_done.push((hp.clone(), a));
                        stack.push((e.ino, hp, ip));
                    }
                    FileType::Regular => self.file(e.ino, &a, &hp, &ip)?,
                    FileType::Symlink => {
                        let t = fs
                            .readlink(e.ino)
                            .with_context(|| format!("reading symlink {ip}"))?;
                        std::os::unix::fs::symlink(OsStr::from_bytes(&t), &hp)
                            .with_context(|| hp.display().to_string())?;
                        self.owner_mode_times(&hp, &a)?;
                    }
                    _ => {
                        if !self.special(&a, &hp)? {
                            continue;
                        }
                    }
                }
                count += 1;
            }
        }
        for (p, a) in dirs_done.iter().rev() {
            self.owner_mode_times(p, a)?;
        }
        Ok(count)
    }
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let fs = open_fs(&Source {
        img: &args.img,
        key: args.key.as_deref(),
        roothash: &args.roothash,
        pubkey: &args.pubkey,
    })?;
    let created = match std::fs::create_dir(&args.dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && args.dir.is_dir() => false,
        Err(e) => return Err(e).with_context(|| args.dir.display().to_string()),
    };
    let mut x = Extractor {
        fs: fs.as_ref(),
        root: rustix::process::geteuid().is_root(),
        links: HashMap::new(),
        skipped_devices: 0,
    };
    x.run(&args.dir)?;
    if created {
        let a = fs.getattr(fs.root()).context("root directory")?;
        x.owner_mode_times(&args.dir, &a)?;
    }
    if x.skipped_devices > 0 {
        eprintln!(
            "myst: warning: skipped {} device node(s): creating them needs root",
            x.skipped_devices
        );
    }
    Ok(0)
}
