//! `myst mkext2` options, sizes and errors: --force, --size, --block-size,
//! the options that are not implemented yet, nothing left behind on error,
//! silence when not on a terminal, and a directory of 100,000 files.

mod ext2_util;

use ext2_util::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn fails(args: &[&str], src: &Path, img: &Path) -> (i32, String) {
    let o = myst()
        .arg("mkext2")
        .args(args)
        .arg(src)
        .arg(img)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn force_and_existing_images() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"one").unwrap();
    let img = work.path().join("img");
    fs::write(&img, b"precious").unwrap();
    let (code, err) = fails(&[], &src, &img);
    assert_eq!(code, 1);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read(&img).unwrap(), b"precious");
    mkext2(&src, &img, &["--force"]);
    assert!(verity_verify(&img));
    let first = fs::read(&img).unwrap();
    fs::write(src.join("f"), b"two").unwrap();
    mkext2(&src, &img, &["-f"]);
    assert_ne!(fs::read(&img).unwrap(), first);
    assert_eq!(entries(work.path()).len(), 2, "no temporary files left");
}

#[test]
fn sizes_follow_the_mystikos_policy() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    // 10 MiB + 1 byte of files: rounded to 11 MiB, plus 50%.
    fs::write(src.join("a"), bytes(1, (10 << 20) + 1 - 4096)).unwrap();
    let img = work.path().join("a.img");
    mkext2(&src, &img, &[]);
    let du: u64 = stdout(&ok(Command::new("du").args(["-s", "-b"]).arg(&src)))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mib = 1u64 << 20;
    let want = du.div_ceil(mib) * mib * 3 / 2;
    assert_eq!(hash_offset(&img), want.max(8 * mib), "du -b = {du}");
    // --size raises it, with suffixes, in both option forms...
    let b = work.path().join("b.img");
    mkext2(&src, &b, &["--size", "40m"]);
    assert_eq!(hash_offset(&b), 40 * mib);
    let c = work.path().join("c.img");
    mkext2(&src, &c, &["--size=41943040"]);
    assert_eq!(hash_offset(&c), 40 * mib);
    // ...and never lowers it.
    let d = work.path().join("d.img");
    mkext2(&src, &d, &["--size", "1m"]);
    assert_eq!(hash_offset(&d), hash_offset(&img));
    let (code, err) = fails(&["--size", "12q"], &src, &work.path().join("e.img"));
    assert_eq!(code, 2, "{err}");
    let (code, err) = fails(&["--block-size", "512"], &src, &work.path().join("e.img"));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn unsupported_and_bad_options_are_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let img = out.join("img");
    let key = work.path().join("key");
    fs::write(&key, [7u8; 64]).unwrap();
    let key = key.to_str().unwrap().to_string();
    for (args, msg) in [
        // A key whose two XTS halves are equal is refused (IEEE 1619).
        (vec!["--encrypt", key.as_str()], "halves"),
        (
            vec!["--passphrase", "long enough passphrase"],
            "--passphrase needs --encrypt",
        ),
        (
            vec!["--encrypt", key.as_str(), "--passphrase", "short"],
            "at least 14",
        ),
    ] {
        let (code, err) = fails(&args, &src, &img);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    let (code, err) = fails(&[], &work.path().join("missing"), &img);
    assert_eq!(code, 1);
    assert!(err.contains("missing"), "{err}");
    let (code, err) = fails(&[], &work.path().join("key"), &img);
    assert_eq!(code, 1);
    assert!(err.contains("not a directory"), "{err}");
    assert!(entries(&out).is_empty());
}

#[test]
fn trees_that_do_not_fit_leave_nothing_behind() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let img = out.join("img");
    // A 20 GiB (sparse) file is more than ext2 holds with 1 KiB blocks.
    let src = work.path().join("huge");
    fs::create_dir(&src).unwrap();
    let f = fs::File::create(src.join("big")).unwrap();
    f.set_len(20 << 30).unwrap();
    let (code, err) = fails(&["--block-size", "1024"], &src, &img);
    assert_eq!(code, 1);
    assert!(
        err.contains("big") && err.contains("largest ext2 file"),
        "{err}"
    );
    assert!(entries(&out).is_empty(), "{:?}", entries(&out));
    // A symlink target longer than a 1 KiB block.
    let src = work.path().join("link");
    fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink("x".repeat(2000), src.join("l")).unwrap();
    let (code, err) = fails(&["--block-size", "1024"], &src, &img);
    assert_eq!(code, 1);
    assert!(err.contains("symbolic link target of 2000 bytes"), "{err}");
    assert!(entries(&out).is_empty());
    // An unreadable file (only testable without root, which reads anything).
    if !is_root() {
        let src = work.path().join("unreadable");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("secret"), b"s").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
        let (code, err) = fails(&[], &src, &img);
        assert_eq!(code, 1);
        assert!(err.contains("secret"), "{err}");
        assert!(entries(&out).is_empty());
    }
}

#[test]
fn silent_when_not_on_a_terminal() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    // Large enough for the progress bar on a terminal.
    for i in 0..2500 {
        fs::write(src.join(format!("f{i}")), b"x").unwrap();
    }
    let o = mkext2(&src, &work.path().join("img"), &[]);
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    let o = mkext2(&src, &work.path().join("img2"), &["--trace"]);
    let text = stdout(&o);
    assert!(
        text.contains("roothash=") && text.contains("hashoffset="),
        "{text}"
    );
}

#[test]
fn directory_of_100000_files() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let big = src.join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..100_000 {
        fs::File::create(big.join(format!("file-with-a-name-{i:06}"))).unwrap();
    }
    fs::write(big.join("file-with-a-name-050000"), b"middle").unwrap();
    let img = work.path().join("img");
    mkext2(&src, &img, &[]);
    let ext = work.path().join("ext2");
    ext2_part(&img, &ext);
    e2fsck_clean(&ext);
    let ls = stdout(&ok(Command::new("debugfs")
        .arg("-R")
        .arg("ls -p /big")
        .arg(&ext)));
    assert_eq!(
        ls.lines()
            .filter(|l| l.contains("/file-with-a-name-"))
            .count(),
        100_000
    );
    let cat = stdout(&ok(Command::new("debugfs")
        .arg("-R")
        .arg("cat /big/file-with-a-name-050000")
        .arg(&ext)));
    assert_eq!(cat, "middle");
    let mnt = work.path().join("mnt");
    if loop_mount(&img, &mnt) {
        let n = fs::read_dir(mnt.join("big")).map(|d| d.count());
        let middle = fs::read(mnt.join("big/file-with-a-name-050000"));
        umount(&mnt);
        assert_eq!(n.unwrap(), 100_000);
        assert_eq!(middle.unwrap(), b"middle");
    }
    assert!(verity_verify(&img));
}
