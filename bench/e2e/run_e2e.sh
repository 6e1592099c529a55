#!/usr/bin/env bash
# End-to-end benchmark: a datafeed-producer process feeds the mnist_train
# trainer process; the trainer compares its step time with the step time on
# a resident batch (the ceiling, measured in the same run) and prints
# ratio = ceiling_step_s / step_s. One JSON line per run on stdout; progress
# on stderr.
#
# Runs, for each transport in $TRANSPORTS and each pipeline (the reference
# pipeline with and without gaussian_blur(11)), one producer + trainer pair,
# plus the in-process baseline (--source local: the producer's threads run
# inside the trainer, like DataLoader workers) when $LOCAL=1.
#
#   bench/e2e/run_e2e.sh                       # batch 8192, shm and grpc
#   BATCH=1024 STEPS=10 bench/e2e/run_e2e.sh   # shorter steps on a slow CPU
#
# Settings (environment):
#   BUILD            build directory                       (default: build)
#   MNIST            MNIST IDX directory; a synthetic one is written there if
#                    missing                               (default: $BUILD/e2e/mnist)
#   TRANSPORTS       any of: shm grpc auto; "" for none    (default: "shm grpc")
#   PIPELINES        any of: blur noblur                   (default: "blur noblur")
#   LOCAL            1: also run the in-process baseline   (default: 1)
#   BATCH            samples per batch                     (default: 8192)
#   STEPS            timed training steps                  (default: 5)
#   CEILING_STEPS    timed steps on the resident batch     (default: 2)
#   PRODUCER_THREADS producer threads (local: the trainer's producer threads)
#                                                          (default: 1)
#   TORCH_THREADS    trainer intra-op threads              (default: 1)
#   SLOTS            producer ring slots                   (default: 4)
#   DEVICE           cpu or cuda                           (default: cpu)
#   GRPC_HOST        where the gRPC producer listens       (default: 127.0.0.1)
#
# On a machine with few cores the producer and the trainer share them: give
# PRODUCER_THREADS + TORCH_THREADS <= cores, and say which split you used.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-$root/build}"
MNIST="${MNIST:-$BUILD/e2e/mnist}"
TRANSPORTS="${TRANSPORTS-shm grpc}"
PIPELINES="${PIPELINES-blur noblur}"
LOCAL="${LOCAL:-1}"
BATCH="${BATCH:-8192}"
STEPS="${STEPS:-5}"
CEILING_STEPS="${CEILING_STEPS:-2}"
PRODUCER_THREADS="${PRODUCER_THREADS:-1}"
TORCH_THREADS="${TORCH_THREADS:-1}"
SLOTS="${SLOTS:-4}"
DEVICE="${DEVICE:-cpu}"
GRPC_HOST="${GRPC_HOST:-127.0.0.1}"

producer_bin="$BUILD/producer/datafeed-producer"
trainer_bin="$BUILD/examples/mnist_train"
make_mnist_bin="$BUILD/producer/datafeed-make-mnist"
for b in "$producer_bin" "$trainer_bin" "$make_mnist_bin"; do
  [ -x "$b" ] || { echo "run_e2e: $b is missing; build the targets datafeed-producer mnist_train datafeed-make-mnist" >&2; exit 1; }
done
if [ ! -f "$MNIST/train-images-idx3-ubyte" ]; then
  mkdir -p "$MNIST"
  "$make_mnist_bin" --out "$MNIST" --count 60000 --seed 1 >&2
fi

pipeline_spec() {
  case "$1" in
    blur) echo "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)" ;;
    noblur) echo "to_tensor,normalize(0.1307,0.3081)" ;;
    *) echo "run_e2e: unknown pipeline '$1' (blur or noblur)" >&2; exit 2 ;;
  esac
}

# Where the producer serves for each transport. Port 0: the kernel picks a
# free port; the producer's first line says which.
serve_uri() {
  case "$1" in
    shm) echo "shm://df-e2e-$$" ;;
    grpc) echo "grpc://$GRPC_HOST:0" ;;
    auto) echo "auto://$GRPC_HOST:0" ;;
    *) echo "run_e2e: unknown transport '$1' (shm, grpc or auto)" >&2; exit 2 ;;
  esac
}

trainer_args=(--steps "$STEPS" --ceiling-steps "$CEILING_STEPS" --torch-threads "$TORCH_THREADS"
              --device "$DEVICE" --log-every 1 --json)

producer=""
log=""
cleanup() {
  if [ -n "$producer" ]; then kill "$producer" 2>/dev/null || true; wait "$producer" 2>/dev/null || true; fi
  [ -z "$log" ] || rm -f "$log"
}
trap cleanup EXIT

# A run that failed still gets a line (its reason is on stderr), and the
# script exits non-zero at the end; the other runs go on.
status=0
failed_run() {
  echo "run_e2e: $1/$2 FAILED (see above)" >&2
  printf '{"transport": "%s", "blur": %s, "batch": %s, "error": "the trainer failed; see stderr"}\n' \
      "$1" "$([ "$2" = blur ] && echo true || echo false)" "$BATCH"
  status=1
}

run_feed() {
  local transport=$1 pipeline=$2 spec
  spec=$(pipeline_spec "$pipeline")
  log=$(mktemp)
  "$producer_bin" --mnist "$MNIST" --endpoint "$(serve_uri "$transport")" --pipeline "$spec" \
      --batch-size "$BATCH" --threads "$PRODUCER_THREADS" --slots "$SLOTS" --epochs 0 --shuffle \
      --drop-last --progress-s 0.5 --linger-ms 0 2>"$log" &
  producer=$!
  # Wait until the producer is serving and has filled its ring (it is then
  # blocked and idle), so that it does not compete with the trainer's
  # start-up; from then on it works only as fast as the trainer takes.
  # Idle = its batch count did not move for a second.
  local endpoint="" i batches last=-1 same=0
  for i in $(seq 1200); do
    endpoint=$(sed -n 's/^datafeed-producer: serving \([^ ]*\): .*/\1/p' "$log")
    batches=$(sed -n 's/^datafeed-producer: \([0-9][0-9]*\) batches[ ,(].*/\1/p' "$log" | tail -n 1)
    if [ -n "$endpoint" ] && [ -n "$batches" ] && [ "$batches" -gt 0 ]; then
      if [ "$batches" = "$last" ]; then same=$((same + 1)); else same=0; last=$batches; fi
      [ "$same" -ge 10 ] && break
    fi
    kill -0 "$producer" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$endpoint" ] || { echo "run_e2e: the producer never said where it serves" >&2; cat "$log" >&2; exit 1; }
  echo "run_e2e: $transport/$pipeline: producer at $endpoint ($PRODUCER_THREADS threads), trainer $TORCH_THREADS threads" >&2
  # The trainer cannot know the producer's thread count; the JSON line gets it here.
  local out
  if out=$(DATAFEED_ENDPOINT="$endpoint" DATAFEED_TRANSPORT="$transport" \
           "$trainer_bin" --source feed --pipeline "$spec" --connect-timeout-ms 30000 "${trainer_args[@]}"); then
    sed "s/\"producer_threads\": null/\"producer_threads\": $PRODUCER_THREADS/" <<<"$out"
  else
    failed_run "$transport" "$pipeline"
  fi
  kill "$producer" 2>/dev/null || true
  wait "$producer" 2>/dev/null || true
  producer=""
  rm -f "$log"
  log=""
}

run_local() {
  local pipeline=$1 spec
  spec=$(pipeline_spec "$pipeline")
  echo "run_e2e: local/$pipeline: in-process producer ($PRODUCER_THREADS threads), trainer $TORCH_THREADS threads" >&2
  "$trainer_bin" --source local --mnist "$MNIST" --pipeline "$spec" --batch-size "$BATCH" \
      --threads "$PRODUCER_THREADS" "${trainer_args[@]}" || failed_run local "$pipeline"
}

for transport in $TRANSPORTS; do
  for pipeline in $PIPELINES; do
    run_feed "$transport" "$pipeline"
  done
done
if [ "$LOCAL" = 1 ]; then
  for pipeline in $PIPELINES; do
    run_local "$pipeline"
  done
fi
exit "$status"
