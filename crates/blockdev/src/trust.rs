//! The trust rules of docs/FORMATS.md §6 and the stack they choose:
//!
//! 1. no FSSIG trailer -> unverified;
//! 2. a signed trailer whose signer (SHA-256 of the RSA modulus) matches a
//!    trusted public key and whose PKCS#1 v1.5 signature over the root hash
//!    verifies -> verified;
//! 3. otherwise a root hash on the trusted list -> verified;
//! 4. verified -> host file + verity; unverified -> the raw file (debug
//!    mode, with a warning) or, when strict, refused with EPERM.
//!
//! A LUKS1 data area then gets the crypt layer (the key is required and
//! checked at open). The cache and (optionally) the ephemeral overlay go on
//! top either way.
//!
//! Signatures are checked with `myst_formats::sign` (SHA-256 of the modulus
//! as signer id, PKCS#1 v1.5 with the SHA-256 DigestInfo over the raw
//! 32-byte root hash).

use crate::cache::CacheDevice;
use crate::crypt::{CryptDevice, CryptOpenError};
use crate::file::HostFile;
use crate::overlay::{BlockStore, Overlay};
use crate::verity::{VerityDevice, VerityOpenError};
use crate::{BlockDevice, BlockError};
use myst_formats::fssig::{Fssig, FssigError, TRAILER_SIZE};
use myst_formats::sign::{PublicKey, SignError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A trusted RSA public key and its signer id.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: PublicKey,
    /// SHA-256 of the big-endian modulus (without leading zeros).
    pub signer: [u8; 32],
}

/// Why a public key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("not a usable RSA public key in PEM form: {0}")]
pub struct KeyError(#[from] SignError);

impl TrustedKey {
    /// Parses a PEM public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`,
    /// 1024 to 8192 bits).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = PublicKey::from_pem(pem.as_bytes())?;
        let signer = key.signer();
        Ok(TrustedKey { key, signer })
    }

    /// True when `signature` is this key's PKCS#1 v1.5 signature over
    /// `root_hash` taken as an already computed SHA-256 digest.
    pub fn verifies(&self, root_hash: &[u8; 32], signature: &[u8]) -> bool {
        self.key.verify(root_hash, signature).is_ok()
    }
}

/// What the caller trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// Trusted verity root hashes.
    pub root_hashes: Vec<[u8; 32]>,
    /// Trusted signing keys.
    pub public_keys: Vec<TrustedKey>,
    /// Refuse unverified images (EPERM) instead of mounting them raw.
    pub strict: bool,
}

/// The outcome of the trust rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Not verified; the reason, for the warning.
    Unverified(&'static str),
    /// The root hash is on the trusted list.
    RootHash,
    /// A trusted key signed the root hash.
    Signature {
        /// The signer id.
        signer: [u8; 32],
    },
}

impl Verification {
    /// True unless unverified.
    pub fn is_verified(&self) -> bool {
        !matches!(self, Verification::Unverified(_))
    }
}

/// Applies rules 1-3 of docs/FORMATS.md §6 to a (possibly absent) trailer.
pub fn evaluate(fssig: Option<&Fssig>, policy: &TrustPolicy) -> Verification {
    let Some(sig) = fssig else {
        return Verification::Unverified("the image has no FSSIG trailer");
    };
    if sig.is_signed() {
        for k in &policy.public_keys {
            if k.signer == sig.signer && k.verifies(&sig.root_hash, &sig.signature) {
                return Verification::Signature { signer: k.signer };
            }
        }
    }
    if policy.root_hashes.contains(&sig.root_hash) {
        return Verification::RootHash;
    }
    if sig.is_signed() {
        Verification::Unverified("neither its signature nor its root hash is trusted")
    } else {
        Verification::Unverified("its root hash is not trusted")
    }
}

/// How to build the stack above the trust decision.
#[derive(Clone)]
pub struct StackConfig {
    /// Blocks (4096 bytes) in the read cache.
    pub cache_blocks: usize,
    /// Ephemeral write budget in bytes (a [`crate::overlay::MemStore`]); `None` and no
    /// `overlay_store` give a read-only device.
    pub overlay_budget: Option<u64>,
    /// A store for ephemeral writes supplied by the caller (e.g. a shared
    /// memfd store inherited across fork); takes precedence over `overlay_budget`.
    pub overlay_store: Option<Arc<dyn BlockStore>>,
    /// LUKS master key (64 bytes) for an encrypted image.
    pub key: Option<Vec<u8>>,
}

impl std::fmt::Debug for StackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackConfig")
            .field("cache_blocks", &self.cache_blocks)
            .field("overlay_budget", &self.overlay_budget)
            .field(
                "overlay_store",
                &self.overlay_store.as_ref().map(|_| "caller's store"),
            )
            .field("key", &self.key.as_ref().map(|_| "64 bytes"))
            .finish()
    }
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            cache_blocks: 8192,
            overlay_budget: None,
            overlay_store: None,
            key: None,
        }
    }
}

impl StackConfig {
    /// True when the stack gets an ephemeral overlay (writes allowed).
    pub fn writable(&self) -> bool {
        self.overlay_store.is_some() || self.overlay_budget.is_some()
    }
}

/// Why an image could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Host I/O failed.
    #[error(transparent)]
    Io(#[from] BlockError),
    /// A trailer is present but malformed.
    #[error("{path}: {source}")]
    Fssig {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        source: FssigError,
    },
    /// The verity area is invalid or does not match the trusted root hash.
    #[error(transparent)]
    Verity(#[from] VerityOpenError),
    /// Strict mode and the image is not verified.
    #[error("{path}: refusing an unverified image: {reason}")]
    Untrusted {
        /// The image.
        path: PathBuf,
        /// Why it is not verified.
        reason: &'static str,
    },
    /// The image is LUKS-encrypted and no key was given.
    #[error("{path}: the image is encrypted (LUKS); a key is needed")]
    NeedsKey {
        /// The image.
        path: PathBuf,
    },
    /// The LUKS header is invalid or the key does not match it.
    #[error("{msg}")]
    Crypt {
        /// The image.
        path: PathBuf,
        /// What went wrong (names the image).
        msg: String,
        /// True when the key does not match the volume's digest.
        wrong_key: bool,
    },
}

impl OpenError {
    /// The errno this error turns into (EPERM for an untrusted image in strict mode).
    pub fn errno(&self) -> crate::Errno {
        match self {
            OpenError::Io(e) => e.errno(),
            OpenError::Verity(e) => e.errno(),
            OpenError::Untrusted { .. } => crate::Errno::EPERM,
            OpenError::NeedsKey { .. } => crate::Errno::ENOKEY,
            OpenError::Crypt {
                wrong_key: true, ..
            } => crate::Errno::EKEYREJECTED,
            OpenError::Crypt { .. } => crate::Errno::EINVAL,
            OpenError::Fssig { .. } => crate::Errno::EINVAL,
        }
    }
}

/// An opened image: the top of its stack and how it was trusted.
pub struct Image {
    /// The device the file system reads (overlay or cache on top).
    pub device: Arc<dyn BlockDevice>,
    /// The trust decision.
    pub verification: Verification,
    /// The trailer, when there is one.
    pub fssig: Option<Fssig>,
    /// The overlay, when writes are enabled (for statistics).
    pub overlay: Option<Arc<Overlay>>,
}

impl Image {
    /// The one-line warning callers print for an unverified image (`None`
    /// when verified). `open_image` itself stays silent so each caller
    /// words it once.
    pub fn warning(&self, path: &Path) -> Option<String> {
        match &self.verification {
            Verification::Unverified(reason) => Some(format!(
                "{}: not verified ({reason}); reading it without integrity checks",
                path.display()
            )),
            _ => None,
        }
    }
}

/// LUKS1 magic at the start of an encrypted data area.
pub const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";

/// Reads the FSSIG trailer of an open host file: `Ok(None)` when there is
/// none (no magic or a file too small), an error when it is malformed.
pub fn read_trailer(file: &HostFile, path: &Path) -> Result<Option<Fssig>, OpenError> {
    let size = file.len();
    if size < TRAILER_SIZE as u64 {
        return Ok(None);
    }
    let mut buf = vec![0u8; TRAILER_SIZE];
    file.read_at(size - TRAILER_SIZE as u64, &mut buf)?;
    match Fssig::parse(&buf, size) {
        Ok(s) => Ok(Some(s)),
        Err(FssigError::NoTrailer) | Err(FssigError::TooSmall(_)) => Ok(None),
        Err(source) => Err(OpenError::Fssig {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Opens the image at `path` under `policy` and builds its stack:
/// host file -> verity (when verified) -> crypt (with a key) -> cache ->
/// overlay (when `config.overlay_budget` is set). Unverified images in
/// non-strict mode are opened raw; callers print [`Image::warning`].
pub fn open_image(
    path: &Path,
    policy: &TrustPolicy,
    config: &StackConfig,
) -> Result<Image, OpenError> {
    let name = path.display().to_string();
    let host = Arc::new(HostFile::open(path, myst_formats::verity::BLOCK_SIZE)?);
    let fssig = read_trailer(&host, path)?;
    let verification = evaluate(fssig.as_ref(), policy);
    let data: Arc<dyn BlockDevice> = match (&verification, &fssig) {
        (Verification::Unverified(reason), _) => {
            if policy.strict {
                return Err(OpenError::Untrusted {
                    path: path.to_path_buf(),
                    reason,
                });
            }
            host
        }
        (_, Some(sig)) => Arc::new(VerityDevice::open(
            host,
            &name,
            sig.hash_offset,
            sig.root_hash,
        )?),
        // evaluate() only verifies images that have a trailer.
        (_, None) => host,
    };
    let mut head = [0u8; 4096];
    if data.block_count() > 0 {
        data.read_block(0, &mut head)?;
    }
    let plain: Arc<dyn BlockDevice> = if &head[..6] == LUKS_MAGIC {
        match &config.key {
            None => {
                return Err(OpenError::NeedsKey {
                    path: path.to_path_buf(),
                })
            }
            // Unverified: the payload still ends where the trailer says.
            Some(key) => open_crypt(data, path, key, fssig.as_ref().map(|s| s.hash_offset))?,
        }
    } else if config.key.is_some() {
        return Err(OpenError::Crypt {
            path: path.to_path_buf(),
            msg: format!("{name}: a key was given but the image is not LUKS-encrypted"),
            wrong_key: false,
        });
    } else {
        data
    };
    let cached: Arc<dyn BlockDevice> = Arc::new(CacheDevice::new(plain, config.cache_blocks));
    let (device, overlay): (Arc<dyn BlockDevice>, _) =
        match (&config.overlay_store, config.overlay_budget) {
            (Some(store), _) => {
                let ov = Arc::new(Overlay::new(cached, store.clone())?);
                (ov.clone(), Some(ov))
            }
            (None, Some(budget)) => {
                let ov = Arc::new(Overlay::in_memory(cached, budget));
                (ov.clone(), Some(ov))
            }
            (None, None) => (cached, None),
        };
    Ok(Image {
        device,
        verification,
        fssig,
        overlay,
    })
}

fn open_crypt(
    data: Arc<dyn BlockDevice>,
    path: &Path,
    key: &[u8],
    limit: Option<u64>,
) -> Result<Arc<dyn BlockDevice>, OpenError> {
    let key = myst_formats::luks::key_from_bytes(key).map_err(|e| OpenError::Crypt {
        path: path.to_path_buf(),
        msg: format!("{}: {e}", path.display()),
        wrong_key: false,
    })?;
    match CryptDevice::open(data, &path.display().to_string(), &key, limit) {
        Ok(c) => Ok(Arc::new(c)),
        Err(CryptOpenError::Io(e)) => Err(OpenError::Io(e)),
        Err(e) => Err(OpenError::Crypt {
            path: path.to_path_buf(),
            wrong_key: e.is_wrong_key(),
            msg: e.to_string(),
        }),
    }
}
