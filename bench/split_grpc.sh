#!/usr/bin/env bash
# Split pipeline vs unsplit over gRPC loopback, alternated in one run: the
# producer (datafeed-producer, 1 worker thread) sends float32 batches, or --
# with --finish-on-consumer -- uint8 batches that datafeed-consume finishes
# (to_tensor, normalize) itself. Prints bytes per batch and the consumer's
# samples/s for each run.
#   bench/split_grpc.sh [BUILD_DIR] [REPEATS]
set -euo pipefail
build=$(cd "${1:-build}" && pwd) repeats=${2:-3}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
"$build/producer/datafeed-make-mnist" --out "$data" --count 60000 --seed 1 >/dev/null
pipeline='random_crop(28,2),to_tensor,normalize(0.1307,0.3081)'

run() {  # LABEL [producer flags...]
  local label=$1; shift
  local log="$data/producer.log" ep="" pid
  "$build/producer/datafeed-producer" --mnist "$data" --endpoint grpc://127.0.0.1:0 \
      --pipeline "$pipeline" "$@" --batch-size 1024 --threads 1 --epochs 5 --progress-s 0 \
      --linger-ms 2000 2>"$log" &
  pid=$!
  for _ in $(seq 200); do
    ep=$(sed -n 's/^datafeed-producer: serving \([^ ]*\): .*/\1/p' "$log")
    [ -n "$ep" ] && break
    sleep 0.05
  done
  [ -n "$ep" ] || { cat "$log" >&2; exit 1; }
  local out
  out=$("$build/consumer/datafeed-consume" --endpoint "$ep" --transport grpc --json --connect-timeout-ms 10000)
  wait "$pid" || true
  python3 -c 'import json, sys; d = json.loads(sys.argv[2]); print("%-8s %9d bytes/batch  %7.0f samples/s  consumer waiting %4.1f%%" % (sys.argv[1], d["bytes_per_batch"], d["samples_per_s"], 100 * d["wait_frac"]))' "$label" "$out"
}

echo "pipeline $pipeline, batch 1024, 5 epochs of 60000, gRPC loopback"
for _ in $(seq "$repeats"); do
  run unsplit
  run split --finish-on-consumer
done
