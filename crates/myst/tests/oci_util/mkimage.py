#!/usr/bin/env python3
"""Writes a container image from a JSON spec, with Python's tarfile and
gzip and the zstd command: an OCI layout directory ("oci"), the same in a
tar file ("oci-archive") or a `docker save` archive ("docker-archive").

spec = {"format": ..., "ref": "name", "config": {...},
        "layers": [{"compression": "gzip"|"zstd"|"none",
                    "raw": "base64 of a whole tar" (optional),
                    "entries": [{"path", "type": file|dir|symlink|link|fifo|chr|blk,
                                 "data", "link", "mode", "uid", "gid", "mtime",
                                 "major", "minor"}]}]}
A layer may instead name a tar file made by the caller ("tar_file", for
the "oci" format only), compressed here with the gzip or zstd command.
Used by image_oci*.rs; independent of myst's code."""
import base64, gzip, hashlib, io, json, os, subprocess, sys, tarfile

spec = json.load(open(sys.argv[1]))
out = sys.argv[2]
fmt = spec.get("format", "oci")
TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "link": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE,
         "blk": tarfile.BLKTYPE}

def layer_tar(layer):
    if "raw" in layer:
        return base64.b64decode(layer["raw"])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in layer["entries"]:
            ti = tarfile.TarInfo(e["path"])
            ti.type = TYPES[e.get("type", "file")]
            ti.mode = e.get("mode", 0o755 if ti.type == tarfile.DIRTYPE else 0o644)
            ti.uid = e.get("uid", 0)
            ti.gid = e.get("gid", 0)
            ti.mtime = e.get("mtime", 1600000000)
            ti.linkname = e.get("link", "")
            ti.devmajor = e.get("major", 0)
            ti.devminor = e.get("minor", 0)
            data = e.get("data", "").encode() if ti.type == tarfile.REGTYPE else b""
            if "size" in e:
                data = bytes((i * 7 + 3) % 251 for i in range(e["size"]))
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()

def compress(raw, how):
    if how == "gzip":
        return gzip.compress(raw, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=raw, check=True,
                              capture_output=True).stdout
    return raw

def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

files = {}  # path in the layout -> bytes (or a FileBlob)
def blob(b):
    d = b.digest if isinstance(b, FileBlob) else sha(b)
    files["blobs/sha256/" + d[7:]] = b
    return d
def size(b):
    return b.size if isinstance(b, FileBlob) else len(b)

def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()

class FileBlob:
    """A large layer kept on disk ("tar_file": a tar made by the caller)."""
    def __init__(self, path):
        self.path = path
        self.digest = sha_file(path)
        self.size = os.path.getsize(path)

layers = []
diff_ids = []
for l in spec["layers"]:
    c = l.get("compression", "gzip")
    if "tar_file" in l:
        diff_ids.append(sha_file(l["tar_file"]))
        z = l["tar_file"] + "." + c
        with open(z, "wb") as o:
            cmd = {"gzip": ["gzip", "-1", "-n", "-c"], "zstd": ["zstd", "-q", "-c"], "none": ["cat"]}[c]
            subprocess.run(cmd + [l["tar_file"]], stdout=o, check=True)
        layers.append((None, FileBlob(z), c))
        continue
    raw = layer_tar(l)
    diff_ids.append(sha(raw))
    z = compress(raw, c)
    layers.append((raw, z, c))
config = {"architecture": "amd64", "os": "linux", "config": spec.get("config", {}),
          "rootfs": {"type": "layers", "diff_ids": diff_ids}}
config_bytes = json.dumps(config).encode()
if fmt in ("oci", "oci-archive"):
    mt = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
          "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
          "none": "application/vnd.oci.image.layer.v1.tar"}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": blob(config_bytes), "size": len(config_bytes)},
                "layers": [{"mediaType": mt[c], "digest": blob(z), "size": size(z)}
                           for _, z, c in layers]}
    mb = json.dumps(manifest).encode()
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(mb),
         "size": len(mb), "annotations": {"org.opencontainers.image.ref.name": spec.get("ref", "latest")}}]}).encode()
else:
    cd = sha(config_bytes)[7:]
    files[cd + ".json"] = config_bytes
    names = []
    for i, (raw, z, c) in enumerate(layers):
        n = "%064x/layer.tar" % (i + 1)
        files[n] = z
        names.append(n)
    files["manifest.json"] = json.dumps([{"Config": cd + ".json",
        "RepoTags": ["app:" + spec.get("ref", "latest")], "Layers": names}]).encode()

if fmt == "oci":
    for p, b in files.items():
        os.makedirs(os.path.dirname(os.path.join(out, p)) or out, exist_ok=True)
        if isinstance(b, FileBlob):
            os.replace(b.path, os.path.join(out, p))
        else:
            open(os.path.join(out, p), "wb").write(b)
else:
    with tarfile.open(out, "w") as t:
        for p, b in sorted(files.items()):
            ti = tarfile.TarInfo(p)
            ti.size = len(b)
            t.addfile(ti, io.BytesIO(b))
