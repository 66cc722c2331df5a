//! A real Debian root for the runtime tests: `debootstrap --variant=minbase
//! --include=python3,busybox bookworm`, built once and cached under the
//! target directory (`target/debian-rootfs-cache/<variant>`), a fixed data
//! tree `/srv/myst` added to it, and per test run a signed ext2 image
//! (`myst mkext2 --sign`, keys from `openssl genrsa`) and a CPIO archive of
//! it. Programs run under `myst exec-linux` and natively with `chroot`.
//!
//! Needs root and debootstrap (which needs Debian's package mirror); without
//! them [`debian`] says why and returns None, and the tests skip.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The cache key: release, variant and extra packages.
pub const VARIANT: &str = "bookworm-minbase-python3-busybox";

/// Fixed mtime of everything under /srv (2024-01-02 03:04:05 UTC), so that
/// `ls -l` and `tar` output does not depend on when the cache was made.
pub const MTIME: &str = "@1704164645";

/// Size of /srv/myst/data.bin (many blocks, some behind an indirect block).
pub const DATA_LEN: usize = 300_000;

/// The Debian root, its images and the key that signed them.
pub struct Debian {
    /// The debootstrapped tree (the cache).
    pub root: PathBuf,
    /// This run's directory (keys and images).
    pub work: PathBuf,
    /// Signed ext2 image of `root`.
    pub image: PathBuf,
    /// CPIO archive of `root` (None when the tree is too large for one).
    pub cpio: Option<PathBuf>,
    /// Public key that verifies `image`.
    pub pubkey: PathBuf,
}

static DEBIAN: OnceLock<Option<Debian>> = OnceLock::new();

/// The myst binary.
pub fn myst_bin() -> &'static str {
    env!("CARGO_BIN_EXE_myst")
}

/// `target/debian-rootfs-cache`: cargo's tmp directory lies under
/// `target/<triple>/` here, so walk up to the outermost directory cargo
/// tagged as its cache.
fn cache_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp
        .ancestors()
        .filter(|a| a.join("CACHEDIR.TAG").exists())
        .last()
        .or(tmp.parent())
        .unwrap_or(tmp);
    target.join("debian-rootfs-cache")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Path of a system tool that may live in an sbin directory outside PATH.
pub fn tool(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

/// The shared Debian root and images, or None (with the reason on stderr)
/// when they cannot be made here.
pub fn debian() -> Option<&'static Debian> {
    DEBIAN.get_or_init(setup).as_ref()
}

fn setup() -> Option<Debian> {
    if !is_root() {
        eprintln!("debian tests: skipped: debootstrap and chroot need root");
        return None;
    }
    let Some(debootstrap) = tool("debootstrap") else {
        eprintln!(
            "debian tests: skipped: debootstrap is not installed (scripts/test.sh installs it)"
        );
        return None;
    };
    if tool("chroot").is_none() {
        eprintln!("debian tests: skipped: chroot is not installed");
        return None;
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).expect("create the debian cache directory");
    // One debootstrap at a time, even across test processes.
    let lock = File::create(cache.join(format!("{VARIANT}.lock"))).expect("create lock file");
    lock.lock().expect("lock the debian cache");
    let root = cache.join(VARIANT);
    let done = cache.join(format!("{VARIANT}.done"));
    if !done.exists() {
        let tmp = cache.join(format!("{VARIANT}.tmp"));
        let log = cache.join(format!("{VARIANT}.log"));
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&root);
        eprintln!(
            "debian tests: building {VARIANT} with debootstrap into {} (about a minute)",
            root.display()
        );
        let st = Command::new(&debootstrap)
            .args(["--variant=minbase", "--include=python3,busybox", "bookworm"])
            .arg(&tmp)
            .stdin(Stdio::null())
            .stdout(File::create(&log).expect("create debootstrap log"))
            .stderr(Stdio::from(
                File::options()
                    .append(true)
                    .open(&log)
                    .expect("open debootstrap log"),
            ))
            .status();
        let ok = matches!(st, Ok(s) if s.success()) && tmp.join("usr/bin/python3").exists();
        if !ok {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            eprintln!(
                "debian tests: skipped: debootstrap failed ({st:?}); last lines of {}:",
                log.display()
            );
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
            let _ = std::fs::remove_dir_all(&tmp);
            return None;
        }
        std::fs::rename(&tmp, &root).expect("move the finished root into the cache");
        std::fs::write(&done, "debootstrap finished\n").expect("write cache marker");
    }
    prepare(&root);
    drop(lock);

    let work = run_dir(&cache);
    let out = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(work.join("priv.pem"))
        .arg("2048")
        .output();
    if !matches!(out, Ok(ref o) if o.status.success()) {
        eprintln!("debian tests: skipped: openssl genrsa failed or is not installed");
        return None;
    }
    let out = Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(work.join("priv.pem"))
        .arg("-out")
        .arg(work.join("pub.pem"))
        .output()
        .expect("run openssl");
    assert_ok(&out, "openssl rsa -pubout");
    let image = work.join("debian.img");
    let out = Command::new(myst_bin())
        .arg("mkext2")
        .arg(format!(
            "--sign={}:{}",
            work.join("pub.pem").display(),
            work.join("priv.pem").display()
        ))
        .arg(&root)
        .arg(&image)
        .output()
        .expect("run myst mkext2");
    assert_ok(&out, "myst mkext2 --sign");
    let cpio_path = work.join("debian.cpio");
    let out = Command::new(myst_bin())
        .arg("mkcpio")
        .arg(&root)
        .arg(&cpio_path)
        .output()
        .expect("run myst mkcpio");
    assert_ok(&out, "myst mkcpio");
    // A CPIO root is loaded whole into memory: keep it only while that is
    // reasonable (a minbase root is about 260 MB).
    let size = std::fs::metadata(&cpio_path).map(|m| m.len()).unwrap_or(0);
    let cpio = if size < 1 << 30 {
        Some(cpio_path)
    } else {
        eprintln!("debian tests: the CPIO archive is {size} bytes; not running from it");
        let _ = std::fs::remove_file(&cpio_path);
        None
    };
    Some(Debian {
        pubkey: work.join("pub.pem"),
        root,
        work,
        image,
        cpio,
    })
}

/// A fresh directory for this test process (`run-<pid>`); directories of
/// processes that are gone are removed, so images do not pile up.
fn run_dir(cache: &Path) -> PathBuf {
    if let Ok(rd) = std::fs::read_dir(cache) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("run-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = cache.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create run directory");
    dir
}

/// Puts the fixed test tree /srv/myst into the root (rebuilt every run, so
/// a changed test never sees stale data) and empties /tmp, which native
/// runs may have used.
fn prepare(root: &Path) {
    let tmp = root.join("tmp");
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        for e in rd.flatten() {
            let p = e.path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
    let srv = root.join("srv");
    let d = srv.join("myst");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("sub/deeper")).expect("mkdir /srv/myst");
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let text: String = (0..2000u32)
        .map(|i| {
            let a = words[(i * 7 % 11 % 8) as usize];
            let b = words[(i * i % 13 % 8) as usize];
            format!("{a} {b}\n")
        })
        .collect();
    std::fs::write(d.join("words.txt"), text).expect("write words.txt");
    let mut csv = String::from("id,name,city,score\n");
    for i in 0..50u32 {
        csv.push_str(&format!(
            "{i},{}{},{},{}\n",
            words[(i % 8) as usize],
            i,
            ["Paris", "Oslo", "Lima", "Kyoto"][(i % 4) as usize],
            i * 37 % 101
        ));
    }
    std::fs::write(d.join("table.csv"), csv).expect("write table.csv");
    let mut x: u32 = 12345;
    let bin: Vec<u8> = (0..DATA_LEN)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(d.join("data.bin"), bin).expect("write data.bin");
    std::fs::write(
        d.join("sub/a.txt"),
        "alpha beta\ngamma delta\nalpha omega\n",
    )
    .expect("write sub/a.txt");
    std::fs::write(d.join("sub/b.txt"), "one\ntwo\nthree\n").expect("write sub/b.txt");
    std::fs::write(d.join("sub/deeper/z.txt"), "zzz\n").expect("write z.txt");
    std::os::unix::fs::symlink("a.txt", d.join("sub/link")).expect("symlink");
    std::fs::write(d.join("app.py"), APP_PY).expect("write app.py");
    // Fixed times; touch -h changes no directory, so the order is free.
    let mut paths = vec![srv.clone()];
    collect(&d, &mut paths);
    let out = Command::new("touch")
        .args(["-h", "-d", MTIME])
        .args(&paths)
        .output()
        .expect("run touch");
    assert_ok(&out, "touch -d");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read test tree")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// The "Debian app" of the tests: a Python program using json, hashlib,
/// os.listdir, subprocess and a file in /tmp.
pub const APP_PY: &str = r#"import hashlib, json, os, subprocess, sys

with open("/srv/myst/data.bin", "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
listing = sorted(os.listdir("/srv/myst"))
sort = subprocess.run(["/usr/bin/sort", "-u", "/srv/myst/words.txt"],
                      capture_output=True, text=True, check=True)
with open("/tmp/app-out.json", "w") as f:
    json.dump({"digest": digest, "listing": listing,
               "unique": sort.stdout.splitlines()}, f, sort_keys=True)
with open("/tmp/app-out.json") as f:
    back = json.load(f)
os.remove("/tmp/app-out.json")
print(json.dumps(back, indent=1, sort_keys=True))
print("args", sys.argv[1:], "python", sys.version_info[:2])
"#;

/// Runs `myst exec-linux OPTS ROOT PROGRAM ARGS` with no stdin.
pub fn myst_run(opts: &[&str], root: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(myst_bin())
        .arg("exec-linux")
        .args(opts)
        .arg(root)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run myst")
}

/// Runs `chroot ROOT PROGRAM ARGS` natively with the guest's environment
/// (only MYST_TARGET=linux) and no stdin.
pub fn chroot_run(root: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(tool("chroot").unwrap_or_else(|| PathBuf::from("chroot")))
        .arg(root)
        .arg(program)
        .args(args)
        .env_clear()
        .env("MYST_TARGET", "linux")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run chroot")
}

/// Exit status as a shell shows it: the code, or 128+N for signal N.
pub fn status(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0))
}

/// stdout as text.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts success, showing stderr otherwise.
pub fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// SHA-256 of a file, via the host's sha256sum.
pub fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The ELF type (2 = ET_EXEC, 3 = ET_DYN) of a file and whether it has a
/// PT_INTERP program header (a dynamic program).
pub fn elf_kind(path: &Path) -> Option<(u16, bool)> {
    let data = std::fs::read(path).ok()?;
    if data.get(..4)? != b"\x7fELF" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    let e_type = u16_at(16)?;
    let phoff = usize::try_from(u64_at(32)?).ok()?;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    let mut interp = false;
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(at)? == 3 {
            interp = true;
        }
    }
    Some((e_type, interp))
}
