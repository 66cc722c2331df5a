//! `myst mkext2`.

use std::path::PathBuf;

/// Build an ext2 image with a dm-verity hash tree and an FSSIG trailer.
#[derive(clap::Args)]
#[command(
    long_about = "Build an ext2 image with a dm-verity hash tree and an FSSIG trailer.\n\nExample: myst mkext2 --sign=pub.pem:priv.pem appdir rootfs.img"
)]
pub struct Args {
    /// Directory to pack.
    pub dir: PathBuf,
    /// Image to write.
    pub img: PathBuf,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    super::not_implemented("mkext2")
}
