//! `myst mkcpio`.

use std::path::PathBuf;

/// Pack a directory tree into a CPIO (newc) archive for a ramfs root.
#[derive(clap::Args)]
#[command(
    long_about = "Pack a directory tree into a CPIO (newc) archive for a ramfs root.\n\nExample: myst mkcpio appdir rootfs.cpio"
)]
pub struct Args {
    /// Directory to pack (may be `.`).
    pub dir: PathBuf,
    /// Archive to write.
    pub out: PathBuf,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    super::not_implemented("mkcpio")
}
