#!/usr/bin/env bash
# End-to-end smoke test of the command-line tools, as a user runs them:
# datafeed-make-mnist -> datafeed-producer -> datafeed-consume, over shared
# memory, over gRPC and auto://, plus the errors a user meets first.
# Usage: tools_smoke.sh BUILD_DIR
set -euo pipefail
build="$1"
make_mnist="$build/producer/datafeed-make-mnist"
producer="$build/producer/datafeed-producer"
consume="$build/consumer/datafeed-consume"
work="$(mktemp -d)"
trap 'rm -rf "$work"; kill $(jobs -p) 2>/dev/null || true' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

"$make_mnist" --out "$work/mnist" --count 3000 --seed 3 >/dev/null

# shm: 3000 samples, batch 512, 2 epochs -> 2 x 6 batches.
name="smoke-$$"
"$producer" --mnist "$work/mnist" --endpoint "shm://$name" --batch-size 512 --epochs 2 --quiet &
out="$("$consume" --endpoint "shm://$name" --json)"
wait $!
echo "shm: $out"
grep -q '"batches": 12,' <<<"$out" || fail "shm: expected 12 batches: $out"
grep -q '"samples": 6000,' <<<"$out" || fail "shm: expected 6000 samples: $out"

# The progress line: the counters, then epoch x/N, percent and ETA, and
# what one thread makes. The
# consumer takes 100 ms a batch, so the producer is still serving when its
# 0.2 s progress lines come.
name="smoke-progress-$$"
"$producer" --mnist "$work/mnist" --endpoint "shm://$name" --batch-size 512 --epochs 2 --progress-s 0.2 \
    2>"$work/progress.log" &
"$consume" --endpoint "shm://$name" --step-ms 100 --json >/dev/null
wait $!
line="$(grep -m1 -E '^datafeed-producer: [0-9]+ batches \(.*publish [0-9.]+ s; epoch [12]/2, [0-9]+\.[0-9]%, (ETA [0-9]+(s|m[0-9]{2}s|h[0-9]{2}m)|ETA <1s|ETA unknown|done); one thread makes ~[0-9]+ samples/s of this pipeline$' \
    "$work/progress.log")" || fail "no progress line with epoch x/2, percent and ETA: $(cat "$work/progress.log")"
echo "progress: $line"

# An auto:// producer on a port the kernel picks; sets $served to the
# endpoint it prints and $producer_pid.
start_auto_producer() {
  local log="$work/producer-$1.log"
  "$producer" --mnist "$work/mnist" --endpoint auto://127.0.0.1:0 --batch-size 1000 --epochs 1 --quiet \
      2>"$log" &
  producer_pid=$!
  served=""
  for _ in $(seq 400); do
    served="$(sed -n 's/^datafeed-producer: serving \([^ ]*\): .*/\1/p' "$log")"
    [ -n "$served" ] && return 0
    sleep 0.05
  done
  fail "$1: the producer did not start: $(cat "$log")"
}

# One consumer forced onto the gRPC stream.
start_auto_producer grpc
out="$(DATAFEED_TRANSPORT=grpc "$consume" --endpoint "$served" --json)"
wait "$producer_pid"
echo "grpc: $out"
grep -q '"batches": 3,' <<<"$out" || fail "grpc: expected 3 batches: $out"
grep -q '"transport": "grpc"' <<<"$out" || fail "grpc: expected the gRPC stream: $out"

# auto:// on one host picks shared memory.
start_auto_producer auto
out="$(DATAFEED_ENDPOINT="$served" "$consume" --json)"
wait "$producer_pid"
echo "auto: $out"
grep -q '"transport": "shm"' <<<"$out" || fail "auto: expected shared memory: $out"

# A corrupt dataset file is an error that names the file.
cp -r "$work/mnist" "$work/bad"
truncate -s 1000 "$work/bad/train-images-idx3-ubyte"
if err="$("$producer" --mnist "$work/bad" --endpoint "shm://$name-bad" 2>&1)"; then
  fail "a truncated dataset was accepted"
fi
grep -q "train-images-idx3-ubyte" <<<"$err" || fail "the error does not name the file: $err"
grep -q "truncated" <<<"$err" || fail "the error does not say what is wrong: $err"

# A bad pipeline spec names the bad part.
if err="$("$producer" --mnist "$work/mnist" --pipeline 'to_tensor,blurr(3)' 2>&1)"; then
  fail "a bad pipeline was accepted"
fi
grep -q "blurr" <<<"$err" || fail "the error does not name the bad transform: $err"

# No producer: the consumer says so and how to fix it.
if err="$("$consume" --endpoint "shm://nobody-$$" --connect-timeout-ms 0 2>&1)"; then
  fail "a missing producer was not an error"
fi
grep -q "no producer at shm://nobody-$$" <<<"$err" || fail "unclear error: $err"

echo "1 passed, 0 failed"
