#!/usr/bin/env bash
# Scaling benchmark (issue 13, item 4): K producer hosts (network + mount
# namespaces, tests/multihost/hosts.sh), each capped at R samples/s by
# --max-samples-per-s and serving 1/K of the dataset (shard i of K), feed one
# consumer on a host of its own over gRPC. For K = 1..KMAX it prints the
# aggregate the consumer read against K x R. In the same run it measures
# the ceiling: KMAX producers without a limit, and raw TCP between two of
# these namespaces (python sockets, 1 MiB writes, one stream) — what the
# consumer's rate is compared with.
#
# usage (root): scale_bench.sh BUILD_DIR [R] [KMAX] [SAMPLES_PER_PRODUCER]
#   defaults: R 5000, KMAX 3, 15000 samples per producer (about 3 s each)
# MNIST 28x28 float32 batches of 100 (314 KB). Not a ctest: it measures.
set -euo pipefail
build="$(realpath "$1")"
R="${2:-5000}" KMAX="${3:-3}" S="${4:-15000}"
producer="$build/producer/datafeed-producer" consume="$build/consumer/datafeed-consume"
make_mnist="$build/producer/datafeed-make-mnist"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=hosts.sh
source "$here/hosts.sh"
mh_probe || { echo "scale_bench: needs network and mount namespaces (root)" >&2; exit 1; }
trap 'mh_cleanup 2>/dev/null' EXIT
mh_init
work="$MH_DIR"
dataset=12000
"$make_mnist" --out "$work/mnist" --count "$dataset" --seed 4 >/dev/null
for ((i = 0; i < KMAX; ++i)); do mh_host "prep-$i" "10.77.0.$((10 + i))"; done
mh_host trainer 10.77.0.100

# run K LIMIT: K producers (LIMIT 0: none), one consumer; prints its JSON.
run() {
  local K="$1" limit="$2" i list="" epochs
  # Each producer makes about S samples: its shard is dataset/K per epoch.
  epochs=$(((S * K + dataset - 1) / dataset))
  local pids=()
  for ((i = 0; i < K; ++i)); do
    local extra=()
    ((limit > 0)) && extra=(--max-samples-per-s "$limit")
    mh_spawn "prep-$i" /dev/null "$work/p$i.log" "$producer" --mnist "$work/mnist" --endpoint auto://0.0.0.0:5000 \
      --insecure --shard "$i" --num-shards "$K" --pipeline to_tensor --batch-size 100 --epochs "$epochs" \
      --threads 1 --quiet --finish-grace-ms 200 "${extra[@]}"
    pids+=("$MH_LAST_PID")
    list+="${list:+,}10.77.0.$((10 + i)):5000"
  done
  for ((i = 0; i < K; ++i)); do mh_wait_file_match "$work/p$i.log" 'serving ' 30 "producer $i" >&2; done
  mh_exec trainer timeout 120 "$consume" --endpoint "auto://$list" --json --report-s 0 --connect-timeout-ms 30000
  for p in "${pids[@]}"; do
    mh_wait_pid "$p" 60
  done
}

# Raw TCP between two namespaces: trainer receives, prep-0 sends for 2 s.
tcp_gbps() {
  mh_spawn trainer "$work/tcp.out" "$work/tcp.err" /usr/bin/python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5999)); s.listen(1); c, _ = s.accept()
buf = bytearray(1 << 20); n = 0; t0 = None
while True:
    k = c.recv_into(buf)
    if not k: break
    if t0 is None: t0 = time.perf_counter()
    n += k
print("%.3f" % (n / (time.perf_counter() - t0) / 1e9))'
  local rx=$MH_LAST_PID
  sleep 0.5
  mh_exec prep-0 /usr/bin/python3 -c '
import socket, time
c = socket.create_connection(("10.77.0.100", 5999)); b = bytes(1 << 20); t = time.perf_counter() + 2
while time.perf_counter() < t: c.sendall(b)
c.close()'
  mh_wait_pid "$rx" 30
  cat "$work/tcp.out"
}

echo "scale_bench: R = $R samples/s per producer, about $S samples per producer, batches of 100 MNIST images"
printf '%3s %12s %14s %8s %8s\n' K "K x R" "read samples/s" ratio GB/s
for ((K = 1; K <= KMAX; ++K)); do
  j="$(run "$K" "$R")"
  /usr/bin/python3 -c '
import json, sys
j = json.loads(sys.argv[1]); K, R = int(sys.argv[2]), int(sys.argv[3])
assert j["samples"] > 0, j
print("%3d %12d %14d %8.3f %8.3f" % (K, K * R, j["samples_per_s"], j["samples_per_s"] / (K * R), j["gbps"]))' "$j" "$K" "$R"
done
j="$(run "$KMAX" 0)"
tcp="$(tcp_gbps)"
/usr/bin/python3 -c '
import json, sys
j = json.loads(sys.argv[1]); K = int(sys.argv[2]); tcp = float(sys.argv[3])
print("ceiling: %d producers without a limit: %d samples/s, %.3f GB/s; raw TCP between two namespaces: %.3f GB/s (ratio %.2f)"
      % (K, j["samples_per_s"], j["gbps"], tcp, j["gbps"] / tcp))' "$j" "$KMAX" "$tcp"
echo "cores: $(nproc) (shared with whatever else runs on this machine)"
