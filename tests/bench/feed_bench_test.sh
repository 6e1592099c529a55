#!/usr/bin/env bash
# datafeed-bench feed, tiny: a few batches of 256 at --step-ms 1 over shm,
# over gRPC loopback, with a split pipeline, and --find-threads bounded to 2
# threads; every JSON line must hold sane figures (wait fraction in [0, 1],
# samples/s and the ceiling > 0, the ratio in (0, 5): tiny runs are noisy,
# the batch's bytes as its layout says), and --split of the blurring
# pipeline must be refused with the fix named. Speed is not asserted.
#
# Usage: feed_bench_test.sh BUILD_DIR. About 2 s here.
set -euo pipefail
bench="$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)/datafeed-bench"
py=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ -x "$bench" ]] || fail "$bench not built (target datafeed-bench)"

check() {  # check WHAT: reads the bench's output on stdin
  "$py" -c '
import json, sys
what = sys.argv[1]
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
feeds = [r for r in rows if r.get("bench") == "feed"]
if not feeds: sys.exit(what + ": no feed JSON line")
for r in feeds:
    for k in ("wait_fraction", "samples_per_s", "ceiling_samples_per_s", "ratio", "threads", "batch_bytes"):
        if k not in r: sys.exit(what + ": no " + k + " in " + json.dumps(r))
    if not 0 <= r["wait_fraction"] <= 1: sys.exit(what + ": wait_fraction out of [0,1]: " + json.dumps(r))
    if r["samples_per_s"] <= 0 or r["ceiling_samples_per_s"] <= 0: sys.exit(what + ": a rate <= 0: " + json.dumps(r))
    if not 0 < r["ratio"] < 5: sys.exit(what + ": ratio out of (0,5): " + json.dumps(r))
    if r["batch_bytes"] != 256 * ((784 if r["split"] else 784 * 4) + 8):
        sys.exit(what + ": batch_bytes " + str(r["batch_bytes"]))
print(what + ": ok,", len(feeds), "row(s)")
' "$1"
}

small=(--batch 256 --samples 2048 --batches 6 --warmup 2 --step-ms 1)
out="$("$bench" feed "${small[@]}" --transport shm)" || fail "feed over shm exited $?"
echo "$out"
grep -q '^feed shm' <<<"$out" || fail "no readable line over shm"
check shm <<<"$out"

out="$("$bench" feed "${small[@]}" --transport grpc --threads 2 --json)" || fail "feed over grpc exited $?"
echo "$out"
check grpc <<<"$out"

out="$("$bench" feed "${small[@]}" --find-threads --max-threads 2 --target 1e-9 --json)" || fail "find-threads exited $?"
echo "$out"
check find-threads <<<"$out"
"$py" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
last = rows[-1]
# A target of 1e-9 is met only by a run that never waited: either a row
# under it and threads_needed naming it, or both tries and none.
feeds = [r for r in rows if r["bench"] == "feed"]
if last["bench"] != "feed-find-threads": sys.exit("find-threads: no summary line")
if last["threads_needed"] is None:
    if len(feeds) != 2: sys.exit("find-threads: gave up after %d tries of 2" % len(feeds))
elif feeds[-1]["threads"] != last["threads_needed"] or feeds[-1]["wait_fraction"] >= 1e-9:
    sys.exit("find-threads: threads_needed disagrees with its rows")
print("find-threads summary: ok")
' <<<"$out"

out="$("$bench" feed "${small[@]}" --pipeline 'to_tensor,normalize(0.1307,0.3081)' --split --json)" ||
  fail "feed --split exited $?"
echo "$out"
grep -q '"split": true' <<<"$out" || fail "--split did not split the pipeline"
check split <<<"$out"

if err="$("$bench" feed "${small[@]}" --split 2>&1)"; then fail "--split of a blurring pipeline was accepted"; fi
grep -q "cannot be split" <<<"$err" || fail "--split refusal does not say why: $err"
echo "PASS"
