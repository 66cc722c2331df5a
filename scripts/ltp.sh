#!/usr/bin/env bash
# The Linux Test Project under myst: builds LTP (static, cached under
# target/ltp/), builds an ext2 root holding it, runs entries of
# runtest/syscalls under `myst exec-linux` and writes a per-test TSV and a
# summary compared with the native pass list.
#
#   scripts/ltp.sh [options] [LIST]
#
# LIST: a file of entry names (one per line, '#' comments), or a file in
# runtest format ("name command args"); default: all of runtest/syscalls.
#
# Options:
#   --myst PATH      myst binary (default: the release build, built if missing)
#   --out DIR        results directory (default target/ltp/runs/DATE)
#   --jobs N         tests run at a time (default 2)
#   --timeout S      seconds per test (default 60)
#   --check          exit 1 unless every entry of LIST passes (the CI gate)
#   --build-only     build LTP and the image, run nothing
#
# Environment: LTP_TARBALL (default third_party/ltp/ltp-6958277.tar.xz),
# LTP_MEMORY (guest memory, default 256m), LTP_MAKE_JOBS (default nproc).
#
# Clock tests (adjtimex*, clock_adjtime*, clock_settime*, leapsec01,
# settimeofday*, stime*) would change the machine's clock if a call reached
# the host: myst runs without CAP_SYS_TIME (setpriv), and when that cannot be
# verified they are skipped (status "skip"). Never run them natively.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

myst=""
out=""
jobs=2
timeout_s=60
check=0
build_only=0
list=""
while [ $# -gt 0 ]; do
    case "$1" in
        --myst) myst="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --check) check=1; shift ;;
        --build-only) build_only=1; shift ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "ltp.sh: unknown option $1" >&2; exit 2 ;;
        *) list="$1"; shift ;;
    esac
done

die() { echo "ltp.sh: error: $*" >&2; exit 1; }
log() { echo "ltp.sh: $*" >&2; }

# ---------------------------------------------------------------- build ---
tarball="${LTP_TARBALL:-$repo/third_party/ltp/ltp-6958277.tar.xz}"
[ -f "$tarball" ] || die "LTP source tarball $tarball not found (set LTP_TARBALL)"
for tool in gcc make autoconf automake autoreconf m4 pkg-config xz busybox; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/test.sh installs it)"
done
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || die "static glibc (libc6-dev) is missing"
busybox_bin="$(command -v busybox)"
command -v readelf >/dev/null 2>&1 || die "readelf is missing (binutils)"
if readelf -l "$busybox_bin" 2>/dev/null | grep -q INTERP; then
    die "$busybox_bin is not static (install busybox-static)"
fi

key="$(sha256sum "$tarball" | cut -c1-16)"
cache="$repo/target/ltp/$key"
src="$cache/src/ltp"
inst="$cache/install"
makej="${LTP_MAKE_JOBS:-$(nproc)}"
mkdir -p "$cache"

if [ ! -e "$cache/built" ]; then
    log "building LTP from $tarball into $cache (several minutes)"
    t0="$(date +%s)"
    rm -rf "$cache/src" "$inst"
    mkdir -p "$cache/src"
    tar -xJf "$tarball" -C "$cache/src"
    [ -d "$src" ] || die "$tarball does not hold ltp/"
    (
        cd "$src"
        nice -n 10 make autotools
        nice -n 10 ./configure --prefix=/ltp LDFLAGS=-static CFLAGS="-O2 -g0"
        nice -n 10 make -j"$makej" -C lib
        # -k: a test that does not build here is missing from the run (and
        # shows up as a failure), not a reason to stop.
        nice -n 10 make -j"$makej" -k -C libs || true
        dirs=(testcases/kernel/syscalls
              testcases/kernel/security/dirtyc0w testcases/kernel/security/dirtyc0w_shmem
              testcases/kernel/security/dirtypipe testcases/kernel/security/prot_hsymlinks
              testcases/kernel/ipc/msgstress testcases/kernel/ipc/pipeio)
        for d in "${dirs[@]}"; do
            nice -n 10 make -j"$makej" -k -C "$d" || true
            nice -n 10 make -k -C "$d" install DESTDIR="$inst" || true
        done
    ) > "$cache/build.log" 2>&1 || die "LTP build failed, see $cache/build.log"
    [ -d "$inst/ltp/testcases/bin" ] || die "LTP install is empty, see $cache/build.log"
    mkdir -p "$inst/ltp/runtest"
    cp "$src/runtest/syscalls" "$inst/ltp/runtest/"
    # Static binaries without symbols: the image is a third of the size.
    find "$inst/ltp/testcases/bin" -type f -perm -u+x -exec strip --strip-all {} + 2>/dev/null || true
    # The sources and objects (3 GB) are not needed once installed.
    rm -rf "$cache/src"
    touch "$cache/built"
    log "LTP built in $(( $(date +%s) - t0 )) s: $(find "$inst/ltp/testcases/bin" -type f | wc -l) files"
fi
runtest="$inst/ltp/runtest/syscalls"

[ -n "$myst" ] || myst="$repo/target/x86_64-unknown-linux-gnu/release/myst"
if [ ! -x "$myst" ]; then
    log "building myst (cargo build --release)"
    nice -n 10 cargo build --release --quiet
fi
[ -x "$myst" ] || die "myst binary $myst not found"
myst="$(cd "$(dirname "$myst")" && pwd)/$(basename "$myst")"

# ---------------------------------------------------------------- image ---
# The root: LTP under /ltp, users root/daemon/bin/nobody, /tmp, busybox as
# /bin/sh and its applets (the tests' helper scripts use sh, cat, mkdir...).
img="$cache/ltp.img"
bb_sum="$(sha256sum "$busybox_bin" | cut -c1-16)"
img_key="busybox=$bb_sum layout=1"
if [ ! -e "$img" ] || [ "$(cat "$cache/img.key" 2>/dev/null)" != "$img_key" ]; then
    log "building the root image $img"
    root="$cache/root"
    rm -rf "$root" "$img"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,dev,proc,sys,dev/shm}
    chmod 1777 "$root/tmp" "$root/dev/shm"
    cp -a "$inst/ltp" "$root/ltp"
    cp "$busybox_bin" "$root/bin/busybox"
    for a in $("$busybox_bin" --list); do
        [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
    done
    cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/sh
bin:x:2:2:bin:/bin:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
EOF
    cat > "$root/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
nogroup:x:65534:
nobody:x:65534:
EOF
    echo "ltp" > "$root/etc/hostname"
    : > "$root/etc/fstab"
    "$myst" mkext2 "$root" "$img.tmp"
    # Runs trust the image by its root hash (no unverified-image warning).
    "$myst" fssig --roothash "$img.tmp" > "$cache/roothash"
    mv "$img.tmp" "$img"
    echo "$img_key" > "$cache/img.key"
    rm -rf "$root"
fi
[ -s "$cache/roothash" ] || "$myst" fssig --roothash "$img" > "$cache/roothash"
cp "$cache/roothash" "$img.roothash"
[ "$build_only" = 1 ] && { log "built $img"; exit 0; }

# ------------------------------------------------------------------ run ---
[ -n "$out" ] || out="$repo/target/ltp/runs/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out/logs"
out="$(cd "$out" && pwd)"

# Entries: "name command args" lines from runtest/syscalls, restricted to
# LIST when one is given.
entries="$out/entries"
grep -v '^\s*#' "$runtest" | awk 'NF' > "$out/all-entries"
if [ -n "$list" ]; then
    [ -f "$list" ] || die "list $list not found"
    if awk 'NF && $1 !~ /^#/ && NF > 1 { found = 1 } END { exit !found }' "$list"; then
        grep -v '^\s*#' "$list" | awk 'NF' > "$entries"
    else
        grep -v '^\s*#' "$list" | awk 'NF { print $1 }' > "$out/names"
        awk 'NR == FNR { want[$1] = 1; next } ($1 in want) { print; seen[$1] = 1 }
             END { for (n in want) if (!(n in seen)) print n > "/dev/stderr" }' \
            "$out/names" "$out/all-entries" > "$entries" 2> "$out/unknown"
        if [ -s "$out/unknown" ]; then
            die "entries not in runtest/syscalls: $(tr '\n' ' ' < "$out/unknown")"
        fi
    fi
else
    cp "$out/all-entries" "$entries"
fi

# Clock tests: every test runs without CAP_SYS_TIME (dropped from the
# bounding set before myst starts), so whatever myst does with a guest's
# clock change, the host refuses it with EPERM. The clock tests run only when
# that is verified on the process that would run myst.
clock_re='^(adjtimex|clock_adjtime|clock_settime|leapsec|settimeofday|stime)'
guard=()
if command -v setpriv >/dev/null 2>&1 \
    && setpriv --bounding-set -sys_time --inh-caps -sys_time true 2>/dev/null; then
    guard=(setpriv --bounding-set -sys_time --inh-caps -sys_time)
fi
clock_tests=1
while read -r field hex; do
    case "$field" in
        CapPrm:|CapEff:|CapAmb:)
            if (( 16#$hex & (1 << 25) )); then clock_tests=0; fi ;;
    esac
done < <(env "${guard[@]}" cat /proc/self/status)
if [ "$clock_tests" = 0 ]; then
    log "cannot drop CAP_SYS_TIME (setpriv): the clock-setting tests are skipped"
fi

n_total="$(wc -l < "$entries")"
log "running $n_total entries, $jobs at a time, ${timeout_s}s each; results in $out"

export GUARD="${guard[*]}" MYST="$myst" IMG="$img" OUT="$out" TIMEOUT_S="$timeout_s" CLOCK_TESTS="$clock_tests" \
       CLOCK_RE="$clock_re" MEM="${LTP_MEMORY:-256m}"

# Live (not zombie) host processes of one test: in session $1 or carrying
# marker $2 in their environment. Prints their pids on one line.
leftovers() {
    local sid="$1" marker="$2" p st state pids=""
    for p in /proc/[0-9]*/stat; do
        { read -r st < "$p"; } 2>/dev/null || continue
        st="${st##*) }"
        # Fields after the command name: state ppid pgrp session ...
        read -r state _ _ st _ <<< "$st"
        [ "$state" = Z ] && continue
        if [ -n "$sid" ] && [ "$st" = "$sid" ]; then
            p="${p#/proc/}"; pids="$pids ${p%/stat}"
        fi
    done
    # A zombie's environment reads empty, so this finds live ones only.
    for p in $(grep -lzxF "$marker" /proc/[0-9]*/environ 2>/dev/null); do
        p="${p#/proc/}"; pids="$pids ${p%/environ}"
    done
    echo $pids | tr ' ' '\n' | sort -un | paste -sd' ' -
}
export -f leftovers

# One entry: runs in its own session with a marker in the environment of
# every host process it makes (myst's guest processes are host processes that
# keep myst's environment block), so leftovers are found and killed even when
# a guest moved to another session or process group.
run_one() {
    local line="$1" name cmd marker logf start end secs rc status sid pids
    name="${line%% *}"
    cmd="${line#* }"
    [ "$cmd" = "$line" ] && cmd="$name"
    logf="$OUT/logs/$name.log"
    if [ "$CLOCK_TESTS" != 1 ] && [[ "$name" =~ $CLOCK_RE ]]; then
        printf '%s\tskip\t-\t0\t\t\tclock-setting test not run\n' "$name" > "$OUT/logs/$name.row"
        return 0
    fi
    marker="MYST_LTP_RUN=$$-$RANDOM-$name"
    start="$(date +%s.%N)"
    set +e
    # The guest's command line goes through busybox sh like LTP's own runner
    # (runltp) does; cd to TMPDIR like runltp.
    # (stderr of the group: bash's own "Killed" notice after a timeout.)
    { env -i "$marker" PATH=/usr/bin:/bin HOME=/root \
        setsid sh -c 'echo $$ > "$1"; shift; exec timeout -s KILL "$@"' sh "$OUT/logs/$name.sid" \
        "$TIMEOUT_S" $GUARD "$MYST" exec-linux --roothash "$IMG.roothash" --memory-size "$MEM" "$IMG" /bin/env -i \
        LTPROOT=/ltp TMPDIR=/tmp PATH=/ltp/testcases/bin:/bin:/usr/bin:/sbin:/usr/sbin \
        HOME=/root LTP_TIMEOUT_MUL=1 /bin/sh -c "cd /tmp && exec $cmd" \
        > "$logf" 2>&1 < /dev/null; } 2>/dev/null
    rc=$?
    set -e
    end="$(date +%s.%N)"
    secs="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
    # Leftovers: the session's processes and anything carrying the marker,
    # still there a second after myst exited (a child the test just killed
    # may take a moment to go).
    sid="$(cat "$OUT/logs/$name.sid" 2>/dev/null || true)"
    local p st try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        pids="$(leftovers "$sid" "$marker")"
        [ -z "$pids" ] && break
        sleep 0.1
    done
    if [ -n "$pids" ]; then
        echo "ltp.sh: leftover processes killed: $pids" >> "$logf"
        kill -KILL $pids 2>/dev/null || true
    fi
    rm -f "$OUT/logs/$name.sid"
    if [ "$rc" = 137 ] && awk -v s="$secs" -v t="$TIMEOUT_S" 'BEGIN { exit !(s >= t - 0.5) }'; then
        status=timeout
    elif grep -q 'TFAIL' "$logf"; then
        status=fail
    elif [ "$rc" = 0 ] && grep -q 'TPASS' "$logf"; then
        status=pass
    elif [ "$rc" = 32 ] && ! grep -qE 'TBROK|TFAIL' "$logf"; then
        status=conf
    else
        status=fail
    fi
    local unh last
    unh="$(grep -o 'unhandled syscall [a-z0-9_]*' "$logf" | awk '{ print $3 }' | sort -u | paste -sd, -)"
    # Last lines, without LTP's closing summary counters.
    last="$(grep -v '^ltp.sh:' "$logf" | grep -v 'unhandled syscall' \
            | grep -vE '^(Summary:$|(passed|failed|broken|skipped|warnings) )' | awk 'NF' | tail -n 3 \
            | tr '\t' ' ' | cut -c1-200 | paste -sd'|' - | sed 's/|/ | /g')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$secs" "$unh" "$pids" "$last" \
        > "$OUT/logs/$name.row"
}
export -f run_one

tr '\n' '\0' < "$entries" | nice -n 10 xargs -0 -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}

# --------------------------------------------------------------- report ---
tsv="$out/results.tsv"
printf 'name\tstatus\texit\tseconds\tunhandled\tleftover_pids\tlast_lines\n' > "$tsv"
awk '{ print $1 }' "$entries" | while read -r n; do
    if [ -f "$out/logs/$n.row" ]; then cat "$out/logs/$n.row"
    else printf '%s\tfail\t-\t0\t\t\tno result (runner error)\n' "$n"; fi
done >> "$tsv"
rm -f "$out"/logs/*.row

native="$repo/tests/ltp/native-pass.txt"
summary="$out/summary.txt"
{
    echo "LTP runtest/syscalls under myst ($(date -u +%Y-%m-%d), myst $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), LTP ${key})"
    echo "entries: $n_total, ${timeout_s}s each, $jobs at a time"
    for s in pass fail timeout conf skip; do
        printf '%-8s %s\n' "$s" "$(awk -F'\t' -v s="$s" 'NR > 1 && $2 == s' "$tsv" | wc -l)"
    done
    if [ -f "$native" ]; then
        awk -F'\t' 'NR > 1 && $2 == "pass" { print $1 }' "$tsv" | sort > "$out/myst-pass.txt"
        awk '{ print $1 }' "$entries" | sort > "$out/ran.txt"
        sort "$native" | comm -12 - "$out/ran.txt" > "$out/native-ran.txt"
        echo "native pass (of these entries): $(wc -l < "$out/native-ran.txt")"
        echo "pass natively and under myst:   $(comm -12 "$out/native-ran.txt" "$out/myst-pass.txt" | wc -l)"
        echo "pass natively, not under myst:  $(comm -23 "$out/native-ran.txt" "$out/myst-pass.txt" | wc -l)"
        echo "pass under myst, not natively:  $(comm -13 "$out/native-ran.txt" "$out/myst-pass.txt" | paste -sd' ' -)"
    fi
    # Per syscall family (the entry name without its number and _16/_64
    # suffix): entries, passing under myst, passing natively.
    awk -F'\t' 'NR == FNR { nat[$1] = 1; next }
        FNR > 1 { f = $1; sub(/(_16|_64)$/, "", f); sub(/_?[0-9]+$/, "", f)
                  n[f]++; if ($2 == "pass") p[f]++; if ($1 in nat) q[f]++ }
        END { for (f in n) printf "%s\t%d\t%d\t%d\n", f, n[f], p[f], q[f] }' \
        "$native" "$tsv" | sort | { printf 'family\tentries\tmyst_pass\tnative_pass\n'; cat; } > "$out/families.tsv"
    echo "entries that left guest processes (killed): $(awk -F'\t' 'NR > 1 && $6 != ""' "$tsv" | wc -l)"
    echo
    echo "unhandled syscalls (entries that hit each):"
    awk -F'\t' 'NR > 1 && $5 != "" { n = split($5, a, ","); for (i = 1; i <= n; i++) c[a[i]]++ }
                END { for (k in c) printf "%6d %s\n", c[k], k }' "$tsv" | sort -rn | head -n 40
    echo
    echo "first failure reason (fail and timeout entries):"
    awk -F'\t' 'NR > 1 && ($2 == "fail" || $2 == "timeout") { print $1 "\t" $2 }' "$tsv" \
        | while IFS=$'\t' read -r n s; do
            if [ "$s" = timeout ]; then echo "timeout"; continue; fi
            r="$(grep -m1 -E 'TBROK|TFAIL|myst: error|panicked' "$out/logs/$n.log" 2>/dev/null || true)"
            [ -n "$r" ] || r="exit $(awk -F'\t' -v n="$n" '$1 == n { print $3 }' "$tsv") without TFAIL/TBROK"
            # Drop file:line and the values that differ between tests.
            echo "$r" | sed -E 's/^[^ ]*\.c:[0-9]+: //; s/^[a-z0-9_]+ +[0-9]+ +//; s/0x[0-9a-f]+/0x_/g; s/[0-9]+/N/g' | cut -c1-110
        done | sort | uniq -c | sort -rn | head -n 40
} > "$summary"
cat "$summary"
log "per-test results: $tsv"

if [ "$check" = 1 ]; then
    bad="$(awk -F'\t' 'NR > 1 && $2 != "pass" { print $1 " (" $2 ")"; next }
                       NR > 1 && $6 != "" { print $1 " (left processes running)" }' "$tsv")"
    if [ -n "$bad" ]; then
        echo "ltp.sh: entries of $list that no longer pass:" >&2
        echo "$bad" | sed 's/^/  /' >&2
        for n in $(echo "$bad" | awk '{ print $1 }'); do
            echo "---- $n (last 20 lines of $out/logs/$n.log)" >&2
            tail -n 20 "$out/logs/$n.log" >&2 || true
        done
        exit 1
    fi
    log "all $n_total entries of $list pass"
fi
