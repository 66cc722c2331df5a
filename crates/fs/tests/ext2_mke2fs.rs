//! The ext2 driver reads images made by stock mke2fs -d exactly like the
//! source tree, for every supported geometry.

mod common;
use common::*;

#[test]
fn reads_mke2fs_images_of_all_geometries() {
    if !have("mke2fs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree, 1);
    let want = walk_host(&tree);
    for (bs, isz, dev_bs) in [
        (1024, 128, 4096),
        (1024, 256, 1024),
        (2048, 256, 4096),
        (4096, 128, 4096),
        (4096, 256, 512),
    ] {
        let img = dir.path().join("img");
        mke2fs(&img, 8192, bs, isz, Some(&tree), &[]);
        let (_dev, fs) = mount_mem(std::fs::read(&img).unwrap(), dev_bs);
        let got = walk_fs(&fs);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "bs {bs} isz {isz}"
        );
        for (k, v) in &want {
            assert_eq!(&got[k], v, "{k} with bs {bs} isz {isz}");
        }
    }
}
