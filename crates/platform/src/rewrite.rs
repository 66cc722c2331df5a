//! Syscall-site rewriting: after a guest `mov $nr, %eax; syscall` has
//! trapped once, its `mov` is replaced by a `jmp` to a per-site stub that
//! enters the dispatcher directly, without a signal (lazypoline / gVisor
//! systrap style). Syscall User Dispatch still catches every site that is
//! not rewritten, and the `syscall` instruction stays in place, so a jump
//! into the middle of the sequence still traps.
//!
//! The fast path keeps the guarantees of the SIGSYS path without changing
//! the signal mask: while it runs runtime code or uses the runtime stack, a
//! flag in the thread's control block makes the guest-handler trampoline
//! record signals instead of running guest code; they are queued again
//! (rt_tgsigqueueinfo, with the siginfo they came with) once the guest's registers, stack and FS base are back (on the
//! guest stack, below its red zone). The FS base is switched; vector state
//! is saved with XSAVEOPT; the return restores registers exactly as a
//! syscall does (rcx = return address, r11 = rflags). Sites are rewritten
//! only while the process has a single thread, so no thread can execute a
//! half-written instruction.

use crate::raw::{check, nr, syscall6};
use crate::sud::{self, ControlBlock, XSAVE_OFFSET, XSAVE_ROOM};
use core::arch::global_asm;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static ENABLED: AtomicBool = AtomicBool::new(false);
static THREADED: AtomicBool = AtomicBool::new(false);

/// Turns rewriting on (if the CPU has XSAVE and the state fits).
pub fn enable(on: bool) {
    ENABLED.store(on && xsave_mask() != 0, Ordering::Relaxed);
}

/// Whether rewriting is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Called when the guest gets a second thread: no more rewriting.
pub(crate) fn mark_threaded() {
    THREADED.store(true, Ordering::Relaxed);
}

/// The state components the fast path saves around runtime code: all that
/// the OS enabled except AMX tile data/config (runtime code never uses
/// them, and they are large), or 0 if XSAVE is missing or the area would not
/// fit. Computed once.
pub(crate) fn xsave_mask() -> u64 {
    static MASK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MASK.get_or_init(|| {
        // CPUID.1:ECX bit 26 (XSAVE) and 27 (OSXSAVE).
        let c1 = core::arch::x86_64::__cpuid(1);
        if c1.ecx & (3 << 26) != 3 << 26 {
            return 0;
        }
        // XSAVEOPT (CPUID.(0xD,1):EAX bit 0).
        if core::arch::x86_64::__cpuid_count(0xd, 1).eax & 1 == 0 {
            return 0;
        }
        let xcr0: u64;
        // SAFETY: xgetbv(0) is allowed in user mode when OSXSAVE is set.
        unsafe {
            let (lo, hi): (u32, u32);
            core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack));
            xcr0 = (hi as u64) << 32 | lo as u64;
        }
        let mask = xcr0 & !((1 << 17) | (1 << 18));
        // Standard-format layout: components 0-1 in the legacy 512 bytes,
        // then the 64-byte header, then each component at its CPUID offset.
        let mut end = 576usize;
        for i in 2..63 {
            if mask & (1 << i) != 0 {
                let d = core::arch::x86_64::__cpuid_count(0xd, i);
                end = end.max(d.ebx as usize + d.eax as usize);
            }
        }
        if end > XSAVE_ROOM {
            0
        } else {
            mask
        }
    })
}

extern "C" {
    fn myst_fast_entry();
}

// Offsets: control block fields (see sud::ControlBlock) and the
// ucontext-shaped frame (gregs at 40 + 8*i, sigmask at 296).
global_asm!(
    ".pushsection .text.myst_fast_entry,\"ax\",@progbits",
    ".globl myst_fast_entry",
    ".type myst_fast_entry,@function",
    "myst_fast_entry:",
    // In: rax = nr, rcx = return address, r11 free; guest rsp, FS, flags.
    // From here until the guest state is back, guest signal handlers are
    // deferred (the trampoline records them in %gs:72).
    "movq $1, %gs:64",
    "mov %rsp, %r11",
    "mov %gs:32, %rsp",
    "lea -512(%rsp), %rsp",
    "mov %rax, 144(%rsp)",
    "pushfq",
    "pop %rax",
    "mov %rax, 176(%rsp)",
    "mov %rax, 64(%rsp)",
    "mov %r11, 160(%rsp)",
    "mov %rcx, 152(%rsp)",
    "mov %rcx, 168(%rsp)",
    "mov %r8, 40(%rsp)",
    "mov %r9, 48(%rsp)",
    "mov %r10, 56(%rsp)",
    "mov %r12, 72(%rsp)",
    "mov %r13, 80(%rsp)",
    "mov %r14, 88(%rsp)",
    "mov %r15, 96(%rsp)",
    "mov %rdi, 104(%rsp)",
    "mov %rsi, 112(%rsp)",
    "mov %rbp, 120(%rsp)",
    "mov %rbx, 128(%rsp)",
    "mov %rdx, 136(%rsp)",
    "mov %rsp, %r12",
    "mov %gs:40, %rbx",
    // Runtime mode: selector ALLOW, runtime FS base, vector state saved.
    "movb $0, 16(%rbx)",
    "rdfsbase %rax",
    "mov %rax, 8(%rbx)",
    "mov 0(%rbx), %rax",
    "wrfsbase %rax",
    "mov 56(%rbx), %eax",
    "mov 60(%rbx), %edx",
    "xsaveopt64 {xsave}(%rbx)",
    "mov %r12, %rdi",
    "mov %rbx, %rsi",
    "call {handler}",
    "mov 56(%rbx), %eax",
    "mov 60(%rbx), %edx",
    "xrstor64 {xsave}(%rbx)",
    "mov 8(%rbx), %rax",
    "wrfsbase %rax",
    "movb $1, 16(%rbx)",
    // Stash below the guest's red zone what the return (and the delivery
    // of deferred signals) needs, then leave the runtime stack.
    "mov 160(%r12), %r11",
    "lea -192(%r11), %r11",
    "mov 144(%r12), %rax",
    "mov %rax, 0(%r11)",
    "mov 168(%r12), %rax",
    "mov %rax, 40(%r11)",
    "mov 176(%r12), %rax",
    "mov %rax, 48(%r11)",
    "mov 40(%r12), %r8",
    "mov 48(%r12), %r9",
    "mov 56(%r12), %r10",
    "mov 80(%r12), %r13",
    "mov 88(%r12), %r14",
    "mov 96(%r12), %r15",
    "mov 104(%r12), %rdi",
    "mov 112(%r12), %rsi",
    "mov 120(%r12), %rbp",
    "mov 128(%r12), %rbx",
    "mov 136(%r12), %rdx",
    "mov %r11, %rsp",
    "mov 72(%r12), %r12",
    // Guest mode again: signals go straight to guest handlers, on the guest
    // stack below the stash.
    "movq $0, %gs:64",
    "cmpq $0, %gs:72",
    "jne 3f",
    "2:",
    "pushq 48(%rsp)",
    "popfq",
    "mov 0(%rsp), %rax",
    "mov 40(%rsp), %rcx",
    "mov 48(%rsp), %r11",
    "lea 192(%rsp), %rsp",
    "jmp *%rcx",
    // Queue the deferred signals again; each runs its guest handler as
    // the queueing syscall returns.
    "3:",
    "mov %rdi, 8(%rsp)",
    "mov %rsi, 16(%rsp)",
    "mov %rdx, 24(%rsp)",
    "mov %r10, 32(%rsp)",
    "4:",
    "xor %eax, %eax",
    "xchg %rax, %gs:72",
    "test %rax, %rax",
    "jz 6f",
    "mov %rax, 56(%rsp)",
    "5:",
    "mov 56(%rsp), %rax",
    "test %rax, %rax",
    "jz 4b",
    "bsf %rax, %rcx",
    "btr %rcx, %rax",
    "mov %rax, 56(%rsp)",
    "mov %rcx, 64(%rsp)",
    "mov $39, %eax",
    "syscall",
    "mov %rax, %rdi",
    "mov $186, %eax",
    "syscall",
    "mov %rax, %rsi",
    "mov 64(%rsp), %rcx",
    "lea 1(%rcx), %rdx",
    // rt_tgsigqueueinfo(pid, tid, sig, &siginfo it arrived with).
    "shl $7, %rcx",
    "mov %gs:40, %r10",
    "lea {siginfo}(%r10,%rcx,1), %r10",
    "mov $297, %eax",
    "syscall",
    ".globl myst_fast_requeue_ret",
    "myst_fast_requeue_ret:",
    "test %rax, %rax",
    "jns 5b",
    "mov $234, %eax",
    "syscall",
    "jmp 5b",
    "6:",
    "mov 8(%rsp), %rdi",
    "mov 16(%rsp), %rsi",
    "mov 24(%rsp), %rdx",
    "mov 32(%rsp), %r10",
    "jmp 2b",
    ".size myst_fast_entry, .-myst_fast_entry",
    ".popsection",
    xsave = const XSAVE_OFFSET,
    siginfo = const crate::sud::SIGINFO_OFFSET,
    handler = sym myst_fast_rust,
    options(att_syntax)
);

extern "C" fn myst_fast_rust(uc: *mut u8, cb: *mut ControlBlock) {
    let mut frame = sud::frame_from(uc, cb, true);
    sud::run_dispatcher(&mut frame);
}

/// Stubs live in pages within ±2 GiB of the sites that jump to them.
struct Pages {
    pages: Vec<(u64, usize)>,
}

static PAGES: Mutex<Pages> = Mutex::new(Pages { pages: Vec::new() });
const STUB: usize = 16;
const PAGE: u64 = 4096;

fn near(a: u64, b: u64) -> bool {
    let d = a.abs_diff(b);
    d < (1 << 31) - (1 << 20)
}

fn stub_page(site: u64, slots: usize) -> Option<(u64, usize)> {
    let need = slots * STUB;
    let mut g = PAGES.lock().unwrap_or_else(|p| p.into_inner());
    for (base, used) in g.pages.iter_mut() {
        if near(*base, site) && *used + need <= PAGE as usize {
            let slot = *used;
            *used += need;
            return Some((*base, slot));
        }
    }
    for hint in [
        site.saturating_add(1 << 28),
        site.saturating_sub(1 << 28),
        site.saturating_add(1 << 30),
    ] {
        let hint = hint & !(PAGE - 1);
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address (the
        // hint is only a hint); it belongs to the runtime.
        let r = unsafe { syscall6(nr::MMAP, hint, PAGE, 1 | 4, 0x22, u64::MAX, 0) };
        let Ok(base) = check(r) else { continue };
        if near(base, site) {
            g.pages.push((base, need));
            return Some((base, 0));
        }
        // SAFETY: unmapping the page just mapped.
        unsafe { syscall6(nr::MUNMAP, base, PAGE, 0, 0, 0, 0) };
    }
    None
}

fn write_stub(page: u64, slot: usize, code: &[u8]) -> bool {
    // SAFETY: the page is one of ours; it is made writable just for the copy
    // (only one guest thread exists, and it is here).
    unsafe {
        if check(syscall6(nr::MPROTECT, page, PAGE, 3, 0, 0, 0)).is_err() {
            return false;
        }
        core::ptr::copy_nonoverlapping(code.as_ptr(), (page + slot as u64) as *mut u8, code.len());
        syscall6(nr::MPROTECT, page, PAGE, 1 | 4, 0, 0, 0);
    }
    true
}

/// Length of one instruction that may sit between `mov $nr, %eax` and
/// `syscall` and be executed from the stub instead: a register move, xor or
/// immediate load into a register other than rax and rsp, or a
/// rip-relative `lea` (whose displacement is returned for relocation).
/// Returns (length, offset of a rip-relative disp32 in it).
fn simple_insn(code: &[u8]) -> Option<(usize, Option<usize>)> {
    let (rex, rest) = match code.first() {
        Some(&b) if (0x40..=0x4f).contains(&b) => (b, &code[1..]),
        _ => (0, code),
    };
    let p = usize::from(rex != 0);
    let w = rex & 8 != 0;
    let r_ext = (rex >> 2) & 1;
    let b_ext = rex & 1;
    let op = *rest.first()?;
    let modrm = rest.get(1).copied();
    let bad_dest = |d: u8| d == 0 || d == 4;
    match op {
        0x89 | 0x31 => {
            let m = modrm?;
            if m >> 6 != 3 || bad_dest((m & 7) | (b_ext << 3)) {
                return None;
            }
            Some((p + 2, None))
        }
        0x8b if modrm? >> 6 == 1 && modrm? & 7 == 4 => {
            // mov disp8(%rsp), reg: a stack argument (the stub runs on the
            // same stack).
            let m = modrm?;
            if *rest.get(2)? != 0x24 || bad_dest(((m >> 3) & 7) | (r_ext << 3)) {
                return None;
            }
            Some((p + 4, None))
        }
        0x8b | 0x33 => {
            let m = modrm?;
            if m >> 6 != 3 || bad_dest(((m >> 3) & 7) | (r_ext << 3)) {
                return None;
            }
            Some((p + 2, None))
        }
        0x8d => {
            let m = modrm?;
            if m >> 6 != 0 || m & 7 != 5 || bad_dest(((m >> 3) & 7) | (r_ext << 3)) {
                return None;
            }
            Some((p + 6, Some(p + 2)))
        }
        0xb8..=0xbf => {
            if bad_dest((op - 0xb8) | (b_ext << 3)) {
                return None;
            }
            Some((p + if w { 9 } else { 5 }, None))
        }
        0xc7 => {
            let m = modrm?;
            if m >> 6 != 3 || (m >> 3) & 7 != 0 || bad_dest((m & 7) | (b_ext << 3)) {
                return None;
            }
            Some((p + 6, None))
        }
        _ => None,
    }
}

/// Finds `mov $nr, %eax` followed by at most three simple instructions and
/// the `syscall` at `code[len-2..]`; returns the offset of the `mov` and the
/// instructions in between as (offset, length, rip-relative disp offset).
#[allow(clippy::type_complexity)]
fn find_site(code: &[u8], nr_: u32) -> Option<(usize, Vec<(usize, usize, Option<usize>)>)> {
    let sys = code.len().checked_sub(2)?;
    if code[sys..] != [0x0f, 0x05] {
        return None;
    }
    let imm = nr_.to_le_bytes();
    // The nearest candidate wins; each must decode exactly up to the syscall.
    for start in (0..=sys.checked_sub(5)?).rev() {
        if code[start] != 0xb8 || code[start + 1..start + 5] != imm {
            continue;
        }
        let mut at = start + 5;
        let mut mids = Vec::new();
        while at < sys && mids.len() < 3 {
            let Some((len, disp)) = simple_insn(&code[at..sys]) else {
                break;
            };
            mids.push((at, len, disp));
            at += len;
        }
        if at == sys {
            return Some((start, mids));
        }
    }
    None
}

/// Finds a straight-line function whose first instruction loads rax from
/// another register and that ends in the `syscall` at `code[len-2..]` (the
/// shape of musl's `__syscall_cp_c` and glibc's `syscall()`): the function
/// starts 16-byte aligned after padding or a `ret`, and its first five
/// bytes (function entries are not jumped into past their start) become
/// the jump. Returns the start and all instructions before the syscall.
#[allow(clippy::type_complexity)]
fn find_func_site(code: &[u8], base: u64) -> Option<(usize, Vec<(usize, usize, Option<usize>)>)> {
    let sys = code.len().checked_sub(2)?;
    if code[sys..] != [0x0f, 0x05] {
        return None;
    }
    for start in (1..=sys.checked_sub(5)?).rev() {
        if !(base + start as u64).is_multiple_of(16)
            || !matches!(code[start - 1], 0xc3 | 0x90 | 0xcc | 0x00)
        {
            continue;
        }
        // mov %reg, %rax (REX.W 89 /r with rm = rax, or REX.W 8b /r with reg = rax).
        let (rex, op, m) = (code[start], code[start + 1], code[start + 2]);
        let first_ok = (rex == 0x48 || rex == 0x4c)
            && m >> 6 == 3
            && ((op == 0x89 && m & 7 == 0 && (m >> 3) & 7 != 4)
                || (op == 0x8b && (m >> 3) & 7 == 0 && m & 7 != 4 && rex == 0x48));
        if !first_ok {
            continue;
        }
        let mut insns = vec![(start, 3, None)];
        let mut at = start + 3;
        while at < sys && insns.len() < 9 {
            let Some((len, disp)) = simple_insn(&code[at..sys]) else {
                break;
            };
            insns.push((at, len, disp));
            at += len;
        }
        if at == sys {
            return Some((start, insns));
        }
    }
    None
}

/// After a trapped syscall: rewrite its site if it is `mov $nr, %eax; syscall`.
pub(crate) fn after_trap(frame: &sud::SyscallFrame) {
    if !enabled() || THREADED.load(Ordering::Relaxed) {
        return;
    }
    let nr_ = frame.nr();
    // rt_sigreturn must keep its signal-frame semantics.
    if nr_ == 15 || nr_ > u32::MAX as u64 {
        return;
    }
    let ret = frame.ip();
    // Look at up to 40 bytes before the syscall (stopping at the start of
    // its mapping).
    let mut window = 42u64;
    let mut code = vec![0u8; 42];
    while window >= 7 {
        let Some(from) = ret.checked_sub(window) else {
            return;
        };
        if crate::guestmem::copy_in_exec(from, &mut code[..window as usize]).is_ok() {
            break;
        }
        window -= 5;
    }
    if window < 7 {
        return;
    }
    code.truncate(window as usize);
    let base = ret - window;
    // Either `mov $nr, %eax; [simple]; syscall` (the mov becomes the jump)
    // or a straight-line function entry (its first instructions do).
    let (start, insns) = if let Some((start, mids)) = find_site(&code, nr_ as u32) {
        let mut all = vec![(start, 5, None)];
        all.extend(mids);
        (start, all)
    } else if let Some(found) = find_func_site(&code, base) {
        found
    } else {
        return;
    };
    let site = base + start as u64;
    // Bytes replaced: the jump, then int3 up to the end of the last
    // instruction it overlaps.
    let mut patch_len = 0;
    for &(off, len, _) in &insns {
        if off < start + 5 {
            patch_len = off + len - start;
        }
    }
    let mut body = Vec::with_capacity(64);
    let mut fixups = Vec::new();
    for &(off, len, disp) in &insns {
        let at = body.len();
        body.extend_from_slice(&code[off..off + len]);
        if let Some(d) = disp {
            fixups.push((at, d, len, base + off as u64));
        }
    }
    body.extend_from_slice(&[0x48, 0xb9]); // movabs $ret, %rcx
    body.extend_from_slice(&ret.to_le_bytes());
    body.extend_from_slice(&[0xff, 0x25, 0, 0, 0, 0]); // jmp *0(%rip)
    body.extend_from_slice(&(myst_fast_entry as *const () as u64).to_le_bytes());
    let slots = body.len().div_ceil(STUB);
    let Some((page, slot)) = stub_page(site, slots) else {
        return;
    };
    let stub_addr = page + slot as u64;
    // Rip-relative displacements of moved instructions now count from the stub.
    for (at, d, len, orig) in fixups {
        let old = i32::from_le_bytes([
            body[at + d],
            body[at + d + 1],
            body[at + d + 2],
            body[at + d + 3],
        ]) as i64;
        let target = (orig as i64 + len as i64).wrapping_add(old);
        let new = target - (stub_addr as i64 + at as i64 + len as i64);
        let Ok(new) = i32::try_from(new) else { return };
        body[at + d..at + d + 4].copy_from_slice(&new.to_le_bytes());
    }
    body.resize(slots * STUB, 0xcc);
    if !write_stub(page, slot, &body) {
        return;
    }
    let rel = stub_addr.wrapping_sub(site + 5) as i64;
    let Ok(rel) = i32::try_from(rel) else { return };
    let mut jmp = vec![0xccu8; patch_len.max(5)];
    jmp[0] = 0xe9;
    jmp[1..5].copy_from_slice(&rel.to_le_bytes());
    let _ = crate::guestmem::patch_code(site, &jmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sites() {
        // mov $0x6e,%eax; syscall
        assert_eq!(
            find_site(&[0xb8, 0x6e, 0, 0, 0, 0x0f, 0x05], 0x6e),
            Some((0, vec![]))
        );
        // mov $0xda,%eax; lea 0x52a4(%rip),%rdi; syscall
        let c = [
            0xb8, 0xda, 0, 0, 0, 0x48, 0x8d, 0x3d, 0xa4, 0x52, 0, 0, 0x0f, 0x05,
        ];
        assert_eq!(find_site(&c, 0xda), Some((0, vec![(5, 7, Some(3))])));
        // mov $0x9,%eax; xor %edi,%edi; mov $-1,%r8; mov $3,%edx; syscall
        let c = [
            0xb8, 9, 0, 0, 0, 0x31, 0xff, 0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0xba, 3, 0, 0,
            0, 0x0f, 0x05,
        ];
        assert_eq!(find_site(&c, 9).map(|s| s.1.len()), Some(3));
        // Wrong number, a write to rax in between, no syscall: no site.
        assert_eq!(find_site(&[0xb8, 0x6e, 0, 0, 0, 0x0f, 0x05], 0x27), None);
        assert_eq!(
            find_site(&[0xb8, 1, 0, 0, 0, 0x48, 0x89, 0xd0, 0x0f, 0x05], 1),
            None
        );
        assert_eq!(find_site(&[0xb8, 1, 0, 0, 0, 0x90, 0x90], 1), None);
        // musl's __syscall_cp_c: mov %rdi,%rax; mov %r8,%r10; mov %rsi,%rdi;
        // mov %r9,%r8; mov %rdx,%rsi; mov 8(%rsp),%r9; mov %rcx,%rdx; syscall
        let f = [
            0xc3, 0x48, 0x89, 0xf8, 0x4d, 0x89, 0xc2, 0x48, 0x89, 0xf7, 0x4d, 0x89, 0xc8, 0x48,
            0x89, 0xd6, 0x4c, 0x8b, 0x4c, 0x24, 0x08, 0x48, 0x89, 0xca, 0x0f, 0x05,
        ];
        assert_eq!(
            find_func_site(&f, 0x403fff).map(|s| (s.0, s.1.len())),
            Some((1, 7))
        );
        assert_eq!(find_func_site(&f, 0x404000), None, "not 16-byte aligned");
        // A memory operand (not register-to-register) is not moved.
        assert_eq!(
            find_site(&[0xb8, 1, 0, 0, 0, 0x48, 0x89, 0x36, 0x0f, 0x05], 1),
            None
        );
    }
}
