#!/usr/bin/env bash
# ctest: mnist_train --source feed against a real datafeed-producer process,
# the endpoint and transport passed the way a user would (DATAFEED_ENDPOINT,
# DATAFEED_TRANSPORT). Usage:
#   mnist_train_feed_test.sh PRODUCER TRAINER MNIST_DIR TRANSPORT [PIPELINE]
# TRANSPORT: shm, grpc (loopback) or auto (colocated: the handshake picks shm).
# PIPELINE: the producer's spec (default the study's, with blur); a split one
# ('a|to_tensor,...') makes the trainer finish uint8 batches itself.
set -euo pipefail
producer_bin=$1 trainer_bin=$2 mnist=$3 transport=$4
pipeline=${5:-'to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)'}
blur=true
[[ "$pipeline" == *gaussian_blur* ]] || blur=false

case "$transport" in
  shm) serve="shm://df-ctest-feed-$$" expect=shm ;;
  grpc) serve="grpc://127.0.0.1:0" expect=grpc ;;   # port 0: the kernel picks one
  auto) serve="auto://127.0.0.1:0" expect=shm ;;
  *) echo "mnist_train_feed_test: unknown transport '$transport'" >&2; exit 2 ;;
esac

log=$(mktemp)
"$producer_bin" --mnist "$mnist" --endpoint "$serve" --batch-size 64 --threads 1 \
    --pipeline "$pipeline" --epochs 0 --shuffle --progress-s 0 --linger-ms 0 2>"$log" &
producer=$!
trap 'kill "$producer" 2>/dev/null || true; rm -f "$log"' EXIT

# The endpoint as served (with the real port), from the producer's first line.
endpoint=""
for _ in $(seq 200); do
  endpoint=$(sed -n 's/^datafeed-producer: serving \([^ ]*\): .*/\1/p' "$log")
  [ -n "$endpoint" ] && break
  kill -0 "$producer" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$endpoint" ] || { echo "mnist_train_feed_test: the producer never said where it serves" >&2; exit 1; }

out=$(DATAFEED_ENDPOINT="$endpoint" DATAFEED_TRANSPORT="$transport" "$trainer_bin" --source feed \
      --steps 3 --ceiling-steps 1 --torch-threads 1 --connect-timeout-ms 30000 --json \
      --pipeline "$pipeline")
echo "$out"

kill -TERM "$producer"
# A clean stop on SIGTERM exits 0, over every transport.
rc=0
wait "$producer" || rc=$?
if [ "$rc" != 0 ]; then
  echo "mnist_train_feed_test: the producer exited with $rc" >&2
  cat "$log" >&2
  exit 1
fi

for want in "\"source\": \"feed\"" "\"transport\": \"$expect\"" "\"blur\": $blur" \
            "\"batch\": 64" "\"steps\": 3"; do
  if ! grep -qF "$want" <<<"$out"; then
    echo "mnist_train_feed_test: expected $want in the JSON line" >&2
    exit 1
  fi
done
grep -qE '"ratio": [0-9]' <<<"$out" || { echo "mnist_train_feed_test: no ratio" >&2; exit 1; }
