//! The verity layer and the trust rules against independent tools:
//! images formatted by `veritysetup format`, signatures made by `openssl
//! pkeyutl`.

use myst_blockdev::file::HostFile;
use myst_blockdev::trust::{
    evaluate, open_image, OpenError, StackConfig, TrustPolicy, TrustedKey, Verification,
};
use myst_blockdev::verity::{VerityDevice, VerityOpenError};
use myst_blockdev::{BlockDevice, Errno};
use myst_formats::fssig::Fssig;
use sha2::{Digest, Sha256};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

/// Runs a command, retrying while the executable is busy (ETXTBSY: something
/// on this shared machine has it open for writing).
fn spawn_output(cmd: &mut Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            r => return r.unwrap(),
        }
    }
    panic!("{cmd:?}: executable stayed busy")
}

fn run(cmd: &mut Command) -> String {
    let out = spawn_output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Writes `data` (whole 4096-byte blocks), formats it with veritysetup and
/// returns the root hash.
fn verity_image(path: &Path, data: &[u8]) -> [u8; 32] {
    std::fs::write(path, data).unwrap();
    let out = run(Command::new("veritysetup")
        .arg("format")
        .arg(format!("--hash-offset={}", data.len()))
        .arg(path)
        .arg(path));
    let line = out
        .lines()
        .find(|l| l.starts_with("Root hash:"))
        .expect("root hash line");
    hex(line.split_whitespace().last().unwrap())
        .try_into()
        .unwrap()
}

fn append_fssig(path: &Path, hash_offset: u64, root: [u8; 32], signer: [u8; 32], sig: Vec<u8>) {
    let t = Fssig {
        hash_offset,
        root_hash: root,
        signer,
        signature: sig,
    }
    .to_bytes();
    let f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all_at(&t, f.metadata().unwrap().len()).unwrap();
}

fn data(blocks: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) + 1;
    (0..blocks * 4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn flip(path: &Path, off: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, off).unwrap();
}

#[test]
fn verifies_veritysetup_images_of_several_geometries() {
    if !have("veritysetup") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // 1 block, one leaf block, two levels, three levels.
    for blocks in [1usize, 128, 129, 300, 128 * 128 + 5] {
        let p = d.path().join(format!("v{blocks}"));
        let src = data(blocks, blocks as u8);
        let root = verity_image(&p, &src);
        let host = Arc::new(HostFile::open(&p, 4096).unwrap());
        let v = VerityDevice::open(host, "v", src.len() as u64, root).unwrap();
        assert_eq!(v.block_count(), blocks as u64);
        let mut all = vec![0u8; src.len()];
        v.read_blocks(0, &mut all).unwrap();
        assert!(all == src);
        let mut one = vec![0u8; 4096];
        v.read_block(blocks as u64 - 1, &mut one).unwrap();
        assert!(one[..] == src[src.len() - 4096..]);
        assert!(v.read_block(blocks as u64, &mut one).is_err());
    }
}

#[test]
fn tampered_data_and_hash_blocks_fail_with_eio_only_where_tampered() {
    if !have("veritysetup") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("img");
    let blocks = 600usize;
    let src = data(blocks, 1);
    let s = src.len() as u64;
    let root = verity_image(&p, &src);
    flip(&p, 77 * 4096 + 1000);
    let open =
        || VerityDevice::open(Arc::new(HostFile::open(&p, 4096).unwrap()), "img", s, root).unwrap();
    let v = open();
    let mut b = vec![0u8; 4096];
    let e = v.read_block(77, &mut b).unwrap_err();
    assert!(e.is_integrity() && e.errno() == Errno::EIO, "{e}");
    assert!(e.to_string().contains("data block 77"), "{e}");
    v.read_block(76, &mut b).unwrap();
    v.read_block(78, &mut b).unwrap();
    let mut big = vec![0u8; 200 * 4096];
    assert!(v.read_blocks(0, &mut big).is_err());
    // A flipped leaf hash block (leaves are last: 600 blocks -> 5 leaf blocks + 1 top).
    flip(&p, 77 * 4096 + 1000);
    let leaf2 = s + 4096 + 4096 * (1 + 2);
    flip(&p, leaf2 + 5);
    let v = open();
    assert!(v
        .read_block(2 * 128 + 3, &mut b)
        .unwrap_err()
        .is_integrity());
    v.read_block(128, &mut b).unwrap();
    v.read_block(3 * 128, &mut b).unwrap();
    // The top block: opening fails.
    flip(&p, leaf2 + 5);
    flip(&p, s + 4096 + 17);
    let err = VerityDevice::open(Arc::new(HostFile::open(&p, 4096).unwrap()), "img", s, root)
        .unwrap_err();
    assert!(matches!(err, VerityOpenError::RootMismatch { .. }), "{err}");
    flip(&p, s + 4096 + 17);
    // Wrong root hash, bad superblock.
    let mut wrong = root;
    wrong[0] ^= 1;
    assert!(
        VerityDevice::open(Arc::new(HostFile::open(&p, 4096).unwrap()), "img", s, wrong).is_err()
    );
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(&(blocks as u64 + 1).to_le_bytes(), s + 72)
        .unwrap();
    let err = VerityDevice::open(Arc::new(HostFile::open(&p, 4096).unwrap()), "img", s, root)
        .unwrap_err();
    assert!(matches!(err, VerityOpenError::Superblock { .. }), "{err}");
}

#[test]
fn trust_rules_of_formats_section_6() {
    if !have("veritysetup") || !have("openssl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("img");
    let src = data(64, 9);
    let s = src.len() as u64;
    let root = verity_image(&p, &src);
    let unsigned = d.path().join("unsigned");
    std::fs::copy(&p, &unsigned).unwrap();
    append_fssig(&unsigned, s, root, [0; 32], Vec::new());

    // Keys and a signature made by openssl.
    let key = d.path().join("priv.pem");
    let pubk = d.path().join("pub.pem");
    run(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("3072"));
    run(Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&pubk));
    let rh = d.path().join("roothash.bin");
    std::fs::write(&rh, root).unwrap();
    let sig = d.path().join("sig");
    run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-pkeyopt", "digest:sha256", "-inkey"])
        .arg(&key)
        .arg("-in")
        .arg(&rh)
        .arg("-out")
        .arg(&sig));
    let modulus = run(Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&key));
    let signer: [u8; 32] =
        Sha256::digest(hex(modulus.trim().trim_start_matches("Modulus="))).into();
    let signed = d.path().join("signed");
    std::fs::copy(&p, &signed).unwrap();
    append_fssig(&signed, s, root, signer, std::fs::read(&sig).unwrap());

    let k = TrustedKey::from_pem(&std::fs::read_to_string(&pubk).unwrap()).unwrap();
    assert_eq!(k.signer, signer, "signer id = SHA-256 of the modulus");
    let other_key = d.path().join("other.pem");
    run(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&other_key)
        .arg("2048"));
    let other_pub = run(Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&other_key));
    let other = TrustedKey::from_pem(&other_pub).unwrap();

    let by_key = TrustPolicy {
        public_keys: vec![k.clone()],
        ..Default::default()
    };
    let by_hash = TrustPolicy {
        root_hashes: vec![root],
        ..Default::default()
    };
    let wrong = TrustPolicy {
        public_keys: vec![other],
        root_hashes: vec![[1; 32]],
        strict: true,
    };
    let cfg = StackConfig::default();

    let sig_signed = Fssig::read_file(&signed).unwrap();
    assert_eq!(
        evaluate(Some(&sig_signed), &by_key),
        Verification::Signature { signer }
    );
    assert_eq!(
        evaluate(Some(&sig_signed), &by_hash),
        Verification::RootHash
    );
    assert!(!evaluate(Some(&sig_signed), &wrong).is_verified());
    assert!(!evaluate(None, &by_hash).is_verified());
    // A signature over another root hash does not verify.
    let mut forged = sig_signed.clone();
    forged.root_hash[5] ^= 1;
    assert!(!evaluate(Some(&forged), &by_key).is_verified());

    let img = open_image(&signed, &by_key, &cfg).unwrap();
    assert!(img.verification.is_verified());
    assert_eq!(
        img.device.block_count(),
        64,
        "verified device = the data area"
    );
    let mut all = vec![0u8; src.len()];
    img.device.read_blocks(0, &mut all).unwrap();
    assert!(all == src);
    let img = open_image(&unsigned, &by_hash, &cfg).unwrap();
    assert_eq!(img.verification, Verification::RootHash);
    // Unverified: the raw file (debug mode), or EPERM when strict.
    let img = open_image(&unsigned, &TrustPolicy::default(), &cfg).unwrap();
    assert!(!img.verification.is_verified());
    assert_eq!(
        img.device.block_count(),
        std::fs::metadata(&unsigned).unwrap().len() / 4096
    );
    let err = open_image(&unsigned, &wrong, &cfg).err().unwrap();
    assert!(
        matches!(err, OpenError::Untrusted { .. }) && err.errno() == Errno::EPERM,
        "{err}"
    );
    let err = open_image(
        &p,
        &TrustPolicy {
            strict: true,
            ..by_hash.clone()
        },
        &cfg,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("no FSSIG"), "{err}");
    // Verified and tampered: the data read fails, the rest works.
    flip(&signed, 10 * 4096);
    let img = open_image(&signed, &by_key, &cfg).unwrap();
    let mut b = vec![0u8; 4096];
    assert_eq!(
        img.device.read_block(10, &mut b).unwrap_err().errno(),
        Errno::EIO
    );
    img.device.read_block(11, &mut b).unwrap();
}

#[test]
fn overlay_on_verified_image_keeps_writes_in_memory() {
    if !have("veritysetup") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("img");
    let src = data(16, 3);
    let root = verity_image(&p, &src);
    append_fssig(&p, src.len() as u64, root, [0; 32], Vec::new());
    let before = std::fs::read(&p).unwrap();
    let policy = TrustPolicy {
        root_hashes: vec![root],
        strict: true,
        ..Default::default()
    };
    let cfg = StackConfig {
        overlay_budget: Some(3 * 4096),
        ..Default::default()
    };
    let img = open_image(&p, &policy, &cfg).unwrap();
    img.device.write_block(2, &[0xab; 4096]).unwrap();
    img.device.write_block(5, &[0xcd; 4096]).unwrap();
    let mut b = vec![0u8; 16 * 4096];
    img.device.read_blocks(0, &mut b).unwrap();
    assert!(b[2 * 4096..3 * 4096].iter().all(|&x| x == 0xab));
    assert!(b[5 * 4096..6 * 4096].iter().all(|&x| x == 0xcd));
    assert!(b[..2 * 4096] == src[..2 * 4096] && b[6 * 4096..] == src[6 * 4096..]);
    img.device.write_block(6, &[1; 4096]).unwrap();
    assert_eq!(
        img.device.write_block(7, &[1; 4096]).unwrap_err().errno(),
        Errno::ENOSPC
    );
    assert_eq!(
        std::fs::read(&p).unwrap(),
        before,
        "the image file is never written"
    );
}
