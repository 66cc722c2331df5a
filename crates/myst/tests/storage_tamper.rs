//! Tamper campaign: 1,200 single-byte flips spread over the ext2 part, the
//! hash tree, the verity superblock and the FSSIG trailer of a signed,
//! verified image. After each flip the image is opened under the trusted
//! key (strict) and walked completely: every read returns the original
//! bytes or fails with EIO, or the open fails cleanly; nothing panics or
//! hangs.

mod storage_util;
use myst_blockdev::trust::{StackConfig, TrustPolicy, TrustedKey};
use myst_fs::ext2::mount_image;
use myst_fs::{Attr, DirEntry, FileSystem, FileType, Ino};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;
use storage_util::*;

/// Everything a walk observes, by path.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Dir(Vec<DirEntry>),
    File(Vec<u8>),
    Link(Vec<u8>),
    Other,
}

type View = BTreeMap<String, (Ino, Attr, Seen)>;

/// Walks the clean image.
fn walk(fs: &dyn FileSystem) -> View {
    let mut out = View::new();
    let mut stack = vec![(fs.root(), String::new())];
    while let Some((ino, p)) = stack.pop() {
        let a = fs.getattr(ino).unwrap();
        let seen = match a.kind {
            FileType::Directory => {
                let es = fs.readdir(ino).unwrap();
                for e in &es {
                    if e.name != b"." && e.name != b".." {
                        stack.push((e.ino, format!("{p}/{}", String::from_utf8_lossy(&e.name))));
                    }
                }
                Seen::Dir(es)
            }
            FileType::Regular => {
                let mut b = vec![0u8; a.size as usize];
                assert_eq!(fs.read(ino, 0, &mut b).unwrap(), b.len());
                Seen::File(b)
            }
            FileType::Symlink => Seen::Link(fs.readlink(ino).unwrap()),
            _ => Seen::Other,
        };
        out.insert(p, (ino, a, seen));
    }
    out
}

/// Re-walks a possibly tampered image: each result equals the clean one or
/// is EIO. Returns the number of EIO results.
fn check(fs: &dyn FileSystem, clean: &View) -> Result<usize, String> {
    let mut eio = 0usize;
    let mut ok_or_eio = |what: &str, r: Result<bool, myst_fs::Errno>| -> Result<(), String> {
        match r {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("{what}: wrong data returned")),
            Err(e) if e.code == 5 => {
                eio += 1;
                Ok(())
            }
            Err(e) => Err(format!("{what}: {e} instead of the data or EIO")),
        }
    };
    for (path, (ino, attr, seen)) in clean {
        // Resolve by name, as a program would.
        let mut cur = fs.root();
        let mut resolved = true;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            match fs.lookup(cur, comp.as_bytes()) {
                Ok(i) => cur = i,
                Err(e) => {
                    ok_or_eio(&format!("lookup {path}"), Err(e))?;
                    resolved = false;
                    break;
                }
            }
        }
        if !resolved {
            continue;
        }
        if cur != *ino {
            return Err(format!("{path}: resolved to inode {cur}, not {ino}"));
        }
        ok_or_eio(
            &format!("getattr {path}"),
            fs.getattr(cur).map(|a| a == *attr),
        )?;
        match seen {
            Seen::Dir(es) => ok_or_eio(
                &format!("readdir {path}"),
                fs.readdir(cur).map(|g| g == *es),
            )?,
            Seen::File(data) => {
                let mut b = vec![0u8; data.len()];
                ok_or_eio(
                    &format!("read {path}"),
                    fs.read(cur, 0, &mut b)
                        .map(|n| n == data.len() && b == *data),
                )?;
                // A small unaligned read too.
                if data.len() > 5000 {
                    let mut s = vec![0u8; 1000];
                    ok_or_eio(
                        &format!("read {path} at 4000"),
                        fs.read(cur, 4000, &mut s)
                            .map(|_| s[..] == data[4000..5000]),
                    )?;
                }
            }
            Seen::Link(t) => ok_or_eio(
                &format!("readlink {path}"),
                fs.readlink(cur).map(|g| g == *t),
            )?,
            Seen::Other => {}
        }
    }
    Ok(eio)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Debug)]
struct Tally {
    open_failed: usize,
    some_eio: usize,
    all_original: usize,
}

fn campaign_tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin/sub")).unwrap();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..40u64 {
        let size = [0, 10, 1000, 5000, 70_000][i as usize % 5] + r.below(3000) as usize;
        let data: Vec<u8> = (0..size).map(|_| r.next() as u8).collect();
        let dir = if i % 3 == 0 { "bin/sub" } else { "bin" };
        std::fs::write(root.join(format!("{dir}/file{i}")), data).unwrap();
    }
    std::os::unix::fs::symlink("file1", root.join("bin/fast")).unwrap();
    std::os::unix::fs::symlink("z".repeat(400), root.join("bin/slow")).unwrap();
}

/// Flips one random bit per iteration in each region (name, start, length,
/// count), re-opens and re-walks the image after each, and restores the byte.
fn campaign(
    img: &Path,
    policy: &TrustPolicy,
    cfg: &StackConfig,
    clean: &View,
    regions: &[(&str, u64, u64, usize)],
    seed: u64,
) -> (usize, Tally) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut r = Rng(seed);
    let mut tally = Tally::default();
    let mut flips = 0;
    for &(name, start, len, n) in regions {
        for _ in 0..n {
            let off = start + r.below(len);
            let mut byte = [0u8];
            f.read_exact_at(&mut byte, off).unwrap();
            let bit = 1u8 << r.below(8);
            f.write_all_at(&[byte[0] ^ bit], off).unwrap();
            let (tx, rx) = mpsc::channel();
            let (img2, policy2, cfg2, clean2) = (
                img.to_path_buf(),
                policy.clone(),
                cfg.clone(),
                clean.clone(),
            );
            std::thread::spawn(move || {
                let res = match mount_image(&img2, &policy2, &cfg2) {
                    Err(_) => Ok(None),
                    Ok(m) => check(m.fs.as_ref(), &clean2).map(Some),
                };
                let _ = tx.send(res);
            });
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(None)) => tally.open_failed += 1,
                Ok(Ok(Some(0))) => tally.all_original += 1,
                Ok(Ok(Some(_))) => tally.some_eio += 1,
                Ok(Err(e)) => panic!("flip of bit {bit:#x} at byte {off} ({name}): {e}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("hang after a flip at byte {off} ({name})")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("panic after a flip at byte {off} ({name})")
                }
            }
            f.write_all_at(&byte, off).unwrap();
            flips += 1;
        }
    }
    eprintln!("{}: {flips} flips: {tally:?}", img.display());
    (flips, tally)
}

#[test]
fn tamper_campaign_every_read_is_original_or_eio() {
    if !have(&["mke2fs", "veritysetup", "openssl"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    campaign_tree(&tree);
    let (key, pubk) = keypair(d.path(), "k", 2048);
    let size = 4u64 << 20;
    let b = build_image(
        &tree,
        &d.path().join("img"),
        size,
        &["-b", "1024", "-I", "256"],
        Some(&key),
    );
    let file_len = std::fs::metadata(&b.img).unwrap().len();
    let trailer = file_len - 4096;
    let policy = TrustPolicy {
        public_keys: vec![TrustedKey::from_pem(&std::fs::read_to_string(&pubk).unwrap()).unwrap()],
        strict: true,
        ..Default::default()
    };
    let cfg = StackConfig::default();
    let clean = {
        let m = mount_image(&b.img, &policy, &cfg).unwrap();
        walk(m.fs.as_ref())
    };
    assert!(clean.len() > 40);
    assert_eq!(check_clean_against_tree(&clean, &tree), 42);
    let regions = [
        ("ext2 used part", 0, 2 << 20, 450),
        ("ext2 anywhere", 0, size, 150),
        ("hash tree", size + 4096, trailer - size - 4096, 300),
        ("verity superblock", size, 512, 100),
        ("verity superblock padding", size + 512, 4096 - 512, 50),
        ("fssig fields", trailer, 1120, 100),
        ("fssig padding", trailer + 1120, 4096 - 1120, 50),
    ];
    let (flips, tally) = campaign(
        &b.img,
        &policy,
        &cfg,
        &clean,
        &regions,
        0x1234_5678_9abc_def1,
    );
    assert!(flips >= 1000);
    // The campaign is not vacuous: flips were detected both ways.
    assert!(tally.some_eio > 100, "{tally:?}");
    assert!(tally.open_failed > 50, "{tally:?}");
    assert!(tally.all_original > 50, "{tally:?}");
}

#[test]
fn tamper_campaign_on_an_encrypted_image() {
    if !have(&["mke2fs", "veritysetup"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    campaign_tree(&tree);
    let key: [u8; 64] = core::array::from_fn(|i| (i as u8) ^ 0x5c);
    let b = build_encrypted_image(&tree, &d.path().join("img"), 4 << 20, &key);
    let s = b.hash_offset;
    let policy = TrustPolicy {
        root_hashes: vec![b.root],
        strict: true,
        ..Default::default()
    };
    let cfg = StackConfig {
        key: Some(key.to_vec()),
        ..Default::default()
    };
    let clean = {
        let m = mount_image(&b.img, &policy, &cfg).unwrap();
        walk(m.fs.as_ref())
    };
    assert_eq!(check_clean_against_tree(&clean, &tree), 42);
    let regions = [
        ("LUKS header", 0, 592, 100),
        ("ciphertext", 2 << 20, 2 << 20, 200),
        ("hash tree", s + 4096, 8 * 4096, 100),
    ];
    let (_, tally) = campaign(&b.img, &policy, &cfg, &clean, &regions, 77);
    assert!(
        tally.open_failed >= 100,
        "every header flip fails the open: {tally:?}"
    );
    assert!(tally.some_eio > 50, "{tally:?}");
}

/// The clean walk matches the source tree (so "original bytes" means the
/// tree's bytes); returns the number of regular files and symlinks checked.
fn check_clean_against_tree(clean: &View, tree: &Path) -> usize {
    let mut n = 0;
    for (p, (_, _, seen)) in clean {
        if p.is_empty() || p.starts_with("/lost+found") {
            continue;
        }
        let host = tree.join(&p[1..]);
        match seen {
            Seen::File(d) => {
                assert_eq!(&std::fs::read(&host).unwrap(), d, "{p}");
                n += 1;
            }
            Seen::Link(t) => {
                assert_eq!(
                    std::fs::read_link(&host)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                    &t[..],
                    "{p}"
                );
                n += 1;
            }
            _ => {}
        }
    }
    n
}
