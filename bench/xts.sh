#!/bin/sh
# AES-256-XTS throughput: myst's batched XTS vs the xts-mode crate (and the
# aes crate's plain ECB as the ceiling), same run, release build.
# Usage: bench/xts.sh [TOTAL_MIB_PER_RUN] [RUNS]   (defaults: 256 5)
set -eu
cd "$(dirname "$0")/.."
date
grep -m1 'model name' /proc/cpuinfo || true
exec cargo run -q --release -p myst-formats --example xts_bench -- "${1:-256}" "${2:-5}"
