#!/usr/bin/env bash
# Benchmark: `myst mkext2` against what Mystikos runs for the same job
# (`mke2fs -t ext2 -d` + `veritysetup format`), on a generated tree of about
# 20,000 files / 500 MB and on a Debian root file system (debootstrap
# minbase; /usr when debootstrap is not available). Reports medians of
# RUNS runs, the ratio, and myst's throughput next to this machine's SHA-256
# speed. Both sides write an image of the same size into the same directory;
# the source trees are in the page cache for both (one warm-up run first).
#
# Usage: bench/mkext2.sh            (RUNS=5 by default; needs root for debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
OUT=bench/out
mkdir -p "$OUT"

cargo build --release --quiet -p myst
MYST=$PWD/target/x86_64-unknown-linux-gnu/release/myst

for t in mke2fs veritysetup openssl python3; do
    command -v "$t" >/dev/null || { echo "mkext2.sh: $t is missing" >&2; exit 1; }
done

# Trees.
GEN=$OUT/gen
[ -d "$GEN" ] || python3 bench/gen_tree.py "$GEN"
DEB=$OUT/debian
DEB_NOTE="Debian bookworm minbase (debootstrap)"
if [ ! -x "$DEB/bin/sh" ]; then
    rm -rf "$DEB"
    if ! command -v debootstrap >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq debootstrap >/dev/null 2>&1 || true
    fi
    if ! { command -v debootstrap >/dev/null && [ "$(id -u)" = 0 ] &&
           debootstrap --variant=minbase bookworm "$DEB" >"$OUT/debootstrap.log" 2>&1; }; then
        echo "mkext2.sh: debootstrap unavailable or failed (see $OUT/debootstrap.log); using /usr instead" >&2
        rm -rf "$DEB"
        DEB=/usr
        DEB_NOTE="/usr of this machine (debootstrap unavailable)"
    fi
fi

median() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

# Each run prints "wall cpu" (seconds; cpu = user + sys, children included).
timed() {
    /usr/bin/time -f "%e %U %S" -o "$OUT/time.txt" "$@" >/dev/null
    awk '{printf "%s %.3f\n", $1, $2 + $3}' "$OUT/time.txt"
}
run_myst() { # tree img
    timed "$MYST" mkext2 --force "$1" "$2"
}
run_mystikos() { # tree img size
    timed bash -c 'rm -f "$2" && truncate -s "$3" "$2" && mke2fs -q -t ext2 -d "$1" "$2" &&
        veritysetup format --hash-offset="$3" "$2" "$2"' _ "$1" "$2" "$3"
}

RESULTS=$OUT/results.md
{
    echo "Command: \`bench/mkext2.sh\` (RUNS=$RUNS), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%d GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "Tools: $(mke2fs -V 2>&1 | head -1), $(veritysetup --version)"
    echo
    echo "| tree | files | bytes | myst wall s | myst CPU s | mke2fs+veritysetup wall s | CPU s | wall ratio | CPU ratio | myst MB/s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$RESULTS"

SHA=$(openssl speed -evp sha256 -bytes 4096 -seconds 2 2>/dev/null | awk '/^sha256/{print $2}' | tr -d k)
SHA_MBS=$(awk -v k="$SHA" 'BEGIN{printf "%.0f", k*1000/1e6}')

for spec in "generated:$GEN" "debian:$DEB"; do
    name=${spec%%:*}
    tree=${spec#*:}
    files=$(find "$tree" -xdev -type f | wc -l)
    bytes=$(du -sbx "$tree" | cut -f1)
    img_m=$OUT/$name-myst.img
    img_b=$OUT/$name-mystikos.img
    run_myst "$tree" "$img_m" >/dev/null # warm-up; also gives the size
    S=$("$MYST" fssig "$img_m" | awk '/^hash_offset/{print $2}')
    run_mystikos "$tree" "$img_b" "$S" >/dev/null
    : >"$OUT/m.txt"; : >"$OUT/b.txt"
    for _ in $(seq "$RUNS"); do
        sync
        run_myst "$tree" "$img_m" >>"$OUT/m.txt"
        sync
        run_mystikos "$tree" "$img_b" "$S" >>"$OUT/b.txt"
    done
    mw=$(cut -d' ' -f1 "$OUT/m.txt" | median); mc=$(cut -d' ' -f2 "$OUT/m.txt" | median)
    bw=$(cut -d' ' -f1 "$OUT/b.txt" | median); bc_=$(cut -d' ' -f2 "$OUT/b.txt" | median)
    rw=$(echo "scale=2; $bw / $mw" | bc); rc=$(echo "scale=2; $bc_ / $mc" | bc)
    mbs=$(echo "scale=0; $bytes / $mw / 1000000" | bc)
    echo "$name: myst $(tr '\n' ' ' <"$OUT/m.txt")| mystikos $(tr '\n' ' ' <"$OUT/b.txt")" >&2
    label=$name
    [ "$name" = debian ] && label="$DEB_NOTE"
    echo "| $label | $files | $bytes | $mw | $mc | $bw | $bc_ | ${rw}x | ${rc}x | $mbs |" >>"$RESULTS"
    rm -f "$img_m" "$img_b"
done
{
    echo
    echo "SHA-256 on this machine (openssl speed -evp sha256, 4096-byte blocks): $SHA_MBS MB/s."
    echo "myst MB/s = tree bytes / median wall time (it reads, writes and hashes every byte)."
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} >>"$RESULTS"
cat "$RESULTS"
