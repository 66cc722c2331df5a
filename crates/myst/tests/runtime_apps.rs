//! The runtime runs unmodified static programs (musl, glibc, static-PIE) from
//! a directory root; their output matches the same program run natively.

mod runtime_common;
use runtime_common::*;

#[test]
fn hello_every_variant_matches_native() {
    let r = root();
    assert!(
        !r.variants.is_empty() || !std::path::Path::new("/usr/bin/gcc").exists(),
        "no variant built"
    );
    for v in &r.variants {
        let bin = format!("hello_{v}");
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &["one", "two words"]);
        assert_ok(&out, &bin);
        assert_eq!(
            text(&out),
            "Hello World!\narg 1: one\narg 2: two words\n",
            "{bin}"
        );
        let nat = native_run(
            &r.path.join("bin").join(&bin),
            &["one", "two words"],
            &r.path,
        );
        assert_eq!(out.stdout, nat.stdout, "{bin}: myst and native differ");
    }
}

#[test]
fn argv_and_environment() {
    let r = root();
    for v in &r.variants {
        let bin = format!("env_{v}");
        let args = ["--flag-for-program", "-x", "a b", ""];
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &args);
        assert_ok(&out, &bin);
        let nat = native_run(&r.path.join("bin").join(&bin), &args, &r.path);
        assert_eq!(text(&out), text(&nat), "{bin}");
        assert!(text(&out).contains("env MYST_TARGET=linux\n"));
        assert_eq!(
            text(&out).matches("env ").count(),
            1,
            "no host variables may leak: {}",
            text(&out)
        );
    }
}

#[test]
fn file_io_in_tmp_and_on_the_root() {
    let r = root();
    for v in &r.variants {
        let bin = format!("fileio_{v}");
        let scratch = tempfile::tempdir().expect("tempdir");
        let nat = native_run(
            &r.path.join("bin").join(&bin),
            &[scratch.path().to_str().expect("utf-8")],
            &r.path,
        );
        assert_ok(&nat, "native fileio");
        assert!(text(&nat).contains("cleanup ok"), "{}", text(&nat));
        // /tmp is the runtime's in-memory file system.
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &["/tmp"]);
        assert_ok(&out, &bin);
        assert_eq!(text(&out), text(&nat), "{bin} in /tmp");
        // A directory of the root file system (hostfs: writes reach the host).
        let (host, guest) = data_dir(r, &format!("fileio-{v}"));
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[&guest]);
        assert_ok(&out, &bin);
        assert_eq!(text(&out), text(&nat), "{bin} on the root");
        assert_eq!(
            std::fs::read_dir(&host).expect("read data dir").count(),
            0,
            "the program removed what it created"
        );
    }
}

#[test]
fn file_written_by_guest_reaches_directory_root() {
    let r = root();
    let Some(v) = r.variants.first() else { return };
    let (host, guest) = data_dir(r, "written");
    // fileio leaves nothing behind; run errors, which creates and removes,
    // then check a file the guest creates through the shell-less path: use
    // the fileio program's failure mode by making `work` pre-exist.
    std::fs::create_dir(host.join("work")).expect("mkdir");
    let out = myst_run(&[], &r.path, &format!("/bin/fileio_{v}"), &[&guest]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("FAIL mkdir(\"work\", 0755): File exists"),
        "{}",
        text(&out)
    );
}

#[test]
fn error_paths_match_native() {
    let r = root();
    for v in &r.variants {
        let bin = format!("errors_{v}");
        let scratch = tempfile::tempdir().expect("tempdir");
        let nat = native_run(
            &r.path.join("bin").join(&bin),
            &[scratch.path().to_str().expect("utf-8")],
            &r.path,
        );
        assert_ok(&nat, "native errors");
        for dir in ["/tmp", "root"] {
            let guest = if dir == "root" {
                data_dir(r, &format!("errors-{v}")).1
            } else {
                dir.to_string()
            };
            let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[&guest]);
            assert_ok(&out, &bin);
            assert_eq!(text(&out), text(&nat), "{bin} in {dir}");
        }
        for want in [
            "open missing                 ENOENT",
            "mkdir existing               EEXIST",
            "open file/x                  ENOTDIR",
            "open dir O_WRONLY            EISDIR",
            "getcpu                       OK",
            "getcpu bad pointer           EFAULT",
        ] {
            assert!(text(&nat).contains(want), "native output lacks {want:?}");
        }
    }
}

#[test]
fn exit_codes_and_signals() {
    let r = root();
    for v in &r.variants {
        let p = format!("/bin/exitcode_{v}");
        let out = myst_run(&[], &r.path, &p, &["42"]);
        assert_eq!(out.status.code(), Some(42), "{p}");
        assert_eq!(text(&out), "exiting with 42\n");
        let out = myst_run(&[], &r.path, &p, &["7", "_exit"]);
        assert_eq!(out.status.code(), Some(7), "{p} via _exit");
        let out = myst_run(&[], &r.path, &p, &["0"]);
        assert_eq!(out.status.code(), Some(0));
        let out = myst_run(&[], &r.path, &p, &["kill", "15"]);
        assert_eq!(out.status.code(), Some(128 + 15), "{p} killed by SIGTERM");
        let out = myst_run(&[], &r.path, &p, &["kill", "9"]);
        assert_eq!(out.status.code(), Some(128 + 9), "{p} killed by SIGKILL");
    }
}

#[test]
fn raw_syscall_instruction_is_caught() {
    let r = root();
    for v in &r.variants {
        let bin = format!("rawsyscall_{v}");
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[]);
        assert_ok(&out, &bin);
        let nat = native_run(&r.path.join("bin").join(&bin), &[], &r.path);
        assert_eq!(text(&out), text(&nat));
        assert_eq!(
            text(&out),
            "raw write ok\nwrote 13, pid matches 1, bad pointer -14, unknown -38\n"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.matches("unhandled syscall").count(),
            1,
            "logged once: {err}"
        );
        // Unknown syscalls can be made fatal.
        let out = myst_run(
            &["--unhandled-syscall-enosys", "false"],
            &r.path,
            &format!("/bin/{bin}"),
            &[],
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("unhandled syscall"));
    }
}

#[test]
fn strace_shows_syscalls() {
    let r = root();
    let Some(v) = r.variants.first() else { return };
    let out = myst_run(&["--strace"], &r.path, &format!("/bin/hello_{v}"), &[]);
    assert_ok(&out, "strace");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("write(1, ") || err.contains("writev(1, "),
        "{err}"
    );
    assert!(err.contains(") = 13\n"), "{err}");
    assert!(err.contains("exit_group(0) = ?"), "{err}");
    assert_eq!(text(&out), "Hello World!\n");
    // --strace-filter prints only the named calls (Mystikos's SYS_ prefix accepted).
    let out = myst_run(
        &["--strace-filter", "SYS_exit_group:brk"],
        &r.path,
        &format!("/bin/hello_{v}"),
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .all(|l| l.starts_with("brk(") || l.starts_with("exit_group(")),
        "{err}"
    );
    assert!(err.contains("exit_group(0) = ?"), "{err}");
}

#[test]
fn startup_errors_are_clear() {
    let r = root();
    let out = myst_run(&[], &r.path, "/bin/does-not-exist", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("myst: error: ")
            && err.contains("/bin/does-not-exist")
            && err.contains("not found"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = myst_run(&[], &r.path, "bin/hello_musl", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absolute"));
    let out = myst_run(
        &[],
        std::path::Path::new("/nonexistent-root"),
        "/bin/x",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-root"));
    let out = myst_run(&[], &r.path, "/bin", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
}

#[test]
fn dynamic_glibc_program_with_its_own_loader() {
    let r = root();
    let ld = std::path::Path::new("/lib64/ld-linux-x86-64.so.2");
    let libc = std::path::Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    if !ld.exists() || !libc.exists() || !r.variants.contains(&"glibc") {
        eprintln!("skipping: no glibc loader on this host");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for d in ["bin", "lib64", "lib/x86_64-linux-gnu"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy(ld, root.join("lib64/ld-linux-x86-64.so.2")).expect("copy ld.so");
    std::fs::copy(libc, root.join("lib/x86_64-linux-gnu/libc.so.6")).expect("copy libc");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/apps/hello.c");
    let st = std::process::Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(root.join("bin/hello"))
        .arg(src)
        .status()
        .expect("gcc");
    assert!(st.success());
    let out = myst_run(&[], root, "/bin/hello", &["dyn"]);
    assert_ok(&out, "dynamic hello");
    assert_eq!(text(&out), "Hello World!\narg 1: dyn\n");
}

#[test]
fn guest_signal_handlers_and_masks() {
    let r = root();
    for v in &r.variants {
        let bin = format!("signals_{v}");
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[]);
        assert_ok(&out, &bin);
        let nat = native_run(&r.path.join("bin").join(&bin), &[], &r.path);
        assert_eq!(text(&out), text(&nat), "{bin}");
        assert!(
            text(&out).contains("after unblock: count=2"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn posix_threads() {
    let r = root();
    for v in &r.variants {
        let bin = format!("threads_{v}");
        for _ in 0..3 {
            let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[]);
            assert_ok(&out, &bin);
            assert_eq!(
                text(&out),
                "total=200020000 tls-results=6006 main-tls=7 churn=500\n",
                "{bin}"
            );
        }
    }
}

#[test]
fn signals_during_syscall_loops_with_and_without_rewriting() {
    let r = root();
    for v in &r.variants {
        let bin = format!("sigstress_{v}");
        for rewrite in ["true", "false"] {
            let out = myst_run(
                &["--rewrite-syscalls", rewrite],
                &r.path,
                &format!("/bin/{bin}"),
                &[],
            );
            assert_ok(&out, &bin);
            assert_eq!(
                text(&out),
                "calls=600000 fp-ok=1 handler-ran=1 fp-in-handler-ok=1 timer-ran=1\n",
                "{bin} rewrite={rewrite}"
            );
        }
    }
}

#[test]
fn rewriting_does_not_change_results() {
    let r = root();
    for v in &r.variants {
        for app in ["fileio", "errors"] {
            let bin = format!("/bin/{app}_{v}");
            let a = myst_run(&["--rewrite-syscalls", "false"], &r.path, &bin, &["/tmp"]);
            let b = myst_run(&["--rewrite-syscalls", "true"], &r.path, &bin, &["/tmp"]);
            assert_ok(&a, &bin);
            assert_eq!(text(&a), text(&b), "{bin}");
        }
    }
}

#[test]
fn select_poll_timers_and_signal_waits() {
    let r = root();
    for v in &r.variants {
        let bin = format!("waits_{v}");
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[]);
        assert_ok(&out, &bin);
        let nat = native_run(&r.path.join("bin").join(&bin), &[], &r.path);
        assert_eq!(text(&out), text(&nat), "{bin}");
        assert!(
            text(&out).contains("sigsuspend: -1 EINTR alarms=1\npause: -1 EINTR alarms=2\n"),
            "{}",
            text(&out)
        );
    }
}

/// The waits of make -j and friends: temporary masks of pselect6, ppoll,
/// epoll_pwait and sigsuspend applied atomically, handled signals
/// interrupting select, poll, read and nanosleep (SA_RESTART restarting
/// read), SA_RESETHAND, a SIGSYS sent with kill; with and without rewritten
/// syscall sites, compared with the native run (every wait has a 20 s
/// timeout, so a hang shows up as "0 (timeout)").
#[test]
fn signals_interrupt_waits_and_temporary_masks_apply() {
    let r = root();
    for v in &r.variants {
        let bin = format!("sigwait_{v}");
        let nat = native_run(&r.path.join("bin").join(&bin), &[], &r.path);
        assert_ok(&nat, &bin);
        assert!(
            text(&nat).contains("pselect (pending SIGCHLD): -1 EINTR handled=1"),
            "native: {}",
            text(&nat)
        );
        for rewrite in ["true", "false"] {
            let out = myst_run(
                &["--rewrite-syscalls", rewrite],
                &r.path,
                &format!("/bin/{bin}"),
                &[],
            );
            assert_ok(&out, &bin);
            assert_eq!(text(&out), text(&nat), "{bin} rewrite={rewrite}");
        }
    }
}

/// A thread blocked in read, write, accept, recv, poll, select,
/// epoll_wait, a futex, waitpid or nanosleep does not stop another thread's
/// mmap, open and fork (no runtime lock is held across a blocking call).
#[test]
fn blocking_calls_hold_no_runtime_lock() {
    let r = root();
    for v in &r.variants {
        let bin = format!("blocklock_{v}");
        let nat = native_run(&r.path.join("bin").join(&bin), &[], &r.path);
        assert_ok(&nat, &bin);
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[]);
        assert_ok(&out, &bin);
        assert_eq!(text(&out), text(&nat), "{bin}");
        assert_eq!(
            text(&out).matches("waiter-ok=1").count(),
            10,
            "{}",
            text(&out)
        );
    }
}

/// The nginx master/worker channel: FIOASYNC and F_SETOWN on a socketpair
/// (SIGIO), SCM_RIGHTS descriptors passed to a forked worker and back,
/// SCM_CREDENTIALS, MSG_CMSG_CLOEXEC; compared with the native run.
#[test]
fn sigio_and_descriptor_passing() {
    let r = root();
    for v in &r.variants {
        let bin = format!("sockpass_{v}");
        let nat = native_run(&r.path.join("bin").join(&bin), &[], &r.path);
        assert_ok(&nat, &bin);
        assert!(
            text(&nat).contains("child read through passed fd: 25"),
            "native: {}",
            text(&nat)
        );
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[]);
        assert_ok(&out, &bin);
        assert_eq!(text(&out), text(&nat), "{bin}");
    }
}

/// Process groups and sessions are the host's: setpgid(0, 0), kill(-pgid)
/// reaching grandchildren, setpgid(child, child), waitpid(-pgid), setsid;
/// sigqueue's value and SI_QUEUE arrive; compared with the native run.
#[test]
fn process_groups_sessions_and_sigqueue() {
    let r = root();
    for v in &r.variants {
        let bin = format!("pgroups_{v}");
        let nat = native_run(&r.path.join("bin").join(&bin), &[], &r.path);
        assert_ok(&nat, &bin);
        assert!(
            text(&nat).contains("members killed (pipe EOF): 1"),
            "native: {}",
            text(&nat)
        );
        let out = myst_run(&[], &r.path, &format!("/bin/{bin}"), &[]);
        assert_ok(&out, &bin);
        assert_eq!(text(&out), text(&nat), "{bin}");
    }
}

/// pthread_cancel of a thread blocked in read() and of one in
/// pthread_cond_wait: cancelled with cleanup handlers run, 20 rounds each,
/// with and without rewritten syscall sites; compared with the native run.
#[test]
fn thread_cancellation_in_blocking_calls() {
    let r = root();
    for v in &r.variants {
        let bin = format!("cancel_{v}");
        let nat = native_run(&r.path.join("bin").join(&bin), &[], &r.path);
        assert_ok(&nat, &bin);
        assert!(text(&nat).contains("read: 20/20"), "native: {}", text(&nat));
        for rewrite in ["true", "false"] {
            let out = myst_run(
                &["--rewrite-syscalls", rewrite],
                &r.path,
                &format!("/bin/{bin}"),
                &[],
            );
            assert_ok(&out, &bin);
            assert_eq!(text(&out), text(&nat), "{bin} rewrite={rewrite}");
        }
    }
}
