#!/usr/bin/env bash
# Storage stack reads: a 1 GiB file read sequentially through
# host file -> verity -> cache -> ext2 (crypt when available), cold and
# warm, next to this machine's SHA-256 (and AES-XTS) throughput and
# `veritysetup verify` over the same image, all measured in this run.
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

echo "== image: ${SIZE_MB} MiB file, mke2fs -d (4 KiB blocks) + veritysetup format" >&2
mkdir "$WORK/tree"
# Incompressible data, fast: AES-CTR keystream.
# (openssl dies of SIGPIPE when head has enough.)
{ openssl enc -aes-128-ctr -pass pass:myst -nosalt -pbkdf2 -in /dev/zero 2>/dev/null || true; } \
    | head -c "${SIZE_MB}M" > "$WORK/tree/big"
S_MB=$(( SIZE_MB + SIZE_MB / 16 + 16 ))
S=$(( S_MB << 20 ))
mke2fs -q -F -t ext2 -b 4096 -d "$WORK/tree" "$WORK/img" "${S_MB}M"
rm "$WORK/tree/big"
ROOT=$(veritysetup format --hash-offset="$S" "$WORK/img" "$WORK/img" | awk '/Root hash/ {print $3}')

echo "== veritysetup verify (whole ${S_MB} MiB data area)" >&2
vs=()
for _ in $(seq "$RUNS"); do
    t0=$(date +%s.%N)
    veritysetup verify --hash-offset="$S" "$WORK/img" "$WORK/img" "$ROOT"
    t1=$(date +%s.%N)
    vs+=("$(echo "$S $t0 $t1" | awk '{printf "%.0f", $1 / ($3 - $2) / 1e6}')")
done
VS=$(printf '%s\n' "${vs[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

echo "== openssl speed (4096-byte blocks)" >&2
ossl() { openssl speed -seconds 2 -bytes 4096 -evp "$1" 2>/dev/null | awk -v a="$1" '$1 == a || $1 == toupper(a) {v=$NF} END {sub("k","",v); printf "%.0f", v * 1000 / 1e6}'; }
OSSL_SHA=$(ossl sha256)
OSSL_XTS=$(ossl aes-256-xts)

echo "== myst storage stack" >&2
OUT=$("$BIN" "$WORK/img" "$S" "$ROOT" /big "$RUNS")
echo "$OUT" >&2
row() { echo "$OUT" | awk -v k="$1" '$1 == k {print $3, $5, $7}'; }
read -r SHA_W SHA_C _ <<< "$(row sha256_limit)"
read -r CD_W CD_C CD_R <<< "$(row cold_default)"
read -r CF_W CF_C CF_R <<< "$(row cold_file_cache)"
read -r WF_W WF_C WF_R <<< "$(row warm_file_cache)"
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100 * a / b}'; }

cat <<EOT
Command: \`bench/storage.sh\` (SIZE_MB=$SIZE_MB, RUNS=$RUNS, medians), $(date -u '+%Y-%m-%d %H:%M UTC'),
$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), SHA-NI), load average $(cut -d' ' -f1-3 /proc/loadavg).
The image is in the host page cache; "cold" = a fresh stack (empty verity and block caches).
"CPU MB/s" = bytes per CPU-second of the reading thread (robust to other load on this shared machine);
ratios compare CPU MB/s with the SHA-256 limit re-measured in each run.

| what | wall MB/s | CPU MB/s | vs SHA-256 limit |
|---|---:|---:|---:|
| SHA-256 limit: sha2 crate, salted 4 KiB blocks (verity's work), one core | $SHA_W | $SHA_C | 100% |
| openssl speed -evp sha256, 4 KiB blocks | $OSSL_SHA | | $(pct "$OSSL_SHA" "$SHA_C") |
| openssl speed -evp aes-256-xts, 4 KiB blocks | $OSSL_XTS | | (crypt layer not in this build) |
| veritysetup verify, same image (whole data area) | $VS | | $(pct "$VS" "$SHA_C") |
| myst verity+ext2, cold, default stack (32 MiB cache, 4 MiB sequential cutoff) | $CD_W | $CD_C | $CD_R% |
| myst verity+ext2, cold, file-sized cache, no cutoff (fills the cache) | $CF_W | $CF_C | $CF_R% |
| myst verity+ext2, warm, file-sized cache | $WF_W | $WF_C | $WF_R% |
EOT
