//! LUKS1 containers with `aes-xts-plain64` and SHA-256, as `cryptsetup
//! luksFormat --type luks1` writes them and as Mystikos's encrypted ext2
//! images use them (docs/FORMATS.md §5).
//!
//! # Layout
//!
//! All integers in the header are big-endian.
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 6 | magic `LUKS\xba\xbe` |
//! | 6 | 2 | version 1 |
//! | 8 | 32 | cipher name `aes` (NUL-padded) |
//! | 40 | 32 | cipher mode `xts-plain64` |
//! | 72 | 32 | hash `sha256` |
//! | 104 | 4 | payload offset, in 512-byte sectors (4096 = 2 MiB) |
//! | 108 | 4 | key bytes (64) |
//! | 112 | 20 | master-key digest: PBKDF2-HMAC-SHA256(volume key, salt, iterations), 20 bytes |
//! | 132 | 32 | digest salt |
//! | 164 | 4 | digest iterations |
//! | 168 | 40 | UUID, text, NUL-padded |
//! | 208 | 8 x 48 | key slots: state (0x00AC71F3 active, 0x0000DEAD inactive), iterations, salt\[32\], key-material offset (sectors), stripes (4000) |
//! | 592 | 432 | zeros (cryptsetup's struct is padded to 1024 bytes) |
//!
//! The key material of slot i starts at sector 8 + 508 i (4 KiB aligned, like
//! cryptsetup) and takes 500 sectors: the volume key AF-split into 4000
//! stripes (SHA-256 diffuser), encrypted with aes-xts-plain64 (sectors counted
//! from 0 at the slot start) under PBKDF2-HMAC-SHA256(passphrase, slot salt,
//! slot iterations, 64 bytes). The payload starts at sector 4096; its sector
//! numbers for XTS also count from 0 there.
//!
//! # Writing: [`LuksWriter`]
//!
//! ```no_run
//! # fn main() -> Result<(), myst_formats::luks::LuksError> {
//! use myst_formats::luks::{LuksParams, LuksWriter};
//! let key = [0x42u8; 64]; // in real use: 64 random bytes from the key file
//! # let key: [u8; 64] = core::array::from_fn(|i| i as u8);
//! let w = LuksWriter::new(&key, &LuksParams::default())?;
//! let mut ext2 = vec![0u8; 1 << 20]; // the plaintext file system
//! w.encrypt_payload(&mut ext2, 0)?; // may be called chunk by chunk
//! let mut image = w.header.clone(); // payload_offset_bytes() long
//! image.extend_from_slice(&ext2);
//! # Ok(()) }
//! ```
//!
//! Without a passphrase no key slot is active (like Mystikos): only the
//! holder of the 64-byte key can open the volume, and the digest lets a
//! reader reject a wrong key. With [`LuksParams::passphrase`] (at least 14
//! characters) slot 0 opens the volume, so `cryptsetup open` and
//! `cryptsetup luksDump --dump-volume-key` work with that passphrase.
//!
//! **Reproducible by default.** Salts, the UUID and the AF-splitter stripes
//! normally come from a random source. Here they come from a 32-byte seed
//! through HMAC-SHA256(seed, label || counter); by default the seed is
//! HMAC-SHA256(volume key, "myst-luks1-seed"), so the same key, passphrase and
//! file system give the same image bytes and the same verity root hash
//! (attestable builds). Nothing about the key leaks: HMAC outputs reveal
//! nothing about their key, and the salts only need to be unique per volume
//! key, which they are. The price: two images made with the same key share a
//! UUID and, with the same passphrase, the same slot. Callers that want
//! cryptsetup's behaviour pass a random seed ([`LuksParams::seed`]).
//!
//! Iterations are fixed instead of timed: the digest uses
//! [`DEFAULT_DIGEST_ITERATIONS`] = 1000 (cryptsetup's minimum; the volume key
//! is 512 random bits, so iterations add nothing against guessing it, and the
//! runtime pays them on every mount), the passphrase slot
//! [`DEFAULT_SLOT_ITERATIONS`] = 1,000,000 (above the 600,000 OWASP
//! recommends for PBKDF2-HMAC-SHA256; cryptsetup's minimum is 1000).
//!
//! # Reading: [`Header::parse`], [`LuksVolume`]
//!
//! The parser is strict: magic, version, cipher, mode, hash and key size
//! must be exactly what myst writes; the payload offset, every key slot and
//! its key material must lie inside the file and must not overlap; iteration
//! counts must be in 1..=[`MAX_ITERATIONS`], so a hostile header costs at
//! most a few seconds of PBKDF2, never a hang. [`LuksVolume::open`] parses the
//! header and checks a key against the digest (a wrong key is
//! [`LuksError::WrongKey`], not garbage); then
//! [`LuksVolume::decrypt_payload`] decrypts any sector-aligned range of the
//! payload.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::xts::{Xts, XtsError};

/// Bytes of a LUKS sector (offsets in the header count these).
pub const SECTOR_SIZE: usize = 512;
/// The magic at offset 0.
pub const MAGIC: [u8; 6] = *b"LUKS\xba\xbe";
/// Bytes of the header fields (the written header is padded to 1024).
pub const HEADER_SIZE: usize = 592;
/// Bytes cryptsetup writes for the header (fields plus zero padding).
pub const PADDED_HEADER_SIZE: usize = 1024;
/// Bytes of the volume key (AES-256-XTS: data key then tweak key).
pub const KEY_BYTES: usize = 64;
/// Number of key slots.
pub const NUM_KEY_SLOTS: usize = 8;
/// AF-splitter stripes per key slot (the only value cryptsetup accepts).
pub const STRIPES: u32 = 4000;
/// Sectors of one key slot's key material (64 bytes x 4000 stripes).
pub const KEY_MATERIAL_SECTORS: u32 = (KEY_BYTES as u32 * STRIPES).div_ceil(SECTOR_SIZE as u32);
/// Payload offset myst writes, in sectors (2 MiB, as cryptsetup).
pub const PAYLOAD_OFFSET_SECTORS: u32 = 4096;
/// Bytes of a salt.
pub const SALT_SIZE: usize = 32;
/// Bytes of the master-key digest (LUKS1 keeps 20 whatever the hash).
pub const DIGEST_SIZE: usize = 20;
/// Fewest PBKDF2 iterations myst writes (cryptsetup's minimum).
pub const MIN_ITERATIONS: u32 = 1000;
/// Most PBKDF2 iterations myst reads or writes (bounds the work a header
/// can demand: about 2^24 HMAC-SHA256 pairs, seconds, not hours).
pub const MAX_ITERATIONS: u32 = 1 << 24;
/// Digest iterations myst writes by default.
pub const DEFAULT_DIGEST_ITERATIONS: u32 = 1000;
/// Passphrase key-slot iterations myst writes by default.
pub const DEFAULT_SLOT_ITERATIONS: u32 = 1_000_000;
/// Fewest characters in a passphrase.
pub const MIN_PASSPHRASE_CHARS: usize = 14;
/// Most bytes in a passphrase (cryptsetup's interactive limit).
pub const MAX_PASSPHRASE_BYTES: usize = 512;

const KEY_ENABLED: u32 = 0x00AC_71F3;
const KEY_DISABLED: u32 = 0x0000_DEAD;
const CIPHER_NAME: &str = "aes";
const CIPHER_MODE: &str = "xts-plain64";
const HASH_SPEC: &str = "sha256";
/// First key material sector and key-slot alignment (4 KiB, as cryptsetup).
const KEY_SLOT_ALIGN_SECTORS: u32 = 8;
const UUID_LEN: usize = 36;
const SLOT_BASE: usize = 208;
const SLOT_SIZE: usize = 48;

type HmacSha256 = Hmac<Sha256>;

/// What is wrong with a LUKS header, a key, a passphrase or a request.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LuksError {
    /// Fewer bytes than the structure needs.
    #[error("LUKS header truncated: {len} bytes, need {need}")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// No LUKS magic at offset 0.
    #[error("not a LUKS volume (no LUKS magic at offset 0)")]
    NotLuks,
    /// A LUKS version other than 1 (LUKS2 is not supported).
    #[error("unsupported LUKS version {0}: myst reads LUKS1 only")]
    UnsupportedVersion(u16),
    /// A text field is not NUL-terminated printable ASCII.
    #[error("LUKS header field {field} is not a NUL-terminated ASCII string")]
    BadString {
        /// Field name.
        field: &'static str,
    },
    /// A field holds a value myst does not accept.
    #[error("unsupported LUKS header: {field} is {value:?}, expected {expected}")]
    Unsupported {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: String,
        /// Value accepted.
        expected: &'static str,
    },
    /// The UUID is not in canonical 8-4-4-4-12 hex form.
    #[error("LUKS header UUID {0:?} is not a canonical UUID")]
    BadUuid(String),
    /// The payload offset is zero (a detached header), unsupported.
    #[error("LUKS payload offset is 0 (detached header): not supported")]
    DetachedHeader,
    /// The payload would start beyond the end of the file.
    #[error("LUKS payload offset {offset} bytes is beyond the end of the {file_size}-byte file")]
    PayloadBeyondFile {
        /// Payload offset in bytes.
        offset: u64,
        /// File size in bytes.
        file_size: u64,
    },
    /// A key slot is malformed.
    #[error("LUKS key slot {slot} is invalid: {reason}")]
    BadKeySlot {
        /// Slot index.
        slot: usize,
        /// What is wrong.
        reason: String,
    },
    /// An iteration count outside 1..=MAX_ITERATIONS.
    #[error("LUKS {what} iteration count {value} is out of range 1..={max}", max = MAX_ITERATIONS)]
    BadIterations {
        /// Which count.
        what: &'static str,
        /// Value found.
        value: u32,
    },
    /// The key does not match the master-key digest.
    #[error("wrong key: the 64-byte key does not match this LUKS volume's master-key digest")]
    WrongKey,
    /// No active key slot opens with the passphrase.
    #[error("wrong passphrase: no active LUKS key slot opens with it")]
    WrongPassphrase,
    /// The volume has no active key slot.
    #[error("the LUKS volume has no active key slot (it opens only with the volume key)")]
    NoActiveKeySlot,
    /// Fewer bytes than a key slot's key material needs.
    #[error("LUKS key slot {slot}: key material ends at byte {end}, only {len} bytes given")]
    KeyMaterialTruncated {
        /// Slot index.
        slot: usize,
        /// End of the key material in bytes.
        end: u64,
        /// Bytes available.
        len: usize,
    },
    /// A key is not exactly 64 bytes.
    #[error("a LUKS volume key must be exactly 64 bytes, got {0}")]
    KeySize(usize),
    /// A hex key is not 128 hex digits.
    #[error("a LUKS volume key in hex must be exactly 128 hex digits")]
    BadHexKey,
    /// Both halves of the key are equal, which makes XTS insecure.
    #[error("weak key: the two 32-byte halves of the XTS key are equal (use 64 random bytes)")]
    WeakKey,
    /// The passphrase is too short.
    #[error("passphrase too short: {chars} characters, at least 14 required")]
    PassphraseTooShort {
        /// Characters given.
        chars: usize,
    },
    /// The passphrase is too long.
    #[error("passphrase too long: {bytes} bytes, at most 512")]
    PassphraseTooLong {
        /// Bytes given.
        bytes: usize,
    },
    /// A requested iteration count is outside MIN_ITERATIONS..=MAX_ITERATIONS.
    #[error("{what} iterations {value} out of range 1000..={max}", max = MAX_ITERATIONS)]
    IterationsParam {
        /// Which count.
        what: &'static str,
        /// Value requested.
        value: u32,
    },
    /// A payload offset that is not a multiple of the 512-byte sector.
    #[error("LUKS payload offset {0} is not a multiple of 512")]
    UnalignedOffset(u64),
    /// The XTS layer refused the request.
    #[error(transparent)]
    Xts(#[from] XtsError),
}

/// One key slot of a LUKS1 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// Whether the slot holds key material.
    pub active: bool,
    /// PBKDF2 iterations for the passphrase (0 in inactive slots).
    pub iterations: u32,
    /// PBKDF2 salt (zeros in inactive slots).
    pub salt: [u8; SALT_SIZE],
    /// Start of the key material, in sectors.
    pub key_material_offset: u32,
    /// AF-splitter stripes (always 4000).
    pub stripes: u32,
}

impl KeySlot {
    /// Byte range of the key material in the file.
    pub fn key_material_range(&self) -> std::ops::Range<u64> {
        let start = u64::from(self.key_material_offset) * SECTOR_SIZE as u64;
        start..start + u64::from(KEY_MATERIAL_SECTORS) * SECTOR_SIZE as u64
    }
}

/// A validated LUKS1 header (aes, xts-plain64, sha256, 64-byte key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Start of the encrypted payload, in sectors.
    pub payload_offset: u32,
    /// PBKDF2-HMAC-SHA256 of the volume key, first 20 bytes.
    pub mk_digest: [u8; DIGEST_SIZE],
    /// Salt of the digest.
    pub mk_digest_salt: [u8; SALT_SIZE],
    /// Iterations of the digest.
    pub mk_digest_iterations: u32,
    /// The UUID, canonical text form.
    pub uuid: String,
    /// The eight key slots.
    pub key_slots: [KeySlot; NUM_KEY_SLOTS],
}

impl Header {
    /// Parses and validates the header at the start of `buf`, the beginning
    /// of a file of `file_size` bytes (the header itself needs 592 bytes).
    pub fn parse(buf: &[u8], file_size: u64) -> Result<Header, LuksError> {
        if buf.len() < HEADER_SIZE {
            return Err(LuksError::Truncated {
                len: buf.len(),
                need: HEADER_SIZE,
            });
        }
        if buf[0..6] != MAGIC {
            return Err(LuksError::NotLuks);
        }
        let version = u16::from_be_bytes([buf[6], buf[7]]);
        if version != 1 {
            return Err(LuksError::UnsupportedVersion(version));
        }
        expect_str(&buf[8..40], "cipher name", CIPHER_NAME)?;
        expect_str(&buf[40..72], "cipher mode", CIPHER_MODE)?;
        expect_str(&buf[72..104], "hash", HASH_SPEC)?;
        let payload_offset = be32(buf, 104);
        let key_bytes = be32(buf, 108);
        if key_bytes != KEY_BYTES as u32 {
            return Err(LuksError::Unsupported {
                field: "key bytes",
                value: key_bytes.to_string(),
                expected: "64",
            });
        }
        let mut mk_digest = [0u8; DIGEST_SIZE];
        mk_digest.copy_from_slice(&buf[112..132]);
        let mut mk_digest_salt = [0u8; SALT_SIZE];
        mk_digest_salt.copy_from_slice(&buf[132..164]);
        let mk_digest_iterations = be32(buf, 164);
        check_iterations("master-key digest", mk_digest_iterations)?;
        let uuid = c_string(&buf[168..208], "uuid")?;
        if !is_canonical_uuid(&uuid) {
            return Err(LuksError::BadUuid(uuid));
        }

        if payload_offset == 0 {
            return Err(LuksError::DetachedHeader);
        }
        let payload_bytes = u64::from(payload_offset) * SECTOR_SIZE as u64;
        if payload_bytes > file_size {
            return Err(LuksError::PayloadBeyondFile {
                offset: payload_bytes,
                file_size,
            });
        }

        let key_slots: [KeySlot; NUM_KEY_SLOTS] =
            core::array::from_fn(|i| parse_slot(&buf[SLOT_BASE + i * SLOT_SIZE..]));
        for (i, s) in key_slots.iter().enumerate() {
            let bad = |reason: String| LuksError::BadKeySlot { slot: i, reason };
            let state = be32(buf, SLOT_BASE + i * SLOT_SIZE);
            if state != KEY_ENABLED && state != KEY_DISABLED {
                return Err(bad(format!(
                    "state {state:#010x} is neither active nor inactive"
                )));
            }
            if s.stripes != STRIPES {
                return Err(bad(format!("{} stripes, expected 4000", s.stripes)));
            }
            // The first two sectors hold the (padded) header itself.
            if (s.key_material_offset as usize) < PADDED_HEADER_SIZE / SECTOR_SIZE {
                return Err(bad(format!(
                    "key material at sector {} overlaps the header",
                    s.key_material_offset
                )));
            }
            let end = u64::from(s.key_material_offset) + u64::from(KEY_MATERIAL_SECTORS);
            if end > u64::from(payload_offset) {
                return Err(bad(format!(
                    "key material (sectors {}..{end}) runs past the payload offset {payload_offset}",
                    s.key_material_offset
                )));
            }
            if s.active {
                check_iterations("key slot", s.iterations)?;
            }
        }
        let mut order: [usize; NUM_KEY_SLOTS] = core::array::from_fn(|i| i);
        order.sort_by_key(|&i| key_slots[i].key_material_offset);
        for pair in order.windows(2) {
            let (a, b) = (&key_slots[pair[0]], &key_slots[pair[1]]);
            // No overflow: every end was checked against the payload offset.
            if a.key_material_offset + KEY_MATERIAL_SECTORS > b.key_material_offset {
                return Err(LuksError::BadKeySlot {
                    slot: pair[0],
                    reason: format!(
                        "key material at sector {} overlaps slot {}'s at sector {}",
                        a.key_material_offset, pair[1], b.key_material_offset
                    ),
                });
            }
        }
        Ok(Header {
            payload_offset,
            mk_digest,
            mk_digest_salt,
            mk_digest_iterations,
            uuid,
            key_slots,
        })
    }

    /// The 1024 bytes cryptsetup writes at offset 0 (fields, zero padding).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; PADDED_HEADER_SIZE];
        b[0..6].copy_from_slice(&MAGIC);
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        b[8..8 + CIPHER_NAME.len()].copy_from_slice(CIPHER_NAME.as_bytes());
        b[40..40 + CIPHER_MODE.len()].copy_from_slice(CIPHER_MODE.as_bytes());
        b[72..72 + HASH_SPEC.len()].copy_from_slice(HASH_SPEC.as_bytes());
        b[104..108].copy_from_slice(&self.payload_offset.to_be_bytes());
        b[108..112].copy_from_slice(&(KEY_BYTES as u32).to_be_bytes());
        b[112..132].copy_from_slice(&self.mk_digest);
        b[132..164].copy_from_slice(&self.mk_digest_salt);
        b[164..168].copy_from_slice(&self.mk_digest_iterations.to_be_bytes());
        let uuid = self.uuid.as_bytes();
        let n = uuid.len().min(39);
        b[168..168 + n].copy_from_slice(&uuid[..n]);
        for (i, s) in self.key_slots.iter().enumerate() {
            let o = SLOT_BASE + i * SLOT_SIZE;
            let state = if s.active { KEY_ENABLED } else { KEY_DISABLED };
            b[o..o + 4].copy_from_slice(&state.to_be_bytes());
            b[o + 4..o + 8].copy_from_slice(&s.iterations.to_be_bytes());
            b[o + 8..o + 40].copy_from_slice(&s.salt);
            b[o + 40..o + 44].copy_from_slice(&s.key_material_offset.to_be_bytes());
            b[o + 44..o + 48].copy_from_slice(&s.stripes.to_be_bytes());
        }
        b
    }

    /// Start of the payload in bytes.
    pub fn payload_offset_bytes(&self) -> u64 {
        u64::from(self.payload_offset) * SECTOR_SIZE as u64
    }

    /// Checks `key` against the master-key digest.
    pub fn check_key(&self, key: &[u8; KEY_BYTES]) -> Result<(), LuksError> {
        let d = mk_digest(key, &self.mk_digest_salt, self.mk_digest_iterations);
        // Compare without an early exit; the digest is public, but there is
        // no reason to leak how many bytes matched.
        let diff = d
            .iter()
            .zip(&self.mk_digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(LuksError::WrongKey)
        }
    }

    /// Recovers the volume key from the first active key slot that opens
    /// with `passphrase`. `image` is the start of the file, at least up to
    /// the end of the active slots' key material (the payload offset is
    /// always enough).
    pub fn open_with_passphrase(
        &self,
        image: &[u8],
        passphrase: &[u8],
    ) -> Result<[u8; KEY_BYTES], LuksError> {
        let mut any_active = false;
        for (i, s) in self.key_slots.iter().enumerate().filter(|(_, s)| s.active) {
            any_active = true;
            let r = s.key_material_range();
            let material = usize::try_from(r.start)
                .ok()
                .zip(usize::try_from(r.end).ok())
                .and_then(|(a, b)| image.get(a..b))
                .ok_or(LuksError::KeyMaterialTruncated {
                    slot: i,
                    end: r.end,
                    len: image.len(),
                })?;
            let mut slot_key = [0u8; KEY_BYTES];
            pbkdf2::pbkdf2_hmac::<Sha256>(passphrase, &s.salt, s.iterations, &mut slot_key);
            let mut split = material.to_vec();
            Xts::new(&slot_key).decrypt_sectors(&mut split, 0)?;
            let key = af_merge(&split);
            if self.check_key(&key).is_ok() {
                return Ok(key);
            }
        }
        Err(if any_active {
            LuksError::WrongPassphrase
        } else {
            LuksError::NoActiveKeySlot
        })
    }
}

/// What to put in a new header besides the volume key.
#[derive(Debug, Clone)]
pub struct LuksParams<'a> {
    /// Passphrase for key slot 0 (at least 14 characters); None: no slot.
    pub passphrase: Option<&'a str>,
    /// Seed for salts, UUID and AF stripes; None: derived from the key, so
    /// the output is reproducible. Pass 32 random bytes for a random header.
    pub seed: Option<[u8; 32]>,
    /// PBKDF2 iterations of the master-key digest.
    pub digest_iterations: u32,
    /// PBKDF2 iterations of the passphrase slot.
    pub slot_iterations: u32,
}

impl Default for LuksParams<'_> {
    fn default() -> Self {
        LuksParams {
            passphrase: None,
            seed: None,
            digest_iterations: DEFAULT_DIGEST_ITERATIONS,
            slot_iterations: DEFAULT_SLOT_ITERATIONS,
        }
    }
}

/// Checks a passphrase against myst's rules (14..=512 bytes, 14+ characters).
pub fn check_passphrase(p: &str) -> Result<(), LuksError> {
    let chars = p.chars().count();
    if chars < MIN_PASSPHRASE_CHARS {
        return Err(LuksError::PassphraseTooShort { chars });
    }
    if p.len() > MAX_PASSPHRASE_BYTES {
        return Err(LuksError::PassphraseTooLong { bytes: p.len() });
    }
    Ok(())
}

/// A volume key from the bytes of a key file (exactly 64 bytes).
pub fn key_from_bytes(b: &[u8]) -> Result<[u8; KEY_BYTES], LuksError> {
    <[u8; KEY_BYTES]>::try_from(b).map_err(|_| LuksError::KeySize(b.len()))
}

/// A volume key from 128 hex digits (the `key=` mount data of Mystikos).
pub fn key_from_hex(s: &str) -> Result<[u8; KEY_BYTES], LuksError> {
    let s = s.as_bytes();
    if s.len() != 2 * KEY_BYTES {
        return Err(LuksError::BadHexKey);
    }
    let mut key = [0u8; KEY_BYTES];
    for (k, pair) in key.iter_mut().zip(s.chunks_exact(2)) {
        let hi = hex_val(pair[0]).ok_or(LuksError::BadHexKey)?;
        let lo = hex_val(pair[1]).ok_or(LuksError::BadHexKey)?;
        *k = (hi << 4) | lo;
    }
    Ok(key)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Builds the header and key-slot area of a new volume: `payload_offset`
/// sectors (2 MiB) of bytes to put in front of the encrypted payload.
pub fn build_header(key: &[u8; KEY_BYTES], params: &LuksParams) -> Result<Vec<u8>, LuksError> {
    if key[..32] == key[32..] {
        return Err(LuksError::WeakKey);
    }
    for (what, value) in [
        ("digest", params.digest_iterations),
        ("key slot", params.slot_iterations),
    ] {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&value) {
            return Err(LuksError::IterationsParam { what, value });
        }
    }
    if let Some(p) = params.passphrase {
        check_passphrase(p)?;
    }
    let prf = Prf::new(match params.seed {
        Some(s) => s,
        None => hmac_sha256(key, b"myst-luks1-seed"),
    });

    let mut mk_digest_salt = [0u8; SALT_SIZE];
    prf.fill(b"mk-digest-salt", &mut mk_digest_salt);
    let mut uuid_bytes = [0u8; 16];
    prf.fill(b"uuid", &mut uuid_bytes);
    let key_slots: [KeySlot; NUM_KEY_SLOTS] = core::array::from_fn(|i| KeySlot {
        active: false,
        iterations: 0,
        salt: [0; SALT_SIZE],
        key_material_offset: slot_offset(i),
        stripes: STRIPES,
    });
    let mut header = Header {
        payload_offset: PAYLOAD_OFFSET_SECTORS,
        mk_digest: mk_digest(key, &mk_digest_salt, params.digest_iterations),
        mk_digest_salt,
        mk_digest_iterations: params.digest_iterations,
        uuid: format_uuid(uuid_bytes),
        key_slots,
    };

    let mut out = vec![0u8; PAYLOAD_OFFSET_SECTORS as usize * SECTOR_SIZE];
    if let Some(p) = params.passphrase {
        let slot = &mut header.key_slots[0];
        prf.fill(b"slot0-salt", &mut slot.salt);
        slot.iterations = params.slot_iterations;
        slot.active = true;
        let mut material = af_split(key, |stripes| prf.fill(b"slot0-stripes", stripes));
        let mut slot_key = [0u8; KEY_BYTES];
        pbkdf2::pbkdf2_hmac::<Sha256>(p.as_bytes(), &slot.salt, slot.iterations, &mut slot_key);
        Xts::new(&slot_key).encrypt_sectors(&mut material, 0)?;
        let start = slot.key_material_offset as usize * SECTOR_SIZE;
        out[start..start + material.len()].copy_from_slice(&material);
    }
    out[..PADDED_HEADER_SIZE].copy_from_slice(&header.to_bytes());
    Ok(out)
}

/// Builds a new LUKS1 volume: the header bytes and the payload cipher.
///
/// The lead's image builder writes `header` at offset 0, then the ext2
/// image encrypted with [`LuksWriter::encrypt_payload`] (in any number of
/// sector-aligned chunks, each with its byte offset inside the payload).
pub struct LuksWriter {
    /// Header and key-slot area: [`LuksWriter::payload_offset_bytes`] bytes.
    pub header: Vec<u8>,
    xts: Xts,
}

impl std::fmt::Debug for LuksWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuksWriter")
            .field("header_len", &self.header.len())
            .finish_non_exhaustive()
    }
}

impl LuksWriter {
    /// Validates the key and params and builds the header.
    pub fn new(key: &[u8; KEY_BYTES], params: &LuksParams) -> Result<Self, LuksError> {
        Ok(LuksWriter {
            header: build_header(key, params)?,
            xts: Xts::new(key),
        })
    }

    /// Where the payload starts in the image (2 MiB).
    pub fn payload_offset_bytes(&self) -> u64 {
        self.header.len() as u64
    }

    /// Encrypts `buf`, the plaintext at byte `payload_byte_offset` of the
    /// payload (both multiples of 512), in place.
    pub fn encrypt_payload(
        &self,
        buf: &mut [u8],
        payload_byte_offset: u64,
    ) -> Result<(), LuksError> {
        self.xts
            .encrypt_sectors(buf, first_sector(payload_byte_offset)?)?;
        Ok(())
    }
}

/// An opened LUKS1 volume: a validated header and the payload cipher of a
/// key that matched its digest. This is what the runtime's crypt block
/// device layer keeps.
pub struct LuksVolume {
    header: Header,
    xts: Xts,
}

impl std::fmt::Debug for LuksVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuksVolume")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl LuksVolume {
    /// Parses the header at the start of `header_bytes` (at least 592 bytes
    /// of a device of `device_size` bytes) and checks `key` against it.
    pub fn open(
        header_bytes: &[u8],
        device_size: u64,
        key: &[u8; KEY_BYTES],
    ) -> Result<Self, LuksError> {
        let header = Header::parse(header_bytes, device_size)?;
        header.check_key(key)?;
        Ok(LuksVolume {
            header,
            xts: Xts::new(key),
        })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Where the payload starts on the device.
    pub fn payload_offset_bytes(&self) -> u64 {
        self.header.payload_offset_bytes()
    }

    /// Decrypts `buf`, read from byte `payload_byte_offset` of the payload
    /// (both multiples of 512), in place.
    pub fn decrypt_payload(
        &self,
        buf: &mut [u8],
        payload_byte_offset: u64,
    ) -> Result<(), LuksError> {
        self.xts
            .decrypt_sectors(buf, first_sector(payload_byte_offset)?)?;
        Ok(())
    }

    /// Encrypts `buf`, to be written at byte `payload_byte_offset` of the
    /// payload (both multiples of 512), in place.
    pub fn encrypt_payload(
        &self,
        buf: &mut [u8],
        payload_byte_offset: u64,
    ) -> Result<(), LuksError> {
        self.xts
            .encrypt_sectors(buf, first_sector(payload_byte_offset)?)?;
        Ok(())
    }
}

fn first_sector(payload_byte_offset: u64) -> Result<u64, LuksError> {
    if !payload_byte_offset.is_multiple_of(SECTOR_SIZE as u64) {
        return Err(LuksError::UnalignedOffset(payload_byte_offset));
    }
    Ok(payload_byte_offset / SECTOR_SIZE as u64)
}

/// Key material offset of slot `i`, in sectors: 4 KiB aligned after the
/// header, each slot rounded up to 4 KiB (cryptsetup's LUKS1 layout).
fn slot_offset(i: usize) -> u32 {
    let stride = KEY_MATERIAL_SECTORS.div_ceil(KEY_SLOT_ALIGN_SECTORS) * KEY_SLOT_ALIGN_SECTORS;
    KEY_SLOT_ALIGN_SECTORS + stride * i as u32
}

fn mk_digest(key: &[u8; KEY_BYTES], salt: &[u8; SALT_SIZE], iterations: u32) -> [u8; DIGEST_SIZE] {
    let mut d = [0u8; DIGEST_SIZE];
    pbkdf2::pbkdf2_hmac::<Sha256>(key, salt, iterations, &mut d);
    d
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Deterministic byte streams from a seed: block n of stream `label` is
/// HMAC-SHA256(seed, label || n as u32 BE).
struct Prf {
    mac: HmacSha256,
}

impl Prf {
    fn new(seed: [u8; 32]) -> Self {
        let mac = match HmacSha256::new_from_slice(&seed) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        Prf { mac }
    }

    fn fill(&self, label: &[u8], out: &mut [u8]) {
        for (n, chunk) in out.chunks_mut(32).enumerate() {
            let mut m = self.mac.clone();
            m.update(label);
            m.update(&(n as u32).to_be_bytes());
            let block = m.finalize().into_bytes();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

/// cryptsetup's diffuser: each 32-byte piece i becomes SHA256(i BE || piece).
fn diffuse(buf: &mut [u8; KEY_BYTES]) {
    for (i, piece) in buf.chunks_exact_mut(32).enumerate() {
        let mut h = Sha256::new();
        h.update((i as u32).to_be_bytes());
        h.update(&*piece);
        piece.copy_from_slice(&h.finalize());
    }
}

/// AF-splits `key` into 4000 stripes; `random` fills the first 3999.
fn af_split(key: &[u8; KEY_BYTES], random: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let n = STRIPES as usize;
    let mut out = vec![0u8; KEY_MATERIAL_SECTORS as usize * SECTOR_SIZE];
    random(&mut out[..(n - 1) * KEY_BYTES]);
    let mut acc = [0u8; KEY_BYTES];
    for stripe in out[..(n - 1) * KEY_BYTES].chunks_exact(KEY_BYTES) {
        for (a, s) in acc.iter_mut().zip(stripe) {
            *a ^= s;
        }
        diffuse(&mut acc);
    }
    for ((o, a), k) in out[(n - 1) * KEY_BYTES..n * KEY_BYTES]
        .iter_mut()
        .zip(acc)
        .zip(key)
    {
        *o = a ^ k;
    }
    out
}

/// Inverse of [`af_split`]: `material` holds at least 4000 stripes.
fn af_merge(material: &[u8]) -> [u8; KEY_BYTES] {
    let n = STRIPES as usize;
    let mut acc = [0u8; KEY_BYTES];
    let mut stripes = material.chunks_exact(KEY_BYTES).take(n);
    for stripe in stripes.by_ref().take(n - 1) {
        for (a, s) in acc.iter_mut().zip(stripe) {
            *a ^= s;
        }
        diffuse(&mut acc);
    }
    if let Some(last) = stripes.next() {
        for (a, s) in acc.iter_mut().zip(last) {
            *a ^= s;
        }
    }
    acc
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn parse_slot(b: &[u8]) -> KeySlot {
    let mut salt = [0u8; SALT_SIZE];
    salt.copy_from_slice(&b[8..40]);
    KeySlot {
        active: be32(b, 0) == KEY_ENABLED,
        iterations: be32(b, 4),
        salt,
        key_material_offset: be32(b, 40),
        stripes: be32(b, 44),
    }
}

fn check_iterations(what: &'static str, value: u32) -> Result<(), LuksError> {
    if value == 0 || value > MAX_ITERATIONS {
        return Err(LuksError::BadIterations { what, value });
    }
    Ok(())
}

/// A NUL-terminated printable-ASCII string filling at most `field` minus one
/// byte (the rest must be NULs, as cryptsetup writes them).
fn c_string(field: &[u8], name: &'static str) -> Result<String, LuksError> {
    let bad = LuksError::BadString { field: name };
    let len = field.iter().position(|&c| c == 0).ok_or(bad.clone())?;
    let (s, rest) = field.split_at(len);
    if !s.iter().all(|c| (0x20..0x7f).contains(c)) || rest.iter().any(|&c| c != 0) {
        return Err(bad);
    }
    // Printable ASCII is valid UTF-8.
    Ok(s.iter().map(|&c| c as char).collect())
}

fn expect_str(field: &[u8], name: &'static str, want: &'static str) -> Result<(), LuksError> {
    let s = c_string(field, name)?;
    if s != want {
        return Err(LuksError::Unsupported {
            field: name,
            value: s,
            expected: want,
        });
    }
    Ok(())
}

fn is_canonical_uuid(s: &str) -> bool {
    s.len() == UUID_LEN
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A version-4-shaped UUID text from 16 bytes (as uuid_unparse writes it).
fn format_uuid(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 64] {
        core::array::from_fn(|i| (i as u8).wrapping_mul(29).wrapping_add(3))
    }

    fn fast(pass: Option<&str>) -> LuksParams<'_> {
        LuksParams {
            passphrase: pass,
            slot_iterations: MIN_ITERATIONS,
            ..LuksParams::default()
        }
    }

    #[test]
    fn layout_matches_cryptsetup() {
        let offs: Vec<u32> = (0..8).map(slot_offset).collect();
        assert_eq!(offs, [8, 512, 1016, 1520, 2024, 2528, 3032, 3536]);
        assert_eq!(KEY_MATERIAL_SECTORS, 500);
    }

    #[test]
    fn af_roundtrip() {
        let k = key();
        let split = af_split(&k, |b| {
            b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8)
        });
        assert_eq!(split.len(), 500 * 512);
        assert_eq!(af_merge(&split), k);
    }

    #[test]
    fn header_roundtrip_and_key_check() {
        let k = key();
        let img = build_header(&k, &fast(None)).unwrap();
        assert_eq!(img.len(), 4096 * 512);
        let h = Header::parse(&img, img.len() as u64).unwrap();
        assert_eq!(h.to_bytes(), img[..1024]);
        assert!(h.key_slots.iter().all(|s| !s.active));
        h.check_key(&k).unwrap();
        let mut wrong = k;
        wrong[63] ^= 1;
        assert_eq!(h.check_key(&wrong), Err(LuksError::WrongKey));
        assert_eq!(
            h.open_with_passphrase(&img, b"whatever-passphrase"),
            Err(LuksError::NoActiveKeySlot)
        );
    }

    #[test]
    fn passphrase_slot_opens() {
        let k = key();
        let img = build_header(&k, &fast(Some("correct horse battery"))).unwrap();
        let h = Header::parse(&img, img.len() as u64).unwrap();
        assert!(h.key_slots[0].active);
        assert_eq!(
            h.open_with_passphrase(&img, b"correct horse battery"),
            Ok(k)
        );
        assert_eq!(
            h.open_with_passphrase(&img, b"correct horse batterx"),
            Err(LuksError::WrongPassphrase)
        );
        assert!(matches!(
            h.open_with_passphrase(&img[..100_000], b"correct horse battery"),
            Err(LuksError::KeyMaterialTruncated { slot: 0, .. })
        ));
    }

    #[test]
    fn deterministic_unless_seeded() {
        let k = key();
        let a = build_header(&k, &fast(Some("a passphrase of length"))).unwrap();
        let b = build_header(&k, &fast(Some("a passphrase of length"))).unwrap();
        assert_eq!(a, b);
        let mut p = fast(Some("a passphrase of length"));
        p.seed = Some([9; 32]);
        let c = build_header(&k, &p).unwrap();
        assert_ne!(a, c);
        let h = Header::parse(&c, c.len() as u64).unwrap();
        assert_eq!(h.open_with_passphrase(&c, b"a passphrase of length"), Ok(k));
    }

    #[test]
    fn writer_rejects_bad_input() {
        let k = key();
        assert_eq!(
            build_header(&k, &fast(Some("short"))),
            Err(LuksError::PassphraseTooShort { chars: 5 })
        );
        // 14 characters but multi-byte: counted as characters.
        assert!(build_header(&k, &fast(Some("ééééééééééééé"))).is_err());
        assert!(build_header(&k, &fast(Some("éééééééééééééé"))).is_ok());
        let long = "x".repeat(513);
        assert_eq!(
            build_header(&k, &fast(Some(&long))),
            Err(LuksError::PassphraseTooLong { bytes: 513 })
        );
        assert_eq!(build_header(&[7; 64], &fast(None)), Err(LuksError::WeakKey));
        let mut p = fast(None);
        p.digest_iterations = 999;
        assert!(matches!(
            build_header(&k, &p),
            Err(LuksError::IterationsParam { .. })
        ));
    }

    #[test]
    fn parser_rejects_bad_headers() {
        let k = key();
        let img = build_header(&k, &fast(None)).unwrap();
        let size = img.len() as u64;
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = img[..1024].to_vec();
            f(&mut b);
            Header::parse(&b, size)
        };
        assert_eq!(
            Header::parse(&img[..591], size),
            Err(LuksError::Truncated {
                len: 591,
                need: 592
            })
        );
        assert_eq!(with(&|b| b[0] = b'X'), Err(LuksError::NotLuks));
        assert_eq!(with(&|b| b[7] = 2), Err(LuksError::UnsupportedVersion(2)));
        assert!(matches!(
            with(&|b| b[8] = b'b'),
            Err(LuksError::Unsupported {
                field: "cipher name",
                ..
            })
        ));
        assert!(matches!(
            with(&|b| b[40..51].copy_from_slice(b"cbc-essiv:s")),
            Err(LuksError::Unsupported { .. })
        ));
        assert!(matches!(
            with(&|b| b[77] = b'1'),
            Err(LuksError::Unsupported { field: "hash", .. })
        ));
        assert!(matches!(
            with(&|b| b[72..104].fill(b'a')),
            Err(LuksError::BadString { field: "hash" })
        ));
        assert!(matches!(
            with(&|b| b[111] = 32),
            Err(LuksError::Unsupported {
                field: "key bytes",
                ..
            })
        ));
        assert_eq!(
            with(&|b| b[104..108].fill(0)),
            Err(LuksError::DetachedHeader)
        );
        assert!(matches!(
            Header::parse(&img, size - 1),
            Err(LuksError::PayloadBeyondFile { .. })
        ));
        assert!(matches!(
            with(&|b| b[164..168].fill(0)),
            Err(LuksError::BadIterations { .. })
        ));
        assert!(matches!(
            with(&|b| b[164..168].fill(0xff)),
            Err(LuksError::BadIterations { .. })
        ));
        assert!(matches!(
            with(&|b| b[170] = b'-'),
            Err(LuksError::BadUuid(_))
        ));
        // Slot 3 state garbage, stripes wrong, material in the header,
        // material overlapping slot 4, material past the payload.
        let s3 = SLOT_BASE + 3 * SLOT_SIZE;
        assert!(matches!(
            with(&|b| b[s3 + 3] = 0),
            Err(LuksError::BadKeySlot { slot: 3, .. })
        ));
        assert!(matches!(
            with(&|b| b[s3 + 47] = 1),
            Err(LuksError::BadKeySlot { slot: 3, .. })
        ));
        assert!(matches!(
            with(&|b| b[s3 + 40..s3 + 44].copy_from_slice(&1u32.to_be_bytes())),
            Err(LuksError::BadKeySlot { slot: 3, .. })
        ));
        assert!(matches!(
            with(&|b| b[s3 + 40..s3 + 44].copy_from_slice(&2200u32.to_be_bytes())),
            Err(LuksError::BadKeySlot { .. })
        ));
        assert!(matches!(
            with(&|b| b[s3 + 40..s3 + 44].copy_from_slice(&3700u32.to_be_bytes())),
            Err(LuksError::BadKeySlot { slot: 3, .. })
        ));
        // Active slot with zero iterations.
        assert!(matches!(
            with(&|b| b[s3..s3 + 4].copy_from_slice(&KEY_ENABLED.to_be_bytes())),
            Err(LuksError::BadIterations {
                what: "key slot",
                value: 0
            })
        ));
    }

    #[test]
    fn volume_encrypts_at_offsets() {
        let k = key();
        let w = LuksWriter::new(&k, &fast(None)).unwrap();
        assert_eq!(w.payload_offset_bytes(), 2 << 20);
        let plain: Vec<u8> = (0..8192).map(|i| (i * 13) as u8).collect();
        let mut whole = plain.clone();
        w.encrypt_payload(&mut whole, 0).unwrap();
        let mut tail = plain[4096..].to_vec();
        w.encrypt_payload(&mut tail, 4096).unwrap();
        assert_eq!(tail, whole[4096..]);
        assert_eq!(
            w.encrypt_payload(&mut tail, 100),
            Err(LuksError::UnalignedOffset(100))
        );

        let mut img = w.header.clone();
        img.extend_from_slice(&whole);
        let v = LuksVolume::open(&img, img.len() as u64, &k).unwrap();
        let mut back = whole[512..1536].to_vec();
        v.decrypt_payload(&mut back, 512).unwrap();
        assert_eq!(back, plain[512..1536]);
        let mut wrong = k;
        wrong[0] ^= 0x80;
        assert_eq!(
            LuksVolume::open(&img, img.len() as u64, &wrong).err(),
            Some(LuksError::WrongKey)
        );
    }

    #[test]
    fn key_parsing() {
        assert_eq!(key_from_bytes(&[1; 63]), Err(LuksError::KeySize(63)));
        assert_eq!(key_from_bytes(&[1; 64]), Ok([1; 64]));
        let hex: String = key().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(key_from_hex(&hex), Ok(key()));
        assert_eq!(key_from_hex(&hex[1..]), Err(LuksError::BadHexKey));
        assert_eq!(
            key_from_hex(&hex.replace('A', "g")),
            Err(LuksError::BadHexKey)
        );
    }
}
