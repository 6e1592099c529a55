#!/usr/bin/env bash
# ctest tools_cli: every program's command line as a user meets it: --help
# and --version (exit 0, printed), bad values and unknown flags (exit 2, a
# message naming the flag), the DATAFEED_ENDPOINT / DATAFEED_TRANSPORT
# fallbacks, and datafeed-producer --config FILE (TOML).
# Usage: cli_tools_test.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
producer="$build/producer/datafeed-producer"
consume="$build/consumer/datafeed-consume"
make_mnist="$build/producer/datafeed-make-mnist"
gc="$build/producer/datafeed-gc"
bench="$build/datafeed-bench"
trainer="$build/examples/mnist_train"
work="$(mktemp -d)"
trap 'rm -rf "$work"; kill $(jobs -p) 2>/dev/null || true' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); }
version="$(grep -m1 '^CMAKE_PROJECT_VERSION:' "$build/CMakeCache.txt" | cut -d= -f2)"
[[ -n "$version" ]] || fail "no CMAKE_PROJECT_VERSION in $build/CMakeCache.txt"

# Programs as "NAME|COMMAND...": the name --version prints, then the command.
programs=("datafeed-producer|$producer" "datafeed-consume|$consume" "datafeed-make-mnist|$make_mnist"
          "datafeed-gc|$gc" "datafeed-bench|$bench" "datafeed-bench|$bench shm" "datafeed-bench|$bench pipeline"
          "datafeed-bench|$bench grpc")
if [[ -x "$trainer" ]]; then programs+=("mnist_train|$trainer"); fi
for p in "${programs[@]}"; do
  name="${p%%|*}"
  read -r -a cmd <<<"${p#*|}"
  for f in -h --help; do
    out="$("${cmd[@]}" "$f" 2>"$work/err")" || fail "${cmd[*]} $f exited $?: $(cat "$work/err")"
    [[ "$out" == *"Usage: "* && "$out" == *"--help"* ]] || fail "${cmd[*]} $f printed no usage: $out"
    [[ ! -s "$work/err" ]] || fail "${cmd[*]} $f wrote to stderr: $(cat "$work/err")"
    ok
  done
  out="$("${cmd[@]}" --version)" || fail "${cmd[*]} --version exited $?"
  [[ "$out" == "$name $version" ]] || fail "${cmd[*]} --version printed '$out', not '$name $version'"
  ok
done
# Help is grouped and ends with examples.
out="$("$producer" --help)"
for s in "Endpoint:" "Dataset" "Batches:" "Delivery:" "gRPC (server):" "Examples:" "--config" \
         "--batch-size INT=8192" "(Env:DATAFEED_ENDPOINT)" "(Env:DATAFEED_TRANSPORT)"; do
  [[ "$out" == *"$s"* ]] || fail "datafeed-producer --help lacks '$s'"
  ok
done

# expect_usage_error CMD... -- PATTERN: exits 2, stderr has PATTERN.
expect_usage_error() {
  local args=() pattern rc=0
  while [[ "$1" != "--" ]]; do args+=("$1"); shift; done
  pattern="$2"
  "${args[@]}" >"$work/out" 2>"$work/err" || rc=$?
  [[ $rc == 2 ]] || fail "${args[*]}: exit status $rc, expected 2; stderr: $(cat "$work/err")"
  grep -qF -- "$pattern" "$work/err" || fail "${args[*]}: stderr lacks '$pattern': $(cat "$work/err")"
  [[ ! -s "$work/out" ]] || fail "${args[*]}: printed to stdout: $(cat "$work/out")"
  ok
}
expect_usage_error "$bench" shm --batch abc -- "datafeed-bench shm: --batch: expects a whole number in [1, 1048576], got 'abc'"
expect_usage_error "$bench" shm --batch -1 -- "--batch: expects a whole number in [1, 1048576], got '-1'"
expect_usage_error "$bench" shm --bogus -- "The following argument was not expected: --bogus"
expect_usage_error "$bench" shm --fill paint -- "--fill: expects generate or copy, got 'paint'"
expect_usage_error "$bench" grpc --repeats 0 -- "--repeats: expects a whole number >= 1, got '0'"
expect_usage_error "$bench" pipeline --preset imagenet-eval --samples 10 -- "--preset excludes --samples"
expect_usage_error "$bench" pipeline --threads x -- "--threads: expects a whole number in [1, 1024], got 'x'"
expect_usage_error "$bench" nosuch -- "datafeed-bench: unknown subcommand 'nosuch'; expected shm, pipeline, grpc or feed"
expect_usage_error "$bench" -- "datafeed-bench: give a subcommand: shm, pipeline, grpc or feed"
expect_usage_error "$producer" --batch-size abc -- "datafeed-producer: --batch-size: expects a whole number >= 1, got 'abc'"
expect_usage_error "$producer" --batch-size -1 -- "--batch-size: expects a whole number >= 1, got '-1'"
expect_usage_error "$producer" --batch-size=0 -- "--batch-size: expects a whole number >= 1, got '0'"
expect_usage_error "$producer" --consumer-timeout 0 -- "--consumer-timeout: expects a number > 0, got '0'"
expect_usage_error "$producer" --max-bad-fraction 2 -- "--max-bad-fraction: expects a number in [0, 1], got '2'"
expect_usage_error "$producer" --decode fast -- "--decode: expects exact or reduced, got 'fast'"
expect_usage_error "$producer" --endpoint feed0 -- "--endpoint: endpoint 'feed0' has no scheme"
expect_usage_error "$producer" --mnist -- "--mnist: 1 required TEXT missing"
expect_usage_error "$producer" --nope -- "The following argument was not expected: --nope"
expect_usage_error "$producer" stray -- "The following argument was not expected: stray"
expect_usage_error "$consume" --batches abc -- "datafeed-consume: --batches: expects a whole number >= 0, got 'abc'"
expect_usage_error "$consume" --prefetch -1 -- "--prefetch: expects a whole number in [0, 1024], got '-1'"
expect_usage_error "$consume" --compression lz4 -- "--compression: expects gzip or none, got 'lz4'"
expect_usage_error "$consume" --grpc-streams 0 -- "--grpc-streams: expects a whole number in [1, 64], got '0'"
expect_usage_error "$bench" grpc --streams 17 -- "--streams: expects a whole number in [1, 16], got '17'"
expect_usage_error "$make_mnist" --out "$work/m" --count -1 -- "--count: expects a whole number >= 0, got '-1'"
expect_usage_error "$make_mnist" --count 5 -- "--out is required"
if [[ -x "$trainer" ]]; then
  expect_usage_error "$trainer" --steps x -- "mnist_train: --steps: expects a whole number >= 0, got 'x'"
  expect_usage_error "$trainer" --source cloud -- "--source: expects local or feed, got 'cloud'"
fi

# The environment fills --endpoint and --transport, checked like the flags.
DATAFEED_TRANSPORT=carrier-pigeon expect_usage_error "$consume" -- \
  "--transport: expects shm, grpc or auto, got 'carrier-pigeon'"
DATAFEED_ENDPOINT=nowhere expect_usage_error "$consume" -- "--endpoint: endpoint 'nowhere' has no scheme"
rc=0
DATAFEED_ENDPOINT="shm://nobody-$$" "$consume" --connect-timeout-ms 0 2>"$work/err" || rc=$?
[[ $rc == 1 ]] && grep -qF "no producer at shm://nobody-$$" "$work/err" ||
  fail "DATAFEED_ENDPOINT was not used (exit $rc): $(cat "$work/err")"
ok
rc=0
DATAFEED_ENDPOINT="shm://nobody-$$" "$consume" --endpoint "shm://flag-$$" --connect-timeout-ms 0 2>"$work/err" || rc=$?
grep -qF "no producer at shm://flag-$$" "$work/err" || fail "--endpoint did not beat DATAFEED_ENDPOINT: $(cat "$work/err")"
ok
rc=0
DATAFEED_TRANSPORT=grpc "$consume" --endpoint "shm://feed-$$" 2>"$work/err" || rc=$?
[[ $rc == 1 ]] && grep -qF "needs HOST:PORT" "$work/err" ||
  fail "DATAFEED_TRANSPORT=grpc on a shm endpoint: exit $rc: $(cat "$work/err")"
ok

# A producer on DATAFEED_ENDPOINT, the consumer on the same variable.
"$make_mnist" --out "$work/mnist" --count 1000 --seed 5 >/dev/null
export DATAFEED_ENDPOINT="shm://cli-env-$$"
"$producer" --mnist "$work/mnist" --batch-size 250 --quiet 2>"$work/producer.log" &
out="$("$consume" --json)" || fail "consume on DATAFEED_ENDPOINT failed"
wait $! || fail "the producer failed: $(cat "$work/producer.log")"
grep -qF "serving shm://cli-env-$$" "$work/producer.log" || fail "the producer did not serve on DATAFEED_ENDPOINT: $(cat "$work/producer.log")"
grep -q '"batches": 4,' <<<"$out" || fail "expected 4 batches on DATAFEED_ENDPOINT: $out"
unset DATAFEED_ENDPOINT
ok

# --config: a TOML file of producer flags; the command line wins over it.
cat >"$work/producer.toml" <<TOML
# datafeed-producer flags, one per line
mnist = "$work/mnist"
endpoint = "shm://cli-config-$$"
batch-size = 100
epochs = 2
shuffle = true
quiet = true
TOML
"$producer" --config "$work/producer.toml" 2>"$work/producer.log" &
out="$("$consume" --endpoint "shm://cli-config-$$" --json)" || fail "consume from the --config producer failed"
wait $! || fail "the --config producer failed: $(cat "$work/producer.log")"
grep -q '"batches": 20,' <<<"$out" || fail "--config: expected 2 epochs x 10 batches of 100: $out"
ok
"$producer" --config "$work/producer.toml" --batch-size 500 --epochs 1 2>"$work/producer.log" &
out="$("$consume" --endpoint "shm://cli-config-$$" --json)" || fail "consume from the overridden producer failed"
wait $! || fail "the overridden --config producer failed: $(cat "$work/producer.log")"
grep -q '"batches": 2,' <<<"$out" || fail "--batch-size 500 --epochs 1 did not beat the file: $out"
ok
printf 'batch-size = -5\n' >"$work/bad-value.toml"
expect_usage_error "$producer" --config "$work/bad-value.toml" -- "--batch-size: expects a whole number >= 1, got '-5'"
printf 'batch_sise = 5\n' >"$work/bad-key.toml"
expect_usage_error "$producer" --config "$work/bad-key.toml" -- "--config: "
grep -qF "batch_sise" "$work/err" || fail "the unknown key is not named: $(cat "$work/err")"
expect_usage_error "$producer" --config "$work/missing.toml" -- "--config: File does not exist: $work/missing.toml"

echo "$passed passed, 0 failed"
