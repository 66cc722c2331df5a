//! Two mounts of one ext2 image over one shared overlay store (what a guest
//! parent and its forked child have): each sees the other's creates,
//! writes, renames and unlinks, because the driver re-reads its cached
//! metadata when the store's generation moved. The result passes e2fsck.

mod common;
use common::*;
use myst_blockdev::mem::MemDevice;
use myst_blockdev::overlay::{BlockStore, Overlay};
use myst_blockdev::shared::SharedStore;
use myst_blockdev::BlockDevice;
use myst_fs::ext2::{Ext2Fs, MountOptions};
use myst_fs::{FileSystem, FileType, NewInode, Timespec};
use std::sync::Arc;

fn new_inode(kind: FileType) -> NewInode {
    NewInode {
        kind,
        perm: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        time: Timespec::default(),
    }
}

#[test]
fn two_mounts_share_one_store() {
    if !have("mke2fs") {
        eprintln!("skipping: mke2fs not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    mke2fs(&img, 4096, 1024, 128, None, &[]);
    let data = std::fs::read(&img).unwrap();
    let lower: Arc<dyn BlockDevice> = Arc::new(MemDevice::from_vec(4096, data));
    let store: Arc<dyn BlockStore> = Arc::new(SharedStore::new(4096, 8 << 20).unwrap());
    let dev_a: Arc<dyn BlockDevice> = Arc::new(Overlay::new(lower.clone(), store.clone()).unwrap());
    let dev_b: Arc<dyn BlockDevice> = Arc::new(Overlay::new(lower, store.clone()).unwrap());
    let a = Ext2Fs::mount(dev_a.clone(), &MountOptions::default()).unwrap();
    let b = Ext2Fs::mount(dev_b, &MountOptions::default()).unwrap();
    let root = a.root();
    let free0 = a.statfs().unwrap().bfree;

    // B (the "child") makes a directory and a file; A sees both.
    let d = b
        .create(root, b"d", &{
            let mut n = new_inode(FileType::Directory);
            n.perm = 0o755;
            n
        })
        .unwrap();
    let f = b.create(d, b"f", &new_inode(FileType::Regular)).unwrap();
    b.write(f, 0, &vec![b'x'; 5000]).unwrap();
    assert_eq!(a.lookup(root, b"d").unwrap(), d);
    assert_eq!(a.lookup(d, b"f").unwrap(), f);
    let mut buf = vec![0u8; 6000];
    assert_eq!(a.read(f, 0, &mut buf).unwrap(), 5000);
    assert!(buf[..5000].iter().all(|&c| c == b'x'));
    assert!(
        a.statfs().unwrap().bfree < free0,
        "A sees B's block allocations"
    );

    // A allocates next: it must not reuse B's inode or blocks.
    let g = a.create(d, b"g", &new_inode(FileType::Regular)).unwrap();
    assert_ne!(g, f);
    a.write(g, 0, b"from a").unwrap();
    b.rename(d, b"g", root, b"g2").unwrap();
    assert_eq!(a.lookup(root, b"g2").unwrap(), g);
    assert!(a.lookup(d, b"g").is_err());
    a.unlink(d, b"f").unwrap();
    assert!(b.lookup(d, b"f").is_err());
    let names: Vec<Vec<u8>> = b
        .readdir(root)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&b"g2".to_vec()) && names.contains(&b"d".to_vec()));

    // Write the merged image out and check it.
    let mut whole = vec![0u8; dev_a.block_count() as usize * 4096];
    dev_a.read_blocks(0, &mut whole).unwrap();
    let out = dir.path().join("b.img");
    std::fs::write(&out, &whole).unwrap();
    let r = output(std::process::Command::new("e2fsck").args(["-fn"]).arg(&out));
    assert!(
        r.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
}
