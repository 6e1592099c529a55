#!/usr/bin/env bash
# datafeed-producer and signals, over shm, grpc and auto:
#  1. SIGTERM (and SIGINT) with no consumer connected: it exits 0 at once,
#     although --linger-ms is ten minutes (nobody is left to wait for);
#  2. with a consumer connected that holds a batch and reads no more: the
#     first SIGTERM stops the run and the producer waits for it; a second
#     signal ends the wait; exit 0, and no shared-memory segment is left.
# Every wait is bounded (60 s); the ten-minute linger makes a producer that
# ignores either rule fail the bound, not merely run slow.
# usage: signals_test.sh PRODUCER MAKE_MNIST TEST_PEER
set -euo pipefail
producer="$1" make_mnist="$2" peer="$3"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
"$make_mnist" --out "$work/mnist" --count 1000 --seed 5 >/dev/null
fail() { echo "signals_test: $*" >&2; cat "$work/log" >&2 || true; exit 1; }

# Waits (at most 60 s) until the log has a line matching $1.
wait_log() {
  for _ in $(seq 1 1200); do
    grep -q "$1" "$work/log" 2>/dev/null && return 0
    sleep 0.05
  done
  fail "no '$1' in the producer's log within 60 s"
}
# Waits (at most 60 s) for process $1 to exit; its status in $rc.
wait_exit() {
  timeout 60 tail --pid="$1" -f /dev/null || fail "the producer did not exit within 60 s"
  rc=0
  wait "$1" || rc=$?
}
start() {
  "$producer" --mnist "$work/mnist" --endpoint "$1" --pipeline to_tensor --batch-size 100 --threads 1 \
    --epochs 0 --linger-ms 600000 --quiet 2>"$work/log" &
  pid=$!
  pids+=("$pid")
  wait_log "serving "
  uri="$(sed -n 's/.*serving \([a-z]*:\/\/[^:]*:\{0,1\}[^:]*\): .*/\1/p' "$work/log" | head -1)"
}

for endpoint in "shm://sigtest-$$" "grpc://127.0.0.1:0" "auto://127.0.0.1:0"; do
  for sig in TERM INT; do
    start "$endpoint"
    kill -"$sig" "$pid"
    wait_exit "$pid"
    [[ "$rc" == 0 ]] || fail "$endpoint: SIG$sig with no consumer: exit $rc, not 0"
    grep -q "stopped by signal" "$work/log" || fail "$endpoint: no 'stopped by signal' line"
  done

  start "$endpoint"
  "$peer" hold "$uri" >"$work/peer.out" 2>&1 &
  peer_pid=$!
  pids+=("$peer_pid")
  for _ in $(seq 1 1200); do [[ -s "$work/peer.out" ]] && break; sleep 0.05; done
  [[ -s "$work/peer.out" ]] || fail "$endpoint: the holding consumer took no batch"
  kill -TERM "$pid"
  wait_log "waiting up to 600000 ms for connected consumers"
  kill -0 "$pid" 2>/dev/null || fail "$endpoint: with a consumer connected the producer did not wait for it"
  kill -INT "$pid"
  wait_exit "$pid"
  [[ "$rc" == 0 ]] || fail "$endpoint: second signal: exit $rc, not 0"
  grep -q "again: not waiting for consumers" "$work/log" || fail "$endpoint: the second signal was not said"
  kill -9 "$peer_pid" 2>/dev/null || true
  wait "$peer_pid" 2>/dev/null || true
  echo "ok: $endpoint"
done
