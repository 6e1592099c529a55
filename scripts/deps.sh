#!/usr/bin/env bash
# Installs the Debian 12 packages datafeed builds with, if any is missing.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail

DATAFEED_DEBIAN_PACKAGES=(
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libtorch-dev libboost-dev libopencv-dev
  libturbojpeg0-dev libjpeg62-turbo-dev libarchive-dev   # JPEG decoding (TurboJPEG and libjpeg APIs), WebDataset tar shards
  libflatbuffers-dev flatbuffers-compiler nlohmann-json3-dev libssl-dev
  libcli11-dev help2man   # the programs' command line (CLI11), their man pages
  file man-db             # tests/install/deb_test.sh looks into the Debian package
  libgtest-dev libbenchmark-dev
  python3-torch python3-torchvision python3-pytest python3-pip openssl
  binutils patchelf   # GPU bundles: objdump/nm for the library closure, RUNPATHs
  clang-14 libclang-rt-14-dev   # scripts/sanitize.sh, scripts/fuzz.sh: ASan/UBSan and libFuzzer
)

missing=()
for p in "${DATAFEED_DEBIAN_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "datafeed: installing missing Debian packages: ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
