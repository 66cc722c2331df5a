//! SVR4 "newc" CPIO archives (docs/FORMATS.md §1): a streaming [`Writer`] and two
//! readers that validate every header before handing out an entry.
//!
//! - [`entries`] walks a byte slice and lends out names and file data without
//!   copying them (the runtime's ramfs keeps the whole archive in memory).
//! - [`StreamReader`] reads from any [`std::io::Read`] (`myst excpio`, which
//!   should not have to load a large archive into memory).
//!
//! Both accept `070701` and `070702` (the CRC variant, whose checksum they
//! verify on regular files, like GNU cpio and Linux), upper- or lower-case hex, and the layouts of GNU cpio, bsdtar,
//! Mystikos and the Linux kernel. Every number read from an archive is
//! untrusted: arithmetic on it is checked, and sizes that run past the end of
//! the archive are errors, never panics or huge allocations.
//!
//! Written here rather than taken from a crate: the format is small, and the
//! crates that read it copy file data or trust the sizes they read, while the
//! ramfs needs borrowed, validated entries.

mod read;
mod stream;
mod write;

#[cfg(test)]
mod tests;

pub use read::{entries, Entries, Entry};
pub use stream::{StreamEntry, StreamReader};
pub use write::Writer;

/// Magic of a plain newc header.
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// Magic of a newc header whose check field is a checksum of the data.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// Bytes of a header: 6 of magic and 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
pub const TRAILER_NAME: &[u8] = b"TRAILER!!!";
/// The archive is zero-padded to a multiple of this.
pub const BLOCK_SIZE: u64 = 512;
/// Largest name size (with its NUL) the readers and the writer accept: Linux's
/// PATH_MAX. Anything larger in a header is treated as corruption.
pub const MAX_NAME_SIZE: u32 = 4096;
/// Longest name (without NUL) Mystikos's ramfs can hold: its path buffer is
/// 256 bytes. `myst mkcpio` refuses longer names so images stay portable.
pub const MYSTIKOS_MAX_NAME: usize = 255;

pub use crate::mode::{FileType, S_IFMT};

/// The metadata of an entry: every header field except the sizes and the check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Inode number (only meaningful to pair up hard links).
    pub ino: u32,
    /// File type and permission bits, as in `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count. GNU cpio and bsdtar put the data of a hard-linked file only
    /// on its last link; earlier links have nlink > 1 and no data.
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Major number of the device holding the file.
    pub dev_major: u32,
    /// Minor number of the device holding the file.
    pub dev_minor: u32,
    /// Major number of a device node.
    pub rdev_major: u32,
    /// Minor number of a device node.
    pub rdev_minor: u32,
}

impl Meta {
    /// The file type, if the mode names a known one.
    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(self.mode)
    }

    /// The permission bits (including setuid, setgid and sticky).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// Which of the two newc variants a header uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `070701`: the check field is unused.
    Newc,
    /// `070702`: the check field of a regular file is the sum of its data
    /// bytes (mod 2^32); writers leave it 0 on other types.
    Crc,
}

/// What is wrong with an archive, a name, or an entry to write.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// The bytes at a header position are not a newc magic.
    #[error("offset {offset}: not a newc CPIO header (magic {found:?}, expected \"070701\" or \"070702\")")]
    BadMagic {
        /// Offset of the header.
        offset: u64,
        /// The six bytes found, escaped.
        found: String,
    },
    /// A header field is not 8 hex digits.
    #[error("offset {offset}: header field {field} is not 8 hex digits")]
    BadField {
        /// Offset of the header.
        offset: u64,
        /// Name of the field.
        field: &'static str,
    },
    /// The archive ends inside an entry.
    #[error("offset {offset}: archive is truncated: {what}")]
    Truncated {
        /// Offset of the entry's header.
        offset: u64,
        /// What was cut off.
        what: String,
    },
    /// The archive ends without a `TRAILER!!!` entry.
    #[error("offset {offset}: archive ends without a TRAILER!!! entry (truncated?)")]
    NoTrailer {
        /// Where the next header should have been.
        offset: u64,
    },
    /// A name size of 0 (no NUL) or beyond [`MAX_NAME_SIZE`].
    #[error("offset {offset}: name size {size} is invalid: {why}")]
    BadNameSize {
        /// Offset of the header.
        offset: u64,
        /// The size in the header.
        size: u32,
        /// Why it is refused.
        why: &'static str,
    },
    /// A name that is empty, not NUL-terminated or contains a NUL.
    #[error("offset {offset}: name {name:?} {why}")]
    BadName {
        /// Offset of the header.
        offset: u64,
        /// The name, escaped.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A well-formed header that describes an impossible entry (unknown file
    /// type, data on a directory, wrong checksum).
    #[error("offset {offset}: entry {name:?}: {why}")]
    BadEntry {
        /// Offset of the header.
        offset: u64,
        /// The name, escaped.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A name that would leave the extraction directory.
    #[error("unsafe name {name:?}: {why}")]
    UnsafeName {
        /// The name, escaped.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The writer was asked for an entry newc cannot hold.
    #[error("cannot archive {name:?}: {why}")]
    Unwritable {
        /// The name, escaped.
        name: String,
        /// Why.
        why: String,
    },
    /// Reading the data of an entry being written failed (or it ended early).
    #[error("reading the data of {name:?}: {source}")]
    ReadData {
        /// The name, escaped.
        name: String,
        /// The error.
        source: std::io::Error,
    },
    /// Copying an entry's data straight into the archive failed.
    #[error("copying the data of {name:?} into the archive: {source}")]
    CopyData {
        /// The name, escaped.
        name: String,
        /// The error.
        source: std::io::Error,
    },
    /// Writing the archive failed.
    #[error("writing the archive: {0}")]
    Write(#[source] std::io::Error),
    /// Reading the archive failed.
    #[error("offset {offset}: reading the archive: {source}")]
    Read {
        /// Where.
        offset: u64,
        /// The error.
        source: std::io::Error,
    },
    /// The reader was used after it had already failed.
    #[error("the archive reader already failed")]
    Failed,
}

/// A name for messages: as is when it is printable UTF-8, escaped otherwise.
pub fn display_name(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => name.escape_ascii().to_string(),
    }
}

/// The components of a member name below the extraction root, refusing the
/// names that would escape it.
///
/// Empty and `.` components are dropped (so `./a//b` is `["a", "b"]` and `.`
/// is the root itself, `[]`). An absolute name or a `..` component is an
/// error. The caller must still refuse to walk through symbolic links.
pub fn safe_components(name: &[u8]) -> Result<Vec<&[u8]>, CpioError> {
    if name.first() == Some(&b'/') {
        return Err(CpioError::UnsafeName {
            name: display_name(name),
            why: "absolute names are not allowed",
        });
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(CpioError::UnsafeName {
                    name: display_name(name),
                    why: "`..` components are not allowed",
                })
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// A header's fields, checked for form but not yet against its name and data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawHeader {
    pub format: Format,
    pub meta: Meta,
    pub filesize: u32,
    pub namesize: u32,
    pub check: u32,
}

const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

fn hex8(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        // Eight digits never overflow a u32.
        v = (v << 4) | u32::from(d);
    }
    Some(v)
}

/// Parses the fixed 110 bytes of a header at `offset`.
pub(crate) fn parse_header(b: &[u8; HEADER_LEN], offset: u64) -> Result<RawHeader, CpioError> {
    let format = match &b[..6] {
        m if m == MAGIC_NEWC => Format::Newc,
        m if m == MAGIC_CRC => Format::Crc,
        m => {
            return Err(CpioError::BadMagic {
                offset,
                found: m.escape_ascii().to_string(),
            })
        }
    };
    let mut f = [0u32; 13];
    for (i, (slot, chunk)) in f.iter_mut().zip(b[6..].chunks_exact(8)).enumerate() {
        *slot = hex8(chunk).ok_or(CpioError::BadField {
            offset,
            field: FIELDS[i],
        })?;
    }
    let [ino, mode, uid, gid, nlink, mtime, filesize, dev_major, dev_minor, rdev_major, rdev_minor, namesize, check] =
        f;
    if namesize == 0 {
        return Err(CpioError::BadNameSize {
            offset,
            size: namesize,
            why: "a name needs at least its NUL",
        });
    }
    if namesize > MAX_NAME_SIZE {
        return Err(CpioError::BadNameSize {
            offset,
            size: namesize,
            why: "longer than PATH_MAX (4096)",
        });
    }
    Ok(RawHeader {
        format,
        meta: Meta {
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            dev_major,
            dev_minor,
            rdev_major,
            rdev_minor,
        },
        filesize,
        namesize,
        check,
    })
}

/// Checks the `namesize` bytes that follow a header and returns the name
/// without its NUL.
pub(crate) fn parse_name(raw: &[u8], offset: u64) -> Result<&[u8], CpioError> {
    let bad = |why| CpioError::BadName {
        offset,
        name: raw.escape_ascii().to_string(),
        why,
    };
    let Some((&0, name)) = raw.split_last() else {
        return Err(bad("is not NUL-terminated"));
    };
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.contains(&0) {
        return Err(bad("contains a NUL byte"));
    }
    Ok(name)
}

/// Checks what the header says about a (non-trailer) entry: a known file
/// type, no stray mode bits, and data only on files and symlinks.
pub(crate) fn check_entry(h: &RawHeader, name: &[u8], offset: u64) -> Result<FileType, CpioError> {
    let bad = |why: String| CpioError::BadEntry {
        offset,
        name: display_name(name),
        why,
    };
    let mode = h.meta.mode;
    let Some(ft) = FileType::from_mode(mode) else {
        return Err(bad(format!("unknown file type in mode {mode:o}")));
    };
    if mode & !(S_IFMT | 0o7777) != 0 {
        return Err(bad(format!(
            "mode {mode:o} has bits beyond the file type and permissions"
        )));
    }
    if h.filesize != 0 && !ft.has_data() {
        return Err(bad(format!(
            "a {ft:?} entry with {} bytes of data",
            h.filesize
        )));
    }
    Ok(ft)
}

/// Sum of the bytes, as the `070702` check field holds it.
pub(crate) fn checksum(data: &[u8], mut sum: u32) -> u32 {
    for &b in data {
        sum = sum.wrapping_add(u32::from(b));
    }
    sum
}

/// Zero bytes needed after absolute offset `end` to reach a 4-byte boundary.
pub(crate) fn pad4(end: u64) -> u64 {
    (4 - end % 4) % 4
}
