#!/usr/bin/env bash
# Configures build-asan/ (clang 14, ASan + UBSan, libFuzzer coverage, no
# torch) for scripts/sanitize.sh and scripts/fuzz.sh, which share it, and
# builds the targets given as arguments there (a helper of those two
# scripts, not a test by itself).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec bash "$root/scripts/clang_build.sh" build-asan address,undefined ON "$@"
