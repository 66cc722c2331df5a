//! `myst fssig`.

use std::path::PathBuf;

/// Print the FSSIG trailer of an ext2 image.
#[derive(clap::Args)]
#[command(
    long_about = "Print the FSSIG trailer of an ext2 image.\n\nExample: myst fssig --roothash rootfs.img > roothash"
)]
pub struct Args {
    /// Print only the root hash (64 hex digits and a newline).
    #[arg(long)]
    pub roothash: bool,
    /// Image to read.
    pub img: PathBuf,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    super::not_implemented("fssig")
}
