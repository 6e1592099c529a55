#!/usr/bin/env bash
# One datafeed-consume reading two datafeed-producer processes (shards 0
# and 1 of 2) through an endpoint that lists both: every batch of both
# shards arrives once, the JSON summary names each producer with its batch
# count, and both producers end cleanly (exit 0).
# usage: many_producers_test.sh PRODUCER CONSUME MAKE_MNIST SCHEME
set -euo pipefail
producer="$1" consume="$2" make_mnist="$3" scheme="$4"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
"$make_mnist" --out "$work/mnist" --count 1000 --seed 5 >/dev/null
ports=()
for shard in 0 1; do
  : >"$work/p$shard.log"  # there before the first look (the job's redirection may come later)
  "$producer" --mnist "$work/mnist" --endpoint "$scheme://127.0.0.1:0" --pipeline to_tensor --batch-size 100 \
    --threads 1 --shard "$shard" --num-shards 2 --quiet 2>"$work/p$shard.log" &
  pids+=("$!")
done
# Each prints "serving SCHEME://127.0.0.1:PORT" once it listens (bounded wait).
for shard in 0 1; do
  port=""
  for _ in $(seq 1 200); do
    port="$(sed -n 's/.*serving [a-z]*:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/p$shard.log" | head -1)"
    [[ -n "$port" ]] && break
    sleep 0.05
  done
  [[ -n "$port" ]] || { echo "producer $shard did not say its port:"; cat "$work/p$shard.log"; exit 1; }
  ports+=("$port")
done
out="$(timeout 60 "$consume" --endpoint "$scheme://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}" --json)"
echo "$out"
for shard in 0 1; do
  rc=0
  timeout 60 tail --pid="${pids[$shard]}" -f /dev/null || rc=$?
  wait "${pids[$shard]}" || { echo "producer $shard failed:"; cat "$work/p$shard.log"; exit 1; }
done
pids=()
/usr/bin/python3 - "$out" "$scheme" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
want = "shm" if sys.argv[2] == "auto" else "grpc"
assert j["batches"] == 10 and j["samples"] == 1000, j
producers = j["producers"]
assert len(producers) == 2, producers
for p in producers:
    assert p["state"] == "ended" and p["batches"] == 5 and p["transport"] == want, p
print("ok: 10 batches from 2 producers over", want)
PY
