//! The LTP gate: every entry of tests/ltp/pass.txt (entries of LTP's
//! runtest/syscalls that pass under myst, each in 3 of 3 runs when it was
//! added) still passes under this build's myst. `scripts/ltp.sh` builds LTP
//! from third_party/ltp (cached under target/ltp/, keyed by the tarball's
//! sha256), builds the ext2 root and runs the list, 2 at a time, 60 s each;
//! pass = exit 0, TPASS printed, no TFAIL. A missing tarball or build tool
//! is a failure, not a skip.

use std::path::Path;
use std::process::Command;

#[test]
fn ltp_pass_list_still_passes() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = repo.join("target/ltp/runs/cargo-test");
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("bash")
        .arg(repo.join("scripts/ltp.sh"))
        .arg("--check")
        .arg("--myst")
        .arg(env!("CARGO_BIN_EXE_myst"))
        .arg("--out")
        .arg(&out)
        .arg(repo.join("tests/ltp/pass.txt"))
        .current_dir(&repo)
        .status()
        .expect("cannot run bash scripts/ltp.sh");
    assert!(
        status.success(),
        "scripts/ltp.sh --check tests/ltp/pass.txt failed ({status}); per-test results in {}",
        out.join("results.tsv").display()
    );
}
