//! Unmodified dynamic Debian programs (PIE and non-PIE, glibc) run with the
//! host's own root directory as the root file system: ls, bash, python3
//! (threads, TCP sockets, asyncio over epoll). Output equals the native run.

mod runtime_common;
use runtime_common::*;
use std::path::Path;

fn compare(program: &str, args: &[&str]) {
    if !Path::new(program).exists() {
        eprintln!("skipping: {program} not installed");
        return;
    }
    let out = myst_run(&["--memory-size", "1g"], Path::new("/"), program, args);
    let nat = native_run(Path::new(program), args, Path::new("/"));
    assert_ok(&nat, &format!("native {program}"));
    assert_ok(&out, program);
    assert_eq!(text(&out), text(&nat), "{program} {args:?}");
    assert!(!out.stdout.is_empty());
}

#[test]
fn ls_of_a_directory() {
    // Not under /tmp, which the guest sees as its own in-memory /tmp (the
    // checkout itself may live under /tmp, as in CI).
    let base = env!("CARGO_TARGET_TMPDIR");
    let base = if base.starts_with("/tmp/") || base == "/tmp" {
        "/var/tmp"
    } else {
        base
    };
    let d = tempfile::tempdir_in(base).expect("tempdir");
    std::fs::write(d.path().join("a.txt"), "a").expect("write");
    std::fs::create_dir(d.path().join("sub")).expect("mkdir");
    std::os::unix::fs::symlink("a.txt", d.path().join("link")).expect("symlink");
    compare(
        "/bin/ls",
        &["-la", "--time-style=+%s", d.path().to_str().expect("utf-8")],
    );
}

#[test]
fn bash_script() {
    compare("/bin/bash", &["-c", "x=6; echo $((x * 7)); for i in a b; do echo $i; done; echo $(echo nested) | tr a-z A-Z; type cd"]);
}

#[test]
fn python_threads_sockets_asyncio() {
    let script = r#"
import asyncio, hashlib, json, os, socket, threading
print(json.dumps({"k": [1, 2, 3]}), hashlib.sha256(b"myst").hexdigest())
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
port = s.getsockname()[1]
def serve():
    c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()
t = threading.Thread(target=serve); t.start()
c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"tcp ok"); print(c.recv(100)); t.join()
async def handle(r, w):
    w.write((await r.readline()).upper()); await w.drain(); w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    r, w = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
    w.write(b"asyncio ok\n"); print(await r.readline()); w.close(); srv.close()
asyncio.run(main())
print(sorted(os.listdir("/proc/self"))[:3] != [], len([x for x in range(10**5) if x % 7 == 0]))
"#;
    compare("/usr/bin/python3", &["-c", script]);
}

#[test]
fn auxv_hwcap_is_the_kernels() {
    // The guest's AT_HWCAP (from /proc/self/auxv and as ld.so shows it) is the
    // host kernel's CPU feature word, as in a native run.
    let script = r#"
import struct
d = open('/proc/self/auxv', 'rb').read()
pairs = dict(struct.iter_unpack('<QQ', d))
print(len(d) % 16, pairs.get(0, 'no AT_NULL'), pairs[16], pairs[6], pairs[26] & 2)
"#;
    compare("/usr/bin/python3", &["-c", script]);
    compare(
        "/bin/sh",
        &[
            "-c",
            "LD_SHOW_AUXV=1 /bin/true | grep -E '^AT_(HWCAP|PAGESZ|CLKTCK):'",
        ],
    );
}

/// `make -j2` and `make -j8` of a small C project with the host's make and
/// gcc (make blocks SIGCHLD and waits in pselect6 with a mask that unblocks
/// it), repeatedly: every round builds, and the program prints what the
/// native build prints. A hang is cut off by `timeout` and fails.
#[test]
fn make_j_builds_repeatedly() {
    for tool in ["/usr/bin/make", "/usr/bin/gcc", "/usr/bin/timeout"] {
        assert!(Path::new(tool).exists(), "{tool} is needed for this test");
    }
    let base = env!("CARGO_TARGET_TMPDIR");
    let base = if base.starts_with("/tmp/") || base == "/tmp" {
        "/var/tmp"
    } else {
        base
    };
    let d = tempfile::tempdir_in(base).expect("tempdir");
    let dir = d.path();
    let mut decls = String::new();
    let mut sum = String::from("0");
    let mut objs = String::from("main.o");
    for i in 1..=6 {
        std::fs::write(
            dir.join(format!("f{i}.c")),
            format!("int f{i}(void) {{ return {i} * {i}; }}\n"),
        )
        .expect("write");
        decls += &format!("int f{i}(void);\n");
        sum += &format!(" + f{i}()");
        objs += &format!(" f{i}.o");
    }
    std::fs::write(
        dir.join("main.c"),
        format!("#include <stdio.h>\n{decls}int main(void) {{ printf(\"sum=%d\\n\", {sum}); return 0; }}\n"),
    )
    .expect("write");
    std::fs::write(
        dir.join("Makefile"),
        format!("prog: {objs}\n\tgcc -o $@ {objs}\n%.o: %.c\n\tgcc -O1 -c -o $@ $<\nclean:\n\trm -f *.o prog\n"),
    )
    .expect("write");
    let d_s = dir.to_str().expect("utf-8");
    let native = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            &format!("make -s -C {d_s} -j2 && {d_s}/prog && make -s -C {d_s} clean"),
        ])
        .output()
        .expect("native make");
    assert_ok(&native, "native make -j2");
    assert!(text(&native).contains("sum=91"), "{}", text(&native));
    for (jobs, rounds) in [(2, 20), (8, 5)] {
        for round in 0..rounds {
            let script = format!(
                "PATH=/usr/bin:/bin; export PATH; make -s -C {d_s} clean && make -s -C {d_s} -j{jobs} && {d_s}/prog"
            );
            let out = std::process::Command::new("/usr/bin/timeout")
                .args([
                    "120",
                    myst_bin(),
                    "exec-linux",
                    "--memory-size",
                    "1g",
                    "/",
                    "/bin/sh",
                    "-c",
                ])
                .arg(&script)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run myst");
            assert_ok(&out, &format!("make -j{jobs} round {round}"));
            assert_eq!(text(&out), text(&native), "make -j{jobs} round {round}");
        }
    }
}
