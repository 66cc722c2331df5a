#!/usr/bin/env python3
"""The reference unpacker for image_oci.rs: extracts the layers of an OCI
layout in order with GNU tar, applying whiteouts and opaque directories
(which hide only what lower layers put there) before each layer. No code of
myst is used."""
import json, os, shutil, subprocess, sys

layout, out = sys.argv[1], sys.argv[2]
def blob(d):
    return os.path.join(layout, "blobs", "sha256", d.split(":")[1])
index = json.load(open(os.path.join(layout, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
os.makedirs(out, exist_ok=True)
def rm(p):
    if os.path.islink(p) or not os.path.isdir(p):
        if os.path.lexists(p):
            os.unlink(p)
    else:
        shutil.rmtree(p)
for l in manifest["layers"]:
    mt = l["mediaType"]
    z = ["--zstd"] if mt.endswith("zstd") else ["-z"] if mt.endswith("gzip") else []
    names = subprocess.run(["tar", "-t"] + z + ["-f", blob(l["digest"])], check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for n in names:
        d, b = os.path.split(n.rstrip("/"))
        if b == ".wh..wh..opq":
            dd = os.path.join(out, d)
            if os.path.isdir(dd) and not os.path.islink(dd):
                for c in os.listdir(dd):
                    rm(os.path.join(dd, c))
        elif b.startswith(".wh."):
            rm(os.path.join(out, d, b[4:]))
    subprocess.run(["tar", "-x", "-p", "--numeric-owner", "--same-owner"] + z +
                   ["--exclude=.wh.*", "-f", blob(l["digest"]), "-C", out], check=True)
