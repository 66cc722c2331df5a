//! Forked guest processes share one file system on an ext2 root and in
//! /tmp and /dev/shm (ext2 in shared memory): the
//! writes of a child (create, write, mkdir, rename, unlink) are seen by its
//! parent and the other way round, and two children creating files at once
//! lose nothing. tests/apps/forkshare.c runs natively (the oracle) and in a
//! writable directory of an ext2 root made by `myst mkext2`; busybox `sh -c`
//! lines whose subshells fork are checked too.

mod runtime_common;
use runtime_common::*;
use std::path::Path;
use std::process::Command;

/// Builds a root tree with forkshare (musl, and glibc when present),
/// busybox, /data and /tmp, and makes an ext2 image of it.
fn image(dir: &Path) -> Option<(Vec<&'static str>, std::path::PathBuf)> {
    let tree = dir.join("tree");
    for d in ["bin", "data", "tmp"] {
        std::fs::create_dir_all(tree.join(d)).expect("mkdir");
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/apps/forkshare.c");
    let mut built = Vec::new();
    for v in VARIANTS.iter().filter(|v| v.name != "pie") {
        let ok = Command::new(v.cc)
            .args(v.flags)
            .args(["-O1", "-w", "-o"])
            .arg(tree.join(format!("bin/forkshare_{}", v.name)))
            .arg(&src)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            built.push(v.name);
        } else {
            eprintln!(
                "fork-share test: {} cannot build forkshare.c; skipping {}",
                v.cc, v.name
            );
        }
    }
    if let Some(bb) = busybox() {
        std::fs::copy(bb, tree.join("bin/busybox")).expect("copy busybox");
        std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).expect("symlink");
    }
    let img = dir.join("root.img");
    let out = Command::new(myst_bin())
        .arg("mkext2")
        .arg(&tree)
        .arg(&img)
        .output()
        .expect("run myst mkext2");
    assert_ok(&out, "myst mkext2");
    if built.is_empty() && busybox().is_none() {
        return None;
    }
    Some((built, img))
}

#[test]
fn forked_processes_share_an_ext2_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((variants, img)) = image(dir.path()) else {
        eprintln!("fork-share test: no C compiler and no busybox; skipping");
        return;
    };
    for v in &variants {
        let bin = dir.path().join(format!("tree/bin/forkshare_{v}"));
        let scratch = tempfile::tempdir().expect("tempdir");
        let nat = native_run(&bin, &[scratch.path().to_str().expect("utf-8")], dir.path());
        assert_ok(&nat, "forkshare natively");
        let want = text(&nat);
        assert!(want.contains("sub/f: 10 [from child]"), "native: {want}");
        assert!(
            want.contains("concurrent files: 80, correct: 80"),
            "native: {want}"
        );
        for d in ["/data", "/tmp", "/dev/shm"] {
            let out = myst_run(&[], &img, &format!("/bin/forkshare_{v}"), &[d]);
            assert_ok(&out, &format!("forkshare in {d}"));
            assert_eq!(text(&out), want, "forkshare_{v} in {d}");
        }
    }
    if busybox().is_none() {
        return;
    }
    for (script, want) in [
        (
            "cd /data && mkdir d && echo x > d/f && cat d/f",
            "x\n",
        ),
        ("(echo hi > /data/a); cat /data/a", "hi\n"),
        ("(echo hi > /tmp/a); cat /tmp/a", "hi\n"),
        (
            "cd /tmp && mkdir d && echo x > d/f && cat d/f && (echo y >> d/f) && cat d/f && ls -ld /tmp | cut -c1-10",
            "x\nx\ny\ndrwxrwxrwt\n",
        ),
        (
            "(mkdir /data/m && echo 1 > /data/m/one); (mv /data/m/one /data/m/two); ls /data/m; (rm /data/m/two); ls /data/m | wc -l",
            "two\n0\n",
        ),
    ] {
        let out = myst_run(&[], &img, "/bin/busybox", &["sh", "-c", script]);
        assert_ok(&out, script);
        assert_eq!(text(&out), want, "{script}");
    }
}

/// Concurrent O_APPEND writers in two processes, each opening the file with
/// O_CREAT: appends are one file-system operation (nothing lost or
/// overwritten), and an O_CREAT that loses the race to create the file opens
/// the one the other process made (no EEXIST without O_EXCL).
#[test]
fn concurrent_appenders_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((variants, img)) = image(dir.path()) else {
        return;
    };
    for v in &variants {
        let bin = dir.path().join(format!("tree/bin/forkshare_{v}"));
        let scratch = tempfile::tempdir().expect("tempdir");
        let nat = native_run(
            &bin,
            &[scratch.path().to_str().expect("utf-8"), "append"],
            dir.path(),
        );
        assert_ok(&nat, "forkshare natively");
        let want = text(&nat);
        assert!(
            want.contains("appended records: 200 + 200, damaged: 0"),
            "{want}"
        );
        for d in ["/data", "/tmp", "/dev/shm"] {
            let out = myst_run(&[], &img, &format!("/bin/forkshare_{v}"), &[d, "append"]);
            assert_ok(&out, &format!("forkshare append in {d}"));
            assert_eq!(text(&out), want, "forkshare_{v} append in {d}");
        }
    }
}
