//! `myst exec-linux`: run an unmodified Linux program from a root file system.

use anyhow::{bail, Context};
use myst_blockdev::overlay::BlockStore;
use myst_blockdev::shared::SharedStore;
use myst_blockdev::trust::{evaluate, StackConfig, TrustPolicy, TrustedKey};
use myst_formats::cpio;
use myst_formats::fssig::Fssig;
use myst_fs::ext2::mount_image;
use myst_fs::ramfs::{Backing, ImportEntry, RamFs};
use myst_fs::FileType;
use myst_kernel::{Config, RootFs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Run a program from a root file system (CPIO file, ext2 image or directory).
#[derive(clap::Args)]
#[command(
    long_about = "Run an unmodified x86-64 Linux program from a root file system: a CPIO archive \
(loaded into memory), an ext2 image, or a directory (served from the host, no protection). \
Every system call of the program is caught and served by myst's kernel. Options after PROGRAM \
belong to the program.\n\n\
An ext2 image is verified block by block when a --pubkey signed it or its root hash is given \
with --roothash; otherwise it is checked against its own root hash (or read raw if it has no \
FSSIG trailer) with a warning, and --strict refuses it. Writes go to memory, never to the image.\n\n\
Exit status: the program's; 128+N if signal N killed it; 1 if myst could not start it.\n\n\
Examples:\n  myst exec-linux rootfs /bin/hello\n  myst exec-linux --strict --pubkey pub.pem rootfs.img /bin/hello\n  myst exec-linux --strace rootfs.cpio /bin/ls -la /"
)]
pub struct Args {
    /// Memory budget of the program (bytes, or with k/m/g), e.g. 256m.
    #[arg(long, default_value = "64m", value_name = "SIZE")]
    pub memory_size: String,
    /// Size of the program's main stack (bytes, or with k/m/g).
    #[arg(long, default_value = "8m", value_name = "SIZE")]
    pub main_stack_size: String,
    /// Trust the root hash in FILE (64 hex digits, as `myst fssig --roothash` prints); repeatable.
    #[arg(long, value_name = "FILE")]
    pub roothash: Vec<PathBuf>,
    /// Trust images signed by this RSA public key (PEM); repeatable.
    #[arg(long, value_name = "PEM")]
    pub pubkey: Vec<PathBuf>,
    /// Refuse an ext2 root file system that cannot be verified.
    #[arg(long)]
    pub strict: bool,
    /// true: unknown syscalls return ENOSYS (logged once); false: they stop the program.
    #[arg(long, default_value = "true", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub unhandled_syscall_enosys: bool,
    /// Print every syscall of the program, its arguments and result, on stderr.
    #[arg(long)]
    pub strace: bool,
    /// Print only these syscalls (names separated by ':', e.g. open:read:write); implies --strace.
    #[arg(long, value_name = "SYS_a:SYS_b")]
    pub strace_filter: Option<String>,
    /// true: after a syscall site has trapped once, rewrite it to enter myst
    /// directly (much faster); false: every syscall goes through SIGSYS.
    #[arg(long, default_value = "true", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub rewrite_syscalls: bool,
    /// Root file system: CPIO archive, ext2 image or directory.
    pub rootfs: PathBuf,
    /// Absolute path of the program inside the root file system, then its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "PROGRAM [ARGS]..."
    )]
    pub program: Vec<String>,
}

/// Parses `N`, `Nk`, `Nm`, `Ng` into bytes.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                _ => bail!("bad size {s:?}: use a number with an optional k, m or g suffix"),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.parse().with_context(|| {
        format!("bad size {s:?}: use a number with an optional k, m or g suffix")
    })?;
    n.checked_mul(mul)
        .with_context(|| format!("size {s:?} is too large"))
}

/// Loads a CPIO archive into an in-memory file system. File contents stay
/// in the archive's buffer (zero copy) until the program writes them.
fn load_cpio(path: &Path, memory_size: u64) -> anyhow::Result<RamFs> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read CPIO root {}", path.display()))?;
    let archive: Arc<Vec<u8>> = Arc::new(bytes);
    let base = archive.as_ptr() as usize;
    let mut list = Vec::new();
    for entry in cpio::entries(&archive) {
        let e = entry.with_context(|| format!("cannot mount CPIO root {}", path.display()))?;
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
    let fs = RamFs::new(0o755, memory_size);
    let backing: Backing = archive.clone();
    fs.import(&backing, list)
        .with_context(|| format!("cannot mount CPIO root {}", path.display()))?;
    Ok(fs)
}

fn open_root(path: &Path, args: &Args, memory_size: u64) -> anyhow::Result<RootFs> {
    let md = std::fs::metadata(path)
        .with_context(|| format!("cannot open root file system {}", path.display()))?;
    let source = path.display().to_string();
    if md.is_dir() {
        let fs = myst_fs::hostfs::HostFs::new(path)
            .with_context(|| format!("cannot serve directory {}", path.display()))?;
        return Ok(RootFs {
            fs: Arc::new(fs),
            fstype: "hostfs",
            source,
            read_only: false,
        });
    }
    let mut magic = [0u8; 6];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("cannot open root file system {}", path.display()))?;
        let _ = f.read(&mut magic);
    }
    if &magic == b"070701" || &magic == b"070702" {
        let fs = load_cpio(path, memory_size)?;
        return Ok(RootFs {
            fs: Arc::new(fs),
            fstype: "ramfs",
            source,
            read_only: false,
        });
    }
    open_ext2(path, args, memory_size, source)
}

fn parse_roothash(f: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(f)
        .with_context(|| format!("reading root hash file {}", f.display()))?;
    let t = text.trim();
    let bad = || {
        anyhow::anyhow!(
            "{}: expected 64 hexadecimal digits (a root hash, as `myst fssig --roothash` prints)",
            f.display()
        )
    };
    if t.len() != 64 || !t.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Mounts an ext2 image through the storage stack (docs/FORMATS.md §6):
/// verified by a trusted signature (--pubkey) or root hash (--roothash);
/// otherwise, like Mystikos, checked against its own FSSIG root hash with a
/// warning (that detects corruption, not a substituted image), or read raw
/// with a warning when it has no trailer. --strict refuses both. Writes go
/// to an in-memory overlay: the image file never changes.
fn open_ext2(path: &Path, args: &Args, memory_size: u64, source: String) -> anyhow::Result<RootFs> {
    let mut policy = TrustPolicy::default();
    for f in &args.roothash {
        policy.root_hashes.push(parse_roothash(f)?);
    }
    for f in &args.pubkey {
        let pem = std::fs::read_to_string(f)
            .with_context(|| format!("reading public key {}", f.display()))?;
        policy.public_keys.push(
            TrustedKey::from_pem(&pem).with_context(|| format!("public key {}", f.display()))?,
        );
    }
    policy.strict = args.strict;
    let own = Fssig::read_file(path).ok();
    let mut self_trusted = false;
    if !args.strict && !evaluate(own.as_ref(), &policy).is_verified() {
        if let Some(f) = &own {
            policy.root_hashes.push(f.root_hash);
            self_trusted = true;
        }
    }
    // Writes go to a shared-memory store so forked guest processes see one
    // file system (the memfd is sparse: only written blocks cost memory).
    let shared = SharedStore::new(myst_formats::verity::BLOCK_SIZE, memory_size)
        .map_err(|e| eprintln!("myst: warning: {e}; writes to the root are not shared across fork"))
        .ok();
    let config = StackConfig {
        overlay_budget: Some(memory_size),
        overlay_store: shared.map(|s| Arc::new(s) as Arc<dyn BlockStore>),
        ..Default::default()
    };
    let m = mount_image(path, &policy, &config).context("cannot mount the ext2 root")?;
    if self_trusted {
        eprintln!(
            "myst: warning: {}: neither signed by a trusted key (--pubkey) nor its root hash trusted (--roothash); checking its blocks against its own root hash (detects corruption, not a substituted image)",
            path.display()
        );
    } else if let Some(w) = m.image.warning(path) {
        eprintln!("myst: warning: {w}");
    }
    Ok(RootFs {
        fs: m.fs,
        fstype: "ext2",
        source,
        read_only: false,
    })
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let memory_size = parse_size(&args.memory_size).context("--memory-size")?;
    let stack_size = parse_size(&args.main_stack_size).context("--main-stack-size")?;
    let Some(program) = args.program.first().cloned() else {
        bail!("no program given");
    };
    if !program.starts_with('/') {
        bail!("the program path must be absolute inside the root file system (e.g. /bin/hello), not {program:?}");
    }
    let root = open_root(&args.rootfs, &args, memory_size)?;
    let config = Config {
        root,
        program: program.clone().into_bytes(),
        argv: args
            .program
            .iter()
            .map(|a| a.clone().into_bytes())
            .collect(),
        envp: vec![b"MYST_TARGET=linux".to_vec()],
        memory_size,
        stack_size,
        strace: args.strace,
        strace_filter: args
            .strace_filter
            .as_deref()
            .map(|f| {
                f.split(':')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim_start_matches("SYS_").to_string())
                    .collect()
            })
            .unwrap_or_default(),
        unhandled_enosys: args.unhandled_syscall_enosys,
        cwd: b"/".to_vec(),
        hostname: None,
        rewrite_syscalls: args.rewrite_syscalls,
    };
    Ok(myst_kernel::run(config)?)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
    }
}
