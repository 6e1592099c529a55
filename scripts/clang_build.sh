#!/usr/bin/env bash
# Configures a clang 14 build folder with sanitizers (no torch, no benches)
# and builds the given targets there: the one builder of scripts/asan_build.sh
# (ASan+UBSan with libFuzzer coverage, for sanitize.sh and fuzz.sh) and
# scripts/tsan.sh (ThreadSanitizer).
#   clang_build.sh DIR SANITIZERS FUZZ(ON|OFF) TARGET...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$1" sanitizers="$2" fuzz="$3"
shift 3
bash "$root/scripts/deps.sh"
jobs="$(nproc 2>/dev/null || echo 2)"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$root/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 "${launcher[@]}" \
  -DDATAFEED_BUILD_TORCH=OFF -DDATAFEED_BUILD_BENCH=OFF \
  -DDATAFEED_SANITIZE="$sanitizers" -DDATAFEED_FUZZ="$fuzz" >/dev/null
cmake --build "$root/$dir" -j "$jobs" --target "$@"
