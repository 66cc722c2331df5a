//! Programs from ext2 roots made by `myst mkext2`: signed (verified with
//! --pubkey), unsigned (a warning; refused with --strict; silent with
//! --roothash), an ext2 image without trailer (raw, warned), and a tampered
//! image (I/O errors, never wrong bytes). Writes stay in memory: the image
//! files are unchanged after every run.

mod runtime_common;
use runtime_common::*;

fn s(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

#[test]
fn apps_from_signed_and_unsigned_images() {
    let r = root();
    let Some(e) = ext2_roots() else { return };
    let before = (sha256(&e.signed), sha256(&e.unsigned));
    let pubkey = s(&e.pubkey);
    for v in &r.variants {
        for (image, opts, warned) in [
            (&e.signed, vec!["--pubkey", pubkey.as_str()], false),
            (&e.unsigned, vec![], true),
        ] {
            let out = myst_run(&opts, image, &format!("/bin/hello_{v}"), &["ext2"]);
            assert_ok(&out, "hello");
            assert_eq!(text(&out), "Hello World!\narg 1: ext2\n");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                err.contains("myst: warning:"),
                warned,
                "{}: {err}",
                image.display()
            );
            for app in ["fileio", "errors"] {
                let bin = format!("{app}_{v}");
                let scratch = tempfile::tempdir().expect("tempdir");
                let nat = native_run(
                    &r.path.join("bin").join(&bin),
                    &[scratch.path().to_str().expect("utf-8")],
                    &r.path,
                );
                for dir in ["/tmp", "/data"] {
                    let out = myst_run(&opts, image, &format!("/bin/{bin}"), &[dir]);
                    assert_ok(&out, &bin);
                    assert_eq!(
                        text(&out),
                        text(&nat),
                        "{bin} in {dir} of {}",
                        image.display()
                    );
                }
            }
            let out = myst_run(&opts, image, &format!("/bin/exitcode_{v}"), &["5"]);
            assert_eq!(out.status.code(), Some(5));
            let out = myst_run(&opts, image, &format!("/bin/threads_{v}"), &[]);
            assert_eq!(
                text(&out),
                "total=200020000 tls-results=6006 main-tls=7 churn=500\n"
            );
        }
    }
    assert_eq!(
        (sha256(&e.signed), sha256(&e.unsigned)),
        before,
        "an image file changed"
    );
}

#[test]
fn trust_rules() {
    let r = root();
    let Some(e) = ext2_roots() else { return };
    let Some(v) = r.variants.first() else { return };
    let hello = format!("/bin/hello_{v}");
    // --strict refuses the unsigned image, with one clear line.
    let out = myst_run(&["--strict"], &e.unsigned, &hello, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("myst: error: cannot mount the ext2 root") && err.contains("unverified"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // ... and accepts it when its root hash is given, without a warning.
    let out = myst_run(
        &["--strict", "--roothash", &s(&e.roothash)],
        &e.unsigned,
        &hello,
        &[],
    );
    assert_ok(&out, "strict with --roothash");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The signed image is accepted in strict mode with its key...
    let out = myst_run(
        &["--strict", "--pubkey", &s(&e.pubkey)],
        &e.signed,
        &hello,
        &[],
    );
    assert_ok(&out, "strict with --pubkey");
    assert!(out.stderr.is_empty());
    // ... and refused without it.
    let out = myst_run(&["--strict"], &e.signed, &hello, &[]);
    assert_eq!(out.status.code(), Some(1));
    // A wrong root hash file is a clear error.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.roothash");
    std::fs::write(&bad, "xyz\n").expect("write");
    let out = myst_run(&["--roothash", &s(&bad)], &e.unsigned, &hello, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hexadecimal digits"));
}

#[test]
fn busybox_from_an_ext2_image() {
    if busybox().is_none() {
        return;
    }
    let Some(e) = ext2_roots() else { return };
    let c = cpio_root();
    let before = sha256(&e.signed);
    let pubkey = s(&e.pubkey);
    for cmd in [
        &["sha256sum", "data/bin.dat", "data/nums.txt"][..],
        &["wc", "data/nums.txt", "data/sub/a.txt"],
        &["grep", "-rn", "alpha", "data/sub"],
        &["awk", "{ s += $1 } END { print s }", "data/nums.txt"],
        &["cat", "data/link"],
    ] {
        let nat = native_run(&busybox().expect("busybox"), cmd, &c.tree);
        let out = myst_run(&["--pubkey", &pubkey], &e.signed, "/bin/busybox", cmd);
        assert_ok(&out, &format!("{cmd:?}"));
        assert_eq!(text(&out), text(&nat), "{cmd:?}");
    }
    // Writes (to files of the image) stay in memory.
    let out = myst_run(
        &["--pubkey", &pubkey],
        &e.signed,
        "/bin/busybox",
        &[
            "sh",
            "-c",
            "echo changed > /data/nums.txt; read -r l < /data/nums.txt; echo $l",
        ],
    );
    assert_eq!(text(&out), "changed\n");
    let out = myst_run(
        &["--pubkey", &pubkey],
        &e.signed,
        "/bin/busybox",
        &["head", "-n", "1", "/data/nums.txt"],
    );
    assert_eq!(text(&out), "1\n");
    assert_eq!(sha256(&e.signed), before);
}

#[test]
fn tampered_image_gives_io_errors_not_wrong_bytes() {
    if busybox().is_none() {
        return;
    }
    let Some(e) = ext2_roots() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("tampered.img");
    let mut bytes = std::fs::read(&e.signed).expect("read image");
    // Flip a byte inside /data/sub/a.txt's contents.
    let needle = b"alpha beta\ngamma delta";
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("file data in the image");
    bytes[pos + 1] ^= 0x20;
    std::fs::write(&img, &bytes).expect("write");
    let out = myst_run(
        &["--pubkey", &s(&e.pubkey)],
        &img,
        "/bin/busybox",
        &["cat", "/data/sub/a.txt"],
    );
    assert!(
        !out.status.success(),
        "a tampered block was read: {}",
        text(&out)
    );
    assert!(
        !text(&out).contains("aLpha"),
        "wrong bytes reached the program"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Other files still read.
    let out = myst_run(
        &["--pubkey", &s(&e.pubkey)],
        &img,
        "/bin/busybox",
        &["cat", "/data/sub/deeper/z.txt"],
    );
    assert_eq!(text(&out), "zzz\n");
}

#[test]
fn plain_mke2fs_image_without_trailer() {
    let r = root();
    let Some(v) = r.variants.first() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("t");
    std::fs::create_dir_all(tree.join("bin")).expect("mkdir");
    std::fs::copy(
        r.path.join(format!("bin/hello_{v}")),
        tree.join("bin/hello"),
    )
    .expect("copy");
    let img = dir.path().join("plain.img");
    let st = std::process::Command::new("mke2fs")
        .args([
            "-q",
            "-t",
            "ext2",
            "-b",
            "4096",
            "-O",
            "^dir_index,^ext_attr,^resize_inode",
            "-d",
        ])
        .arg(&tree)
        .arg(&img)
        .arg("8M")
        .output();
    if !matches!(st, Ok(ref o) if o.status.success()) {
        eprintln!("skipping: mke2fs not available");
        return;
    }
    let out = myst_run(&[], &img, "/bin/hello", &["raw"]);
    assert_ok(&out, "hello from a mke2fs image");
    assert_eq!(text(&out), "Hello World!\narg 1: raw\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not verified"));
    let out = myst_run(&["--strict"], &img, "/bin/hello", &[]);
    assert_eq!(out.status.code(), Some(1));
}
