//! Reading layer contents back while an image is written.

use super::{Compression, Layer, OciError};
use crate::ext2::StreamSource;
use std::io::{self, BufReader, Read};

/// A layer's uncompressed tar stream, from its start.
pub fn decoded(layer: &Layer) -> Result<Box<dyn Read>, OciError> {
    let raw = BufReader::with_capacity(256 << 10, layer.blob.reader());
    Ok(match layer.compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => {
            Box::new(ruzstd::decoding::StreamingDecoder::new(raw).map_err(|e| {
                OciError::Invalid(format!("layer {}: not a zstd stream: {e}", layer.blob.name))
            })?)
        }
    })
}

struct Cursor {
    reader: Box<dyn Read>,
    pos: u64,
}

/// File data of a [`Merged`](super::Merged) tree: stream `i` is the
/// uncompressed tar of layer `i`. Uncompressed layers are read with
/// `pread`; a compressed layer is decompressed forward once when the reads
/// come in order (as the ext2 writer makes them) and restarted from its
/// start when a read goes backwards.
pub struct LayerStreams<'a> {
    layers: &'a [Layer],
    cursors: Vec<Option<Cursor>>,
    scratch: Vec<u8>,
    /// How many times a compressed layer was restarted.
    pub restarts: u64,
}

impl<'a> LayerStreams<'a> {
    /// Streams over the layers of an image.
    pub fn new(layers: &'a [Layer]) -> Self {
        LayerStreams {
            layers,
            cursors: layers.iter().map(|_| None).collect(),
            scratch: Vec::new(),
            restarts: 0,
        }
    }
}

impl StreamSource for LayerStreams<'_> {
    fn read_at(&mut self, stream: u32, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let i = stream as usize;
        let layer = self
            .layers
            .get(i)
            .ok_or_else(|| io::Error::other(format!("no layer {stream}")))?;
        let ctx = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("layer {} ({}): {e}", i + 1, layer.blob.name),
            )
        };
        if layer.compression == Compression::None {
            return layer.blob.read_exact_at(buf, off).map_err(ctx);
        }
        let restart = match &self.cursors[i] {
            Some(c) => c.pos > off,
            None => true,
        };
        if restart {
            if self.cursors[i].is_some() {
                self.restarts += 1;
            }
            let reader = decoded(layer).map_err(io::Error::other)?;
            self.cursors[i] = Some(Cursor { reader, pos: 0 });
        }
        let c = self.cursors[i]
            .as_mut()
            .ok_or_else(|| io::Error::other("no cursor"))?;
        if self.scratch.is_empty() {
            self.scratch = vec![0u8; 256 << 10];
        }
        while c.pos < off {
            let n = (off - c.pos).min(self.scratch.len() as u64) as usize;
            c.reader.read_exact(&mut self.scratch[..n]).map_err(ctx)?;
            c.pos += n as u64;
        }
        c.reader.read_exact(buf).map_err(ctx)?;
        c.pos += buf.len() as u64;
        Ok(())
    }
}
