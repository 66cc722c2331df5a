//! `myst exec-linux`.

use std::path::PathBuf;

/// Run a program from a root file system (CPIO file, ext2 image or directory).
#[derive(clap::Args)]
#[command(
    long_about = "Run a program from a root file system (CPIO file, ext2 image or directory).\n\nExample: myst exec-linux rootfs.img /bin/hello"
)]
pub struct Args {
    /// Root file system: CPIO archive, ext2 image or directory.
    pub rootfs: PathBuf,
    /// Absolute path of the program inside the root file system, then its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub program: Vec<String>,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    super::not_implemented("exec-linux")
}
