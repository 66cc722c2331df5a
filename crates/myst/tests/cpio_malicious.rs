//! `myst excpio` on hand-built malicious archives: each is refused (or
//! defused) and nothing is written outside the extraction directory.

mod cpio_util;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cpio_util::*;

const FILE: u32 = 0o100644;
const DIR: u32 = 0o040755;
const LINK: u32 = 0o120777;

/// One newc entry, encoded by hand (independently of myst's writer).
fn raw(
    magic: &str,
    name: &[u8],
    mode: u32,
    nlink: u32,
    ino: u32,
    data: &[u8],
    check: u32,
) -> Vec<u8> {
    let mut v = format!(
        "{magic}{ino:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{check:08X}",
        0,
        0,
        1_600_000_000,
        data.len(),
        0,
        0,
        0,
        0,
        name.len() + 1
    )
    .into_bytes();
    v.extend_from_slice(name);
    v.push(0);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v.extend_from_slice(data);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

fn ent(name: &[u8], mode: u32, data: &[u8]) -> Vec<u8> {
    raw("070701", name, mode, 1, 1, data, 0)
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut a = entries.concat();
    a.extend(raw("070701", b"TRAILER!!!", 0, 1, 0, b"", 0));
    while a.len() % 512 != 0 {
        a.push(0);
    }
    a
}

/// A scratch area: `outside/` (with a sentinel file) next to the extraction
/// directory `dir/`. `check` asserts that nothing outside `dir` changed.
struct Arena {
    _t: tempfile::TempDir,
    top: PathBuf,
    outside: PathBuf,
    dir: PathBuf,
    archive: PathBuf,
}

impl Arena {
    fn new() -> Arena {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().to_path_buf();
        let outside = top.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), b"orig").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
        set_mtime(&outside, 1_000_000_000);
        let dir = top.join("dir");
        fs::create_dir(&dir).unwrap();
        let archive = top.join("evil.cpio");
        Arena {
            _t: t,
            top,
            outside,
            dir,
            archive,
        }
    }

    fn outside_str(&self) -> &str {
        self.outside.to_str().unwrap()
    }

    fn excpio(&self, bytes: &[u8]) -> std::process::Output {
        fs::write(&self.archive, bytes).unwrap();
        myst()
            .arg("excpio")
            .arg(&self.archive)
            .arg(&self.dir)
            .output()
            .unwrap()
    }

    /// Runs excpio, which must fail with one error line containing `want`.
    fn refused(&self, bytes: &[u8], want: &str) {
        fs::write(&self.archive, bytes).unwrap();
        let err = fails(myst().arg("excpio").arg(&self.archive).arg(&self.dir));
        assert!(err.starts_with("myst: error: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "expected {want:?} in: {err}");
        self.check();
    }

    fn check(&self) {
        let mut top: Vec<String> = fs::read_dir(&self.top)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(
            top,
            ["dir", "evil.cpio", "outside"],
            "something was written next to DIR"
        );
        let names: Vec<String> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["sentinel"], "something was written outside DIR");
        assert_eq!(fs::read(self.outside.join("sentinel")).unwrap(), b"orig");
        let md = fs::metadata(&self.outside).unwrap();
        assert_eq!((md.mode() & 0o7777, md.mtime()), (0o755, 1_000_000_000));
        let md = fs::metadata(self.outside.join("sentinel")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o644);
    }

    fn dir_is_empty(&self) -> bool {
        fs::read_dir(&self.dir).unwrap().next().is_none()
    }
}

#[test]
fn escaping_names_are_refused_before_anything_is_written() {
    let x = Arena::new();
    let abs = format!("{}/evil", x.outside_str());
    let o = x.outside_str();
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "absolute name",
            vec![ent(b"ok", FILE, b"1"), ent(abs.as_bytes(), FILE, b"x")],
            "absolute",
        ),
        (
            "dot-dot",
            vec![ent(b"ok", FILE, b"1"), ent(b"../outside/evil", FILE, b"x")],
            "`..`",
        ),
        (
            "nested dot-dot",
            vec![
                ent(b"a", DIR, b""),
                ent(b"a/../../outside/evil", FILE, b"x"),
            ],
            "`..`",
        ),
        ("bare dot-dot", vec![ent(b"..", DIR, b"")], "`..`"),
        (
            "through an absolute symlink",
            vec![
                ent(b"link", LINK, o.as_bytes()),
                ent(b"link/evil", FILE, b"x"),
            ],
            "symbolic link",
        ),
        (
            "through a relative symlink",
            vec![ent(b"up", LINK, b".."), ent(b"up/outside/evil", FILE, b"x")],
            "symbolic link",
        ),
        (
            "through a symlink spelled differently",
            vec![
                ent(b"./l", LINK, o.as_bytes()),
                ent(b"l//./evil", FILE, b"x"),
            ],
            "symbolic link",
        ),
        (
            "directory turned symlink",
            vec![
                ent(b"d", DIR, b""),
                ent(b"d", LINK, o.as_bytes()),
                ent(b"d/evil", FILE, b"x"),
            ],
            "symbolic link",
        ),
        (
            "symlink then deeper path",
            vec![
                ent(b"a", DIR, b""),
                ent(b"a/b", LINK, b"../.."),
                ent(b"a/b/c/evil", FILE, b"x"),
            ],
            "symbolic link",
        ),
        (
            "root as a symlink",
            vec![ent(b".", LINK, o.as_bytes())],
            "extraction directory",
        ),
        (
            "huge symlink target",
            vec![ent(b"l", LINK, &[b'a'; 5000])],
            "absurd",
        ),
        (
            "empty symlink target",
            vec![ent(b"l", LINK, b"")],
            "empty target",
        ),
    ];
    for (what, entries, want) in cases {
        eprintln!("case: {what}");
        x.refused(&archive(&entries), want);
        assert!(x.dir_is_empty(), "{what}: something was extracted");
    }
}

#[test]
fn broken_archives_are_refused_before_anything_is_written() {
    let x = Arena::new();
    let good = archive(&[ent(b"a", FILE, &[7u8; 1000]), ent(b"b", FILE, b"bbb")]);
    assert!(x.excpio(&good).status.success());
    fs::remove_file(x.dir.join("a")).unwrap();
    fs::remove_file(x.dir.join("b")).unwrap();

    let mut huge = ent(b"a", FILE, b"");
    huge[54..62].copy_from_slice(b"FFFFFFFF");
    let mut huge_name = ent(b"a", FILE, b"");
    huge_name[94..102].copy_from_slice(b"FFFFFFF0");
    let mut bad_crc = raw("070702", b"f", FILE, 1, 1, b"data", 12345);
    bad_crc.extend(raw("070702", b"TRAILER!!!", 0, 1, 0, b"", 0));
    let mut no_trailer = ent(b"a", FILE, b"x");
    no_trailer.extend(ent(b"b", FILE, b"y"));
    let mut bad_hex = good.clone();
    bad_hex[7] = b'Z';
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("cut in the data", good[..400].to_vec(), "truncated"),
        ("cut in a header", good[..1150].to_vec(), "truncated"),
        ("cut in a name", good[..112].to_vec(), "truncated"),
        ("absurd file size", archive(&[huge]), "4294967295 bytes"),
        ("absurd name size", archive(&[huge_name]), "name size"),
        ("bad checksum", bad_crc, "checksum"),
        ("no trailer", no_trailer, "TRAILER"),
        ("bad hex", bad_hex, "not 8 hex digits"),
        (
            "not cpio",
            b"\x7fELF not an archive at all, sorry.".to_vec(),
            "not a newc",
        ),
        ("empty file", Vec::new(), "TRAILER"),
        (
            "directory with data",
            archive(&[ent(b"d", DIR, b"data")]),
            "Directory",
        ),
    ];
    for (what, bytes, want) in cases {
        eprintln!("case: {what}");
        x.refused(&bytes, want);
        assert!(x.dir_is_empty(), "{what}: something was extracted");
    }
}

#[test]
fn symlinks_already_in_dir_are_never_followed() {
    let x = Arena::new();
    // A directory symlink in DIR: going through it is refused.
    symlink(&x.outside, x.dir.join("pre")).unwrap();
    x.refused(&archive(&[ent(b"pre/evil", FILE, b"x")]), "symbolic link");
    x.refused(
        &archive(&[ent(b"pre/sub/evil", FILE, b"x")]),
        "symbolic link",
    );
    x.refused(&archive(&[ent(b"pre/sub", DIR, b"")]), "symbolic link");

    // A symlink where the archive puts a file, a directory or a link: it is
    // replaced, and its target is left alone (contents, mode, mtime).
    symlink(x.outside.join("sentinel"), x.dir.join("victim")).unwrap();
    symlink(&x.outside, x.dir.join("vdir")).unwrap();
    symlink(&x.outside, x.dir.join("vlink")).unwrap();
    let a = archive(&[
        ent(b".", 0o040700, b""),
        ent(b"victim", 0o100600, b"EVIL"),
        ent(b"vdir", 0o040777, b""),
        ent(b"vdir/inside", FILE, b"ok"),
        ent(b"vlink", LINK, b"elsewhere"),
    ]);
    let out = x.excpio(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    x.check();
    let v = fs::symlink_metadata(x.dir.join("victim")).unwrap();
    assert!(v.file_type().is_file());
    assert_eq!(fs::read(x.dir.join("victim")).unwrap(), b"EVIL");
    assert!(fs::symlink_metadata(x.dir.join("vdir")).unwrap().is_dir());
    assert_eq!(fs::read(x.dir.join("vdir/inside")).unwrap(), b"ok");
    assert_eq!(
        fs::read_link(x.dir.join("vlink")).unwrap(),
        Path::new("elsewhere")
    );
    // The root entry applies to DIR itself, not through anything.
    assert_eq!(fs::metadata(&x.dir).unwrap().mode() & 0o7777, 0o700);
}

#[test]
fn hard_link_entries_cannot_write_through_symlinks() {
    let x = Arena::new();
    let o = format!("{}/sentinel", x.outside_str());
    // GNU convention: "s" is a data-less link of inode 5, whose data comes
    // with "d". "s" first exists as a symlink to a file outside.
    let a = archive(&[
        ent(b"s", LINK, o.as_bytes()),
        raw("070701", b"s", FILE, 2, 5, b"", 0),
        raw("070701", b"d", FILE, 2, 5, b"EVIL", 0),
    ]);
    let out = x.excpio(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    x.check();
    assert_eq!(fs::read(x.dir.join("s")).unwrap(), b"EVIL");
    assert_eq!(
        fs::metadata(x.dir.join("s")).unwrap().ino(),
        fs::metadata(x.dir.join("d")).unwrap().ino()
    );
    // A waiting link below a symlink of the archive is refused up front.
    let x = Arena::new();
    let a = archive(&[
        ent(b"l", LINK, x.outside_str().as_bytes()),
        raw("070701", b"l/evil", FILE, 2, 6, b"", 0),
        raw("070701", b"d", FILE, 2, 6, b"EVIL", 0),
    ]);
    x.refused(&a, "symbolic link");
    assert!(x.dir_is_empty());
}

#[test]
fn gnu_style_links_without_data_become_empty_linked_files() {
    let x = Arena::new();
    let a = archive(&[
        raw("070701", b"e1", FILE, 2, 9, b"", 0),
        raw("070701", b"e2", FILE, 2, 9, b"", 0),
        raw("070701", b"f", FILE, 2, 3, b"data", 0),
        raw("070701", b"g", FILE, 2, 3, b"", 0),
    ]);
    let out = x.excpio(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    x.check();
    let ino = |n: &str| fs::metadata(x.dir.join(n)).unwrap().ino();
    assert_eq!(ino("e1"), ino("e2"));
    assert_eq!(fs::read(x.dir.join("e2")).unwrap(), b"");
    // A data-less link after the data (old writers) is linked too.
    assert_eq!(ino("f"), ino("g"));
    assert_eq!(fs::read(x.dir.join("g")).unwrap(), b"data");
}
