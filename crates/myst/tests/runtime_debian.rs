//! The product promise end to end: take a Debian root (debootstrap minbase
//! with python3 and busybox), build a signed ext2 image with `myst mkext2
//! --sign`, run its unmodified dynamic glibc programs with `myst exec-linux
//! --strict --pubkey`, and compare their stdout and exit status with the
//! same command run natively in `chroot`. A tampered image gives I/O errors,
//! never wrong bytes; the image file never changes.
//!
//! Needs root and debootstrap; otherwise every test says why and skips.

mod debian_util;
use debian_util::*;

use std::path::Path;

/// One command compared between myst and chroot.
struct Case {
    program: &'static str,
    args: Vec<String>,
    /// Compare stderr too (error messages that must match).
    stderr: bool,
}

fn case(program: &'static str, args: &[&str]) -> Case {
    Case {
        program,
        args: args.iter().map(|s| s.to_string()).collect(),
        stderr: false,
    }
}

fn with_stderr(mut c: Case) -> Case {
    c.stderr = true;
    c
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// A bash pipeline of coreutils over the fixed test tree.
const BASH_PIPELINE: &str = r#"set -e
ls -la /srv/myst/sub
sort /srv/myst/words.txt | uniq -c | sort -rn | head -n 5
wc -l -w -c /srv/myst/words.txt /srv/myst/table.csv
cut -d, -f2,3 /srv/myst/table.csv | tr a-z A-Z | sort -t, -k2 | head -n 4
tr -s ' ' '\n' < /srv/myst/words.txt | sort | uniq | wc -l
head -c 48 /srv/myst/data.bin | od -An -tx1
echo "score sum: $(( $(cut -d, -f4 /srv/myst/table.csv | tail -n +2 | paste -sd+) ))"
for f in /srv/myst/sub/*.txt; do printf '%s %s\n' "$(basename "$f")" "$(md5sum < "$f" | cut -c1-12)"; done
readlink /srv/myst/sub/link; cat /srv/myst/sub/link
"#;

/// Python beyond app.py: C extension modules, threads, sockets, ctypes.
const PYTHON_MODULES: &str = r#"import bz2, ctypes, lzma, socket, sqlite3, threading, zlib
c = sqlite3.connect(":memory:")
c.execute("create table t(x)")
c.executemany("insert into t values (?)", [(i,) for i in range(1000)])
print("sqlite", c.execute("select sum(x), count(*) from t").fetchone())
r = []
ts = [threading.Thread(target=lambda i=i: r.append(i * i)) for i in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
print("threads", sorted(r))
a, b = socket.socketpair()
a.sendall(b"ping")
print("socketpair", b.recv(4))
print("strlen", ctypes.CDLL("libc.so.6").strlen(b"hello"))
d = open("/srv/myst/words.txt", "rb").read()
print("zlib", zlib.crc32(zlib.decompress(zlib.compress(d))))
print("bz2", len(bz2.decompress(bz2.compress(d))))
print("lzma", len(lzma.decompress(lzma.compress(d, preset=1))))
"#;

/// Python: fork, subprocess through a shell, asyncio, signals, and files
/// that stay usable after unlink (in /tmp, on the image, in /dev/shm).
const PYTHON_PROCESSES: &str = r#"import asyncio, os, signal, subprocess
pid = os.fork()
if pid == 0:
    os._exit(3)
print("child status", os.WEXITSTATUS(os.waitpid(pid, 0)[1]))
r = subprocess.run("sort -u /srv/myst/words.txt | wc -l", shell=True, capture_output=True, text=True)
print("shell", r.returncode, r.stdout.strip())
async def double(x):
    await asyncio.sleep(0.001)
    return 2 * x
async def main():
    return await asyncio.gather(*[double(i) for i in range(5)])
print("asyncio", asyncio.run(main()))
signal.signal(signal.SIGUSR1, lambda s, f: print("signal", s))
os.kill(os.getpid(), signal.SIGUSR1)
for d in ["/tmp", "/srv/myst", "/dev/shm"]:
    fd = os.open(d + "/gone", os.O_CREAT | os.O_RDWR, 0o600)
    os.unlink(d + "/gone")
    os.write(fd, b"x" * 10000)
    os.lseek(fd, 0, 0)
    print(d, len(os.read(fd, 20000)), os.fstat(fd).st_nlink, os.path.exists(d + "/gone"))
    os.close(fd)
"#;

/// Python multiprocessing: Pool, Queue, Lock, Value and shared_memory (its
/// semaphores are sem_open files in /dev/shm, mapped shared by every
/// process).
const PYTHON_MULTIPROCESSING: &str = r#"import multiprocessing as mp
from multiprocessing import shared_memory
def sq(x): return x * x
def put(q, lock, n):
    with lock:
        q.put(n * 10)
def fill(name):
    s = shared_memory.SharedMemory(name=name)
    s.buf[:5] = b"hello"
    s.close()
def inc(v):
    for _ in range(100):
        with v.get_lock():
            v.value += 1
if __name__ == "__main__":
    with mp.Pool(2) as p:
        print("pool", p.map(sq, range(8)))
    q, lock = mp.Queue(), mp.Lock()
    ps = [mp.Process(target=put, args=(q, lock, i)) for i in range(3)]
    for x in ps: x.start()
    got = sorted(q.get() for _ in ps)
    for x in ps: x.join()
    print("queue", got, [x.exitcode for x in ps])
    shm = shared_memory.SharedMemory(create=True, size=4096)
    c = mp.Process(target=fill, args=(shm.name,))
    c.start(); c.join()
    print("shared_memory", bytes(shm.buf[:5]))
    shm.close(); shm.unlink()
    v = mp.Value("i", 0)
    ps = [mp.Process(target=inc, args=(v,)) for _ in range(3)]
    for x in ps: x.start()
    for x in ps: x.join()
    print("value", v.value)
"#;

/// Busybox applets, run by busybox's own shell.
const BUSYBOX_SCRIPT: &str = r#"busybox seq 1 100 | busybox awk '{ s += $1 } END { print s }'
busybox sort -u /srv/myst/words.txt | busybox wc -l
busybox tar -cf - -C /srv/myst words.txt sub/a.txt sub/link | busybox tar -tvf -
busybox find /srv/myst | busybox sort
busybox grep -c alpha /srv/myst/words.txt
busybox sed -n '2,4p' /srv/myst/table.csv
busybox cut -d, -f3 /srv/myst/table.csv | busybox sort | busybox uniq -c
busybox md5sum /srv/myst/sub/a.txt /srv/myst/table.csv
"#;

/// [`BASH_PIPELINE`] without `ls -la`'s directory sizes and block totals,
/// for roots whose directories are laid out differently from the native
/// side's (a CPIO root keeps them in memory with size 0): names, modes,
/// owners, file sizes and times must still match.
fn pipeline_without_dir_sizes() -> String {
    let p = BASH_PIPELINE.replace(
        "ls -la /srv/myst/sub\n",
        "stat -c '%n %A %U %G %Y' /srv/myst /srv/myst/sub /srv/myst/sub/*\n\
         ls -l /srv/myst/sub/*.txt /srv/myst/sub/link\n",
    );
    assert_ne!(p, BASH_PIPELINE);
    p
}

/// Whether the native side's directories look like ext2's (ext2/3/4
/// report 4096-byte directories; btrfs, xfs and tmpfs do not).
fn host_dirs_like_ext2(root: &Path) -> bool {
    std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(root)
        .output()
        .map(|o| text(&o).trim() == "ext2/ext3")
        .unwrap_or(false)
}

fn cases(pipeline: &str) -> Vec<Case> {
    vec![
        case("/bin/bash", &["-c", pipeline]),
        case(
            "/usr/bin/python3",
            &["-B", "/srv/myst/app.py", "one", "two"],
        ),
        case("/usr/bin/python3", &["-B", "-c", PYTHON_MODULES]),
        case("/usr/bin/python3", &["-B", "-c", PYTHON_MULTIPROCESSING]),
        // The non-PIE python3.11 binary itself.
        case(
            "/usr/bin/python3.11",
            &["-B", "-c", "import json; print(json.dumps([1, 'x', None]))"],
        ),
        case(
            "/bin/busybox",
            &["sha256sum", "/srv/myst/data.bin", "/srv/myst/words.txt"],
        ),
        case("/bin/busybox", &["sh", "-c", BUSYBOX_SCRIPT]),
        case(
            "/bin/sed",
            &[
                "-e",
                "s/alpha/ALPHA/g",
                "-e",
                "/omega/d",
                "/srv/myst/sub/a.txt",
            ],
        ),
        case(
            "/bin/grep",
            &["-c", "-E", "^(alpha|beta) ", "/srv/myst/words.txt"],
        ),
        case("/bin/bash", &["-c", "grep -rn alpha /srv/myst/sub | sort"]),
        case(
            "/bin/bash",
            &[
                "-c",
                "find /srv/myst ! -type d -printf '%p %y %m %s %l\\n' | sort; \
                 find /usr/lib/python3.11/json -name '*.py' -size +2k | sort",
            ],
        ),
        case(
            "/bin/bash",
            &[
                "-c",
                "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
                 -cf - -C /srv/myst . | sha256sum; \
                 tar --sort=name -cf - -C /srv/myst sub | tar -tvf -",
            ],
        ),
        case("/bin/cat", &["/etc/os-release"]),
        case("/usr/bin/sha256sum", &["/bin/bash", "/usr/bin/python3.11"]),
        case(
            "/usr/bin/perl",
            &[
                "-MPOSIX",
                "-e",
                "print join(',', map { $_ * 2 } 1..5), ' ', POSIX::floor(3.7), \"\\n\"",
            ],
        ),
        // NSS: getent loads libnss_files with dlopen.
        case("/usr/bin/getent", &["passwd", "root", "nobody"]),
        case(
            "/usr/bin/dpkg-query",
            &[
                "-W",
                "-f",
                "${Package} ${Version}\\n",
                "bash",
                "coreutils",
                "python3",
                "busybox",
            ],
        ),
        // apt reads the package lists, writing through an unlinked file in /tmp.
        case(
            "/usr/bin/apt-cache",
            &[
                "-o",
                "Dir::Cache::pkgcache=",
                "-o",
                "Dir::Cache::srcpkgcache=",
                "policy",
                "bash",
                "busybox",
            ],
        ),
        case("/usr/bin/python3", &["-B", "-c", PYTHON_PROCESSES]),
        // `#!` scripts as the program.
        case("/bin/zcat", &["--version"]),
        case("/usr/bin/which", &["python3", "bash", "busybox"]),
        case(
            "/bin/egrep",
            &["-c", "^(alpha|beta) ", "/srv/myst/words.txt"],
        ),
        case("/usr/bin/id", &[]),
        case("/usr/bin/env", &[]),
        // Exit statuses and error messages.
        case("/bin/bash", &["-c", "exit 3"]),
        case("/bin/grep", &["-q", "no such words", "/etc/os-release"]),
        with_stderr(case("/bin/cat", &["/srv/myst/missing"])),
        with_stderr(case(
            "/usr/bin/python3",
            &["-B", "-c", "raise SystemExit('boom')"],
        )),
        case(
            "/bin/bash",
            &["-c", "echo before; kill -TERM $$; echo after"],
        ),
        case("/usr/bin/false", &[]),
    ]
}

/// Runs each case under myst (with `opts`, from `image`) and in chroot;
/// returns a description of every difference.
fn compare(d: &Debian, image: &Path, opts: &[&str], cases: &[Case]) -> Vec<String> {
    let mut bad = Vec::new();
    for c in cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let mine = myst_run(opts, image, c.program, &args);
        let nat = chroot_run(&d.root, c.program, &args);
        let what = format!("{} {:?}", c.program, c.args);
        if nat.stdout.is_empty() && status(&nat) == 0 {
            bad.push(format!("{what}: printed nothing natively (a useless case)"));
        }
        if mine.stdout != nat.stdout || status(&mine) != status(&nat) {
            bad.push(format!(
                "{what}:\n--- myst (status {}):\n{}\n--- native (status {}):\n{}\n--- myst stderr:\n{}",
                status(&mine),
                text(&mine),
                status(&nat),
                text(&nat),
                String::from_utf8_lossy(&mine.stderr)
            ));
        } else if c.stderr && mine.stderr != nat.stderr {
            bad.push(format!(
                "{what}: stderr differs:\n--- myst:\n{}\n--- native:\n{}",
                String::from_utf8_lossy(&mine.stderr),
                String::from_utf8_lossy(&nat.stderr)
            ));
        }
    }
    bad
}

#[test]
fn debian_programs_from_a_signed_image_match_chroot() {
    let Some(d) = debian() else { return };
    // The programs are the distribution's own dynamic glibc builds: python3.11
    // a non-PIE executable, bash and busybox PIE.
    for (p, want) in [
        ("usr/bin/python3.11", 2),
        ("usr/bin/bash", 3),
        ("usr/bin/busybox", 3),
    ] {
        assert_eq!(
            elf_kind(&d.root.join(p)),
            Some((want, true)),
            "{p}: ELF type / PT_INTERP"
        );
    }
    let before = sha256(&d.image);
    let pubkey = s(&d.pubkey);
    let opts = ["--strict", "--pubkey", pubkey.as_str()];
    let pipeline = if host_dirs_like_ext2(&d.root) {
        BASH_PIPELINE.to_string()
    } else {
        eprintln!("debian tests: the cache is not on ext2/3/4; not comparing directory sizes");
        pipeline_without_dir_sizes()
    };
    let bad = compare(d, &d.image, &opts, &cases(&pipeline));
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
    // Spot checks that the outputs are what they claim (not two equal errors).
    let out = myst_run(&opts, &d.image, "/bin/cat", &["/etc/os-release"]);
    assert!(
        text(&out).contains("VERSION_CODENAME=bookworm"),
        "{}",
        text(&out)
    );
    let out = myst_run(
        &opts,
        &d.image,
        "/usr/bin/python3",
        &["-B", "/srv/myst/app.py", "x"],
    );
    assert_ok(&out, "app.py");
    let data = std::fs::read(d.root.join("srv/myst/data.bin")).expect("read data.bin");
    let digest = sha256(&d.root.join("srv/myst/data.bin"));
    assert_eq!(data.len(), DATA_LEN);
    assert!(text(&out).contains(&digest), "{}", text(&out));
    assert!(text(&out).contains("\"app.py\""), "{}", text(&out));
    assert!(
        text(&out).ends_with("args ['x'] python (3, 11)\n"),
        "{}",
        text(&out)
    );
    // Unverifiable in strict mode: refused before anything runs.
    let out = myst_run(&["--strict"], &d.image, "/bin/true", &[]);
    assert_eq!(status(&out), 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unverified"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256(&d.image), before, "the image file changed");
}

#[test]
fn debian_programs_from_a_cpio_archive_match_chroot() {
    let Some(d) = debian() else { return };
    let Some(cpio) = &d.cpio else { return };
    let pipeline = pipeline_without_dir_sizes();
    let cases = vec![
        case("/bin/bash", &["-c", &pipeline]),
        case("/usr/bin/python3", &["-B", "/srv/myst/app.py", "cpio"]),
        case("/bin/busybox", &["sh", "-c", BUSYBOX_SCRIPT]),
        case("/bin/cat", &["/etc/os-release"]),
    ];
    let bad = compare(d, cpio, &[], &cases);
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn tampered_debian_image_gives_io_errors_not_wrong_bytes() {
    let Some(d) = debian() else { return };
    let Some(debugfs) = tool("debugfs") else {
        eprintln!("debian tests: skipped the tamper test: debugfs is not installed");
        return;
    };
    // Block 40 of /srv/myst/data.bin (behind the indirect block).
    const BLOCK: usize = 40;
    let out = std::process::Command::new(debugfs)
        .arg("-R")
        .arg(format!("bmap /srv/myst/data.bin {BLOCK}"))
        .arg(&d.image)
        .output()
        .expect("run debugfs");
    assert_ok(&out, "debugfs bmap");
    let phys: u64 = text(&out)
        .trim()
        .parse()
        .expect("debugfs bmap prints a block number");
    let img = d.work.join("tampered.img");
    std::fs::copy(&d.image, &img).expect("copy image");
    let data = std::fs::read(d.root.join("srv/myst/data.bin")).expect("read data.bin");
    let at = phys * 4096 + 7;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img)
            .expect("open copy");
        let mut block = vec![0u8; 4096];
        f.read_exact_at(&mut block, phys * 4096)
            .expect("read block");
        assert_eq!(
            block,
            data[BLOCK * 4096..(BLOCK + 1) * 4096],
            "debugfs bmap points at the file's data"
        );
        f.write_all_at(&[block[7] ^ 0x01], at).expect("flip a byte");
    }
    let pubkey = s(&d.pubkey);
    let opts = ["--strict", "--pubkey", pubkey.as_str()];
    // cat stops at the bad block with EIO; what it printed before is right.
    let out = myst_run(&opts, &img, "/bin/cat", &["/srv/myst/data.bin"]);
    assert_ne!(status(&out), 0, "cat of a tampered file succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Input/output error"), "{err}");
    assert!(
        out.stdout.len() <= BLOCK * 4096 && data.starts_with(&out.stdout),
        "cat printed {} bytes, not a prefix of the file before the bad block",
        out.stdout.len()
    );
    // Python sees OSError(EIO).
    let out = myst_run(
        &opts,
        &img,
        "/usr/bin/python3",
        &[
            "-B",
            "-c",
            "try:\n open('/srv/myst/data.bin','rb').read()\n print('read')\n\
             except OSError as e:\n print('errno', e.errno)",
        ],
    );
    assert_eq!(
        text(&out),
        "errno 5\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Blocks before it and other files still read correctly.
    let out = myst_run(
        &opts,
        &img,
        "/bin/dd",
        &["if=/srv/myst/data.bin", "bs=4096", "count=1", "status=none"],
    );
    assert_ok(&out, "dd of the first block");
    assert_eq!(out.stdout, data[..4096], "first block");
    let out = myst_run(&opts, &img, "/usr/bin/sha256sum", &["/srv/myst/words.txt"]);
    assert_ok(&out, "sha256sum of an intact file");
    assert!(text(&out).starts_with(&sha256(&d.root.join("srv/myst/words.txt"))));
    let _ = std::fs::remove_file(&img);
}
