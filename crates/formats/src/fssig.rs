//! The FSSIG trailer: the last 4096 bytes of a Mystikos ext2 image, naming
//! the verity hash offset, the root hash and an optional RSA signature.

/// Size of the trailer.
pub const TRAILER_SIZE: usize = 4096;
/// Magic number (little-endian u64 at offset 0).
pub const MAGIC: u64 = 0xf551_98a1_5362_4d38;
/// Largest signature the trailer holds (8192-bit RSA).
pub const MAX_SIGNATURE: usize = 1024;

/// What is wrong with an FSSIG trailer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FssigError {
    /// The file is too small to hold a trailer.
    #[error("file too small for an FSSIG trailer ({0} bytes)")]
    TooSmall(u64),
    /// No magic at the start of the last 4096 bytes.
    #[error("no FSSIG trailer (bad magic)")]
    NoTrailer,
    /// A field is out of range.
    #[error("invalid FSSIG trailer: {0}")]
    Invalid(String),
}

/// A parsed FSSIG trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fssig {
    /// Byte offset of the verity superblock (= size of the data area).
    pub hash_offset: u64,
    /// The verity root hash.
    pub root_hash: [u8; 32],
    /// SHA-256 of the signer's RSA modulus, zeros when unsigned.
    pub signer: [u8; 32],
    /// The PKCS#1 v1.5 signature over the root hash; empty when unsigned.
    pub signature: Vec<u8>,
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

impl Fssig {
    /// True when a signature is present.
    pub fn is_signed(&self) -> bool {
        !self.signature.is_empty()
    }

    /// Serializes to the 4096-byte trailer. Panics only on a programming
    /// error (a signature longer than [`MAX_SIGNATURE`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        assert!(self.signature.len() <= MAX_SIGNATURE, "signature too long");
        let mut b = vec![0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        b[8..16].copy_from_slice(&1u64.to_le_bytes());
        b[16..24].copy_from_slice(&self.hash_offset.to_le_bytes());
        b[24..56].copy_from_slice(&self.root_hash);
        b[56..88].copy_from_slice(&self.signer);
        b[88..88 + self.signature.len()].copy_from_slice(&self.signature);
        b[1112..1120].copy_from_slice(&(self.signature.len() as u64).to_le_bytes());
        b
    }

    /// Parses the trailer of a file of `file_size` bytes whose last 4096
    /// bytes are `buf`. Checks the version, the signature size and that the
    /// hash offset is block-aligned and leaves room for the verity area.
    pub fn parse(buf: &[u8], file_size: u64) -> Result<Self, FssigError> {
        if file_size < TRAILER_SIZE as u64 || buf.len() < TRAILER_SIZE {
            return Err(FssigError::TooSmall(file_size));
        }
        if u64_at(buf, 0) != MAGIC {
            return Err(FssigError::NoTrailer);
        }
        let version = u64_at(buf, 8);
        if version != 1 {
            return Err(FssigError::Invalid(format!(
                "version {version}, expected 1"
            )));
        }
        let hash_offset = u64_at(buf, 16);
        // The verity superblock block must fit between hash_offset and the trailer.
        let room = file_size - TRAILER_SIZE as u64;
        if !hash_offset.is_multiple_of(4096)
            || hash_offset == 0
            || hash_offset.saturating_add(4096) > room
        {
            return Err(FssigError::Invalid(format!(
                "hash offset {hash_offset} is not a non-zero multiple of 4096 inside the file ({file_size} bytes)"
            )));
        }
        let sig_size = u64_at(buf, 1112);
        if sig_size > MAX_SIGNATURE as u64 {
            return Err(FssigError::Invalid(format!(
                "signature size {sig_size} exceeds {MAX_SIGNATURE}"
            )));
        }
        let mut root_hash = [0u8; 32];
        root_hash.copy_from_slice(&buf[24..56]);
        let mut signer = [0u8; 32];
        signer.copy_from_slice(&buf[56..88]);
        Ok(Fssig {
            hash_offset,
            root_hash,
            signer,
            signature: buf[88..88 + sig_size as usize].to_vec(),
        })
    }

    /// Reads the trailer of the file at `path`.
    pub fn read_file(path: &std::path::Path) -> Result<Self, ReadError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        if size < TRAILER_SIZE as u64 {
            return Err(FssigError::TooSmall(size).into());
        }
        f.seek(SeekFrom::Start(size - TRAILER_SIZE as u64))?;
        let mut buf = vec![0u8; TRAILER_SIZE];
        f.read_exact(&mut buf)?;
        Ok(Fssig::parse(&buf, size)?)
    }
}

/// Error reading a trailer from a file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Bad trailer.
    #[error("{0}")]
    Format(#[from] FssigError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = Fssig {
            hash_offset: 8 << 20,
            root_hash: [3; 32],
            signer: [4; 32],
            signature: vec![5; 256],
        };
        let b = f.to_bytes();
        assert_eq!(&b[0..8], &[0x38, 0x4d, 0x62, 0x53, 0xa1, 0x98, 0x51, 0xf5]);
        let size = (8 << 20) + 8192 + 4096;
        assert_eq!(Fssig::parse(&b, size).unwrap(), f);
        assert!(Fssig::parse(&b, (8 << 20) + 4096).is_err());
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert_eq!(Fssig::parse(&bad, size), Err(FssigError::NoTrailer));
        let mut bad = b.clone();
        bad[1113] = 0x10;
        assert!(Fssig::parse(&bad, size).is_err());
    }
}
