//! busybox-static (a non-PIE static glibc program) runs its applets from a
//! directory root with output equal to the native run.

mod runtime_common;
use runtime_common::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// Makes /NAME with files, a symlink, a subdirectory and binary data.
fn setup(root: &Path, name: &str) {
    let d = root.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("sub/deeper")).expect("mkdir");
    let nums: String = (1..=3000).map(|i| format!("{i}\n")).collect();
    std::fs::write(d.join("nums.txt"), nums).expect("write");
    std::fs::write(
        d.join("sub/a.txt"),
        "alpha beta\ngamma delta\nalpha omega\n",
    )
    .expect("write");
    std::fs::write(d.join("sub/deeper/z.txt"), "zzz\n").expect("write");
    let bin: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("bin.dat"), bin).expect("write");
    let _ = std::os::unix::fs::symlink("nums.txt", d.join("link"));
}

fn bb_native(root: &Path, args: &[&str]) -> std::process::Output {
    native_run(&busybox().expect("busybox"), args, root)
}

#[test]
fn applets_match_native() {
    let r = root();
    if busybox().is_none() {
        eprintln!("skipping: no static busybox on this host");
        return;
    }
    setup(&r.path, "bbdata");
    let cmds: &[&[&str]] = &[
        &["ls", "-la", "bbdata/sub"],
        &["ls", "-lR", "bbdata"],
        &["cat", "bbdata/sub/a.txt", "bbdata/link"],
        &[
            "wc",
            "bbdata/nums.txt",
            "bbdata/sub/a.txt",
            "bbdata/bin.dat",
        ],
        &["sha256sum", "bbdata/bin.dat", "bbdata/nums.txt"],
        &["find", "bbdata"],
        &["find", "bbdata", "-name", "*.txt", "-type", "f"],
        &["grep", "-n", "alpha", "bbdata/sub/a.txt"],
        &["grep", "-c", "7", "bbdata/nums.txt"],
        &["grep", "-r", "zzz", "bbdata"],
        &[
            "sed",
            "-n",
            "5,9p;s/alpha/ALPHA/p",
            "bbdata/nums.txt",
            "bbdata/sub/a.txt",
        ],
        &["awk", "{ s += $1 } END { print s, NR }", "bbdata/nums.txt"],
        &["awk", "-F", " ", "{ print $2 }", "bbdata/sub/a.txt"],
        &["head", "-c", "64", "bbdata/bin.dat"],
        &[
            "stat",
            "-c",
            "%n %s %a %F",
            "bbdata/nums.txt",
            "bbdata/sub",
            "bbdata/link",
        ],
        &["readlink", "bbdata/link"],
        &["du", "-s", "bbdata/sub"],
    ];
    for cmd in cmds {
        let nat = bb_native(&r.path, cmd);
        let out = myst_run(&[], &r.path, "/bin/busybox", cmd);
        assert_eq!(
            out.status.code(),
            nat.status.code(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!nat.stdout.is_empty(), "{cmd:?} printed nothing natively");
        assert_eq!(text(&out), text(&nat), "{cmd:?}");
    }
}

#[test]
fn tar_and_gzip_match_native() {
    let r = root();
    if busybox().is_none() {
        eprintln!("skipping: no static busybox on this host");
        return;
    }
    setup(&r.path, "tardata");
    std::fs::create_dir_all(r.path.join("tarout")).expect("mkdir");
    let native_dir = tempfile::tempdir().expect("tempdir");
    let ntar = native_dir.path().join("a.tar");
    let nat = bb_native(
        &r.path,
        &["tar", "-cf", ntar.to_str().expect("utf-8"), "tardata"],
    );
    assert_ok(&nat, "native tar");
    let out = myst_run(
        &[],
        &r.path,
        "/bin/busybox",
        &["tar", "-cf", "/tarout/a.tar", "tardata"],
    );
    assert_ok(&out, "tar -c");
    assert_eq!(
        std::fs::read(r.path.join("tarout/a.tar")).expect("read tar"),
        std::fs::read(&ntar).expect("read native tar"),
        "tar archives differ"
    );
    let out = myst_run(
        &[],
        &r.path,
        "/bin/busybox",
        &["tar", "-tvf", "/tarout/a.tar"],
    );
    let nat = bb_native(&r.path, &["tar", "-tvf", "tarout/a.tar"]);
    assert_eq!(text(&out), text(&nat));
    // Extract into /tmp (in memory) and checksum there.
    let out = myst_run(
        &[],
        &r.path,
        "/bin/busybox",
        &["tar", "-xf", "/tarout/a.tar", "-C", "/tmp"],
    );
    assert_ok(&out, "tar -x");
    // gzip to stdout, then gunzip it back.
    let out = myst_run(
        &[],
        &r.path,
        "/bin/busybox",
        &["gzip", "-c", "tardata/bin.dat"],
    );
    let nat = bb_native(&r.path, &["gzip", "-c", "tardata/bin.dat"]);
    assert_ok(&out, "gzip");
    assert_eq!(out.stdout, nat.stdout, "gzip output differs");
    std::fs::write(r.path.join("tarout/bin.dat.gz"), &out.stdout).expect("write gz");
    let out = myst_run(
        &[],
        &r.path,
        "/bin/busybox",
        &["gunzip", "-c", "/tarout/bin.dat.gz"],
    );
    assert_ok(&out, "gunzip");
    assert_eq!(
        out.stdout,
        std::fs::read(r.path.join("tardata/bin.dat")).expect("read"),
        "gunzip round trip"
    );
    // gzip in place on the root: writes reach the directory root.
    std::fs::copy(r.path.join("tardata/nums.txt"), r.path.join("tarout/n.txt")).expect("copy");
    let out = myst_run(&[], &r.path, "/bin/busybox", &["gzip", "/tarout/n.txt"]);
    assert_ok(&out, "gzip in place");
    assert!(!r.path.join("tarout/n.txt").exists());
    let out = myst_run(
        &[],
        &r.path,
        "/bin/busybox",
        &["gunzip", "/tarout/n.txt.gz"],
    );
    assert_ok(&out, "gunzip in place");
    assert_eq!(
        std::fs::read(r.path.join("tarout/n.txt")).expect("read"),
        std::fs::read(r.path.join("tardata/nums.txt")).expect("read")
    );
}

#[test]
fn shell_builtins() {
    let r = root();
    if busybox().is_none() {
        eprintln!("skipping: no static busybox on this host");
        return;
    }
    setup(&r.path, "shdata");
    let script = "x=3; echo $((x * 2)); for i in a b c; do echo item $i; done; \
                  test -f shdata/nums.txt && echo exists; read -r line < shdata/sub/a.txt; echo \"$line\"; \
                  case $line in alpha*) echo matched;; esac; printf '%s-%d\\n' fmt 5; \
                  echo written > /tmp/f; read -r back < /tmp/f; echo $back; cd shdata/sub; pwd; exit 3";
    let out = myst_run(&[], &r.path, "/bin/busybox", &["sh", "-c", script]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text(&out),
        "6\nitem a\nitem b\nitem c\nexists\nalpha beta\nmatched\nfmt-5\nwritten\n/shdata/sub\n"
    );
}

#[test]
fn stdin_from_a_host_pipe() {
    let r = root();
    if busybox().is_none() {
        return;
    }
    let mut child = Command::new(myst_bin())
        .args(["exec-linux"])
        .arg(&r.path)
        .args(["/bin/busybox", "wc", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"a\nb\nc\n").expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(text(&out).trim(), "3");
}

#[test]
fn shell_pipelines_fork_and_exec() {
    let r = root();
    if busybox().is_none() {
        return;
    }
    setup(&r.path, "pipedata");
    let script = "busybox cat pipedata/nums.txt | busybox grep 7 | busybox wc -l; \
                  for f in pipedata/sub/*; do busybox wc -c $f; done; \
                  x=$(busybox head -n 3 pipedata/nums.txt | busybox tail -n 1); echo third=$x; \
                  nosuchcommand 2>/dev/null; echo status=$?; (exit 5); echo sub=$?";
    let out = myst_run(&[], &r.path, "/bin/busybox", &["sh", "-c", script]);
    let nat = bb_native(&r.path, &["sh", "-c", script]);
    assert_ok(&out, "pipeline");
    assert_eq!(text(&out), text(&nat));
    assert!(text(&out).starts_with("813\n"), "{}", text(&out));
    // A #! script run through execve.
    std::fs::write(
        r.path.join("pipedata/s.sh"),
        "#!/bin/busybox sh\necho script: \"$@\"\nexit 6\n",
    )
    .expect("write");
    let mut perm = std::fs::metadata(r.path.join("pipedata/s.sh"))
        .expect("stat")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(r.path.join("pipedata/s.sh"), perm).expect("chmod");
    let out = myst_run(
        &[],
        &r.path,
        "/bin/busybox",
        &["sh", "-c", "/pipedata/s.sh a 'b c'"],
    );
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(text(&out), "script: a b c\n");
    // tar -z runs gzip as a child process through a pipe.
    std::fs::create_dir_all(r.path.join("pipeout")).expect("mkdir");
    let out = myst_run(
        &[],
        &r.path,
        "/bin/busybox",
        &["tar", "-czf", "/pipeout/a.tgz", "pipedata"],
    );
    assert_ok(&out, "tar -cz");
    let host = Command::new("tar")
        .arg("-tzf")
        .arg(r.path.join("pipeout/a.tgz"))
        .output()
        .expect("host tar");
    let nat = bb_native(&r.path, &["tar", "-cf", "-", "pipedata"]);
    assert!(nat.status.success());
    let mut names: Vec<String> = text(&host).lines().map(str::to_string).collect();
    names.sort();
    assert!(
        names.contains(&"pipedata/sub/deeper/z.txt".to_string()),
        "{names:?}"
    );
    assert_eq!(names.len(), 9, "{names:?}");
}
