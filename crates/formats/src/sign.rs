//! RSA signatures over verity root hashes, as Mystikos makes them.
//!
//! The signature is RSASSA-PKCS1-v1_5 with the SHA-256 DigestInfo over the
//! 32-byte root hash taken as if it were already a SHA-256 digest (it is not
//! hashed again), the same bytes as
//! `openssl pkeyutl -sign -inkey priv.pem -pkeyopt digest:sha256 -in roothash.bin`.
//! The signer is the SHA-256 of the big-endian modulus without leading zeros.
//!
//! Keys up to 8192 bits are accepted (the FSSIG trailer holds 1024 signature
//! bytes). The `rsa` crate refuses public keys above 4096 bits when it decodes
//! them itself, so public keys are decoded here from their DER components.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// Largest modulus accepted, in bits.
pub const MAX_BITS: usize = 8192;
/// Smallest modulus accepted, in bits (smaller keys are trivially forgeable).
pub const MIN_BITS: usize = 1024;

/// OID of rsaEncryption, the only SubjectPublicKeyInfo algorithm accepted.
const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

/// What went wrong loading a key, signing or verifying.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The PEM armor could not be read.
    #[error("not a PEM file: {0}")]
    Pem(String),
    /// The PEM holds a kind of key this module does not read.
    #[error("unsupported PEM label \"{0}\": expected {1}")]
    Label(String, &'static str),
    /// The key is encrypted with a passphrase.
    #[error("the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")]
    Encrypted,
    /// The DER inside the PEM is not a valid RSA key.
    #[error("malformed RSA key: {0}")]
    Malformed(String),
    /// The modulus is too small or too large.
    #[error("RSA key of {0} bits is not supported (allowed: {MIN_BITS} to {MAX_BITS} bits)")]
    Size(usize),
    /// The private key cannot sign.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The signature does not verify with the public key.
    #[error("signature does not verify with the public key")]
    BadSignature,
    /// The public key is not the one of the private key.
    #[error("the public key does not match the private key")]
    KeyMismatch,
}

/// An RSA public key that verifies root-hash signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(RsaPublicKey);

/// An RSA private key that signs root hashes.
#[derive(Debug, Clone)]
pub struct PrivateKey(RsaPrivateKey);

fn check_bits(n: &BigUint) -> Result<(), SignError> {
    let bits = n.bits();
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(SignError::Size(bits));
    }
    Ok(())
}

/// Skips text before the PEM armor (openssl pkcs12 writes "Bag
/// Attributes" lines there).
fn armor(pem: &[u8]) -> &[u8] {
    pem.windows(11)
        .position(|w| w == b"-----BEGIN ")
        .map_or(pem, |i| &pem[i..])
}

fn decode_pem(pem: &[u8]) -> Result<(String, Vec<u8>), SignError> {
    let (label, der) =
        rsa::pkcs8::der::pem::decode_vec(armor(pem)).map_err(|e| SignError::Pem(e.to_string()))?;
    Ok((label.to_string(), der))
}

fn scheme() -> Pkcs1v15Sign {
    Pkcs1v15Sign::new::<Sha256>()
}

impl PublicKey {
    /// Reads a PEM public key: SubjectPublicKeyInfo (`PUBLIC KEY`) or
    /// PKCS#1 (`RSA PUBLIC KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, SignError> {
        let (label, der) = decode_pem(pem)?;
        let pkcs1_der: Vec<u8> = match label.as_str() {
            "PUBLIC KEY" => {
                let spki = rsa::pkcs8::spki::SubjectPublicKeyInfoRef::try_from(der.as_slice())
                    .map_err(|e| SignError::Malformed(e.to_string()))?;
                if spki.algorithm.oid.to_string() != RSA_ENCRYPTION_OID {
                    return Err(SignError::Malformed(format!(
                        "algorithm {} is not rsaEncryption",
                        spki.algorithm.oid
                    )));
                }
                spki.subject_public_key
                    .as_bytes()
                    .ok_or_else(|| SignError::Malformed("unaligned key bit string".into()))?
                    .to_vec()
            }
            "RSA PUBLIC KEY" => der,
            other => {
                return Err(SignError::Label(
                    other.to_string(),
                    "PUBLIC KEY or RSA PUBLIC KEY",
                ))
            }
        };
        let k = rsa::pkcs1::RsaPublicKey::try_from(pkcs1_der.as_slice())
            .map_err(|e| SignError::Malformed(e.to_string()))?;
        let n = BigUint::from_bytes_be(k.modulus.as_bytes());
        let e = BigUint::from_bytes_be(k.public_exponent.as_bytes());
        check_bits(&n)?;
        RsaPublicKey::new_with_max_size(n, e, MAX_BITS)
            .map(PublicKey)
            .map_err(|e| SignError::Malformed(e.to_string()))
    }

    /// The modulus, big-endian, without leading zeros.
    pub fn modulus(&self) -> Vec<u8> {
        self.0.n().to_bytes_be()
    }

    /// Bytes of a signature made with this key (the modulus length).
    pub fn signature_len(&self) -> usize {
        self.0.size()
    }

    /// The FSSIG signer field: SHA-256 of [`PublicKey::modulus`].
    pub fn signer(&self) -> [u8; 32] {
        Sha256::digest(self.modulus()).into()
    }

    /// Checks `signature` over `root_hash` (PKCS#1 v1.5, SHA-256 DigestInfo).
    pub fn verify(&self, root_hash: &[u8; 32], signature: &[u8]) -> Result<(), SignError> {
        self.0
            .verify(scheme(), root_hash, signature)
            .map_err(|_| SignError::BadSignature)
    }
}

impl PrivateKey {
    /// Reads a PEM private key: PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8
    /// (`PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, SignError> {
        let pem = armor(pem);
        let text = std::str::from_utf8(pem).map_err(|_| SignError::Pem("not text".into()))?;
        let (label, _) = decode_pem(pem)?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_pem(text)
                .map_err(|e| SignError::Malformed(e.to_string()))?,
            "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_pem(text)
                .map_err(|e| SignError::Malformed(e.to_string()))?,
            "ENCRYPTED PRIVATE KEY" => return Err(SignError::Encrypted),
            other => {
                return Err(SignError::Label(
                    other.to_string(),
                    "PRIVATE KEY or RSA PRIVATE KEY",
                ))
            }
        };
        check_bits(key.n())?;
        Ok(PrivateKey(key))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.to_public_key())
    }

    /// Signs the root hash (PKCS#1 v1.5 over the SHA-256 DigestInfo of the
    /// raw hash). The result is as long as the modulus.
    pub fn sign(&self, root_hash: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        self.0
            .sign(scheme(), root_hash)
            .map_err(|e| SignError::Sign(e.to_string()))
    }
}

/// A signature over a root hash and the FSSIG signer of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// SHA-256 of the signer's modulus.
    pub signer: [u8; 32],
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Signs `root_hash` with `private`, then verifies the signature with
/// `public` so that a key pair that does not match is refused.
pub fn sign_and_verify(
    private: &PrivateKey,
    public: &PublicKey,
    root_hash: &[u8; 32],
) -> Result<Signed, SignError> {
    if private.public_key() != *public {
        return Err(SignError::KeyMismatch);
    }
    let signature = private.sign(root_hash)?;
    public
        .verify(root_hash, &signature)
        .map_err(|_| SignError::KeyMismatch)?;
    Ok(Signed {
        signer: public.signer(),
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use std::sync::OnceLock;

    /// One 1024-bit key for the fast tests (generation is slow in tests).
    fn key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let mut rng = ChaCha(0x1234_5678);
            RsaPrivateKey::new(&mut rng, 1024).expect("keygen")
        })
    }

    /// A tiny deterministic RNG for key generation in tests only.
    struct ChaCha(u64);
    impl rsa::rand_core::RngCore for ChaCha {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for c in dest.chunks_mut(8) {
                let v = self.next_u64().to_le_bytes();
                c.copy_from_slice(&v[..c.len()]);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rsa::rand_core::CryptoRng for ChaCha {}

    #[test]
    fn all_pem_forms_load_and_agree() {
        let k = key();
        let pkcs1 = k.to_pkcs1_pem(LineEnding::LF).unwrap();
        let pkcs8 = k.to_pkcs8_pem(LineEnding::LF).unwrap();
        let a = PrivateKey::from_pem(pkcs1.as_bytes()).unwrap();
        let b = PrivateKey::from_pem(pkcs8.as_bytes()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let spki = k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let rsapub = k.to_public_key().to_pkcs1_pem(LineEnding::LF).unwrap();
        let p1 = PublicKey::from_pem(spki.as_bytes()).unwrap();
        let p2 = PublicKey::from_pem(rsapub.as_bytes()).unwrap();
        assert_eq!(p1, p2);
        assert_eq!(p1, a.public_key());
        // Text before the armor is skipped.
        let bagged = format!("Bag Attributes\n    localKeyID: 01\n{}", pkcs8.as_str());
        assert_eq!(
            PrivateKey::from_pem(bagged.as_bytes())
                .unwrap()
                .public_key(),
            p1
        );
        // Keys in the wrong slot are refused with the label named.
        let e = PublicKey::from_pem(pkcs8.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("PRIVATE KEY"), "{e}");
        assert!(PrivateKey::from_pem(spki.as_bytes()).is_err());
        assert!(PrivateKey::from_pem(b"garbage").is_err());
    }

    #[test]
    fn signature_is_pkcs1v15_over_raw_hash() {
        let k = PrivateKey(key().clone());
        let root = [0xabu8; 32];
        let sig = k.sign(&root).unwrap();
        assert_eq!(sig.len(), 128);
        // Recover the encoded message with the public exponent and check
        // its structure: 00 01 FF.. 00 DigestInfo(sha256) root.
        let pubk = k.public_key();
        let m = BigUint::from_bytes_be(&sig).modpow(pubk.0.e(), pubk.0.n());
        let mut em = m.to_bytes_be();
        while em.len() < 127 {
            em.insert(0, 0);
        }
        assert_eq!(em[0], 1);
        let prefix: [u8; 19] = [
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        assert_eq!(&em[em.len() - 32..], &root);
        assert_eq!(&em[em.len() - 51..em.len() - 32], &prefix);
        assert_eq!(em[em.len() - 52], 0);
        assert!(em[1..em.len() - 52].iter().all(|&b| b == 0xff));
        pubk.verify(&root, &sig).unwrap();
        let mut bad = sig.clone();
        bad[5] ^= 1;
        assert!(pubk.verify(&root, &bad).is_err());
        assert!(pubk.verify(&[0; 32], &sig).is_err());
    }

    #[test]
    fn signer_is_sha256_of_modulus() {
        let k = PrivateKey(key().clone());
        let p = k.public_key();
        let n = p.modulus();
        assert_ne!(n[0], 0);
        assert_eq!(n.len(), 128);
        assert_eq!(p.signer(), <[u8; 32]>::from(Sha256::digest(&n)));
    }

    #[test]
    fn mismatched_pair_is_refused() {
        let a = PrivateKey(key().clone());
        let mut rng = ChaCha(99);
        let other = PrivateKey(RsaPrivateKey::new(&mut rng, 1024).unwrap());
        let root = [1u8; 32];
        assert!(sign_and_verify(&a, &a.public_key(), &root).is_ok());
        assert!(matches!(
            sign_and_verify(&a, &other.public_key(), &root),
            Err(SignError::KeyMismatch)
        ));
    }

    #[test]
    fn small_keys_are_refused() {
        let mut rng = ChaCha(7);
        let k = RsaPrivateKey::new(&mut rng, 512).unwrap();
        let pem = k.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(matches!(
            PrivateKey::from_pem(pem.as_bytes()),
            Err(SignError::Size(512))
        ));
    }
}
