#!/usr/bin/env bash
# Configures build-asan/ (clang 14, ASan + UBSan, libFuzzer coverage, no
# torch) for scripts/sanitize.sh and scripts/fuzz.sh, which share it, and
# builds the targets given as arguments there (a helper of those two
# scripts, not a test by itself).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/deps.sh"
build="$root/build-asan"
jobs="$(nproc 2>/dev/null || echo 2)"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 "${launcher[@]}" \
  -DDATAFEED_BUILD_TORCH=OFF -DDATAFEED_BUILD_BENCH=OFF \
  -DDATAFEED_SANITIZE=address,undefined -DDATAFEED_FUZZ=ON >/dev/null
cmake --build "$build" -j "$jobs" --target "$@"
