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
            if !have(v.cc) {
                eprintln!(
                    "runtime tests: {} not installed; skipping the {} variant",
                    v.cc, v.name
                );
                continue;
            }
            let mut ok = true;
            for app in APPS {
                let out = path.join("bin").join(format!("{app}_{}", v.name));
                let st = Command::new(v.cc)
                    .args(v.flags)
                    .args(["-O1", "-w", "-o"])
                    .arg(&out)
                    .arg(apps.join(format!("{app}.c")))
                    .status()
                    .expect("run compiler");
                if !st.success() {
                    eprintln!(
                        "runtime tests: {} could not build {app} ({}); skipping that variant",
                        v.cc, v.name
                    );
                    ok = false;
                    break;
                }
            }
            if ok {
                variants.push(v.name);
            }
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
