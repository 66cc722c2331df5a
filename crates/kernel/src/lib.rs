//! The guest kernel: VFS, fd table, syscalls, processes, ELF loader.
#![forbid(unsafe_code)]
