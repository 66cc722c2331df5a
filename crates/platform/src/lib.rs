//! The only crate with real `unsafe`: Syscall User Dispatch, the SIGSYS entry
//! stub, FS-base switching, raw host syscalls and guest memory access.
