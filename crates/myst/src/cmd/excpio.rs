//! `myst excpio`.

use std::path::PathBuf;

/// Extract a CPIO (newc) archive into a directory.
#[derive(clap::Args)]
#[command(
    long_about = "Extract a CPIO (newc) archive into a directory.\n\nExample: myst excpio rootfs.cpio outdir"
)]
pub struct Args {
    /// Archive to read.
    pub cpio: PathBuf,
    /// Directory to extract into.
    pub dir: PathBuf,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    super::not_implemented("excpio")
}
