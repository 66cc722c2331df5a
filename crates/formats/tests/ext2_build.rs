//! The ext2 builder on in-memory trees, checked with e2fsck, debugfs and
//! veritysetup: huge sparse files, triple indirect blocks, huge
//! directories, the header/transform hooks an encrypting layer uses,
//! determinism across thread counts, and the errors for trees ext2 cannot
//! hold.

use myst_formats::ext2::{
    build, structs, FileData, Image, Meta, NodeKind, Options, Payload, Transform, Tree,
};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

fn meta(perm: u16) -> Meta {
    Meta {
        perm,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
    }
}

fn file(data: FileData) -> NodeKind {
    NodeKind::File(data)
}

fn build_to(tree: &Tree, opts: &Options, payload: &Payload) -> (tempfile::NamedTempFile, Image) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let img = build(tree, out.as_file(), out.path(), opts, payload, None).unwrap();
    (out, img)
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A sparse copy of `len` bytes of `src` from `off`, through `f`.
fn extract(src: &Path, off: u64, len: u64, dst: &Path, f: &dyn Fn(&mut [u8], u64)) {
    let i = std::fs::File::open(src).unwrap();
    let o = std::fs::File::create(dst).unwrap();
    o.set_len(len).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        i.read_exact_at(&mut buf[..n], off + pos).unwrap();
        f(&mut buf[..n], pos);
        if buf[..n].iter().any(|&b| b != 0) {
            o.write_all_at(&buf[..n], pos).unwrap();
        }
        pos += n as u64;
    }
}

fn e2fsck(ext2: &Path) {
    run(Command::new("e2fsck").arg("-fn").arg(ext2));
}

fn ext2_of(img: &tempfile::NamedTempFile, image: &Image) -> tempfile::TempPath {
    let p = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(img.path())
        .arg(&p));
    run(Command::new("truncate")
        .arg("-s")
        .arg(image.hash_offset.to_string())
        .arg(&p));
    p
}

fn verify(img: &Path, image: &Image) -> bool {
    let hex: String = image.root_hash.iter().map(|b| format!("{b:02x}")).collect();
    Command::new("veritysetup")
        .arg("verify")
        .arg(format!("--hash-offset={}", image.hash_offset))
        .arg(img)
        .arg(img)
        .arg(hex)
        .output()
        .unwrap()
        .status
        .success()
}

/// Reads logical block `lblk` of inode `ino` through debugfs's block map.
fn read_block(ext2: &Path, ino: u32, lblk: u64, bs: u64) -> Vec<u8> {
    let out = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("bmap <{ino}> {lblk}"))
        .arg(ext2));
    let phys: u64 = out.trim().parse().unwrap();
    let mut b = vec![0u8; bs as usize];
    if phys != 0 {
        std::fs::File::open(ext2)
            .unwrap()
            .read_exact_at(&mut b, phys * bs)
            .unwrap();
    }
    b
}

fn ino_of(ext2: &Path, path: &str) -> u32 {
    let out = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(ext2));
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn sparse_5gib_file_uses_triple_indirect_blocks() {
    let size = 5u64 << 30;
    let pieces: Vec<(u64, Vec<u8>)> = vec![
        (0, b"first bytes".to_vec()),
        ((4 << 30) - 5, b"across 4 GiB".to_vec()),
        ((4 << 30) + (64 << 20), vec![0x5a; 10_000]),
        (size - 3, b"end".to_vec()),
    ];
    let mut tree = Tree::new(meta(0o755));
    tree.add(
        Tree::ROOT,
        b"big",
        meta(0o644),
        file(FileData::Sparse {
            size,
            extents: pieces.clone(),
        }),
    );
    let (img, image) = build_to(&tree, &Options::default(), &Payload::default());
    // No veritysetup verify here: it reads and hashes all 7.5 GiB (20 s);
    // the verity tree is checked on the other images.
    let ext = ext2_of(&img, &image);
    e2fsck(&ext);
    let stat = run(Command::new("debugfs").arg("-R").arg("stat /big").arg(&ext));
    assert!(stat.contains(&format!("Size: {size}")), "{stat}");
    assert!(
        stat.contains("(TIND)"),
        "triple indirect block expected:\n{stat}"
    );
    let ino = ino_of(&ext, "/big");
    for (off, bytes) in &pieces {
        let mut got = Vec::new();
        let mut lb = off / 4096;
        while (got.len() as u64) < (off % 4096) + bytes.len() as u64 {
            got.extend(read_block(&ext, ino, lb, 4096));
            lb += 1;
        }
        let s = (off % 4096) as usize;
        assert_eq!(&got[s..s + bytes.len()], &bytes[..], "data at {off}");
    }
    // A hole reads as zeros and has no block.
    assert!(read_block(&ext, ino, 1 << 19, 4096).iter().all(|&b| b == 0));
}

#[test]
fn triple_indirect_with_1k_blocks() {
    // With 1 KiB blocks triple indirect starts at (12+256+65536) KiB.
    let size = 80u64 << 20;
    let tail = (0..5000u32)
        .flat_map(|i| i.to_le_bytes())
        .collect::<Vec<u8>>();
    let mut tree = Tree::new(meta(0o755));
    tree.add(
        Tree::ROOT,
        b"f",
        meta(0o600),
        file(FileData::Sparse {
            size,
            extents: vec![(size - tail.len() as u64, tail.clone())],
        }),
    );
    let opts = Options {
        block_size: 1024,
        ..Options::default()
    };
    let (img, image) = build_to(&tree, &opts, &Payload::default());
    assert!(verify(img.path(), &image));
    let ext = ext2_of(&img, &image);
    e2fsck(&ext);
    let stat = run(Command::new("debugfs").arg("-R").arg("stat /f").arg(&ext));
    assert!(stat.contains("(TIND)"), "{stat}");
    let dumped = tempfile::NamedTempFile::new().unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /f {}", dumped.path().display()))
        .arg(&ext));
    let data = std::fs::read(dumped.path()).unwrap();
    assert_eq!(data.len() as u64, size);
    assert_eq!(&data[data.len() - tail.len()..], &tail[..]);
    assert!(data[..data.len() - tail.len()].iter().all(|&b| b == 0));
}

#[test]
fn directory_with_100000_entries() {
    let mut tree = Tree::new(meta(0o755));
    let dir = tree.add(Tree::ROOT, b"big", meta(0o755), NodeKind::Dir(Vec::new()));
    let shared = tree.add(
        dir,
        b"shared",
        meta(0o644),
        file(FileData::Memory(b"x".to_vec())),
    );
    for i in 0..100_000u32 {
        let name = format!("entry-{i:06}");
        if i % 10 == 0 {
            tree.link(dir, name.as_bytes(), shared);
        } else {
            tree.add(
                dir,
                name.as_bytes(),
                meta(0o644),
                file(FileData::Memory(Vec::new())),
            );
        }
    }
    // Too many for the Mystikos size (8 MiB): the builder grows it.
    let (img, image) = build_to(&tree, &Options::default(), &Payload::default());
    assert!(image.geometry.inodes_count() > 90_000);
    let ext = ext2_of(&img, &image);
    e2fsck(&ext);
    let ls = run(Command::new("debugfs")
        .arg("-R")
        .arg("ls -p /big")
        .arg(&ext));
    let names = ls.lines().filter(|l| l.contains("/entry-")).count();
    assert_eq!(names, 100_000);
    let stat = run(Command::new("debugfs")
        .arg("-R")
        .arg("stat /big/shared")
        .arg(&ext));
    assert!(stat.contains("Links: 10001"), "{stat}");
    assert!(verify(img.path(), &image));
}

#[test]
fn header_and_transform_are_covered_by_verity() {
    let mut tree = Tree::new(meta(0o755));
    tree.add(
        Tree::ROOT,
        b"hello",
        meta(0o644),
        file(FileData::Memory(b"hello\n".repeat(3000))),
    );
    let header: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    // A toy cipher that depends on the payload offset, as XTS does.
    let xor = |buf: &mut [u8], off: u64| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= ((off + i as u64) % 253) as u8 ^ 0xa5;
        }
    };
    let t: &Transform = &xor;
    for bs in [4096, 1024] {
        let opts = Options {
            block_size: bs,
            ..Options::default()
        };
        let payload = Payload {
            header: &header,
            transform: Some(t),
        };
        let (img, image) = build_to(&tree, &opts, &payload);
        assert_eq!(
            image.hash_offset,
            header.len() as u64 + image.geometry.bytes()
        );
        assert!(
            verify(img.path(), &image),
            "verity over header + ciphertext"
        );
        let mut h = vec![0u8; header.len()];
        img.as_file().read_exact_at(&mut h, 0).unwrap();
        assert_eq!(h, header);
        // Every payload block was transformed, free ones too.
        let mut last = vec![0u8; 4096];
        img.as_file()
            .read_exact_at(&mut last, image.hash_offset - 4096)
            .unwrap();
        assert!(last.iter().any(|&b| b != 0));
        let plain = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        extract(
            img.path(),
            header.len() as u64,
            image.geometry.bytes(),
            &plain,
            &xor,
        );
        e2fsck(&plain);
        let cat = run(Command::new("debugfs")
            .arg("-R")
            .arg("cat /hello")
            .arg(&plain));
        assert_eq!(cat, "hello\n".repeat(3000));
    }
}

fn sample_tree() -> Tree {
    let mut tree = Tree::new(meta(0o755));
    let d = tree.add(Tree::ROOT, b"d", meta(0o700), NodeKind::Dir(Vec::new()));
    for i in 0..50u32 {
        let data: Vec<u8> = (0..i * 3000).map(|j| (j * 7 + i) as u8).collect();
        tree.add(
            d,
            format!("f{i}").as_bytes(),
            meta(0o644),
            file(FileData::Memory(data)),
        );
    }
    tree.add(
        Tree::ROOT,
        b"l",
        meta(0o777),
        NodeKind::Symlink(b"d/f1".to_vec()),
    );
    tree
}

#[test]
fn same_bytes_with_any_thread_count_and_io_mode() {
    let tree = sample_tree();
    let mut images = Vec::new();
    for (threads, direct_io) in [(0, false), (1, true), (3, true), (2, false)] {
        let opts = Options {
            threads,
            direct_io,
            ..Options::default()
        };
        let (img, image) = build_to(&tree, &opts, &Payload::default());
        images.push((std::fs::read(img.path()).unwrap(), image.root_hash));
    }
    for w in images.windows(2) {
        assert_eq!(w[0].1, w[1].1);
        assert!(w[0].0 == w[1].0, "images differ");
    }
    // The salt follows the tree: one more byte of metadata changes it.
    let mut other = sample_tree();
    other.nodes[0].meta.mtime += 1;
    let (_, a) = build_to(&tree, &Options::default(), &Payload::default());
    let (_, b) = build_to(&other, &Options::default(), &Payload::default());
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.uuid, b.uuid);
}

#[test]
fn min_size_only_raises() {
    let tree = sample_tree();
    let small = Options {
        min_size: 1 << 20,
        ..Options::default()
    };
    let (_, a) = build_to(&tree, &small, &Payload::default());
    assert_eq!(a.geometry.bytes(), 8 << 20);
    let big = Options {
        min_size: 100 << 20,
        ..Options::default()
    };
    let (_, b) = build_to(&tree, &big, &Payload::default());
    assert_eq!(b.geometry.bytes(), 100 << 20);
}

fn build_err(tree: &Tree, opts: &Options) -> String {
    let out = tempfile::NamedTempFile::new().unwrap();
    build(
        tree,
        out.as_file(),
        out.path(),
        opts,
        &Payload::default(),
        None,
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn trees_ext2_cannot_hold_are_refused() {
    let opts = Options::default();
    let mut t = Tree::new(meta(0o755));
    t.add(
        Tree::ROOT,
        b"a",
        meta(0o644),
        file(FileData::Memory(Vec::new())),
    );
    t.add(
        Tree::ROOT,
        b"a",
        meta(0o644),
        file(FileData::Memory(Vec::new())),
    );
    assert!(build_err(&t, &opts).contains("duplicate name"));

    for bad in [&b""[..], b"a/b", b".", b"..", b"nul\0"] {
        let mut t = Tree::new(meta(0o755));
        t.add(Tree::ROOT, bad, meta(0o644), NodeKind::Fifo);
        assert!(build_err(&t, &opts).contains("invalid name"), "{bad:?}");
    }
    let mut t = Tree::new(meta(0o755));
    t.add(Tree::ROOT, &[b'n'; 256], meta(0o644), NodeKind::Fifo);
    assert!(build_err(&t, &opts).contains("invalid name"));
    let mut t = Tree::new(meta(0o755));
    t.add(Tree::ROOT, &[b'n'; 255], meta(0o644), NodeKind::Fifo);
    let out = tempfile::NamedTempFile::new().unwrap();
    build(
        &t,
        out.as_file(),
        out.path(),
        &opts,
        &Payload::default(),
        None,
    )
    .unwrap();

    let mut t = Tree::new(meta(0o755));
    let d = t.add(Tree::ROOT, b"d", meta(0o755), NodeKind::Dir(Vec::new()));
    t.link(Tree::ROOT, b"again", d);
    assert!(build_err(&t, &opts).contains("linked more than once"));

    let mut t = Tree::new(meta(0o755));
    t.add(
        Tree::ROOT,
        b"l",
        meta(0o777),
        NodeKind::Symlink(vec![b'x'; 1024]),
    );
    let one_k = Options {
        block_size: 1024,
        ..Options::default()
    };
    assert!(build_err(&t, &one_k).contains("symbolic link target of 1024 bytes"));

    let mut t = Tree::new(meta(0o755));
    t.add(
        Tree::ROOT,
        b"c",
        meta(0o600),
        NodeKind::CharDev {
            major: 5000,
            minor: 1,
        },
    );
    assert!(build_err(&t, &opts).contains("device 5000:1"));

    let mut t = Tree::new(meta(0o755));
    t.add(
        Tree::ROOT,
        b"huge",
        meta(0o600),
        file(FileData::Sparse {
            size: 20 << 30,
            extents: vec![],
        }),
    );
    assert!(build_err(&t, &one_k).contains("larger than the largest ext2 file"));

    let mut t = Tree::new(meta(0o755));
    t.add(
        Tree::ROOT,
        b"s",
        meta(0o600),
        file(FileData::Sparse {
            size: 100,
            extents: vec![(50, vec![1; 60])],
        }),
    );
    assert!(build_err(&t, &opts).contains("sparse extents"));

    let mut t = Tree::new(meta(0o755));
    t.add(Tree::ROOT, b"lost+found", meta(0o600), NodeKind::Fifo);
    assert!(build_err(&t, &opts).contains("lost+found"));

    assert!(build_err(
        &sample_tree(),
        &Options {
            block_size: 8192,
            ..Options::default()
        }
    )
    .contains("block size"));
}

#[test]
fn own_lost_found_is_kept() {
    let mut t = Tree::new(meta(0o755));
    let lf = t.add(
        Tree::ROOT,
        b"lost+found",
        meta(0o750),
        NodeKind::Dir(Vec::new()),
    );
    t.add(
        lf,
        b"kept",
        meta(0o644),
        file(FileData::Memory(b"k".to_vec())),
    );
    let (img, image) = build_to(&t, &Options::default(), &Payload::default());
    let ext = ext2_of(&img, &image);
    e2fsck(&ext);
    assert_eq!(ino_of(&ext, "/lost+found"), structs::FIRST_INO);
    let cat = run(Command::new("debugfs")
        .arg("-R")
        .arg("cat /lost+found/kept")
        .arg(&ext));
    assert_eq!(cat, "k");
}

mod random_trees {
    //! Random trees (files with holes and zero blocks, symlinks, hard
    //! links, nested directories) built with random block sizes: e2fsck
    //! finds them clean, veritysetup verifies them, and debugfs rdump gives
    //! back the same contents.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Item {
        File(Vec<(u64, Vec<u8>)>, u64),
        Link(String),
        Dir(Vec<(String, Item)>),
        HardLink(usize),
    }

    fn item(depth: u32) -> BoxedStrategy<Item> {
        let file = (
            proptest::collection::vec(
                (
                    0u64..300_000,
                    proptest::collection::vec(any::<u8>(), 0..6000),
                ),
                0..4,
            ),
            0u64..400_000,
        )
            .prop_map(|(mut ext, extra)| {
                ext.sort_by_key(|e| e.0);
                // Make extents disjoint and sorted.
                let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
                let mut end = 0;
                for (o, b) in ext {
                    let o = o.max(end);
                    end = o + b.len() as u64;
                    out.push((o, b));
                }
                Item::File(out, end + extra % 9000)
            });
        let link = "[a-z/.]{1,120}".prop_map(Item::Link);
        let hard = (0usize..8).prop_map(Item::HardLink);
        if depth == 0 {
            prop_oneof![4 => file, 1 => link, 1 => hard].boxed()
        } else {
            let dir = proptest::collection::vec(("[a-zA-Z0-9_-]{1,30}", item(depth - 1)), 0..8)
                .prop_map(Item::Dir);
            prop_oneof![4 => file, 1 => link, 1 => hard, 2 => dir].boxed()
        }
    }

    /// Adds `items` under `dir`; returns the files made (for hard links).
    fn add(tree: &mut Tree, dir: usize, items: &[(String, Item)], files: &mut Vec<usize>) {
        let mut seen = std::collections::HashSet::new();
        for (name, it) in items {
            if name == "lost+found" || !seen.insert(name.clone()) {
                continue;
            }
            let m = meta(0o640);
            match it {
                Item::File(ext, size) => {
                    let id = tree.add(
                        dir,
                        name.as_bytes(),
                        m,
                        file(FileData::Sparse {
                            size: *size,
                            extents: ext.clone(),
                        }),
                    );
                    files.push(id);
                }
                Item::Link(t) => {
                    tree.add(
                        dir,
                        name.as_bytes(),
                        meta(0o777),
                        NodeKind::Symlink(t.clone().into_bytes()),
                    );
                }
                Item::HardLink(i) if !files.is_empty() => {
                    let target = files[i % files.len()];
                    tree.link(dir, name.as_bytes(), target);
                }
                Item::HardLink(_) => {}
                Item::Dir(children) => {
                    let d = tree.add(dir, name.as_bytes(), meta(0o755), NodeKind::Dir(Vec::new()));
                    add(tree, d, children, files);
                }
            }
        }
    }

    /// What a tree should read back as: path -> file bytes, link target or dir.
    fn expected(tree: &Tree, id: usize, path: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        if let NodeKind::Dir(entries) = &tree.nodes[id].kind {
            for (name, child) in entries {
                let p = format!("{path}/{}", String::from_utf8_lossy(name));
                match &tree.nodes[*child].kind {
                    NodeKind::Dir(_) => {
                        out.insert(p.clone(), b"<dir>".to_vec());
                        expected(tree, *child, &p, out);
                    }
                    NodeKind::File(FileData::Sparse { size, extents }) => {
                        let mut v = vec![0u8; *size as usize];
                        for (o, b) in extents {
                            v[*o as usize..*o as usize + b.len()].copy_from_slice(b);
                        }
                        out.insert(p, v);
                    }
                    NodeKind::Symlink(t) => {
                        let mut v = b"<link>".to_vec();
                        v.extend_from_slice(t);
                        out.insert(p, v);
                    }
                    _ => unreachable!(),
                }
            }
        }
    }

    fn read_back(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                read_back(root, &p, out);
            } else if ft.is_symlink() {
                let mut v = b"<link>".to_vec();
                use std::os::unix::ffi::OsStrExt;
                v.extend_from_slice(std::fs::read_link(&p).unwrap().as_os_str().as_bytes());
                out.insert(rel, v);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
        #[test]
        fn random_tree_reads_back(items in proptest::collection::vec(("[a-zA-Z0-9_.-]{1,40}", item(2)), 0..12),
                                  bs in prop_oneof![Just(1024u64), Just(2048), Just(4096)]) {
            prop_assume!(items.iter().all(|(n, _)| n != "." && n != ".."));
            let mut tree = Tree::new(meta(0o755));
            let mut files = Vec::new();
            add(&mut tree, Tree::ROOT, &items, &mut files);
            let opts = Options { block_size: bs, ..Options::default() };
            let (img, image) = build_to(&tree, &opts, &Payload::default());
            prop_assert!(verify(img.path(), &image));
            let ext = ext2_of(&img, &image);
            e2fsck(&ext);
            let out = tempfile::tempdir().unwrap();
            run(Command::new("debugfs").arg("-R").arg(format!("rdump / {}", out.path().display())).arg(&ext));
            let mut want = BTreeMap::new();
            expected(&tree, Tree::ROOT, "", &mut want);
            want.insert("/lost+found".into(), b"<dir>".to_vec());
            let mut got = BTreeMap::new();
            read_back(out.path(), out.path(), &mut got);
            prop_assert_eq!(got.len(), want.len());
            for (p, w) in &want {
                prop_assert!(got.get(p) == Some(w), "{} differs", p);
            }
        }
    }
}

#[test]
fn indirect_blocks_sit_before_the_data_they_map() {
    // 5 MiB dense: direct, single and double indirect with 4 KiB blocks.
    let data: Vec<u8> = (0..5u32 << 20).map(|i| (i % 249) as u8 | 1).collect();
    let mut tree = Tree::new(meta(0o755));
    tree.add(Tree::ROOT, b"f", meta(0o644), file(FileData::Memory(data)));
    let (img, image) = build_to(&tree, &Options::default(), &Payload::default());
    let ext = ext2_of(&img, &image);
    let fsck = run(Command::new("e2fsck").arg("-fn").arg(&ext));
    assert!(fsck.contains("(0.0% non-contiguous)"), "{fsck}");
    let stat = run(Command::new("debugfs").arg("-R").arg("stat /f").arg(&ext));
    // "(0-11):A-B, (IND):B+1, (12-1035):B+2-..., (DIND):..., (IND):..., (1036-...)"
    let blocks = stat.split("BLOCKS:").nth(1).unwrap();
    let runs: Vec<&str> = blocks.split(", ").map(|r| r.trim()).collect();
    assert!(runs[0].starts_with("(0-11):"), "{blocks}");
    assert!(runs[1].starts_with("(IND):"), "{blocks}");
    assert!(runs[2].starts_with("(12-1035):"), "{blocks}");
    assert!(runs[3].starts_with("(DIND):"), "{blocks}");
    assert!(runs[4].starts_with("(IND):"), "{blocks}");
    let num = |r: &str| -> u64 {
        r.split(':')
            .nth(1)
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(num(runs[2]), num(runs[1]) + 1);
    assert_eq!(num(runs[4]), num(runs[3]) + 1);
    assert_eq!(num(runs[5]), num(runs[4]) + 1);
}

#[test]
fn luks_writer_plugs_into_the_payload_hooks() {
    use myst_formats::luks::{LuksParams, LuksWriter};
    use myst_formats::xts::Xts;
    let mut key = [0u8; 64];
    for (i, k) in key.iter_mut().enumerate() {
        *k = (i * 7 + 1) as u8;
    }
    let params = LuksParams {
        digest_iterations: 1000,
        ..LuksParams::default()
    };
    let luks = LuksWriter::new(&key, &params).unwrap();
    let encrypt = |buf: &mut [u8], off: u64| {
        // Buffers are whole file-system blocks at block offsets: always
        // sector-aligned, so this cannot fail.
        let _ = luks.encrypt_payload(buf, off);
    };
    let payload = Payload {
        header: &luks.header,
        transform: Some(&encrypt),
    };
    let tree = sample_tree();
    let (img, image) = build_to(&tree, &Options::default(), &payload);
    assert_eq!(
        image.hash_offset,
        luks.payload_offset_bytes() + image.geometry.bytes()
    );
    assert!(
        verify(img.path(), &image),
        "verity covers header + ciphertext"
    );
    let luks_dump = Command::new("cryptsetup")
        .arg("luksDump")
        .arg(img.path())
        .output()
        .unwrap();
    assert!(luks_dump.status.success(), "cryptsetup luksDump");
    let xts = Xts::new(&key);
    let plain = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    extract(
        img.path(),
        luks.payload_offset_bytes(),
        image.geometry.bytes(),
        &plain,
        &|buf: &mut [u8], off: u64| xts.decrypt_sectors(buf, off / 512).unwrap(),
    );
    e2fsck(&plain);
    let cat = Command::new("debugfs")
        .arg("-R")
        .arg("cat /d/f7")
        .arg(&plain)
        .output()
        .unwrap()
        .stdout;
    let want: Vec<u8> = (0..7 * 3000u32).map(|j| (j * 7 + 7) as u8).collect();
    assert!(cat == want, "decrypted file differs");
}
