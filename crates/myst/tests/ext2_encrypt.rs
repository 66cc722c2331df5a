//! `myst mkext2 --encrypt`: LUKS1 images checked by cryptsetup, by Python's
//! AES-XTS + e2fsck + debugfs, by veritysetup, and read back by `myst extract`.

mod ext2_util;

use ext2_util::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const PASS: &str = "correct horse battery staple";

fn oracles() -> bool {
    let missing: Vec<&str> = ["cryptsetup", "veritysetup", "e2fsck", "debugfs", "python3"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    let py = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !missing.is_empty() || !py {
        eprintln!(
            "skipping: missing {missing:?} or python3 cryptography (scripts/test.sh installs them)"
        );
        return false;
    }
    true
}

fn tree(root: &Path) {
    fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    fs::write(root.join("etc/hostname"), b"enclave\n").unwrap();
    fs::write(root.join("etc/deep/er/big"), bytes(7, 700_000)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("etc/hostname", root.join("link")).unwrap();
}

fn key_file(dir: &Path, seed: u64) -> PathBuf {
    let p = dir.join(format!("key{seed}"));
    fs::write(&p, bytes(seed, 64)).unwrap();
    p
}

/// Contents-only view of a manifest (rdump and extract do not keep owners
/// unless root, and the root directory itself is not part of it).
fn contents(root: &Path) -> Vec<(PathBuf, Kind)> {
    manifest(root)
        .entries
        .into_iter()
        .filter(|(p, _)| p != Path::new("lost+found"))
        .map(|(p, e)| (p, e.kind))
        .collect()
}

#[test]
fn encrypted_image_checked_by_cryptsetup_python_e2fsck_and_veritysetup() {
    if !oracles() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    tree(&src);
    let key = key_file(t.path(), 1);
    let img = t.path().join("enc.img");
    mkext2(
        &src,
        &img,
        &[
            &format!("--encrypt={}", key.display()),
            "--passphrase",
            PASS,
        ],
    );

    // cryptsetup sees a LUKS1 aes-xts-plain64 volume with a 512-bit key.
    let dump = stdout(&ok(Command::new("cryptsetup").arg("luksDump").arg(&img)));
    let field = |name: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("luksDump lacks {name}:\n{dump}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("Version:"), "1");
    assert_eq!(field("Cipher name:"), "aes");
    assert_eq!(field("Cipher mode:"), "xts-plain64");
    assert_eq!(field("Hash spec:"), "sha256");
    assert_eq!(field("MK bits:"), "512");
    let payload_sectors: u64 = field("Payload offset:").parse().unwrap();
    assert_eq!(payload_sectors, 4096);

    // The passphrase slot yields exactly the key file's bytes.
    let pass = t.path().join("pass");
    fs::write(&pass, PASS).unwrap();
    let out = ok(Command::new("cryptsetup")
        .args(["luksDump", "-q", "--dump-volume-key", "--key-file"])
        .arg(&pass)
        .arg(&img));
    let text = stdout(&out);
    let at = text
        .find("MK dump:")
        .or_else(|| text.find("Volume key:"))
        .unwrap_or_else(|| panic!("no key in luksDump output:\n{text}"));
    let after = &text[at..];
    let hex: String = after[after.find(':').unwrap() + 1..]
        .split_whitespace()
        .take_while(|w| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    let want: String = fs::read(&key)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex, want,
        "cryptsetup's volume key differs from the key file"
    );

    // Python decrypts the payload into a clean ext2 holding the source tree.
    let s = hash_offset(&img);
    let start = payload_sectors * 512;
    let plain = t.path().join("plain.ext2");
    ok(Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/oracles/xts.py"
        ))
        .arg("dec")
        .arg(&key)
        .arg(&img)
        .arg(start.to_string())
        .arg((s - start).to_string())
        .arg("0")
        .arg(&plain));
    e2fsck_clean(&plain);
    let rd = t.path().join("rdump");
    fs::create_dir(&rd).unwrap();
    ok(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", rd.display()))
        .arg(&plain));
    // rdump of / creates a directory named after the image's root: its contents.
    let got = if rd.join("etc").exists() {
        rd.clone()
    } else {
        fs::read_dir(&rd).unwrap().next().unwrap().unwrap().path()
    };
    assert_eq!(contents(&got), contents(&src));

    // The verity tree covers header + ciphertext.
    assert!(verity_verify(&img), "veritysetup verify failed");

    // myst extract with the key reads it back through verity + crypt + ext2.
    let ex = t.path().join("extracted");
    ok(myst()
        .arg("extract")
        .arg(format!("--key={}", key.display()))
        .arg(&img)
        .arg(&ex));
    assert_eq!(contents(&ex), contents(&src));

    // A wrong key is refused up front, not discovered as corruption.
    let wrong = key_file(t.path(), 2);
    let out = myst()
        .arg("extract")
        .arg(format!("--key={}", wrong.display()))
        .arg(&img)
        .arg(t.path().join("never"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("key"), "unclear wrong-key error: {err}");
}

#[test]
fn encrypted_images_are_reproducible_and_signed() {
    if !oracles() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    tree(&src);
    let key = key_file(t.path(), 3);
    let a = t.path().join("a.img");
    let b = t.path().join("b.img");
    let enc = format!("--encrypt={}", key.display());
    mkext2(&src, &a, &[&enc]);
    mkext2(&src, &b, &[&enc]);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    // Without a passphrase no key slot is active.
    let dump = stdout(&ok(Command::new("cryptsetup").arg("luksDump").arg(&a)));
    assert!(
        !dump.contains("ENABLED"),
        "unexpected active key slot:\n{dump}"
    );
    // The plain image of the same tree differs (it is not encrypted).
    let p = t.path().join("p.img");
    mkext2(&src, &p, &[]);
    let plain = fs::read(&p).unwrap();
    let encd = fs::read(&a).unwrap();
    assert!(!encd.windows(8).any(|w| w == b"enclave\n"));
    assert!(plain.windows(8).any(|w| w == b"enclave\n"));
}

#[test]
fn bad_encrypt_input_is_a_clear_error_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    tree(&src);
    let out_dir = t.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let img = out_dir.join("x.img");
    let short = t.path().join("short");
    fs::write(&short, [1u8; 63]).unwrap();
    let good = key_file(t.path(), 4);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![format!("--encrypt={}", t.path().join("missing").display())],
            "missing",
        ),
        (vec![format!("--encrypt={}", short.display())], "64"),
        (
            vec![
                format!("--encrypt={}", good.display()),
                "--passphrase=tooshort".into(),
            ],
            "14",
        ),
        (
            vec![
                format!("--encrypt={}", good.display()),
                format!("--encrypt={}", good.display()),
            ],
            "encrypt",
        ),
        (
            vec!["--passphrase=long enough passphrase".into()],
            "--encrypt",
        ),
    ];
    for (args, needle) in cases {
        let out = myst()
            .arg("mkext2")
            .args(&args)
            .arg(&src)
            .arg(&img)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(needle),
            "{args:?}: error lacks {needle:?}: {err}"
        );
        assert_eq!(
            fs::read_dir(&out_dir).unwrap().count(),
            0,
            "{args:?} left files behind"
        );
    }
}
