//! The output side of the builder: a write-combining buffer over the image
//! file that applies the payload transform, writes with large positioned
//! writes and hands every written 4096-byte verity block to hashing threads.
//!
//! Each file-system block is written at most once. Blocks never written are
//! zero (the file is sparse) and get the precomputed hash of a zero block,
//! unless a transform is set: then they are filled in at the end (a
//! transformed zero block is not zero). A verity block only partly covered
//! by one write (possible with blocks smaller than 4096 bytes) is read back
//! and hashed at the end.

use super::Ext2Error;
use crate::verity::{hash_block, Digest32, BLOCK_SIZE as VBS};
use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Bytes of one write-combining buffer.
const BUF_BYTES: usize = 4 << 20;
/// Buffers in flight between the writer and the hashing threads.
const BUFFERS: usize = 6;

/// A transform applied to payload bytes before they are written and hashed
/// (encryption); the second argument is the byte offset in the payload.
pub type Transform = dyn Fn(&mut [u8], u64) + Sync;

/// Work for a hashing thread: hash `count` verity blocks of `buf` starting
/// at byte `skip`, as leaves `first`, `first + 1`, ...
pub(crate) struct Job {
    buf: Vec<u8>,
    skip: usize,
    count: usize,
    first: u64,
}

/// Shared state of the hashing threads.
pub(crate) struct Hashers {
    pub(crate) leaves: Mutex<Vec<Digest32>>,
    pub(crate) salt: [u8; 32],
}

impl Hashers {
    /// Body of a hashing thread: hash jobs until the channel closes,
    /// returning each buffer for reuse.
    pub(crate) fn run(&self, jobs: &Mutex<Receiver<Job>>, free: SyncSender<Vec<u8>>) {
        let mut out: Vec<Digest32> = Vec::with_capacity(BUF_BYTES / VBS);
        loop {
            let job = match jobs.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let Ok(job) = job else { return };
            out.clear();
            for i in 0..job.count {
                let s = job.skip + i * VBS;
                out.push(hash_block(&self.salt, &job.buf[s..s + VBS]));
            }
            if let Ok(mut leaves) = self.leaves.lock() {
                let first = job.first as usize;
                leaves[first..first + out.len()].copy_from_slice(&out);
            }
            // The writer may be gone already (error path): ignore.
            let _ = free.try_send(job.buf);
        }
    }
}

/// The write side, owned by the builder thread.
pub(crate) struct Sink<'a> {
    file: &'a File,
    path: &'a Path,
    /// Byte offset of file-system block 0 in the image (header length).
    base: u64,
    bs: usize,
    transform: Option<&'a Transform>,
    hashers: &'a Hashers,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    allocated: usize,
    /// Current buffer: blocks `buf_start ..` with `buf_len` bytes committed.
    buf: Vec<u8>,
    buf_start: u64,
    buf_len: usize,
    /// Verity blocks to read back and hash at the end.
    dirty: BTreeSet<u64>,
    /// File-system blocks written so far (only kept with a transform).
    written: Option<Vec<u64>>,
    blocks_count: u64,
}

impl<'a> Sink<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        file: &'a File,
        path: &'a Path,
        base: u64,
        bs: usize,
        blocks_count: u64,
        transform: Option<&'a Transform>,
        hashers: &'a Hashers,
        jobs: Option<SyncSender<Job>>,
        free: Receiver<Vec<u8>>,
    ) -> Self {
        let written = transform.map(|_| vec![0u64; blocks_count.div_ceil(64) as usize]);
        Sink {
            file,
            path,
            base,
            bs,
            transform,
            hashers,
            jobs,
            free,
            allocated: 1,
            buf: vec![0u8; BUF_BYTES],
            buf_start: 0,
            buf_len: 0,
            dirty: BTreeSet::new(),
            written,
            blocks_count,
        }
    }

    /// The free-buffer channel pair for [`Sink::new`] and the hashing threads.
    pub(crate) fn free_channel() -> (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) {
        sync_channel(BUFFERS)
    }

    /// The job channel for [`Sink::new`] and the hashing threads.
    pub(crate) fn job_channel() -> (SyncSender<Job>, Receiver<Job>) {
        sync_channel(2)
    }

    fn err(&self, e: std::io::Error) -> Ext2Error {
        Ext2Error::Write {
            path: self.path.to_path_buf(),
            source: e,
        }
    }

    /// Writes raw bytes at an image offset (the header: not transformed)
    /// and hashes them. `data` must be whole verity blocks at a verity
    /// block boundary.
    pub(crate) fn write_raw(&mut self, offset: u64, data: &[u8]) -> Result<(), Ext2Error> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| self.err(e))?;
        let mut leaves = self
            .hashers
            .leaves
            .lock()
            .map_err(|_| self.err(std::io::Error::other("hashing thread failed")))?;
        for (i, c) in data.chunks(VBS).enumerate() {
            leaves[(offset / VBS as u64) as usize + i] = hash_block(&self.hashers.salt, c);
        }
        Ok(())
    }

    /// Makes the buffer continue at block `block`, flushing it first if
    /// it holds blocks that `block` does not follow.
    pub(crate) fn ensure_at(&mut self, block: u64) -> Result<(), Ext2Error> {
        if self.buf_len > 0 && self.buf_start + (self.buf_len / self.bs) as u64 != block {
            self.flush()?;
        }
        if self.buf_len == 0 {
            self.buf_start = block;
        }
        Ok(())
    }

    /// Free blocks in the buffer, flushing it first when full.
    pub(crate) fn room(&mut self) -> Result<usize, Ext2Error> {
        if self.buf_len == self.buf.len() {
            let next = self.buf_start + (self.buf_len / self.bs) as u64;
            self.flush()?;
            self.buf_start = next;
        }
        Ok((self.buf.len() - self.buf_len) / self.bs)
    }

    /// Space for `n` blocks at the end of the buffer (`n` at most
    /// [`Sink::room`]); the caller fills it and calls [`Sink::commit`].
    pub(crate) fn slot(&mut self, n: usize) -> &mut [u8] {
        let s = self.buf_len;
        &mut self.buf[s..s + n * self.bs]
    }

    /// Keeps the first `k` blocks of the last slot.
    pub(crate) fn commit(&mut self, k: usize) {
        self.buf_len += k * self.bs;
    }

    /// Writes `data` (whole blocks) at block `block`.
    pub(crate) fn put(&mut self, block: u64, data: &[u8]) -> Result<(), Ext2Error> {
        debug_assert_eq!(data.len() % self.bs, 0);
        self.ensure_at(block)?;
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.room()?.min(rest.len() / self.bs);
            let (now, later) = rest.split_at(n * self.bs);
            self.slot(n).copy_from_slice(now);
            self.commit(n);
            rest = later;
        }
        Ok(())
    }

    fn next_buffer(&mut self) -> Vec<u8> {
        if let Ok(b) = self.free.try_recv() {
            return b;
        }
        if self.allocated < BUFFERS || self.jobs.is_none() {
            self.allocated += 1;
            return vec![0u8; BUF_BYTES];
        }
        match self.free.recv() {
            Ok(b) => b,
            Err(_) => vec![0u8; BUF_BYTES],
        }
    }

    /// Writes the buffer out and queues its verity blocks for hashing.
    pub(crate) fn flush(&mut self) -> Result<(), Ext2Error> {
        if self.buf_len == 0 {
            return Ok(());
        }
        let bs = self.bs as u64;
        let len = self.buf_len;
        let payload_off = self.buf_start * bs;
        if let Some(t) = self.transform {
            t(&mut self.buf[..len], payload_off);
        }
        let off = self.base + payload_off;
        self.file
            .write_all_at(&self.buf[..len], off)
            .map_err(|e| self.err(e))?;
        if let Some(w) = &mut self.written {
            for b in self.buf_start..self.buf_start + (len / self.bs) as u64 {
                w[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        // Verity blocks wholly inside this write are hashed from the buffer;
        // the partial ones at either end are read back later.
        let end = off + len as u64;
        let first_full = off.div_ceil(VBS as u64);
        let last_full = end / VBS as u64;
        if !off.is_multiple_of(VBS as u64) {
            self.dirty.insert(off / VBS as u64);
        }
        if !end.is_multiple_of(VBS as u64) {
            self.dirty.insert(end / VBS as u64);
        }
        self.buf_len = 0;
        if last_full <= first_full {
            return Ok(());
        }
        let skip = (first_full * VBS as u64 - off) as usize;
        let count = (last_full - first_full) as usize;
        if self.jobs.is_none() {
            // No hashing threads: hash here and keep the buffer.
            let mut leaves = self
                .hashers
                .leaves
                .lock()
                .map_err(|_| self.err(std::io::Error::other("lock poisoned")))?;
            for i in 0..count {
                let s = skip + i * VBS;
                leaves[first_full as usize + i] =
                    hash_block(&self.hashers.salt, &self.buf[s..s + VBS]);
            }
            return Ok(());
        }
        let next = self.next_buffer();
        let buf = std::mem::replace(&mut self.buf, next);
        let job = Job {
            skip,
            count,
            first: first_full,
            buf,
        };
        if let Some(tx) = &self.jobs {
            if let Err(e) = tx.send(job) {
                return Err(self.err(std::io::Error::other(format!(
                    "hashing thread stopped: {e}"
                ))));
            }
        }
        Ok(())
    }

    /// Flushes, fills the blocks never written when a transform is set,
    /// stops the hashing threads and hashes the partly written verity
    /// blocks by reading them back.
    pub(crate) fn finish(mut self) -> Result<(), Ext2Error> {
        self.flush()?;
        if let Some(w) = self.written.take() {
            let is_set = |b: u64| w[(b / 64) as usize] & (1 << (b % 64)) != 0;
            let mut b = 0u64;
            while b < self.blocks_count {
                if is_set(b) {
                    b += 1;
                    continue;
                }
                self.ensure_at(b)?;
                let n = self.room()?;
                let mut k = 0;
                while k < n && b + (k as u64) < self.blocks_count && !is_set(b + k as u64) {
                    k += 1;
                }
                self.slot(k).fill(0);
                self.commit(k);
                b += k as u64;
            }
            self.flush()?;
        }
        // Closing the job channel ends the hashing threads once they are done.
        self.jobs = None;
        let dirty = std::mem::take(&mut self.dirty);
        let mut block = vec![0u8; VBS];
        for v in dirty {
            let off = v * VBS as u64;
            self.file
                .read_exact_at(&mut block, off)
                .map_err(|e| self.err(e))?;
            let h = hash_block(&self.hashers.salt, &block);
            // No job covers a partly written block: no thread writes this leaf.
            let mut leaves = self
                .hashers
                .leaves
                .lock()
                .map_err(|_| self.err(std::io::Error::other("lock poisoned")))?;
            leaves[v as usize] = h;
        }
        Ok(())
    }
}
