#!/usr/bin/env bash
# The demo: installs what is missing, builds, generates a synthetic
# MNIST-format dataset (IDX files, fixed seed), then runs a producer process
# and a consumer process over shared memory and prints their throughput.
# Extra arguments go to datafeed-producer (e.g. --threads 1, --epochs 10).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/build.sh"
build="$root/build"
data="$build/demo/mnist"
if [ ! -f "$data/train-images-idx3-ubyte" ]; then
  "$build/producer/datafeed-make-mnist" --out "$data" --count 60000 --seed 1
fi
endpoint="shm://datafeed-demo-$$"
echo
echo "== producer: $endpoint, pipeline to_tensor,normalize(0.1307,0.3081),gaussian_blur(11), batch 8192"
"$build/producer/datafeed-producer" --mnist "$data" --endpoint "$endpoint" --epochs 3 \
    --progress-s 1 "$@" &
producer=$!
trap 'kill $producer 2>/dev/null || true' EXIT
echo "== consumer: $endpoint"
"$build/consumer/datafeed-consume" --endpoint "$endpoint" --report-s 0
wait $producer
trap - EXIT
