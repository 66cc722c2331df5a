//! AES-256-XTS with `plain64` tweaks over 512-byte sectors, as dm-crypt's
//! `aes-xts-plain64` (and LUKS1 key slots) use it.
//!
//! The 64-byte key is split in two: bytes 0..32 key the data cipher, bytes
//! 32..64 the tweak cipher. The tweak of sector `n` is `n` as a little-endian
//! u64 zero-extended to 16 bytes, encrypted with the tweak cipher; block `j`
//! of the sector uses that tweak multiplied by `x^j` in GF(2^128) (IEEE 1619).
//! Sectors are always whole, so ciphertext stealing never happens.
//!
//! Written here rather than taken from the `xts-mode` crate (kept only as the
//! test reference and benchmark baseline): `xts-mode` makes one AES call per
//! 16-byte block, so it only ever runs the single-block path (one 128-bit
//! AES-NI lane) and computes each tweak from the previous one. Here one call
//! processes many sectors:
//!
//! 1. the initial tweaks of up to 64 sectors are encrypted in one batch;
//! 2. for a group of 4 sectors, the tweaks of all 128 blocks are computed in
//!    a form the compiler vectorizes (see `gen_tweaks`) and XORed in;
//! 3. the blocks go through the `aes` crate's parallel-block backend, chosen
//!    at run time: VAES-512 (64 blocks in flight), VAES-256 (30), AES-NI (8)
//!    or the constant-time software fallback;
//! 4. the tweaks are XORed out again.
//!
//! Steps 2-4 run inside the backend's closure, so they are compiled with the
//! backend's target features (AVX-512 XORs and shifts) without any `unsafe`
//! here. Throughput is in docs/BENCHMARKS.md ("AES-XTS throughput").

use aes::cipher::array::Array;
use aes::cipher::consts::U16;
use aes::cipher::{
    BlockCipherDecBackend, BlockCipherDecClosure, BlockCipherDecrypt, BlockCipherEncBackend,
    BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit, ParBlocks,
    ParBlocksSizeUser,
};
use aes::{Aes256, Aes256Enc, Block};

/// Bytes of one XTS data unit (a dm-crypt sector).
pub const SECTOR_SIZE: usize = 512;
/// Bytes of an AES-256-XTS key (data key then tweak key).
pub const KEY_SIZE: usize = 64;

const BLOCKS_PER_SECTOR: usize = SECTOR_SIZE / 16;
/// Sectors per backend call. Their initial tweaks are encrypted together,
/// which fills one parallel batch of the widest backend (64 blocks with
/// VAES-512); fewer blocks would go one by one through the backend's
/// single-block path (measured: the tweaks of 16 sectors at a time cost
/// 30% of the throughput).
const BATCH_SECTORS: usize = 64;
/// Sectors whose tweaks are generated, XORed in, encrypted and XORed out
/// together: whole parallel batches (128 blocks) while the data and its
/// tweaks (2 KiB each) stay in L1. 4 measured best among 2, 4, 8 and 16.
const GROUP_SECTORS: usize = 4;
const GROUP_BLOCKS: usize = GROUP_SECTORS * BLOCKS_PER_SECTOR;

/// What is wrong with an XTS request.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum XtsError {
    /// The buffer is not a whole number of sectors.
    #[error("XTS buffer of {0} bytes is not a multiple of the 512-byte sector size")]
    NotSectorMultiple(usize),
    /// The sector numbers of the request do not fit in 64 bits.
    #[error("XTS sector number overflows 64 bits (first sector {first}, {count} sectors)")]
    SectorOverflow {
        /// First sector of the request.
        first: u64,
        /// Sectors in the request.
        count: u64,
    },
}

/// An AES-256-XTS (plain64) cipher over 512-byte sectors.
#[derive(Clone)]
pub struct Xts {
    data: Aes256,
    tweak: Aes256Enc,
}

impl std::fmt::Debug for Xts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key schedules.
        f.write_str("Xts { .. }")
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

impl Xts {
    /// A cipher keyed with the 64-byte XTS key (data key, then tweak key).
    pub fn new(key: &[u8; KEY_SIZE]) -> Self {
        let mut k1 = [0u8; 32];
        let mut k2 = [0u8; 32];
        k1.copy_from_slice(&key[..32]);
        k2.copy_from_slice(&key[32..]);
        Xts {
            data: Aes256::new(&Array::from(k1)),
            tweak: Aes256Enc::new(&Array::from(k2)),
        }
    }

    /// Encrypts `buf` in place; its first sector has number `first_sector`.
    pub fn encrypt_sectors(&self, buf: &mut [u8], first_sector: u64) -> Result<(), XtsError> {
        self.process(buf, first_sector, Direction::Encrypt)
    }

    /// Decrypts `buf` in place; its first sector has number `first_sector`.
    pub fn decrypt_sectors(&self, buf: &mut [u8], first_sector: u64) -> Result<(), XtsError> {
        self.process(buf, first_sector, Direction::Decrypt)
    }

    fn process(&self, buf: &mut [u8], first_sector: u64, dir: Direction) -> Result<(), XtsError> {
        if !buf.len().is_multiple_of(SECTOR_SIZE) {
            return Err(XtsError::NotSectorMultiple(buf.len()));
        }
        let count = (buf.len() / SECTOR_SIZE) as u64;
        // The last sector number must be representable (dm-crypt's plain64
        // would wrap, but no image is 2^73 bytes long: refuse instead).
        if count > 0 && first_sector.checked_add(count - 1).is_none() {
            return Err(XtsError::SectorOverflow {
                first: first_sector,
                count,
            });
        }
        let (blocks, rest) = Block::slice_as_chunks_mut(buf);
        debug_assert!(rest.is_empty());
        let mut sector = first_sector;
        let mut scratch = [0u8; GROUP_BLOCKS * 16];
        for batch in blocks.chunks_mut(BATCH_SECTORS * BLOCKS_PER_SECTOR) {
            let n = batch.len() / BLOCKS_PER_SECTOR;
            let mut tweaks = [Block::default(); BATCH_SECTORS];
            for (i, t) in tweaks[..n].iter_mut().enumerate() {
                // No overflow: checked above for the whole request.
                let s = sector.wrapping_add(i as u64);
                t[..8].copy_from_slice(&s.to_le_bytes());
            }
            self.tweak.encrypt_blocks(&mut tweaks[..n]);
            let job = SectorJob {
                blocks: batch,
                tweaks: &tweaks[..n],
                scratch: &mut scratch,
            };
            match dir {
                Direction::Encrypt => self.data.encrypt_with_backend(job),
                Direction::Decrypt => self.data.decrypt_with_backend(job),
            }
            sector = sector.wrapping_add(n as u64);
        }
        Ok(())
    }
}

/// Work handed to the AES backend: the blocks of whole sectors and the
/// encrypted initial tweak of each sector.
struct SectorJob<'a> {
    blocks: &'a mut [Block],
    tweaks: &'a [Block],
    /// Room for the tweaks of every block, reused across groups.
    scratch: &'a mut [u8; GROUP_BLOCKS * 16],
}

impl BlockSizeUser for SectorJob<'_> {
    type BlockSize = U16;
}

impl SectorJob<'_> {
    /// XORs the tweaks in, runs `par`/`tail` over the blocks, XORs them out.
    #[inline(always)]
    fn run<P: ParBlocksSizeUser<BlockSize = U16>>(
        self,
        par: impl Fn(&mut ParBlocks<P>),
        tail: impl Fn(&mut [Block]),
    ) {
        let groups = self.blocks.chunks_mut(GROUP_BLOCKS);
        for (group, t0) in groups.zip(self.tweaks.chunks(GROUP_SECTORS)) {
            let tw = &mut self.scratch[..group.len() * 16];
            gen_tweaks(t0, tw);
            let tw = &*tw;
            xor_bytes(Block::slice_as_flattened_mut(group), tw);
            let (chunks, rest) = ParBlocks::<P>::slice_as_chunks_mut(group);
            for chunk in chunks {
                par(chunk);
            }
            tail(rest);
            xor_bytes(Block::slice_as_flattened_mut(group), tw);
        }
    }
}

/// Writes the tweak of every block of the sectors whose encrypted initial
/// tweaks are `t0` (block j of a sector: t0 * x^j), as little-endian bytes.
///
/// Eight blocks at a time from one base tweak B = (lo, hi): block k gets
/// B * x^k. As 16 little-endian u64 words, word 2k is
/// `lo << k ^ h ^ reduce'(h)` with `h = hi >> (64 - k)` (the bits shifted out
/// of the top, folded back with x^128 = x^7 + x^2 + x + 1) and word 2k+1 is
/// `hi << k ^ lo >> (64 - k)`. Written as one uniform expression over the
/// 16 words with constant per-word shift counts, the loop vectorizes instead
/// of waiting on a chain of 32 doublings.
#[inline(always)]
fn gen_tweaks(t0: &[Block], out: &mut [u8]) {
    const K: [u32; 16] = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7];
    const LOW_WORD: [u64; 16] = [!0, 0, !0, 0, !0, 0, !0, 0, !0, 0, !0, 0, !0, 0, !0, 0];
    for (t, sector) in t0.iter().zip(out.chunks_exact_mut(SECTOR_SIZE)) {
        let c = u128::from_le_bytes(t.0);
        let (mut lo, mut hi) = (c as u64, (c >> 64) as u64);
        for oct in sector.chunks_exact_mut(8 * 16) {
            let mut w = [0u64; 16];
            for p in 0..16 {
                let (a, b) = if p % 2 == 0 { (lo, hi) } else { (hi, lo) };
                // `(b >> 1) >> (63 - k)` is `b >> (64 - k)`, and 0 for k = 0.
                let h = (b >> 1) >> (63 - K[p]);
                w[p] = (a << K[p]) ^ h ^ (LOW_WORD[p] & ((h << 1) ^ (h << 2) ^ (h << 7)));
            }
            for (dst, v) in oct.chunks_exact_mut(8).zip(w) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
            (lo, hi) = ((lo << 8) ^ reduce(hi >> 56), (hi << 8) | (lo >> 56));
        }
    }
}

/// The product of `h` (at most 8 bits, the overflow above bit 127) and x^128.
#[inline(always)]
fn reduce(h: u64) -> u64 {
    h ^ (h << 1) ^ (h << 2) ^ (h << 7)
}

/// `dst ^= src`, written as a plain byte loop so it vectorizes to the
/// widest registers the backend's target features allow.
#[inline(always)]
fn xor_bytes(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

impl BlockCipherEncClosure for SectorJob<'_> {
    // Inlined into the backend's `#[target_feature]` entry point, so the
    // tweak arithmetic and XORs are compiled for the same vector extensions.
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = Self::BlockSize>>(self, backend: &B) {
        self.run::<B>(
            |p| backend.encrypt_par_blocks_inplace(p),
            |t| backend.encrypt_tail_blocks_inplace(t),
        );
    }
}

impl BlockCipherDecClosure for SectorJob<'_> {
    #[inline(always)]
    fn call<B: BlockCipherDecBackend<BlockSize = Self::BlockSize>>(self, backend: &B) {
        self.run::<B>(
            |p| backend.decrypt_par_blocks_inplace(p),
            |t| backend.decrypt_tail_blocks_inplace(t),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Multiplies a tweak by x in GF(2^128) with the XTS (little-endian) convention.
    fn mul_x(t: u128) -> u128 {
        // 0x87 = x^7 + x^2 + x + 1, the reduction of x^128.
        let carry = ((t as i128) >> 127) as u128 & 0x87;
        (t << 1) ^ carry
    }

    #[test]
    fn gen_tweaks_matches_doubling_chain() {
        let t0 = [
            Block::from([0xa5u8; 16]),
            Block::from([0xffu8; 16]),
            Block::from([0u8; 16]),
        ];
        let mut out = [0u8; 3 * SECTOR_SIZE];
        gen_tweaks(&t0, &mut out);
        for (t, sector) in t0.iter().zip(out.chunks_exact(SECTOR_SIZE)) {
            let mut c = u128::from_le_bytes(t.0);
            for got in sector.chunks_exact(16) {
                assert_eq!(got, &c.to_le_bytes()[..]);
                c = mul_x(c);
            }
        }
    }

    #[test]
    fn rejects_partial_sector() {
        let x = Xts::new(&[7u8; 64]);
        let mut b = vec![0u8; 513];
        assert_eq!(
            x.encrypt_sectors(&mut b, 0),
            Err(XtsError::NotSectorMultiple(513))
        );
        assert_eq!(
            x.decrypt_sectors(&mut b[..100], 0),
            Err(XtsError::NotSectorMultiple(100))
        );
    }

    #[test]
    fn rejects_sector_overflow() {
        let x = Xts::new(&[7u8; 64]);
        let mut b = vec![0u8; 1024];
        assert!(matches!(
            x.encrypt_sectors(&mut b, u64::MAX),
            Err(XtsError::SectorOverflow { .. })
        ));
        // The very last sector alone is fine.
        assert!(x.encrypt_sectors(&mut b[..512], u64::MAX).is_ok());
    }

    #[test]
    fn empty_buffer_is_a_no_op() {
        let x = Xts::new(&[7u8; 64]);
        let mut b: [u8; 0] = [];
        assert!(x.encrypt_sectors(&mut b, u64::MAX).is_ok());
    }

    #[test]
    fn mul_x_reduces() {
        assert_eq!(mul_x(1), 2);
        assert_eq!(mul_x(1u128 << 127), 0x87);
        assert_eq!(mul_x((1u128 << 127) | 1), 0x87 ^ 2);
    }

    /// IEEE 1619-2007 vector 10 (XTS-AES-256, data unit 0xff, 512 bytes).
    #[test]
    fn ieee_1619_vector_10() {
        let mut key = [0u8; 64];
        let k1 = "2718281828459045235360287471352662497757247093699959574966967627";
        let k2 = "3141592653589793238462643383279502884197169399375105820974944592";
        for (i, c) in key.chunks_exact_mut(1).enumerate() {
            let s = if i < 32 {
                &k1[2 * i..2 * i + 2]
            } else {
                &k2[2 * (i - 32)..2 * (i - 32) + 2]
            };
            c[0] = u8::from_str_radix(s, 16).unwrap();
        }
        let mut data: Vec<u8> = (0..512).map(|i| i as u8).collect();
        let x = Xts::new(&key);
        x.encrypt_sectors(&mut data, 0xff).unwrap();
        assert_eq!(
            &data[..16],
            &[
                0x1c, 0x3b, 0x3a, 0x10, 0x2f, 0x77, 0x03, 0x86, 0xe4, 0x83, 0x6c, 0x99, 0xe3, 0x70,
                0xcf, 0x9b
            ]
        );
        x.decrypt_sectors(&mut data, 0xff).unwrap();
        assert!(data.iter().enumerate().all(|(i, b)| *b == i as u8));
    }
}
