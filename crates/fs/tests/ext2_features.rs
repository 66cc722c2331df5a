//! Feature handling and structures beyond the model test: refusals naming
//! the feature, read-only mounts, ext3, hashed-index directories, triple
//! indirect blocks, unlinked-but-open inodes.

mod common;
use common::*;
use myst_blockdev::mem::MemDevice;
use myst_blockdev::BlockDevice;
use myst_fs::ext2::{Ext2Fs, MountOptions};
use myst_fs::{Errno, FileSystem, FileType, NewInode, SetAttr, Timespec};
use std::process::Command;
use std::sync::Arc;

fn file(perm: u32) -> NewInode {
    NewInode {
        kind: FileType::Regular,
        perm,
        uid: 0,
        gid: 0,
        rdev: 0,
        time: Timespec {
            sec: 1_700_000_000,
            nsec: 0,
        },
    }
}

fn dir() -> NewInode {
    NewInode {
        kind: FileType::Directory,
        ..file(0o755)
    }
}

fn mount_bytes(data: Vec<u8>) -> Result<(Arc<MemDevice>, Ext2Fs), String> {
    let dev = Arc::new(MemDevice::from_vec(4096, data));
    Ext2Fs::mount(
        dev.clone() as Arc<dyn BlockDevice>,
        &MountOptions::default(),
    )
    .map(|fs| (dev, fs))
    .map_err(|e| e.to_string())
}

fn e2fsck_clean(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    std::fs::write(&img, data).unwrap();
    let out = output(Command::new("e2fsck").arg("-fn").arg(&img));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !report.contains("? no"),
        "e2fsck:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refuses_unsupported_features_by_name() {
    if !have("mke2fs") || !have("debugfs") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    for (feature, name) in [
        ("extent", "extents"),
        ("64bit", "64bit"),
        ("meta_bg", "meta_bg"),
        ("inline_data", "inline_data"),
        ("needs_recovery", "needs_recovery"),
    ] {
        mke2fs(&img, 4096, 1024, 128, None, &[]);
        run(Command::new("debugfs")
            .args(["-w", "-R", &format!("feature {feature}")])
            .arg(&img));
        let err = mount_bytes(std::fs::read(&img).unwrap())
            .err()
            .unwrap_or_default();
        assert!(
            err.contains(&format!("unsupported ext2 feature: {name}")),
            "{feature}: {err}"
        );
    }
    mke2fs(&img, 4096, 1024, 128, None, &[]);
    run(Command::new("debugfs")
        .args(["-w", "-R", "ssv feature_incompat 0x40002"])
        .arg(&img));
    let err = mount_bytes(std::fs::read(&img).unwrap())
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("unknown incompatible feature bits 0x40000"),
        "{err}"
    );
    // A whole ext4 file system names its first unsupported feature.
    let _ = std::fs::remove_file(&img);
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4"])
        .arg(&img)
        .arg("8M"));
    let err = mount_bytes(std::fs::read(&img).unwrap())
        .err()
        .unwrap_or_default();
    assert!(err.contains("unsupported ext2 feature: extents"), "{err}");
}

#[test]
fn ro_compat_features_mount_read_only() {
    if !have("mke2fs") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    let tree = d.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("hello"), b"hello\n").unwrap();
    for (opt, name) in [
        ("metadata_csum", "metadata_csum"),
        ("uninit_bg", "uninit_bg"),
        ("huge_file", "huge_file"),
    ] {
        mke2fs(&img, 4096, 1024, 256, Some(&tree), &["-O", opt]);
        let (_dev, fs) = mount_bytes(std::fs::read(&img).unwrap()).unwrap();
        assert_eq!(
            fs.read_only_reason().as_deref(),
            Some(format!("feature {name}").as_str())
        );
        let ino = fs.lookup(fs.root(), b"hello").unwrap();
        let mut b = [0u8; 16];
        assert_eq!(fs.read(ino, 0, &mut b).unwrap(), 6);
        assert_eq!(
            fs.create(fs.root(), b"x", &file(0o644)).unwrap_err(),
            Errno::EROFS
        );
        assert_eq!(fs.write(ino, 0, b"x").unwrap_err(), Errno::EROFS);
    }
}

#[test]
fn ext3_without_recovery_is_read_write() {
    if !have("mke2fs") || !have("e2fsck") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    let tree = d.path().join("tree");
    make_tree(&tree, 3);
    let _ = std::fs::remove_file(&img);
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext3", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("16M"));
    let (dev, fs) = mount_bytes(std::fs::read(&img).unwrap()).unwrap();
    assert_eq!(fs.read_only_reason(), None);
    assert_eq!(walk_fs(&fs), walk_host(&tree));
    let ino = fs.create(fs.root(), b"new", &file(0o600)).unwrap();
    fs.write(ino, 0, &vec![7u8; 100_000]).unwrap();
    let a = fs.lookup(fs.root(), b"a").unwrap();
    fs.unlink(a, b"f4").unwrap();
    e2fsck_clean(&dev.to_vec());
}

#[test]
fn hashed_directories_read_linearly_and_lose_their_index_when_modified() {
    if !have("mke2fs") || !have("e2fsck") || !have("debugfs") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("big")).unwrap();
    for i in 0..600 {
        std::fs::write(
            tree.join(format!("big/entry-number-{i:05}")),
            format!("{i}"),
        )
        .unwrap();
    }
    mke2fs(&img, 8192, 1024, 256, Some(&tree), &[]);
    // e2fsck -D builds hashed indexes for large directories.
    let _ = output(Command::new("e2fsck").arg("-fyD").arg(&img));
    let stat = run(Command::new("debugfs").args(["-R", "stat /big"]).arg(&img));
    assert!(
        stat.contains("Flags: 0x1000"),
        "big should be indexed: {stat}"
    );
    let (dev, fs) = mount_bytes(std::fs::read(&img).unwrap()).unwrap();
    let big = fs.lookup(fs.root(), b"big").unwrap();
    let names: Vec<_> = fs
        .readdir(big)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 602);
    for i in (0..600).step_by(37) {
        let ino = fs
            .lookup(big, format!("entry-number-{i:05}").as_bytes())
            .unwrap();
        let mut b = [0u8; 8];
        let n = fs.read(ino, 0, &mut b).unwrap();
        assert_eq!(&b[..n], i.to_string().as_bytes());
    }
    for i in 0..50 {
        fs.create(big, format!("added-{i}").as_bytes(), &file(0o644))
            .unwrap();
        fs.unlink(big, format!("entry-number-{:05}", i * 3).as_bytes())
            .unwrap();
    }
    assert_eq!(fs.readdir(big).unwrap().len(), 602);
    let data = dev.to_vec();
    e2fsck_clean(&data);
    std::fs::write(&img, &data).unwrap();
    let stat = run(Command::new("debugfs").args(["-R", "stat /big"]).arg(&img));
    assert!(
        stat.contains("Flags: 0x0"),
        "index flag must be cleared: {stat}"
    );
}

#[test]
fn triple_indirect_blocks_and_truncate() {
    if !have("mke2fs") || !have("e2fsck") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    mke2fs(&img, 4096, 1024, 128, None, &[]);
    let (dev, fs) = mount_mem(std::fs::read(&img).unwrap(), 4096);
    let ino = fs.create(fs.root(), b"sparse", &file(0o644)).unwrap();
    let free0 = fs.statfs().unwrap().bfree;
    // 1 KiB blocks: triple indirection starts at (12 + 256 + 65536) KiB.
    let offsets = [
        0u64,
        12 << 10,
        300 << 10,
        70 << 20,
        (12 + 256 + 65536) << 10,
        5 << 30,
    ];
    for (k, &off) in offsets.iter().enumerate() {
        fs.write(ino, off, &[k as u8 + 1; 3000]).unwrap();
    }
    let a = fs.getattr(ino).unwrap();
    assert_eq!(a.size, (5 << 30) + 3000);
    for (k, &off) in offsets.iter().enumerate() {
        let mut b = vec![0u8; 3100];
        fs.read(ino, off.saturating_sub(50), &mut b).unwrap();
        if off >= 50 {
            assert!(b[..50].iter().all(|&x| x == 0), "hole before {off}");
        }
        let s = if off >= 50 { 50 } else { 0 };
        assert!(
            b[s..s + 3000].iter().all(|&x| x == k as u8 + 1),
            "data at {off}"
        );
    }
    let used = free0 - fs.statfs().unwrap().bfree;
    assert_eq!(
        a.blocks,
        used * 2,
        "i_blocks counts data and indirect blocks"
    );
    e2fsck_clean(&dev.to_vec());
    // Shrink into the double-indirect range, then to zero.
    fs.setattr(
        ino,
        &SetAttr {
            size: Some(301 << 10),
            ..Default::default()
        },
    )
    .unwrap();
    let mut b = vec![0u8; 4096];
    assert_eq!(fs.read(ino, 300 << 10, &mut b).unwrap(), 1024);
    assert!(b[..1024].iter().all(|&x| x == 3));
    e2fsck_clean(&dev.to_vec());
    // Growing again must show zeros where the old data was cut off.
    fs.setattr(
        ino,
        &SetAttr {
            size: Some((300 << 10) + 100),
            ..Default::default()
        },
    )
    .unwrap();
    fs.setattr(
        ino,
        &SetAttr {
            size: Some(400 << 10),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fs.read(ino, 300 << 10, &mut b).unwrap(), 4096);
    assert!(b[..100].iter().all(|&x| x == 3) && b[100..].iter().all(|&x| x == 0));
    fs.setattr(
        ino,
        &SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fs.statfs().unwrap().bfree, free0);
    assert_eq!(fs.getattr(ino).unwrap().blocks, 0);
    e2fsck_clean(&dev.to_vec());
    // Past the block map: EFBIG.
    assert_eq!(fs.write(ino, 1 << 42, b"x").unwrap_err(), Errno::EFBIG);
}

#[test]
fn unlinked_open_files_live_until_released() {
    if !have("mke2fs") || !have("e2fsck") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    mke2fs(&img, 4096, 4096, 256, None, &[]);
    let (dev, fs) = mount_mem(std::fs::read(&img).unwrap(), 4096);
    let free0 = fs.statfs().unwrap();
    let ino = fs.create(fs.root(), b"tmp", &file(0o600)).unwrap();
    fs.write(ino, 0, &[5u8; 50_000]).unwrap();
    fs.retain(ino);
    fs.unlink(fs.root(), b"tmp").unwrap();
    assert_eq!(fs.lookup(fs.root(), b"tmp").unwrap_err(), Errno::ENOENT);
    let mut b = vec![0u8; 50_000];
    assert_eq!(fs.read(ino, 0, &mut b).unwrap(), 50_000);
    assert!(b.iter().all(|&x| x == 5));
    fs.write(ino, 50_000, &[6u8; 10]).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().nlink, 0);
    fs.release(ino);
    let after = fs.statfs().unwrap();
    assert_eq!((after.bfree, after.ffree), (free0.bfree, free0.ffree));
    e2fsck_clean(&dev.to_vec());
    // The same for a directory that is someone's cwd.
    let sub = fs.create(fs.root(), b"sub", &dir()).unwrap();
    fs.retain(sub);
    fs.rmdir(fs.root(), b"sub").unwrap();
    assert_eq!(fs.readdir(sub).unwrap().len(), 2);
    fs.release(sub);
    let after = fs.statfs().unwrap();
    assert_eq!((after.bfree, after.ffree), (free0.bfree, free0.ffree));
    e2fsck_clean(&dev.to_vec());
}

#[test]
fn enospc_is_clean_and_recoverable() {
    if !have("mke2fs") || !have("e2fsck") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    mke2fs(&img, 1024, 1024, 128, None, &["-N", "64", "-m", "0"]);
    let (dev, fs) = mount_mem(std::fs::read(&img).unwrap(), 1024);
    let ino = fs.create(fs.root(), b"fill", &file(0o644)).unwrap();
    let chunk = vec![9u8; 64 << 10];
    let mut total = 0u64;
    loop {
        match fs.write(ino, total, &chunk) {
            Ok(n) => total += n as u64,
            Err(e) => {
                assert_eq!(e, Errno::ENOSPC);
                break;
            }
        }
    }
    assert!(total > 700 << 10, "{total}");
    assert_eq!(fs.getattr(ino).unwrap().size, total);
    assert_eq!(fs.statfs().unwrap().bfree, 0);
    let mut n = 0;
    while fs
        .create(fs.root(), format!("f{n}").as_bytes(), &file(0o644))
        .is_ok()
    {
        n += 1;
    }
    e2fsck_clean(&dev.to_vec());
    fs.setattr(
        ino,
        &SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    let sub = fs.create(fs.root(), b"ok", &dir());
    assert!(sub.is_ok() || sub == Err(Errno::ENOSPC), "{sub:?}");
    e2fsck_clean(&dev.to_vec());
}

#[test]
fn running_out_of_ephemeral_budget_keeps_the_file_system_consistent() {
    use myst_blockdev::overlay::Overlay;
    if !have("mke2fs") || !have("e2fsck") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    let tree = d.path().join("tree");
    make_tree(&tree, 9);
    for (bs, seed) in [
        (1024u32, 1u64),
        (4096, 2),
        (1024, 3),
        (2048, 4),
        (4096, 5),
        (1024, 6),
    ] {
        mke2fs(&img, 16 << 10, bs, 256, Some(&tree), &[]);
        let lower = Arc::new(MemDevice::from_vec(4096, std::fs::read(&img).unwrap()));
        let ov = Arc::new(Overlay::in_memory(lower, (300 + 100 * seed) << 10));
        let fs =
            Ext2Fs::mount(ov.clone() as Arc<dyn BlockDevice>, &MountOptions::default()).unwrap();
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut enospc = 0;
        let mut dirs = vec![fs.root()];
        for _ in 0..400 {
            let d = dirs[rnd(dirs.len() as u64) as usize];
            let name = format!("n{}", rnd(12));
            let r = match rnd(8) {
                0 | 1 => fs.create(d, name.as_bytes(), &file(0o644)).and_then(|f| {
                    let len = rnd(200_000) as usize;
                    fs.write(f, rnd(100_000), &vec![3u8; len]).map(|_| ())
                }),
                2 => fs.create(d, name.as_bytes(), &dir()).map(|i| dirs.push(i)),
                3 => fs.unlink(d, name.as_bytes()),
                4 => fs.rmdir(d, name.as_bytes()),
                5 => fs.rename(
                    d,
                    name.as_bytes(),
                    dirs[rnd(dirs.len() as u64) as usize],
                    format!("m{}", rnd(5)).as_bytes(),
                ),
                6 => fs
                    .symlink(
                        d,
                        name.as_bytes(),
                        &vec![b'q'; rnd(300) as usize + 1],
                        &file(0o777),
                    )
                    .map(|_| ()),
                _ => fs.lookup(d, name.as_bytes()).and_then(|f| {
                    fs.setattr(
                        f,
                        &SetAttr {
                            size: Some(rnd(300_000)),
                            ..Default::default()
                        },
                    )
                    .map(|_| ())
                }),
            };
            if let Err(e) = r {
                if e.code == Errno::ENOSPC.code {
                    enospc += 1;
                }
            }
            // Directories removed by rmdir/rename stay in `dirs`; their ops fail (ENOENT/ENOTDIR), which is fine.
        }
        assert!(
            enospc > 10,
            "the budget was hit ({enospc} times) with bs {bs}"
        );
        let mut all = vec![0u8; (ov.block_count() * 4096) as usize];
        ov.read_blocks(0, &mut all).unwrap();
        e2fsck_clean(&all);
        // Reads still work after running out.
        assert!(!walk_fs(&fs).is_empty());
    }
}
