//! The `myst` command: builds root file system images and runs programs from them.
#![forbid(unsafe_code)]

mod cmd;
pub mod config;
mod image_source;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit status: 0 on success, 1 on any error (one line `myst: error: ...` on
stderr), 2 for a usage error. exec-linux exits with the program's status, or
128+N when signal N killed it.

Typical use:
  myst mkext2 --sign=pub.pem:priv.pem appdir rootfs.img
  myst exec-linux --pubkey=pub.pem rootfs.img /bin/hello";

/// myst: run unmodified Linux programs from a verified root file system image.
#[derive(Parser)]
#[command(name = "myst", version, about, long_about = None, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Mkcpio(cmd::mkcpio::Args),
    Excpio(cmd::excpio::Args),
    Mkext2(cmd::mkext2::Args),
    Fssig(cmd::fssig::Args),
    #[command(name = "exec-linux")]
    ExecLinux(cmd::exec_linux::Args),
    #[command(name = "exec-sgx", alias = "exec")]
    ExecSgx(cmd::exec_sgx::Args),
    Extract(cmd::extract::Args),
    Cat(cmd::cat::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mkcpio(a) => cmd::mkcpio::run(a),
        Command::Excpio(a) => cmd::excpio::run(a),
        Command::Mkext2(a) => cmd::mkext2::run(a),
        Command::Fssig(a) => cmd::fssig::run(a),
        Command::ExecLinux(a) => cmd::exec_linux::run(a),
        Command::ExecSgx(a) => cmd::exec_sgx::run(a),
        Command::Extract(a) => cmd::extract::run(a),
        Command::Cat(a) => cmd::cat::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("myst: error: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line, `outer: inner: ...`, leaving out a
/// cause whose text the line already holds (many error types print their
/// source inside their own message and also return it from `source()`).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() && text.starts_with(&line) {
            // The cause already names what the context said (e.g. the path).
            line = text;
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
