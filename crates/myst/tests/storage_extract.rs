//! `myst extract` and `myst cat` read images built by mke2fs -d (+
//! veritysetup + FSSIG) back identically to the source tree, verified by
//! root hash or signature, and refuse or fail cleanly otherwise.

mod storage_util;
use storage_util::*;

#[test]
fn extract_restores_the_tree_for_each_geometry_and_trust_anchor() {
    if !have(&["mke2fs", "veritysetup", "openssl", "mkfifo"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    test_tree(&tree);
    let owners = is_root();
    let want = snapshot(&tree, owners);
    assert!(
        want.len() > 20 && want.contains_key("/gen/fifo"),
        "{}",
        want.len()
    );
    let size = image_size(&tree);
    let (key, pubk) = keypair(d.path(), "k", 2048);
    for (k, opts) in [
        &["-b", "1024", "-I", "128"][..],
        &["-b", "4096", "-I", "256"][..],
        &["-b", "2048", "-I", "256", "-O", "^dir_index"][..],
    ]
    .iter()
    .enumerate()
    {
        let signed = k == 1;
        let b = build_image(
            &tree,
            &d.path().join(format!("img{k}")),
            size,
            opts,
            signed.then_some(key.as_path()),
        );
        let out = d.path().join(format!("out{k}"));
        let mut cmd = myst();
        cmd.arg("extract");
        if signed {
            cmd.arg(format!("--pubkey={}", pubk.display()));
        } else {
            cmd.arg("--roothash").arg(&b.roothash_file);
        }
        let o = cmd.arg(&b.img).arg(&out).output().unwrap();
        assert!(
            o.status.success(),
            "{opts:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.stderr.is_empty(),
            "verified extract is silent: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same(&want, &snapshot(&out, owners));
    }
}

#[test]
fn unverified_reads_warn_once_and_bad_anchors_refuse() {
    if !have(&["mke2fs", "veritysetup", "openssl", "mkfifo"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), b"myst-test\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", tree.join("etc/link")).unwrap();
    std::os::unix::fs::symlink("etc", tree.join("e")).unwrap();
    let b = build_image(&tree, &d.path().join("img"), 8 << 20, &[], None);

    // No anchors: works, one warning line.
    let o = myst()
        .args(["cat"])
        .arg(&b.img)
        .arg("/e/link")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, b"myst-test\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not verified"), "{err}");
    let out = d.path().join("out");
    let o = myst()
        .arg("extract")
        .arg(&b.img)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    assert_eq!(
        std::fs::read(out.join("etc/hostname")).unwrap(),
        b"myst-test\n"
    );

    // Verified by root hash: silent.
    let o = myst()
        .arg("cat")
        .arg("--roothash")
        .arg(&b.roothash_file)
        .arg(&b.img)
        .arg("/etc/hostname")
        .output()
        .unwrap();
    assert!(o.status.success() && o.stderr.is_empty());
    assert_eq!(o.stdout, b"myst-test\n");

    // Anchors that do not match: refused, exit 1, clear message.
    let wrong = d.path().join("wrong");
    std::fs::write(&wrong, format!("{}\n", "ab".repeat(32))).unwrap();
    let (_k, other_pub) = keypair(d.path(), "other", 2048);
    for args in [
        vec!["--roothash".to_string(), wrong.display().to_string()],
        vec![format!("--pubkey={}", other_pub.display())],
    ] {
        let o = myst()
            .arg("cat")
            .args(&args)
            .arg(&b.img)
            .arg("/etc/hostname")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("myst: error: ") && err.contains("refusing an unverified image"),
            "{err}"
        );
        assert!(o.stdout.is_empty());
    }
    // Bad inputs.
    let o = myst()
        .arg("cat")
        .arg("--roothash")
        .arg(&b.img)
        .arg(&b.img)
        .arg("/x")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("64 hexadecimal digits"));
    let o = myst()
        .arg("cat")
        .arg("--roothash")
        .arg(&b.roothash_file)
        .arg(&b.img)
        .arg("/nope")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ENOENT"));
    let o = myst().arg("cat").arg(&b.img).arg("/etc").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a directory"));

    // Tampered data under a trusted root hash: I/O error, no wrong bytes.
    let mut data = std::fs::read(&b.img).unwrap();
    let pos = data.windows(10).position(|w| w == b"myst-test\n").unwrap();
    data[pos] = b'M';
    std::fs::write(&b.img, &data).unwrap();
    let o = myst()
        .arg("cat")
        .arg("--roothash")
        .arg(&b.roothash_file)
        .arg(&b.img)
        .arg("/etc/hostname")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("EIO") && err.contains("hash mismatch in data block"),
        "{err}"
    );
    // Unverified, the modified byte comes through (debug mode, as warned).
    let o = myst()
        .arg("cat")
        .arg(&b.img)
        .arg("/etc/hostname")
        .output()
        .unwrap();
    assert_eq!(o.stdout, b"Myst-test\n");
}

#[test]
fn extract_refuses_to_write_over_existing_entries() {
    if !have(&["mke2fs", "veritysetup"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("a")).unwrap();
    std::fs::write(tree.join("a/f"), b"x").unwrap();
    let b = build_image(&tree, &d.path().join("img"), 8 << 20, &[], None);
    let out = d.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("/tmp", out.join("a")).unwrap();
    let o = myst()
        .arg("extract")
        .arg(&b.img)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exists"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn encrypted_images_open_only_with_their_key() {
    if !have(&["mke2fs", "veritysetup", "mkfifo", "cryptsetup"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    test_tree(&tree);
    let owners = is_root();
    let want = snapshot(&tree, owners);
    let key: [u8; 64] = core::array::from_fn(|i| (i as u8).wrapping_mul(151).wrapping_add(7));
    let keyfile = d.path().join("key");
    std::fs::write(&keyfile, key).unwrap();
    let b = build_encrypted_image(&tree, &d.path().join("img"), image_size(&tree), &key);
    // An independent reader accepts the header.
    let dump = run(std::process::Command::new("cryptsetup")
        .arg("luksDump")
        .arg(&b.img));
    assert!(
        dump.contains("aes") && dump.contains("xts-plain64"),
        "{dump}"
    );

    let out = d.path().join("out");
    let o = myst()
        .arg("extract")
        .arg(format!("--key={}", keyfile.display()))
        .arg("--roothash")
        .arg(&b.roothash_file)
        .arg(&b.img)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same(&want, &snapshot(&out, owners));

    // No key: a clear error, not a corrupt file system.
    let o = myst()
        .arg("cat")
        .arg("--roothash")
        .arg(&b.roothash_file)
        .arg(&b.img)
        .arg("/gen/f1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("encrypted (LUKS); a key is needed"));
    // A wrong key is refused at open by the master-key digest.
    let wrong = d.path().join("wrong");
    let mut k2 = key;
    k2[63] ^= 1;
    std::fs::write(&wrong, k2).unwrap();
    let o = myst()
        .arg("cat")
        .arg("--key")
        .arg(&wrong)
        .arg(&b.img)
        .arg("/gen/f1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrong key"), "{err}");
    // A key file of the wrong size.
    std::fs::write(&wrong, &key[..32]).unwrap();
    let o = myst()
        .arg("cat")
        .arg("--key")
        .arg(&wrong)
        .arg(&b.img)
        .arg("/gen/f1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("64 raw bytes"));
    // Unverified but decrypted: works with the warning.
    let o = myst()
        .arg("cat")
        .arg("--key")
        .arg(&keyfile)
        .arg(&b.img)
        .arg("/gen/deep/er/still/leaf")
        .output()
        .unwrap();
    assert_eq!(o.stdout, b"leaf\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    // A key for a plain image is a mistake worth reporting.
    let plain = build_image(&tree, &d.path().join("plain"), image_size(&tree), &[], None);
    let o = myst()
        .arg("cat")
        .arg("--key")
        .arg(&keyfile)
        .arg(&plain.img)
        .arg("/gen/f1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("not LUKS-encrypted"));
}

#[test]
fn ephemeral_writes_on_a_verified_image_stay_in_memory() {
    use myst_blockdev::trust::{StackConfig, TrustPolicy};
    use myst_fs::ext2::mount_image;
    use myst_fs::{Errno, FileSystem, FileType, NewInode, Timespec};
    if !have(&["mke2fs", "veritysetup", "e2fsck"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/config"), vec![b'c'; 50_000]).unwrap();
    std::fs::write(tree.join("etc/other"), b"other\n").unwrap();
    let b = build_image(&tree, &d.path().join("img"), 8 << 20, &["-b", "4096"], None);
    let before = std::fs::read(&b.img).unwrap();
    let policy = TrustPolicy {
        root_hashes: vec![b.root],
        strict: true,
        ..Default::default()
    };
    let budget = 2u64 << 20;
    let cfg = StackConfig {
        overlay_budget: Some(budget),
        ..Default::default()
    };
    let m = mount_image(&b.img, &policy, &cfg).unwrap();
    let fs = m.fs.as_ref();
    let t = Timespec {
        sec: 1_700_000_000,
        nsec: 0,
    };
    let new = |kind| NewInode {
        kind,
        perm: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        time: t,
    };
    let etc = fs.lookup(fs.root(), b"etc").unwrap();
    fs.unlink(etc, b"other").unwrap();
    let cfgf = fs.lookup(etc, b"config").unwrap();
    fs.write(cfgf, 10, b"CHANGED").unwrap();
    let f = fs
        .create(fs.root(), b"new", &new(FileType::Regular))
        .unwrap();
    fs.write(f, 0, &vec![7u8; 300_000]).unwrap();
    // The budget turns into ENOSPC, never a crash or a dropped write.
    let big = fs
        .create(fs.root(), b"big", &new(FileType::Regular))
        .unwrap();
    let mut written = 0u64;
    let err = loop {
        match fs.write(big, written, &vec![1u8; 256 << 10]) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(err.code, Errno::ENOSPC.code);
    assert!(written > 0 && written < budget, "{written}");
    let mut buf = vec![0u8; 20];
    fs.read(cfgf, 5, &mut buf).unwrap();
    assert_eq!(&buf[..15], b"cccccCHANGEDccc");
    assert_eq!(
        fs.lookup(etc, b"other").unwrap_err().code,
        Errno::ENOENT.code
    );
    assert!(m.image.overlay.as_ref().unwrap().store().used_bytes() <= budget);
    // The host file never changes; the ephemeral file system is consistent.
    assert_eq!(std::fs::read(&b.img).unwrap(), before);
    let dev = &m.image.device;
    let mut all = vec![0u8; (dev.block_count() * 4096) as usize];
    dev.read_blocks(0, &mut all).unwrap();
    let snap = d.path().join("snapshot");
    std::fs::write(&snap, &all).unwrap();
    let o = spawn_output(std::process::Command::new("e2fsck").arg("-fn").arg(&snap));
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && !report.contains("? no"), "{report}");
    // A fresh mount sees the original image again.
    let m2 = mount_image(&b.img, &policy, &cfg).unwrap();
    let etc2 = m2.fs.lookup(m2.fs.root(), b"etc").unwrap();
    assert!(m2.fs.lookup(etc2, b"other").is_ok());
    assert_eq!(
        m2.fs.lookup(m2.fs.root(), b"new").unwrap_err().code,
        Errno::ENOENT.code
    );
}
