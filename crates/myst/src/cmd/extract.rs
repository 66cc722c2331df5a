//! `myst extract`.

use std::path::PathBuf;

/// Extract the whole tree of an ext2 image through the verifying storage stack.
#[derive(clap::Args)]
#[command(
    long_about = "Extract the whole tree of an ext2 image through the verifying storage stack.\n\nExample: myst extract --pubkey=pub.pem rootfs.img outdir"
)]
pub struct Args {
    /// Image to read.
    pub img: PathBuf,
    /// Directory to extract into.
    pub dir: PathBuf,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    super::not_implemented("extract")
}
