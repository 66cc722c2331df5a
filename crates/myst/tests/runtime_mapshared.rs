//! Shared file mappings (mmap MAP_SHARED of files): tests/apps/mapshared.c
//! runs natively (the oracle) and under `myst exec-linux` on a directory
//! root, an ext2 root (`myst mkext2`) and a CPIO root (`myst mkcpio`), with
//! its files in the root's own /data, in /tmp and in /dev/shm. It covers
//! LTP's test-library start-up (a /dev/shm page mapped shared, unlinked,
//! then written by forked children), parent and child, two children that
//! open and map one file on their own, write() seen through mappings,
//! msync/munmap/exit then read(), ftruncate growing and shrinking under a
//! mapping, mprotect, mremap, offsets and MAP_PRIVATE staying private.

mod runtime_common;
use runtime_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    ext2: PathBuf,
    cpio: PathBuf,
    /// (variant, native output)
    native: Vec<(&'static str, String)>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// musl-gcc and gcc static builds are required: a missing compiler fails.
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        for d in ["bin", "data", "tmp"] {
            std::fs::create_dir_all(tree.join(d)).expect("mkdir");
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/apps/mapshared.c");
        let mut native = Vec::new();
        for v in VARIANTS.iter().filter(|v| v.name != "pie") {
            let bin = tree.join(format!("bin/mapshared_{}", v.name));
            let st = Command::new(v.cc)
                .args(v.flags)
                .args(["-O1", "-w", "-pthread", "-o"])
                .arg(&bin)
                .arg(&src)
                .status()
                .unwrap_or_else(|e| panic!("{} is needed for this test: {e}", v.cc));
            assert!(st.success(), "{} could not build mapshared.c", v.cc);
            let scratch = tempfile::tempdir().expect("tempdir");
            let out = native_run(&bin, &[scratch.path().to_str().expect("utf-8")], dir.path());
            assert_ok(&out, &format!("mapshared_{} natively", v.name));
            let want = text(&out);
            assert!(want.ends_with("done\n"), "native run incomplete: {want}");
            native.push((v.name, want));
        }
        let ext2 = dir.path().join("root.img");
        let out = Command::new(myst_bin())
            .arg("mkext2")
            .arg(&tree)
            .arg(&ext2)
            .output()
            .expect("run myst mkext2");
        assert_ok(&out, "myst mkext2");
        let cpio = dir.path().join("root.cpio");
        let out = Command::new(myst_bin())
            .arg("mkcpio")
            .arg(&tree)
            .arg(&cpio)
            .output()
            .expect("run myst mkcpio");
        assert_ok(&out, "myst mkcpio");
        Fixture {
            _dir: dir,
            tree,
            ext2,
            cpio,
            native,
        }
    })
}

fn check_root(root: &Path, what: &str) {
    let f = fixture();
    for (v, want) in &f.native {
        for d in ["/data", "/tmp", "/dev/shm"] {
            let out = myst_run(&[], root, &format!("/bin/mapshared_{v}"), &[d]);
            assert_ok(&out, &format!("mapshared_{v} in {d} of {what}"));
            assert_eq!(&text(&out), want, "mapshared_{v} in {d} of {what}");
        }
    }
}

#[test]
fn shared_mappings_on_a_directory_root() {
    check_root(&fixture().tree, "a directory root");
}

#[test]
fn shared_mappings_on_an_ext2_root() {
    check_root(&fixture().ext2, "an ext2 root");
}

#[test]
fn shared_mappings_on_a_cpio_root() {
    check_root(&fixture().cpio, "a CPIO root");
}

/// Store pages count against --memory-size: a shared mapping that fits is
/// made (as natively), one larger than the budget is ENOMEM, not a crash.
#[test]
fn shared_mappings_stay_inside_the_memory_budget() {
    let f = fixture();
    for (v, _) in &f.native {
        let bin = f.tree.join(format!("bin/mapshared_{v}"));
        let scratch = tempfile::tempdir().expect("tempdir");
        let nat = native_run(
            &bin,
            &[scratch.path().to_str().expect("utf-8"), "big", "8"],
            &f.tree,
        );
        assert_ok(&nat, "mapshared big natively");
        for d in ["/tmp", "/dev/shm"] {
            let prog = format!("/bin/mapshared_{v}");
            let out = myst_run(&["--memory-size", "32m"], &f.ext2, &prog, &[d, "big", "8"]);
            assert_ok(&out, &format!("mapshared_{v} big 8 in {d}"));
            assert_eq!(text(&out), text(&nat), "mapshared_{v} big 8 in {d}");
            let out = myst_run(
                &["--memory-size", "32m"],
                &f.ext2,
                &prog,
                &[d, "big", "100"],
            );
            assert_ok(&out, &format!("mapshared_{v} big 100 in {d}"));
            assert_eq!(text(&out), "big: ENOMEM\n", "mapshared_{v} big 100 in {d}");
        }
    }
}
