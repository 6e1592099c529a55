#!/usr/bin/env bash
# bench/plot.py on JSON lines from real tiny bench runs: datafeed-bench
# pipeline at 1 and 2 threads (with the torchvision pipeline timed), and a
# producer + datafeed-consume pair at 1 and 2 producer threads (the
# consumer's wait fraction, its line given the producer's thread count as
# run_e2e.sh does). Every chart must come out as a non-empty PNG.
# Usage: plot_test.sh BUILD_DIR SOURCE_DIR PYTHON
set -euo pipefail
build="$1" src="$2" python="$3"
work="$(mktemp -d)"
trap 'rm -rf "$work"; kill $(jobs -p) 2>/dev/null || true' EXIT
keep="${PLOT_TEST_KEEP:-}"  # a folder to copy the charts to, for a look
fail() { echo "FAIL: $*" >&2; exit 1; }

runs="$work/runs.jsonl"
for t in 1 2; do
  "$build/datafeed-bench" pipeline --threads "$t" --samples 2000 --batch 256 --seconds 0.3 --repeats 1 --json \
      --torchvision --tv-count 300 --python "$python" >>"$runs"
done
"$build/producer/datafeed-make-mnist" --out "$work/mnist" --count 2000 --seed 4 >/dev/null
for t in 1 2; do
  name="plot-$$-$t"
  # Endless, and stopped once the consumer read its 30 batches: its wait
  # fraction is then the trainer's, not the wait for the end of the stream.
  "$build/producer/datafeed-producer" --mnist "$work/mnist" --endpoint "shm://$name" --batch-size 200 \
      --epochs 0 --threads "$t" --quiet &
  pid=$!
  line="$("$build/consumer/datafeed-consume" --endpoint "shm://$name" --batches 30 --step-ms 2 --json)"
  kill -TERM "$pid"
  wait "$pid"
  "$python" -c 'import json,sys; j=json.loads(sys.argv[1]); j["producer_threads"]=int(sys.argv[2]); print(json.dumps(j))' \
      "$line" "$t" >>"$runs"
done
echo "fixture:"; cat "$runs"

"$python" "$src/bench/plot.py" "$runs" --out "$work/charts"
for png in throughput_vs_threads wait_vs_threads datafeed_vs_dataloader; do
  f="$work/charts/$png.png"
  [ -s "$f" ] || fail "$f is missing or empty"
  [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
  echo "$png.png: $(stat -c %s "$f") bytes"
done
# Lines no chart can use: an error that says what it found, not an empty folder.
echo '{"bench": "other"}' >"$work/none.jsonl"
if "$python" "$src/bench/plot.py" "$work/none.jsonl" --out "$work/none" 2>"$work/err"; then
  fail "plot.py made no chart yet succeeded"
fi
grep -q "no chart" "$work/err" || fail "plot.py did not say why: $(cat "$work/err")"
[ -z "$keep" ] || cp "$work"/charts/*.png "$keep"/
echo OK
