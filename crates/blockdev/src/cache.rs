//! A bounded LRU cache of (verified, decrypted) blocks. It sits above
//! verity and crypt, so a hit costs one copy and no hashing; misses are
//! passed down as whole runs so the layers below see large requests.
//!
//! Long sequential streams bypass the cache once they pass a cutoff (4 MiB
//! by default, as bcache's `sequential_cutoff`): a big file read once would
//! otherwise evict every hot metadata block for data nobody reads again.
//!
//! The LRU is a slab with an intrusive doubly linked list (no crate in the
//! workspace provides one, and buffers are recycled on eviction).

use crate::{check_range, BlockDevice, BlockResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const NIL: usize = usize::MAX;

struct Slot {
    block: u64,
    data: Box<[u8]>,
    prev: usize,
    next: usize,
}

/// The LRU structure: most recently used at `head`.
struct Lru {
    map: HashMap<u64, usize>,
    slots: Vec<Slot>,
    head: usize,
    tail: usize,
    cap: usize,
    /// Recent sequential streams: (one past their last block, blocks read,
    /// last use). Several, so that metadata reads interleaved with a file's
    /// data do not hide the file's stream.
    streams: [(u64, u64, u64); STREAMS],
    /// Use counter for `streams`.
    tick: u64,
}

/// Streams tracked for the sequential cutoff.
const STREAMS: usize = 16;
/// Blocks a stream may skip and still count as sequential.
const STREAM_GAP: u64 = 4;

impl Lru {
    /// Accounts a request of `n` blocks at `first`; returns the length of
    /// the sequential stream it continues (itself included).
    fn stream(&mut self, first: u64, n: u64) -> u64 {
        self.tick += 1;
        let tick = self.tick;
        let end = first.saturating_add(n);
        // A small forward gap still continues a stream: ext2 puts an
        // indirect block between every 1024 (4 KiB) data blocks.
        if let Some(s) = self
            .streams
            .iter_mut()
            .find(|s| first >= s.0 && first - s.0 <= STREAM_GAP)
        {
            *s = (end, s.1.saturating_add(n), tick);
            return s.1;
        }
        if let Some(s) = self.streams.iter_mut().min_by_key(|s| s.2) {
            *s = (end, n, tick);
        }
        n
    }
}

impl Lru {
    fn new(cap: usize) -> Self {
        Lru {
            map: HashMap::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            cap,
            streams: [(u64::MAX, 0, 0); STREAMS],
            tick: 0,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.slots[i].prev, self.slots[i].next);
        if p == NIL {
            self.head = n;
        } else {
            self.slots[p].next = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.slots[n].prev = p;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        if self.head != NIL {
            self.slots[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// Copies a cached block into `out`; true on a hit.
    fn get(&mut self, block: u64, out: &mut [u8]) -> bool {
        let Some(&i) = self.map.get(&block) else {
            return false;
        };
        out.copy_from_slice(&self.slots[i].data);
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        true
    }

    fn put(&mut self, block: u64, data: &[u8]) {
        if self.cap == 0 {
            return;
        }
        if let Some(&i) = self.map.get(&block) {
            self.slots[i].data.copy_from_slice(data);
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            return;
        }
        let i = if self.slots.len() < self.cap {
            self.slots.push(Slot {
                block,
                data: data.into(),
                prev: NIL,
                next: NIL,
            });
            self.slots.len() - 1
        } else {
            // Recycle the least recently used slot and its buffer.
            let i = self.tail;
            self.unlink(i);
            self.map.remove(&self.slots[i].block);
            self.slots[i].block = block;
            self.slots[i].data.copy_from_slice(data);
            i
        };
        self.map.insert(block, i);
        self.push_front(i);
    }
}

/// Default sequential cutoff in bytes.
pub const DEFAULT_SEQUENTIAL_CUTOFF: u64 = 4 << 20;

/// A read cache over a lower device, holding at most a fixed number of blocks.
pub struct CacheDevice {
    lower: Arc<dyn BlockDevice>,
    bs: usize,
    lru: Mutex<Lru>,
    /// Blocks after which a sequential stream stops being cached (0 = never).
    cutoff_blocks: u64,
}

impl CacheDevice {
    /// Caches up to `capacity_blocks` blocks of `lower`.
    pub fn new(lower: Arc<dyn BlockDevice>, capacity_blocks: usize) -> Self {
        let bs = lower.block_size();
        CacheDevice {
            bs,
            lower,
            lru: Mutex::new(Lru::new(capacity_blocks)),
            cutoff_blocks: DEFAULT_SEQUENTIAL_CUTOFF / bs as u64,
        }
    }

    /// Sets the sequential cutoff in bytes (`None`: cache every read).
    pub fn with_sequential_cutoff(mut self, bytes: Option<u64>) -> Self {
        self.cutoff_blocks = bytes.map_or(0, |b| (b / self.bs as u64).max(1));
        self
    }

    /// Blocks currently cached.
    pub fn cached_blocks(&self) -> usize {
        self.lru.lock().map(|l| l.map.len()).unwrap_or(0)
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        // A panic elsewhere cannot leave the LRU half-linked in a way that
        // matters more than losing cached copies: start over.
        match self.lru.lock() {
            Ok(g) => g,
            Err(p) => {
                let mut g = p.into_inner();
                *g = Lru::new(g.cap);
                g
            }
        }
    }
}

impl BlockDevice for CacheDevice {
    fn block_size(&self) -> usize {
        self.bs
    }
    fn block_count(&self) -> u64 {
        self.lower.block_count()
    }
    fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
        let n = check_range(first, buf.len(), self.bs, self.lower.block_count())? as usize;
        let bs = self.bs;
        // Runs of missing blocks, as (start index, length).
        let mut misses: Vec<(usize, usize)> = Vec::new();
        let bypass;
        {
            let mut lru = self.lru();
            let len = lru.stream(first, n as u64);
            bypass = self.cutoff_blocks != 0 && len > self.cutoff_blocks;
            for i in 0..n {
                if !lru.get(first + i as u64, &mut buf[i * bs..(i + 1) * bs]) {
                    match misses.last_mut() {
                        Some((s, l)) if *s + *l == i => *l += 1,
                        _ => misses.push((i, 1)),
                    }
                }
            }
        }
        for (s, l) in misses {
            let part = &mut buf[s * bs..(s + l) * bs];
            self.lower.read_blocks(first + s as u64, part)?;
            if bypass {
                continue;
            }
            let mut lru = self.lru();
            for (j, b) in part.chunks_exact(bs).enumerate() {
                lru.put(first + (s + j) as u64, b);
            }
        }
        Ok(())
    }
    fn write_blocks(&self, first: u64, data: &[u8]) -> BlockResult<()> {
        self.lower.write_blocks(first, data)?;
        let mut lru = self.lru();
        for (j, b) in data.chunks_exact(self.bs).enumerate() {
            lru.put(first + j as u64, b);
        }
        Ok(())
    }
    fn is_writable(&self) -> bool {
        self.lower.is_writable()
    }
    fn flush(&self) -> BlockResult<()> {
        self.lower.flush()
    }
    fn fresh_blocks_left(&self) -> Option<u64> {
        self.lower.fresh_blocks_left()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemDevice;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts blocks read from below.
    struct Counting(MemDevice, AtomicUsize);
    impl BlockDevice for Counting {
        fn block_size(&self) -> usize {
            self.0.block_size()
        }
        fn block_count(&self) -> u64 {
            self.0.block_count()
        }
        fn read_blocks(&self, first: u64, buf: &mut [u8]) -> BlockResult<()> {
            self.1.fetch_add(buf.len() / 512, Ordering::Relaxed);
            self.0.read_blocks(first, buf)
        }
    }

    #[test]
    fn long_sequential_streams_bypass_the_cache() {
        let lower = Arc::new(Counting(MemDevice::new(512, 64), AtomicUsize::new(0)));
        let c = CacheDevice::new(lower.clone(), 64).with_sequential_cutoff(Some(8 * 512));
        let mut b = vec![0u8; 4 * 512];
        for k in 0..8 {
            c.read_blocks(k * 4, &mut b).unwrap();
        }
        assert_eq!(
            c.cached_blocks(),
            8,
            "only the first 8 blocks of the stream"
        );
        // Reads elsewhere (metadata) do not break the stream.
        let mut one = vec![0u8; 512];
        c.read_blocks(60, &mut one).unwrap();
        c.read_blocks(32, &mut b).unwrap();
        assert_eq!(c.cached_blocks(), 9);
        c.read_blocks(44, &mut b).unwrap();
        assert_eq!(c.cached_blocks(), 13, "a new stream is cached again");
        let c = CacheDevice::new(lower, 64).with_sequential_cutoff(None);
        for k in 0..8 {
            c.read_blocks(k * 4, &mut b).unwrap();
        }
        assert_eq!(c.cached_blocks(), 32);
    }

    #[test]
    fn lru_hits_misses_and_eviction() {
        let data: Vec<u8> = (0..512 * 16).map(|i| (i / 512) as u8).collect();
        let lower = Arc::new(Counting(
            MemDevice::from_vec(512, data),
            AtomicUsize::new(0),
        ));
        let c = CacheDevice::new(lower.clone(), 4);
        let mut b = vec![0u8; 512 * 3];
        c.read_blocks(1, &mut b).unwrap();
        assert_eq!(b[0], 1);
        assert_eq!(b[1024], 3);
        assert_eq!(lower.1.load(Ordering::Relaxed), 3);
        c.read_blocks(1, &mut b).unwrap();
        assert_eq!(lower.1.load(Ordering::Relaxed), 3, "all hits");
        // Recency is now 3,2,1; reading 0 fills the cache, reading 4 evicts 1.
        let mut one = vec![0u8; 512];
        c.read_blocks(0, &mut one).unwrap();
        c.read_blocks(4, &mut one).unwrap();
        assert_eq!(one[0], 4);
        assert_eq!(c.cached_blocks(), 4);
        assert_eq!(lower.1.load(Ordering::Relaxed), 5);
        c.read_blocks(1, &mut one).unwrap();
        assert_eq!(one[0], 1);
        assert_eq!(lower.1.load(Ordering::Relaxed), 6, "block 1 was evicted");
        c.read_blocks(3, &mut one).unwrap();
        assert_eq!(
            lower.1.load(Ordering::Relaxed),
            6,
            "block 3 is still cached"
        );
        c.read_blocks(2, &mut one).unwrap();
        assert_eq!(one[0], 2);
        assert_eq!(
            lower.1.load(Ordering::Relaxed),
            7,
            "block 2 was evicted by 1"
        );
    }
}
