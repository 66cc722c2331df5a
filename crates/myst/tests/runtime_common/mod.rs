//! Shared helpers of the runtime tests: building the guest programs of
//! tests/apps with each C toolchain, a directory root holding them, and
//! running programs natively and under `myst exec-linux`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// One way of building a guest program.
pub struct Variant {
    /// Suffix of the binary name.
    pub name: &'static str,
    /// Compiler.
    pub cc: &'static str,
    /// Flags.
    pub flags: &'static [&'static str],
}

/// musl static, glibc static (both ET_EXEC at 0x400000), glibc static-PIE.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "musl",
        cc: "musl-gcc",
        flags: &["-static"],
    },
    Variant {
        name: "glibc",
        cc: "gcc",
        flags: &["-static"],
    },
    Variant {
        name: "pie",
        cc: "gcc",
        flags: &["-static-pie", "-fPIE"],
    },
];

/// The guest programs in tests/apps.
pub const APPS: &[&str] = &[
    "hello",
    "env",
    "fileio",
    "errors",
    "exitcode",
    "rawsyscall",
    "signals",
    "threads",
    "sigstress",
    "waits",
    "sysfuzz",
    "sigwait",
    "blocklock",
    "sockpass",
    "pgroups",
    "cancel",
    "config",
    "mountapp",
];

/// The myst binary.
pub fn myst_bin() -> &'static str {
    env!("CARGO_BIN_EXE_myst")
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A root directory with /bin/<app>_<variant> for every app and every
/// variant whose compiler is installed (built once per test binary), plus
/// /bin/busybox when the host has a static busybox.
pub struct Root {
    _dir: tempfile::TempDir,
    /// Path of the root directory.
    pub path: PathBuf,
    /// Variants that were built.
    pub variants: Vec<&'static str>,
}

static ROOT: OnceLock<Root> = OnceLock::new();

/// The shared root (see [`Root`]).
pub fn root() -> &'static Root {
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("myst-rt-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().to_path_buf();
        std::fs::create_dir_all(path.join("bin")).expect("mkdir bin");
        let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/apps");
        let mut variants = Vec::new();
        for v in VARIANTS {
            // A missing compiler is a failure, never a silent skip
            // (scripts/test.sh installs gcc and musl-tools).
            assert!(
                have(v.cc),
                "runtime tests: {} is not installed (needed for the {} variant; scripts/test.sh installs it)",
                v.cc,
                v.name
            );
            for app in APPS {
                let out = path.join("bin").join(format!("{app}_{}", v.name));
                let st = Command::new(v.cc)
                    .args(v.flags)
                    .args(["-O1", "-w", "-pthread", "-o"])
                    .arg(&out)
                    .arg(apps.join(format!("{app}.c")))
                    .status()
                    .expect("run compiler");
                assert!(
                    st.success(),
                    "runtime tests: {} could not build tests/apps/{app}.c ({} variant)",
                    v.cc,
                    v.name
                );
            }
            variants.push(v.name);
        }
        // The host's passwd and group, so user names resolve the same way
        // natively and in the guest.
        std::fs::create_dir_all(path.join("etc")).expect("mkdir etc");
        for f in ["passwd", "group"] {
            let _ = std::fs::copy(format!("/etc/{f}"), path.join("etc").join(f));
        }
        if let Some(bb) = busybox() {
            std::fs::copy(bb, path.join("bin/busybox")).expect("copy busybox");
            // Applets that busybox itself runs by name (tar -z runs gzip).
            for applet in ["gzip", "sh", "cat"] {
                let _ = std::os::unix::fs::symlink("busybox", path.join("bin").join(applet));
            }
        }
        Root {
            _dir: dir,
            path,
            variants,
        }
    })
}

/// The host's static busybox, if any.
pub fn busybox() -> Option<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = PathBuf::from(p);
        if p.exists() {
            let out = Command::new("file").arg("-L").arg(&p).output();
            if let Ok(o) = out {
                if String::from_utf8_lossy(&o.stdout).contains("dynamically linked") {
                    return None;
                }
            }
            return Some(p);
        }
    }
    None
}

/// Runs `myst exec-linux [opts] ROOT PROGRAM ARGS...` with no stdin.
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

/// Runs a host program with an environment holding only MYST_TARGET=linux
/// (what exec-linux gives the guest), in `cwd`.
pub fn native_run(program: &Path, args: &[&str], cwd: &Path) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .env("MYST_TARGET", "linux")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run native")
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

/// A fresh, empty directory inside the root (named after the test).
pub fn data_dir(root: &Root, name: &str) -> (PathBuf, String) {
    let host = root.path.join(name);
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(&host).expect("mkdir data dir");
    (host, format!("/{name}"))
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

/// A CPIO image (made by `myst mkcpio`) of a tree holding the test programs
/// of [`root`], busybox and its applet links, /etc, and `/data` as made by
/// `fill`. Built once per test binary. Returns (image, the directory it was
/// made from).
pub struct CpioRoot {
    _dir: tempfile::TempDir,
    /// The image.
    pub image: PathBuf,
    /// The tree it was made from.
    pub tree: PathBuf,
}

static CPIO: OnceLock<CpioRoot> = OnceLock::new();

/// Files of /data in every image root: text, a subdirectory, binary data, a symlink.
pub fn fill_data(d: &Path) {
    std::fs::create_dir_all(d.join("sub/deeper")).expect("mkdir");
    let nums: String = (1..=3000).map(|i| format!("{i}\n")).collect();
    std::fs::write(d.join("nums.txt"), nums).expect("write");
    std::fs::write(
        d.join("sub/a.txt"),
        "alpha beta\ngamma delta\nalpha omega\n",
    )
    .expect("write");
    std::fs::write(d.join("sub/deeper/z.txt"), "zzz\n").expect("write");
    let bin: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("bin.dat"), bin).expect("write");
    let _ = std::os::unix::fs::symlink("nums.txt", d.join("link"));
}

/// The shared CPIO root (see [`CpioRoot`]).
pub fn cpio_root() -> &'static CpioRoot {
    CPIO.get_or_init(|| {
        let r = root();
        let dir = tempfile::Builder::new()
            .prefix("myst-rt-cpio-")
            .tempdir()
            .expect("temp dir");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("bin")).expect("mkdir");
        for e in std::fs::read_dir(r.path.join("bin")).expect("read bin") {
            let e = e.expect("entry");
            let to = tree.join("bin").join(e.file_name());
            if e.file_type().expect("type").is_symlink() {
                let t = std::fs::read_link(e.path()).expect("readlink");
                std::os::unix::fs::symlink(t, to).expect("symlink");
            } else {
                std::fs::copy(e.path(), to).expect("copy");
            }
        }
        std::fs::create_dir_all(tree.join("etc")).expect("mkdir etc");
        for f in ["passwd", "group"] {
            let _ = std::fs::copy(format!("/etc/{f}"), tree.join("etc").join(f));
        }
        fill_data(&tree.join("data"));
        let image = dir.path().join("root.cpio");
        let out = Command::new(myst_bin())
            .arg("mkcpio")
            .arg(&tree)
            .arg(&image)
            .output()
            .expect("run mkcpio");
        assert_ok(&out, "myst mkcpio");
        CpioRoot {
            _dir: dir,
            image,
            tree,
        }
    })
}

/// ext2 images of the same tree as [`cpio_root`]: unsigned and signed
/// (`myst mkext2 --sign`), plus the signing public key.
pub struct Ext2Roots {
    _dir: tempfile::TempDir,
    /// Unsigned image (FSSIG with root hash, no signature).
    pub unsigned: PathBuf,
    /// Signed image.
    pub signed: PathBuf,
    /// The public key that verifies `signed`.
    pub pubkey: PathBuf,
    /// A root-hash file for `unsigned` (as `myst fssig --roothash` prints).
    pub roothash: PathBuf,
}

static EXT2: OnceLock<Option<Ext2Roots>> = OnceLock::new();

/// The shared ext2 images, or None when openssl is missing.
pub fn ext2_roots() -> Option<&'static Ext2Roots> {
    EXT2.get_or_init(|| {
        let c = cpio_root();
        let dir = tempfile::Builder::new()
            .prefix("myst-rt-ext2-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let key = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(d.join("priv.pem"))
            .arg("2048")
            .output();
        assert!(
            matches!(key, Ok(ref o) if o.status.success()),
            "runtime tests: openssl genrsa failed or openssl is not installed (scripts/test.sh installs it)"
        );
        let out = Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(d.join("priv.pem"))
            .arg("-out")
            .arg(d.join("pub.pem"))
            .output()
            .expect("openssl");
        assert_ok(&out, "openssl rsa -pubout");
        let unsigned = d.join("unsigned.img");
        let signed = d.join("signed.img");
        let out = Command::new(myst_bin())
            .arg("mkext2")
            .arg(&c.tree)
            .arg(&unsigned)
            .output()
            .expect("mkext2");
        assert_ok(&out, "myst mkext2");
        let sign = format!(
            "--sign={}:{}",
            d.join("pub.pem").display(),
            d.join("priv.pem").display()
        );
        let out = Command::new(myst_bin())
            .arg("mkext2")
            .arg(sign)
            .arg(&c.tree)
            .arg(&signed)
            .output()
            .expect("mkext2");
        assert_ok(&out, "myst mkext2 --sign");
        let out = Command::new(myst_bin())
            .args(["fssig", "--roothash"])
            .arg(&unsigned)
            .output()
            .expect("fssig");
        assert_ok(&out, "myst fssig --roothash");
        let roothash = d.join("unsigned.roothash");
        std::fs::write(&roothash, &out.stdout).expect("write roothash");
        Some(Ext2Roots {
            pubkey: d.join("pub.pem"),
            _dir: dir,
            unsigned,
            signed,
            roothash,
        })
    })
    .as_ref()
}
