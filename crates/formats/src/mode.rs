//! File types and mode bits, as Linux's `<sys/stat.h>` defines them: the
//! one definition used by the CPIO and ext2 formats, the file systems and the
//! kernel.

/// The file-type bits of a mode.
pub const S_IFMT: u32 = 0o170_000;
/// Socket.
pub const S_IFSOCK: u32 = 0o140_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Block device.
pub const S_IFBLK: u32 = 0o060_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;
/// Named pipe.
pub const S_IFIFO: u32 = 0o010_000;
/// Permission bits with set-user-ID, set-group-ID and sticky.
pub const S_IPERM: u32 = 0o7777;

/// The type of a file, from the `S_IFMT` bits of its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl FileType {
    /// Every type, for tables and tests.
    pub const ALL: [FileType; 7] = [
        FileType::Regular,
        FileType::Directory,
        FileType::Symlink,
        FileType::CharDev,
        FileType::BlockDev,
        FileType::Fifo,
        FileType::Socket,
    ];

    /// The `S_IFMT` bits of this type.
    pub const fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => S_IFREG,
            FileType::Directory => S_IFDIR,
            FileType::Symlink => S_IFLNK,
            FileType::CharDev => S_IFCHR,
            FileType::BlockDev => S_IFBLK,
            FileType::Fifo => S_IFIFO,
            FileType::Socket => S_IFSOCK,
        }
    }

    /// The type named by the `S_IFMT` bits of `mode`, if it is a valid one.
    pub const fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & S_IFMT {
            S_IFREG => FileType::Regular,
            S_IFDIR => FileType::Directory,
            S_IFLNK => FileType::Symlink,
            S_IFCHR => FileType::CharDev,
            S_IFBLK => FileType::BlockDev,
            S_IFIFO => FileType::Fifo,
            S_IFSOCK => FileType::Socket,
            _ => return None,
        })
    }

    /// The `d_type` getdents64 reports (`DT_*` of `<dirent.h>`).
    pub const fn dirent_type(self) -> u8 {
        match self {
            FileType::Fifo => 1,
            FileType::CharDev => 2,
            FileType::Directory => 4,
            FileType::BlockDev => 6,
            FileType::Regular => 8,
            FileType::Symlink => 10,
            FileType::Socket => 12,
        }
    }

    /// True for the types whose CPIO entries carry data (contents, link target).
    pub const fn has_data(self) -> bool {
        matches!(self, FileType::Regular | FileType::Symlink)
    }
}

/// The type bits of `mode` (`mode & S_IFMT`).
pub const fn type_bits(mode: u32) -> u32 {
    mode & S_IFMT
}

/// `mode` with its permission bits replaced by those of `perm`.
pub const fn with_perm(mode: u32, perm: u32) -> u32 {
    (mode & S_IFMT) | (perm & S_IPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        for t in FileType::ALL {
            assert_eq!(FileType::from_mode(t.mode_bits() | 0o644), Some(t));
            assert_eq!(type_bits(t.mode_bits() | 0o7777), t.mode_bits());
        }
        assert_eq!(FileType::from_mode(0o644), None);
        assert_eq!(FileType::from_mode(0o170_000), None);
        assert_eq!(with_perm(0o100_644, 0o4755), 0o104_755);
    }

    #[test]
    fn dirent_types_are_linux_dt_values() {
        // DT_FIFO 1, DT_CHR 2, DT_DIR 4, DT_BLK 6, DT_REG 8, DT_LNK 10, DT_SOCK 12:
        // DT_* is the S_IFMT value shifted right by 12.
        for t in FileType::ALL {
            assert_eq!(u32::from(t.dirent_type()), t.mode_bits() >> 12);
        }
    }
}
