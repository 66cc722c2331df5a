//! The zero-copy reader: validated entries borrowed from a byte slice.

use super::{
    check_entry, checksum, display_name, pad4, parse_header, parse_name, CpioError, FileType,
    Format, Meta, HEADER_LEN, MAGIC_CRC, MAGIC_NEWC, TRAILER_NAME,
};

/// One validated entry; its name and data borrow from the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as stored (no NUL; may be `.`, start with `./`, or not be
    /// UTF-8). Use [`super::safe_components`] before trusting it as a path.
    pub name: &'a [u8],
    /// The file type (always one of the known ones).
    pub file_type: FileType,
    /// Mode, owner, times and the other header fields.
    pub meta: Meta,
    /// File contents or symlink target; empty for other types, and for the
    /// earlier links of a GNU-style hard-link group (see [`Meta::nlink`]).
    pub data: &'a [u8],
    /// Offset of the entry's header in the archive.
    pub offset: u64,
    /// Which newc variant the header used.
    pub format: Format,
}

/// Iterator over the entries of an archive in a byte slice; see [`entries`].
///
/// Yields `Ok(entry)` for each entry before the trailer, then ends. On the
/// first malformed entry it yields one `Err` and then ends: a missing
/// trailer is an error, so a truncated archive never looks complete.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

/// Iterates over the entries of the newc archive `archive` without copying.
///
/// ```
/// # use myst_formats::cpio::{entries, Meta, Writer};
/// let mut w = Writer::new(Vec::new());
/// w.append_data(b"hello", &Meta { mode: 0o100644, nlink: 1, ..Meta::default() }, b"hi\n")?;
/// let archive = w.finish()?;
/// let all: Vec<_> = entries(&archive).collect::<Result<_, _>>()?;
/// assert_eq!((all[0].name, all[0].data), (&b"hello"[..], &b"hi\n"[..]));
/// # Ok::<(), myst_formats::cpio::CpioError>(())
/// ```
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries {
        data: archive,
        pos: 0,
        done: false,
    }
}

impl<'a> Entries<'a> {
    /// Offset of the next header (after the end: just past the trailer's name).
    pub fn position(&self) -> usize {
        self.pos
    }

    fn truncated(&self, offset: usize, what: String) -> CpioError {
        CpioError::Truncated {
            offset: offset as u64,
            what,
        }
    }

    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, CpioError> {
        let start = self.pos;
        let off = start as u64;
        let len = self.data.len();
        let rest = self.data.get(start..).unwrap_or(&[]);
        if rest.is_empty() {
            return Err(CpioError::NoTrailer { offset: off });
        }
        let Some(hdr) = rest.first_chunk::<HEADER_LEN>() else {
            // Garbage is reported as such rather than as a short header.
            let m = &rest[..rest.len().min(6)];
            if !MAGIC_NEWC.starts_with(m) && !MAGIC_CRC.starts_with(m) {
                return Err(CpioError::BadMagic {
                    offset: off,
                    found: m.escape_ascii().to_string(),
                });
            }
            return Err(self.truncated(
                start,
                format!("a header needs {HEADER_LEN} bytes, {} left", rest.len()),
            ));
        };
        let h = parse_header(hdr, off)?;
        let overflow = || CpioError::Truncated {
            offset: off,
            what: "sizes overflow the address space".into(),
        };
        let name_start = start.checked_add(HEADER_LEN).ok_or_else(overflow)?;
        let name_end = name_start
            .checked_add(usize::try_from(h.namesize).map_err(|_| overflow())?)
            .ok_or_else(overflow)?;
        let Some(raw_name) = self.data.get(name_start..name_end) else {
            return Err(self.truncated(
                start,
                format!(
                    "the name needs {} bytes, {} left",
                    h.namesize,
                    len.saturating_sub(name_start)
                ),
            ));
        };
        let name = parse_name(raw_name, off)?;
        let data_start = name_end
            .checked_add(pad4(name_end as u64) as usize)
            .ok_or_else(overflow)?;
        if name == TRAILER_NAME {
            self.pos = data_start.min(len);
            return Ok(None);
        }
        let file_type = check_entry(&h, name, off)?;
        let size = usize::try_from(h.filesize).map_err(|_| overflow())?;
        let data_end = data_start.checked_add(size).ok_or_else(overflow)?;
        let Some(data) = self.data.get(data_start..data_end) else {
            return Err(self.truncated(
                start,
                format!(
                    "{:?} has {} bytes of data, {} left",
                    display_name(name),
                    h.filesize,
                    len.saturating_sub(data_start)
                ),
            ));
        };
        // GNU cpio and the kernel checksum regular files only (a symlink has check 0).
        if h.format == Format::Crc && file_type == FileType::Regular {
            let sum = checksum(data, 0);
            if sum != h.check {
                return Err(CpioError::BadEntry {
                    offset: off,
                    name: display_name(name),
                    why: format!("checksum mismatch: header {:08X}, data {sum:08X}", h.check),
                });
            }
        }
        self.pos = data_end
            .checked_add(pad4(data_end as u64) as usize)
            .ok_or_else(overflow)?;
        Ok(Some(Entry {
            name,
            file_type,
            meta: h.meta,
            data,
            offset: off,
            format: h.format,
        }))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for Entries<'_> {}
