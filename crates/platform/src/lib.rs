//! The only crate with real `unsafe`: Syscall User Dispatch, the SIGSYS entry
//! stub, FS-base switching, raw host syscalls and guest memory access.
//!
//! The kernel crate (which forbids unsafe code) reaches the host and guest
//! memory only through the safe functions here.

pub mod errno;
pub mod guestmem;
pub mod host;
pub mod hostio;
pub mod net;
pub mod raw;
pub mod rewrite;
pub mod shm;
pub mod sud;

/// Errors of platform setup.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The CPU or kernel lacks user-space FSGSBASE.
    #[error("this CPU/kernel does not allow rdfsbase/wrfsbase in user mode (AT_HWCAP2 bit 1 clear); the runtime needs it to switch TLS between guest and runtime")]
    NoFsgsbase,
    /// A host call failed during setup.
    #[error("{0} failed: {1}")]
    Host(&'static str, errno::Errno),
}

pub use errno::Errno;
