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
  python3-mypy        # tests/python/test_typing.py: mypy checks the Python package's type hints
  python3-grpcio      # bench/python_writer_bench.py: the seed-style Python gRPC service it compares against
  libspdlog-dev        # the library's log (transport/include/datafeed/transport/log.h)
  libcpp-httplib-dev   # datafeed-producer --metrics-port (Prometheus /metrics)
  python3-matplotlib   # bench/plot.py's PNG charts
  python3-prometheus-client   # datafeed.metrics (optional for users): tests/python/test_metrics.py
  iproute2 util-linux   # tests/multihost: network namespaces, veth, bridges (ip), unshare, nsenter
  python3-kubernetes python3-yaml   # tests/deploy: unknown fields in the Kubernetes manifests
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

# deploy/k8s manifests are validated (ctest deploy.manifests) with the
# kubernetes-models npm package: node and npm from Debian when there is no
# node at all, the npm packages into a fixed folder once (deps time, never
# at test time).
DATAFEED_K8S_VALIDATE=/opt/datafeed-k8s-validate
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "datafeed: installing nodejs and npm (Debian) for the manifest validator" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d "$DATAFEED_K8S_VALIDATE/node_modules/kubernetes-models" ] || [ ! -d "$DATAFEED_K8S_VALIDATE/node_modules/js-yaml" ]; then
  echo "datafeed: installing kubernetes-models and js-yaml (npm) into $DATAFEED_K8S_VALIDATE" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO mkdir -p "$DATAFEED_K8S_VALIDATE"
  $SUDO npm install --no-audit --no-fund --silent --prefix "$DATAFEED_K8S_VALIDATE" kubernetes-models@5 js-yaml@4
fi
