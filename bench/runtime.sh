#!/usr/bin/env bash
# Runtime benchmark: syscall loops and busybox workloads, natively, under
# myst exec-linux (with syscall-site rewriting, the default, and with every
# syscall through SIGSYS), under gVisor (runsc --platform=ptrace) and PRoot.
# Prints medians and ratios to native; one command:  bash bench/runtime.sh
# RUNS=N (default 5) sets the repetitions; results go to stdout as a
# Markdown table (paste into docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
cargo build --release --quiet
MYST=$PWD/target/x86_64-unknown-linux-gnu/release/myst
work=$(mktemp -d /tmp/myst-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/bin" "$root/data/tree"
cc=gcc; command -v musl-gcc >/dev/null && cc=musl-gcc
"$cc" -static -O2 -o "$root/bin/loops" bench/runtime_loops.c
cp "$(command -v busybox)" "$root/bin/busybox"
head -c 4096 /dev/urandom > "$root/data/f4k"
head -c $((200 * 1024 * 1024)) /dev/urandom > "$root/data/big"
for i in $(seq 1 40); do
    mkdir -p "$root/data/tree/d$i"
    for j in $(seq 1 25); do head -c $((RANDOM * 2)) /dev/urandom > "$root/data/tree/d$i/f$j"; done
done

# Warm the page cache so the first measured run is not a cold read.
cat "$root/data/big" > /dev/null
tar -cf - -C "$root/data" tree > /dev/null

have_runsc=0; command -v runsc >/dev/null && have_runsc=1
have_proot=0; command -v proot >/dev/null && have_proot=1

# run ENV CMD...: prints one measurement. Loop programs print ns/op; the
# others are timed whole (ms).
run() {
    local env=$1; shift
    case $env in
        native) (cd "$root" && "$root$1" "${@:2}") ;;
        myst) "$MYST" exec-linux --memory-size 512m "$root" "$@" ;;
        myst-sigsys) "$MYST" exec-linux --memory-size 512m --rewrite-syscalls false "$root" "$@" ;;
        gvisor) (cd "$root" && runsc --rootless --network=none --platform=ptrace do "$root$1" "${@:2}") ;;
        proot) proot -r "$root" -w / "$@" ;;
    esac
}

timed() {  # prints elapsed ms of the command
    local s e
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    echo $(( (e - s) / 1000000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# paths inside the root for myst/proot; gvisor and native run from the root dir
path_for() { case $1 in native|gvisor) echo "$root$2" ;; *) echo "$2" ;; esac; }

declare -A result
envs=(native myst myst-sigsys)
[ $have_runsc = 1 ] && envs+=(gvisor)
[ $have_proot = 1 ] && envs+=(proot)

# Runs are interleaved (every environment once per round) so that load from
# other jobs on the machine spreads over all columns alike.
declare -A vals
for r in $(seq 1 "$RUNS"); do
    for env in "${envs[@]}"; do
        for t in getppid stat openread sha256 tar; do
            case $t in
                getppid) n=200000; [ $env = gvisor ] || [ $env = proot ] && n=5000
                         v=$(run $env /bin/loops getppid $n) ;;
                stat) n=100000; [ $env = gvisor ] || [ $env = proot ] && n=3000
                      v=$(run $env /bin/loops stat $n "$(path_for $env /data/f4k)") ;;
                openread) n=50000; [ $env = gvisor ] || [ $env = proot ] && n=2000
                          v=$(run $env /bin/loops openread $n "$(path_for $env /data/f4k)") ;;
                sha256) v=$(timed run $env /bin/busybox sha256sum "$(path_for $env /data/big)") ;;
                tar) v=$(timed run $env /bin/busybox tar -cf - -C "$(path_for $env /data)" tree) ;;
            esac
            vals[$env,$t]="${vals[$env,$t]:-} $v"
        done
    done
done
for env in "${envs[@]}"; do
    for t in getppid stat openread sha256 tar; do
        result[$env,$t]=$(printf '%s\n' ${vals[$env,$t]} | median)
        echo "$env $t:${vals[$env,$t]} -> median ${result[$env,$t]}" >&2
    done
done

echo
echo "Command: bash bench/runtime.sh (RUNS=$RUNS), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
echo
printf '| workload | unit |'; for env in "${envs[@]}"; do printf ' %s |' "$env"; done; echo
printf '|---|---|'; for env in "${envs[@]}"; do printf -- '---|'; done; echo
for t in getppid stat openread sha256 tar; do
    case $t in
        getppid) label="getppid loop"; unit="ns/call" ;;
        stat) label="stat loop (hostfs root)"; unit="ns/call" ;;
        openread) label="open + read 4 KiB + close"; unit="ns/iter" ;;
        sha256) label="busybox sha256sum 200 MB"; unit="ms" ;;
        tar) label="busybox tar of 1000 files (~32 MB)"; unit="ms" ;;
    esac
    printf '| %s | %s |' "$label" "$unit"
    base=${result[native,$t]}
    for env in "${envs[@]}"; do
        v=${result[$env,$t]}
        if [ "$env" = native ]; then printf ' %s |' "$v"; else
            printf ' %s (%sx) |' "$v" "$(awk -v a="$v" -v b="$base" 'BEGIN { printf (b > 0) ? "%.1f" : "-", a / b }')"
        fi
    done
    echo
done
