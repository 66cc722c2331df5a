//! Syscall User Dispatch: the per-thread control block, the SIGSYS entry stub
//! that switches the FS base between guest and runtime, arming SUD, and the
//! jump into guest code.
//!
//! Every thread that runs guest code owns one aligned block of memory: the
//! control block at its low end, the alternate signal stack above it. The
//! entry stub finds the control block by masking its stack pointer, so it
//! needs neither %fs (which belongs to the guest on entry) nor %gs.

use crate::errno::Errno;
use crate::raw::{check, nr, syscall6};
use crate::PlatformError;
use core::arch::{asm, global_asm};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Size (and alignment) of a thread's control block + alternate signal stack.
pub const ALT_SIZE: usize = 256 * 1024;

/// Selector value letting syscalls through.
const SELECTOR_ALLOW: u8 = 0;
/// Selector value making syscalls from outside myst's text raise SIGSYS.
const SELECTOR_BLOCK: u8 = 1;

const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
const PR_SYS_DISPATCH_ON: u64 = 1;
const SIGSYS: u64 = 31;
const SA_SIGINFO: u64 = 0x4;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTORER: u64 = 0x0400_0000;

/// Per-thread state the entry stub reaches without %fs. Layout is fixed:
/// the assembly below uses the offsets.
#[repr(C)]
pub struct ControlBlock {
    /// FS base of the runtime's thread (offset 0).
    runtime_fs: u64,
    /// FS base of the guest thread, saved on entry, restored on exit (offset 8).
    guest_fs: u64,
    /// The SUD selector byte of this thread (offset 16).
    selector: u8,
    _pad: [u8; 7],
    /// Guest GS base as last set by arch_prctl (not installed in hardware).
    guest_gs: u64,
    /// Top of this thread's runtime stack for the rewritten-site fast path (offset 32).
    pub(crate) fast_top: u64,
    /// This block's own address, for code that reaches it through %gs (offset 40).
    pub(crate) self_ptr: u64,
    /// All signals: the mask the fast path blocks with (offset 48).
    pub(crate) all_mask: u64,
    /// XSAVE component mask the fast path saves: low half (offset 56).
    pub(crate) xsave_lo: u32,
    /// XSAVE component mask: high half (offset 60).
    pub(crate) xsave_hi: u32,
    /// Nonzero while the fast path runs runtime code or uses the runtime
    /// stack: guest signal handlers are deferred then (offset 64).
    pub(crate) in_runtime: u64,
    /// Signals deferred while `in_runtime` was set, delivered when the fast
    /// path returns (bit N-1 for signal N; offset 72).
    pub(crate) pending: u64,
    /// Host stack pointer to return to when a spawned guest thread exits
    /// (0 for the main thread; offset 80).
    host_rsp: u64,
    /// Guest word to clear and wake when this thread exits
    /// (CLONE_CHILD_CLEARTID; offset 88).
    clear_tid: u64,
    /// Nonzero when the first guest handler that interrupts the guest at
    /// `restore_ip` must return to `restore_mask` (offset 96): the mask
    /// that ppoll, pselect6, epoll_pwait and rt_sigsuspend restore after
    /// the handler, as Linux's saved_sigmask.
    restore_set: u64,
    /// Guest instruction pointer the restore applies to (offset 104).
    restore_ip: u64,
    /// The mask to restore (offset 112).
    restore_mask: u64,
    /// Scratch word for the entry stub (offset 120).
    scratch: u64,
}

// The entry stubs (here and in rewrite.rs) reach the control block with
// literal offsets; these checks keep the struct and the assembly in step.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(ControlBlock, runtime_fs) == 0);
    assert!(offset_of!(ControlBlock, guest_fs) == 8);
    assert!(offset_of!(ControlBlock, selector) == 16);
    assert!(offset_of!(ControlBlock, fast_top) == 32);
    assert!(offset_of!(ControlBlock, self_ptr) == 40);
    assert!(offset_of!(ControlBlock, all_mask) == 48);
    assert!(offset_of!(ControlBlock, xsave_lo) == 56);
    assert!(offset_of!(ControlBlock, xsave_hi) == 60);
    assert!(offset_of!(ControlBlock, in_runtime) == 64);
    assert!(offset_of!(ControlBlock, pending) == 72);
    assert!(offset_of!(ControlBlock, host_rsp) == 80);
    assert!(offset_of!(ControlBlock, clear_tid) == 88);
    assert!(offset_of!(ControlBlock, restore_set) == 96);
    assert!(offset_of!(ControlBlock, restore_ip) == 104);
    assert!(offset_of!(ControlBlock, restore_mask) == 112);
    assert!(offset_of!(ControlBlock, scratch) == 120);
    assert!(core::mem::size_of::<ControlBlock>() <= XSAVE_OFFSET);
};

/// Offset of the XSAVE area (64-byte aligned) from the control block.
pub(crate) const XSAVE_OFFSET: usize = 4096;
/// Room for the XSAVE area.
pub(crate) const XSAVE_ROOM: usize = 16384;
/// Offset of the siginfo of each deferred signal (128 bytes per signal,
/// signal N at N-1); the signal stack starts above them.
pub(crate) const SIGINFO_OFFSET: usize = XSAVE_OFFSET + XSAVE_ROOM;
const SIGINFO_ROOM: usize = 64 * 128;

extern "C" {
    static __executable_start: u8;
    static etext: u8;
    fn myst_sigsys_entry();
    fn myst_restore_rt();
}

global_asm!(
    ".pushsection .text.myst_sigsys_entry,\"ax\",@progbits",
    ".globl myst_sigsys_entry",
    ".type myst_sigsys_entry,@function",
    "myst_sigsys_entry:",
    // rdi = signo, rsi = siginfo, rdx = ucontext; rsp is on this thread's
    // alternate stack, so masking it gives the control block.
    // A SIGSYS that Syscall User Dispatch did not raise (si_code is not
    // SYS_USER_DISPATCH) was sent by someone: it is a signal, not a call.
    "cmpl $2, 8(%rsi)",
    "jne 9f",
    "mov %rsp, %rax",
    "and ${mask}, %rax",
    "movb $0, 16(%rax)",
    // Runtime mode: guest handlers of signals that arrive while the
    // runtime waits are deferred (see myst_sig_trampoline).
    "movq $1, 64(%rax)",
    "rdfsbase %rcx",
    "mov %rcx, 8(%rax)",
    "mov 0(%rax), %rcx",
    "wrfsbase %rcx",
    "push %rbp",
    "mov %rsp, %rbp",
    "and $-16, %rsp",
    "mov %rax, %rcx",
    "call {handler}",
    "mov %rbp, %rsp",
    "pop %rbp",
    "mov %rsp, %rax",
    "and ${mask}, %rax",
    // The guest FS base may have been changed by arch_prctl(ARCH_SET_FS).
    "mov 8(%rax), %rcx",
    "wrfsbase %rcx",
    "movq $0, 64(%rax)",
    "movb $1, 16(%rax)",
    // Return into myst_restore_rt (inside the allowed range) which issues
    // rt_sigreturn.
    "ret",
    // A SIGSYS sent by kill/tgkill/sigqueue: while runtime code runs it is
    // deferred like any guest signal; in guest code it gets the guest's
    // disposition for SIGSYS (FS base and selector are the guest's).
    "9:",
    "mov %rsp, %rax",
    "and ${mask}, %rax",
    "cmpq $0, 64(%rax)",
    "jne {defer}",
    "lea {table}(%rip), %rcx",
    "mov 248(%rcx), %rcx",
    "cmp $1, %rcx",
    "je 8f",
    "jb 7f",
    // A guest handler: run it with the guest's mask plus its sa_mask
    // (SIGSYS itself stays unblocked: trapped syscalls need it).
    "mov 296(%rdx), %r8",
    "or {sysmask}(%rip), %r8",
    "btr $30, %r8",
    "mov %r8, 120(%rax)",
    "mov %rdi, %r12",
    "mov %rsi, %r13",
    "mov %rdx, %r14",
    "mov %rcx, %r15",
    "lea 120(%rax), %rsi",
    "mov $14, %eax",
    "mov $2, %edi",
    "xor %edx, %edx",
    "mov $8, %r10d",
    "syscall",
    "mov %r12, %rdi",
    "mov %r13, %rsi",
    "mov %r14, %rdx",
    "jmp *%r15",
    // Default action: end the process as SIGSYS does.
    "7:",
    "mov $13, %eax",
    "mov $31, %edi",
    "lea {dfl}(%rip), %rsi",
    "xor %edx, %edx",
    "mov $8, %r10d",
    "syscall",
    "mov $39, %eax",
    "syscall",
    "mov %rax, %r12",
    "mov $186, %eax",
    "syscall",
    "mov %rax, %rsi",
    "mov %r12, %rdi",
    "mov $31, %edx",
    "mov $234, %eax",
    "syscall",
    "8:",
    "ret",
    ".size myst_sigsys_entry, .-myst_sigsys_entry",
    ".globl myst_restore_rt",
    ".type myst_restore_rt,@function",
    "myst_restore_rt:",
    "mov $15, %eax",
    "syscall",
    "ud2",
    ".size myst_restore_rt, .-myst_restore_rt",
    ".popsection",
    mask = const -(ALT_SIZE as i64),
    handler = sym myst_sigsys_rust,
    defer = sym myst_sig_defer,
    table = sym MYST_GUEST_HANDLERS,
    sysmask = sym MYST_SIGSYS_MASK,
    dfl = sym MYST_DFL_ACTION,
    options(att_syntax)
);

/// Offsets into the kernel's `ucontext` on x86-64.
const UC_GREGS: usize = 40;
const UC_SIGMASK: usize = 296;
const REG_R8: usize = 0;
const REG_R9: usize = 1;
const REG_R10: usize = 2;
const REG_RDI: usize = 8;
const REG_RSI: usize = 9;
const REG_RDX: usize = 12;
const REG_RAX: usize = 13;
const REG_RSP: usize = 15;
const REG_RIP: usize = 16;

/// One trapped guest syscall: its number, arguments, and where the result goes.
pub struct SyscallFrame {
    uc: *mut u8,
    cb: *mut ControlBlock,
    nr: u64,
    args: [u64; 6],
    /// Entered through a rewritten site: no signal frame; the signal mask
    /// is the thread's live one.
    fast: bool,
    /// The call is re-issued when the guest resumes (after its handlers).
    restarted: bool,
}

impl SyscallFrame {
    fn greg(&self, i: usize) -> u64 {
        // SAFETY: `uc` is the ucontext the kernel passed to the SIGSYS handler
        // of this thread; gregs is an array of 23 u64 at UC_GREGS and i < 23.
        unsafe { (self.uc.add(UC_GREGS + 8 * i) as *const u64).read_unaligned() }
    }

    fn set_greg(&mut self, i: usize, v: u64) {
        // SAFETY: as in `greg`; the frame is exclusively ours while the
        // handler runs, and the kernel reloads it on rt_sigreturn.
        unsafe { (self.uc.add(UC_GREGS + 8 * i) as *mut u64).write_unaligned(v) }
    }

    /// Syscall number.
    pub fn nr(&self) -> u64 {
        self.nr
    }

    /// The six argument registers (rdi, rsi, rdx, r10, r8, r9).
    pub fn args(&self) -> [u64; 6] {
        self.args
    }

    /// Sets the value the guest sees in rax (negative errno for failures).
    pub fn set_return(&mut self, v: i64) {
        self.set_greg(REG_RAX, v as u64);
    }

    /// Guest instruction pointer (just after the `syscall` instruction).
    pub fn ip(&self) -> u64 {
        self.greg(REG_RIP)
    }

    /// Guest stack pointer.
    pub fn sp(&self) -> u64 {
        self.greg(REG_RSP)
    }

    /// Changes the guest stack pointer used on return (clone with a new stack).
    pub fn set_sp(&mut self, sp: u64) {
        self.set_greg(REG_RSP, sp);
    }

    /// Makes the syscall return into a fresh program (execve): every
    /// general register zero, `ip` and `sp` set, FS base 0.
    pub fn reset_to(&mut self, ip: u64, sp: u64) {
        for i in 0..=REG_RSP {
            self.set_greg(i, 0);
        }
        self.set_greg(REG_RIP, ip);
        self.set_greg(REG_RSP, sp);
        self.set_guest_fs(0);
        self.set_guest_gs(0);
    }

    /// Guest FS base (the thread pointer of the guest's libc).
    pub fn guest_fs(&self) -> u64 {
        // SAFETY: cb is this thread's control block, valid for the thread's life.
        unsafe { (*self.cb).guest_fs }
    }

    /// Changes the guest FS base installed when the syscall returns.
    pub fn set_guest_fs(&mut self, v: u64) {
        // SAFETY: as in `guest_fs`; only this thread touches its block.
        unsafe { (*self.cb).guest_fs = v }
    }

    /// Guest GS base as recorded (myst keeps %gs for itself unused; the value
    /// is only remembered).
    pub fn guest_gs(&self) -> u64 {
        // SAFETY: as in `guest_fs`.
        unsafe { (*self.cb).guest_gs }
    }

    /// Records the guest GS base.
    pub fn set_guest_gs(&mut self, v: u64) {
        // SAFETY: as in `guest_fs`.
        unsafe { (*self.cb).guest_gs = v }
    }

    /// The signal mask that is restored when the syscall returns.
    pub fn sigmask(&self) -> u64 {
        if self.fast {
            let mut cur = 0u64;
            // SAFETY: rt_sigprocmask(SIG_BLOCK, NULL, &cur): reads the mask.
            unsafe {
                syscall6(
                    nr::RT_SIGPROCMASK,
                    0,
                    0,
                    &mut cur as *mut u64 as u64,
                    8,
                    0,
                    0,
                )
            };
            return cur;
        }
        // SAFETY: uc_sigmask is a u64 at UC_SIGMASK in the kernel's ucontext.
        unsafe { (self.uc.add(UC_SIGMASK) as *const u64).read_unaligned() }
    }

    /// Sets the signal mask the guest runs with after the call (SIGSYS is
    /// never blocked).
    pub fn set_sigmask(&mut self, mask: u64) {
        let mask = mask & !(1u64 << (SIGSYS - 1));
        if self.fast {
            // Signals this unblocks are deferred (the thread is in runtime
            // mode) and delivered when the call returns.
            // SAFETY: rt_sigprocmask(SIG_SETMASK) with a valid 8-byte mask.
            unsafe {
                syscall6(
                    nr::RT_SIGPROCMASK,
                    2,
                    &mask as *const u64 as u64,
                    0,
                    8,
                    0,
                    0,
                )
            };
            return;
        }
        // SAFETY: as in `sigmask`.
        unsafe { (self.uc.add(UC_SIGMASK) as *mut u64).write_unaligned(mask) }
    }

    /// Whether this call came through a rewritten site (no signal frame).
    pub fn is_fast(&self) -> bool {
        self.fast
    }

    /// Makes the guest issue this syscall again when it resumes (after the
    /// handlers of the deferred signals ran), as Linux restarts a call
    /// interrupted by a handler with SA_RESTART: the instruction pointer
    /// goes back to the `syscall` instruction and rax gets the number back.
    pub fn restart(&mut self) {
        let ip = self.ip();
        self.set_greg(REG_RIP, ip.wrapping_sub(2));
        self.set_greg(REG_RAX, self.nr);
        self.restarted = true;
    }

    /// Leaves the call with the signal mask `temp` so the deferred signals
    /// it lets through are delivered as the call returns, and makes the
    /// first guest handler that runs then return to the mask `restore`
    /// (ppoll, pselect6, epoll_pwait and rt_sigsuspend on Linux).
    pub fn set_temp_mask_until_handler(&mut self, temp: u64, restore: u64) {
        let ip = if self.fast {
            core::ptr::addr_of!(myst_fast_requeue_ret) as u64
        } else {
            self.ip()
        };
        // SAFETY: cb is this thread's control block; the trampoline reads
        // these fields on this thread only, and not before the call returns.
        unsafe {
            (*self.cb).restore_ip = ip;
            (*self.cb).restore_mask = restore & !(1u64 << (SIGSYS - 1));
            (*self.cb).restore_set = 1;
        }
        self.set_sigmask(temp);
    }
}

extern "C" {
    /// The return point of the re-queueing syscall in the fast path's
    /// delivery loop (where deferred handlers interrupt it).
    static myst_fast_requeue_ret: u8;
}

thread_local! {
    /// This thread's control block (for re-arming SUD after fork).
    static CONTROL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Signals the guest-handler trampoline deferred on this thread while it
/// ran runtime code of the fast path (bit N-1 for signal N); they are
/// delivered when the current call returns.
pub fn deferred_signals() -> u64 {
    let cb = CONTROL.with(|c| c.get()) as *const ControlBlock;
    if cb.is_null() {
        return 0;
    }
    // SAFETY: a non-null CONTROL is this thread's live control block; the
    // trampoline writes `pending` from a signal handler on this thread, so
    // a volatile read sees a whole, current value.
    unsafe { std::ptr::addr_of!((*cb).pending).read_volatile() }
}

/// In a fork child (called from the syscall handler): arms Syscall User
/// Dispatch again, which fork does not inherit. The control block and
/// alternate stack are at the same addresses in the child.
pub fn rearm_after_fork() -> Result<(), PlatformError> {
    let cb = CONTROL.with(|c| c.get()) as *mut ControlBlock;
    if cb.is_null() {
        return Err(PlatformError::Host(
            "re-arming SUD (no control block)",
            Errno::EINVAL,
        ));
    }
    arm_sud(cb)
}

fn arm_sud(cb: *mut ControlBlock) -> Result<(), PlatformError> {
    let (start, len) = allowed_range();
    // SAFETY: `selector` lives in the control block, which stays mapped for
    // the thread's life; the allowed range is our own text.
    let r = unsafe {
        syscall6(
            nr::PRCTL,
            PR_SET_SYSCALL_USER_DISPATCH,
            PR_SYS_DISPATCH_ON,
            start,
            len,
            core::ptr::addr_of_mut!((*cb).selector) as u64,
            0,
        )
    };
    check(r).map_err(|e| PlatformError::Host("prctl(PR_SET_SYSCALL_USER_DISPATCH)", e))?;
    Ok(())
}

type Dispatcher = fn(&mut SyscallFrame);
static DISPATCH: OnceLock<Dispatcher> = OnceLock::new();

/// Registers the function that handles every trapped guest syscall.
pub fn set_dispatcher(f: Dispatcher) {
    let _ = DISPATCH.set(f);
}

extern "C" fn myst_sigsys_rust(_sig: i32, _info: *mut u8, uc: *mut u8, cb: *mut ControlBlock) {
    let mut frame = SyscallFrame {
        uc,
        cb,
        nr: 0,
        args: [0; 6],
        fast: false,
        restarted: false,
    };
    frame.nr = frame.greg(REG_RAX);
    frame.args = [
        frame.greg(REG_RDI),
        frame.greg(REG_RSI),
        frame.greg(REG_RDX),
        frame.greg(REG_R10),
        frame.greg(REG_R8),
        frame.greg(REG_R9),
    ];
    run_dispatcher(&mut frame);
    if !frame.restarted {
        crate::rewrite::after_trap(&frame);
    }
    requeue_deferred(cb);
}

/// Runs the registered dispatcher on `frame`; a panic stops the process.
pub(crate) fn run_dispatcher(frame: &mut SyscallFrame) {
    world::enter();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match DISPATCH.get() {
        Some(f) => f(frame),
        None => frame.set_return(Errno::ENOSYS.to_ret()),
    }));
    world::leave();
    if result.is_err() {
        crate::host::write_stderr(b"myst: internal error in a syscall handler; stopping\n");
        crate::host::exit_group(134);
    }
}

/// Builds the frame of a syscall from a ucontext-shaped register block.
pub(crate) fn frame_from(uc: *mut u8, cb: *mut ControlBlock, fast: bool) -> SyscallFrame {
    let mut frame = SyscallFrame {
        uc,
        cb,
        nr: 0,
        args: [0; 6],
        fast,
        restarted: false,
    };
    frame.nr = frame.greg(REG_RAX);
    frame.args = [
        frame.greg(REG_RDI),
        frame.greg(REG_RSI),
        frame.greg(REG_RDX),
        frame.greg(REG_R10),
        frame.greg(REG_R8),
        frame.greg(REG_R9),
    ];
    frame
}

/// The text range that may issue syscalls directly: myst's own code.
fn allowed_range() -> (u64, u64) {
    // Linker-defined symbols; only their addresses are taken.
    let (start, end) = (
        core::ptr::addr_of!(__executable_start) as u64,
        core::ptr::addr_of!(etext) as u64,
    );
    (start, end.saturating_sub(start))
}

/// Checks that this CPU and kernel provide what the runtime needs.
pub fn check_support() -> Result<(), PlatformError> {
    const AT_HWCAP2: u64 = 26;
    let hwcap2 = crate::host::getauxval(AT_HWCAP2);
    if hwcap2 & 2 == 0 {
        return Err(PlatformError::NoFsgsbase);
    }
    Ok(())
}

/// Allocates this thread's control block and alternate signal stack, installs
/// the SIGSYS handler and arms Syscall User Dispatch (selector at ALLOW).
/// Returns the control block.
fn arm_thread() -> Result<*mut ControlBlock, PlatformError> {
    // Map twice the size and keep the aligned half, so masking the stack
    // pointer finds the control block.
    let len = 2 * ALT_SIZE as u64;
    // SAFETY: anonymous private mapping at a kernel-chosen address.
    let raw = unsafe { syscall6(nr::MMAP, 0, len, 3, 0x22, u64::MAX, 0) };
    let base = check(raw).map_err(|e| PlatformError::Host("mmap of the signal stack", e))?;
    let aligned = (base + ALT_SIZE as u64 - 1) & !(ALT_SIZE as u64 - 1);
    // SAFETY: unmapping the parts of our own fresh mapping outside the
    // aligned block; nothing references them.
    unsafe {
        if aligned > base {
            syscall6(nr::MUNMAP, base, aligned - base, 0, 0, 0, 0);
        }
        let end = aligned + ALT_SIZE as u64;
        if base + len > end {
            syscall6(nr::MUNMAP, end, base + len - end, 0, 0, 0, 0);
        }
    }
    let cb = aligned as *mut ControlBlock;
    let fs: u64;
    // SAFETY: rdfsbase is available (check_support); reads our FS base.
    unsafe { asm!("rdfsbase {}", out(reg) fs, options(nomem, nostack)) };
    // SAFETY: cb points to the start of a fresh, writable, zeroed mapping of
    // ALT_SIZE bytes, large enough for a ControlBlock.
    unsafe {
        cb.write(ControlBlock {
            runtime_fs: fs,
            guest_fs: 0,
            selector: SELECTOR_ALLOW,
            _pad: [0; 7],
            guest_gs: 0,
            fast_top: aligned + ALT_SIZE as u64,
            self_ptr: aligned,
            all_mask: !0,
            xsave_lo: crate::rewrite::xsave_mask() as u32,
            xsave_hi: (crate::rewrite::xsave_mask() >> 32) as u32,
            in_runtime: 0,
            pending: 0,
            host_rsp: 0,
            clear_tid: 0,
            restore_set: 0,
            restore_ip: 0,
            restore_mask: 0,
            scratch: 0,
        });
    }
    // %gs points at the control block: the fast path of rewritten syscall
    // sites finds it there (the guest's own GS base is only recorded).
    // SAFETY: wrgsbase is available (check_support); GS is unused by the
    // runtime and by the C libraries the guests use.
    unsafe { asm!("wrgsbase {}", in(reg) aligned, options(nomem, nostack)) };
    // stack_t { ss_sp, ss_flags, ss_size }; the control block's page and
    // the XSAVE area are excluded.
    let low = (SIGINFO_OFFSET + SIGINFO_ROOM) as u64;
    let ss: [u64; 3] = [aligned + low, 0, ALT_SIZE as u64 - low];
    // SAFETY: `ss` is a valid stack_t describing memory we own for the thread's life.
    let r = unsafe { syscall6(nr::SIGALTSTACK, ss.as_ptr() as u64, 0, 0, 0, 0, 0) };
    check(r).map_err(|e| PlatformError::Host("sigaltstack", e))?;
    install_sigsys()?;
    CONTROL.with(|c| c.set(cb as usize));
    arm_sud(cb)?;
    Ok(cb)
}

fn install_sigsys() -> Result<(), PlatformError> {
    // Kernel k_sigaction: handler, flags, restorer, mask. All signals are
    // blocked while the handler runs, so no guest signal handler can
    // interrupt runtime code (and run with the runtime's FS base).
    let act: [u64; 4] = [
        myst_sigsys_entry as *const () as u64,
        SA_SIGINFO | SA_ONSTACK | SA_RESTORER,
        myst_restore_rt as *const () as u64,
        !0u64,
    ];
    // SAFETY: `act` is a valid kernel sigaction; the handler and restorer are
    // our assembly functions.
    let r = unsafe { syscall6(nr::RT_SIGACTION, SIGSYS, act.as_ptr() as u64, 0, 8, 0, 0) };
    check(r)
        .map(|_| ())
        .map_err(|e| PlatformError::Host("rt_sigaction(SIGSYS)", e))
}

/// The address of myst's restorer (for guest signal handlers: their return
/// then issues rt_sigreturn from inside the allowed range).
pub fn restorer_address() -> u64 {
    myst_restore_rt as *const () as u64
}

/// Arms SUD on the calling thread and jumps to guest code at `entry` with the
/// stack pointer `sp` and FS base 0. Never returns: the guest leaves through
/// exit/exit_group, which the dispatcher handles.
pub fn enter_guest(entry: u64, sp: u64) -> Result<std::convert::Infallible, PlatformError> {
    check_support()?;
    let cb = arm_thread()?;
    // SAFETY: from here on the thread belongs to the guest. The selector
    // write makes later syscalls from guest code trap; the remaining
    // instructions of this block are in myst's text (allowed range). The
    // Rust stack of this function is abandoned, never returned to.
    unsafe {
        asm!(
            "movb ${block}, 16(%rdi)",
            "mov %rsi, %rsp",
            "xor %eax, %eax",
            "wrfsbase %rax",
            "xor %ebx, %ebx",
            "xor %ecx, %ecx",
            "xor %edx, %edx",
            "xor %esi, %esi",
            "xor %edi, %edi",
            "xor %ebp, %ebp",
            "xor %r8d, %r8d",
            "xor %r9d, %r9d",
            "xor %r10d, %r10d",
            "xor %r11d, %r11d",
            "xor %r12d, %r12d",
            "xor %r13d, %r13d",
            "xor %r14d, %r14d",
            "jmp *%r15",
            block = const SELECTOR_BLOCK,
            in("rdi") cb,
            in("rsi") sp,
            in("r15") entry,
            options(att_syntax, noreturn)
        )
    }
}

static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_signal(sig: i32) {
    let pid = CHILD.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill takes no pointers.
        unsafe { syscall6(nr::KILL, pid as u64, sig as u64, 0, 0, 0, 0) };
    }
}

/// In the parent: waits for the guest process `child`, forwarding SIGTERM,
/// SIGHUP, SIGUSR1 and SIGUSR2 to it and ignoring the terminal's SIGINT and
/// SIGQUIT (they reach the child directly). Returns the exit status, or
/// 128+N if signal N killed the child.
pub fn supervise(child: i32) -> Result<i32, Errno> {
    CHILD.store(child, std::sync::atomic::Ordering::Relaxed);
    for sig in [2u64, 3] {
        let act: [u64; 4] = [
            1, /* SIG_IGN */
            SA_RESTORER,
            myst_restore_rt as *const () as u64,
            0,
        ];
        // SAFETY: valid k_sigaction ignoring the signal.
        unsafe { syscall6(nr::RT_SIGACTION, sig, act.as_ptr() as u64, 0, 8, 0, 0) };
    }
    for sig in [1u64, 10, 12, 15] {
        let act: [u64; 4] = [
            forward_signal as *const () as u64,
            SA_RESTORER | 0x1000_0000, /* SA_RESTART */
            myst_restore_rt as *const () as u64,
            0,
        ];
        // SAFETY: valid k_sigaction; forward_signal only calls kill.
        unsafe { syscall6(nr::RT_SIGACTION, sig, act.as_ptr() as u64, 0, 8, 0, 0) };
    }
    loop {
        match crate::host::wait4(child, 0) {
            Ok((_, status)) => {
                let sig = status & 0x7f;
                if sig == 0 {
                    return Ok((status >> 8) & 0xff);
                }
                if sig != 0x7f {
                    return Ok(128 + sig);
                }
            }
            Err(e) if e == Errno::EINTR => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Runs `f` (a host call that may block) with the signals in `unblock`
/// deliverable, then blocks all signals again as the SIGSYS handler
/// expects. Default actions act at once (Ctrl-C ends a program waiting on
/// its terminal); guest handlers are deferred by the trampoline (the thread
/// is in runtime mode) and interrupt a call made with [`blocking6`].
pub fn interruptible<R>(unblock: u64, f: impl FnOnce() -> R) -> R {
    let unblock = unblock & !(1u64 << (SIGSYS - 1));
    if unblock == 0 {
        return f();
    }
    let mask: u64 = !unblock;
    let mut old: u64 = !0;
    // SAFETY: rt_sigprocmask(SIG_SETMASK) with valid 8-byte masks.
    unsafe {
        syscall6(
            nr::RT_SIGPROCMASK,
            2,
            &mask as *const u64 as u64,
            &mut old as *mut u64 as u64,
            8,
            0,
            0,
        )
    };
    let r = f();
    // SAFETY: as above.
    unsafe { syscall6(nr::RT_SIGPROCMASK, 2, &old as *const u64 as u64, 0, 8, 0, 0) };
    r
}

/// The guest's signal handlers, by signal number. The host runs
/// `myst_sig_trampoline` for these signals, which calls the guest's handler
/// at once, or, while the thread is in runtime code of the fast path,
/// records the signal for delivery when that call returns.
#[no_mangle]
static MYST_GUEST_HANDLERS: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];

/// Signals whose guest action has SA_RESETHAND and has not fired yet (bit
/// N-1 for signal N): the trampoline resets the host action to SIG_DFL as it
/// runs the handler, once.
#[no_mangle]
static MYST_RESETHAND: AtomicU64 = AtomicU64::new(0);

/// The sa_mask of the guest's SIGSYS handler.
#[no_mangle]
static MYST_SIGSYS_MASK: AtomicU64 = AtomicU64::new(0);

/// A kernel k_sigaction with SIG_DFL.
#[no_mangle]
static MYST_DFL_ACTION: [u64; 4] = [0; 4];

extern "C" {
    fn myst_sig_trampoline();
    fn myst_sig_defer();
    fn myst_blocking_syscall(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64;
}

global_asm!(
    ".pushsection .text.myst_sig_trampoline,\"ax\",@progbits",
    ".globl myst_sig_trampoline",
    ".type myst_sig_trampoline,@function",
    "myst_sig_trampoline:",
    // rdi = signal, rsi = siginfo, rdx = ucontext; %gs = control block.
    // Any register may be changed here: the guest handler returns through
    // rt_sigreturn, which reloads them all from the ucontext.
    "cmpq $0, %gs:64",
    "jne myst_sig_defer",
    // The first handler after ppoll/pselect6/epoll_pwait/rt_sigsuspend
    // returns to the mask from before the call (Linux's saved_sigmask).
    "cmpq $0, %gs:96",
    "je 2f",
    "mov 168(%rdx), %rax",
    "cmp %gs:104, %rax",
    "jne 2f",
    "mov %gs:112, %rax",
    "mov %rax, 296(%rdx)",
    "movq $0, %gs:96",
    "2:",
    "lea -1(%rdi), %ecx",
    "lea {resethand}(%rip), %rax",
    "lock btrq %rcx, (%rax)",
    "jc 3f",
    "lea {table}(%rip), %rax",
    "jmp *(%rax,%rdi,8)",
    // SA_RESETHAND: the host action becomes SIG_DFL before the handler runs.
    "3:",
    "lea {table}(%rip), %rax",
    "mov (%rax,%rdi,8), %r15",
    "mov %rdi, %r12",
    "mov %rsi, %r13",
    "mov %rdx, %r14",
    "mov $13, %eax",
    "lea {dfl}(%rip), %rsi",
    "xor %edx, %edx",
    "mov $8, %r10d",
    "syscall",
    "mov %r12, %rdi",
    "mov %r13, %rsi",
    "mov %r14, %rdx",
    "jmp *%r15",
    ".size myst_sig_trampoline, .-myst_sig_trampoline",
    // Runtime code is running: keep the siginfo, mark the signal pending
    // (delivered when the syscall returns), and if the thread was about to
    // enter or was in a blocking host call, make that call return
    // -ERESTARTSYS (see myst_blocking_syscall).
    ".globl myst_sig_defer",
    ".type myst_sig_defer,@function",
    "myst_sig_defer:",
    "mov %gs:40, %rax",
    "lea -1(%rdi), %ecx",
    "mov %rcx, %r8",
    "shl $7, %rcx",
    "lea {siginfo}(%rax,%rcx,1), %rdi",
    "mov $16, %ecx",
    "cld",
    "rep movsq",
    "mov $1, %eax",
    "mov %r8, %rcx",
    "shl %cl, %rax",
    "lock or %rax, %gs:72",
    "mov 168(%rdx), %rax",
    "lea myst_blocking_begin(%rip), %rcx",
    "cmp %rcx, %rax",
    "jb 4f",
    "lea myst_blocking_end(%rip), %rcx",
    "cmp %rcx, %rax",
    "jae 4f",
    "lea myst_blocking_restart(%rip), %rcx",
    "mov %rcx, 168(%rdx)",
    "4:",
    "ret",
    ".size myst_sig_defer, .-myst_sig_defer",
    // A host syscall that may block: myst_blocking_syscall(nr, a0..a5).
    // If a deferred signal is pending before the call starts, or one
    // arrives before the `syscall` instruction completes or the host
    // kernel wants to restart it, the result is -ERESTARTSYS (512): the
    // kernel then restarts the guest's call after its handler or fails it
    // with EINTR, as Linux would. Threads without a control block (%gs
    // base 0) just make the call.
    ".globl myst_blocking_syscall",
    ".type myst_blocking_syscall,@function",
    "myst_blocking_syscall:",
    "mov %rdi, %rax",
    "mov %rsi, %rdi",
    "mov %rdx, %rsi",
    "mov %rcx, %rdx",
    "mov %r8, %r10",
    "mov %r9, %r8",
    "mov 8(%rsp), %r9",
    "rdgsbase %r11",
    "test %r11, %r11",
    "jz 5f",
    ".globl myst_blocking_begin",
    "myst_blocking_begin:",
    "cmpq $0, %gs:72",
    "jne myst_blocking_restart",
    "5:",
    "syscall",
    ".globl myst_blocking_end",
    "myst_blocking_end:",
    "ret",
    "myst_blocking_restart:",
    "mov ${erestart}, %rax",
    "ret",
    ".size myst_blocking_syscall, .-myst_blocking_syscall",
    ".popsection",
    table = sym MYST_GUEST_HANDLERS,
    resethand = sym MYST_RESETHAND,
    dfl = sym MYST_DFL_ACTION,
    siginfo = const SIGINFO_OFFSET,
    erestart = const Errno::ERESTARTSYS.to_ret(),
    options(att_syntax)
);

/// The raw result myst_blocking_syscall gives when a deferred signal
/// stopped the call before it started or the host kernel wanted to restart
/// it ([`Errno::ERESTARTSYS`]).
pub const ERESTARTSYS: i64 = Errno::ERESTARTSYS.to_ret();

/// Issues host syscall `nr`, which may block, so that a guest signal that
/// arrives before or during it interrupts it (see [`ERESTARTSYS`]).
///
/// # Safety
/// As [`crate::raw::syscall6`].
pub(crate) unsafe fn blocking6(
    nr: u64,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> i64 {
    // While it waits the thread holds no runtime lock, so a fork in another
    // thread need not wait for it.
    let counted = world::pause();
    // SAFETY: the caller guarantees the arguments; the stub follows the C
    // calling convention and only issues the syscall.
    let r = unsafe { myst_blocking_syscall(nr, a0, a1, a2, a3, a4, a5) };
    world::resume(counted);
    r
}

/// Threads in runtime code, so that fork happens only when no other thread
/// of the process is inside the runtime (it could hold a runtime lock that
/// the child, which has only the forking thread, would find locked forever).
/// A thread counts from the start of a syscall to its end, except while it
/// waits in [`blocking6`], where it holds no runtime lock.
pub(crate) mod world {
    use crate::raw::syscall6;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    static ACTIVE: AtomicU32 = AtomicU32::new(0);
    static FORKING: AtomicU32 = AtomicU32::new(0);

    thread_local! {
        static COUNTED: Cell<bool> = const { Cell::new(false) };
    }

    fn futex_wait(word: &AtomicU32, val: u32) {
        // SAFETY: FUTEX_WAIT_PRIVATE on a static word; no timeout.
        unsafe { syscall6(202, word.as_ptr() as u64, 0x80, val as u64, 0, 0, 0) };
    }

    fn futex_wake(word: &AtomicU32) {
        // SAFETY: FUTEX_WAKE_PRIVATE on a static word.
        unsafe { syscall6(202, word.as_ptr() as u64, 0x81, i32::MAX as u64, 0, 0, 0) };
    }

    fn add() {
        loop {
            let f = FORKING.load(SeqCst);
            if f != 0 {
                futex_wait(&FORKING, f);
                continue;
            }
            ACTIVE.fetch_add(1, SeqCst);
            if FORKING.load(SeqCst) == 0 {
                return;
            }
            sub();
        }
    }

    fn sub() {
        if ACTIVE.fetch_sub(1, SeqCst) == 1 && FORKING.load(SeqCst) != 0 {
            futex_wake(&ACTIVE);
        }
    }

    /// The calling thread enters runtime code (waits while a fork runs).
    pub(crate) fn enter() {
        if !COUNTED.with(|c| c.replace(true)) {
            add();
        }
    }

    /// The calling thread leaves runtime code.
    pub(crate) fn leave() {
        if COUNTED.with(|c| c.replace(false)) {
            sub();
        }
    }

    /// Stops counting the calling thread for a wait; returns whether it was.
    pub(crate) fn pause() -> bool {
        let counted = COUNTED.with(|c| c.replace(false));
        if counted {
            sub();
        }
        counted
    }

    /// Counts the thread again after [`pause`].
    pub(crate) fn resume(counted: bool) {
        if counted {
            COUNTED.with(|c| c.set(true));
            add();
        }
    }

    /// Runs `f` (a fork) when no other thread is in runtime code; others
    /// entering meanwhile wait until it is done (in the child too, where
    /// only the calling thread exists).
    pub(crate) fn alone<R>(f: impl FnOnce() -> R) -> R {
        let counted = pause();
        while FORKING.compare_exchange(0, 1, SeqCst, SeqCst).is_err() {
            futex_wait(&FORKING, 1);
        }
        loop {
            let a = ACTIVE.load(SeqCst);
            if a == 0 {
                break;
            }
            futex_wait(&ACTIVE, a);
        }
        let r = f();
        FORKING.store(0, SeqCst);
        futex_wake(&FORKING);
        resume(counted);
        r
    }
}

/// Signals deferred on this thread and not yet delivered (bit N-1 for N).
pub fn deferred() -> u64 {
    let cb = CONTROL.with(|c| c.get()) as *const ControlBlock;
    if cb.is_null() {
        return 0;
    }
    // SAFETY: cb is this thread's control block; the trampoline updates
    // `pending` with atomic instructions on this same thread.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*cb).pending)) }
}

/// Queues the deferred signals of this thread again, each with the siginfo
/// it arrived with (rt_tgsigqueueinfo to the thread itself keeps the
/// sender's si_code, si_pid and si_uid). Called with signals blocked (the
/// SIGSYS handler): they are delivered as the handler returns to the guest.
fn requeue_deferred(cb: *mut ControlBlock) {
    // SAFETY: cb is this thread's control block, alive while it runs.
    let pending = unsafe { &*(core::ptr::addr_of!((*cb).pending) as *const AtomicU64) };
    let mut bits = pending.swap(0, Ordering::SeqCst);
    if bits == 0 {
        return;
    }
    // SAFETY: no pointers.
    let (pid, tid) = unsafe {
        (
            syscall6(nr::GETPID, 0, 0, 0, 0, 0, 0),
            syscall6(nr::GETTID, 0, 0, 0, 0, 0, 0),
        )
    };
    while bits != 0 {
        let i = bits.trailing_zeros() as u64;
        bits &= bits - 1;
        let info = cb as u64 + SIGINFO_OFFSET as u64 + i * 128;
        // SAFETY: `info` is this signal's 128-byte siginfo slot in the
        // control block region.
        let r = unsafe { syscall6(297, pid as u64, tid as u64, i + 1, info, 0, 0) };
        if r < 0 {
            // SAFETY: no pointers.
            unsafe { syscall6(nr::TGKILL, pid as u64, tid as u64, i + 1, 0, 0, 0) };
        }
    }
}

/// Installs a guest signal handler (`handler` > 1) with the guest's flags
/// and mask: the host calls the trampoline, which returns through myst's
/// restorer. The host action always has SA_SIGINFO (the siginfo of a
/// deferred signal is kept) and never SA_RESETHAND or SA_ONSTACK: the
/// trampoline resets a one-shot action itself when the handler really runs
/// (not when the signal is only deferred). SA_RESTART stays, so the host
/// kernel tells which interrupted calls Linux would restart. Returns the
/// previous host action.
pub fn install_guest_handler(
    sig: i32,
    handler: u64,
    flags: u64,
    mask: u64,
) -> Result<[u64; 4], Errno> {
    let idx = usize::try_from(sig)
        .ok()
        .filter(|&s| (1..=64).contains(&s))
        .ok_or(Errno::EINVAL)?;
    const SA_RESETHAND: u64 = 0x8000_0000;
    let bit = 1u64 << (idx - 1);
    if sig as u64 == SIGSYS {
        // SIGSYS stays the runtime's on the host; the entry stub runs the
        // guest's handler for a SIGSYS someone sent.
        MYST_SIGSYS_MASK.store(mask, Ordering::SeqCst);
        MYST_GUEST_HANDLERS[idx].store(handler, Ordering::SeqCst);
        return Ok([0; 4]);
    }
    // Cleared first, so a signal arriving meanwhile cannot reset the new
    // action on the old flag.
    MYST_RESETHAND.fetch_and(!bit, Ordering::SeqCst);
    MYST_GUEST_HANDLERS[idx].store(handler, Ordering::SeqCst);
    let act = [
        myst_sig_trampoline as *const () as u64,
        (flags & !(SA_ONSTACK | SA_RESETHAND)) | SA_RESTORER | SA_SIGINFO,
        myst_restore_rt as *const () as u64,
        mask & !(1u64 << (SIGSYS - 1)),
    ];
    let r = crate::host::sigaction(sig, Some(act));
    if r.is_ok() && flags & SA_RESETHAND != 0 {
        MYST_RESETHAND.fetch_or(bit, Ordering::SeqCst);
    }
    r
}

/// Records the guest's default or ignore disposition of SIGSYS (the host's
/// stays the runtime's).
pub fn set_guest_sigsys(handler: u64) {
    MYST_GUEST_HANDLERS[SIGSYS as usize].store(handler, Ordering::SeqCst);
}

/// Whether the one-shot (SA_RESETHAND) action of `sig` has fired since it
/// was installed (the host action is SIG_DFL again).
pub fn resethand_fired(sig: i32) -> bool {
    match u32::try_from(sig) {
        Ok(s @ 1..=64) => MYST_RESETHAND.load(Ordering::SeqCst) & (1u64 << (s - 1)) == 0,
        _ => false,
    }
}

/// Number of general registers in a ucontext.
pub const NGREG: usize = 23;
/// Index of rax in [`SyscallFrame::regs`].
pub const REG_INDEX_RAX: usize = REG_RAX;
/// Index of rsp in [`SyscallFrame::regs`].
pub const REG_INDEX_RSP: usize = REG_RSP;
/// Index of rip in [`SyscallFrame::regs`].
pub const REG_INDEX_RIP: usize = REG_RIP;

impl SyscallFrame {
    /// All general registers of the trapped guest thread (ucontext order).
    pub fn regs(&self) -> [u64; NGREG] {
        let mut r = [0u64; NGREG];
        for (i, v) in r.iter_mut().enumerate() {
            *v = self.greg(i);
        }
        r
    }
}

/// Starts a new guest thread (clone with CLONE_VM|CLONE_THREAD): a host
/// thread that arms SUD for itself, then continues guest code with `regs`
/// (rip, rsp and rax already set for the child), FS base `fs` and signal
/// mask `sigmask`. `clear_tid` (0 for none) is cleared and woken by the host
/// kernel when the thread exits (CLONE_CHILD_CLEARTID). `before_start`
/// runs in the parent once the thread exists and before it runs guest code
/// (to write the tid where the guest asked). Returns the new thread's id.
pub fn spawn_thread(
    regs: [u64; NGREG],
    fs: u64,
    sigmask: u64,
    clear_tid: u64,
    before_start: impl FnOnce(i32),
) -> Result<i32, PlatformError> {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel::<Result<i32, PlatformError>>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    crate::rewrite::mark_threaded();
    // The new host thread inherits the creator's signal mask: block
    // everything around its creation, so no guest signal reaches it before
    // it has its own control block and sets the guest's mask.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask(SIG_SETMASK) with valid 8-byte masks.
    unsafe {
        syscall6(
            nr::RT_SIGPROCMASK,
            2,
            &all as *const u64 as u64,
            &mut old as *mut u64 as u64,
            8,
            0,
            0,
        )
    };
    let spawned = std::thread::Builder::new()
        .name("guest".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let cb = match arm_thread() {
                Ok(cb) => cb,
                Err(e) => {
                    let _ = tid_tx.send(Err(e));
                    return;
                }
            };
            // SAFETY: gettid takes no arguments.
            let tid = unsafe { syscall6(nr::GETTID, 0, 0, 0, 0, 0, 0) } as i32;
            // SAFETY: cb is this thread's control block.
            unsafe { (*cb).clear_tid = clear_tid };
            let _ = tid_tx.send(Ok(tid));
            if go_rx.recv().is_err() {
                return;
            }
            let mask = sigmask & !(1u64 << (SIGSYS - 1));
            // SAFETY: rt_sigprocmask(SIG_SETMASK) with a valid 8-byte mask.
            unsafe {
                syscall6(
                    nr::RT_SIGPROCMASK,
                    2,
                    &mask as *const u64 as u64,
                    0,
                    8,
                    0,
                    0,
                )
            };
            let regs = regs;
            // SAFETY: the guest runs on this host thread until it exits,
            // when `exit_thread` comes back here (callee-saved registers and
            // stack restored); regs, cb and fs are valid as described at
            // myst_enter_guest_thread.
            unsafe { myst_enter_guest_thread(regs.as_ptr(), cb, fs) };
            // The guest thread has exited: undo the thread's set-up so the
            // host thread ends cleanly and its memory is freed.
            let all: u64 = !0;
            let off: [u64; 3] = [0, 2, 0]; // stack_t with SS_DISABLE
                                           // SAFETY: blocking signals, disarming SUD, disabling the
                                           // alternate stack, clearing GS and unmapping the control block
                                           // region, which nothing uses any more (we run on the Rust stack).
            unsafe {
                syscall6(nr::RT_SIGPROCMASK, 2, &all as *const u64 as u64, 0, 8, 0, 0);
                syscall6(nr::PRCTL, PR_SET_SYSCALL_USER_DISPATCH, 0, 0, 0, 0, 0);
                syscall6(nr::SIGALTSTACK, off.as_ptr() as u64, 0, 0, 0, 0, 0);
                asm!("wrgsbase {}", in(reg) 0u64, options(nomem, nostack));
                syscall6(nr::MUNMAP, cb as u64, ALT_SIZE as u64, 0, 0, 0, 0);
            }
            CONTROL.with(|c| c.set(0));
        });
    // SAFETY: restores the mask saved above.
    unsafe { syscall6(nr::RT_SIGPROCMASK, 2, &old as *const u64 as u64, 0, 8, 0, 0) };
    spawned.map_err(|_| PlatformError::Host("creating a thread", Errno::EAGAIN))?;
    let tid = tid_rx
        .recv()
        .map_err(|_| PlatformError::Host("starting a thread", Errno::EAGAIN))??;
    before_start(tid);
    let _ = go_tx.send(());
    Ok(tid)
}

extern "C" {
    /// Saves the host thread's callee-saved registers and stack pointer in
    /// the control block, then continues guest code with the registers in
    /// `regs` (ucontext order), FS base `fs`, selector BLOCK. Returns when
    /// [`exit_thread`] is called on this thread.
    fn myst_enter_guest_thread(regs: *const u64, cb: *mut ControlBlock, fs: u64);
    fn myst_leave_guest_thread(cb: *mut ControlBlock) -> !;
}

global_asm!(
    ".pushsection .text.myst_enter_guest_thread,\"ax\",@progbits",
    ".globl myst_enter_guest_thread",
    ".type myst_enter_guest_thread,@function",
    "myst_enter_guest_thread:",
    "push %rbp",
    "push %rbx",
    "push %r12",
    "push %r13",
    "push %r14",
    "push %r15",
    "mov %rsp, 80(%rsi)",
    "mov %rdi, %rax",
    "mov %rsi, %rdi",
    "mov %rdx, %rsi",
    "movb $1, 16(%rdi)",
    "wrfsbase %rsi",
    "mov 128(%rax), %rcx",
    "mov 120(%rax), %rsp",
    // The return address goes just below the child's fresh stack pointer,
    // which nothing uses yet.
    "push %rcx",
    "mov 0(%rax), %r8",
    "mov 8(%rax), %r9",
    "mov 16(%rax), %r10",
    "mov 24(%rax), %r11",
    "mov 32(%rax), %r12",
    "mov 40(%rax), %r13",
    "mov 48(%rax), %r14",
    "mov 56(%rax), %r15",
    "mov 64(%rax), %rdi",
    "mov 72(%rax), %rsi",
    "mov 80(%rax), %rbp",
    "mov 88(%rax), %rbx",
    "mov 96(%rax), %rdx",
    "mov 112(%rax), %rcx",
    "mov 104(%rax), %rax",
    "ret",
    ".size myst_enter_guest_thread, .-myst_enter_guest_thread",
    ".globl myst_leave_guest_thread",
    ".type myst_leave_guest_thread,@function",
    "myst_leave_guest_thread:",
    "mov 80(%rdi), %rsp",
    "pop %r15",
    "pop %r14",
    "pop %r13",
    "pop %r12",
    "pop %rbx",
    "pop %rbp",
    "ret",
    ".size myst_leave_guest_thread, .-myst_leave_guest_thread",
    ".popsection",
    options(att_syntax)
);

/// Ends the calling guest thread (exit(2)). A thread made by
/// [`spawn_thread`] clears and wakes its CLONE_CHILD_CLEARTID word, then
/// returns to its host thread, which frees its resources and ends; the
/// main thread ends with a host exit (the process ends with its last thread).
pub fn exit_thread(code: i32) -> ! {
    // The thread leaves runtime code for good (a fork need not wait for it).
    world::leave();
    let cb = CONTROL.with(|c| c.get()) as *mut ControlBlock;
    let (host_rsp, clear_tid) = if cb.is_null() {
        (0, 0)
    } else {
        // SAFETY: cb, when set, is this thread's live control block.
        unsafe { ((*cb).host_rsp, (*cb).clear_tid) }
    };
    if host_rsp == 0 {
        crate::host::exit_thread(code);
    }
    if clear_tid != 0 && crate::guestmem::copy_out(clear_tid, &0u32.to_le_bytes()).is_ok() {
        let _ =
            crate::guestmem::futex(clear_tid, 1 /* FUTEX_WAKE */, i32::MAX as u32, 0, 0, 0);
    }
    // SAFETY: host_rsp was saved by myst_enter_guest_thread on this thread,
    // whose host stack is intact below it; the Rust frames above (this
    // syscall's handler, on the signal or runtime stack) are abandoned and
    // hold no locks.
    unsafe { myst_leave_guest_thread(cb) }
}
