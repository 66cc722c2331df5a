//! Helpers shared by the ext2 image tests: source trees, manifests, and
//! the independent tools (e2fsck, debugfs, veritysetup, mount, openssl).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The myst binary.
pub fn myst() -> Command {
    Command::new(env!("CARGO_BIN_EXE_myst"))
}

/// Runs a command and returns its output, panicking with its stderr on failure.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// True when running as root.
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// True when `tool` runs.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Builds an image with `myst mkext2 [args] src img`.
pub fn mkext2(src: &Path, img: &Path, args: &[&str]) -> Output {
    ok(myst().arg("mkext2").args(args).arg(src).arg(img))
}

/// The FSSIG fields printed by `myst fssig`, by name.
pub fn fssig(img: &Path) -> BTreeMap<String, String> {
    let out = ok(myst().arg("fssig").arg(img));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The hash offset S of an image.
pub fn hash_offset(img: &Path) -> u64 {
    fssig(img)["hash_offset"].parse().unwrap()
}

/// The root hash of an image, as `myst fssig --roothash` prints it.
pub fn roothash(img: &Path) -> String {
    stdout(&ok(myst().arg("fssig").arg("--roothash").arg(img)))
        .trim()
        .to_string()
}

/// A sparse copy of the ext2 part (the first S bytes) of an image.
pub fn ext2_part(img: &Path, out: &Path) {
    let s = hash_offset(img);
    ok(Command::new("cp").arg("--sparse=always").arg(img).arg(out));
    ok(Command::new("truncate")
        .arg("-s")
        .arg(s.to_string())
        .arg(out));
}

/// `e2fsck -fn` must report a clean file system.
pub fn e2fsck_clean(ext2: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(ext2)
        .output()
        .expect("e2fsck");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "e2fsck -fn found problems:\n{text}");
    for bad in [
        "Fix?",
        "Clear?",
        "Salvage?",
        "Create?",
        "Relocate?",
        "Recreate?",
    ] {
        assert!(!text.contains(bad), "e2fsck -fn: {bad}\n{text}");
    }
}

/// `veritysetup verify` over the image with its own root hash.
pub fn verity_verify(img: &Path) -> bool {
    let s = hash_offset(img);
    Command::new("veritysetup")
        .arg("verify")
        .arg(format!("--hash-offset={s}"))
        .arg(img)
        .arg(img)
        .arg(roothash(img))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// What a tree entry is, as compared between the source and a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Directory.
    Dir,
    /// Regular file: size and SHA-256 of its contents.
    File(u64, String),
    /// Symbolic link and target.
    Link(Vec<u8>),
    /// Character device.
    Chr(u64),
    /// Block device.
    Blk(u64),
    /// FIFO.
    Fifo,
    /// Socket.
    Sock,
}

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub nlink: u64,
}

/// A tree's entries by relative path, plus its hard-link groups (sets of
/// paths naming one inode, for inodes with several names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub entries: BTreeMap<PathBuf, Entry>,
    pub links: Vec<Vec<PathBuf>>,
}

fn sha256_file(p: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(p));
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

/// Reads a tree (without following links).
pub fn manifest(root: &Path) -> Manifest {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                Kind::Dir
            } else if ft.is_file() {
                Kind::File(md.len(), sha256_file(&p))
            } else if ft.is_symlink() {
                Kind::Link(fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec())
            } else if ft.is_char_device() {
                Kind::Chr(md.rdev())
            } else if ft.is_block_device() {
                Kind::Blk(md.rdev())
            } else if ft.is_fifo() {
                Kind::Fifo
            } else {
                Kind::Sock
            };
            if !ft.is_dir() && md.nlink() > 1 {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            entries.insert(
                rel,
                Entry {
                    kind,
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    mtime: md.mtime(),
                    nlink: md.nlink(),
                },
            );
        }
    }
    let mut links: Vec<Vec<PathBuf>> = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    links.sort();
    Manifest { entries, links }
}

fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap();
}

fn set_mtime(p: &Path, t: i64) {
    ok(Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{t}"))
        .arg(p));
}

fn chown(p: &Path, uid: u32, gid: u32) {
    ok(Command::new("chown")
        .arg("-h")
        .arg(format!("{uid}:{gid}"))
        .arg(p));
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Makes a tree with every kind of thing ext2 holds. Devices and foreign
/// owners need root; without it they are left out (and the caller is told).
/// Returns true when the root-only parts are in.
pub fn full_tree(root: &Path) -> bool {
    let as_root = is_root();
    fs::create_dir_all(root).unwrap();
    let d = |p: &str| root.join(p);
    fs::create_dir_all(d("dir/sub/deeper")).unwrap();
    fs::create_dir_all(d("empty")).unwrap();
    // Regular files of many sizes.
    write(&d("empty-file"), b"");
    write(&d("hello.txt"), b"hello, world\n");
    write(&d("dir/one-block"), &bytes(1, 4096));
    write(&d("dir/odd"), &bytes(2, 4097));
    write(&d("dir/sub/random-100k"), &bytes(3, 100_000));
    // Direct + single indirect with 4 KiB blocks, double with 1 KiB blocks.
    write(&d("dir/sub/random-300k"), &bytes(4, 300_000));
    // Zero blocks in the middle of data (become holes).
    let mut z = bytes(5, 5 * 4096);
    z[4096..3 * 4096].fill(0);
    write(&d("zeros-inside"), &z);
    // A sparse file with holes, past the single indirect range.
    {
        let f = fs::File::create(d("sparse")).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(&bytes(6, 10_000), 3 << 20).unwrap();
        f.write_all_at(b"end", (6 << 20) - 3).unwrap();
    }
    write(&d("all-zero"), &vec![0u8; 3 * 4096 + 5]);
    // Names: long, odd bytes, spaces.
    let long = "n".repeat(255);
    write(&d(&long), b"long name\n");
    write(
        &root.join(OsStr::from_bytes(b"bytes-\xff\xfe-\x01")),
        b"odd name",
    );
    write(&d("with space & quote'\""), b"x");
    // Modes.
    write(&d("setuid"), b"#!/bin/sh\n");
    fs::set_permissions(d("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    write(&d("no-perms"), b"secret");
    // Only root can read a file without permissions.
    let none = if as_root { 0o000 } else { 0o400 };
    fs::set_permissions(d("no-perms"), fs::Permissions::from_mode(none)).unwrap();
    fs::create_dir_all(d("sticky")).unwrap();
    fs::set_permissions(d("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    write(&d("dir/sgid"), b"g");
    fs::set_permissions(d("dir/sgid"), fs::Permissions::from_mode(0o2711)).unwrap();
    // Hard links: three names, two directories.
    write(&d("linked"), &bytes(7, 9000));
    fs::hard_link(d("linked"), d("dir/linked-again")).unwrap();
    fs::hard_link(d("linked"), d("dir/sub/linked-third")).unwrap();
    // Symbolic links: fast (< 60 bytes), exactly 59 and 60, slow, dangling.
    symlink("hello.txt", d("fast-link")).unwrap();
    symlink("a".repeat(59), d("link-59")).unwrap();
    symlink("b".repeat(60), d("link-60")).unwrap();
    symlink(format!("/{}", "c/".repeat(500)), d("slow-link")).unwrap();
    symlink("../../nowhere", d("dir/sub/dangling")).unwrap();
    // A directory needing several blocks.
    fs::create_dir_all(d("many")).unwrap();
    for i in 0..600 {
        write(&d(&format!("many/entry-with-a-longer-name-{i:04}")), b"");
    }
    // FIFO and socket.
    ok(Command::new("mkfifo").arg(d("fifo")));
    let _sock = std::os::unix::net::UnixListener::bind(d("socket")).unwrap();
    if as_root {
        ok(Command::new("mknod").arg(d("null")).args(["c", "1", "3"]));
        ok(Command::new("mknod").arg(d("sda1")).args(["b", "8", "1"]));
        ok(Command::new("mknod")
            .arg(d("bigdev"))
            .args(["c", "300", "70000"]));
        chown(&d("hello.txt"), 1000, 1000);
        chown(&d("dir"), 1234, 5678);
        chown(&d("dir/odd"), 100_000, 200_000);
        chown(&d("fast-link"), 42, 43);
        chown(&d("linked"), 7, 8);
    }
    // Times, children before parents (writing a child changes its parent).
    set_mtime(&d("hello.txt"), 315_532_800); // 1980
    set_mtime(&d("fast-link"), 1_000_000_000);
    set_mtime(&d("dir/sub/random-100k"), 1_600_000_000);
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
        dirs.push(p);
    }
    for (i, p) in dirs.iter().rev().enumerate() {
        set_mtime(p, 1_500_000_000 + i as i64 * 1000);
    }
    as_root
}

/// Loop-mounts the ext2 part of `img` read-only at `mnt`, returning false
/// (and saying why) when that is not possible here.
pub fn loop_mount(img: &Path, mnt: &Path) -> bool {
    if !is_root() {
        eprintln!("skipping the loop-mount comparison: not root");
        return false;
    }
    fs::create_dir_all(mnt).unwrap();
    let s = hash_offset(img);
    let out = Command::new("mount")
        .arg("-t")
        .arg("ext2")
        .arg("-o")
        .arg(format!("loop,ro,sizelimit={s}"))
        .arg(img)
        .arg(mnt)
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "skipping the loop-mount comparison: mount failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipping the loop-mount comparison: {e}");
            false
        }
    }
}

/// Unmounts (lazily, so a failing test does not leave a busy mount).
pub fn umount(mnt: &Path) {
    let _ = Command::new("umount").arg(mnt).output();
}

/// Parsed `debugfs stat` of one path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    pub inode: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub links: u64,
    pub size: u64,
    pub mtime: i64,
    pub device: Option<(u32, u32)>,
    pub fast_link: Option<String>,
}

/// Runs `debugfs -R 'stat PATH'` for each path in one debugfs process.
pub fn debugfs_stats(ext2: &Path, paths: &[PathBuf]) -> BTreeMap<PathBuf, Stat> {
    let cmds: String = paths
        .iter()
        .map(|p| {
            let q = p.as_os_str().as_bytes();
            format!("stat \"/{}\"\n", String::from_utf8_lossy(q))
        })
        .collect();
    let cmdfile = ext2.with_extension("debugfs-cmds");
    fs::write(&cmdfile, cmds).unwrap();
    let out = ok(Command::new("debugfs").arg("-f").arg(&cmdfile).arg(ext2));
    let text = stdout(&out);
    let mut result = BTreeMap::new();
    let mut idx = 0usize;
    let mut cur: Option<Stat> = None;
    let flush = |cur: &mut Option<Stat>, idx: &mut usize, result: &mut BTreeMap<PathBuf, Stat>| {
        if let Some(s) = cur.take() {
            result.insert(paths[*idx].clone(), s);
            *idx += 1;
        }
    };
    for line in text.lines() {
        if line.starts_with("debugfs: stat") {
            flush(&mut cur, &mut idx, &mut result);
            cur = Some(Stat::default());
            continue;
        }
        let Some(s) = cur.as_mut() else { continue };
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| -> Option<&str> {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1).copied())
        };
        if line.starts_with("Inode:") {
            s.inode = after("Inode:").unwrap().parse().unwrap();
            s.mode = u32::from_str_radix(after("Mode:").unwrap(), 8).unwrap();
            // The type is in the Type: word; rebuild the mode's type bits.
            let ty = line.split("Type: ").nth(1).unwrap_or("");
            let t = if ty.starts_with("directory") {
                0o040000
            } else if ty.starts_with("regular") {
                0o100000
            } else if ty.starts_with("symlink") {
                0o120000
            } else if ty.starts_with("character") {
                0o020000
            } else if ty.starts_with("block") {
                0o060000
            } else if ty.starts_with("FIFO") {
                0o010000
            } else if ty.starts_with("socket") {
                0o140000
            } else {
                0
            };
            s.mode |= t;
        } else if line.starts_with("User:") {
            s.uid = after("User:").unwrap().parse().unwrap();
            s.gid = after("Group:").unwrap().parse().unwrap();
            s.size = after("Size:").unwrap().parse().unwrap();
        } else if line.starts_with("Links:") {
            s.links = after("Links:").unwrap().parse().unwrap();
        } else if line.trim_start().starts_with("mtime:") {
            let hex = after("mtime:").unwrap().split(':').next().unwrap();
            let v = u32::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap();
            s.mtime = i64::from(v as i32);
        } else if line.contains("Device major/minor number:") {
            let mm = after("number:").unwrap();
            let (a, b) = mm.split_once(':').unwrap();
            s.device = Some((a.parse().unwrap(), b.parse().unwrap()));
        } else if line.starts_with("Fast link dest:") {
            s.fast_link = Some(
                line.trim_start_matches("Fast link dest: ")
                    .trim_matches('"')
                    .to_string(),
            );
        }
    }
    flush(&mut cur, &mut idx, &mut result);
    result
}
