#!/usr/bin/env bash
# Several gRPC streams per consumer-producer pair across two network
# namespaces (issue 15, item 3): `datafeed-bench grpc` with its sender
# (the producer) on one host of tests/multihost/hosts.sh and its receiver
# (the consumer) on another, over their veths and the bridge between them,
# once per stream count. Each run measures, in the same run and on the same
# path, raw TCP with as many connections, and prints datafeed / raw TCP;
# the table at the end compares the stream counts.
#
# usage (root): streams_bench.sh BUILD_DIR [STREAMS...] [-- BENCH_ARGS...]
#   defaults: streams 1 4; bench defaults (25.7 MB frames, 120 counted,
#   3 interleaved repeats) except --naive-batches 20 (the naive service is
#   a reference, not the subject here). Not a ctest: it measures.
set -euo pipefail
build="$(realpath "$1")"
shift
streams=()
while (($#)) && [[ "$1" != "--" ]]; do
  streams+=("$1")
  shift
done
(($#)) && shift
extra=("$@")
((${#streams[@]})) || streams=(1 4)
bench="$build/datafeed-bench"
[[ -x "$bench" ]] || { echo "streams_bench: no $bench (cmake --build $build --target datafeed-bench)" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=hosts.sh
source "$here/hosts.sh"
mh_probe || { echo "streams_bench: needs network namespaces and veth pairs (root)" >&2; exit 1; }
trap 'mh_cleanup 2>/dev/null' EXIT
mh_init
mh_host prep 10.77.0.10
mh_host trainer 10.77.0.100
mtu="$(ip -n "${MH_NS[prep]}" -o link show eth0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"

lines=()
for n in "${streams[@]}"; do
  echo "== $n stream(s): $bench grpc --address 10.77.0.10 --sender-netns ${MH_NS[prep]}" \
    "--receiver-netns ${MH_NS[trainer]} --streams $n --naive-batches 20 ${extra[*]}" >&2
  j="$("$bench" grpc --address 10.77.0.10 --sender-netns "${MH_NS[prep]}" --receiver-netns "${MH_NS[trainer]}" \
    --streams "$n" --naive-batches 20 "${extra[@]}" --json)"
  echo "$j"
  lines+=("$j")
done

/usr/bin/python3 - "$mtu" "$(nproc)" "${lines[@]}" <<'EOF'
import json, sys
mtu, cores, rows = sys.argv[1], sys.argv[2], [json.loads(a) for a in sys.argv[3:]]
print("gRPC between two network namespaces (veth, MTU %s, through a bridge), %.1f MB frames, median of %d runs"
      % (mtu, rows[0]["frame_bytes"] / 1e6, rows[0]["repeats"]))
# "of CPU limit": the rate over what the CPUs allow that path (cpus / CPU s
# per GB of both sides): near 1 it is CPU-bound, well below it stream-bound.
print("%7s %14s %14s %7s %20s %20s %18s" % ("streams", "datafeed GB/s", "raw TCP GB/s", "ratio",
                                            "CPU s/GB prod+cons", "CPU s/GB tcp tx+rx", "of CPU limit df/tcp"))
for j in rows:
    print("%7d %14.2f %14.2f %7.3f %20s %20s %18s" % (
        j["streams"], j["gbps"], j["tcp_gbps"], j["ratio"],
        "%.3f + %.3f" % (j["producer_cpu_s_per_gb"], j["consumer_cpu_s_per_gb"]),
        "%.3f + %.3f" % (j["tcp_sender_cpu_s_per_gb"], j["tcp_receiver_cpu_s_per_gb"]),
        "%.2f / %.2f" % (j["gbps"] / j["cpu_limit_gbps"], j["tcp_gbps"] / j["tcp_cpu_limit_gbps"])))
first, last = rows[0], rows[-1]
if len(rows) > 1:
    print("%d -> %d streams: datafeed x%.2f, raw TCP x%.2f" % (
        first["streams"], last["streams"], last["gbps"] / first["gbps"], last["tcp_gbps"] / first["tcp_gbps"]))
print("cores: %s (shared with whatever else runs on this machine)" % cores)
EOF
