//! Container images as the source of `mkext2` and `mkcpio`:
//! `oci:PATH[:REF]`, `oci-archive:PATH[:REF]`, `docker-archive:PATH[:REF]`.

use anyhow::Context;
use myst_formats::ext2::StreamSource;
use myst_formats::oci::{self, Image, ImageRef, LayerStreams, Merged};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Help text shared by the two commands.
pub const HELP: &str = "\
SOURCE is a directory, or a container image (skopeo's transport names):
  oci:PATH[:REF]             an OCI image layout directory
  oci-archive:PATH[:REF]     an OCI image layout in a tar file
  docker-archive:PATH[:REF]  a `docker save` archive
REF picks one image when the source holds several: a tag or
org.opencontainers.image.ref.name, or a digest (sha256:...). The layers are
applied in order (gzip, zstd or plain tar; whiteouts and opaque directories
as the OCI image spec says); every blob's sha256 is checked first. No Docker,
no root, no network.";

/// A container image opened and its layers merged.
pub struct Opened {
    /// The image.
    pub image: Image,
    /// Its file system (metadata; data stays in the layers).
    pub merged: Merged,
}

/// Parses SOURCE as an image reference, if it is one.
pub fn parse(source: &Path) -> Option<ImageRef> {
    source.to_str().and_then(ImageRef::parse)
}

/// Opens the image and merges its layers.
pub fn open(r: &ImageRef) -> anyhow::Result<Opened> {
    let image = Image::open(r).with_context(|| format!("{r}"))?;
    let merged = Merged::from_image(&image).with_context(|| format!("{r}"))?;
    Ok(Opened { image, merged })
}

/// The config.json for `--config-out`, written to a temporary file next
/// to `out`; the caller persists it once the image is written.
pub fn config_file(
    opened: &Opened,
    out: &Path,
    force: bool,
) -> anyhow::Result<(tempfile::NamedTempFile, PathBuf)> {
    if !force && std::fs::symlink_metadata(out).is_ok() {
        anyhow::bail!(
            "{} already exists: use --force to overwrite it",
            out.display()
        );
    }
    let cfg = oci::app_config(&opened.image.run, &opened.merged)
        .with_context(|| format!("{}: config", opened.image.source))?;
    for w in &cfg.warnings {
        eprintln!("myst: warning: {}: {w}", opened.image.source);
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".config.")
        .suffix(".tmp")
        .tempfile_in(&parent)
        .with_context(|| format!("cannot create a file in {}", parent.display()))?;
    std::fs::write(tmp.path(), cfg.json.as_bytes())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", tmp.path().display()))?;
    Ok((tmp, out.to_path_buf()))
}

/// Moves a finished config.json into place.
pub fn persist_config(c: (tempfile::NamedTempFile, PathBuf)) -> anyhow::Result<()> {
    c.0.persist(&c.1)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", c.1.display()))?;
    Ok(())
}

/// A reader over `size` bytes at `offset` of a layer stream.
pub struct StreamReader<'s, 'l> {
    /// The streams.
    pub streams: &'s mut LayerStreams<'l>,
    /// Layer index.
    pub layer: u32,
    /// Next offset.
    pub pos: u64,
    /// End offset.
    pub end: u64,
}

impl Read for StreamReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64).min(1 << 20) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.streams.read_at(self.layer, self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}
