//! `myst cat`.

use std::path::PathBuf;

/// Print one file of an ext2 image, read through the verifying storage stack.
#[derive(clap::Args)]
#[command(
    long_about = "Print one file of an ext2 image, read through the verifying storage stack.\n\nExample: myst cat rootfs.img /etc/hostname"
)]
pub struct Args {
    /// Image to read.
    pub img: PathBuf,
    /// Absolute path inside the image.
    pub path: String,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    super::not_implemented("cat")
}
