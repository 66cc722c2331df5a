//! The output side of the builder: a write-combining buffer over the image
//! file. Full buffers go to worker threads that apply the payload transform
//! and hash their 4096-byte verity blocks, then to one writer thread that
//! writes them with large positioned writes, so that reading the tree (the
//! builder thread), encrypting, hashing and writing overlap.
//!
//! Writes that are 4096-aligned go through a second descriptor opened with
//! `O_DIRECT` when the file system allows it: the data then goes from the
//! buffer to the disk without being copied into the page cache, which costs
//! less CPU than the copy and leaves the image on disk when the command
//! returns (mke2fs and veritysetup fsync their output for the same reason).
//!
//! Each file-system block is written at most once. Blocks never written are
//! zero (the file is sparse) and keep the precomputed hash of a zero block,
//! unless a transform is set: then they are filled in at the end (a
//! transformed zero block is not zero). A verity block only partly covered
//! by one write (possible with blocks smaller than 4096 bytes) is read back
//! and hashed after the workers are done.

use super::Ext2Error;
use crate::verity::{hash_block, Digest32, BLOCK_SIZE as VBS};
use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Bytes of one write-combining buffer.
const BUF_BYTES: usize = 4 << 20;
/// Buffers in flight between the builder and the workers.
const BUFFERS: usize = 12;
/// Alignment `O_DIRECT` needs (memory, offset and length).
const ALIGN: usize = 4096;

/// A transform applied to payload bytes before they are written and hashed
/// (encryption); the second argument is the byte offset in the payload.
pub type Transform<'a> = dyn Fn(&mut [u8], u64) + Sync + 'a;

/// A buffer whose usable part starts at a 4096-byte aligned address.
pub(crate) struct Buf {
    v: Vec<u8>,
    off: usize,
}

impl Buf {
    fn new() -> Self {
        let v = vec![0u8; BUF_BYTES + ALIGN];
        let off = (ALIGN - v.as_ptr() as usize % ALIGN) % ALIGN;
        Buf { v, off }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.v[self.off..self.off + BUF_BYTES]
    }
}

/// Work for a worker: transform `len` bytes of `buf`, write them at
/// `file_off`, and hash `count` verity blocks starting at byte `skip` as
/// leaves `first`, `first + 1`, ...
pub(crate) struct Job {
    buf: Buf,
    len: usize,
    payload_off: u64,
    file_off: u64,
    skip: usize,
    count: usize,
    first: u64,
}

/// What the workers share with the builder.
pub(crate) struct Shared<'a> {
    pub(crate) leaves: Mutex<Vec<Digest32>>,
    pub(crate) salt: [u8; 32],
    pub(crate) file: &'a File,
    pub(crate) direct: Option<File>,
    pub(crate) transform: Option<&'a Transform<'a>>,
    pub(crate) error: Mutex<Option<io::Error>>,
}

impl Shared<'_> {
    /// Writes `data` at `off`, directly when aligned and possible.
    fn write(&self, data: &[u8], off: u64) -> io::Result<()> {
        if let Some(d) = &self.direct {
            let aligned = (data.as_ptr() as usize).is_multiple_of(ALIGN)
                && data.len().is_multiple_of(ALIGN)
                && off.is_multiple_of(ALIGN as u64);
            if aligned {
                match d.write_all_at(data, off) {
                    Ok(()) => return Ok(()),
                    // Not supported for this range after all: fall back.
                    Err(e) if e.raw_os_error() == Some(22) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.file.write_all_at(data, off)
    }

    /// Transforms and hashes one job (the worker part).
    fn transform_and_hash(&self, job: &mut Job) -> io::Result<()> {
        let data = &mut job.buf.bytes_mut()[..job.len];
        if let Some(t) = self.transform {
            t(data, job.payload_off);
        }
        if job.count == 0 {
            return Ok(());
        }
        let mut out: Vec<Digest32> = Vec::with_capacity(job.count);
        for i in 0..job.count {
            let s = job.skip + i * VBS;
            out.push(hash_block(&self.salt, &data[s..s + VBS]));
        }
        let mut leaves = self
            .leaves
            .lock()
            .map_err(|_| io::Error::other("a worker thread failed"))?;
        let first = job.first as usize;
        leaves[first..first + out.len()].copy_from_slice(&out);
        Ok(())
    }

    /// Writes one job's bytes (the writer part).
    fn write_job(&self, job: &mut Job) -> io::Result<()> {
        let data = &job.buf.bytes_mut()[..job.len];
        self.write(data, job.file_off)
    }

    /// Does a job from start to end on the calling thread.
    fn process(&self, job: &mut Job) -> io::Result<()> {
        self.transform_and_hash(job)?;
        self.write_job(job)
    }

    fn fail(&self, e: io::Error) {
        if let Ok(mut slot) = self.error.lock() {
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }

    /// Body of a worker thread: transform and hash jobs until the channel
    /// closes, then pass them to the writer.
    pub(crate) fn run(&self, jobs: &Mutex<Receiver<Job>>, writer: SyncSender<Job>) {
        loop {
            let job = match jobs.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let Ok(mut job) = job else { return };
            if let Err(e) = self.transform_and_hash(&mut job) {
                self.fail(e);
            }
            if writer.send(job).is_err() {
                return;
            }
        }
    }

    /// Body of the writer thread. One thread writes: parallel direct writes
    /// into a sparse file contend on the file's allocation lock and are
    /// slower than one stream.
    pub(crate) fn run_writer(&self, jobs: Receiver<Job>, free: SyncSender<Buf>) {
        for mut job in jobs {
            if let Err(e) = self.write_job(&mut job) {
                self.fail(e);
            }
            // The builder may be gone already (error path): ignore.
            let _ = free.try_send(job.buf);
        }
    }

    /// The first error a worker met.
    pub(crate) fn take_error(&self) -> Option<io::Error> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

/// Opens `path` a second time for `O_DIRECT` writes, if the file system
/// supports it.
pub(crate) fn open_direct(path: &Path) -> Option<File> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .map(File::from)
}

/// The write side, owned by the builder thread.
pub(crate) struct Sink<'a> {
    path: &'a Path,
    shared: &'a Shared<'a>,
    /// Byte offset of file-system block 0 in the image (header length).
    base: u64,
    bs: usize,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Buf>,
    allocated: usize,
    /// Current buffer: blocks `buf_start ..` with `buf_len` bytes committed.
    buf: Buf,
    buf_start: u64,
    buf_len: usize,
    /// Verity blocks to read back and hash at the end.
    dirty: BTreeSet<u64>,
    /// File-system blocks written so far (only kept with a transform).
    written: Option<Vec<u64>>,
    blocks_count: u64,
    /// Blocks to rewrite at the end (indirect blocks).
    deferred: Vec<(u64, Vec<u8>)>,
}

/// The channels between a [`Sink`], its workers and its writer.
pub(crate) struct Channels {
    pub(crate) job_tx: SyncSender<Job>,
    pub(crate) job_rx: Mutex<Receiver<Job>>,
    pub(crate) write_tx: SyncSender<Job>,
    pub(crate) write_rx: Receiver<Job>,
    pub(crate) free_tx: SyncSender<Buf>,
    pub(crate) free_rx: Receiver<Buf>,
}

impl Channels {
    pub(crate) fn new() -> Self {
        let (job_tx, job_rx) = sync_channel(2);
        let (write_tx, write_rx) = sync_channel(BUFFERS);
        let (free_tx, free_rx) = sync_channel(BUFFERS);
        Channels {
            job_tx,
            job_rx: Mutex::new(job_rx),
            write_tx,
            write_rx,
            free_tx,
            free_rx,
        }
    }
}

impl<'a> Sink<'a> {
    /// A sink writing file-system blocks of `bs` bytes at `base`. Without
    /// `jobs`, the builder thread does the workers' part itself.
    pub(crate) fn new(
        path: &'a Path,
        shared: &'a Shared<'a>,
        base: u64,
        bs: usize,
        blocks_count: u64,
        jobs: Option<SyncSender<Job>>,
        free: Receiver<Buf>,
    ) -> Self {
        let written = shared
            .transform
            .map(|_| vec![0u64; blocks_count.div_ceil(64) as usize]);
        Sink {
            path,
            shared,
            base,
            bs,
            jobs,
            free,
            allocated: 1,
            buf: Buf::new(),
            buf_start: 0,
            buf_len: 0,
            dirty: BTreeSet::new(),
            written,
            blocks_count,
            deferred: Vec::new(),
        }
    }

    fn err(&self, e: io::Error) -> Ext2Error {
        Ext2Error::Write {
            path: self.path.to_path_buf(),
            err: e,
        }
    }

    /// Writes raw bytes at an image offset (the header: not transformed)
    /// and hashes them. `data` must be whole verity blocks at a verity
    /// block boundary.
    pub(crate) fn write_raw(&mut self, offset: u64, data: &[u8]) -> Result<(), Ext2Error> {
        self.shared
            .file
            .write_all_at(data, offset)
            .map_err(|e| self.err(e))?;
        let mut leaves = self
            .shared
            .leaves
            .lock()
            .map_err(|_| self.err(io::Error::other("a worker thread failed")))?;
        for (i, c) in data.chunks(VBS).enumerate() {
            leaves[(offset / VBS as u64) as usize + i] = hash_block(&self.shared.salt, c);
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
        if self.buf_len == BUF_BYTES {
            let next = self.buf_start + (self.buf_len / self.bs) as u64;
            self.flush()?;
            self.buf_start = next;
        }
        Ok((BUF_BYTES - self.buf_len) / self.bs)
    }

    /// Space for `n` blocks at the end of the buffer (`n` at most
    /// [`Sink::room`]); the caller fills it and calls [`Sink::commit`].
    pub(crate) fn slot(&mut self, n: usize) -> &mut [u8] {
        let s = self.buf_len;
        &mut self.buf.bytes_mut()[s..s + n * self.bs]
    }

    /// Keeps the first `k` blocks of the last slot.
    pub(crate) fn commit(&mut self, k: usize) {
        self.buf_len += k * self.bs;
    }

    /// Drops the last `k` committed blocks (not flushed since).
    pub(crate) fn uncommit(&mut self, k: usize) {
        self.buf_len -= k * self.bs;
    }

    /// Records the final contents of a block already written (as a
    /// placeholder); they are written once the workers are done.
    pub(crate) fn defer(&mut self, block: u64, data: Vec<u8>) {
        self.deferred.push((block, data));
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

    fn next_buffer(&mut self) -> Buf {
        if let Ok(b) = self.free.try_recv() {
            return b;
        }
        if self.allocated < BUFFERS {
            self.allocated += 1;
            return Buf::new();
        }
        match self.free.recv() {
            Ok(b) => b,
            Err(_) => Buf::new(),
        }
    }

    /// Hands the buffer to a worker (or processes it here).
    pub(crate) fn flush(&mut self) -> Result<(), Ext2Error> {
        if self.buf_len == 0 {
            return Ok(());
        }
        let bs = self.bs as u64;
        let len = self.buf_len;
        let payload_off = self.buf_start * bs;
        let off = self.base + payload_off;
        if let Some(w) = &mut self.written {
            for b in self.buf_start..self.buf_start + (len / self.bs) as u64 {
                w[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        // Verity blocks wholly inside this write are hashed from the buffer;
        // the partial ones at either end are read back later.
        let end = off + len as u64;
        let first_full = off.div_ceil(VBS as u64);
        let last_full = (end / VBS as u64).max(first_full);
        if !off.is_multiple_of(VBS as u64) {
            self.dirty.insert(off / VBS as u64);
        }
        if !end.is_multiple_of(VBS as u64) {
            self.dirty.insert(end / VBS as u64);
        }
        self.buf_len = 0;
        let skip = (first_full * VBS as u64).saturating_sub(off) as usize;
        let count = (last_full - first_full) as usize;
        if self.jobs.is_none() {
            let mut job = Job {
                buf: std::mem::replace(
                    &mut self.buf,
                    Buf {
                        v: Vec::new(),
                        off: 0,
                    },
                ),
                len,
                payload_off,
                file_off: off,
                skip,
                count,
                first: first_full,
            };
            let r = self.shared.process(&mut job);
            self.buf = job.buf;
            return r.map_err(|e| self.err(e));
        }
        if let Some(e) = self.shared.take_error() {
            return Err(self.err(e));
        }
        let next = self.next_buffer();
        let job = Job {
            buf: std::mem::replace(&mut self.buf, next),
            len,
            payload_off,
            file_off: off,
            skip,
            count,
            first: first_full,
        };
        if let Some(tx) = &self.jobs {
            if tx.send(job).is_err() {
                return Err(self.err(io::Error::other("worker threads stopped")));
            }
        }
        Ok(())
    }

    /// Flushes and, when a transform is set, fills the blocks never
    /// written. Returns what [`complete`] does once the workers are done.
    /// Dropping the sink closes the job channel, which ends the workers.
    pub(crate) fn finish(mut self) -> Result<Tail, Ext2Error> {
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
        Ok(Tail {
            dirty: std::mem::take(&mut self.dirty),
            deferred: std::mem::take(&mut self.deferred),
            base: self.base,
            bs: self.bs as u64,
        })
    }
}

/// What is left once the workers are done: deferred blocks to write and
/// verity blocks to hash from the file.
pub(crate) struct Tail {
    dirty: BTreeSet<u64>,
    deferred: Vec<(u64, Vec<u8>)>,
    base: u64,
    bs: u64,
}

/// Writes the deferred blocks (transformed) and hashes every verity block
/// they or partial writes touched by reading it back. Runs after the
/// workers are done, so no worker writes these blocks or leaves.
pub(crate) fn complete(shared: &Shared, path: &Path, tail: Tail) -> Result<(), Ext2Error> {
    let err = |e| Ext2Error::Write {
        path: path.to_path_buf(),
        err: e,
    };
    let Tail {
        mut dirty,
        deferred,
        base,
        bs,
    } = tail;
    for (block, mut data) in deferred {
        let payload_off = block * bs;
        if let Some(t) = shared.transform {
            t(&mut data, payload_off);
        }
        let off = base + payload_off;
        shared.file.write_all_at(&data, off).map_err(err)?;
        let first = off / VBS as u64;
        let last = (off + data.len() as u64 - 1) / VBS as u64;
        dirty.extend(first..=last);
    }
    let mut leaves = shared
        .leaves
        .lock()
        .map_err(|_| err(io::Error::other("a worker thread failed")))?;
    let mut block = vec![0u8; VBS];
    for &v in &dirty {
        shared
            .file
            .read_exact_at(&mut block, v * VBS as u64)
            .map_err(err)?;
        leaves[v as usize] = hash_block(&shared.salt, &block);
    }
    Ok(())
}
