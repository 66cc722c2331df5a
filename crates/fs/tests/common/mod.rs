//! Helpers shared by the ext2 tests: images from mke2fs, tree walks.
#![allow(dead_code)]

use myst_blockdev::mem::MemDevice;
use myst_blockdev::BlockDevice;
use myst_fs::ext2::{Ext2Fs, MountOptions};
use myst_fs::{FileSystem, FileType, Ino};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// True when a tool is installed; otherwise prints why the test skips.
pub fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "command -v {tool} || test -x /usr/sbin/{tool} || test -x /sbin/{tool}"
        ))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

/// Runs a command and collects its output, retrying while the executable
/// is busy (ETXTBSY: something on this shared machine has it open for
/// writing, e.g. a package upgrade).
pub fn output(cmd: &mut Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            r => return r.unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
        }
    }
    panic!("{cmd:?}: executable stayed busy")
}

/// Runs a command, panicking with its output on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mke2fs -t ext2` of `size_kib` KiB into `img`, from `tree` when given.
pub fn mke2fs(
    img: &Path,
    size_kib: u64,
    block: u32,
    inode: u32,
    tree: Option<&Path>,
    extra: &[&str],
) {
    let _ = std::fs::remove_file(img);
    let mut c = Command::new("mke2fs");
    c.args([
        "-q",
        "-F",
        "-t",
        "ext2",
        "-b",
        &block.to_string(),
        "-I",
        &inode.to_string(),
    ]);
    c.args(["-E", "root_owner=0:0"]);
    c.args(extra);
    if let Some(t) = tree {
        c.arg("-d").arg(t);
    }
    c.arg(img).arg(format!("{size_kib}k"));
    c.env("E2FSPROGS_FAKE_TIME", "1700000000");
    run(&mut c);
}

/// Mounts image bytes on an in-memory device (writable).
pub fn mount_mem(data: Vec<u8>, dev_bs: usize) -> (Arc<MemDevice>, Ext2Fs) {
    let dev = Arc::new(MemDevice::from_vec(dev_bs, data));
    let fs = Ext2Fs::mount(
        dev.clone() as Arc<dyn BlockDevice>,
        &MountOptions::default(),
    )
    .expect("mount");
    (dev, fs)
}

/// What a tree walk sees for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Regular file contents and permissions.
    File(Vec<u8>, u32),
    /// Directory permissions.
    Dir(u32),
    /// Symlink target.
    Link(Vec<u8>),
    /// Other inode: type and permissions.
    Other(FileType, u32),
}

/// Walks the whole file system: path -> node.
pub fn walk_fs(fs: &dyn FileSystem) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk_dir(fs, fs.root(), String::new(), &mut out);
    out
}

fn walk_dir(fs: &dyn FileSystem, dir: Ino, path: String, out: &mut BTreeMap<String, Node>) {
    for e in fs.readdir(dir).expect("readdir") {
        if e.name == b"." || e.name == b".." || (path.is_empty() && e.name == b"lost+found") {
            continue;
        }
        let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
        let a = fs.getattr(e.ino).expect("getattr");
        assert_eq!(a.kind, e.kind, "{p}: dirent type vs inode");
        let node = match a.kind {
            FileType::Regular => {
                let mut buf = vec![0u8; a.size as usize];
                let n = fs.read(e.ino, 0, &mut buf).expect("read");
                assert_eq!(n as u64, a.size);
                Node::File(buf, a.perm)
            }
            FileType::Directory => {
                walk_dir(fs, e.ino, p.clone(), out);
                Node::Dir(a.perm)
            }
            FileType::Symlink => Node::Link(fs.readlink(e.ino).expect("readlink")),
            k => Node::Other(k, a.perm),
        };
        out.insert(p, node);
    }
}

/// Walks a host directory the same way.
pub fn walk_host(root: &Path) -> BTreeMap<String, Node> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, path)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = String::from_utf8_lossy(e.file_name().as_bytes()).into_owned();
            if path.is_empty() && name == "lost+found" {
                continue;
            }
            let p = format!("{path}/{name}");
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let perm = md.permissions().mode() & 0o7777;
            let ft = md.file_type();
            let node = if ft.is_symlink() {
                Node::Link(
                    std::fs::read_link(e.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if ft.is_dir() {
                stack.push((e.path(), p.clone()));
                Node::Dir(perm)
            } else if ft.is_file() {
                Node::File(std::fs::read(e.path()).unwrap(), perm)
            } else {
                use std::os::unix::fs::FileTypeExt;
                let k = if ft.is_fifo() {
                    FileType::Fifo
                } else if ft.is_socket() {
                    FileType::Socket
                } else if ft.is_char_device() {
                    FileType::CharDev
                } else {
                    FileType::BlockDev
                };
                Node::Other(k, perm)
            };
            out.insert(p, node);
        }
    }
    out
}

/// Builds a small varied tree: nested dirs, sizes around block boundaries,
/// sparse-looking data, symlinks fast and slow, hard links, a fifo.
pub fn make_tree(root: &Path, seed: u64) {
    use std::os::unix::fs::PermissionsExt;
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    for (i, size) in [
        0usize,
        1,
        59,
        60,
        1023,
        1024,
        1025,
        4095,
        4096,
        4097,
        12 * 1024 + 5,
        300_000,
    ]
    .iter()
    .enumerate()
    {
        let data: Vec<u8> = (0..*size).map(|_| rnd() as u8).collect();
        std::fs::write(root.join(format!("a/f{i}")), &data).unwrap();
    }
    let big: Vec<u8> = (0..1_300_000)
        .map(|i| (i as u64 * 31 % 251) as u8)
        .collect();
    std::fs::write(root.join("a/b/c/big"), &big).unwrap();
    for i in 0..150 {
        std::fs::write(
            root.join(format!("many/file-with-a-longer-name-{i:04}")),
            format!("{i}\n"),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("f1", root.join("a/fast")).unwrap();
    std::os::unix::fs::symlink("x".repeat(200), root.join("a/slow")).unwrap();
    std::fs::hard_link(root.join("a/f3"), root.join("a/b/hard")).unwrap();
    std::fs::set_permissions(root.join("a/f2"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let _ = Command::new("mkfifo").arg(root.join("a/fifo")).status();
}
