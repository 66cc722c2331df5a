//! Helpers for the storage CLI tests: verified images built the Mystikos
//! way (mke2fs -d, veritysetup format, FSSIG trailer), openssl signatures,
//! and a metadata-aware tree comparison.
#![allow(dead_code)]

use myst_formats::fssig::Fssig;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// True when every tool is installed; otherwise says why the test skips.
pub fn have(tools: &[&str]) -> bool {
    for t in tools {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "command -v {t} || test -x /usr/sbin/{t} || test -x /sbin/{t}"
            ))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("skipping: {t} is not installed");
            return false;
        }
    }
    true
}

/// Runs a command and collects its output, retrying while the executable
/// is busy (ETXTBSY: something on this shared machine has it open for writing).
pub fn spawn_output(cmd: &mut Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            r => return r.unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
        }
    }
    panic!("{cmd:?}: executable stayed busy")
}

/// Runs a command and returns stdout; panics with stderr on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = spawn_output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The myst binary.
pub fn myst() -> Command {
    Command::new(env!("CARGO_BIN_EXE_myst"))
}

/// Parses hex.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A verified image built for a test.
pub struct Built {
    /// The image file.
    pub img: PathBuf,
    /// Root hash.
    pub root: [u8; 32],
    /// Where the ext2 part ends.
    pub hash_offset: u64,
    /// A file holding the root hash in `myst fssig --roothash` form.
    pub roothash_file: PathBuf,
}

/// `mke2fs -d tree` into `size` bytes, `veritysetup format`, then an FSSIG
/// trailer, signed with `key` (an RSA private key PEM) when given.
pub fn build_image(
    tree: &Path,
    img: &Path,
    size: u64,
    mke2fs_opts: &[&str],
    key: Option<&Path>,
) -> Built {
    assert_eq!(size % 4096, 0);
    let _ = std::fs::remove_file(img);
    let mut c = Command::new("mke2fs");
    c.args(["-q", "-F", "-t", "ext2"])
        .args(mke2fs_opts)
        .arg("-d")
        .arg(tree)
        .arg(img)
        .arg(format!("{}k", size / 1024));
    run(&mut c);
    assert_eq!(std::fs::metadata(img).unwrap().len(), size);
    let out = run(Command::new("veritysetup")
        .arg("format")
        .arg(format!("--hash-offset={size}"))
        .arg(img)
        .arg(img));
    let line = out.lines().find(|l| l.starts_with("Root hash:")).unwrap();
    let root: [u8; 32] = unhex(line.split_whitespace().last().unwrap())
        .try_into()
        .unwrap();
    let (signer, signature) = match key {
        None => ([0u8; 32], Vec::new()),
        Some(k) => sign(k, &root),
    };
    let t = Fssig {
        hash_offset: size,
        root_hash: root,
        signer,
        signature,
    }
    .to_bytes();
    let mut data = std::fs::read(img).unwrap();
    data.extend_from_slice(&t);
    std::fs::write(img, &data).unwrap();
    let roothash_file = img.with_extension("roothash");
    std::fs::write(&roothash_file, format!("{}\n", hex(&root))).unwrap();
    Built {
        img: img.to_path_buf(),
        root,
        hash_offset: size,
        roothash_file,
    }
}

/// Like [`build_image`], for an encrypted image: the mke2fs image of
/// `size` bytes is encrypted into a LUKS1 volume with `key` (the layout of
/// docs/FORMATS.md §5), then verity and the trailer cover the ciphertext.
pub fn build_encrypted_image(tree: &Path, img: &Path, size: u64, key: &[u8; 64]) -> Built {
    use myst_formats::luks::{LuksParams, LuksWriter};
    let plain = img.with_extension("plain");
    let _ = std::fs::remove_file(&plain);
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-d"])
        .arg(tree)
        .arg(&plain)
        .arg(format!("{}k", size / 1024)));
    let mut ext2 = std::fs::read(&plain).unwrap();
    std::fs::remove_file(&plain).unwrap();
    let w = LuksWriter::new(key, &LuksParams::default()).unwrap();
    w.encrypt_payload(&mut ext2, 0).unwrap();
    let mut data = w.header.clone();
    data.extend_from_slice(&ext2);
    let s = data.len() as u64;
    std::fs::write(img, &data).unwrap();
    let out = run(Command::new("veritysetup")
        .arg("format")
        .arg(format!("--hash-offset={s}"))
        .arg(img)
        .arg(img));
    let line = out.lines().find(|l| l.starts_with("Root hash:")).unwrap();
    let root: [u8; 32] = unhex(line.split_whitespace().last().unwrap())
        .try_into()
        .unwrap();
    let t = Fssig {
        hash_offset: s,
        root_hash: root,
        signer: [0; 32],
        signature: Vec::new(),
    }
    .to_bytes();
    let mut all = std::fs::read(img).unwrap();
    all.extend_from_slice(&t);
    std::fs::write(img, &all).unwrap();
    let roothash_file = img.with_extension("roothash");
    std::fs::write(&roothash_file, format!("{}\n", hex(&root))).unwrap();
    Built {
        img: img.to_path_buf(),
        root,
        hash_offset: s,
        roothash_file,
    }
}

/// Makes an RSA key pair with openssl; returns (private, public) PEM paths.
pub fn keypair(dir: &Path, name: &str, bits: u32) -> (PathBuf, PathBuf) {
    let k = dir.join(format!("{name}.key.pem"));
    let p = dir.join(format!("{name}.pub.pem"));
    run(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&k)
        .arg(bits.to_string()));
    run(Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&k)
        .arg("-out")
        .arg(&p));
    (k, p)
}

/// Signs a root hash like `openssl pkeyutl -pkeyopt digest:sha256`; returns (signer, signature).
pub fn sign(key: &Path, root: &[u8; 32]) -> ([u8; 32], Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let rh = d.path().join("rh");
    std::fs::write(&rh, root).unwrap();
    let sig = d.path().join("sig");
    run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-pkeyopt", "digest:sha256", "-inkey"])
        .arg(key)
        .arg("-in")
        .arg(&rh)
        .arg("-out")
        .arg(&sig));
    let pubpem = run(Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(key));
    let signer = myst_blockdev::trust::TrustedKey::from_pem(&pubpem)
        .unwrap()
        .signer;
    (signer, std::fs::read(&sig).unwrap())
}

/// What a comparison sees for one path.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// File type and permission bits.
    pub mode: u32,
    /// Owner (only compared when running as root).
    pub owner: Option<(u32, u32)>,
    /// Modification time in seconds (not for symlinks or directories).
    pub mtime: Option<i64>,
    /// File contents or symlink target.
    pub data: Vec<u8>,
    /// Device number.
    pub rdev: u64,
    /// Index of the hard-link group (first path of the inode).
    pub link_group: String,
}

/// Walks a host tree with lstat.
pub fn snapshot(root: &Path, owners: bool) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut first_path: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = String::from_utf8_lossy(e.file_name().as_bytes()).into_owned();
            if rel.is_empty() && name == "lost+found" {
                continue;
            }
            let p = format!("{rel}/{name}");
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let ft = md.file_type();
            let data = if ft.is_symlink() {
                std::fs::read_link(e.path())
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            } else if ft.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            if ft.is_dir() {
                stack.push((e.path(), p.clone()));
            }
            let group = if !ft.is_dir() && md.nlink() > 1 {
                first_path
                    .entry((md.dev(), md.ino()))
                    .or_insert_with(|| p.clone())
                    .clone()
            } else {
                p.clone()
            };
            out.insert(
                p,
                Entry {
                    mode: md.mode(),
                    owner: owners.then(|| (md.uid(), md.gid())),
                    mtime: (!ft.is_symlink() && !ft.is_dir()).then(|| md.mtime()),
                    data,
                    rdev: if ft.is_block_device() || ft.is_char_device() {
                        md.rdev()
                    } else {
                        0
                    },
                    link_group: group,
                },
            );
        }
    }
    out
}

/// Asserts two snapshots are equal, naming the first difference.
pub fn assert_same(want: &BTreeMap<String, Entry>, got: &BTreeMap<String, Entry>) {
    let wk: Vec<_> = want.keys().collect();
    let gk: Vec<_> = got.keys().collect();
    assert_eq!(wk.len(), gk.len(), "different path sets");
    assert_eq!(wk, gk, "different path sets");
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(
            (w.mode, w.owner, w.mtime, w.rdev),
            (g.mode, g.owner, g.mtime, g.rdev),
            "{k}: metadata"
        );
        assert!(w.data == g.data, "{k}: contents differ");
        assert_eq!(w.link_group, g.link_group, "{k}: hard links");
    }
}

/// True when running as root.
pub fn is_root() -> bool {
    rustix_like_geteuid() == 0
}

fn rustix_like_geteuid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
}

/// A tree with everything extract must restore: real files copied from
/// /usr/share (when present), generated files around block boundaries,
/// symlinks fast and slow, hard links, set-id bits, a FIFO, odd owners and
/// a device node when root.
pub fn test_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("gen/deep/er/still")).unwrap();
    for src in ["/usr/share/zoneinfo", "/usr/share/perl5"] {
        if Path::new(src).is_dir() {
            run(Command::new("cp")
                .arg("-a")
                .arg(src)
                .arg(root.join(Path::new(src).file_name().unwrap())));
        }
    }
    let mut x = 0x1234_5678u32;
    for (i, size) in [0usize, 1, 1023, 1024, 1025, 4096, 4097, 49_153, 1_100_000]
        .iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..*size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(root.join(format!("gen/f{i}")), data).unwrap();
    }
    std::fs::write(root.join("gen/deep/er/still/leaf"), b"leaf\n").unwrap();
    std::os::unix::fs::symlink("../gen/f1", root.join("gen/fast")).unwrap();
    std::os::unix::fs::symlink("/".to_string() + &"long/".repeat(30), root.join("gen/slow"))
        .unwrap();
    std::os::unix::fs::symlink("deep/er", root.join("gen/dirlink")).unwrap();
    std::fs::hard_link(root.join("gen/f3"), root.join("gen/deep/hard1")).unwrap();
    std::fs::hard_link(root.join("gen/f3"), root.join("gen/hard2")).unwrap();
    std::fs::set_permissions(root.join("gen/f2"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(root.join("gen/f4"), std::fs::Permissions::from_mode(0o2640)).unwrap();
    std::fs::set_permissions(
        root.join("gen/deep"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    run(Command::new("mkfifo").arg(root.join("gen/fifo")));
    run(Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06"])
        .arg(root.join("gen/f5")));
    if is_root() {
        run(Command::new("chown")
            .args(["1234:5678"])
            .arg(root.join("gen/f6")));
        run(Command::new("chown")
            .args(["-h", "99:98"])
            .arg(root.join("gen/fast")));
        run(Command::new("mknod")
            .arg(root.join("gen/null"))
            .args(["c", "1", "3"]));
        run(Command::new("mknod")
            .arg(root.join("gen/blk"))
            .args(["b", "259", "70000"]));
    }
}

/// Size for an image holding `tree` with room to spare, like mkext2.
pub fn image_size(tree: &Path) -> u64 {
    let out = run(Command::new("du").arg("-sb").arg(tree));
    let used: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
    ((used * 3 / 2 + (8 << 20)) >> 20 << 20).max(8 << 20)
}
