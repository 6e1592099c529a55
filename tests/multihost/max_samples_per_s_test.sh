#!/usr/bin/env bash
# datafeed-producer --max-samples-per-s R (a token bucket of one batch): a
# consumer reading N batches of n samples over shared memory cannot see more
# than the limiter lets through. Between the first and the last batch it
# receives, at least (N - 1 - B) * n / R seconds pass, where B batches may
# have been published before it came (the ring's slots plus the batches in
# flight plus the bucket's one): so its rate is at most R * (N-1) / (N-1-B).
# Only this upper bound is asserted (a slow machine cannot break it; the
# rate reached is measured by tests/multihost/scale_bench.sh). Also: a
# negative limit is refused, naming the flag.
# usage: max_samples_per_s_test.sh PRODUCER CONSUME MAKE_MNIST
set -euo pipefail
producer="$1" consume="$2" make_mnist="$3"
work="$(mktemp -d)"
ppid=""
cleanup() {
  [[ -n "$ppid" ]] && kill -9 "$ppid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$make_mnist" --out "$work/mnist" --count 4000 --seed 2 >/dev/null
rc=0
"$producer" --mnist "$work/mnist" --endpoint "shm://df-rate-$$" --max-samples-per-s -5 >"$work/out" 2>&1 || rc=$?
[[ $rc == 2 ]] && grep -q -- "--max-samples-per-s" "$work/out" || {
  echo "FAIL: --max-samples-per-s -5: exit $rc:"
  cat "$work/out"
  exit 1
}
echo "ok: a negative limit refused: $(head -1 "$work/out")"
R=4000 n=100 N=40 slots=4 in_flight=2
"$producer" --mnist "$work/mnist" --endpoint "shm://df-rate-$$" --pipeline to_tensor --batch-size "$n" --threads 1 \
  --slots "$slots" --max-in-flight "$in_flight" --max-samples-per-s "$R" --quiet 2>"$work/p.log" &
ppid=$!
out="$(timeout 60 "$consume" --endpoint "shm://df-rate-$$" --json --connect-timeout-ms 30000)"
timeout 60 tail --pid="$ppid" -f /dev/null || true
wait "$ppid" || { echo "FAIL: producer:"; cat "$work/p.log"; exit 1; }
ppid=""
/usr/bin/python3 - "$out" "$R" "$n" "$N" "$((slots + in_flight + 1))" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
R, n, N, B = (int(a) for a in sys.argv[2:6])
assert j["batches"] == N and j["samples"] == N * n, j
bound = R * (N - 1) / (N - 1 - B)
print("consumer read %d samples/s with --max-samples-per-s %d (upper bound %.0f)" % (j["samples_per_s"], R, bound))
if j["samples_per_s"] > bound:
    sys.exit("FAIL: %d samples/s is above what a limit of %d allows (%.0f)" % (j["samples_per_s"], R, bound))
print("ok")
PY
