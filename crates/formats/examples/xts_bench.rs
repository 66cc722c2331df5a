//! AES-256-XTS throughput: myst's batched XTS against the `xts-mode` crate,
//! in the same run. Run with `bench/xts.sh` (release build).
//!
//! Usage: xts_bench [TOTAL_MIB] [RUNS]
//! For each request size (64 KiB, 4 KiB) and direction, every run processes
//! TOTAL_MIB of data as consecutive requests over a 16 MiB buffer (sector
//! numbers advance like a sequential read); the median MB/s (10^6 bytes/s)
//! of RUNS runs is reported, with ours/xts-mode ratios. The 1 MiB buffer
//! stays in L2, as a block just read from the host does; the benchmark
//! measures the cipher, not memory bandwidth. The last column is the `aes`
//! crate's plain ECB over the same requests: the ceiling for any XTS built
//! on that crate (XTS adds the tweaks on top of exactly this AES work).

use std::hint::black_box;
use std::time::Instant;

use aes08::cipher::generic_array::GenericArray;
use aes08::cipher::KeyInit;
use aes08::Aes256;
use myst_formats::xts::{Xts, SECTOR_SIZE};
use xts_mode::{get_tweak_default, Xts128};

const BUF: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Ours,
    XtsMode,
    Ecb,
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Enc,
    Dec,
}

struct Ciphers {
    ours: Xts,
    theirs: Xts128<Aes256>,
    ecb: aes::Aes256,
}

fn run(imp: Impl, dir: Dir, req: usize, total: usize, c: &Ciphers, buf: &mut [u8]) -> f64 {
    let Ciphers { ours, theirs, ecb } = c;
    use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt};
    let start = Instant::now();
    let mut done = 0usize;
    let mut off = 0usize;
    while done < total {
        if off + req > buf.len() {
            off = 0;
        }
        let chunk = &mut buf[off..off + req];
        let sector = (off / SECTOR_SIZE) as u64;
        match (imp, dir) {
            (Impl::Ours, Dir::Enc) => ours.encrypt_sectors(chunk, sector).expect("whole sectors"),
            (Impl::Ours, Dir::Dec) => ours.decrypt_sectors(chunk, sector).expect("whole sectors"),
            (Impl::XtsMode, Dir::Enc) => {
                theirs.encrypt_area(chunk, SECTOR_SIZE, u128::from(sector), get_tweak_default)
            }
            (Impl::XtsMode, Dir::Dec) => {
                theirs.decrypt_area(chunk, SECTOR_SIZE, u128::from(sector), get_tweak_default)
            }
            (Impl::Ecb, Dir::Enc) => ecb.encrypt_blocks(aes::Block::slice_as_chunks_mut(chunk).0),
            (Impl::Ecb, Dir::Dec) => ecb.decrypt_blocks(aes::Block::slice_as_chunks_mut(chunk).0),
        }
        black_box(&chunk[0]);
        off += req;
        done += req;
    }
    done as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total_mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let key: [u8; 64] = core::array::from_fn(|i| (i as u8).wrapping_mul(151).wrapping_add(7));
    let ours = Xts::new(&key);
    let theirs = Xts128::new(
        Aes256::new(GenericArray::from_slice(&key[..32])),
        Aes256::new(GenericArray::from_slice(&key[32..])),
    );
    let ecb = {
        use aes::cipher::KeyInit;
        let mut k = [0u8; 32];
        k.copy_from_slice(&key[..32]);
        aes::Aes256::new(&k.into())
    };
    let c = Ciphers { ours, theirs, ecb };
    let mut buf: Vec<u8> = (0..BUF).map(|i| (i * 31 + 11) as u8).collect();

    // Sanity: both produce the same ciphertext before anything is timed.
    let mut a = buf[..65536].to_vec();
    let mut b = a.clone();
    c.ours.encrypt_sectors(&mut a, 3).expect("whole sectors");
    c.theirs
        .encrypt_area(&mut b, SECTOR_SIZE, 3, get_tweak_default);
    assert_eq!(a, b, "implementations disagree");

    println!(
        "AES-256-XTS plain64, {total_mib} MiB per run, median of {runs} runs (MB/s = 10^6 B/s)"
    );
    println!(
        "{:<8} {:<8} {:>10} {:>10} {:>7} {:>10}",
        "request", "dir", "myst", "xts-mode", "ratio", "aes ECB"
    );
    let total = total_mib << 20;
    for req in [64 << 10, 4 << 10] {
        for dir in [Dir::Enc, Dir::Dec] {
            let mut o = Vec::new();
            let mut t = Vec::new();
            let mut e = Vec::new();
            for _ in 0..runs {
                // Interleave so drift in machine load hits all alike.
                o.push(run(Impl::Ours, dir, req, total, &c, &mut buf));
                t.push(run(Impl::XtsMode, dir, req, total / 4, &c, &mut buf));
                e.push(run(Impl::Ecb, dir, req, total, &c, &mut buf));
            }
            let (mo, mt, me) = (median(o), median(t), median(e));
            println!(
                "{:<8} {:<8} {:>10.0} {:>10.0} {:>6.1}x {:>10.0}",
                format!("{} KiB", req >> 10),
                if dir == Dir::Enc {
                    "encrypt"
                } else {
                    "decrypt"
                },
                mo,
                mt,
                mo / mt,
                me
            );
        }
    }
}
