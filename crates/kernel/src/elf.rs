//! The ELF loader: ET_EXEC and ET_DYN (static-PIE, and the guest's own ld.so
//! for PT_INTERP programs), and the initial stack (argv, envp, auxv).
//!
//! Everything in the file is untrusted: headers are bounds-checked and
//! arithmetic is checked; a bad file gives ENOEXEC, never a crash.

use myst_fs::Errno;
use myst_platform::guestmem::{
    self, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, PROT_EXEC, PROT_READ, PROT_WRITE,
};
use std::sync::Arc;

const PAGE: u64 = 4096;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const MAP_PRIVATE: u32 = 2;

/// One program header (the fields the loader uses).
#[derive(Debug, Clone, Copy)]
struct Phdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

/// A loaded ELF image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Entry point (with load bias).
    pub entry: u64,
    /// Address of the program headers in guest memory (0 if not mapped).
    pub phdr: u64,
    /// Number of program headers.
    pub phnum: u64,
    /// Load bias (0 for ET_EXEC).
    pub bias: u64,
    /// End of the highest segment (where brk starts).
    pub end: u64,
    /// PT_INTERP path, if any.
    pub interp: Option<Vec<u8>>,
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, Errno> {
    b.get(o..o + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(Errno::ENOEXEC.with("truncated ELF header"))
}

fn u32_at(b: &[u8], o: usize) -> Result<u32, Errno> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(Errno::ENOEXEC.with("truncated ELF header"))
}

fn u64_at(b: &[u8], o: usize) -> Result<u64, Errno> {
    let s = b
        .get(o..o + 8)
        .ok_or(Errno::ENOEXEC.with("truncated ELF header"))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn bad(msg: &'static str) -> Errno {
    Errno::ENOEXEC.with(msg)
}

/// Whether `data` starts like an x86-64 ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.len() >= 64 && &data[..4] == b"\x7fELF"
}

/// A validated ELF file: every segment lies inside the file, no address
/// arithmetic overflows.
#[derive(Debug, Clone)]
pub struct Parsed {
    e_type: u16,
    entry: u64,
    phoff: u64,
    phnum: u64,
    phdrs: Vec<Phdr>,
    loads: Vec<Phdr>,
    lo: u64,
    hi: u64,
}

/// Parses and validates the headers of an x86-64 executable (untrusted bytes).
pub fn parse(data: &[u8]) -> Result<Parsed, Errno> {
    if !is_elf(data) {
        return Err(bad("not an ELF file"));
    }
    if data[4] != 2 || data[5] != 1 {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let e_type = u16_at(data, 16)?;
    if u16_at(data, 18)? != 62 {
        return Err(bad("not an x86-64 ELF file"));
    }
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(bad("not an executable ELF file"));
    }
    let entry = u64_at(data, 24)?;
    let phoff = u64_at(data, 32)?;
    let phentsize = u16_at(data, 54)? as u64;
    let phnum = u16_at(data, 56)? as u64;
    if phentsize != 56 || phnum == 0 || phnum > 256 {
        return Err(bad("bad program header table"));
    }
    let mut phdrs = Vec::new();
    for i in 0..phnum {
        let o = phoff
            .checked_add(i * 56)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(bad("program header out of range"))?;
        phdrs.push(Phdr {
            p_type: u32_at(data, o)?,
            flags: u32_at(data, o + 4)?,
            offset: u64_at(data, o + 8)?,
            vaddr: u64_at(data, o + 16)?,
            filesz: u64_at(data, o + 32)?,
            memsz: u64_at(data, o + 40)?,
        });
    }
    let loads: Vec<Phdr> = phdrs
        .iter()
        .copied()
        .filter(|p| p.p_type == PT_LOAD)
        .collect();
    if loads.is_empty() {
        return Err(bad("no loadable segments"));
    }
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    for p in &loads {
        if p.filesz > p.memsz {
            return Err(bad("segment file size larger than memory size"));
        }
        let end = p
            .vaddr
            .checked_add(p.memsz)
            .ok_or(bad("segment wraps around"))?;
        let file_end = p
            .offset
            .checked_add(p.filesz)
            .ok_or(bad("segment wraps around"))?;
        if file_end > data.len() as u64 {
            return Err(bad("segment extends past the end of the file"));
        }
        lo = lo.min(p.vaddr & !(PAGE - 1));
        hi = hi.max(end);
    }
    let hi = hi
        .checked_add(PAGE - 1)
        .ok_or(bad("segment wraps around"))?
        & !(PAGE - 1);
    let span = hi - lo;
    if span > 1 << 40 {
        return Err(bad("image too large"));
    }
    Ok(Parsed {
        e_type,
        entry,
        phoff,
        phnum,
        phdrs,
        loads,
        lo,
        hi,
    })
}

/// Loads `data` into guest memory. `name` labels the mapping in /proc/self/maps.
pub fn load(data: &[u8], name: Arc<str>) -> Result<Image, Errno> {
    let Parsed {
        e_type,
        entry,
        phoff,
        phnum,
        phdrs,
        loads,
        lo,
        hi,
    } = parse(data)?;
    let span = hi - lo;
    // Reserve the whole span writable, copy the file bytes, then set the
    // final protections.
    let rw = PROT_READ | PROT_WRITE;
    let base = if e_type == ET_EXEC {
        guestmem::map(
            lo,
            span,
            rw,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
            Some(name.clone()),
        )
        .map_err(|e| {
            if e == Errno::EEXIST {
                Errno::ENOMEM
                    .with("the program's fixed addresses collide with the runtime's memory")
            } else {
                e.with("mapping the program")
            }
        })?
    } else {
        guestmem::map(0, span, rw, MAP_PRIVATE | MAP_ANONYMOUS, Some(name.clone()))
            .map_err(|e| e.with("mapping the program"))?
    };
    let bias = base.wrapping_sub(lo);
    for p in &loads {
        if p.filesz == 0 {
            continue;
        }
        // Bounds were checked above.
        let bytes = &data[p.offset as usize..(p.offset + p.filesz) as usize];
        guestmem::copy_out(p.vaddr.wrapping_add(bias), bytes)
            .map_err(|_| bad("segment outside its mapping"))?;
    }
    guestmem::protect(base, span, 0).map_err(|e| e.with("mprotect"))?;
    // Pages shared by two segments get the union of their protections.
    let mut pages: Vec<(u64, u64, u32)> = Vec::new();
    for p in &loads {
        let start = (p.vaddr & !(PAGE - 1)).wrapping_add(bias);
        let end = ((p.vaddr + p.memsz + PAGE - 1) & !(PAGE - 1)).wrapping_add(bias);
        let mut prot = 0;
        if p.flags & 4 != 0 {
            prot |= PROT_READ;
        }
        if p.flags & 2 != 0 {
            prot |= PROT_WRITE;
        }
        if p.flags & 1 != 0 {
            prot |= PROT_EXEC;
        }
        pages.push((start, end, prot));
    }
    for &(start, end, prot) in &pages {
        let mut union = prot;
        for &(s2, e2, p2) in &pages {
            if s2 < end && start < e2 {
                union |= p2;
            }
        }
        if end > start {
            guestmem::protect(start, end - start, union).map_err(|e| e.with("mprotect"))?;
        }
    }
    let phdr = if let Some(p) = phdrs.iter().find(|p| p.p_type == PT_PHDR) {
        p.vaddr.wrapping_add(bias)
    } else {
        loads
            .iter()
            .find(|p| p.offset <= phoff && phoff + phnum * 56 <= p.offset + p.filesz)
            .map(|p| (phoff - p.offset + p.vaddr).wrapping_add(bias))
            .unwrap_or(0)
    };
    let interp = match phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        Some(p) => {
            let s = data
                .get(p.offset as usize..(p.offset.saturating_add(p.filesz)) as usize)
                .ok_or(bad("PT_INTERP outside the file"))?;
            let s = s.split(|&b| b == 0).next().unwrap_or(&[]);
            Some(s.to_vec())
        }
        None => None,
    };
    Ok(Image {
        entry: entry.wrapping_add(bias),
        phdr,
        phnum,
        bias,
        end: hi.wrapping_add(bias),
        interp,
    })
}

/// Auxiliary vector keys.
#[allow(missing_docs)]
pub mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const PLATFORM: u64 = 15;
    pub const HWCAP: u64 = 16;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const HWCAP2: u64 = 26;
    pub const EXECFN: u64 = 31;
    pub const SYSINFO_EHDR: u64 = 33;
    pub const MINSIGSTKSZ: u64 = 51;
}

/// Builds the initial stack in a fresh mapping of `size` bytes; returns
/// (stack pointer, mapping start, the complete auxiliary vector as bytes, as
/// /proc/self/auxv shows it). `auxv` holds pairs without AT_RANDOM,
/// AT_EXECFN, AT_PLATFORM and AT_NULL, which are added here.
pub fn build_stack(
    size: u64,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
    auxv: &[(u64, u64)],
) -> Result<(u64, u64, Vec<u8>), Errno> {
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | 0x20000; // MAP_STACK
    let size = size.max(64 * 1024);
    let base = guestmem::map(
        0,
        size,
        PROT_READ | PROT_WRITE,
        flags,
        Some(Arc::from("[stack]")),
    )
    .map_err(|e| e.with("mapping the stack"))?;
    let top = base + size;
    // Strings at the top.
    let mut strings: Vec<u8> = Vec::new();
    let offs = |s: &[u8], strings: &mut Vec<u8>| {
        let o = strings.len();
        strings.extend_from_slice(s);
        strings.push(0);
        o
    };
    let execfn_off = offs(execfn, &mut strings);
    let platform_off = offs(b"x86_64", &mut strings);
    let argv_offs: Vec<usize> = argv.iter().map(|a| offs(a, &mut strings)).collect();
    let envp_offs: Vec<usize> = envp.iter().map(|e| offs(e, &mut strings)).collect();
    let mut random = [0u8; 16];
    myst_platform::host::getrandom(&mut random).map_err(|e| e.with("getrandom"))?;
    let random_off = strings.len();
    strings.extend_from_slice(&random);
    let strings_start = (top - strings.len() as u64 - 16) & !15;
    let at_str = |o: usize| strings_start + o as u64;
    let mut vec: Vec<u64> = Vec::new();
    vec.push(argv.len() as u64);
    vec.extend(argv_offs.iter().map(|&o| at_str(o)));
    vec.push(0);
    vec.extend(envp_offs.iter().map(|&o| at_str(o)));
    vec.push(0);
    let auxv_start = vec.len();
    for &(k, v) in auxv {
        vec.push(k);
        vec.push(v);
    }
    vec.extend([
        at::RANDOM,
        at_str(random_off),
        at::EXECFN,
        at_str(execfn_off),
        at::PLATFORM,
        at_str(platform_off),
        at::NULL,
        0,
    ]);
    let bytes = vec.len() as u64 * 8;
    let sp = (strings_start - bytes) & !15;
    if sp < base + 4096 {
        return Err(Errno::E2BIG);
    }
    let mut words = Vec::with_capacity(vec.len() * 8);
    for w in &vec {
        words.extend_from_slice(&w.to_le_bytes());
    }
    guestmem::copy_out(sp, &words).map_err(|_| Errno::EFAULT)?;
    guestmem::copy_out(strings_start, &strings).map_err(|_| Errno::EFAULT)?;
    Ok((sp, base, words[auxv_start * 8..].to_vec()))
}

/// Flags for a fixed guest mapping (used by brk).
pub const FIXED_ANON: u32 = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
/// MAP_FIXED re-export for callers.
pub const MAP_FIXED_FLAG: u32 = MAP_FIXED;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An ELF header with `phnum` program headers right after it.
    fn header(e_type: u16, phnum: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[16..18].copy_from_slice(&e_type.to_le_bytes());
        h[18..20].copy_from_slice(&62u16.to_le_bytes());
        h[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&phnum.to_le_bytes());
        h
    }

    fn phdr(p_type: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
        let mut p = vec![0u8; 56];
        p[0..4].copy_from_slice(&p_type.to_le_bytes());
        p[4..8].copy_from_slice(&flags.to_le_bytes());
        p[8..16].copy_from_slice(&offset.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[32..40].copy_from_slice(&filesz.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        p
    }

    #[test]
    fn valid_static_executable() {
        let mut f = header(ET_EXEC, 2);
        f.extend(phdr(PT_LOAD, 5, 0, 0x400000, 0x1000, 0x1000));
        f.extend(phdr(PT_LOAD, 6, 0x1000, 0x401000, 0x10, 0x2000));
        f.resize(0x1010, 0);
        let p = parse(&f).unwrap();
        assert_eq!((p.lo, p.hi, p.loads.len()), (0x400000, 0x403000, 2));
    }

    #[test]
    fn refusals() {
        assert!(parse(b"\x7fELF").is_err());
        let mut f = header(1, 1); // ET_REL
        f.extend(phdr(PT_LOAD, 5, 0, 0x400000, 0, 0));
        assert!(parse(&f).is_err());
        let mut f = header(ET_EXEC, 1);
        f.extend(phdr(PT_LOAD, 5, 0, 0x400000, 0x100000, 0x100000)); // past EOF
        assert!(parse(&f).is_err());
        let mut f = header(ET_EXEC, 1);
        f.extend(phdr(PT_LOAD, 5, 0, u64::MAX - 10, 0, 100)); // wraps
        assert!(parse(&f).is_err());
        let mut f = header(ET_EXEC, 1);
        f.extend(phdr(PT_LOAD, 5, 0, 0x400000, 20, 10)); // filesz > memsz
        assert!(parse(&f).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&data);
        }

        #[test]
        fn random_headers_parse_or_fail_cleanly(
            e_type in prop_oneof![Just(ET_EXEC), Just(ET_DYN), any::<u16>()],
            segs in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()), 0..6),
            small in any::<bool>(),
            tail in 0usize..5000,
        ) {
            let mut f = header(e_type, segs.len() as u16);
            for (t, fl, off, va, fs, ms) in &segs {
                let t = if small { *t % 8 } else { *t };
                let (off, va, fs, ms) = if small { (off % 8192, va % (1 << 32), fs % 8192, ms % 65536) } else { (*off, *va, *fs, *ms) };
                f.extend(phdr(t, *fl, off, va, fs, ms));
            }
            f.resize(f.len() + tail, 0);
            if let Ok(p) = parse(&f) {
                prop_assert!(p.lo <= p.hi);
                for s in &p.loads {
                    prop_assert!(s.offset + s.filesz <= f.len() as u64);
                    prop_assert!(s.filesz <= s.memsz);
                }
            }
        }
    }
}
