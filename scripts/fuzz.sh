#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz) for a bounded time with ASan and
# UBSan (build-asan/, shared with scripts/sanitize.sh), starting from the
# checked-in corpus (tests/fuzz/corpus/<target>) and freshly generated
# seeds. Fails if any target crashes, leaks, hits undefined behaviour,
# times out on one input or breaks one of its invariants; the input that did
# it is kept under build-asan/fuzz/artifacts/ and the command to replay it
# is printed. Prints executions, exec/s and coverage per target.
#   scripts/fuzz.sh                          # every target, 20 s each
#   DATAFEED_FUZZ_SECONDS=300 scripts/fuzz.sh frame wire   # longer, some targets
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${DATAFEED_FUZZ_SECONDS:-20}"
all=(frame wire handshake session journal endpoint finish pipeline idx image)
targets=("$@")
if ((${#targets[@]} == 0)); then targets=("${all[@]}"); fi
start=$SECONDS
bash "$root/scripts/asan_build.sh" datafeed_fuzz
built=$((SECONDS - start))
out="$root/build-asan/fuzz"
bin="$root/build-asan/tests/fuzz"
rm -rf "$out/seeds" "$out/work"
mkdir -p "$out/artifacts" "$out/work"
"$bin/datafeed_make_seeds" "$out/seeds" >/dev/null
# Files the targets write (tests/fuzz/fuzz_util.h ScratchDir), removed even
# when a target crashed before its own cleanup.
scratch="$(mktemp -d /dev/shm/datafeed-fuzz-run.XXXXXX 2>/dev/null || mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export DATAFEED_FUZZ_SCRATCH="$scratch"
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
status=0
summary=()
for t in "${targets[@]}"; do
  [[ -x "$bin/${t}_fuzz" ]] || { echo "fuzz.sh: no target '$t' (targets: ${all[*]})" >&2; exit 2; }
  mkdir -p "$out/work/$t" "$out/seeds/$t"
  log="$out/$t.log"
  # New inputs go to work/<t> (the first folder); the checked-in corpus is
  # only read. -timeout: one input taking 10 s is a hang.
  rc=0
  "$bin/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$t-" "$out/work/$t" "$root/tests/fuzz/corpus/$t" "$out/seeds/$t" \
    >"$log" 2>&1 || rc=$?
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p' <<<"$done_line")"
  if ((rc != 0)); then
    status=1
    summary+=("$(printf '%-10s FAILED (exit %d): see %s' "$t" "$rc" "$log")")
    echo "fuzz.sh: $t failed:" >&2
    grep -E 'ERROR|SUMMARY|runtime error|invariant|Test unit written' "$log" | head -20 >&2 || true
    echo "  replay: $bin/${t}_fuzz <the file named above>; once fixed, add it as tests/fuzz/corpus/$t/repro-<what>" >&2
  else
    summary+=("$(printf '%-10s %10s execs %8s exec/s  %s' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}")")
  fi
done
echo "fuzz.sh: ${seconds} s per target, built in ${built} s, total $((SECONDS - start)) s"
printf '  %s\n' "${summary[@]}"
exit "$status"
