#!/usr/bin/env bash
# The main job on the shipped example: build examples/hello, pack it into
# root file system images, show them, and run the program from each root
# with myst exec-linux (directory, CPIO, and a signed ext2 image).
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
echo "== myst mkext2 --sign: a signed ext2 image, then exec-linux --pubkey (verified)"
openssl genrsa -out "$out/priv.pem" 3072 2>/dev/null
openssl rsa -in "$out/priv.pem" -pubout -out "$out/pub.pem" 2>/dev/null
"$myst" mkext2 --sign="$out/pub.pem:$out/priv.pem" "$out/rootfs" "$out/rootfs.img"
"$myst" exec-linux --strict --pubkey "$out/pub.pem" "$out/rootfs.img" /bin/hello from-a-signed-ext2-image
