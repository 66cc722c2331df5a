//! `myst exec-linux`: run an unmodified Linux program from a root file system.

use crate::config::{AppConfig, ForkMode, MountType};
use anyhow::{bail, Context};
use myst_blockdev::trust::{TrustPolicy, TrustedKey};
use myst_fs::hostfs::IdMap;
use myst_fs::ramfs::RamFs;
use myst_fs::{FileSystem, FileType};
use myst_kernel::syscalls::mount::{open_ext2, ramfs_from_cpio};
use myst_kernel::{Config, MountSpec, RootFs};
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
--app-config-path reads a Mystikos config.json (MemorySize, ApplicationPath, \
ApplicationParameters, EnvironmentVariables, HostEnvironmentVariables, CurrentWorkingDirectory, \
Hostname, Mount, ...). Each Mount entry (Target, Type ext2|hostfs|ramfs) gets its source from \
--mount SRC=TARGET. With a config whose HostApplicationParameters is false (the default) and \
which sets ApplicationPath, the config's program and arguments are run and PROGRAM may be left \
out.\n\n\
Exit status: the program's; 128+N if signal N killed it; 1 if myst could not start it.\n\n\
Examples:\n  myst exec-linux rootfs /bin/hello\n  myst exec-linux --strict --pubkey pub.pem rootfs.img /bin/hello\n  myst exec-linux --strace rootfs.cpio /bin/ls -la /\n  myst exec-linux --app-config-path config.json --mount data.img=/data rootfs.img"
)]
pub struct Args {
    /// Memory budget of the program (bytes, or with k/m/g), e.g. 256m [default: config.json's
    /// MemorySize, else 64m].
    #[arg(long, value_name = "SIZE")]
    pub memory_size: Option<String>,
    /// Size of the program's main stack (bytes, or with k/m/g) [default: 8m; config.json's
    /// MainStackSize wins].
    #[arg(long, value_name = "SIZE")]
    pub main_stack_size: Option<String>,
    /// Default stack size of threads (reported as RLIMIT_STACK, which glibc sizes its thread
    /// stacks by) [config.json's ThreadStackSize wins].
    #[arg(long, value_name = "SIZE")]
    pub thread_stack_size: Option<String>,
    /// A Mystikos config.json (see the long help).
    #[arg(long, value_name = "FILE")]
    pub app_config_path: Option<PathBuf>,
    /// Source of the config.json Mount entry whose Target is TARGET: an ext2 image, a host
    /// directory or file (hostfs) or a CPIO archive (ramfs); repeatable.
    #[arg(long, value_name = "SRC=TARGET")]
    pub mount: Vec<String>,
    /// Show the program at most N CPUs (sched_getaffinity, /proc/cpuinfo, nproc)
    /// [config.json's MaxAffinityCPUs wins].
    #[arg(long, value_name = "N")]
    pub max_affinity_cpus: Option<u64>,
    /// brk never grows the heap (the C library then uses mmap) [config.json's NoBrk wins].
    #[arg(long)]
    pub nobrk: bool,
    /// Make the main stack executable [config.json's ExecStack wins].
    #[arg(long)]
    pub exec_stack: bool,
    /// Mystikos's SGX fork emulation (none, pseudo, pseudo_wait_for_exit_exec): accepted and
    /// without effect, myst always forks for real.
    #[arg(long, value_name = "MODE")]
    pub fork_mode: Option<String>,
    /// hostfs owners: host uid HOST is shown to the program as GUEST (and chown to GUEST stores
    /// HOST), e.g. 1000:0; comma-separated pairs.
    #[arg(long, value_name = "HOST:GUEST[,...]")]
    pub host_to_enc_uid_map: Option<String>,
    /// hostfs groups, as --host-to-enc-uid-map.
    #[arg(long, value_name = "HOST:GUEST[,...]")]
    pub host_to_enc_gid_map: Option<String>,
    /// Trust the root hash in FILE (64 hex digits, as `myst fssig --roothash` prints); repeatable.
    #[arg(long, value_name = "FILE")]
    pub roothash: Vec<PathBuf>,
    /// Trust images signed by this RSA public key (PEM); repeatable.
    #[arg(long, value_name = "PEM")]
    pub pubkey: Vec<PathBuf>,
    /// Refuse ext2 images (root, mounts, mount()) that cannot be verified, and guest hostfs mounts.
    #[arg(long)]
    pub strict: bool,
    /// true: unknown syscalls return ENOSYS (logged once); false: they stop the program
    /// [default: true; config.json's UnhandledSyscallEnosys wins].
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub unhandled_syscall_enosys: Option<bool>,
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
        required_unless_present = "app_config_path",
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

/// Parses a size option and rounds it up to 4096 (as Mystikos does).
fn size_option(s: &str, name: &str) -> anyhow::Result<u64> {
    let n = parse_size(s).with_context(|| name.to_string())?;
    if n == 0 {
        bail!("{name}: the size must be greater than 0");
    }
    n.checked_add(4095)
        .map(|x| x & !4095)
        .with_context(|| format!("{name}: size {s:?} is too large"))
}

/// Loads a CPIO archive into an in-memory file system. File contents stay
/// in the archive's buffer (zero copy) until the program writes them.
fn load_cpio(path: &Path, memory_size: u64, what: &str) -> anyhow::Result<RamFs> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read CPIO {what} {}", path.display()))?;
    ramfs_from_cpio(Arc::new(bytes), memory_size)
        .map_err(|e| anyhow::anyhow!("cannot mount CPIO {what} {}: {e}", path.display()))
}

fn open_root(
    path: &Path,
    policy: &TrustPolicy,
    memory_size: u64,
    ids: &IdMap,
) -> anyhow::Result<RootFs> {
    let md = std::fs::metadata(path)
        .with_context(|| format!("cannot open root file system {}", path.display()))?;
    let source = path.display().to_string();
    if md.is_dir() {
        let fs = myst_fs::hostfs::HostFs::new(path)
            .with_context(|| format!("cannot serve directory {}", path.display()))?
            .with_id_map(ids.clone());
        return Ok(RootFs {
            fs: Arc::new(fs),
            fstype: "hostfs",
            source,
            read_only: false,
        });
    }
    if is_cpio(path)? {
        let fs = load_cpio(path, memory_size, "root")?;
        return Ok(RootFs {
            fs: Arc::new(fs),
            fstype: "ramfs",
            source,
            read_only: false,
        });
    }
    // Writes go to a shared-memory store so forked guest processes see one
    // file system (the memfd is sparse: only written blocks cost memory).
    let m =
        open_ext2(path, policy, None, Some(memory_size)).context("cannot mount the ext2 root")?;
    if let Some(w) = m.warning {
        eprintln!("myst: warning: {w}");
    }
    Ok(RootFs {
        fs: m.fs,
        fstype: "ext2",
        source,
        read_only: false,
    })
}

fn is_cpio(path: &Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 6];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let _ = f.read(&mut magic);
    Ok(&magic == b"070701" || &magic == b"070702")
}

fn parse_roothash(f: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(f)
        .with_context(|| format!("reading root hash file {}", f.display()))?;
    crate::config::parse_hex32(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: expected 64 hexadecimal digits (a root hash, as `myst fssig --roothash` prints)",
            f.display()
        )
    })
}

/// The trust anchors of the command line (docs/FORMATS.md §6).
fn trust_policy(args: &Args) -> anyhow::Result<TrustPolicy> {
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
    Ok(policy)
}

/// Pairs the config's Mount entries with `--mount SRC=TGT` and opens each
/// source: every entry needs one, every TGT must be an entry's Target.
fn config_mounts(
    args: &Args,
    config: Option<&(PathBuf, AppConfig)>,
    policy: &TrustPolicy,
    memory_size: u64,
    ids: &IdMap,
) -> anyhow::Result<Vec<MountSpec>> {
    let mut sources: Vec<Option<PathBuf>> = vec![None; config.map_or(0, |c| c.1.mounts.len())];
    for m in &args.mount {
        let Some((src, tgt)) = m.split_once('=') else {
            bail!("--mount {m}: expected SRC=TARGET (a host path, then the Target of a config.json Mount entry)");
        };
        let Some((file, cfg)) = config else {
            bail!("--mount {m}: needs --app-config-path with a Mount entry whose Target is {tgt}");
        };
        let norm: String = tgt
            .split('/')
            .filter(|c| !c.is_empty())
            .flat_map(|c| ["/", c])
            .collect();
        let Some(i) = cfg.mounts.iter().position(|e| e.target == norm) else {
            bail!(
                "--mount {m}: {tgt} is not the Target of any Mount entry in {}",
                file.display()
            );
        };
        if sources[i].is_some() {
            bail!("--mount {m}: {tgt} has two sources");
        }
        if src.is_empty() {
            bail!("--mount {m}: the source is empty");
        }
        sources[i] = Some(PathBuf::from(src));
    }
    let Some((file, cfg)) = config else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (e, src) in cfg.mounts.iter().zip(sources) {
        let label = format!("{}: {}", file.display(), e.label());
        let Some(src) = src else {
            bail!("{label}: no source; give --mount SRC={}", e.target);
        };
        let source = src.display().to_string();
        let ctx = || format!("{label}: cannot mount {}", src.display());
        let fs: Arc<dyn FileSystem> = match e.fstype {
            MountType::Ext2 => {
                // Anchors in the entry are the only ones for this mount.
                let p = if e.public_key.is_some() || e.root_hash.is_some() {
                    TrustPolicy {
                        root_hashes: e.root_hash.into_iter().collect(),
                        public_keys: e.public_key.iter().cloned().collect(),
                        strict: true,
                    }
                } else {
                    policy.clone()
                };
                let writable = (!e.read_only).then_some(memory_size);
                let m = open_ext2(&src, &p, e.key.clone(), writable).with_context(ctx)?;
                if let Some(w) = m.warning {
                    eprintln!("myst: warning: {w}");
                }
                m.fs
            }
            MountType::Hostfs => {
                let fs = myst_fs::hostfs::HostFs::open(&src).with_context(ctx)?;
                Arc::new(fs.with_id_map(ids.clone()))
            }
            MountType::Ramfs => {
                if !is_cpio(&src).with_context(ctx)? {
                    bail!("{}: not a CPIO archive (a ramfs mount loads one)", ctx());
                }
                Arc::new(load_cpio(&src, memory_size, "mount")?)
            }
        };
        out.push(MountSpec {
            target: e.target.clone().into_bytes(),
            fs,
            fstype: e.fstype.name(),
            source,
            read_only: e.read_only,
        });
    }
    Ok(out)
}

/// Merges `/appenv.json` of the root file system (`{"Env": ["K=V", ...]}`)
/// into `env` as Mystikos does: a new name is appended; an existing PATH or
/// LD_LIBRARY_PATH is extended with `:V`; any other existing name keeps its
/// value. A malformed file is ignored with a warning (Mystikos ignores it).
fn merge_appenv(root: &RootFs, env: &mut Vec<Vec<u8>>) {
    let fs = &root.fs;
    let Ok(attr) = fs.lookup_attr(fs.root(), b"appenv.json") else {
        return;
    };
    let warn =
        |m: String| eprintln!("myst: warning: /appenv.json in the root file system: {m}; ignored");
    if attr.kind != FileType::Regular || attr.size > 1 << 20 {
        return warn("not a regular file of at most 1 MiB".into());
    }
    let mut data = vec![0u8; attr.size as usize];
    let mut off = 0;
    while off < data.len() {
        match fs.read(attr.ino, off as u64, &mut data[off..]) {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(e) => return warn(format!("cannot read it: {e}")),
        }
    }
    data.truncate(off);
    let text = match String::from_utf8(data)
        .map_err(|_| "not UTF-8".to_string())
        .and_then(|t| crate::config::strip_comments(&t))
    {
        Ok(t) => t,
        Err(e) => return warn(e),
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return warn(format!("not valid JSON: {e}")),
    };
    let Some(list) = v.get("Env").and_then(|e| e.as_array()) else {
        return warn("expected {\"Env\": [\"NAME=VALUE\", ...]}".into());
    };
    for item in list {
        let Some((name, value)) = item.as_str().and_then(|s| s.split_once('=')) else {
            warn(format!("Env entry {item} is not \"NAME=VALUE\""));
            continue;
        };
        let prefix = format!("{name}=").into_bytes();
        match env.iter_mut().find(|e| e.starts_with(&prefix)) {
            None => env.push(format!("{name}={value}").into_bytes()),
            Some(e) if name == "PATH" || name == "LD_LIBRARY_PATH" => {
                e.push(b':');
                e.extend_from_slice(value.as_bytes());
            }
            Some(_) => {}
        }
    }
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let config = match &args.app_config_path {
        Some(p) => {
            let c = AppConfig::load(p)?;
            for w in &c.warnings {
                eprintln!("myst: warning: {w}");
            }
            Some((p.clone(), c))
        }
        None => None,
    };
    let cfg = config.as_ref().map(|c| &c.1);
    if let Some(m) = &args.fork_mode {
        if ForkMode::parse(m).is_none() {
            bail!("--fork-mode {m:?}: expected none, pseudo or pseudo_wait_for_exit_exec");
        }
    }
    // Precedence (Mystikos): --memory-size beats MemorySize; for every other
    // setting the config's value beats the command line's.
    let memory_size = match &args.memory_size {
        Some(s) => size_option(s, "--memory-size")?,
        None => cfg.and_then(|c| c.memory_size).unwrap_or(64 << 20),
    };
    let stack_size = match cfg.and_then(|c| c.main_stack_size) {
        Some(n) => n,
        None => size_option(
            args.main_stack_size.as_deref().unwrap_or("8m"),
            "--main-stack-size",
        )?,
    };
    let thread_stack_size = match cfg.and_then(|c| c.thread_stack_size) {
        Some(n) => Some(n),
        None => args
            .thread_stack_size
            .as_deref()
            .map(|s| size_option(s, "--thread-stack-size"))
            .transpose()?,
    };
    if args.max_affinity_cpus == Some(0) {
        bail!("--max-affinity-cpus: expected at least 1");
    }
    let max_affinity_cpus = cfg
        .and_then(|c| c.max_affinity_cpus)
        .or(args.max_affinity_cpus);
    let no_brk = cfg.and_then(|c| c.no_brk).unwrap_or(args.nobrk);
    let exec_stack = cfg.and_then(|c| c.exec_stack).unwrap_or(args.exec_stack);
    let unhandled_enosys = cfg
        .and_then(|c| c.unhandled_syscall_enosys)
        .or(args.unhandled_syscall_enosys)
        .unwrap_or(true);
    // argv: the config's ApplicationPath and ApplicationParameters unless
    // HostApplicationParameters allows the command line's.
    let from_config = cfg.and_then(|c| {
        let path = c.application_path.clone()?;
        Some(
            std::iter::once(path)
                .chain(c.application_parameters.iter().cloned())
                .collect::<Vec<_>>(),
        )
    });
    let host_params = cfg
        .and_then(|c| c.host_application_parameters)
        .unwrap_or(false);
    let argv: Vec<String> = match (from_config, host_params) {
        (Some(conf), false) => {
            if !args.program.is_empty() && args.program != conf[..1] {
                eprintln!(
                    "myst: warning: {}: ApplicationPath is set and HostApplicationParameters is false: running {} with the config's ApplicationParameters; the command line's program and arguments are ignored",
                    args.app_config_path.as_deref().unwrap_or(Path::new("config")).display(),
                    conf[0]
                );
            }
            conf
        }
        (Some(conf), true) if args.program.is_empty() => conf,
        _ => args.program.clone(),
    };
    let Some(program) = argv.first().cloned() else {
        bail!("no program given (name one after ROOTFS, or set ApplicationPath in config.json)");
    };
    if !program.starts_with('/') {
        bail!("the program path must be absolute inside the root file system (e.g. /bin/hello), not {program:?}");
    }
    // Environment: none of the host's without a config (only MYST_TARGET);
    // with one, EnvironmentVariables, then the host's HostEnvironmentVariables.
    let mut envp: Vec<Vec<u8>> = Vec::new();
    if let Some((file, c)) = &config {
        envp.extend(
            c.environment_variables
                .iter()
                .map(|e| e.clone().into_bytes()),
        );
        if !c.host_environment_variables.is_empty() {
            use std::os::unix::ffi::OsStrExt;
            for (name, value) in std::env::vars_os() {
                let name = name.as_bytes();
                if c.host_environment_variables
                    .iter()
                    .any(|n| n.as_bytes() == name)
                {
                    if name == b"MYST_TARGET" {
                        bail!("{}: HostEnvironmentVariables: MYST_TARGET is set by myst and cannot come from the host", file.display());
                    }
                    let mut e = name.to_vec();
                    e.push(b'=');
                    e.extend_from_slice(value.as_bytes());
                    envp.push(e);
                }
            }
        }
    }
    envp.push(b"MYST_TARGET=linux".to_vec());
    let policy = trust_policy(&args)?;
    let parse_map = |opt: &Option<String>, name: &str| -> anyhow::Result<Vec<(u32, u32)>> {
        match opt {
            None => Ok(Vec::new()),
            Some(s) => IdMap::parse_pairs(s).map_err(|e| anyhow::anyhow!("{name}: {e}")),
        }
    };
    let ids = IdMap {
        uids: parse_map(&args.host_to_enc_uid_map, "--host-to-enc-uid-map")?,
        gids: parse_map(&args.host_to_enc_gid_map, "--host-to-enc-gid-map")?,
    };
    let root = open_root(&args.rootfs, &policy, memory_size, &ids)?;
    let mounts = config_mounts(&args, config.as_ref(), &policy, memory_size, &ids)?;
    merge_appenv(&root, &mut envp);
    let kconfig = Config {
        root,
        program: program.clone().into_bytes(),
        argv: argv.iter().map(|a| a.clone().into_bytes()).collect(),
        envp,
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
        unhandled_enosys,
        cwd: cfg
            .and_then(|c| c.current_working_directory.clone())
            .unwrap_or_else(|| "/".into())
            .into_bytes(),
        hostname: cfg.and_then(|c| c.hostname.clone()),
        rewrite_syscalls: args.rewrite_syscalls,
        thread_stack_size,
        max_affinity_cpus,
        no_brk,
        exec_stack,
        mounts,
        trust: policy,
        host_ids: ids,
    };
    Ok(myst_kernel::run(kconfig)?)
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
