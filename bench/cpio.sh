#!/usr/bin/env bash
# Benchmark: `myst mkcpio` (release build) against `find . | cpio -o -H newc`
# and `bsdtar --format newc`, on a generated tree (~20,000 files, ~500 MB)
# and on /usr. Prints the median wall time of each tool and its ratio to
# myst (>1 means the other tool is slower), plus the archive sizes.
#
#   bench/cpio.sh                   # both trees, 3 runs each
#   RUNS=5 USR= bench/cpio.sh       # 5 runs, generated tree only
#
# Environment: RUNS (default 3), USR (default /usr; empty skips it),
# WORK (scratch directory, default target/bench-cpio; needs ~2x the tree).
# The page cache is warmed by the first, untimed pass over each tree, so the
# figures measure archiving, not the disk reading the source.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
USR=${USR-/usr}
WORK=${WORK:-$PWD/target/bench-cpio}
command -v cpio >/dev/null || { echo "bench/cpio.sh: needs GNU cpio" >&2; exit 1; }
command -v bsdtar >/dev/null || { echo "bench/cpio.sh: needs bsdtar (libarchive-tools)" >&2; exit 1; }

cargo build --release --quiet -p myst
MYST=$PWD/target/x86_64-unknown-linux-gnu/release/myst
mkdir -p "$WORK"
TREE=$WORK/tree
OUT=$WORK/out

# ~20,000 files in 200 directories, ~500 MB: mostly small files (0-20 KiB)
# plus 100 files of 2.75 MiB; deterministic contents.
if [ ! -e "$TREE/.done" ]; then
    rm -rf "$TREE"
    python3 - "$TREE" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
blob = rng.randbytes(4 << 20)
total = 0
for d in range(200):
    dd = os.path.join(root, f"d{d:03}", f"sub{d % 7}")
    os.makedirs(dd, exist_ok=True)
    for f in range(100):
        if d < 100 and f == 0:
            size = 11 << 18
        else:
            size = rng.randrange(0, 20 << 10)
        off = rng.randrange(0, len(blob) - size)
        with open(os.path.join(dd, f"file{f:03}.bin"), "wb") as fh:
            fh.write(blob[off:off + size])
        total += size
    os.symlink("sub0", os.path.join(root, f"d{d:03}", "link"))
print(f"generated {root}: 20000 files, {total / 1e6:.0f} MB", file=sys.stderr)
PY
    touch "$TREE/.done"
fi

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
ratio() { awk "BEGIN {printf \"%.2f\", $1 / $2}"; }

run_tool() {
    case $1 in
        myst) "$MYST" mkcpio "$2" "$OUT.myst" ;;
        gnu) ( cd "$2" && find . | cpio -o -H newc --quiet > "$OUT.gnu" ) ;;
        bsdtar) bsdtar --format newc -cf "$OUT.bsdtar" -C "$2" . ;;
    esac
}

# bench NAME DIR: times the three tools on DIR, interleaved, RUNS times.
# Wall time is what a user waits for; CPU time (user + sys, children
# included) is less disturbed by other load on a shared machine.
bench() {
    local name=$1 dir=$2 i tool r u s
    declare -A wall=() cpu=()
    rm -f "$OUT".*
    # Warm-up: one untimed pass reads the tree into the page cache.
    run_tool gnu "$dir" 2>/dev/null || true
    rm -f "$OUT".*
    local TIMEFORMAT='%R %U %S'
    for i in $(seq "$RUNS"); do
        for tool in myst gnu bsdtar; do
            sync
            { time run_tool "$tool" "$dir" 2>"$OUT.err"; } 2>"$OUT.time" \
                || { echo "$tool failed:"; cat "$OUT.err"; } >&2
            read -r r u s < "$OUT.time"
            wall[$tool]+="$r "
            cpu[$tool]+="$(awk "BEGIN {print $u + $s}") "
            size[$tool]=$(stat -c %s "$OUT.$tool")
            rm -f "$OUT.$tool"
        done
    done
    local mw gw bw mc gc bc
    mw=$(med "${wall[myst]}"); gw=$(med "${wall[gnu]}"); bw=$(med "${wall[bsdtar]}")
    mc=$(med "${cpu[myst]}"); gc=$(med "${cpu[gnu]}"); bc=$(med "${cpu[bsdtar]}")
    printf '%s: %s entries, %s MB, median of %s runs (ratio = other / myst)\n' "$name" \
        "$(find "$dir" | wc -l)" "$(( ${size[myst]} / 1000000 ))" "$RUNS"
    printf '  %-24s wall %6.2f s  cpu %6.2f s\n' "myst mkcpio" "$mw" "$mc"
    printf '  %-24s wall %6.2f s  cpu %6.2f s  wall ratio %s  cpu ratio %s\n' \
        "find | cpio -o -H newc" "$gw" "$gc" "$(ratio "$gw" "$mw")" "$(ratio "$gc" "$mc")"
    printf '  %-24s wall %6.2f s  cpu %6.2f s  wall ratio %s  cpu ratio %s\n' \
        "bsdtar --format newc" "$bw" "$bc" "$(ratio "$bw" "$mw")" "$(ratio "$bc" "$mc")"
    printf '  wall runs: myst %s| gnu %s| bsdtar %s\n' "${wall[myst]}" "${wall[gnu]}" "${wall[bsdtar]}"
}

declare -A size=()
date
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
bench "generated tree" "$TREE"
if [ -n "$USR" ]; then
    bench "$USR" "$USR"
fi
rm -f "$OUT".*
