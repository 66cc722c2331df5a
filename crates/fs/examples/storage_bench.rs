//! Storage-stack read benchmark (run by bench/storage.sh): sequential
//! reads of one file through host file -> verity -> cache -> ext2, cold
//! (fresh stack, empty caches) and warm (second pass over a cache that
//! holds the file), next to this machine's SHA-256 throughput on the same
//! work verity does (salted SHA-256 of 4096-byte blocks).
//!
//! The machine is shared, so besides wall-clock MB/s every figure is also
//! given per CPU-second of this thread (from /proc/thread-self/schedstat);
//! the SHA-256 baseline is re-measured before each run and ratios use the
//! CPU-time figures, which other processes disturb much less.
//!
//! Usage: storage_bench IMG HASH_OFFSET ROOT_HEX PATH [RUNS]

use myst_blockdev::cache::CacheDevice;
use myst_blockdev::file::HostFile;
use myst_blockdev::verity::VerityDevice;
use myst_blockdev::BlockDevice;
use myst_fs::ext2::{Ext2Fs, MountOptions};
use myst_fs::FileSystem;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Nanoseconds this thread has run on a CPU.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (wall MB/s, CPU MB/s) of `f`, which processes `bytes`.
fn measure(bytes: u64, f: impl FnOnce()) -> (f64, f64) {
    let (t, c) = (Instant::now(), cpu_ns());
    f();
    let wall = t.elapsed().as_secs_f64();
    let cpu = (cpu_ns() - c) as f64 / 1e9;
    (
        bytes as f64 / wall / 1e6,
        bytes as f64 / cpu.max(1e-9) / 1e6,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Salted SHA-256 over 4096-byte blocks of a 64 MiB buffer: the verity limit.
fn sha_limit(buf: &[u8]) -> (f64, f64) {
    let salt = [7u8; 32];
    measure(buf.len() as u64, || {
        let mut acc = 0u8;
        for b in buf.chunks_exact(4096) {
            let d: [u8; 32] = Sha256::new()
                .chain_update(salt)
                .chain_update(b)
                .finalize()
                .into();
            acc ^= d[0];
        }
        std::hint::black_box(acc);
    })
}

fn open(img: &Path, off: u64, root: [u8; 32], cache_blocks: usize, cutoff: Option<u64>) -> Ext2Fs {
    let host = Arc::new(HostFile::open(img, 4096).expect("open image"));
    let v = Arc::new(VerityDevice::open(host, "bench", off, root).expect("verity"));
    let c: Arc<dyn BlockDevice> =
        Arc::new(CacheDevice::new(v, cache_blocks).with_sequential_cutoff(cutoff));
    Ext2Fs::mount(
        c,
        &MountOptions {
            read_only: true,
            name: "bench".into(),
        },
    )
    .expect("mount")
}

fn lookup(fs: &Ext2Fs, path: &str) -> u64 {
    let mut ino = fs.root();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c.as_bytes()).expect("lookup");
    }
    ino
}

/// Reads the whole file in 1 MiB requests.
fn read_all(fs: &Ext2Fs, ino: u64) -> (f64, f64) {
    let size = fs.getattr(ino).expect("getattr").size;
    let mut buf = vec![0u8; 1 << 20];
    measure(size, || {
        let mut off = 0;
        while off < size {
            let n = fs.read(ino, off, &mut buf).expect("read");
            assert!(n > 0);
            off += n as u64;
        }
    })
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: storage_bench IMG HASH_OFFSET ROOT_HEX PATH [RUNS]");
        std::process::exit(2);
    }
    let img = Path::new(&a[1]);
    let off: u64 = a[2].parse().expect("hash offset");
    let mut root = [0u8; 32];
    for (i, b) in root.iter_mut().enumerate() {
        *b = u8::from_str_radix(&a[3][2 * i..2 * i + 2], 16).expect("root hex");
    }
    let path = &a[4];
    let runs: usize = a.get(5).map(|r| r.parse().expect("runs")).unwrap_or(3);
    let shabuf: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 11)) as u8)
        .collect();

    let names = [
        "sha256_limit",
        "cold_default",
        "cold_file_cache",
        "warm_file_cache",
    ];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for _ in 0..runs {
        let mut row = Vec::new();
        row.push(sha_limit(&shabuf));
        // The runtime's default: 32 MiB cache, 4 MiB sequential cutoff.
        let fs = open(
            img,
            off,
            root,
            8192,
            Some(myst_blockdev::cache::DEFAULT_SEQUENTIAL_CUTOFF),
        );
        row.push(read_all(&fs, lookup(&fs, path)));
        drop(fs);
        // BENCH_ONLY_COLD: profile the default path alone.
        if std::env::var_os("BENCH_ONLY_COLD").is_none() {
            // A cache that holds the whole file and no cutoff: first pass cold, second warm.
            let fs = open(img, off, root, 1 << 19, None);
            let ino = lookup(&fs, path);
            row.push(read_all(&fs, ino));
            row.push(read_all(&fs, ino));
        }
        let sha_cpu = row[0].1;
        row.resize(4, (f64::NAN, f64::NAN));
        for (k, (w, c)) in row
            .into_iter()
            .enumerate()
            .filter(|(_, (w, _))| !w.is_nan())
        {
            wall[k].push(w);
            cpu[k].push(c);
            ratio[k].push(c / sha_cpu);
        }
    }
    for k in 0..4 {
        if wall[k].is_empty() {
            continue;
        }
        println!(
            "{} wall_MBps {:.0} cpu_MBps {:.0} ratio_pct {:.0}",
            names[k],
            median(wall[k].clone()),
            median(cpu[k].clone()),
            100.0 * median(ratio[k].clone())
        );
    }
}
