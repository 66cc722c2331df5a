//! `myst fssig`: prints the FSSIG trailer of an ext2 image.

use anyhow::Context;
use myst_formats::fssig::{Fssig, MAGIC};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Print the FSSIG trailer of an ext2 image.
#[derive(clap::Args)]
#[command(
    long_about = "Print the FSSIG trailer of an ext2 image (its last 4096 bytes).\n\n\
Without options, one `name: value` line per field: magic, version,\n\
hash_offset, root_hash, signer (or null), signature (or null),\n\
signature_size. With --roothash, only the root hash as 64 hex digits, the\n\
format `--roothash=FILE` reads.\n\n\
Example: myst fssig --roothash rootfs.img > roothash"
)]
pub struct Args {
    /// Print only the root hash (64 hex digits and a newline).
    #[arg(long)]
    pub roothash: bool,
    /// Image to read.
    pub img: PathBuf,
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The field-per-line text of a trailer.
pub fn describe(f: &Fssig) -> String {
    let signer = if f.signer.iter().all(|&b| b == 0) {
        "null".to_string()
    } else {
        hex(&f.signer)
    };
    let signature = if f.signature.iter().all(|&b| b == 0) {
        "null".to_string()
    } else {
        hex(&f.signature)
    };
    format!(
        "magic: 0x{MAGIC:016x}\nversion: 1\nhash_offset: {}\nroot_hash: {}\nsigner: {signer}\nsignature: {signature}\nsignature_size: {}\n",
        f.hash_offset,
        hex(&f.root_hash),
        f.signature.len()
    )
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let f = Fssig::read_file(&args.img).with_context(|| format!("{}", args.img.display()))?;
    if args.roothash {
        println!("{}", hex(&f.root_hash));
    } else {
        print!("{}", describe(&f));
    }
    Ok(0)
}
