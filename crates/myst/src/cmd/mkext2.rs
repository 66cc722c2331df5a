//! `myst mkext2`: packs a directory or a container image into an ext2 image, appends its dm-verity
//! hash tree and an FSSIG trailer, optionally signed. No root, no external
//! tools; the same tree and options always give the same bytes.

use anyhow::{bail, Context};
use myst_formats::ext2::{self, Options, Payload, Progress, Tree};
use myst_formats::fssig::Fssig;
use myst_formats::luks::{self, LuksParams, LuksWriter};
use myst_formats::oci::LayerStreams;
use myst_formats::sign::{self, PrivateKey, PublicKey};
use std::io::IsTerminal;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Build an ext2 image with a dm-verity hash tree and an FSSIG trailer.
#[derive(clap::Args)]
#[command(
    long_about = "Build an ext2 image with a dm-verity hash tree and an FSSIG trailer.\n\n\
The image is [ext2][verity superblock + hash tree][FSSIG]. Its size is the\n\
tree's apparent size rounded up to 1 MiB plus 50%, at least 8 MiB (as\n\
Mystikos), grown if needed so the tree fits with room for writes at run\n\
time; --size can only raise it. Salt and UUIDs are derived from the tree, so\n\
the same tree gives the same image and root hash. Times are clamped to\n\
SOURCE_DATE_EPOCH when it is set.\n\n\
Examples:\n  myst mkext2 appdir rootfs.img\n  myst mkext2 --sign=pub.pem:priv.pem appdir rootfs.img\n  myst mkext2 --config-out config.json oci:./layout:app app.img\n  myst mkext2 docker-archive:./app.tar app.img\n  myst fssig --roothash rootfs.img",
    after_long_help = crate::image_source::HELP
)]
pub struct Args {
    /// Overwrite IMG if it exists.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Minimum size of the file system, in bytes or with a k, m or g suffix
    /// (it is never made smaller than the tree needs).
    #[arg(long, value_name = "N[k|m|g]", value_parser = parse_size)]
    pub size: Option<u64>,
    /// File-system block size.
    #[arg(long, value_name = "1024|2048|4096", default_value_t = 4096, value_parser = parse_block_size)]
    pub block_size: u64,
    /// Sign the root hash: PUB:PRIV (PEM files, as Mystikos) or only PRIV
    /// (the public key is derived from it).
    #[arg(long, short = 's', value_name = "PUB:PRIV|PRIV")]
    pub sign: Option<String>,
    /// Encrypt the file system (LUKS1, aes-xts-plain64) with the 64 raw
    /// bytes of KEYFILE as the volume key. The verity tree and the signature
    /// then cover the ciphertext. Such an image can be mounted by a guest
    /// with the key; it cannot be the root file system.
    #[arg(long, short = 'e', value_name = "KEYFILE")]
    pub encrypt: Option<PathBuf>,
    /// With --encrypt: add a LUKS key slot opened by this passphrase
    /// (at least 14 characters).
    #[arg(long, short = 'p', value_name = "P")]
    pub passphrase: Option<String>,
    /// Print what is done.
    #[arg(long, short = 't')]
    pub trace: bool,
    /// With an image SOURCE: write the image's Entrypoint/Cmd/Env/WorkingDir
    /// as a Mystikos config.json here (for `exec-linux --app-config-path`).
    #[arg(long, value_name = "FILE")]
    pub config_out: Option<PathBuf>,
    /// Directory to pack, or a container image: oci:PATH[:REF],
    /// oci-archive:PATH[:REF], docker-archive:PATH[:REF].
    #[arg(value_name = "SOURCE")]
    pub dir: PathBuf,
    /// Image to write.
    pub img: PathBuf,
}

fn parse_block_size(s: &str) -> Result<u64, String> {
    match s {
        "1024" | "1k" => Ok(1024),
        "2048" | "2k" => Ok(2048),
        "4096" | "4k" => Ok(4096),
        _ => Err(format!("{s:?}: use 1024, 2048 or 4096")),
    }
}

/// Parses `N`, `Nk`, `Nm`, `Ng` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return Err(format!("bad size suffix in {s:?} (use k, m or g)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("bad size {s:?}: expected a number with an optional k, m or g"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// The keys of `--sign`.
struct Keys {
    private: PrivateKey,
    public: PublicKey,
}

fn read_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read key {}", path.display()))
}

fn load_keys(spec: &str) -> anyhow::Result<Keys> {
    // A path that exists as given is a private key, even with a ':' in it.
    let (pub_path, priv_path) = match spec.split_once(':') {
        Some((p, k)) if !Path::new(spec).exists() => {
            if p.is_empty() || k.is_empty() {
                bail!("malformed --sign {spec:?}: expected PUB:PRIV or PRIV");
            }
            (Some(PathBuf::from(p)), PathBuf::from(k))
        }
        _ => (None, PathBuf::from(spec)),
    };
    let private = PrivateKey::from_pem(&read_key_file(&priv_path)?)
        .with_context(|| format!("private key {}", priv_path.display()))?;
    let public = match &pub_path {
        Some(p) => {
            let public = PublicKey::from_pem(&read_key_file(p)?)
                .with_context(|| format!("public key {}", p.display()))?;
            if private.public_key() != public {
                bail!(
                    "public key {} does not match private key {}",
                    p.display(),
                    priv_path.display()
                );
            }
            public
        }
        None => private.public_key(),
    };
    Ok(Keys { private, public })
}

/// A progress bar on the terminal.
struct Bar {
    bar: indicatif::ProgressBar,
    files: AtomicU64,
    total_files: AtomicU64,
}

impl Progress for Bar {
    fn start(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.bar.set_length(bytes);
    }
    fn advance(&self, files: u64, bytes: u64) {
        self.bar.inc(bytes);
        if files > 0 {
            let n = self.files.fetch_add(files, Ordering::Relaxed) + files;
            let total = self.total_files.load(Ordering::Relaxed);
            self.bar.set_message(format!("{n}/{total} files"));
        }
    }
}

fn progress_bar(files: u64, bytes: u64) -> Option<Bar> {
    let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if !terminal || (files < 2000 && bytes < (64 << 20)) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(bytes);
    let style = indicatif::ProgressStyle::with_template(
        "{elapsed:>4} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    )
    .ok()?
    .progress_chars("=> ");
    bar.set_style(style);
    Some(Bar {
        bar,
        files: AtomicU64::new(0),
        total_files: AtomicU64::new(files),
    })
}

/// Scans the tree, with a spinner on a terminal (large trees take seconds).
fn scan(dir: &Path) -> anyhow::Result<Tree> {
    let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if !terminal {
        return Ok(Tree::from_dir(dir)?);
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("scanning");
    let mut last = 0u64;
    let tree = Tree::from_dir_with_progress(dir, &mut |n| {
        if n >= last + 1000 {
            last = n;
            spinner.set_message(format!("scanning: {n} entries"));
            spinner.tick();
        }
    });
    spinner.finish_and_clear();
    Ok(tree?)
}

fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        _ => Ok(None),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads the 64-byte volume key and builds the LUKS1 header writer.
fn luks_writer(keyfile: &Path, passphrase: Option<&str>) -> anyhow::Result<LuksWriter> {
    let meta = std::fs::metadata(keyfile)
        .with_context(|| format!("cannot read key file {}", keyfile.display()))?;
    if !meta.is_file() || meta.len() != 64 {
        bail!(
            "key file {} must hold exactly 64 raw bytes (it has {}); make one with `head -c 64 /dev/urandom > {}`",
            keyfile.display(),
            meta.len(),
            keyfile.display()
        );
    }
    let bytes = std::fs::read(keyfile)
        .with_context(|| format!("cannot read key file {}", keyfile.display()))?;
    let key =
        luks::key_from_bytes(&bytes).with_context(|| format!("key file {}", keyfile.display()))?;
    let params = LuksParams {
        passphrase,
        ..Default::default()
    };
    LuksWriter::new(&key, &params).with_context(|| format!("key file {}", keyfile.display()))
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.passphrase.is_some() && args.encrypt.is_none() {
        bail!("--passphrase needs --encrypt");
    }
    if let Some(p) = &args.passphrase {
        if p.chars().count() < 14 {
            bail!("--passphrase must be at least 14 characters");
        }
    }
    let image_ref = crate::image_source::parse(&args.dir);
    if image_ref.is_none() {
        if args.config_out.is_some() {
            bail!("--config-out needs a container image SOURCE (oci:, oci-archive: or docker-archive:)");
        }
        let md = std::fs::metadata(&args.dir)
            .with_context(|| format!("cannot read directory {}", args.dir.display()))?;
        if !md.is_dir() {
            bail!("{} is not a directory", args.dir.display());
        }
    }
    if !args.force && std::fs::symlink_metadata(&args.img).is_ok() {
        bail!(
            "{} already exists: use --force to overwrite it",
            args.img.display()
        );
    }
    let luks = match &args.encrypt {
        Some(keyfile) => Some(luks_writer(keyfile, args.passphrase.as_deref())?),
        None => None,
    };
    let keys = match &args.sign {
        Some(spec) => Some(load_keys(spec)?),
        None => None,
    };
    let opts = Options {
        block_size: args.block_size,
        min_size: args.size.unwrap_or(0),
        source_date_epoch: source_date_epoch()?,
        threads: 0,
        direct_io: true,
    };

    let opened = match &image_ref {
        Some(r) => Some(crate::image_source::open(r)?),
        None => None,
    };
    let config = match (&opened, &args.config_out) {
        (Some(o), Some(path)) => Some(crate::image_source::config_file(o, path, args.force)?),
        _ => None,
    };
    let tree = match &opened {
        Some(o) => o.merged.to_ext2(),
        None => scan(&args.dir)?,
    };
    let (files, bytes) = count(&tree);
    if args.trace {
        println!(
            "mkext2: {}: {} nodes, {files} files, {bytes} bytes",
            args.dir.display(),
            tree.nodes.len()
        );
    }
    let bar = progress_bar(files, bytes);

    let parent = match args.img.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = args
        .img
        .file_name()
        .with_context(|| format!("{} is not a file name", args.img.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(&parent)
        .with_context(|| format!("cannot create a file in {}", parent.display()))?;
    // Plain image. With --encrypt, the header is the LUKS1 header (a
    // multiple of 4096 bytes) and the transform encrypts each payload
    // buffer in place at its byte offset (XTS sector = offset / 512); the
    // verity tree then covers header + ciphertext.
    let encrypt = |buf: &mut [u8], off: u64| {
        if let Some(l) = &luks {
            // The builder hands over whole blocks at block offsets, so the
            // only error (a length not a multiple of 512) cannot happen.
            let r = l.encrypt_payload(buf, off);
            debug_assert!(r.is_ok(), "XTS over a partial sector");
        }
    };
    let payload = match &luks {
        Some(l) => Payload {
            header: &l.header,
            transform: Some(&encrypt),
        },
        None => Payload::default(),
    };
    let image = match &opened {
        Some(o) => {
            let mut streams = LayerStreams::new(&o.image.layers);
            let r = ext2::build_streamed(
                &tree,
                tmp.as_file(),
                tmp.path(),
                &opts,
                &payload,
                bar.as_ref().map(|b| b as &dyn Progress),
                &mut streams,
            );
            if args.trace {
                println!("mkext2: compressed layer restarts: {}", streams.restarts);
            }
            r
        }
        None => ext2::build(
            &tree,
            tmp.as_file(),
            tmp.path(),
            &opts,
            &payload,
            bar.as_ref().map(|b| b as &dyn Progress),
        ),
    };
    // Clear the bar before any error message.
    if let Some(b) = &bar {
        b.bar.finish_and_clear();
    }
    let image = image?;
    if let Some(o) = &opened {
        o.image.reverify().with_context(|| o.image.source.clone())?;
    }

    let fssig = match &keys {
        Some(k) => {
            let s = sign::sign_and_verify(&k.private, &k.public, &image.root_hash)?;
            Fssig {
                hash_offset: image.hash_offset,
                root_hash: image.root_hash,
                signer: s.signer,
                signature: s.signature,
            }
        }
        None => Fssig {
            hash_offset: image.hash_offset,
            root_hash: image.root_hash,
            signer: [0; 32],
            signature: Vec::new(),
        },
    };
    tmp.as_file()
        .write_all_at(&fssig.to_bytes(), image.end)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", tmp.path().display()))?;
    if args.trace {
        let g = &image.geometry;
        println!(
            "mkext2: ext2: {} blocks of {} bytes, {} groups, {} inodes ({} used), {} blocks used",
            g.blocks_count,
            g.block_size,
            g.groups,
            g.inodes_count(),
            image.used_inodes,
            image.used_blocks
        );
        println!("hashoffset={}", image.hash_offset);
        println!("salt={}", hex(&image.salt));
        println!("roothash={}", hex(&image.root_hash));
        println!("signer={}", hex(&fssig.signer));
    }
    if args.force {
        tmp.persist(&args.img)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", args.img.display()))?;
    } else {
        tmp.persist_noclobber(&args.img)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", args.img.display()))?;
    }
    if let Some(c) = config {
        crate::image_source::persist_config(c)?;
    }
    Ok(0)
}

/// Regular files and their bytes, each inode once.
fn count(tree: &Tree) -> (u64, u64) {
    tree.nodes
        .iter()
        .filter_map(|n| match &n.kind {
            ext2::NodeKind::File(d) => Some(d.size()),
            _ => None,
        })
        .fold((0, 0), |(f, b), s| (f + 1, b + s))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("8k"), Ok(8192));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("1x").is_err());
        assert!(parse_size("m").is_err());
        assert!(parse_size("99999999999999g").is_err());
    }
}
