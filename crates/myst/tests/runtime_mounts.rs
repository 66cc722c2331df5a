//! Configuration mounts (config.json `Mount` entries paired with
//! `--mount SRC=TARGET`) and the mount()/umount2() syscalls from inside the
//! guest (tests/apps/mountapp.c), on real images made by `myst mkext2`
//! (signed, unsigned, encrypted, tampered), `myst mkcpio`, and host
//! directories and files. Every file the guest reads is compared with the
//! source tree on the host; writes through hostfs are checked on the host.

mod runtime_common;
use runtime_common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// The images every test uses, made once.
struct Images {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    pubkey: PathBuf,
    other_pubkey: PathBuf,
    signed: PathBuf,
    unsigned: PathBuf,
    unsigned_roothash: String,
    encrypted: PathBuf,
    key: PathBuf,
    wrong_key: PathBuf,
    cpio: PathBuf,
}

static IMAGES: OnceLock<Images> = OnceLock::new();

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_ok(&out, what);
    out
}

fn images() -> &'static Images {
    IMAGES.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("myst-mnt-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let tree = d.join("tree");
        std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
        std::fs::write(tree.join("hello.txt"), "hello from the image\n").expect("write");
        let nums: String = (1..=2000).map(|i| format!("{i}\n")).collect();
        std::fs::write(tree.join("sub/nums.txt"), nums).expect("write");
        let bin: String = (0..40_000u32)
            .map(|i| char::from(b'a' + (i.wrapping_mul(2654435761) >> 27) as u8 % 26))
            .collect();
        std::fs::write(tree.join("letters.txt"), bin).expect("write");
        for name in ["priv", "other"] {
            run_ok(
                Command::new("openssl")
                    .args(["genrsa", "-out"])
                    .arg(d.join(format!("{name}.pem")))
                    .arg("2048"),
                "openssl genrsa (openssl is needed by these tests)",
            );
            run_ok(
                Command::new("openssl")
                    .args(["rsa", "-pubout", "-in"])
                    .arg(d.join(format!("{name}.pem")))
                    .arg("-out")
                    .arg(d.join(format!("{name}.pub.pem"))),
                "openssl rsa -pubout",
            );
        }
        let key = d.join("key.bin");
        let wrong_key = d.join("wrong.bin");
        std::fs::write(
            &key,
            (0..64u8)
                .map(|i| i.wrapping_mul(37) ^ 0x5a)
                .collect::<Vec<_>>(),
        )
        .expect("write key");
        std::fs::write(&wrong_key, [7u8; 64]).expect("write key");
        let sign = format!(
            "--sign={}:{}",
            d.join("priv.pub.pem").display(),
            d.join("priv.pem").display()
        );
        let signed = d.join("signed.img");
        let unsigned = d.join("unsigned.img");
        let encrypted = d.join("encrypted.img");
        run_ok(
            Command::new(myst_bin())
                .args(["mkext2", &sign])
                .arg(&tree)
                .arg(&signed),
            "mkext2 --sign",
        );
        run_ok(
            Command::new(myst_bin())
                .arg("mkext2")
                .arg(&tree)
                .arg(&unsigned),
            "mkext2",
        );
        run_ok(
            Command::new(myst_bin())
                .args(["mkext2", &sign, &format!("--encrypt={}", key.display())])
                .arg(&tree)
                .arg(&encrypted),
            "mkext2 --encrypt",
        );
        let out = run_ok(
            Command::new(myst_bin())
                .args(["fssig", "--roothash"])
                .arg(&unsigned),
            "fssig --roothash",
        );
        let cpio = d.join("tree.cpio");
        run_ok(
            Command::new(myst_bin()).arg("mkcpio").arg(&tree).arg(&cpio),
            "mkcpio",
        );
        Images {
            tree,
            pubkey: d.join("priv.pub.pem"),
            other_pubkey: d.join("other.pub.pem"),
            signed,
            unsigned,
            unsigned_roothash: text(&out).trim().to_string(),
            encrypted,
            key,
            wrong_key,
            cpio,
            _dir: dir,
        }
    })
}

/// A directory root with /bin/mountapp, empty /mnt/a and /mnt/b, and the
/// CPIO archive at /data/tree.cpio.
fn mount_root() -> (tempfile::TempDir, PathBuf, String) {
    let r = root();
    let v = r.variants.first().expect("a compiler");
    let dir = tempfile::Builder::new()
        .prefix("myst-mntroot-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().join("root");
    for sub in ["bin", "mnt/a", "mnt/b", "data"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    std::fs::copy(
        r.path.join("bin").join(format!("mountapp_{v}")),
        root.join("bin/mountapp"),
    )
    .expect("copy");
    std::fs::copy(&images().cpio, root.join("data/tree.cpio")).expect("copy");
    (dir, root, "/bin/mountapp".to_string())
}

/// What `mountapp c PATH` prints for a host file.
fn cat_of(guest: &str, host: &Path) -> String {
    format!(
        "cat {guest}:\n{}",
        std::fs::read_to_string(host).expect("read host file")
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn myst(args: &[String]) -> Output {
    Command::new(myst_bin())
        .arg("exec-linux")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run myst")
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn signed_ext2_config_mount_and_trust() {
    let im = images();
    let (dir, root, app) = mount_root();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"Mount": [{"Target": "/mnt/img", "Type": "ext2"}]}"#,
    )
    .expect("write");
    let cat_args = [
        "c",
        "/mnt/img/hello.txt",
        "c",
        "/mnt/img/sub/nums.txt",
        "c",
        "/mnt/img/letters.txt",
    ];
    let expected = cat_of("/mnt/img/hello.txt", &im.tree.join("hello.txt"))
        + &cat_of("/mnt/img/sub/nums.txt", &im.tree.join("sub/nums.txt"))
        + &cat_of("/mnt/img/letters.txt", &im.tree.join("letters.txt"));
    let with = |opts: &[&str], image: &Path| {
        let mut a = strs(opts);
        a.extend(["--app-config-path".into(), s(&cfg), "--mount".into()]);
        a.push(format!("{}=/mnt/img", image.display()));
        a.push(s(&root));
        a.push(app.clone());
        a.extend(strs(&cat_args));
        myst(&a)
    };
    let before = sha256(&im.signed);
    // Signed, trusted through --pubkey, in strict mode: silent and exact.
    let out = with(&["--strict", "--pubkey", &s(&im.pubkey)], &im.signed);
    assert_ok(&out, "signed mount");
    assert_eq!(text(&out), expected);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    // Strict without the key: a clear start-up error naming the entry.
    let out = with(&["--strict"], &im.signed);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("Mount[0] (/mnt/img)") && err.contains("unverified"),
        "{err}"
    );
    // Strict refuses an unsigned image whose root hash is not trusted.
    let out = with(&["--strict", "--pubkey", &s(&im.pubkey)], &im.unsigned);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Debug mode: its own FSSIG root hash checks it, with a warning.
    let out = with(&[], &im.unsigned);
    assert_ok(&out, "unsigned mount");
    assert_eq!(text(&out), expected);
    assert!(stderr(&out).contains("myst: warning:"), "{}", stderr(&out));
    // The entry's own PublicKey (a path relative to the config file) is
    // the only anchor of that mount: accepted in strict mode without
    // --pubkey; another key is refused even without --strict.
    std::fs::copy(&im.pubkey, dir.path().join("mount.pub.pem")).expect("copy");
    for (key, ok) in [("mount.pub.pem", true), ("other.pem", false)] {
        if key == "other.pem" {
            std::fs::copy(&im.other_pubkey, dir.path().join("other.pem")).expect("copy");
        }
        std::fs::write(
            &cfg,
            format!(
                r#"{{"Mount": [{{"Target": "/mnt/img", "Type": "ext2", "PublicKey": "{key}"}}]}}"#
            ),
        )
        .expect("write");
        let out = with(if ok { &["--strict"] } else { &[] }, &im.signed);
        if ok {
            assert_ok(&out, "entry PublicKey");
            assert_eq!(text(&out), expected);
        } else {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(stderr(&out).contains("unverified"), "{}", stderr(&out));
        }
    }
    // The entry's RootHash: the unsigned image is accepted in strict mode.
    std::fs::write(
        &cfg,
        format!(
            r#"{{"Mount": [{{"Target": "/mnt/img", "Type": "ext2", "RootHash": "{}"}}]}}"#,
            im.unsigned_roothash
        ),
    )
    .expect("write");
    let out = with(&["--strict"], &im.unsigned);
    assert_ok(&out, "entry RootHash");
    assert_eq!(text(&out), expected);
    // (The signed image has the same tree, so the same root hash: fine.)
    let out = with(&["--strict"], &im.signed);
    assert_ok(&out, "the same root hash, signed");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"Mount": [{{"Target": "/mnt/img", "Type": "ext2", "RootHash": "{}"}}]}}"#,
            "0".repeat(64)
        ),
    )
    .expect("write");
    let out = with(&[], &im.unsigned);
    assert_eq!(
        out.status.code(),
        Some(1),
        "another root hash: {}",
        text(&out)
    );
    assert!(stderr(&out).contains("unverified"), "{}", stderr(&out));
    assert_eq!(sha256(&im.signed), before, "the image changed");
}

#[test]
fn tampered_mount_image() {
    let im = images();
    let (dir, root, app) = mount_root();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"Mount": [{"Target": "/mnt/img", "Type": "ext2"}]}"#,
    )
    .expect("write");
    let img = dir.path().join("tampered.img");
    let mut bytes = std::fs::read(&im.signed).expect("read");
    let needle = b"hello from the image";
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("file data in the image");
    bytes[pos] ^= 0x20;
    std::fs::write(&img, &bytes).expect("write");
    let ops = ["c", "/mnt/img/hello.txt", "c", "/mnt/img/sub/nums.txt"];
    for opts in [vec!["--strict", "--pubkey", &s(&im.pubkey)], vec![]] {
        let mut a = strs(&opts);
        a.extend([
            "--app-config-path".into(),
            s(&cfg),
            "--mount".into(),
            format!("{}=/mnt/img", img.display()),
            s(&root),
            app.clone(),
        ]);
        a.extend(strs(&ops));
        let out = myst(&a);
        assert_ok(&out, "tampered");
        let t = text(&out);
        assert!(
            !t.contains("Hello from"),
            "modified bytes reached the guest: {t}"
        );
        assert!(
            t.starts_with("cat /mnt/img/hello.txt:\n[read: EIO]\n"),
            "{opts:?}: {t}"
        );
        assert!(
            t.ends_with(&cat_of(
                "/mnt/img/sub/nums.txt",
                &im.tree.join("sub/nums.txt")
            )),
            "other files still read: {t}"
        );
    }
    // A trailer whose root hash was changed no longer matches the signature:
    // strict refuses the mount at start-up.
    let mut bytes = std::fs::read(&im.signed).expect("read");
    let n = bytes.len();
    bytes[n - 4096 + 24] ^= 1;
    std::fs::write(&img, &bytes).expect("write");
    let out = myst(&[
        "--strict".into(),
        "--pubkey".into(),
        s(&im.pubkey),
        "--app-config-path".into(),
        s(&cfg),
        "--mount".into(),
        format!("{}=/mnt/img", img.display()),
        s(&root),
        app,
        "c".into(),
        "/mnt/img/hello.txt".into(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("unverified"), "{}", stderr(&out));
}

#[test]
fn hostfs_and_ramfs_config_mounts() {
    let im = images();
    let (dir, root, app) = mount_root();
    let host = dir.path().join("hostdir");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("in.txt"), "from the host\n").expect("write");
    let single = dir.path().join("single.txt");
    std::fs::write(&single, "one file\n").expect("write");
    let ro = dir.path().join("ro");
    std::fs::create_dir_all(&ro).expect("mkdir");
    std::fs::write(ro.join("r.txt"), "read only\n").expect("write");
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"Mount": [
            {"Target": "/mnt/host", "Type": "hostfs"},
            {"Target": "/etc/single.txt", "Type": "hostfs"},
            {"Target": "/mnt/ro", "Type": "hostfs", "Flags": ["ro"]},
            {"Target": "/mnt/cpio", "Type": "ramfs"}
        ]}"#,
    )
    .expect("write");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    let out = myst(&[
        "--app-config-path".into(),
        s(&cfg),
        "--mount".into(),
        format!("{}=/mnt/host", host.display()),
        "--mount".into(),
        format!("{}=/etc/single.txt", single.display()),
        "--mount".into(),
        format!("{}=/mnt/ro/", ro.display()),
        "--mount".into(),
        format!("{}=/mnt/cpio", im.cpio.display()),
        s(&root),
        app,
        "c".into(),
        "/mnt/host/in.txt".into(),
        "w".into(),
        "/mnt/host/out.txt".into(),
        "written by the guest".into(),
        "c".into(),
        "/etc/single.txt".into(),
        "w".into(),
        "/etc/single.txt".into(),
        "replaced".into(),
        "c".into(),
        "/mnt/ro/r.txt".into(),
        "w".into(),
        "/mnt/ro/r.txt".into(),
        "no".into(),
        "c".into(),
        "/mnt/cpio/sub/nums.txt".into(),
        "l".into(),
    ]);
    assert_ok(&out, "hostfs and ramfs mounts");
    let expected = cat_of("/mnt/host/in.txt", &host.join("in.txt"))
        + "write /mnt/host/out.txt: ok\n"
        + "cat /etc/single.txt:\none file\n"
        + "write /etc/single.txt: ok\n"
        + &cat_of("/mnt/ro/r.txt", &ro.join("r.txt"))
        + "write /mnt/ro/r.txt: EROFS\n"
        + &cat_of("/mnt/cpio/sub/nums.txt", &im.tree.join("sub/nums.txt"))
        + "mount /mnt/host hostfs rw\nmount /mnt/ro hostfs ro\nmount /mnt/cpio ramfs rw\n";
    assert_eq!(text(&out), expected, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).expect("the guest's write on the host"),
        "written by the guest\n"
    );
    assert_eq!(
        std::fs::read_to_string(&single).expect("read"),
        "replaced\n"
    );
    // Mount points are not created in the root directory on the host.
    assert!(!root.join("mnt/host").exists() && !root.join("etc/single.txt").exists());
}

fn key_hex(p: &Path) -> String {
    std::fs::read(p)
        .expect("read key")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn encrypted_image_mounted_by_the_guest_and_by_config() {
    let im = images();
    let (dir, root, app) = mount_root();
    let img = s(&im.encrypted);
    let good = key_hex(&im.key);
    let wrong = key_hex(&im.wrong_key);
    let mut a = strs(&["--strict", "--pubkey"]);
    a.push(s(&im.pubkey));
    a.push(s(&root));
    a.push(app.clone());
    for op in [
        ["m", &img, "/mnt/a", "ext2", "1", "-"],
        ["m", &img, "/mnt/a", "ext2", "1", &format!("key={wrong}")],
        ["m", &img, "/mnt/a", "ext2", "1", &format!("key={good}")],
        ["m", &img, "/mnt/b", "ext2", "0", &format!("arr:{good}")],
    ] {
        a.extend(strs(&op));
    }
    a.extend(strs(&[
        "c",
        "/mnt/a/hello.txt",
        "c",
        "/mnt/b/letters.txt",
        "w",
        "/mnt/a/new.txt",
        "x",
        "w",
        "/mnt/b/new.txt",
        "in memory",
        "c",
        "/mnt/b/new.txt",
    ]));
    let out = myst(&a);
    assert_ok(&out, "guest mounts of an encrypted image");
    let expected = "mount ext2 /mnt/a: ENOKEY\n".to_string()
        + "mount ext2 /mnt/a: EKEYREJECTED\n"
        + "mount ext2 /mnt/a: ok\n"
        + "mount ext2 /mnt/b: ok\n"
        + &cat_of("/mnt/a/hello.txt", &im.tree.join("hello.txt"))
        + &cat_of("/mnt/b/letters.txt", &im.tree.join("letters.txt"))
        + "write /mnt/a/new.txt: EROFS\n"
        + "write /mnt/b/new.txt: ok\n"
        + "cat /mnt/b/new.txt:\nin memory\n";
    assert_eq!(text(&out), expected, "{}", stderr(&out));
    // A config mount with the entry's KeyFile (relative to the config).
    std::fs::copy(&im.key, dir.path().join("data.key")).expect("copy");
    let cfg = dir.path().join("config.json");
    for (keyfile, ok) in [("data.key", true), ("wrong.key", false)] {
        if !ok {
            std::fs::copy(&im.wrong_key, dir.path().join("wrong.key")).expect("copy");
        }
        std::fs::write(
            &cfg,
            format!(
                r#"{{"Mount": [{{"Target": "/mnt/enc", "Type": "ext2", "KeyFile": "{keyfile}"}}]}}"#
            ),
        )
        .expect("write");
        let out = myst(&[
            "--strict".into(),
            "--pubkey".into(),
            s(&im.pubkey),
            "--app-config-path".into(),
            s(&cfg),
            "--mount".into(),
            format!("{img}=/mnt/enc"),
            s(&root),
            app.clone(),
            "c".into(),
            "/mnt/enc/sub/nums.txt".into(),
        ]);
        if ok {
            assert_ok(&out, "KeyFile");
            assert_eq!(
                text(&out),
                cat_of("/mnt/enc/sub/nums.txt", &im.tree.join("sub/nums.txt"))
            );
        } else {
            assert_eq!(out.status.code(), Some(1));
            assert!(
                stderr(&out).contains("Mount[0] (/mnt/enc)"),
                "{}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn mount_and_umount_from_the_guest() {
    let im = images();
    let (dir, root, app) = mount_root();
    let host = dir.path().join("h");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("f.txt"), "host file\n").expect("write");
    std::fs::write(root.join("mnt/a/under.txt"), "under the mount\n").expect("write");
    let h = s(&host);
    let out = myst(&strs(&[
        &s(&root),
        &app,
        // hostfs over a directory that has a file of its own.
        "m",
        &h,
        "/mnt/a",
        "hostfs",
        "0",
        "-",
        "c",
        "/mnt/a/f.txt",
        "c",
        "/mnt/a/under.txt",
        "m",
        &h,
        "/mnt/a",
        "hostfs",
        "0",
        "-",
        "m",
        &h,
        "/mnt/none",
        "hostfs",
        "0",
        "-",
        "m",
        &h,
        "/mnt/a",
        "nfs",
        "0",
        "-",
        "m",
        "relative",
        "/mnt/b",
        "hostfs",
        "0",
        "-",
        // ramfs of a CPIO archive in the guest's file system, and an empty one.
        "m",
        "/data/tree.cpio",
        "/mnt/b",
        "ramfs",
        "0",
        "-",
        "c",
        "/mnt/b/hello.txt",
        "m",
        "-",
        "/mnt/b/sub",
        "ramfs",
        "0",
        "-",
        "w",
        "/mnt/b/sub/x",
        "in ramfs",
        "c",
        "/mnt/b/sub/x",
        "l",
        "L",
        // Busy while a file is open or while something is mounted below.
        "o",
        "/mnt/a/f.txt",
        "u",
        "/mnt/a",
        "0",
        "u",
        "/mnt/b",
        "0",
        "F",
        "/mnt/a/f.txt",
        "x",
        "3",
        "u",
        "/mnt/a",
        "0",
        "c",
        "/mnt/a/under.txt",
        "c",
        "/mnt/a/f.txt",
        "u",
        "/mnt/a",
        "0",
        "u",
        "/mnt/b/sub",
        "0",
        // MNT_DETACH while in use: gone at once.
        "d",
        "/mnt/b",
        "u",
        "/mnt/b",
        "0",
        "u",
        "/mnt/b",
        "2",
        "c",
        "/mnt/b/hello.txt",
        "d",
        "/",
        "u",
        "/",
        "0",
        "u",
        "/mnt/a",
        "64",
        "l",
    ]));
    assert_ok(&out, "mount ops");
    let expected = "mount hostfs /mnt/a: ok\n".to_string()
        + "cat /mnt/a/f.txt:\nhost file\n"
        + "cat /mnt/a/under.txt: ENOENT\n"
        + "mount hostfs /mnt/a: EBUSY\n"
        + "mount hostfs /mnt/none: ENOENT\n"
        + "mount nfs /mnt/a: ENODEV\n"
        + "mount hostfs /mnt/b: EINVAL\n"
        + "mount ramfs /mnt/b: ok\n"
        + &cat_of("/mnt/b/hello.txt", &im.tree.join("hello.txt"))
        + "mount ramfs /mnt/b/sub: ok\n"
        + "write /mnt/b/sub/x: ok\n"
        + "cat /mnt/b/sub/x:\nin ramfs\n"
        + "mount /mnt/a hostfs rw\nmount /mnt/b ramfs rw\nmount /mnt/b/sub ramfs rw\n"
        + "mountinfo / /mnt/a - hostfs\nmountinfo / /mnt/b - ramfs\nmountinfo / /mnt/b/sub - ramfs\n"
        + "open /mnt/a/f.txt: fd 3\n"
        + "umount /mnt/a 0: EBUSY\n"
        + "umount /mnt/b 0: EBUSY\n"
        + "child cat /mnt/a/f.txt:\nhost file\nchild exited 0\n"
        + "close 3: ok\n"
        + "umount /mnt/a 0: ok\n"
        + "cat /mnt/a/under.txt:\nunder the mount\n"
        + "cat /mnt/a/f.txt: ENOENT\n"
        + "umount /mnt/a 0: EINVAL\n"
        + "umount /mnt/b/sub 0: ok\n"
        + "chdir /mnt/b: ok\n"
        + "umount /mnt/b 0: EBUSY\n"
        + "umount /mnt/b 2: ok\n"
        + "cat /mnt/b/hello.txt: ENOENT\n"
        + "chdir /: ok\n"
        + "umount / 0: EBUSY\n"
        + "umount /mnt/a 64: EINVAL\n";
    assert_eq!(text(&out), expected, "{}", stderr(&out));
}

#[test]
fn guest_mounts_under_strict() {
    let im = images();
    let (dir, root, app) = mount_root();
    let h = s(dir.path());
    let out = myst(&strs(&[
        "--strict",
        "--pubkey",
        &s(&im.pubkey),
        &s(&root),
        &app,
        "m",
        &h,
        "/mnt/a",
        "hostfs",
        "0",
        "-",
        "m",
        &s(&im.unsigned),
        "/mnt/a",
        "ext2",
        "1",
        "-",
        "m",
        &s(&im.signed),
        "/mnt/a",
        "ext2",
        "1",
        "-",
        "c",
        "/mnt/a/hello.txt",
        "w",
        "/mnt/a/hello.txt",
        "x",
    ]));
    assert_ok(&out, "strict guest mounts");
    let expected = "mount hostfs /mnt/a: EPERM\n".to_string()
        + "mount ext2 /mnt/a: EPERM\n"
        + "mount ext2 /mnt/a: ok\n"
        + &cat_of("/mnt/a/hello.txt", &im.tree.join("hello.txt"))
        + "write /mnt/a/hello.txt: EROFS\n";
    assert_eq!(text(&out), expected, "{}", stderr(&out));
}

#[test]
fn hostfs_appends_from_many_processes_lose_nothing() {
    let r = root();
    let v = r.variants.first().expect("a compiler");
    let (dir, root, app) = mount_root();
    let host = dir.path().join("appends");
    std::fs::create_dir_all(&host).expect("mkdir");
    // Natively (the oracle): 8 processes x 500 O_APPEND lines.
    let native = Command::new(r.path.join("bin").join(format!("mountapp_{v}")))
        .args(["A", &s(&host.join("native.txt")), "8", "500"])
        .output()
        .expect("native");
    assert_ok(&native, "native appends");
    let out = myst(&strs(&[
        &s(&root),
        &app,
        "m",
        &s(&host),
        "/mnt/a",
        "hostfs",
        "0",
        "-",
        "A",
        "/mnt/a/guest.txt",
        "8",
        "500",
    ]));
    assert_ok(&out, "guest appends");
    assert_eq!(
        text(&out),
        "mount hostfs /mnt/a: ok\nappend /mnt/a/guest.txt: 0 processes failed\n"
    );
    let sorted = |p: &Path| {
        let mut l: Vec<String> = std::fs::read_to_string(p)
            .expect("read")
            .lines()
            .map(str::to_string)
            .collect();
        l.sort();
        l
    };
    let (n, g) = (
        sorted(&host.join("native.txt")),
        sorted(&host.join("guest.txt")),
    );
    assert_eq!(n.len(), 4000);
    assert_eq!(g, n, "appended lines lost or damaged");
}

#[test]
fn hostfs_stays_inside_its_directory_across_renames() {
    let (dir, root, app) = mount_root();
    let inside = dir.path().join("inside");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(inside.join("d/sub")).expect("mkdir");
    std::fs::create_dir_all(outside.join("sub")).expect("mkdir");
    std::fs::write(outside.join("sub/secret.txt"), "SECRET\n").expect("write");
    std::fs::write(inside.join("d/sub/own.txt"), "inner\n").expect("write");
    // The parent holds /mnt/a/d/sub open; a forked child renames d away
    // and leaves a symlink to a host directory outside the mount in its
    // place; the parent's later opens through its descriptor must not
    // reach the host outside the mounted directory.
    let out = myst(&strs(&[
        &s(&root),
        &app,
        "m",
        &s(&inside),
        "/mnt/a",
        "hostfs",
        "0",
        "-",
        "D",
        "/mnt/a/d/sub",
        "R",
        "/mnt/a/d",
        "/mnt/a/e",
        &s(&outside),
        "C",
        "3",
        "secret.txt",
        "c",
        "/mnt/a/e/sub/own.txt",
    ]));
    assert_ok(&out, "rename race");
    let t = text(&out);
    assert!(
        !t.contains("SECRET"),
        "read a host file outside the mount: {t}"
    );
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "mount hostfs /mnt/a: ok",
            "opendir /mnt/a/d/sub: fd 3",
            "child renamed /mnt/a/d: ok"
        ]
    );
    assert!(lines[3].starts_with("catat 3 secret.txt: E"), "{t}");
    assert_eq!(lines[4..], ["cat /mnt/a/e/sub/own.txt:", "inner"], "{t}");
    // The symlink the child left is the guest's: followed in the guest's
    // namespace, where that host path does not exist.
    assert!(inside.join("d").is_symlink());
}

#[test]
fn hostfs_owner_maps() {
    let id = Command::new("id").arg("-u").output().expect("id -u");
    if text(&id).trim() != "0" {
        eprintln!("hostfs_owner_maps: needs root (chown of host files); skipped");
        return;
    }
    let (dir, root, app) = mount_root();
    let host = dir.path().join("owned");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("f"), "x").expect("write");
    std::os::unix::fs::lchown(host.join("f"), Some(1234), Some(4321)).expect("chown");
    std::fs::write(host.join("g"), "y").expect("write");
    std::os::unix::fs::lchown(host.join("g"), Some(999), Some(999)).expect("chown");
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"Mount": [{"Target": "/mnt/b", "Type": "hostfs"}]}"#,
    )
    .expect("write");
    let out = myst(&strs(&[
        "--host-to-enc-uid-map",
        "1234:77,5:6",
        "--host-to-enc-gid-map",
        "4321:88",
        "--app-config-path",
        &s(&cfg),
        "--mount",
        &format!("{}=/mnt/b", host.display()),
        &s(&root),
        &app,
        // A configuration mount and a guest mount() get the same mapping.
        "m",
        &s(&host),
        "/mnt/a",
        "hostfs",
        "0",
        "-",
        "S",
        "/mnt/a/f",
        "S",
        "/mnt/b/f",
        "S",
        "/mnt/a/g",
        "O",
        "/mnt/a/g",
        "77",
        "88",
    ]));
    assert_ok(&out, "owner maps");
    assert_eq!(
        text(&out),
        "mount hostfs /mnt/a: ok\nstat /mnt/a/f: uid 77 gid 88\nstat /mnt/b/f: uid 77 gid 88\nstat /mnt/a/g: uid 999 gid 999\nchown /mnt/a/g 77 88: ok\n"
    );
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(host.join("g")).expect("stat");
    assert_eq!(
        (md.uid(), md.gid()),
        (1234, 4321),
        "chown to a guest id stores its host id"
    );
    let out = myst(&strs(&["--host-to-enc-uid-map", "12:x", &s(&root), &app]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--host-to-enc-uid-map: \"12:x\": expected HOST:GUEST"),
        "{}",
        stderr(&out)
    );
}

/// The same mount()/umount2() sequence on tmpfs, natively (as root, in a
/// private mount namespace, chrooted into the same root directory) and
/// under myst: the results must be the same.
#[test]
fn tmpfs_mount_semantics_match_native() {
    let id = Command::new("id").arg("-u").output().expect("id -u");
    if text(&id).trim() != "0" {
        eprintln!("tmpfs_mount_semantics_match_native: needs root (mount natively); skipped");
        return;
    }
    let (_dir, root, app) = mount_root();
    let ops = strs(&[
        "m",
        "-",
        "/mnt/a",
        "tmpfs",
        "0",
        "-",
        "w",
        "/mnt/a/x",
        "in tmpfs",
        "c",
        "/mnt/a/x",
        "o",
        "/mnt/a/x",
        "u",
        "/mnt/a",
        "0",
        "F",
        "/mnt/a/x",
        "x",
        "3",
        "u",
        "/mnt/a",
        "0",
        "c",
        "/mnt/a/x",
        "u",
        "/mnt/a",
        "0",
        "m",
        "-",
        "/mnt/none",
        "tmpfs",
        "0",
        "-",
        "m",
        "-",
        "/mnt/a",
        "nosuchfs",
        "0",
        "-",
        "m",
        "-",
        "/mnt/b",
        "tmpfs",
        "1",
        "-",
        "w",
        "/mnt/b/y",
        "no",
        "d",
        "/mnt/b",
        "u",
        "/mnt/b",
        "0",
        "u",
        "/mnt/b",
        "2",
        "d",
        "/",
        "m",
        "-",
        "/mnt/a",
        "tmpfs",
        "0",
        "-",
        "k",
        "/mnt/a/sub",
        "m",
        "-",
        "/mnt/a/sub",
        "tmpfs",
        "0",
        "-",
        "w",
        "/mnt/a/sub/z",
        "deep",
        "u",
        "/mnt/a",
        "0",
        "u",
        "/mnt/a/sub",
        "64",
        "u",
        "/mnt/a",
        "2",
        "c",
        "/mnt/a/sub/z",
        "u",
        "/mnt/a/sub",
        "0",
    ]);
    let native = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "chroot"])
        .arg(&root)
        .arg(&app)
        .args(&ops)
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    assert_ok(&native, "native mount sequence");
    let mut a = vec![s(&root), app];
    a.extend(ops);
    let out = myst(&a);
    assert_ok(&out, "mount sequence under myst");
    assert!(
        text(&native).contains("umount /mnt/a 0: EBUSY"),
        "{}",
        text(&native)
    );
    assert_eq!(text(&out), text(&native), "{}", stderr(&out));
}

#[test]
fn writes_to_a_guest_ext2_mount_are_shared_with_children() {
    let im = images();
    let (_dir, root, app) = mount_root();
    let out = myst(&strs(&[
        "--pubkey",
        &s(&im.pubkey),
        &s(&root),
        &app,
        "m",
        &s(&im.signed),
        "/mnt/a",
        "ext2",
        "0",
        "-",
        "A",
        "/mnt/a/sub/log.txt",
        "4",
        "25",
        "c",
        "/mnt/a/sub/log.txt",
        "c",
        "/mnt/a/sub/nums.txt",
    ]));
    assert_ok(&out, "appends of children to an ext2 mount");
    let t = text(&out);
    let (head, rest) = t
        .split_once("cat /mnt/a/sub/log.txt:\n")
        .unwrap_or_else(|| panic!("{t}"));
    assert_eq!(
        head,
        "mount ext2 /mnt/a: ok\nappend /mnt/a/sub/log.txt: 0 processes failed\n"
    );
    let (log, nums) = rest
        .split_once("cat /mnt/a/sub/nums.txt:\n")
        .unwrap_or_else(|| panic!("{t}"));
    let mut got: Vec<&str> = log.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..4)
        .flat_map(|p| (0..25).map(move |l| format!("process {p} line {l}")))
        .collect();
    want.sort();
    assert_eq!(got, want, "every child's lines, seen by the parent");
    assert_eq!(
        nums,
        std::fs::read_to_string(im.tree.join("sub/nums.txt")).expect("read")
    );
}
