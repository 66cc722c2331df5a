//! Unverified, corrupted images: arbitrary mutations of a stock mke2fs
//! image are mounted, walked completely and written to. Every operation
//! may fail, but nothing may panic, hang or read out of bounds.

mod common;
use common::*;
use myst_blockdev::mem::MemDevice;
use myst_blockdev::BlockDevice;
use myst_fs::ext2::{Ext2Fs, MountOptions};
use myst_fs::{FileSystem, FileType, Ino, NewInode, SetAttr, Timespec};
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// One mutation: `sel` picks a metadata range (or, when odd, the whole
/// image), `pos` a position in it.
#[derive(Debug, Clone)]
enum Mutation {
    /// Sets one byte.
    Byte(u32, u32, u8),
    /// Sets an aligned u32 (pointers, counts, sizes).
    Word(u32, u32, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u8>()).prop_map(|(s, p, b)| Mutation::Byte(s, p, b)),
        (
            any::<u32>(),
            any::<u32>(),
            prop_oneof![Just(0u32), Just(u32::MAX), 0u32..4096, any::<u32>()]
        )
            .prop_map(|(s, p, w)| Mutation::Word(s, p, w)),
    ]
}

/// Byte ranges holding metadata in a clean image, found with debugfs:
/// superblock, group descriptors, bitmaps, the used part of the inode
/// tables, directory blocks and indirect blocks.
fn hot_ranges(img: &std::path::Path, bs: u64) -> Vec<(u64, u64)> {
    let mut out = vec![
        (1024u64, 1024u64),
        ((if bs == 1024 { 2 } else { 1 }) * bs, bs),
    ];
    let stats = run(std::process::Command::new("debugfs")
        .args(["-R", "stats"])
        .arg(img));
    for line in stats.lines().filter(|l| l.contains("block bitmap at")) {
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        // " Group  N: block bitmap at B, inode bitmap at I, inode table at T"
        if let [_, b, i, t, ..] = nums[..] {
            out.extend([(b * bs, bs), (i * bs, bs), (t * bs, 2 * bs)]);
        }
    }
    let cmds = (2..40).map(|i| format!("stat <{i}>\n")).collect::<String>();
    let f = img.with_extension("cmds");
    std::fs::write(&f, cmds).unwrap();
    let stat = run(std::process::Command::new("debugfs")
        .arg("-f")
        .arg(&f)
        .arg(img));
    let mut is_dir = false;
    for line in stat.lines() {
        if line.contains("Type: ") {
            is_dir = line.contains("Type: directory");
        }
        for part in line.split(", ") {
            let Some((label, blocks)) = part.trim().split_once("):") else {
                continue;
            };
            if !(is_dir || label.contains("IND")) {
                continue;
            }
            let (a, b) = blocks.split_once('-').unwrap_or((blocks, blocks));
            if let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                for blk in a..=b.min(a + 8) {
                    out.push((blk * bs, bs));
                }
            }
        }
    }
    out
}

struct Base {
    img: Vec<u8>,
    hot: Vec<(u64, u64)>,
}

/// Walks everything reachable and tries writes; returns how many operations succeeded.
fn exercise(fs: &Ext2Fs) -> usize {
    let mut ok = 0usize;
    let mut seen = HashSet::new();
    let mut stack: Vec<(Ino, usize)> = vec![(fs.root(), 0)];
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    while let Some((d, depth)) = stack.pop() {
        if !seen.insert(d) || depth > 64 {
            continue;
        }
        dirs.push(d);
        let Ok(entries) = fs.readdir(d) else { continue };
        ok += 1;
        for e in entries {
            if e.name == b"." || e.name == b".." {
                let _ = fs.lookup(d, &e.name);
                continue;
            }
            let _ = fs.lookup(d, &e.name);
            let Ok(a) = fs.getattr(e.ino) else { continue };
            ok += 1;
            match a.kind {
                FileType::Directory => stack.push((e.ino, depth + 1)),
                FileType::Regular => {
                    files.push(e.ino);
                    let mut buf = vec![0u8; 64 << 10];
                    let mut off = 0u64;
                    // Bounded: a corrupt size may claim terabytes of holes.
                    while off < a.size.min(4 << 20) {
                        match fs.read(e.ino, off, &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => off += n as u64,
                        }
                    }
                    let _ = fs.read(e.ino, a.size.saturating_sub(10), &mut buf);
                    let _ = fs.read(e.ino, u64::MAX - 5, &mut buf);
                }
                FileType::Symlink => {
                    let _ = fs.readlink(e.ino);
                }
                _ => {}
            }
        }
    }
    let t = Timespec { sec: 1, nsec: 0 };
    let new = |kind| NewInode {
        kind,
        perm: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        time: t,
    };
    for (k, &d) in dirs.iter().take(8).enumerate() {
        if let Ok(f) = fs.create(d, format!("new{k}").as_bytes(), &new(FileType::Regular)) {
            ok += 1;
            let _ = fs.write(f, 5000, &[1u8; 20_000]);
        }
        let _ = fs.create(d, b"newdir", &new(FileType::Directory));
        let _ = fs.symlink(d, b"newlink", &[b'x'; 100], &new(FileType::Symlink));
        let _ = fs.rename(d, b"newdir", fs.root(), format!("moved{k}").as_bytes());
        let _ = fs.rename(fs.root(), format!("moved{k}").as_bytes(), d, b"back");
    }
    for (k, &f) in files.iter().take(8).enumerate() {
        let _ = fs.write(f, k as u64 * 3000, &[2u8; 9000]);
        let _ = fs.setattr(
            f,
            &SetAttr {
                size: Some(100),
                ..Default::default()
            },
        );
        let _ = fs.link(f, fs.root(), format!("hl{k}").as_bytes());
    }
    if let Ok(entries) = fs.readdir(fs.root()) {
        for e in entries.iter().take(20) {
            let _ = fs.unlink(fs.root(), &e.name);
            let _ = fs.rmdir(fs.root(), &e.name);
        }
    }
    let _ = fs.statfs();
    ok
}

fn check(base: &Base, dev_bs: usize, muts: Vec<Mutation>) -> Result<(), TestCaseError> {
    let mut img = base.img.clone();
    let len = img.len() as u64;
    let at = |sel: u32, pos: u32| -> usize {
        let off = if sel % 4 == 3 {
            u64::from(pos) % len
        } else {
            let (s, l) = base.hot[sel as usize / 4 % base.hot.len()];
            s + u64::from(pos) % l
        };
        off.min(len - 4) as usize
    };
    for m in &muts {
        match *m {
            Mutation::Byte(s, p, b) => img[at(s, p)] = b,
            Mutation::Word(s, p, w) => {
                let o = at(s, p) & !3;
                img[o..o + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let dev = Arc::new(MemDevice::from_vec(dev_bs, img));
        let r = Ext2Fs::mount(dev as Arc<dyn BlockDevice>, &MountOptions::default())
            .map(|fs| exercise(&fs));
        if std::env::var_os("CORRUPT_STATS").is_some() {
            eprintln!("STAT {:?}", r.as_ref().map_err(|e| e.to_string()));
        }
        let _ = tx.send(r.is_ok());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(_) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            return Err(TestCaseError::fail(format!("hang with {muts:?}")));
        }
        Err(_) => {}
    }
    worker
        .join()
        .map_err(|_| TestCaseError::fail(format!("panic with {muts:?}")))?;
    Ok(())
}

fn base(bs: u32, isz: u32, kib: u64) -> Base {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("d1/d2")).unwrap();
    for i in 0..30 {
        std::fs::write(tree.join(format!("d1/file{i}")), vec![i as u8; i * 997]).unwrap();
    }
    std::fs::write(tree.join("d1/d2/big"), vec![3u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("d1/file3", tree.join("fast")).unwrap();
    std::os::unix::fs::symlink("y".repeat(300), tree.join("slow")).unwrap();
    let img = d.path().join("img");
    mke2fs(&img, kib, bs, isz, Some(&tree), &["-N", "64"]);
    let hot = hot_ranges(&img, u64::from(bs));
    assert!(hot.len() > 10, "{hot:?}");
    Base {
        img: std::fs::read(&img).unwrap(),
        hot,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, max_shrink_iters: 100, ..ProptestConfig::default() })]

    #[test]
    fn corrupt_1k_images_never_panic(muts in proptest::collection::vec(mutation(), 1..16)) {
        if !have("mke2fs") { return Ok(()); }
        thread_local!(static BASE: Base = base(1024, 128, 1024));
        BASE.with(|b| check(b, 4096, muts))?;
    }

    #[test]
    fn corrupt_4k_images_never_panic(muts in proptest::collection::vec(mutation(), 1..16)) {
        if !have("mke2fs") { return Ok(()); }
        thread_local!(static BASE: Base = base(4096, 256, 2048));
        BASE.with(|b| check(b, 1024, muts))?;
    }
}

/// The unmutated bases work, so the property above is not vacuous.
#[test]
fn clean_bases_are_fully_usable() {
    if !have("mke2fs") {
        return;
    }
    for (bs, isz, kib) in [(1024, 128, 1024), (4096, 256, 2048)] {
        let (_d, fs) = mount_mem(base(bs, isz, kib).img, 4096);
        assert!(exercise(&fs) > 40);
    }
}
