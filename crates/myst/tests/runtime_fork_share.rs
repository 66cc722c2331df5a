//! Forked guest processes share one file system on an ext2 root and in
//! /tmp and /dev/shm (ext2 in shared memory): the
//! writes of a child (create, write, mkdir, rename, unlink) are seen by its
//! parent and the other way round, and two children creating files at once
//! lose nothing. tests/apps/forkshare.c runs natively (the oracle) and in a
//! writable directory of an ext2 root made by `myst mkext2`; busybox `sh -c`
//! lines whose subshells fork are checked too. tests/apps/ofdshare.c checks
//! open file descriptions (offsets, flags) and file locks shared between
//! processes the same way, and shell redirections of a group whose
//! programs fork (busybox sh and bash) keep every line.

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
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/apps");
    let mut built = Vec::new();
    for v in VARIANTS.iter().filter(|v| v.name != "pie") {
        let ok = ["forkshare", "ofdshare"].iter().all(|app| {
            Command::new(v.cc)
                .args(v.flags)
                .args(["-O1", "-w", "-o"])
                .arg(tree.join(format!("bin/{app}_{}", v.name)))
                .arg(apps.join(format!("{app}.c")))
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
        assert!(
            ok,
            "fork-share test: {} cannot build forkshare.c/ofdshare.c ({} variant)",
            v.cc, v.name
        );
        built.push(v.name);
    }
    if let Some(bb) = busybox() {
        std::fs::copy(bb, tree.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "echo", "cat"] {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).expect("symlink");
        }
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

/// Open file descriptions and locks shared between processes
/// (tests/apps/ofdshare.c): the offset a child moves is the parent's, three
/// writers through one inherited descriptor lose no record, F_SETFL flags
/// are shared, POSIX record locks (F_GETLK's l_pid, F_SETLKW, EDEADLK),
/// OFD locks and flock work between processes and go on close, exit and
/// SIGKILL, a blocked wait ends with EINTR, and an unlinked open file stays
/// readable by every process holding it. Compared with the native run, on
/// the ext2 root's overlay, /tmp and /dev/shm. Both C toolchains are
/// required.
#[test]
fn open_file_descriptions_and_locks_are_shared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (variants, img) = image(dir.path()).expect("no C compiler");
    assert_eq!(
        variants,
        ["musl", "glibc"],
        "musl-gcc and gcc (static) are both needed to build ofdshare.c"
    );
    for v in &variants {
        let bin = dir.path().join(format!("tree/bin/ofdshare_{v}"));
        let scratch = tempfile::tempdir().expect("tempdir");
        let nat = native_run(&bin, &[scratch.path().to_str().expect("utf-8")], dir.path());
        assert_ok(&nat, "ofdshare natively");
        let want = text(&nat);
        for line in [
            "200 lines (100 child, 100 parent), child first: yes",
            "records 300/300/300 of 300, damaged 0, repeated 0",
            "EDEADLK in exactly one process: yes",
            "waiting after SIGKILL: POSIX ok, flock ok, OFD ok",
            "counter under F_SETLKW: status 0, value 600 of 600",
            "counter under flock: status 0, value 600 of 600",
            "done",
        ] {
            assert!(want.contains(line), "native run lacks {line:?}: {want}");
        }
        for d in ["/data", "/tmp", "/dev/shm"] {
            let out = myst_run(&[], &img, &format!("/bin/ofdshare_{v}"), &[d]);
            assert_ok(&out, &format!("ofdshare in {d}"));
            assert_eq!(text(&out), want, "ofdshare_{v} in {d}");
        }
        // Every call through the SIGSYS path (signals arrive differently).
        let out = myst_run(
            &["--rewrite-syscalls", "false"],
            &img,
            &format!("/bin/ofdshare_{v}"),
            &["/tmp"],
        );
        assert_ok(&out, "ofdshare without rewriting");
        assert_eq!(text(&out), want, "ofdshare_{v} without rewriting");
        // A directory root: files of the host (hostfs), outside the
        // guest's own /tmp.
        let host = tempfile::tempdir_in(host_base()).expect("tempdir");
        let prog = host.path().join("ofdshare");
        std::fs::copy(&bin, &prog).expect("copy ofdshare");
        let work = host.path().join("work");
        std::fs::create_dir(&work).expect("mkdir");
        let out = myst_run(
            &[],
            Path::new("/"),
            prog.to_str().expect("utf-8"),
            &[work.to_str().expect("utf-8")],
        );
        assert_ok(&out, "ofdshare on a directory root");
        assert_eq!(text(&out), want, "ofdshare_{v} on a directory root");
    }
}

/// A host directory for files a directory-root guest must reach: not
/// under /tmp, which the guest sees as its own in-memory /tmp.
fn host_base() -> &'static str {
    let base = env!("CARGO_TARGET_TMPDIR");
    if base.starts_with("/tmp/") || base == "/tmp" {
        "/var/tmp"
    } else {
        base
    }
}

/// `{ echo a; /bin/echo b; } > f`: the shell's builtin and a forked
/// program write through one redirected descriptor; the program's output
/// follows the builtin's instead of overwriting it. busybox sh on the ext2
/// root, in /tmp and /dev/shm, and bash from the host root (a directory
/// root) in /tmp and in a host directory, compared with native runs.
#[test]
fn shell_redirection_of_a_group_keeps_every_line() {
    let script = "{ echo a; /bin/echo b; echo c; /bin/echo d; } > f; /bin/echo e >> f; cat f";
    let native = |sh: &Path, args: &[&str]| {
        let scratch = tempfile::tempdir().expect("tempdir");
        let line = format!("cd {} && {script}", scratch.path().display());
        let mut a: Vec<&str> = args.to_vec();
        a.push(&line);
        let out = native_run(sh, &a, scratch.path());
        assert_ok(&out, "native shell");
        text(&out)
    };
    let bb = busybox().expect("busybox-static is needed for this test");
    let want = native(&bb, &["sh", "-c"]);
    assert_eq!(want, "a\nb\nc\nd\ne\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, img) = image(dir.path()).expect("image");
    for d in ["/data", "/tmp", "/dev/shm"] {
        let line = format!("cd {d} && {script}");
        let out = myst_run(&[], &img, "/bin/busybox", &["sh", "-c", &line]);
        assert_ok(&out, &format!("busybox sh in {d}"));
        assert_eq!(text(&out), want, "busybox sh in {d}");
    }
    let bash = Path::new("/bin/bash");
    assert!(bash.exists(), "/bin/bash is needed for this test");
    assert_eq!(native(bash, &["-c"]), want);
    let host_dir = tempfile::tempdir_in(host_base()).expect("tempdir");
    let host_path = host_dir.path().to_str().expect("utf-8").to_string();
    for d in ["/tmp", host_path.as_str()] {
        let line = format!("cd {d} && {script}");
        let out = myst_run(
            &["--memory-size", "1g"],
            Path::new("/"),
            "/bin/bash",
            &["-c", &line],
        );
        assert_ok(&out, &format!("bash in {d}"));
        assert_eq!(text(&out), want, "bash in {d}");
    }
}
