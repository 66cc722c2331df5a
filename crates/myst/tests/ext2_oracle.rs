//! `myst mkext2` checked against independent implementations: e2fsck,
//! debugfs, the Linux kernel (loop mount, as root) and veritysetup, over a
//! tree holding every kind of file ext2 stores, for each block size.

mod ext2_util;

use ext2_util::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths debugfs's command parser can take (no quotes, printable ASCII).
fn debugfs_safe(p: &Path) -> bool {
    p.as_os_str()
        .as_bytes()
        .iter()
        .all(|&c| (0x21..0x7f).contains(&c) && c != b'"' && c != b'\'')
}

/// Builds the full tree with `--block-size bs --size size` (a size that
/// makes several block groups, so that superblock backups are checked too).
fn check_tree(bs: &str, size: &str) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let as_root = full_tree(&src);
    if !as_root {
        eprintln!("not root: devices and foreign owners are left out of the tree");
    }
    let img = work.path().join("img");
    mkext2(&src, &img, &["--block-size", bs, "--size", size]);
    let want = manifest(&src);

    // e2fsck on the ext2 part, with the primary superblock and with the
    // backup in group 1.
    let ext = work.path().join("ext2");
    ext2_part(&img, &ext);
    e2fsck_clean(&ext);
    let bsn: u64 = bs.parse().unwrap();
    let backup = bsn * 8 + u64::from(bsn == 1024);
    let o = Command::new("e2fsck")
        .args(["-fn", "-b", &backup.to_string(), "-B", bs])
        .arg(&ext)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "e2fsck with the backup superblock at {backup}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let groups = stdout(&ok(Command::new("dumpe2fs").arg(&ext)))
        .lines()
        .filter(|l| l.starts_with("Group "))
        .count();
    assert!(groups >= 3, "{groups} block groups");

    // debugfs rdump: regular files, directories, symlink targets, modes,
    // owners (when root) and times of files and directories.
    let out = work.path().join("rdump");
    fs::create_dir(&out).unwrap();
    ok(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", out.display()))
        .arg(&ext));
    let got = manifest(&out);
    let lf = got
        .entries
        .get(Path::new("lost+found"))
        .expect("lost+found in the image");
    assert_eq!(lf.kind, Kind::Dir);
    assert_eq!(lf.mode & 0o7777, 0o700);
    assert!(fs::read_dir(out.join("lost+found"))
        .unwrap()
        .next()
        .is_none());
    for (path, w) in &want.entries {
        let rdump_keeps = matches!(w.kind, Kind::Dir | Kind::File(..) | Kind::Link(_));
        if !rdump_keeps {
            continue;
        }
        let g = got
            .entries
            .get(path)
            .unwrap_or_else(|| panic!("{} missing from rdump", path.display()));
        assert_eq!(g.kind, w.kind, "{}: kind/content", path.display());
        if !matches!(w.kind, Kind::Link(_)) {
            // rdump loses set-id and sticky bits (it chowns after chmod): those
            // are checked with debugfs stat and the kernel below.
            assert_eq!(
                g.mode & !0o7000,
                w.mode & !0o7000,
                "{}: mode",
                path.display()
            );
            assert_eq!(g.mtime, w.mtime, "{}: mtime", path.display());
            if as_root {
                assert_eq!((g.uid, g.gid), (w.uid, w.gid), "{}: owner", path.display());
            }
        }
    }
    assert_eq!(
        got.entries.len(),
        want.entries
            .values()
            .filter(|e| matches!(e.kind, Kind::Dir | Kind::File(..) | Kind::Link(_)))
            .count()
            + 1,
        "rdump holds exactly the source's files, directories, links and lost+found"
    );

    // debugfs stat: what rdump loses (devices, FIFOs, sockets, symlink
    // owners and times, link counts, hard links as one inode).
    let paths: Vec<PathBuf> = want
        .entries
        .keys()
        .filter(|p| debugfs_safe(p))
        .cloned()
        .collect();
    let stats = debugfs_stats(&ext, &paths);
    assert_eq!(stats.len(), paths.len());
    for p in &paths {
        let w = &want.entries[p];
        let s = &stats[p];
        assert_eq!(s.mode, w.mode, "{}: mode", p.display());
        assert_eq!((s.uid, s.gid), (w.uid, w.gid), "{}: owner", p.display());
        assert_eq!(s.mtime, w.mtime, "{}: mtime", p.display());
        match &w.kind {
            Kind::Dir => {
                let subdirs = want
                    .entries
                    .iter()
                    .filter(|(q, e)| e.kind == Kind::Dir && q.parent() == Some(p.as_path()))
                    .count() as u64;
                assert_eq!(s.links, 2 + subdirs, "{}: directory links", p.display());
            }
            Kind::File(size, _) => {
                assert_eq!(s.size, *size, "{}: size", p.display());
                assert_eq!(s.links, w.nlink, "{}: links", p.display());
            }
            Kind::Link(t) => {
                assert_eq!(s.size, t.len() as u64, "{}: link size", p.display());
                if t.len() < 60 {
                    assert_eq!(
                        s.fast_link.as_deref(),
                        Some(String::from_utf8_lossy(t).as_ref()),
                        "{}: fast link",
                        p.display()
                    );
                } else {
                    assert_eq!(s.fast_link, None, "{}: slow link", p.display());
                }
            }
            Kind::Chr(rdev) | Kind::Blk(rdev) => {
                let (ma, mi) = split_dev(*rdev);
                assert_eq!(s.device, Some((ma, mi)), "{}: device", p.display());
            }
            Kind::Fifo | Kind::Sock => {}
        }
    }
    for group in &want.links {
        let inos: Vec<u64> = group.iter().map(|p| stats[p].inode).collect();
        assert!(
            inos.windows(2).all(|w| w[0] == w[1]),
            "hard links {group:?} are not one inode: {inos:?}"
        );
        assert_eq!(stats[&group[0]].links, group.len() as u64);
    }

    // The kernel's view.
    let mnt = work.path().join("mnt");
    if loop_mount(&img, &mnt) {
        let mounted = manifest(&mnt);
        umount(&mnt);
        let mut m = mounted.clone();
        m.entries.remove(Path::new("lost+found"));
        assert_eq!(m.entries.len(), want.entries.len());
        for (p, w) in &want.entries {
            assert_eq!(m.entries.get(p), Some(w), "{}: kernel view", p.display());
        }
        assert_eq!(m.links, want.links);
    }

    // dm-verity: verifies, and veritysetup reads our superblock.
    assert!(verity_verify(&img), "veritysetup verify failed");
    let s = hash_offset(&img);
    let dump = stdout(&ok(Command::new("veritysetup")
        .arg("dump")
        .arg(format!("--hash-offset={s}"))
        .arg(&img)));
    let field = |name: &str| -> String {
        dump.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in veritysetup dump:\n{dump}"))
    };
    assert_eq!(field("Hash type:"), "1");
    assert_eq!(field("Hash algorithm:"), "sha256");
    assert_eq!(field("Data block size:"), "4096");
    assert_eq!(field("Hash block size:"), "4096");
    assert_eq!(field("Data blocks:"), (s / 4096).to_string());
    let salt = field("Salt:");
    assert_eq!(salt.len(), 64, "32-byte salt: {salt}");
    assert!(salt.chars().all(|c| c.is_ascii_hexdigit()));
}

/// glibc's major/minor split.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

#[test]
fn full_tree_4096_byte_blocks() {
    check_tree("4096", "300m");
}

#[test]
fn full_tree_2048_byte_blocks() {
    check_tree("2048", "100m");
}

#[test]
fn full_tree_1024_byte_blocks() {
    check_tree("1024", "30m");
}

/// Copies the image sparsely and flips one byte at `off`.
fn flipped(img: &Path, off: u64, out: &Path) {
    ok(Command::new("cp").arg("--sparse=always").arg(img).arg(out));
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(out)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, off).unwrap();
}

fn verity_verify_with(img: &Path, s: u64, root: &str) -> bool {
    Command::new("veritysetup")
        .arg("verify")
        .arg(format!("--hash-offset={s}"))
        .arg(img)
        .arg(img)
        .arg(root)
        .output()
        .map(|o| o.status.success())
        .unwrap()
}

#[test]
fn one_flipped_byte_fails_verity() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("data"), bytes(9, 50_000)).unwrap();
    let img = work.path().join("img");
    mkext2(&src, &img, &[]);
    let s = hash_offset(&img);
    let root = roothash(&img);
    assert!(verity_verify_with(&img, s, &root));
    // In the superblock, in free space, in the hash tree (first and last block).
    let len = fs::metadata(&img).unwrap().len();
    let tree_end = len - 4096;
    for (what, off) in [
        ("ext2 superblock", 1024 + 60),
        ("ext2 free space", s - 10),
        ("top hash block", s + 4096 + 5),
        ("last hash block", tree_end - 4096 + 3),
    ] {
        let bad = work.path().join("bad");
        flipped(&img, off, &bad);
        assert!(
            !verity_verify_with(&bad, s, &root),
            "veritysetup verify accepted a flipped byte in the {what} (offset {off})"
        );
        fs::remove_file(&bad).unwrap();
    }
}

#[test]
fn two_runs_are_byte_identical() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    full_tree(&src);
    let a = work.path().join("a.img");
    let b = work.path().join("b.img");
    mkext2(&src, &a, &[]);
    // The size is Mystikos's: du -b -c -s, rounded up to 1 MiB, plus 50%.
    let du: u64 = stdout(&ok(Command::new("du").args(["-b", "-c", "-s"]).arg(&src)))
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let mib = 1u64 << 20;
    assert_eq!(
        hash_offset(&a),
        (du.div_ceil(mib) * mib * 3 / 2).max(8 * mib)
    );
    // Reading the tree changes atimes; moving it changes its path: neither
    // may change the image.
    let moved = work.path().join("moved");
    fs::rename(&src, &moved).unwrap();
    mkext2(&moved, &b, &[]);
    ok(Command::new("cmp").arg(&a).arg(&b));
    // And with another block size the image differs, as does its salt.
    let c = work.path().join("c.img");
    mkext2(&moved, &c, &["--block-size", "1024"]);
    assert_ne!(roothash(&a), roothash(&c));
}

#[test]
fn source_date_epoch_clamps_times() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/new"), b"new").unwrap();
    fs::write(src.join("old"), b"old").unwrap();
    ok(Command::new("touch")
        .args(["-d", "@100000"])
        .arg(src.join("old")));
    let img = work.path().join("img");
    ok(myst()
        .env("SOURCE_DATE_EPOCH", "1000000")
        .arg("mkext2")
        .arg(&src)
        .arg(&img));
    let ext = work.path().join("ext2");
    ext2_part(&img, &ext);
    e2fsck_clean(&ext);
    let paths = vec![
        PathBuf::from("d"),
        PathBuf::from("d/new"),
        PathBuf::from("old"),
        PathBuf::from("lost+found"),
    ];
    let st = debugfs_stats(&ext, &paths);
    assert_eq!(st[Path::new("d")].mtime, 1_000_000);
    assert_eq!(st[Path::new("d/new")].mtime, 1_000_000);
    assert_eq!(st[Path::new("lost+found")].mtime, 1_000_000);
    assert_eq!(st[Path::new("old")].mtime, 100_000);
    let sb = stdout(&ok(Command::new("dumpe2fs").arg("-h").arg(&ext)));
    assert!(
        sb.lines()
            .any(|l| l.starts_with("Filesystem created:") && l.contains("1970")),
        "superblock times from SOURCE_DATE_EPOCH:\n{sb}"
    );
    assert!(
        sb.lines().any(|l| l.starts_with("Filesystem features:")
            && l.split_whitespace().skip(2).collect::<Vec<_>>()
                == ["filetype", "sparse_super", "large_file"]),
        "only filetype, sparse_super, large_file:\n{sb}"
    );
}
