//! One module per subcommand: its clap `Args` and a `run` returning the exit status.

pub mod cat;
pub mod excpio;
pub mod exec_linux;
pub mod exec_sgx;
pub mod extract;
pub mod fssig;
pub mod mkcpio;
pub mod mkext2;

/// The error of a command that a later piece of work delivers.
#[allow(dead_code)] // unused once every command is implemented
pub fn not_implemented(what: &str) -> anyhow::Result<i32> {
    anyhow::bail!("`myst {what}` is not implemented yet")
}
