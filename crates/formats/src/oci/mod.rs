//! Container images as a source of root file systems: OCI image layouts
//! (a directory or a tar file) and `docker save` archives, read without
//! Docker, root or external tools.
//!
//! - [`ImageRef`]: `oci:PATH[:REF]`, `oci-archive:PATH[:REF]`,
//!   `docker-archive:PATH[:REF]` (skopeo's transport names).
//! - [`Image::open`]: selects the image, checks every JSON blob's digest
//!   and size against its descriptor.
//! - [`Image::merge`]: checks each layer blob's digest, then reads the
//!   layers in order into a [`Merged`] tree of metadata, applying
//!   whiteouts and opaque directories as the OCI image spec says; file
//!   data stays in the layers, referenced by (layer, offset).
//! - [`LayerStreams`]: reads that data back while an image is written,
//!   each compressed layer decompressed forward from its start.
//! - [`app_config`]: the image's Entrypoint/Cmd/Env/WorkingDir as a
//!   Mystikos config.json.

mod blob;
mod config;
mod merge;
mod streams;
#[cfg(test)]
mod tests;

pub use blob::{check_digest, Blob, Store};
pub use config::{app_config, AppConfig};
pub use merge::{MKind, MNode, Merged};
pub use streams::LayerStreams;

use serde::Deserialize;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong reading an image.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A file could not be read.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        err: io::Error,
    },
    /// A blob could not be read.
    #[error("blob {blob}: {err}")]
    BlobIo {
        /// The blob.
        blob: String,
        /// The error.
        err: io::Error,
    },
    /// A blob does not match its descriptor.
    #[error("blob {blob} does not match its descriptor: {msg}")]
    Digest {
        /// The blob.
        blob: String,
        /// How.
        msg: String,
    },
    /// A file or blob the image refers to is missing.
    #[error("missing {0}")]
    Missing(String),
    /// A document or layer is malformed or not supported.
    #[error("{0}")]
    Invalid(String),
    /// An entry of a layer cannot be applied.
    #[error("layer {layer} ({blob}): {msg}")]
    Layer {
        /// Layer number, from 1 (the base).
        layer: usize,
        /// The layer blob.
        blob: String,
        /// What is wrong.
        msg: String,
    },
    /// The reference matches no image, or several.
    #[error("{0}")]
    Reference(String),
}

impl OciError {
    fn io(path: &Path, err: io::Error) -> Self {
        OciError::Io {
            path: path.to_path_buf(),
            err,
        }
    }
    fn blob(name: &str, err: io::Error) -> Self {
        OciError::BlobIo {
            blob: name.to_string(),
            err,
        }
    }
}

/// How an image is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `oci:`: an OCI image layout directory.
    Oci,
    /// `oci-archive:`: an OCI image layout in a tar file.
    OciArchive,
    /// `docker-archive:`: a `docker save` tar file.
    DockerArchive,
}

/// An image source named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// How it is stored.
    pub transport: Transport,
    /// The layout directory or archive.
    pub path: PathBuf,
    /// Which image: a tag or `org.opencontainers.image.ref.name`, or a
    /// digest (`sha256:...`); None if the source holds one image.
    pub reference: Option<String>,
}

impl ImageRef {
    /// Parses `TRANSPORT:PATH[:REF]`. None if `s` does not start with
    /// one of the transports (it is then a directory). As in skopeo, PATH
    /// ends at the first `:`, unless the whole rest names an existing file.
    pub fn parse(s: &str) -> Option<ImageRef> {
        let (t, rest) = s.split_once(':')?;
        let transport = match t {
            "oci" => Transport::Oci,
            "oci-archive" => Transport::OciArchive,
            "docker-archive" => Transport::DockerArchive,
            _ => return None,
        };
        let (path, reference) = if Path::new(rest).exists() {
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((p, r)) => (p, (!r.is_empty()).then(|| r.to_string())),
                None => (rest, None),
            }
        };
        Some(ImageRef {
            transport,
            path: PathBuf::from(path),
            reference,
        })
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = match self.transport {
            Transport::Oci => "oci",
            Transport::OciArchive => "oci-archive",
            Transport::DockerArchive => "docker-archive",
        };
        write!(f, "{t}:{}", self.path.display())?;
        if let Some(r) = &self.reference {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// One layer of the selected image.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its bytes.
    pub blob: Blob,
    /// Its compression.
    pub compression: Compression,
    /// The digest of the blob from its descriptor, checked before use.
    pub digest: Option<String>,
    /// The digest of the uncompressed tar (the config's diff_id), checked
    /// as the layer is read.
    pub diff_id: Option<String>,
}

/// The part of the image's config that says how to run it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RunConfig {
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// `Env` ("K=V").
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// `User`.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
    #[serde(default)]
    os: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn json<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, OciError> {
    serde_json::from_slice(bytes).map_err(|e| OciError::Invalid(format!("{what}: {e}")))
}

/// The compression a layer media type names.
pub fn layer_compression(media_type: &str) -> Result<Compression, OciError> {
    let base = media_type;
    let known = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
    ];
    for k in known {
        if let Some(rest) = base.strip_prefix(k) {
            return match rest {
                "" => Ok(Compression::None),
                "+gzip" | ".gzip" => Ok(Compression::Gzip),
                "+zstd" => Ok(Compression::Zstd),
                _ => Err(OciError::Invalid(format!(
                    "layer media type {media_type:?}: unsupported compression"
                ))),
            };
        }
    }
    Err(OciError::Invalid(format!(
        "layer media type {media_type:?} is not a layer this tool can read"
    )))
}

/// The compression of a blob by its first bytes (docker archives do not
/// say).
fn sniff(blob: &Blob) -> Result<Compression, OciError> {
    let mut head = [0u8; 4];
    let n = (blob.len() as usize).min(4);
    blob.read_exact_at(&mut head[..n], 0)
        .map_err(|e| OciError::blob(&blob.name, e))?;
    Ok(match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

/// The selected image of a source.
pub struct Image {
    /// The source, for messages.
    pub source: String,
    /// Layers, base first.
    pub layers: Vec<Layer>,
    /// How to run it.
    pub run: RunConfig,
    /// The manifest's or config's digest (which image was chosen).
    pub id: String,
}

impl Image {
    /// Opens the image `r` names, checking the digests of its index,
    /// manifest and config.
    pub fn open(r: &ImageRef) -> Result<Image, OciError> {
        match r.transport {
            Transport::Oci => Self::open_oci(Store::dir(&r.path)?, r),
            Transport::OciArchive => Self::open_oci(Store::archive(&r.path)?, r),
            Transport::DockerArchive => Self::open_docker(Store::archive(&r.path)?, r),
        }
    }

    /// Checks every layer blob's digest again (after the image was
    /// written from it): a blob changed in place between the two reads is
    /// an error, not a silently different image.
    pub fn reverify(&self) -> Result<(), OciError> {
        for l in &self.layers {
            if let Some(d) = &l.digest {
                l.blob.verify(d, None).map_err(|e| match e {
                    OciError::Digest { blob, msg } => OciError::Digest {
                        blob,
                        msg: format!("{msg} (it changed while the image was being built)"),
                    },
                    e => e,
                })?;
            }
        }
        Ok(())
    }

    fn open_oci(store: Store, r: &ImageRef) -> Result<Image, OciError> {
        let layout = store.file("oci-layout").map_err(|e| match e {
            OciError::Missing(_) => OciError::Invalid(format!(
                "{}: no oci-layout file: not an OCI image layout",
                r.path.display()
            )),
            e => e,
        })?;
        #[derive(Deserialize)]
        struct Layout {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        let l: Layout = json(&layout.read_all()?, "oci-layout")?;
        if !l.version.starts_with("1.") {
            return Err(OciError::Invalid(format!(
                "oci-layout: imageLayoutVersion {:?} is not supported (1.x is)",
                l.version
            )));
        }
        let index: Index = json(&store.file("index.json")?.read_all()?, "index.json")?;
        let desc = select_oci(&index.manifests, r)?;
        let mut desc = desc.clone();
        // A nested index (one per platform): take linux/amd64, or the only one.
        for _ in 0..4 {
            if desc.media_type != MT_INDEX && desc.media_type != MT_DOCKER_LIST {
                break;
            }
            let b = store.blob(&desc.digest)?;
            b.verify(&desc.digest, Some(desc.size))?;
            let inner: Index = json(&b.read_all()?, &format!("image index {}", desc.digest))?;
            desc = pick_platform(&inner.manifests, &desc.digest)?.clone();
        }
        let mb = store.blob(&desc.digest)?;
        mb.verify(&desc.digest, Some(desc.size))?;
        let m: Manifest = json(&mb.read_all()?, &format!("manifest {}", desc.digest))?;
        let cb = store.blob(&m.config.digest)?;
        cb.verify(&m.config.digest, Some(m.config.size))?;
        let cfg: ImageConfig = json(&cb.read_all()?, &format!("config {}", m.config.digest))?;
        check_os(&cfg)?;
        let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        if diff_ids.len() != m.layers.len() {
            return Err(OciError::Invalid(format!(
                "config {}: {} diff_ids for {} layers",
                m.config.digest,
                diff_ids.len(),
                m.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (d, diff) in m.layers.iter().zip(diff_ids) {
            let compression = layer_compression(&d.media_type)?;
            let blob = store.blob(&d.digest)?;
            if blob.len() != d.size {
                return Err(OciError::Digest {
                    blob: d.digest.clone(),
                    msg: format!(
                        "its descriptor says {} bytes, the blob has {}",
                        d.size,
                        blob.len()
                    ),
                });
            }
            check_digest(&diff)?;
            layers.push(Layer {
                blob,
                compression,
                digest: Some(d.digest.clone()),
                diff_id: Some(diff),
            });
        }
        Ok(Image {
            source: r.to_string(),
            layers,
            run: cfg.config.unwrap_or_default(),
            id: desc.digest,
        })
    }

    fn open_docker(store: Store, r: &ImageRef) -> Result<Image, OciError> {
        let entries: Vec<DockerEntry> = json(
            &store
                .file("manifest.json")
                .map_err(|e| match e {
                    OciError::Missing(_) => OciError::Invalid(format!(
                        "{}: no manifest.json: not a docker save archive",
                        r.path.display()
                    )),
                    e => e,
                })?
                .read_all()?,
            "manifest.json",
        )?;
        let e = select_docker(&entries, r)?;
        let cb = store.file(&e.config)?;
        // The config is named by its digest: `HEX.json` or `blobs/sha256/HEX`.
        let stem = e.config.rsplit('/').next().unwrap_or("");
        let stem = stem.strip_suffix(".json").unwrap_or(stem);
        let config_digest = format!("sha256:{stem}");
        if check_digest(&config_digest).is_err() {
            return Err(OciError::Invalid(format!(
                "manifest.json: config {:?} is not named by its sha256 digest",
                e.config
            )));
        }
        cb.verify(&config_digest, None)?;
        let cfg: ImageConfig = json(&cb.read_all()?, &format!("config {}", e.config))?;
        check_os(&cfg)?;
        let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        if diff_ids.len() != e.layers.len() {
            return Err(OciError::Invalid(format!(
                "config {}: {} diff_ids for {} layers",
                e.config,
                diff_ids.len(),
                e.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (p, diff) in e.layers.iter().zip(diff_ids) {
            check_digest(&diff)?;
            let blob = store.file(p)?;
            let compression = sniff(&blob)?;
            // A blob named by its digest (`blobs/sha256/HEX`, newer
            // docker) is checked against it; a plain tar against its diff_id.
            let digest = match p.strip_prefix("blobs/sha256/") {
                Some(h) if check_digest(&format!("sha256:{h}")).is_ok() => {
                    Some(format!("sha256:{h}"))
                }
                _ if compression == Compression::None => Some(diff.clone()),
                _ => None,
            };
            layers.push(Layer {
                blob,
                compression,
                digest,
                diff_id: Some(diff),
            });
        }
        Ok(Image {
            source: r.to_string(),
            layers,
            run: cfg.config.unwrap_or_default(),
            id: config_digest,
        })
    }
}

fn check_os(cfg: &ImageConfig) -> Result<(), OciError> {
    match cfg.os.as_deref() {
        None | Some("linux") | Some("") => Ok(()),
        Some(os) => Err(OciError::Invalid(format!(
            "the image is for {os:?}, not linux"
        ))),
    }
}

fn pick_platform<'a>(ds: &'a [Descriptor], what: &str) -> Result<&'a Descriptor, OciError> {
    if ds.len() == 1 {
        return Ok(&ds[0]);
    }
    ds.iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .ok_or_else(|| {
            OciError::Reference(format!(
                "image index {what} has no linux/amd64 manifest among {}",
                ds.len()
            ))
        })
}

fn select_oci<'a>(ds: &'a [Descriptor], r: &ImageRef) -> Result<&'a Descriptor, OciError> {
    let names = || {
        let v: Vec<String> = ds
            .iter()
            .map(|d| match d.annotations.get(REF_NAME) {
                Some(n) => format!("{n} ({})", d.digest),
                None => d.digest.clone(),
            })
            .collect();
        v.join(", ")
    };
    match &r.reference {
        None => match ds.len() {
            1 => Ok(&ds[0]),
            0 => Err(OciError::Reference(format!(
                "{}: index.json lists no image",
                r.path.display()
            ))),
            _ => Err(OciError::Reference(format!(
                "{} holds {} images: name one as {}:REF (one of: {})",
                r.path.display(),
                ds.len(),
                r,
                names()
            ))),
        },
        Some(want) => {
            let hits: Vec<&Descriptor> = ds
                .iter()
                .filter(|d| {
                    d.annotations.get(REF_NAME) == Some(want)
                        || d.annotations.get("io.containerd.image.name") == Some(want)
                        || &d.digest == want
                })
                .collect();
            match hits.as_slice() {
                [d] => Ok(d),
                [] => Err(OciError::Reference(format!(
                    "{}: no image named {want:?} (there are: {})",
                    r.path.display(),
                    names()
                ))),
                _ => Err(OciError::Reference(format!(
                    "{}: {} images are named {want:?}",
                    r.path.display(),
                    hits.len()
                ))),
            }
        }
    }
}

fn select_docker<'a>(es: &'a [DockerEntry], r: &ImageRef) -> Result<&'a DockerEntry, OciError> {
    let tags = || {
        let v: Vec<String> = es
            .iter()
            .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
            .collect();
        v.join(", ")
    };
    match &r.reference {
        None => match es.len() {
            1 => Ok(&es[0]),
            0 => Err(OciError::Reference(format!(
                "{}: manifest.json lists no image",
                r.path.display()
            ))),
            _ => Err(OciError::Reference(format!(
                "{} holds {} images: name one as {}:TAG (one of: {})",
                r.path.display(),
                es.len(),
                r,
                tags()
            ))),
        },
        Some(want) => {
            let norm = |t: &str| -> String {
                let t = t
                    .strip_prefix("docker.io/library/")
                    .or_else(|| t.strip_prefix("docker.io/"))
                    .unwrap_or(t);
                let last = t.rsplit('/').next().unwrap_or(t);
                if last.contains(':') {
                    t.to_string()
                } else {
                    format!("{t}:latest")
                }
            };
            let w = norm(want);
            let hits: Vec<&DockerEntry> = es
                .iter()
                .filter(|e| {
                    e.repo_tags
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|t| norm(t) == w)
                        || e.config
                            .contains(want.strip_prefix("sha256:").unwrap_or("\0"))
                })
                .collect();
            match hits.as_slice() {
                [e] => Ok(e),
                [] => Err(OciError::Reference(format!(
                    "{}: no image tagged {want:?} (there are: {})",
                    r.path.display(),
                    tags()
                ))),
                _ => Err(OciError::Reference(format!(
                    "{}: {} images match {want:?}",
                    r.path.display(),
                    hits.len()
                ))),
            }
        }
    }
}
