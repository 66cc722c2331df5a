#!/usr/bin/env bash
# Storage stack reads: a 1 GiB file read sequentially through
# host file -> verity -> cache -> ext2, and through
# host file -> verity -> crypt (LUKS1 AES-XTS) -> cache -> ext2,
# cold and warm, next to this machine's SHA-256 and AES-XTS throughput and
# `veritysetup verify` over the same images, all measured in this run.
#
#   bench/storage.sh            # 1 GiB file, 3 runs (medians)
#   SIZE_MB=256 RUNS=5 bench/storage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
WORK=$(mktemp -d /var/tmp/myst-storage-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cargo build --release -q -p myst-fs --example storage_bench
BIN=target/x86_64-unknown-linux-gnu/release/examples/storage_bench

echo "== images: ${SIZE_MB} MiB file, mke2fs -d (4 KiB blocks), plain and LUKS1, + veritysetup format" >&2
mkdir "$WORK/tree"
# Incompressible data, fast: an AES-CTR keystream (openssl dies of SIGPIPE
# once head has enough).
{ openssl enc -aes-128-ctr -pass pass:myst -nosalt -pbkdf2 -in /dev/zero 2>/dev/null || true; } \
    | head -c "${SIZE_MB}M" > "$WORK/tree/big"
S_MB=$(( SIZE_MB + SIZE_MB / 16 + 16 ))
mke2fs -q -F -t ext2 -b 4096 -d "$WORK/tree" "$WORK/plain" "${S_MB}M"
rm "$WORK/tree/big"
head -c 64 /dev/urandom > "$WORK/key"
"$BIN" encrypt "$WORK/plain" "$WORK/enc" "$WORK/key"
S=$(( S_MB << 20 ))
SE=$(stat -c %s "$WORK/enc")
ROOT=$(veritysetup format --hash-offset="$S" "$WORK/plain" "$WORK/plain" | awk '/Root hash/ {print $3}')
ROOTE=$(veritysetup format --hash-offset="$SE" "$WORK/enc" "$WORK/enc" | awk '/Root hash/ {print $3}')

echo "== veritysetup verify (whole ${S_MB} MiB data area)" >&2
vs=()
for _ in $(seq "$RUNS"); do
    t0=$(date +%s.%N)
    veritysetup verify --hash-offset="$S" "$WORK/plain" "$WORK/plain" "$ROOT"
    t1=$(date +%s.%N)
    vs+=("$(echo "$S $t0 $t1" | awk '{printf "%.0f", $1 / ($3 - $2) / 1e6}')")
done
VS=$(printf '%s\n' "${vs[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

echo "== openssl speed (4096-byte blocks)" >&2
ossl() { openssl speed -seconds 2 -bytes 4096 -evp "$1" 2>/dev/null | awk -v a="$1" '$1 == a || $1 == toupper(a) {v=$NF} END {sub("k","",v); printf "%.0f", v * 1000 / 1e6}'; }
OSSL_SHA=$(ossl sha256)
OSSL_XTS=$(ossl aes-256-xts)

echo "== myst storage stack: verity + ext2" >&2
P=$("$BIN" "$WORK/plain" "$S" "$ROOT" /big "$RUNS")
echo "$P" >&2
echo "== myst storage stack: verity + crypt + ext2" >&2
E=$("$BIN" "$WORK/enc" "$SE" "$ROOTE" /big "$RUNS" "$WORK/key")
echo "$E" >&2
row() { echo "$1" | awk -v k="$2" '$1 == k {print $3, $5, $7}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100 * a / b}'; }
read -r SHA_W SHA_C _ <<< "$(row "$P" sha256)"
read -r XTS_W XTS_C _ <<< "$(row "$E" xts)"
read -r LIM_W LIM_C _ <<< "$(row "$E" limit)"
line() { # label output key
    read -r w c r <<< "$(row "$2" "$3")"
    echo "| $1 | $w | $c | $r% |"
}

cat <<EOT
Command: \`bench/storage.sh\` (SIZE_MB=$SIZE_MB, RUNS=$RUNS, medians), $(date -u '+%Y-%m-%d %H:%M UTC'),
$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $(cut -d' ' -f1-3 /proc/loadavg).
The images are in the host page cache; "cold" = a fresh stack (empty verity and block caches).
"CPU MB/s" = bytes per CPU-second of the reading thread (robust to other load on this shared machine);
ratios compare CPU MB/s with the limit measured before and after each run (the better value): SHA-256 for verity, and for
verity + crypt hashing and decrypting every byte once, 1 / (1/SHA-256 + 1/AES-XTS).

| what | wall MB/s | CPU MB/s | vs limit |
|---|---:|---:|---:|
| SHA-256 limit: sha2 crate, salted 4 KiB blocks (verity's work), one core | $SHA_W | $SHA_C | 100% |
| AES-256-XTS: myst_formats::xts, 4 KiB requests, one core | $XTS_W | $XTS_C | |
| verity + crypt limit: 1 / (1/SHA-256 + 1/AES-XTS) | $LIM_W | $LIM_C | 100% |
| openssl speed -evp sha256, 4 KiB blocks | $OSSL_SHA | | $(pct "$OSSL_SHA" "$SHA_C") of SHA-256 |
| openssl speed -evp aes-256-xts, 4 KiB blocks | $OSSL_XTS | | $(pct "$OSSL_XTS" "$XTS_C") of AES-XTS |
| veritysetup verify, plain image (whole data area) | $VS | | $(pct "$VS" "$SHA_C") of SHA-256 |
$(line "verity+ext2, cold, default stack (32 MiB cache, 4 MiB sequential cutoff)" "$P" cold_default)
$(line "verity+ext2, cold, file-sized cache, no cutoff (fills the cache)" "$P" cold_file_cache)
$(line "verity+ext2, warm, file-sized cache" "$P" warm_file_cache)
$(line "verity+crypt+ext2, cold, default stack" "$E" cold_default)
$(line "verity+crypt+ext2, cold, file-sized cache, no cutoff" "$E" cold_file_cache)
$(line "verity+crypt+ext2, warm, file-sized cache" "$E" warm_file_cache)
EOT
