//! `myst mkcpio` / `myst excpio` against GNU cpio and bsdtar, round trips
//! and reproducibility.

mod cpio_util;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use cpio_util::*;
use myst_formats::cpio::{entries, FileType};

fn mkcpio(src: &Path, out: &Path) {
    ok(myst().arg("mkcpio").arg(src).arg(out));
}

#[test]
fn round_trip_through_excpio() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let a = t.path().join("a.cpio");
    mkcpio(&src, &a);
    let dst = t.path().join("dst");
    ok(myst().arg("excpio").arg(&a).arg(&dst));
    assert_same_tree(&src, &dst, is_root());
}

#[test]
fn archive_layout_order_and_metadata() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let a = t.path().join("a.cpio");
    mkcpio(&src, &a);
    let bytes = fs::read(&a).unwrap();
    assert_eq!(bytes.len() % 512, 0);
    let all: Vec<_> = entries(&bytes).collect::<Result<_, _>>().unwrap();
    let names: Vec<String> = all
        .iter()
        .map(|e| e.name.escape_ascii().to_string())
        .collect();
    // `.` first, depth first, each directory's children sorted by bytes.
    let want = [
        ".",
        "bin",
        "bin/abs",
        "bin/dirlink",
        "bin/rel",
        "bin/suid",
        "bin/three-link",
        "bin/tool",
        "empty",
        "empty-link",
        "etc",
        "etc/deep",
        "etc/deep/er",
        "etc/deep/er/est",
        "etc/deep/er/est/big",
        "etc/deep/page",
        "etc/five",
        "etc/four",
        "etc/one",
        "etc/three",
        "etc/zero",
        "private",
        "private/bad\\xffname",
        "private/\\xc3\\xbcn\\xc3\\xafcode",
        "sticky",
        "with space",
        "with space/a b",
    ];
    assert_eq!(names, want);
    for (i, e) in all.iter().enumerate() {
        // Inodes count from 1; hard links are full copies with nlink 1.
        assert_eq!(e.meta.ino, i as u32 + 1);
        assert_eq!((e.meta.dev_major, e.meta.dev_minor), (0, 0));
        if e.file_type != FileType::Directory {
            assert_eq!(e.meta.nlink, 1, "{}", names[i]);
        }
    }
    let by = |n: &str| all.iter().find(|e| e.name == n.as_bytes()).unwrap();
    assert_eq!(by("bin/three-link").data, b"abc");
    assert_eq!(by("etc/three").data, b"abc");
    assert_eq!(by("bin/dirlink").data, b"../etc/deep");
    assert_eq!(by("bin/dirlink").file_type, FileType::Symlink);
    assert_eq!(by("bin/suid").meta.mode, 0o104755);
    assert_eq!(by("sticky").meta.mode, 0o41777);
    assert_eq!(by("etc/one").meta.mtime, 1_400_000_000);
    assert_eq!(by(".").meta.mtime, 1_666_666_666);
    // 2 + subdirectories: bin, empty, etc, private, sticky, with space.
    assert_eq!(by(".").meta.nlink, 8);
    assert_eq!(by("etc").meta.nlink, 3);
    if is_root() {
        assert_eq!(
            (by("bin/tool").meta.uid, by("bin/tool").meta.gid),
            (1234, 5678)
        );
    }
    // Header hex is upper case: check the first header's mode field (41ED).
    assert_eq!(&bytes[14..22], b"000041ED");

    // GNU cpio lists the same names in the same order.
    if have("cpio") {
        let out = ok(Command::new("cpio")
            .arg("-it")
            .arg("--quiet")
            .stdin(fs::File::open(&a).unwrap()));
        let listed: Vec<&[u8]> = out
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let ours: Vec<&[u8]> = all.iter().map(|e| e.name).collect();
        assert_eq!(listed, ours);
    }
}

#[test]
fn gnu_cpio_extracts_our_archive() {
    if !have("cpio") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let a = t.path().join("a.cpio");
    mkcpio(&src, &a);
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    ok(Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(&dst)
        .stdin(fs::File::open(&a).unwrap()));
    // GNU cpio sets a directory's mtime when it creates it, so the entries
    // that follow (parents come first, as Mystikos needs) change it again;
    // it keeps directory mtimes only for `find -depth` order. bsdtar and our
    // excpio restore them (tested below and above). GNU cpio 2.13 does not
    // set symlink mtimes at all.
    assert_same_tree_except_mtimes(&src, &dst, is_root(), |_, n| n.kind != 'f');
}

#[test]
fn bsdtar_extracts_our_archive() {
    if !have("bsdtar") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let a = t.path().join("a.cpio");
    mkcpio(&src, &a);
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    // -p restores permissions (setuid) even when not root.
    ok(Command::new("bsdtar")
        .arg("-xpf")
        .arg(&a)
        .arg("-C")
        .arg(&dst));
    // bsdtar leaves the mtime of the extraction directory itself alone.
    assert_same_tree_except_mtimes(&src, &dst, is_root(), |name, _| name.is_empty());
}

/// Checks that the two names of the source's hard link came out as one inode.
fn assert_linked(dst: &Path) {
    let a = fs::metadata(dst.join("etc/three")).unwrap();
    let b = fs::metadata(dst.join("bin/three-link")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link not restored");
    assert_eq!(fs::read(dst.join("bin/three-link")).unwrap(), b"abc");
}

#[test]
fn excpio_reads_gnu_cpio_newc_and_crc() {
    if !have("cpio") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    for format in ["newc", "crc"] {
        let a = t.path().join(format!("gnu-{format}.cpio"));
        ok(Command::new("sh")
            .arg("-c")
            .arg(format!("find . | cpio -o --quiet -H {format}"))
            .current_dir(&src)
            .stdout(fs::File::create(&a).unwrap()));
        let dst = t.path().join(format!("dst-{format}"));
        ok(myst().arg("excpio").arg(&a).arg(&dst));
        assert_same_tree(&src, &dst, is_root());
        assert_linked(&dst);
    }
}

#[test]
fn excpio_reads_bsdtar_newc() {
    if !have("bsdtar") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let a = t.path().join("bsd.cpio");
    ok(Command::new("bsdtar")
        .args(["--format", "newc", "-cf"])
        .arg(&a)
        .arg(".")
        .current_dir(&src));
    let dst = t.path().join("dst");
    ok(myst().arg("excpio").arg(&a).arg(&dst));
    assert_same_tree(&src, &dst, is_root());
    assert_linked(&dst);
}

#[test]
fn same_tree_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let a = t.path().join("a.cpio");
    let b = t.path().join("b.cpio");
    mkcpio(&src, &a);
    mkcpio(&src, &b);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    // A copy has other inode numbers and directory order, yet the same bytes.
    let copy = t.path().join("copy");
    ok(Command::new("cp").arg("-a").arg(&src).arg(&copy));
    let c = t.path().join("c.cpio");
    mkcpio(&copy, &c);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&c).unwrap());
}

#[test]
fn dot_as_dir_and_output_inside_the_tree() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let outside = t.path().join("outside.cpio");
    mkcpio(&src, &outside);
    // `myst mkcpio . x.cpio` from inside the tree: the archive does not
    // contain itself (nor its temporary file), and reruns give the same bytes.
    for _ in 0..2 {
        ok(myst()
            .args(["mkcpio", ".", "inside.cpio"])
            .current_dir(&src));
        let inside = fs::read(src.join("inside.cpio")).unwrap();
        // The root's mtime changed when inside.cpio appeared; compare the rest.
        let names =
            |b: &[u8]| -> Vec<Vec<u8>> { entries(b).map(|e| e.unwrap().name.to_vec()).collect() };
        assert_eq!(names(&inside), names(&fs::read(&outside).unwrap()));
    }
    let leftovers: Vec<_> = fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let a = t.path().join("a.cpio");
    ok(myst()
        .arg("mkcpio")
        .arg(&src)
        .arg(&a)
        .env("SOURCE_DATE_EPOCH", "1300000000"));
    let bytes = fs::read(&a).unwrap();
    for e in entries(&bytes) {
        let e = e.unwrap();
        assert!(e.meta.mtime <= 1_300_000_000);
        if e.name == b"etc/four" {
            assert_eq!(e.meta.mtime, 1_200_000_000, "earlier mtimes are kept");
        }
        if e.name == b"bin/tool" {
            assert_eq!(e.meta.mtime, 1_300_000_000);
        }
    }
    let err = fails(
        myst()
            .arg("mkcpio")
            .arg(&src)
            .arg(&a)
            .env("SOURCE_DATE_EPOCH", "soon"),
    );
    assert!(err.contains("SOURCE_DATE_EPOCH"), "{err}");
}

fn no_archive_left(dir: &Path) {
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("cpio"))
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn long_names_and_huge_files_are_errors_leaving_nothing() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let outd = t.path().join("out");
    fs::create_dir_all(&outd).unwrap();
    let deep = src.join("a".repeat(200));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("b".repeat(54)), b"fits").unwrap();
    // 200 + 1 + 54 = 255 bytes: allowed.
    ok(myst().arg("mkcpio").arg(&src).arg(outd.join("ok.cpio")));
    fs::remove_file(outd.join("ok.cpio")).unwrap();
    fs::write(deep.join("c".repeat(55)), b"too long").unwrap();
    let err = fails(myst().arg("mkcpio").arg(&src).arg(outd.join("x.cpio")));
    assert!(err.starts_with("myst: error: "), "{err}");
    assert!(err.contains("256 bytes") && err.contains("255"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    no_archive_left(&outd);

    let src2 = t.path().join("src2");
    fs::create_dir_all(&src2).unwrap();
    fs::write(src2.join("small"), b"x").unwrap();
    let big = fs::File::create(src2.join("zbig")).unwrap();
    big.set_len(4 << 30).unwrap(); // sparse: no disk space used
    drop(big);
    let err = fails(myst().arg("mkcpio").arg(&src2).arg(outd.join("x.cpio")));
    assert!(err.contains("zbig") && err.contains("4 GiB"), "{err}");
    no_archive_left(&outd);

    // An existing archive is left as it was when a rebuild fails.
    fs::write(outd.join("keep.cpio"), b"old").unwrap();
    fails(myst().arg("mkcpio").arg(&src2).arg(outd.join("keep.cpio")));
    assert_eq!(fs::read(outd.join("keep.cpio")).unwrap(), b"old");

    let err = fails(
        myst()
            .arg("mkcpio")
            .arg(t.path().join("missing"))
            .arg(outd.join("y.cpio")),
    );
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn fifos_and_sockets_are_skipped_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("file"), b"f").unwrap();
    ok(Command::new("mkfifo").arg(src.join("pipe")));
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let a = t.path().join("a.cpio");
    let out = ok(myst().arg("mkcpio").arg(&src).arg(&a));
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].starts_with("myst: warning:")
            && warnings[0].contains("pipe")
            && warnings[0].contains("FIFO")
    );
    assert!(warnings[1].contains("sock") && warnings[1].contains("socket"));
    let bytes = fs::read(&a).unwrap();
    let names: Vec<Vec<u8>> = entries(&bytes).map(|e| e.unwrap().name.to_vec()).collect();
    assert_eq!(names, [b".".to_vec(), b"file".to_vec()]);
}
