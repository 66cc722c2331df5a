//! Blobs: byte ranges of a file (a blob of a layout directory, or a member
//! of a tar archive), read with `pread`, and their sha256 digests.

use super::OciError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// JSON documents (index, manifest, config) larger than this are refused.
pub const MAX_JSON: u64 = 16 << 20;

/// A byte range of a file.
#[derive(Clone, Debug)]
pub struct Blob {
    file: Arc<File>,
    offset: u64,
    len: u64,
    /// What errors call it: the digest, or the path in the source.
    pub name: String,
}

impl Blob {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader over its bytes.
    pub fn reader(&self) -> Section {
        Section {
            file: self.file.clone(),
            pos: self.offset,
            end: self.offset + self.len,
        }
    }

    /// Fills `buf` from byte `off` of the blob.
    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the blob",
            ));
        }
        self.file.read_exact_at(buf, self.offset + off)
    }

    /// The sha256 of its bytes, as `sha256:HEX`.
    pub fn sha256(&self) -> Result<String, OciError> {
        let mut h = Sha256::new();
        let mut r = self.reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| OciError::blob(&self.name, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(format!("sha256:{}", hex(&h.finalize())))
    }

    /// Checks size and digest against a descriptor.
    pub fn verify(&self, digest: &str, size: Option<u64>) -> Result<(), OciError> {
        check_digest(digest)?;
        if let Some(s) = size {
            if s != self.len {
                return Err(OciError::Digest {
                    blob: self.name.clone(),
                    msg: format!("its descriptor says {s} bytes, the blob has {}", self.len),
                });
            }
        }
        let actual = self.sha256()?;
        if actual != digest {
            return Err(OciError::Digest {
                blob: self.name.clone(),
                msg: format!("content has digest {actual}, its descriptor says {digest}"),
            });
        }
        Ok(())
    }

    /// Reads a small blob (a JSON document) whole.
    pub fn read_all(&self) -> Result<Vec<u8>, OciError> {
        if self.len > MAX_JSON {
            return Err(OciError::Invalid(format!(
                "{}: {} bytes is too large for a JSON document",
                self.name, self.len
            )));
        }
        let mut v = vec![0u8; self.len as usize];
        self.read_exact_at(&mut v, 0)
            .map_err(|e| OciError::blob(&self.name, e))?;
        Ok(v)
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks that a digest is `sha256:` and 64 lower-case hex digits.
pub fn check_digest(d: &str) -> Result<&str, OciError> {
    let Some((alg, h)) = d.split_once(':') else {
        return Err(OciError::Invalid(format!(
            "{d:?} is not a digest (ALGORITHM:HEX)"
        )));
    };
    if alg != "sha256" {
        return Err(OciError::Invalid(format!(
            "digest {d:?}: only sha256 digests are supported"
        )));
    }
    if h.len() != 64
        || !h
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(OciError::Invalid(format!(
            "digest {d:?}: expected 64 lower-case hex digits"
        )));
    }
    Ok(h)
}

/// A reader over a byte range of a file.
pub struct Section {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than expected (truncated while read?)",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

/// Where the files of an image source live.
pub enum Store {
    /// A directory.
    Dir(PathBuf),
    /// Members of a tar archive: path (normalized) → (offset, size).
    Archive {
        /// The archive.
        path: PathBuf,
        /// Opened once.
        file: Arc<File>,
        /// Its regular files.
        members: HashMap<String, (u64, u64)>,
    },
}

/// Splits a relative path into components, refusing `..` and absolute
/// paths; `.` and empty components are dropped.
pub fn rel_components(p: &str) -> Option<Vec<&str>> {
    if p.starts_with('/') {
        return None;
    }
    let mut out = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn open_file(path: &Path) -> Result<File, OciError> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OciError::io(path, e.into()))?;
    let f = File::from(fd);
    let md = f.metadata().map_err(|e| OciError::io(path, e))?;
    if !md.is_file() {
        return Err(OciError::Invalid(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    Ok(f)
}

impl Store {
    /// The files of a directory.
    pub fn dir(path: &Path) -> Result<Store, OciError> {
        let md = std::fs::metadata(path).map_err(|e| OciError::io(path, e))?;
        if !md.is_dir() {
            return Err(OciError::Invalid(format!(
                "{}: not a directory (an OCI layout is a directory; use oci-archive: for a tar file)",
                path.display()
            )));
        }
        Ok(Store::Dir(path.to_path_buf()))
    }

    /// The members of a tar archive.
    pub fn archive(path: &Path) -> Result<Store, OciError> {
        let file = Arc::new(open_file(path)?);
        let len = file.metadata().map_err(|e| OciError::io(path, e))?.len();
        let section = Section {
            file: file.clone(),
            pos: 0,
            end: len,
        };
        let bad = |e: io::Error| {
            OciError::Invalid(format!(
                "{}: not a readable tar archive: {e}",
                path.display()
            ))
        };
        let mut ar = tar::Archive::new(io::BufReader::with_capacity(64 << 10, section));
        let mut members = HashMap::new();
        let mut links: Vec<(String, String, bool)> = Vec::new();
        for e in ar.entries().map_err(bad)? {
            let e = e.map_err(bad)?;
            let raw = e.path_bytes();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let Some(comps) = rel_components(&name) else {
                continue;
            };
            let key = comps.join("/");
            let et = e.header().entry_type();
            if et.is_file() || et == tar::EntryType::Continuous {
                members.insert(key, (e.raw_file_position(), e.size()));
            } else if et.is_hard_link() || et.is_symlink() {
                if let Some(t) = e.link_name_bytes() {
                    links.push((
                        key,
                        String::from_utf8_lossy(&t).into_owned(),
                        et.is_symlink(),
                    ));
                }
            } else if et.is_gnu_sparse() {
                return Err(OciError::Invalid(format!(
                    "{}: member {name} is a sparse file, which is not supported",
                    path.display()
                )));
            }
        }
        // Links (docker save links layers shared between images), a few
        // levels deep.
        for _ in 0..8 {
            let mut changed = false;
            for (key, target, sym) in &links {
                if members.contains_key(key) {
                    continue;
                }
                let full = if *sym {
                    match key.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{target}"),
                        None => target.clone(),
                    }
                } else {
                    target.clone()
                };
                // Resolve `..` lexically inside the archive.
                let mut stack: Vec<&str> = Vec::new();
                let mut ok = !full.starts_with('/');
                for c in full.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => ok &= stack.pop().is_some(),
                        c => stack.push(c),
                    }
                }
                if !ok {
                    continue;
                }
                if let Some(&v) = members.get(&stack.join("/")) {
                    members.insert(key.clone(), v);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Ok(Store::Archive {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    /// A file by its path relative to the source's root.
    pub fn file(&self, rel: &str) -> Result<Blob, OciError> {
        let comps = rel_components(rel).ok_or_else(|| {
            OciError::Invalid(format!(
                "{rel:?} is not a relative path inside the image source"
            ))
        })?;
        let key = comps.join("/");
        match self {
            Store::Dir(root) => {
                let p = root.join(&key);
                let f = open_file(&p).map_err(|e| match e {
                    OciError::Io { err, .. } if err.kind() == io::ErrorKind::NotFound => {
                        OciError::Missing(format!("{key} (no file {})", p.display()))
                    }
                    e => e,
                })?;
                let len = f.metadata().map_err(|e| OciError::io(&p, e))?.len();
                Ok(Blob {
                    file: Arc::new(f),
                    offset: 0,
                    len,
                    name: key,
                })
            }
            Store::Archive {
                path,
                file,
                members,
            } => {
                let &(offset, len) = members.get(&key).ok_or_else(|| {
                    OciError::Missing(format!("{key} (not in {})", path.display()))
                })?;
                Ok(Blob {
                    file: file.clone(),
                    offset,
                    len,
                    name: key,
                })
            }
        }
    }

    /// A blob of an OCI layout by digest (`blobs/sha256/HEX`), named by
    /// its digest in errors.
    pub fn blob(&self, digest: &str) -> Result<Blob, OciError> {
        let hex = check_digest(digest)?;
        let mut b = self
            .file(&format!("blobs/sha256/{hex}"))
            .map_err(|e| match e {
                OciError::Missing(m) => OciError::Missing(format!("blob {digest}: {m}")),
                e => e,
            })?;
        b.name = digest.to_string();
        Ok(b)
    }
}
