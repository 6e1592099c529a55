#!/usr/bin/env bash
# Every C++ test suite but libtorch's built with AddressSanitizer and
# UndefinedBehaviorSanitizer (clang 14, build-asan/; see scripts/asan_build.sh)
# and run: transport, producer, consumer, tools and log tests. Any memory
# error, leak or undefined behaviour fails the test that hit it. Also replays
# the fuzz corpus (tests/fuzz/corpus, ctest label fuzz).
# Not run here: torch_test (libtorch is not instrumented, and its translation
# units take minutes each under clang+ASan), the Python package, chaos, the
# install tests and the shell tests of programs this build does not make.
#   scripts/sanitize.sh            # everything above
#   scripts/sanitize.sh -R Ledger  # extra arguments go to ctest
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS
bash "$root/scripts/asan_build.sh" transport_test producer_test consumer_test tools_test log_test datafeed_fuzz datafeed-make-mnist
built=$((SECONDS - start))
# halt_on_error: UBSan stops at the first report (a failed test, not a
# line in a log); leaks are checked at exit of every test process.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
cd "$root/build-asan"
status=0
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 600 \
  -E '^(chaos|install\.|python|gpu_run_cpp|tools_|bench_|consumer|torch|multihost|deploy|producer\.)' "$@" || status=$?
echo "sanitize.sh: built in ${built} s, ran in $((SECONDS - start - built)) s (status $status)"
exit "$status"
