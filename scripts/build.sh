#!/usr/bin/env bash
# Configures and builds datafeed into build/ (release flags, warnings as
# errors). Extra arguments go to cmake's configure step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/deps.sh"
jobs="$(nproc 2>/dev/null || echo 2)"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDATAFEED_WERROR=ON "$@" >/dev/null
cmake --build "$root/build" -j "$jobs"
