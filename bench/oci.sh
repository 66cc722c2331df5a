#!/usr/bin/env bash
# Benchmark: `myst mkext2 oci:...` straight from a multi-layer image of about
# 500 MB, against `umoci unpack` followed by `myst mkext2` of the unpacked
# tree, in the same run. Prints wall time and peak memory (RSS) of each step.
# Needs root (umoci unpack keeps owners), umoci, and a tree to use as the base
# layer (the Debian root cache of the runtime tests when present).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-target/bench-oci}
M=${MYST:-target/x86_64-unknown-linux-gnu/release/myst}
BASE=${BASE:-target/debian-rootfs-cache/bookworm-minbase-python3-busybox}
[ -d "$BASE" ] || { echo "bench-oci: no base tree $BASE (set BASE=DIR)" >&2; exit 1; }
rm -rf "$W"
mkdir -p "$W"
t() { /usr/bin/time -f "%e s wall, %M KiB max RSS" "$@"; }

echo "== building the image (umoci insert, gzip layers)"
umoci init --layout "$W/lay"
umoci new --image "$W/lay:b"
umoci insert --image "$W/lay:b" "$BASE" /
mkdir -p "$W/r2" "$W/r3/sub"
for i in $(seq 1 150); do head -c 1M /dev/urandom > "$W/r2/f$i"; done
umoci insert --image "$W/lay:b" "$W/r2" /data
for i in $(seq 1 20); do umoci insert --image "$W/lay:b" --whiteout "/data/f$i" >/dev/null; done
for i in $(seq 1 100); do { yes "line $i of a compressible file" || true; } | head -c 1M > "$W/r3/sub/g$i"; done
umoci insert --image "$W/lay:b" --opaque "$W/r3" /usr/share/doc
du -sh "$W/lay" | sed 's/^/layout on disk: /'
echo "layers: $(python3 -c "import json,sys; i=json.load(open('$W/lay/index.json')); d=i['manifests'][0]['digest'][7:]; m=json.load(open('$W/lay/blobs/sha256/'+d)); print(len(m['layers']), 'compressed bytes', sum(l['size'] for l in m['layers']))")"

sync
echo "== myst mkext2 oci:  (direct)"
t "$M" mkext2 -t "oci:$W/lay:b" "$W/direct.img" | grep -E "files|restarts"
echo "== umoci unpack + myst mkext2 DIR"
t umoci unpack --image "$W/lay:b" "$W/bundle" >/dev/null
t "$M" mkext2 -t "$W/bundle/rootfs" "$W/unpacked.img" | grep -E "files"
ls -l "$W/direct.img" "$W/unpacked.img"
du -sh "$W/bundle/rootfs" | sed 's/^/unpacked tree: /'
