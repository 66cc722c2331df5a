#!/usr/bin/env bash
# The whole test suite: installs the Debian packages the tests use as oracles
# (when missing), then runs the Rust tests, clippy and rustfmt.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use as independent oracles and guest programs.
need_pkgs=()
want() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
want cpio cpio
want bsdtar libarchive-tools
want mke2fs e2fsprogs
want debugfs e2fsprogs
want veritysetup cryptsetup-bin
want cryptsetup cryptsetup-bin
want busybox busybox-static
want musl-gcc musl-tools
want openssl openssl
want gcc gcc
want strace strace
# image_oci: reference OCI tools (build layouts, unpack, convert transports).
want umoci umoci
want skopeo skopeo
want zstd zstd
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need_pkgs+=(libc6-dev)
# The LTP test (crates/myst/tests/ltp.rs, scripts/ltp.sh) builds the Linux
# Test Project from third_party/ltp: autotools, make, pkg-config, xz, strip
# and readelf (binutils), kernel headers (linux-libc-dev). No bison/flex: the
# directories it builds do not use them.
want autoconf autoconf
want automake automake
want m4 m4
want make make
want pkg-config pkg-config
want xz xz-utils
want strip binutils
want readelf binutils
[ -e /usr/include/linux/version.h ] || need_pkgs+=(linux-libc-dev)
# runtime_debian builds a Debian root with debootstrap (in /usr/sbin).
[ -x /usr/sbin/debootstrap ] || want debootstrap debootstrap
if [ ${#need_pkgs[@]} -gt 0 ]; then
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    if [ "$(id -u)" = 0 ]; then
        echo "test.sh: installing ${need_pkgs[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    else
        echo "test.sh: missing packages ${need_pkgs[*]} (run as root to install them)" >&2
    fi
fi
# Python cryptography decrypts LUKS payloads independently of our code.
if ! python3 -c 'import cryptography' 2>/dev/null; then
    python3 -m pip install --quiet cryptography 2>/dev/null \
        || { apt-get install -y -qq python3-cryptography >/dev/null 2>&1 || true; }
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast
