#!/usr/bin/env bash
# Builds the NEON int8 GEMV with the AArch64 cross compiler and runs its check (neon_check.cc)
# under qemu user-mode emulation: the kernel's real arm_neon.h code path, on an x86 host.
# Exits 77 (CTest's skip) when aarch64-linux-gnu-g++ or qemu-aarch64(-static) is missing; on an
# AArch64 host the binary runs directly.
#   bash tests/neon/run.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build}/neon_check
if [[ $(uname -m) == aarch64 ]]; then
  cxx=g++
  runner=()
else
  cxx=aarch64-linux-gnu-g++
  runner=()
  for q in qemu-aarch64-static qemu-aarch64; do
    if command -v "$q" > /dev/null; then runner=("$q"); break; fi
  done
  if ! command -v "$cxx" > /dev/null || [[ ${#runner[@]} -eq 0 ]]; then
    echo "skipped: needs $cxx and qemu-aarch64 (Debian: g++-aarch64-linux-gnu qemu-user-static)"
    exit 77
  fi
fi
# Only the sources the kernel and its oracle need; static, so qemu needs no AArch64 libraries.
"$cxx" -O2 -std=c++20 -static -march=armv8.2-a+dotprod -I"$root/include" -I"$root/src" \
  "$root/src/kernels/cpu/int4_int8_neon.cc" "$root/src/kernels/ref/int4_ref.cc" \
  "$root/src/kernels/cpu/int4_layout.cc" "$root/src/format/quantizer.cc" \
  "$root/src/core/thread_pool.cc" "$root/src/core/error.cc" "$root/tests/neon/neon_check.cc" \
  -lpthread -o "$out"
"${runner[@]}" "$out"
