#!/usr/bin/env bash
# The main job on the shipped example: build examples/hello, pack it into
# root file system images and show them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-target/demo}
rm -rf "$out" && mkdir -p "$out/rootfs/bin"
cargo build --release --quiet
myst=target/x86_64-unknown-linux-gnu/release/myst
cc=gcc; command -v musl-gcc >/dev/null && cc=musl-gcc
"$cc" -static -O2 -o "$out/rootfs/bin/hello" examples/hello/hello.c
"$myst" mkcpio "$out/rootfs" "$out/rootfs.cpio"
echo "== $out/rootfs.cpio"
"$myst" excpio "$out/rootfs.cpio" "$out/extracted"
ls -lR "$out/extracted"
echo "== myst exec-linux $out/rootfs /bin/hello (directory root)"
"$myst" exec-linux "$out/rootfs" /bin/hello from-a-directory-root
echo "== myst exec-linux $out/rootfs.cpio /bin/hello (CPIO root, in memory)"
"$myst" exec-linux "$out/rootfs.cpio" /bin/hello from-a-cpio-root
