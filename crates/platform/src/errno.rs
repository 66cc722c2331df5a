//! The one error currency of the runtime: a Linux errno with an optional
//! static explanation. It lives at the bottom of the stack so that host
//! calls (here), block devices, file systems and syscall handlers all speak
//! it; other error types convert into it with `From`, and nothing else
//! carries a bare errno number. See docs/DESIGN.md, "Errors".

use std::fmt;

/// A Linux errno value (positive), the error currency of file systems and
/// the kernel. `msg` is an optional static explanation for logs.
#[derive(Clone, Copy)]
pub struct Errno {
    /// The errno number, e.g. 2 for ENOENT.
    pub code: i32,
    /// Why, for logs; never shown to the guest.
    pub msg: &'static str,
}

macro_rules! errnos {
    ($($name:ident = $v:expr),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: Errno = Errno { code: $v, msg: "" };
            )*
            /// The symbolic name, e.g. "ENOENT".
            pub fn name(&self) -> &'static str {
                match self.code { $($v => stringify!($name),)* _ => "E?" }
            }
        }
    };
}

// The numbers of asm-generic/errno-base.h and errno.h (x86-64).
errnos! {
    EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7,
    ENOEXEC = 8, EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12, EACCES = 13,
    EFAULT = 14, ENOTBLK = 15, EBUSY = 16, EEXIST = 17, EXDEV = 18, ENODEV = 19,
    ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ENFILE = 23, EMFILE = 24, ENOTTY = 25,
    ETXTBSY = 26, EFBIG = 27, ENOSPC = 28, ESPIPE = 29, EROFS = 30, EMLINK = 31,
    EPIPE = 32, EDOM = 33, ERANGE = 34, EDEADLK = 35, ENAMETOOLONG = 36,
    ENOLCK = 37, ENOSYS = 38, ENOTEMPTY = 39, ELOOP = 40, ENOMSG = 42, EIDRM = 43,
    ENOSTR = 60, ENODATA = 61, ETIME = 62, ENOSR = 63, EREMOTE = 66, ENOLINK = 67,
    EPROTO = 71, EBADMSG = 74, EOVERFLOW = 75, EILSEQ = 84, EUSERS = 87,
    ENOTSOCK = 88, EDESTADDRREQ = 89, EMSGSIZE = 90, EPROTOTYPE = 91,
    ENOPROTOOPT = 92, EPROTONOSUPPORT = 93, ESOCKTNOSUPPORT = 94, EOPNOTSUPP = 95,
    EPFNOSUPPORT = 96, EAFNOSUPPORT = 97, EADDRINUSE = 98, EADDRNOTAVAIL = 99,
    ENETDOWN = 100, ENETUNREACH = 101, ENETRESET = 102, ECONNABORTED = 103,
    ECONNRESET = 104, ENOBUFS = 105, EISCONN = 106, ENOTCONN = 107,
    ESHUTDOWN = 108, ETOOMANYREFS = 109, ETIMEDOUT = 110, ECONNREFUSED = 111,
    EHOSTDOWN = 112, EHOSTUNREACH = 113, EALREADY = 114, EINPROGRESS = 115,
    ESTALE = 116, EDQUOT = 122, ECANCELED = 125, ENOKEY = 126,
    EKEYEXPIRED = 127, EKEYREVOKED = 128, EKEYREJECTED = 129, EOWNERDEAD = 130,
    ENOTRECOVERABLE = 131,
}

impl Errno {
    /// The kernel-internal "restart the call" (512): a blocking host call
    /// that a guest signal stopped before it started, or that the host
    /// would restart (see crate::sud). Never returned to the guest: the
    /// dispatcher restarts the guest's syscall after its handlers ran.
    pub const ERESTARTSYS: Errno = Errno {
        code: 512,
        msg: "restart after the signal handler",
    };

    /// The same errno with an explanation attached.
    pub const fn with(self, msg: &'static str) -> Errno {
        Errno {
            code: self.code,
            msg,
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.msg.is_empty() {
            write!(f, "{}", self.name())
        } else {
            write!(f, "{} ({})", self.name(), self.msg)
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Errno {}

/// Two errnos are equal when their numbers are: the message is commentary.
impl PartialEq for Errno {
    fn eq(&self, other: &Errno) -> bool {
        self.code == other.code
    }
}

impl Eq for Errno {}

impl std::hash::Hash for Errno {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.code.hash(h);
    }
}

impl Errno {
    /// The errno with number `code` (a positive value from the host).
    pub const fn from_raw(code: i32) -> Errno {
        Errno { code, msg: "" }
    }

    /// A raw kernel result: `Ok(value)`, or the errno of a value in
    /// -4095..0 (the kernel's error range).
    pub fn result(ret: i64) -> Result<i64, Errno> {
        if (-4095..0).contains(&ret) {
            Err(Errno::from_raw((-ret) as i32))
        } else {
            Ok(ret)
        }
    }

    /// The negative value a syscall returns in rax for this error.
    pub const fn to_ret(self) -> i64 {
        -(self.code as i64)
    }
}

impl From<crate::guestmem::Fault> for Errno {
    fn from(_: crate::guestmem::Fault) -> Errno {
        Errno::EFAULT
    }
}

impl From<std::io::Error> for Errno {
    /// The host's errno of an I/O error; EIO when it carries none.
    fn from(e: std::io::Error) -> Errno {
        e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
    }
}

#[cfg(test)]
mod tests {
    use super::Errno;

    #[test]
    fn raw_results() {
        assert_eq!(Errno::result(5), Ok(5));
        assert_eq!(Errno::result(-2), Err(Errno::ENOENT));
        assert_eq!(Errno::result(-4095).map_err(|e| e.code), Err(4095));
        // Addresses above the error range are values (mmap near the top).
        assert_eq!(Errno::result(-4096), Ok(-4096));
        assert_eq!(Errno::EACCES.to_ret(), -13);
        assert_eq!(Errno::from_raw(110).name(), "ETIMEDOUT");
        assert_eq!(Errno::from_raw(4000).name(), "E?");
        assert_eq!(
            format!("{}", Errno::ENOENT.with("no such name")),
            "ENOENT (no such name)"
        );
        assert_eq!(Errno::EIO.with("integrity check failed"), Errno::EIO);
    }
}
