//! Errors are one line, `myst: error: ...`, exit status 1, naming the file
//! and saying each cause once.

use std::process::Command;

fn fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_myst"))
        .args(args)
        .output()
        .expect("run myst");
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn errors_are_one_line_with_each_cause_once() {
    let t = tempfile::tempdir().unwrap();
    let junk = t.path().join("junk.img");
    std::fs::write(&junk, vec![0x5a; 100_000]).unwrap();
    let small = t.path().join("tiny.bin");
    std::fs::write(&small, b"tiny").unwrap();
    let j = junk.to_str().unwrap();
    for (args, needle) in [
        (vec!["fssig", small.to_str().unwrap()], "too small"),
        (vec!["cat", j, "/x"], "not an ext2 file system"),
        (vec!["exec-linux", j, "/bin/x"], "not an ext2 file system"),
        (
            vec!["excpio", j, t.path().join("x").to_str().unwrap()],
            "CPIO",
        ),
    ] {
        let err = fails(&args);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("myst: error: "), "{args:?}: {err}");
        assert_eq!(err.matches(needle).count(), 1, "{args:?}: {err}");
        let file = if args[0] == "fssig" {
            "small"
        } else {
            "junk.img"
        };
        assert_eq!(err.matches(file).count(), 1, "{args:?}: {err}");
    }
}
