#!/usr/bin/env bash
# Cross-compile a static pulsebase for an ARM gateway (docs/operations.md,
# "Cross-compiling for ARM gateways").
#
#   packaging/cross-build.sh TARGET [--no-default-features] [cargo args...]
#
# TARGET, static (musl; rust-lld, shipped with Rust, links):
#   aarch64-unknown-linux-musl, armv7-unknown-linux-musleabihf
# or dynamic against glibc (the cross gcc links; the gateway needs a glibc at
# least as new as the cross toolchain's, 2.36 from Debian 12):
#   aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf
# The default `mimalloc` feature compiles C, which needs Debian's cross gcc
# (gcc-aarch64-linux-gnu or gcc-arm-linux-gnueabihf); on musl without it,
# pass --no-default-features for the system allocator. The binary lands in
# target/TARGET/release/pulsebase.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: packaging/cross-build.sh TARGET [--no-default-features] [cargo args...]}
shift
case "$target" in
  aarch64-unknown-linux-*) gcc=aarch64-linux-gnu-gcc; apt_package=gcc-aarch64-linux-gnu ;;
  armv7-unknown-linux-*) gcc=arm-linux-gnueabihf-gcc; apt_package=gcc-arm-linux-gnueabihf ;;
  *) echo "unsupported target $target (aarch64-unknown-linux-musl, armv7-unknown-linux-musleabihf," >&2
     echo "aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
esac

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi

# CARGO_TARGET_<TRIPLE>_LINKER and CC_<triple> name the target in two spellings.
triple_upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
triple_lower=$(echo "$target" | tr '-' '_')
case "$target" in
  *-musl*) linker=rust-lld ;;
  *) linker=$gcc ;;
esac

with_mimalloc=true
for arg in "$@"; do
  [ "$arg" = --no-default-features ] && with_mimalloc=false
done
if ($with_mimalloc || [ "$linker" = "$gcc" ]) && ! command -v "$gcc" >/dev/null; then
  echo "$target needs a C cross compiler here: apt-get install $apt_package" >&2
  case "$target" in
    *-musl*) echo "(or build without mimalloc: $0 $target --no-default-features)" >&2 ;;
  esac
  exit 1
fi
export "CARGO_TARGET_${triple_upper}_LINKER=$linker"
if $with_mimalloc; then
  export "CC_${triple_lower}=$gcc" "AR_${triple_lower}=${gcc%-gcc}-ar"
fi

cargo build --release --locked -p pulsebase --bin pulsebase --target "$target" "$@"
binary="target/$target/release/pulsebase"
ls -l "$binary"
if command -v file >/dev/null; then file "$binary"; fi
