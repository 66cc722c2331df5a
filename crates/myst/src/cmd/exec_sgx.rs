//! `myst exec-sgx`: the SGX target, which needs hardware this build cannot use.

use std::path::PathBuf;

/// Run a program inside an SGX enclave (needs SGX; use exec-linux without it).
#[derive(clap::Args)]
#[command(
    long_about = "Run a program inside an SGX enclave.\n\nThis build of myst has no SGX target: on machines without SGX use `myst exec-linux`, which takes the same arguments.\n\nExample: myst exec-linux rootfs.img /bin/hello"
)]
pub struct Args {
    /// Root file system.
    pub rootfs: PathBuf,
    /// Program and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub program: Vec<String>,
}

/// Always fails: there is no SGX target.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    let has_sgx = std::path::Path::new("/dev/sgx_enclave").exists();
    if has_sgx {
        anyhow::bail!("the SGX target is not built into this myst; run the program with `myst exec-linux` instead")
    }
    anyhow::bail!("this machine has no SGX (no /dev/sgx_enclave); run the program with `myst exec-linux` instead")
}
