//! The streaming reader: validated headers from any `Read`, data on demand.

use std::io::{ErrorKind, Read, Seek, SeekFrom};

use super::{
    check_entry, checksum, display_name, pad4, parse_header, parse_name, CpioError, FileType,
    Format, Meta, HEADER_LEN, MAGIC_CRC, MAGIC_NEWC, TRAILER_NAME,
};

/// The header of one validated entry read by [`StreamReader`]; its data
/// follows through [`StreamReader::read_data`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The name as stored, without NUL. Check it with
    /// [`super::safe_components`] before using it as a path.
    pub name: Vec<u8>,
    /// The file type (always one of the known ones).
    pub file_type: FileType,
    /// Mode, owner, times and the other header fields.
    pub meta: Meta,
    /// Bytes of data (contents or symlink target).
    pub size: u32,
    /// Offset of the entry's header in the archive.
    pub offset: u64,
    /// Which newc variant the header used.
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ready,
    Done,
    Failed,
}

/// Reads a newc archive from a byte stream, one validated header at a time.
///
/// Call [`next_entry`](Self::next_entry) until it returns `Ok(None)` (the
/// trailer); between calls, [`read_data`](Self::read_data) reads the current
/// entry's data (unread data is skipped, and for `070702` entries checked,
/// by the next call). After an error every call fails.
pub struct StreamReader<R> {
    inner: R,
    pos: u64,
    len: Option<u64>,
    remaining: u64,
    pad: u64,
    /// (expected, running sum) while a `070702` entry's data is being read.
    crc: Option<(u32, u32)>,
    cur_offset: u64,
    cur_name: Vec<u8>,
    state: State,
}

impl<R: Read> StreamReader<R> {
    /// A reader over a stream of unknown length.
    pub fn new(inner: R) -> Self {
        StreamReader {
            inner,
            pos: 0,
            len: None,
            remaining: 0,
            pad: 0,
            crc: None,
            cur_offset: 0,
            cur_name: Vec::new(),
            state: State::Ready,
        }
    }

    /// A reader over an archive of exactly `len` bytes (a file): an entry whose
    /// name or data would run past the end is refused at its header, before
    /// any of its data is handed out.
    pub fn with_len(inner: R, len: u64) -> Self {
        let mut r = Self::new(inner);
        r.len = Some(len);
        r
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry, or `None` after the trailer.
    pub fn next_entry(&mut self) -> Result<Option<StreamEntry>, CpioError> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => return Err(CpioError::Failed),
            State::Ready => {}
        }
        let r = self.next_inner();
        match r {
            Ok(None) => self.state = State::Done,
            Err(_) => self.state = State::Failed,
            Ok(Some(_)) => {}
        }
        r
    }

    /// Reads data of the current entry into `buf`; 0 at its end. For a
    /// `070702` entry the checksum is verified when the last byte is read.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, CpioError> {
        if self.state != State::Ready {
            return Err(CpioError::Failed);
        }
        let r = self.read_data_inner(buf);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// Reads all of the current entry's data into a vector (for symlink
    /// targets and other small data; the size was checked at the header).
    pub fn read_data_to_vec(&mut self) -> Result<Vec<u8>, CpioError> {
        let mut v = vec![0u8; usize::try_from(self.remaining).unwrap_or(0)];
        let mut filled = 0;
        while filled < v.len() {
            let n = self.read_data(&mut v[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        v.truncate(filled);
        // Verifies the checksum of an empty entry too.
        self.read_data(&mut [])?;
        Ok(v)
    }

    fn truncated(&self, offset: u64, what: String) -> CpioError {
        CpioError::Truncated { offset, what }
    }

    fn read_data_inner(&mut self, buf: &mut [u8]) -> Result<usize, CpioError> {
        if self.remaining == 0 {
            self.finish_crc()?;
            return Ok(0);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CpioError::Read {
                        offset: self.pos,
                        source,
                    })
                }
            }
        };
        if n == 0 {
            return Err(self.truncated(
                self.cur_offset,
                format!(
                    "the data of {:?} ends {} bytes early",
                    display_name(&self.cur_name),
                    self.remaining
                ),
            ));
        }
        // n <= want <= remaining, so neither step can overflow or underflow.
        self.pos += n as u64;
        self.remaining -= n as u64;
        if let Some((want_sum, sum)) = self.crc {
            self.crc = Some((want_sum, checksum(&buf[..n], sum)));
        }
        if self.remaining == 0 {
            self.finish_crc()?;
        }
        Ok(n)
    }

    fn finish_crc(&mut self) -> Result<(), CpioError> {
        if let Some((want, sum)) = self.crc.take() {
            if want != sum {
                return Err(CpioError::BadEntry {
                    offset: self.cur_offset,
                    name: display_name(&self.cur_name),
                    why: format!("checksum mismatch: header {want:08X}, data {sum:08X}"),
                });
            }
        }
        Ok(())
    }

    /// Reads until `buf` is full or the stream ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, CpioError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CpioError::Read {
                        offset: self.pos,
                        source,
                    })
                }
            }
        }
        Ok(filled)
    }

    fn skip_pad(&mut self) -> Result<(), CpioError> {
        let mut pad = [0u8; 3];
        let n = usize::try_from(self.pad).unwrap_or(3).min(3);
        self.pad = 0;
        if self.fill(&mut pad[..n])? < n {
            return Err(self.truncated(self.cur_offset, "in the padding after the data".into()));
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), CpioError> {
        let mut scratch = [0u8; 8192];
        while self.read_data_inner(&mut scratch)? != 0 {}
        self.skip_pad()
    }

    fn left(&self, at: u64) -> u64 {
        self.len.map_or(0, |l| l.saturating_sub(at))
    }

    fn next_inner(&mut self) -> Result<Option<StreamEntry>, CpioError> {
        self.drain()?;
        let off = self.pos;
        self.cur_offset = off;
        self.cur_name.clear();
        let mut hdr = [0u8; HEADER_LEN];
        let got = self.fill(&mut hdr)?;
        if got == 0 {
            return Err(CpioError::NoTrailer { offset: off });
        }
        if got < HEADER_LEN {
            // Garbage is reported as such rather than as a short header.
            let m = &hdr[..got.min(6)];
            if !MAGIC_NEWC.starts_with(m) && !MAGIC_CRC.starts_with(m) {
                return Err(CpioError::BadMagic {
                    offset: off,
                    found: m.escape_ascii().to_string(),
                });
            }
            return Err(self.truncated(
                off,
                format!("a header needs {HEADER_LEN} bytes, {got} left"),
            ));
        }
        let h = parse_header(&hdr, off)?;
        let namesize = u64::from(h.namesize);
        let name_end = self.pos.checked_add(namesize).ok_or(CpioError::Truncated {
            offset: off,
            what: "offsets overflow".into(),
        })?;
        if self.len.is_some_and(|l| name_end > l) {
            return Err(self.truncated(
                off,
                format!(
                    "the name needs {namesize} bytes, {} left",
                    self.left(self.pos)
                ),
            ));
        }
        // namesize <= MAX_NAME_SIZE, checked by parse_header.
        let mut raw = vec![0u8; h.namesize as usize];
        let got = self.fill(&mut raw)?;
        if got < raw.len() {
            return Err(self.truncated(off, format!("the name needs {namesize} bytes, {got} left")));
        }
        let name = parse_name(&raw, off)?.to_vec();
        self.pad = pad4(self.pos);
        if name == TRAILER_NAME {
            // What follows the trailer (block padding) is not read.
            self.pad = 0;
            return Ok(None);
        }
        self.cur_name = name.clone();
        self.skip_pad()?;
        let file_type = check_entry(&h, &name, off)?;
        let size = u64::from(h.filesize);
        let data_end = self.pos.checked_add(size).ok_or(CpioError::Truncated {
            offset: off,
            what: "offsets overflow".into(),
        })?;
        if self.len.is_some_and(|l| data_end > l) {
            return Err(self.truncated(
                off,
                format!(
                    "{:?} has {size} bytes of data, {} left",
                    display_name(&name),
                    self.left(self.pos)
                ),
            ));
        }
        self.remaining = size;
        self.pad = pad4(data_end);
        // GNU cpio and the kernel checksum regular files only (a symlink has check 0).
        self.crc =
            (h.format == Format::Crc && file_type == FileType::Regular).then_some((h.check, 0));
        Ok(Some(StreamEntry {
            name,
            file_type,
            meta: h.meta,
            size: h.filesize,
            offset: off,
            format: h.format,
        }))
    }
}

impl<R: Read + Seek> StreamReader<R> {
    /// Skips the rest of the current entry's data by seeking (a `070702`
    /// entry's data is read instead, to verify its checksum). Truncation is
    /// only detected through the length given to [`with_len`](Self::with_len).
    pub fn skip_data(&mut self) -> Result<(), CpioError> {
        if self.state != State::Ready {
            return Err(CpioError::Failed);
        }
        if self.crc.is_some() || self.remaining == 0 {
            return Ok(());
        }
        let skip = self.remaining.saturating_add(self.pad);
        let r = i64::try_from(skip)
            .map_err(|_| CpioError::Truncated {
                offset: self.cur_offset,
                what: "offsets overflow".into(),
            })
            .and_then(|d| {
                self.inner
                    .seek(SeekFrom::Current(d))
                    .map_err(|source| CpioError::Read {
                        offset: self.pos,
                        source,
                    })
            });
        if let Err(e) = r {
            self.state = State::Failed;
            return Err(e);
        }
        self.pos = self.pos.saturating_add(skip);
        self.remaining = 0;
        self.pad = 0;
        Ok(())
    }
}
