//! LUKS1 volumes written by myst, checked by independent implementations:
//! cryptsetup (header, digest, key slot), Python `cryptography` (AES-XTS of
//! the payload) and e2fsprogs (the decrypted ext2). Also the other way:
//! headers written by cryptsetup and ciphertext written by Python, read by
//! myst. No root, loop device or device-mapper needed.

use std::path::Path;
use std::process::{Command, Output};

use myst_formats::luks::{Header, LuksError, LuksParams, LuksVolume, LuksWriter};

const PASS: &str = "correct horse battery staple";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// True when every oracle is installed; otherwise says which is missing.
fn oracles_present() -> bool {
    let missing: Vec<&str> = ["cryptsetup", "mke2fs", "e2fsck", "debugfs", "python3"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    let python_ok = Command::new("python3")
        .args(["-c", "import cryptography.hazmat.primitives.ciphers"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !missing.is_empty() || !python_ok {
        eprintln!(
            "SKIP: oracles missing: {missing:?}{} (scripts/test.sh installs them)",
            if python_ok {
                ""
            } else {
                " python3-cryptography"
            }
        );
        return false;
    }
    true
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn oracle");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// 64 key bytes from a seed (xorshift), never with equal halves.
fn test_key(seed: u64) -> [u8; 64] {
    let mut s = seed | 1;
    core::array::from_fn(|_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 24) as u8
    })
}

/// A small tree turned into an 8 MiB ext2 image by mke2fs -d.
fn make_ext2(dir: &Path) -> Vec<u8> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc/deep/er")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello, encrypted world\n").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("etc/deep/er/big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("../hello.txt", src.join("etc/link")).unwrap();
    let img = dir.join("plain.ext2");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-b", "1024", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("8M"));
    std::fs::read(&img).unwrap()
}

/// The volume key cryptsetup prints with --dump-volume-key (or the older
/// --dump-master-key), unlocking with the passphrase in `pass_file`.
fn dump_volume_key(img: &Path, pass_file: &Path) -> Result<Vec<u8>, String> {
    let mut last = String::new();
    for opt in ["--dump-volume-key", "--dump-master-key"] {
        let out = Command::new("cryptsetup")
            .args(["luksDump", "-q", opt, "--key-file"])
            .arg(pass_file)
            .arg(img)
            .output()
            .expect("spawn cryptsetup");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            return Ok(parse_key_dump(&stdout));
        }
        last = format!("{}: {stderr}", out.status);
        if !stderr.contains("unknown option") && !stderr.contains("nrecognized option") {
            break;
        }
    }
    Err(last)
}

/// Hex bytes after "MK dump:" (cryptsetup 2.6) or "Volume key:" (newer),
/// continued on the indented lines below.
fn parse_key_dump(s: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut on = false;
    for line in s.lines() {
        let rest = if let Some(i) = line.find("MK dump:").or_else(|| line.find("Volume key:")) {
            on = true;
            &line[line[i..].find(':').unwrap() + i + 1..]
        } else if on && line.starts_with(char::is_whitespace) {
            line
        } else {
            on = false;
            continue;
        };
        for tok in rest.split_whitespace() {
            match u8::from_str_radix(tok, 16) {
                Ok(b) if tok.len() == 2 => bytes.push(b),
                _ => break,
            }
        }
    }
    bytes
}

fn field<'a>(dump: &'a str, name: &str) -> &'a str {
    dump.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("luksDump has no {name:?}:\n{dump}"))
        .trim()
}

/// Decrypts (or encrypts) `len` bytes at `offset` of `input` with Python's
/// AES-XTS, tweak = sector number counted from `first_sector`.
fn python_xts(
    mode: &str,
    key: &Path,
    input: &Path,
    offset: u64,
    len: u64,
    first_sector: u64,
    out: &Path,
) {
    let script = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/oracles/xts.py"
    ));
    run(Command::new("python3")
        .args(["-c", script, mode])
        .arg(key)
        .arg(input)
        .args([
            offset.to_string(),
            len.to_string(),
            first_sector.to_string(),
        ])
        .arg(out));
}

#[test]
fn myst_volume_checked_by_cryptsetup_python_and_e2fsck() {
    if !oracles_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ext2 = make_ext2(d);
    let key = test_key(0x1234_5678_9abc);
    let key_file = d.join("key");
    std::fs::write(&key_file, key).unwrap();
    let pass_file = d.join("pass");
    std::fs::write(&pass_file, PASS).unwrap();

    // Default parameters (1,000,000 slot iterations), as the CLI uses them.
    let params = LuksParams {
        passphrase: Some(PASS),
        ..LuksParams::default()
    };
    let w = LuksWriter::new(&key, &params).unwrap();
    let mut payload = ext2.clone();
    // Chunk by chunk, as an image builder streams it.
    let mut off = 0u64;
    for chunk in payload.chunks_mut(64 << 10) {
        w.encrypt_payload(chunk, off).unwrap();
        off += chunk.len() as u64;
    }
    assert_ne!(
        payload[1024..2048],
        ext2[1024..2048],
        "payload not encrypted"
    );
    let mut image = w.header.clone();
    image.extend_from_slice(&payload);
    let img = d.join("enc.img");
    std::fs::write(&img, &image).unwrap();
    let header = Header::parse(&image, image.len() as u64).unwrap();

    // cryptsetup reads the header.
    let dump = String::from_utf8(run(Command::new("cryptsetup").arg("luksDump").arg(&img)).stdout)
        .unwrap();
    assert_eq!(field(&dump, "Version:"), "1");
    assert_eq!(field(&dump, "Cipher name:"), "aes");
    assert_eq!(field(&dump, "Cipher mode:"), "xts-plain64");
    assert_eq!(field(&dump, "Hash spec:"), "sha256");
    assert_eq!(field(&dump, "Payload offset:"), "4096");
    assert_eq!(field(&dump, "MK bits:"), "512");
    assert_eq!(field(&dump, "MK iterations:"), "1000");
    assert_eq!(field(&dump, "UUID:"), header.uuid);
    assert!(dump.contains("Key Slot 0: ENABLED"), "{dump}");
    for i in 1..8 {
        assert!(dump.contains(&format!("Key Slot {i}: DISABLED")), "{dump}");
    }

    // cryptsetup opens key slot 0 with the passphrase and finds our key.
    assert_eq!(dump_volume_key(&img, &pass_file).unwrap(), key.to_vec());
    let wrong_pass = d.join("wrong");
    std::fs::write(&wrong_pass, "correct horse battery stapler").unwrap();
    assert!(dump_volume_key(&img, &wrong_pass).is_err());

    // Python decrypts the payload independently; e2fsck finds it clean.
    let plain = d.join("decrypted.ext2");
    python_xts(
        "dec",
        &key_file,
        &img,
        w.payload_offset_bytes(),
        ext2.len() as u64,
        0,
        &plain,
    );
    let decrypted = std::fs::read(&plain).unwrap();
    assert!(
        decrypted == ext2,
        "Python's decryption differs from the ext2 image"
    );
    run(Command::new("e2fsck").arg("-fn").arg(&plain));
    let cat = run(Command::new("debugfs")
        .args(["-R", "cat /etc/deep/er/big.bin"])
        .arg(&plain));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert!(cat.stdout == big, "big.bin differs after decryption");

    // myst's reader agrees, and rejects a wrong key clearly.
    let vol = LuksVolume::open(&image, image.len() as u64, &key).unwrap();
    let mut back = payload[8192..65536].to_vec();
    vol.decrypt_payload(&mut back, 8192).unwrap();
    assert!(back == ext2[8192..65536]);
    assert_eq!(
        header.open_with_passphrase(&image, PASS.as_bytes()),
        Ok(key)
    );
    let mut wrong = key;
    wrong[5] ^= 1;
    assert_eq!(
        LuksVolume::open(&image, image.len() as u64, &wrong).err(),
        Some(LuksError::WrongKey)
    );
}

#[test]
fn keyless_volume_digest_accepted_by_cryptsetup() {
    if !oracles_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = test_key(0xfeed_beef);
    let key_file = d.join("key");
    std::fs::write(&key_file, key).unwrap();
    let w = LuksWriter::new(&key, &LuksParams::default()).unwrap();
    let mut image = w.header.clone();
    image.resize(image.len() + (1 << 20), 0);
    let img = d.join("nokey.img");
    std::fs::write(&img, &image).unwrap();

    let dump = String::from_utf8(run(Command::new("cryptsetup").arg("luksDump").arg(&img)).stdout)
        .unwrap();
    for i in 0..8 {
        assert!(dump.contains(&format!("Key Slot {i}: DISABLED")), "{dump}");
    }
    // cryptsetup adds a slot only if the volume key matches our digest.
    let pass_file = d.join("pass");
    std::fs::write(&pass_file, "another good passphrase").unwrap();
    let add = |k: &Path| {
        Command::new("cryptsetup")
            .args([
                "luksAddKey",
                "-q",
                "--pbkdf-force-iterations",
                "1000",
                "--key-slot",
                "5",
            ])
            .arg("--volume-key-file")
            .arg(k)
            .arg(&img)
            .arg(&pass_file)
            .output()
            .expect("spawn cryptsetup")
    };
    let bad_key = d.join("badkey");
    std::fs::write(&bad_key, test_key(7)).unwrap();
    assert!(
        !add(&bad_key).status.success(),
        "cryptsetup accepted a wrong volume key"
    );
    let out = add(&key_file);
    assert!(
        out.status.success(),
        "luksAddKey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dump_volume_key(&img, &pass_file).unwrap(), key.to_vec());

    // myst reads the header cryptsetup rewrote and opens its new slot.
    let image = std::fs::read(&img).unwrap();
    let h = Header::parse(&image, image.len() as u64).unwrap();
    assert!(h.key_slots[5].active);
    assert_eq!(
        h.open_with_passphrase(&image, b"another good passphrase"),
        Ok(key)
    );
}

#[test]
fn cryptsetup_volume_read_by_myst() {
    if !oracles_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = test_key(0x5eed);
    let key_file = d.join("key");
    std::fs::write(&key_file, key).unwrap();
    let pass_file = d.join("pass");
    std::fs::write(&pass_file, PASS).unwrap();
    let img = d.join("cs.img");
    std::fs::write(&img, vec![0u8; 3 << 20]).unwrap();
    run(Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--type",
            "luks1",
            "-q",
            "--cipher",
            "aes-xts-plain64",
            "--key-size",
            "512",
            "--hash",
            "sha256",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
        ])
        .arg(&pass_file)
        .arg("--volume-key-file")
        .arg(&key_file)
        .arg(&img));

    // Payload sectors 5.. encrypted by Python, as dm-crypt would write them.
    let plain: Vec<u8> = (0..64 * 512).map(|i| (i % 253) as u8 ^ 0x5a).collect();
    let plain_file = d.join("plain");
    std::fs::write(&plain_file, &plain).unwrap();
    let ct_file = d.join("ct");
    python_xts(
        "enc",
        &key_file,
        &plain_file,
        0,
        plain.len() as u64,
        5,
        &ct_file,
    );
    let mut image = std::fs::read(&img).unwrap();
    let ct = std::fs::read(&ct_file).unwrap();
    let at = (2 << 20) + 5 * 512;
    image[at..at + ct.len()].copy_from_slice(&ct);

    let h = Header::parse(&image, image.len() as u64).unwrap();
    assert_eq!(h.payload_offset, 4096);
    assert_eq!(h.open_with_passphrase(&image, PASS.as_bytes()), Ok(key));
    let vol = LuksVolume::open(&image, image.len() as u64, &key).unwrap();
    let mut buf = ct.clone();
    vol.decrypt_payload(&mut buf, 5 * 512).unwrap();
    assert!(
        buf == plain,
        "myst's decryption of Python's ciphertext differs"
    );
    // And myst's encryption equals Python's.
    let mut again = plain.clone();
    vol.encrypt_payload(&mut again, 5 * 512).unwrap();
    assert!(again == ct);
    assert_eq!(
        LuksVolume::open(&image, image.len() as u64, &test_key(1)).err(),
        Some(LuksError::WrongKey)
    );
}
