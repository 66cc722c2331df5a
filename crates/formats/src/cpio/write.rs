//! The streaming writer.

use std::io::{ErrorKind, Read, Write};

use super::{
    display_name, pad4, CpioError, Meta, BLOCK_SIZE, HEADER_LEN, MAGIC_NEWC, MAX_NAME_SIZE, S_IFMT,
    TRAILER_NAME,
};

/// Size of the writer's buffer. File data is read straight into it (no
/// second copy); 128 KiB keeps the syscall count low while the buffer stays
/// in the CPU cache between the read and the write (1 MiB was measurably slower).
const BUF_SIZE: usize = 1 << 17;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Writes a newc (`070701`) archive: upper-case hex, check field 0, the
/// trailer and zero padding to a multiple of 512 bytes on [`finish`](Self::finish).
///
/// The writer stores what it is given, in the order given: the caller picks
/// names, order and metadata (`myst mkcpio` sorts names and numbers inodes so
/// that the same tree always gives the same bytes). After an error the
/// archive is incomplete and should be discarded.
pub struct Writer<W: Write> {
    out: W,
    buf: Vec<u8>,
    fill: usize,
    pos: u64,
}

impl<W: Write> Writer<W> {
    /// A writer that sends the archive to `out` in large writes.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            buf: vec![0u8; BUF_SIZE],
            fill: 0,
            pos: 0,
        }
    }

    /// Bytes of archive produced so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Appends an entry whose data (file contents or symlink target) is `data`.
    pub fn append_data(&mut self, name: &[u8], meta: &Meta, data: &[u8]) -> Result<(), CpioError> {
        self.header(name, meta, data.len() as u64)?;
        self.put(data)?;
        self.pad()
    }

    /// Appends an entry with `size` bytes of data read from `data`. A source
    /// that ends before `size` bytes is an error (a file that shrank while it
    /// was archived); bytes beyond `size` are not read.
    pub fn append_reader<R: Read>(
        &mut self,
        name: &[u8],
        meta: &Meta,
        size: u64,
        mut data: R,
    ) -> Result<(), CpioError> {
        self.header(name, meta, size)?;
        let mut left = size;
        while left > 0 {
            if self.fill == BUF_SIZE {
                self.flush_buf()?;
            }
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(BUF_SIZE - self.fill);
            let n = match data.read(&mut self.buf[self.fill..self.fill + want]) {
                Ok(0) => {
                    return Err(CpioError::ReadData {
                        name: display_name(name),
                        source: std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            format!(
                                "it ended after {} of {size} bytes (did it change while being archived?)",
                                size - left
                            ),
                        ),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CpioError::ReadData {
                        name: display_name(name),
                        source,
                    })
                }
            };
            // n <= want <= left and fill + n <= BUF_SIZE.
            self.fill += n;
            left -= n as u64;
            self.pos += n as u64;
        }
        self.pad()
    }

    /// Appends an entry whose `size` bytes of data `copy` writes straight to
    /// the output, after the writer's buffer has been flushed (for example
    /// with `std::io::copy` from a `File`, which lets Linux copy in the
    /// kernel). `copy` returns the bytes it wrote, which must be `size`.
    pub fn append_with<F>(
        &mut self,
        name: &[u8],
        meta: &Meta,
        size: u64,
        copy: F,
    ) -> Result<(), CpioError>
    where
        F: FnOnce(&mut W) -> std::io::Result<u64>,
    {
        self.header(name, meta, size)?;
        self.flush_buf()?;
        let err = |source| CpioError::CopyData {
            name: display_name(name),
            source,
        };
        let n = copy(&mut self.out).map_err(err)?;
        if n != size {
            return Err(err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("copied {n} of {size} bytes (did it change while being archived?)"),
            )));
        }
        self.pos += size;
        self.pad()
    }

    /// Writes the trailer and the padding, flushes, and returns the output.
    pub fn finish(mut self) -> Result<W, CpioError> {
        let trailer = Meta {
            nlink: 1,
            ..Meta::default()
        };
        self.raw_header(TRAILER_NAME, &trailer, 0)?;
        let tail = (BLOCK_SIZE - self.pos % BLOCK_SIZE) % BLOCK_SIZE;
        self.put(&[0u8; BLOCK_SIZE as usize][..tail as usize])?;
        self.flush_buf()?;
        self.out.flush().map_err(CpioError::Write)?;
        Ok(self.out)
    }

    fn header(&mut self, name: &[u8], meta: &Meta, size: u64) -> Result<(), CpioError> {
        let bad = |why: String| CpioError::Unwritable {
            name: display_name(name),
            why,
        };
        if name.is_empty() {
            return Err(bad("empty name".into()));
        }
        if name.contains(&0) {
            return Err(bad("the name contains a NUL byte".into()));
        }
        if name == TRAILER_NAME {
            return Err(bad("the name is reserved for the archive's trailer".into()));
        }
        if name.len() >= MAX_NAME_SIZE as usize {
            return Err(bad(format!(
                "the name is {} bytes, at most {} fit",
                name.len(),
                MAX_NAME_SIZE - 1
            )));
        }
        let Some(ft) = meta.file_type() else {
            return Err(bad(format!("unknown file type in mode {:o}", meta.mode)));
        };
        if meta.mode & !(S_IFMT | 0o7777) != 0 {
            return Err(bad(format!("mode {:o} has stray bits", meta.mode)));
        }
        if size != 0 && !ft.has_data() {
            return Err(bad(format!("a {ft:?} cannot have data")));
        }
        let Ok(size) = u32::try_from(size) else {
            return Err(bad(format!(
                "it is {size} bytes; newc holds at most 4 GiB - 1 per file"
            )));
        };
        self.raw_header(name, meta, size)
    }

    fn raw_header(&mut self, name: &[u8], m: &Meta, size: u32) -> Result<(), CpioError> {
        let mut h = [0u8; HEADER_LEN];
        h[..6].copy_from_slice(MAGIC_NEWC);
        // name.len() < MAX_NAME_SIZE, checked by the caller (or a constant).
        let namesize = name.len() as u32 + 1;
        let fields = [
            m.ino,
            m.mode,
            m.uid,
            m.gid,
            m.nlink,
            m.mtime,
            size,
            m.dev_major,
            m.dev_minor,
            m.rdev_major,
            m.rdev_minor,
            namesize,
            0,
        ];
        for (chunk, v) in h[6..].chunks_exact_mut(8).zip(fields) {
            for (i, c) in chunk.iter_mut().enumerate() {
                *c = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
            }
        }
        self.put(&h)?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad()
    }

    fn pad(&mut self) -> Result<(), CpioError> {
        let n = pad4(self.pos) as usize;
        self.put(&[0u8; 3][..n])
    }

    fn put(&mut self, b: &[u8]) -> Result<(), CpioError> {
        if b.len() > BUF_SIZE - self.fill {
            self.flush_buf()?;
        }
        if b.len() >= BUF_SIZE {
            self.out.write_all(b).map_err(CpioError::Write)?;
        } else {
            self.buf[self.fill..self.fill + b.len()].copy_from_slice(b);
            self.fill += b.len();
        }
        self.pos += b.len() as u64;
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), CpioError> {
        if self.fill > 0 {
            self.out
                .write_all(&self.buf[..self.fill])
                .map_err(CpioError::Write)?;
            self.fill = 0;
        }
        Ok(())
    }
}
