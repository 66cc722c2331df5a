//! The same programs run from a CPIO root (the archive is loaded into an
//! in-memory file system): output equal to native, writes stay in memory,
//! and the image file is unchanged afterwards.

mod runtime_common;
use runtime_common::*;

#[test]
fn apps_from_a_cpio_root() {
    let r = root();
    let c = cpio_root();
    let before = sha256(&c.image);
    for v in &r.variants {
        let out = myst_run(&[], &c.image, &format!("/bin/hello_{v}"), &["cpio"]);
        assert_ok(&out, "hello");
        assert_eq!(text(&out), "Hello World!\narg 1: cpio\n");
        for app in ["fileio", "errors"] {
            let bin = format!("{app}_{v}");
            let scratch = tempfile::tempdir().expect("tempdir");
            let nat = native_run(
                &r.path.join("bin").join(&bin),
                &[scratch.path().to_str().expect("utf-8")],
                &r.path,
            );
            assert_ok(&nat, "native");
            for dir in ["/tmp", "/data"] {
                let out = myst_run(&[], &c.image, &format!("/bin/{bin}"), &[dir]);
                assert_ok(&out, &bin);
                assert_eq!(text(&out), text(&nat), "{bin} in {dir} of the CPIO root");
            }
        }
        let out = myst_run(&[], &c.image, &format!("/bin/exitcode_{v}"), &["9"]);
        assert_eq!(out.status.code(), Some(9));
        let out = myst_run(&[], &c.image, &format!("/bin/rawsyscall_{v}"), &[]);
        assert_eq!(
            text(&out),
            "raw write ok\nwrote 13, pid matches 1, bad pointer -14, unknown -38\n"
        );
    }
    assert_eq!(sha256(&c.image), before, "the CPIO image changed");
}

#[test]
fn busybox_from_a_cpio_root() {
    if busybox().is_none() {
        eprintln!("skipping: no static busybox on this host");
        return;
    }
    let c = cpio_root();
    let before = sha256(&c.image);
    let cmds: &[&[&str]] = &[
        &["cat", "data/sub/a.txt", "data/link"],
        &["wc", "data/nums.txt", "data/sub/a.txt", "data/bin.dat"],
        &["sha256sum", "data/bin.dat", "data/nums.txt"],
        &["find", "data", "-name", "*.txt"],
        &["grep", "-rn", "alpha", "data/sub"],
        &[
            "sed",
            "-n",
            "5,9p;s/alpha/ALPHA/p",
            "data/nums.txt",
            "data/sub/a.txt",
        ],
        &["awk", "{ s += $1 } END { print s, NR }", "data/nums.txt"],
        &["tar", "-cf", "-", "data/sub"],
        &[
            "sh",
            "-c",
            "x=0; for i in 1 2 3; do x=$((x + i)); done; echo $x; test -L data/link && echo link",
        ],
    ];
    for cmd in cmds {
        let mut sorted_native = native_run(&busybox().expect("busybox"), cmd, &c.tree);
        let mut out = myst_run(&[], &c.image, "/bin/busybox", cmd);
        assert_ok(&out, &format!("{cmd:?}"));
        if cmd[0] == "find" || cmd[0] == "tar" {
            // Directory order differs between the host and the archive;
            // tar headers carry owners and times the archive normalises.
            if cmd[0] == "tar" {
                let list = |bytes: &[u8]| {
                    let mut names = Vec::new();
                    let mut off = 0;
                    while off + 512 <= bytes.len() && bytes[off] != 0 {
                        let name = String::from_utf8_lossy(&bytes[off..off + 100])
                            .trim_end_matches('\0')
                            .to_string();
                        let size = usize::from_str_radix(
                            String::from_utf8_lossy(&bytes[off + 124..off + 135]).trim(),
                            8,
                        )
                        .unwrap_or(0);
                        let data = bytes[off + 512..off + 512 + size].to_vec();
                        names.push((name, data));
                        off += 512 + size.div_ceil(512) * 512;
                    }
                    names.sort();
                    names
                };
                assert_eq!(list(&out.stdout), list(&sorted_native.stdout), "{cmd:?}");
                continue;
            }
            let sort = |o: &mut std::process::Output| {
                let mut l: Vec<&str> = std::str::from_utf8(&o.stdout)
                    .unwrap_or("")
                    .lines()
                    .collect();
                l.sort();
                l.join("\n").into_bytes()
            };
            let (a, b) = (sort(&mut out), sort(&mut sorted_native));
            assert_eq!(a, b, "{cmd:?}");
            continue;
        }
        assert_eq!(text(&out), text(&sorted_native), "{cmd:?}");
    }
    // Writes land in memory: visible to the program, never in the image.
    // (Only the shell's own builtins write here: after fork, in-memory file
    // systems are not shared between parent and child yet.)
    let out = myst_run(
        &[],
        &c.image,
        "/bin/busybox",
        &[
            "sh",
            "-c",
            "echo new > /data/new.txt; read -r l < /data/new.txt; echo $l; cat /data/new.txt",
        ],
    );
    assert_eq!(text(&out), "new\nnew\n");
    let out = myst_run(&[], &c.image, "/bin/busybox", &["rm", "/data/nums.txt"]);
    assert_ok(&out, "rm in the CPIO root");
    let out = myst_run(&[], &c.image, "/bin/busybox", &["cat", "/data/new.txt"]);
    assert!(!out.status.success(), "a write survived the run");
    assert_eq!(sha256(&c.image), before, "the CPIO image changed");
}

#[test]
fn gnu_cpio_archive_as_root() {
    let r = root();
    let Some(v) = r.variants.first() else { return };
    if std::process::Command::new("cpio")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: GNU cpio not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("t/bin")).expect("mkdir");
    std::fs::copy(
        r.path.join(format!("bin/hello_{v}")),
        dir.path().join("t/bin/hello"),
    )
    .expect("copy");
    let image = dir.path().join("gnu.cpio");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet > {}",
            dir.path().join("t").display(),
            image.display()
        ))
        .status()
        .expect("cpio");
    assert!(st.success());
    let out = myst_run(&[], &image, "/bin/hello", &["gnu"]);
    assert_ok(&out, "hello from a GNU cpio archive");
    assert_eq!(text(&out), "Hello World!\narg 1: gnu\n");
}

#[test]
fn corrupt_cpio_root_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("bad.cpio");
    let mut data = b"070701".to_vec();
    data.extend_from_slice(&[b'Z'; 200]);
    std::fs::write(&image, &data).expect("write");
    let out = myst_run(&[], &image, "/bin/hello", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("myst: error: cannot mount CPIO root"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn unknown_root_image_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("junk.img");
    std::fs::write(&image, vec![0x5au8; 8192]).expect("write");
    let out = myst_run(&[], &image, "/bin/hello", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("myst: error: ") && err.contains("junk.img"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn random_syscalls_never_break_the_runtime() {
    let r = root();
    let c = cpio_root();
    for v in &r.variants {
        for (seed, rewrite) in [("1", "true"), ("2", "true"), ("3", "false")] {
            let out = myst_run(
                &["--rewrite-syscalls", rewrite],
                &c.image,
                &format!("/bin/sysfuzz_{v}"),
                &["8000", seed],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "sysfuzz_{v} seed {seed}: {:?}\n{err}",
                out.status
            );
            assert!(
                text(&out).starts_with("sysfuzz finished: "),
                "{}",
                text(&out)
            );
            assert!(!err.contains("internal error"), "{err}");
        }
    }
}
