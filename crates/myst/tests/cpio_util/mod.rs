//! Helpers shared by the cpio_* integration tests: a sample tree, tree
//! snapshots and the oracles' availability.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

/// The myst binary under test.
pub fn myst() -> Command {
    Command::new(env!("CARGO_BIN_EXE_myst"))
}

/// True when `tool` runs; otherwise says why the test is skipped.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: {tool} is not installed (scripts/test.sh installs it)");
    }
    ok
}

/// True when running as root (owners can be set and compared).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a command and checks that it succeeded.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail with exit status 1; returns its stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?} should fail: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sets the mtime (and atime) of `p` without following a symlink.
pub fn set_mtime(p: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn write(p: &Path, data: &[u8], mode: u32, mtime: i64) {
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(p, mtime);
}

/// A tree with every kind of entry mkcpio stores: files of awkward sizes
/// and modes, empty and nested directories, symlinks (relative, absolute,
/// dangling, to a directory), a hard link, odd names (spaces, UTF-8, not
/// UTF-8) and distinct mtimes. Owners vary when running as root.
pub fn make_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let d = |p: &str| {
        let p = root.join(p);
        fs::create_dir_all(&p).unwrap();
    };
    d("bin");
    d("etc/deep/er/est");
    d("empty");
    d("private");
    d("sticky");
    d("with space");
    let pattern: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 253) as u8).collect();
    write(
        &root.join("bin/tool"),
        b"#!/bin/sh\necho hi\n",
        0o755,
        1_600_000_000,
    );
    write(&root.join("bin/suid"), b"x", 0o4755, 1_600_000_001);
    write(&root.join("etc/zero"), b"", 0o644, 1_500_000_000);
    write(&root.join("etc/one"), b"1", 0o600, 1_400_000_000);
    write(&root.join("etc/three"), b"abc", 0o640, 1_300_000_000);
    write(&root.join("etc/four"), b"abcd", 0o444, 1_200_000_000);
    write(&root.join("etc/five"), b"abcde", 0o604, 1_100_000_000);
    write(
        &root.join("etc/deep/er/est/big"),
        &pattern,
        0o644,
        1_000_000_000,
    );
    write(
        &root.join("etc/deep/page"),
        &pattern[..4096],
        0o644,
        999_999_999,
    );
    write(
        &root.join("with space/a b"),
        b"space\n",
        0o644,
        1_650_000_000,
    );
    write(
        &root.join("private/ünïcode"),
        b"utf8\n",
        0o600,
        1_650_000_001,
    );
    let odd = root.join(std::ffi::OsStr::from_bytes(b"private/bad\xffname"));
    write(&odd, b"not utf-8\n", 0o644, 1_650_000_002);
    fs::hard_link(root.join("etc/three"), root.join("bin/three-link")).unwrap();
    symlink("tool", root.join("bin/rel")).unwrap();
    symlink("/nonexistent/absolute", root.join("bin/abs")).unwrap();
    symlink("../etc/deep", root.join("bin/dirlink")).unwrap();
    symlink("dangling-target", root.join("empty-link")).unwrap();
    for (p, m) in [
        ("bin/rel", 1_234_567_890),
        ("bin/abs", 1_234_567_891),
        ("bin/dirlink", 1_234_567_892),
        ("empty-link", 1_234_567_893),
    ] {
        set_mtime(&root.join(p), m);
    }
    if is_root() {
        rustix::fs::chownat(
            CWD,
            root.join("bin/tool"),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
            AtFlags::empty(),
        )
        .unwrap();
        rustix::fs::chownat(
            CWD,
            root.join("bin/rel"),
            Some(rustix::fs::Uid::from_raw(4321)),
            None,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        // chown clears setuid: set it again.
        fs::set_permissions(root.join("bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    }
    // Directory modes and mtimes last: adding entries changes them.
    let dirs = [
        ("sticky", 0o1777, 1_111_111_111),
        ("private", 0o700, 1_222_222_222),
        ("empty", 0o755, 1_333_333_333),
        ("etc/deep/er/est", 0o755, 1_444_444_444),
        ("etc/deep/er", 0o750, 1_444_444_445),
        ("etc/deep", 0o755, 1_444_444_446),
        ("etc", 0o755, 1_444_444_447),
        ("bin", 0o755, 1_555_555_555),
        ("with space", 0o755, 1_555_555_556),
        ("", 0o755, 1_666_666_666),
    ];
    for (p, mode, mtime) in dirs {
        let p = root.join(p);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(&p, mtime);
    }
}

/// What a tree entry looks like, for comparisons.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    /// 'f', 'd', 'l' or '?'.
    pub kind: char,
    /// Permission bits.
    pub mode: u32,
    /// Seconds.
    pub mtime: i64,
    /// Contents or symlink target.
    pub data: Vec<u8>,
    /// (uid, gid), when compared.
    pub owner: Option<(u32, u32)>,
}

/// Every entry below `root` (the root itself is ""), without following symlinks.
pub fn snapshot(root: &Path, owners: bool) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    walk(root, Vec::new(), owners, &mut out);
    out
}

fn walk(p: &Path, rel: Vec<u8>, owners: bool, out: &mut BTreeMap<Vec<u8>, Node>) {
    let md = fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    let (kind, data) = if ft.is_dir() {
        ('d', Vec::new())
    } else if ft.is_file() {
        ('f', fs::read(p).unwrap())
    } else if ft.is_symlink() {
        ('l', fs::read_link(p).unwrap().into_os_string().into_vec())
    } else {
        ('?', Vec::new())
    };
    out.insert(
        rel.clone(),
        Node {
            kind,
            mode: md.mode() & 0o7777,
            mtime: md.mtime(),
            data,
            owner: owners.then(|| (md.uid(), md.gid())),
        },
    );
    if ft.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_vec();
            let child = if rel.is_empty() {
                name
            } else {
                [&rel[..], b"/", &name[..]].concat()
            };
            walk(&e.path(), child, owners, out);
        }
    }
}

/// Asserts that two trees are identical: same names, types, modes,
/// contents, symlink targets and mtimes (and owners when snapshotted).
pub fn assert_same_tree(want: &Path, got: &Path, owners: bool) {
    assert_same_tree_except_mtimes(want, got, owners, |_, _| false)
}

/// Like [`assert_same_tree`], but ignores the mtimes for which `skip(name,
/// node)` is true (some extractors cannot restore some mtimes).
pub fn assert_same_tree_except_mtimes(
    want: &Path,
    got: &Path,
    owners: bool,
    skip: impl Fn(&[u8], &Node) -> bool,
) {
    let a = snapshot(want, owners);
    let mut b = snapshot(got, owners);
    for (k, x) in &a {
        if let Some(y) = b.get_mut(k) {
            if skip(k, x) {
                y.mtime = x.mtime;
            }
        }
    }
    let names = |m: &BTreeMap<Vec<u8>, Node>| -> Vec<String> {
        m.keys().map(|k| k.escape_ascii().to_string()).collect()
    };
    assert_eq!(
        names(&a),
        names(&b),
        "{} vs {}",
        want.display(),
        got.display()
    );
    for (k, na) in &a {
        let nb = &b[k];
        // Symlink permission bits are meaningless on Linux.
        if na.kind == 'l' {
            assert_eq!(
                (na.kind, &na.data, na.mtime, na.owner),
                (nb.kind, &nb.data, nb.mtime, nb.owner),
                "{}",
                k.escape_ascii()
            );
        } else {
            assert_eq!(na, nb, "{}", k.escape_ascii());
        }
    }
}
