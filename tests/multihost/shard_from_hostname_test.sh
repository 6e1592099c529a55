#!/usr/bin/env bash
# datafeed-producer --shard-from-hostname (issue 13, item 2), with the host
# name set in a UTS namespace of its own (unshare --uts), as a Kubernetes
# StatefulSet names its pods:
#   datafeed-producer-2, --num-shards 3: serves shard 2 (samples 2, 5, 8, ...
#   read back through datafeed-consume --record);
#   a name without a trailing -N, an ordinal not below --num-shards, no
#   --num-shards, and --shard as well: refused, naming the problem.
# usage: shard_from_hostname_test.sh PRODUCER CONSUME MAKE_MNIST
set -euo pipefail
producer="$1" consume="$2" make_mnist="$3"
if ! err="$(unshare --uts sh -c 'hostname probe-0' 2>&1)"; then
  echo "shard_from_hostname: SKIPPED: the kernel refuses UTS namespaces here (unshare --uts: $err); run as root" >&2
  exit 77
fi
work="$(mktemp -d)"
ppid=""
cleanup() {
  [[ -n "$ppid" ]] && kill -9 "$ppid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$make_mnist" --out "$work/mnist" --count 300 --seed 3 >/dev/null

# as_host NAME CMD...: CMD with host name NAME.
as_host() {
  local name="$1"
  shift
  unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$name" "$@"
}
common=(--mnist "$work/mnist" --pipeline to_tensor --batch-size 10 --threads 1 --quiet --with-index)

# expect_refused WHAT HOST MESSAGE_REGEX ARGS...
expect_refused() {
  local what="$1" host="$2" regex="$3" rc=0
  shift 3
  timeout 30 unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$host" "$producer" "${common[@]}" \
    --endpoint "shm://df-sfh-$$" "$@" >"$work/out" 2>&1 || rc=$?
  if [[ $rc == 0 || $rc == 124 ]]; then
    echo "FAIL: $what: exit $rc, want a refusal:"
    cat "$work/out"
    exit 1
  fi
  if ! grep -qE "$regex" "$work/out"; then
    echo "FAIL: $what: the message does not match '$regex':"
    cat "$work/out"
    exit 1
  fi
  echo "ok: $what refused: $(head -1 "$work/out")"
}
expect_refused "a host name without an ordinal" trainer "host name 'trainer' does not end in '-N'" \
  --shard-from-hostname --num-shards 3
expect_refused "a host name ending in letters after its dash" datafeed-producer-a1 "host name 'datafeed-producer-a1' does not end" \
  --shard-from-hostname --num-shards 3
expect_refused "an ordinal past --num-shards" datafeed-producer-3 "ordinal 3 is not below --num-shards 3" \
  --shard-from-hostname --num-shards 3
expect_refused "no --num-shards" datafeed-producer-1 "needs --num-shards" --shard-from-hostname
expect_refused "--shard as well" datafeed-producer-1 "excludes|--shard" --shard-from-hostname --shard 1 --num-shards 3

# datafeed-producer-2 of 3 serves shard 2: samples 2, 5, 8, ... (unshuffled).
name="df-sfh-$$"
as_host datafeed-producer-2 "$producer" "${common[@]}" --endpoint "shm://$name" \
  --shard-from-hostname --num-shards 3 2>"$work/p.log" &
ppid=$!
timeout 60 "$consume" --endpoint "shm://$name" --record "$work/rec" --connect-timeout-ms 30000 --report-s 0 >/dev/null
rc=0
timeout 60 tail --pid="$ppid" -f /dev/null || rc=$?
wait "$ppid" || { echo "FAIL: producer exited non-zero:"; cat "$work/p.log"; exit 1; }
ppid=""
want="$(seq 2 3 299 | tr '\n' ' ')"
got="$(cut -d' ' -f3- "$work/rec" | tr '\n' ' ' | tr -s ' ')"
if [[ "$got" != "$want" ]]; then
  echo "FAIL: datafeed-producer-2 with --num-shards 3 served samples: $got"
  echo "want shard 2's: $want"
  exit 1
fi
echo "ok: datafeed-producer-2 of 3 served shard 2's $(wc -l <"$work/rec") batches"
