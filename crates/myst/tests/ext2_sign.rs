//! `myst mkext2 --sign` and `myst fssig`, checked with openssl and against
//! an image made the Mystikos way (mke2fs -d + veritysetup format + FSSIG).

mod ext2_util;

use ext2_util::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(args: &[&str]) -> String {
    stdout(&ok(Command::new("openssl").args(args)))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_hex(data: &[u8], dir: &Path) -> String {
    let p = dir.join("sha-input");
    fs::write(&p, data).unwrap();
    let out = openssl(&["dgst", "-sha256", "-r", p.to_str().unwrap()]);
    out.split_whitespace().next().unwrap().to_string()
}

/// The modulus bytes (big-endian, no leading zero) of a private key.
fn modulus(priv_pem: &Path) -> Vec<u8> {
    let out = openssl(&[
        "rsa",
        "-in",
        priv_pem.to_str().unwrap(),
        "-modulus",
        "-noout",
    ]);
    let hexmod = out.trim().strip_prefix("Modulus=").unwrap();
    let mut m = unhex(hexmod);
    while m.first() == Some(&0) {
        m.remove(0);
    }
    m
}

struct Keys {
    dir: tempfile::TempDir,
    priv8: PathBuf,
    priv1: PathBuf,
    spki: PathBuf,
    rsapub: PathBuf,
}

fn keys(bits: u32) -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    openssl(&["genrsa", "-out", &s(&p("priv8.pem")), &bits.to_string()]);
    openssl(&[
        "rsa",
        "-in",
        &s(&p("priv8.pem")),
        "-traditional",
        "-out",
        &s(&p("priv1.pem")),
    ]);
    openssl(&[
        "rsa",
        "-in",
        &s(&p("priv8.pem")),
        "-pubout",
        "-out",
        &s(&p("spki.pem")),
    ]);
    openssl(&[
        "rsa",
        "-in",
        &s(&p("priv8.pem")),
        "-RSAPublicKey_out",
        "-out",
        &s(&p("rsapub.pem")),
    ]);
    Keys {
        priv8: p("priv8.pem"),
        priv1: p("priv1.pem"),
        spki: p("spki.pem"),
        rsapub: p("rsapub.pem"),
        dir,
    }
}

fn small_tree(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("bin/app"), bytes(11, 20_000)).unwrap();
    fs::write(root.join("hello"), b"hello\n").unwrap();
}

/// Checks a signed image with openssl: the signature verifies over the raw
/// root hash, equals what `openssl pkeyutl -sign` makes, and the signer is
/// the SHA-256 of the modulus.
fn check_signed(img: &Path, priv_pem: &Path, pub_pem: &Path, work: &Path) {
    let f = fssig(img);
    let root = unhex(&f["root_hash"]);
    assert_eq!(root.len(), 32);
    let sig = unhex(&f["signature"]);
    let n = modulus(priv_pem);
    assert_eq!(f["signature_size"], n.len().to_string());
    assert_eq!(sig.len(), n.len());
    assert_eq!(
        f["signer"],
        sha256_hex(&n, work),
        "signer = SHA-256 of the modulus"
    );
    let root_bin = work.join("root.bin");
    let sig_bin = work.join("sig.bin");
    fs::write(&root_bin, &root).unwrap();
    fs::write(&sig_bin, &sig).unwrap();
    let out = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        pub_pem.to_str().unwrap(),
        "-pkeyopt",
        "digest:sha256",
        "-in",
        root_bin.to_str().unwrap(),
        "-sigfile",
        sig_bin.to_str().unwrap(),
    ]);
    assert!(out.contains("Signature Verified Successfully"), "{out}");
    let theirs = work.join("theirs.bin");
    openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        priv_pem.to_str().unwrap(),
        "-pkeyopt",
        "digest:sha256",
        "-in",
        root_bin.to_str().unwrap(),
        "-out",
        theirs.to_str().unwrap(),
    ]);
    assert_eq!(
        fs::read(&theirs).unwrap(),
        sig,
        "same bytes as openssl pkeyutl -sign"
    );
    assert!(verity_verify(img));
}

#[test]
fn signed_images_verify_with_openssl() {
    let k = keys(3072);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let plain = work.path().join("plain.img");
    mkext2(&src, &plain, &[]);
    let plain_root = roothash(&plain);

    // Mystikos syntax PUB:PRIV, PKCS#8 private key, SPKI public key.
    let a = work.path().join("a.img");
    let spec = format!("{}:{}", k.spki.display(), k.priv8.display());
    mkext2(&src, &a, &["--sign", &spec]);
    check_signed(&a, &k.priv8, &k.spki, work.path());
    assert_eq!(
        roothash(&a),
        plain_root,
        "signing does not change the root hash"
    );

    // Only the private key (PKCS#1), `--sign=` form.
    let b = work.path().join("b.img");
    mkext2(&src, &b, &[&format!("--sign={}", k.priv1.display())]);
    check_signed(&b, &k.priv1, &k.spki, work.path());
    assert_eq!(fssig(&a), fssig(&b));

    // PKCS#1 public key.
    let c = work.path().join("c.img");
    let spec = format!("{}:{}", k.rsapub.display(), k.priv1.display());
    mkext2(&src, &c, &["-s", &spec]);
    assert_eq!(fssig(&a), fssig(&c));
    ok(Command::new("cmp").arg(&a).arg(&c));
    drop(k.dir);
}

#[test]
fn signed_with_an_8192_bit_key() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let img = work.path().join("img");
    let spec = format!(
        "{}:{}",
        data.join("test-rsa8192-pub.pem").display(),
        data.join("test-rsa8192-priv.pem").display()
    );
    mkext2(&src, &img, &["--sign", &spec]);
    assert_eq!(fssig(&img)["signature_size"], "1024");
    check_signed(
        &img,
        &data.join("test-rsa8192-priv.pem"),
        &data.join("test-rsa8192-pub.pem"),
        work.path(),
    );
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn bad_keys_are_refused_and_leave_nothing() {
    let k = keys(2048);
    let other = keys(2048);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let img = out.join("img");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{}:{}", other.spki.display(), k.priv8.display()),
            "does not match",
        ),
        (
            format!("{}:{}", k.priv8.display(), k.priv8.display()),
            "public key",
        ),
        (
            format!("{}:{}", k.spki.display(), k.spki.display()),
            "private key",
        ),
        (
            format!("{}/missing.pem", work.path().display()),
            "cannot read key",
        ),
        (format!("{}:", k.spki.display()), "malformed --sign"),
    ];
    for (spec, msg) in cases {
        let o = myst()
            .arg("mkext2")
            .arg("--sign")
            .arg(&spec)
            .arg(&src)
            .arg(&img)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{spec}: {err}");
        assert!(err.starts_with("myst: error: "), "{err}");
        assert!(err.contains(msg), "{spec}: expected {msg:?} in {err}");
        assert!(entries(&out).is_empty(), "{spec}: left {:?}", entries(&out));
    }
}

#[test]
fn fssig_prints_fields_and_roothash() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let img = work.path().join("img");
    mkext2(&src, &img, &[]);
    let text = stdout(&ok(myst().arg("fssig").arg(&img)));
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "magic",
            "version",
            "hash_offset",
            "root_hash",
            "signer",
            "signature",
            "signature_size"
        ]
    );
    let f = fssig(&img);
    assert_eq!(f["magic"], "0xf55198a153624d38");
    assert_eq!(f["version"], "1");
    assert_eq!(f["hash_offset"], (8u64 << 20).to_string());
    assert_eq!(f["signer"], "null");
    assert_eq!(f["signature"], "null");
    assert_eq!(f["signature_size"], "0");
    let rh = stdout(&ok(myst().arg("fssig").arg("--roothash").arg(&img)));
    assert_eq!(rh.len(), 65);
    assert!(rh.ends_with('\n'));
    assert_eq!(rh.trim(), f["root_hash"]);
    assert!(rh
        .trim()
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    // Not an image: exit 1 with a message naming the file.
    let o = myst().arg("fssig").arg(src.join("hello")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("myst: error: ") && err.contains("hello"),
        "{err}"
    );
    let o = myst()
        .arg("fssig")
        .arg(src.join("bin/app"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no FSSIG trailer"));
}

/// Writes an FSSIG trailer by the table in docs/FORMATS.md §4, independently of
/// myst's own writer.
fn mystikos_trailer(hash_offset: u64, root: &[u8], signer: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 4096];
    t[0..8].copy_from_slice(&[0x38, 0x4d, 0x62, 0x53, 0xa1, 0x98, 0x51, 0xf5]);
    t[8] = 1;
    t[16..24].copy_from_slice(&hash_offset.to_le_bytes());
    t[24..56].copy_from_slice(root);
    t[56..88].copy_from_slice(signer);
    t[88..88 + sig.len()].copy_from_slice(sig);
    t[1112..1120].copy_from_slice(&(sig.len() as u64).to_le_bytes());
    t
}

#[test]
fn reads_an_image_made_the_mystikos_way() {
    let k = keys(2048);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let img = work.path().join("mystikos.img");
    let s: u64 = 8 << 20;
    ok(Command::new("truncate")
        .arg("-s")
        .arg(s.to_string())
        .arg(&img));
    ok(Command::new("mke2fs")
        .args(["-q", "-t", "ext2", "-d"])
        .arg(&src)
        .arg(&img));
    let out = stdout(&ok(Command::new("veritysetup")
        .arg("format")
        .arg(format!("--hash-offset={s}"))
        .arg(&img)
        .arg(&img)));
    let root_hex = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_string();
    let root = unhex(&root_hex);
    let root_bin = work.path().join("root.bin");
    let sig_bin = work.path().join("sig.bin");
    fs::write(&root_bin, &root).unwrap();
    openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        k.priv8.to_str().unwrap(),
        "-pkeyopt",
        "digest:sha256",
        "-in",
        root_bin.to_str().unwrap(),
        "-out",
        sig_bin.to_str().unwrap(),
    ]);
    let sig = fs::read(&sig_bin).unwrap();
    let signer = unhex(&sha256_hex(&modulus(&k.priv8), work.path()));
    let trailer = mystikos_trailer(s, &root, &signer, &sig);
    let mut data = fs::read(&img).unwrap();
    data.extend_from_slice(&trailer);
    fs::write(&img, &data).unwrap();

    let f = fssig(&img);
    assert_eq!(f["magic"], "0xf55198a153624d38");
    assert_eq!(f["version"], "1");
    assert_eq!(f["hash_offset"], s.to_string());
    assert_eq!(f["root_hash"], root_hex);
    assert_eq!(f["signer"], hex(&signer));
    assert_eq!(f["signature"], hex(&sig));
    assert_eq!(f["signature_size"], "256");
    assert_eq!(roothash(&img), root_hex);
    // And myst's image of the same tree has the same layout: S, then the
    // verity area, then the trailer.
    let mine = work.path().join("myst.img");
    mkext2(&src, &mine, &[]);
    assert_eq!(hash_offset(&mine), s);
    assert_eq!(
        fs::metadata(&mine).unwrap().len(),
        fs::metadata(&img).unwrap().len(),
        "same total size as mke2fs + veritysetup + FSSIG"
    );
}
