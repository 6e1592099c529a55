#!/usr/bin/env bash
# ctest install.find_package: `cmake --install` of BUILD_DIR into a fresh
# prefix, then what a user does with it:
#   - builds tests/install/consumer with find_package(datafeed CONFIG
#     REQUIRED) (datafeed::torch included when the build has it) and runs it
#     against the installed datafeed-producer over shared memory;
#   - builds the same consumer with `pkg-config --cflags --libs datafeed`;
#   - imports the installed Python package, which finds the installed
#     producer through its bin/.
# Nothing from the source tree but tests/install/consumer is used.
# Usage: install_test.sh BUILD_DIR [PYTHON]
set -euo pipefail
build="$(cd "$1" && pwd)"
python="${2:-/usr/bin/python3}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"; kill $(jobs -p) 2>/dev/null || true' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }

prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  fail "cmake --install failed: $(tail -n 5 "$work/install.log")"
ok "installed into $prefix"

cache() { grep -m1 "^$1:" "$build/CMakeCache.txt" | cut -d= -f2; }
libdir="$(cache CMAKE_INSTALL_LIBDIR)"             # lib, or lib/<triplet> for a /usr build
pydir="$prefix/$(cache DATAFEED_PYTHON_INSTALL_DIR)"
[[ -n "$libdir" && -d "$prefix/$libdir/cmake/datafeed" ]] || fail "no $libdir/cmake/datafeed under $prefix"
for f in bin/datafeed-producer bin/datafeed-consume bin/datafeed-make-mnist bin/datafeed-gc \
         "$libdir/libdatafeed_transport.so" "$libdir/libdatafeed_producer.so" "$libdir/libdatafeed_consumer.so" \
         "$libdir/pkgconfig/datafeed.pc" include/datafeed/transport/transport.h \
         include/datafeed/producer/producer.h include/datafeed/consumer/consumer.h; do
  [[ -e "$prefix/$f" ]] || fail "$f is not installed"
done
# The tools' private library is no part of the installation.
[[ ! -e "$prefix/include/datafeed/tools" ]] || fail "include/datafeed/tools is installed; it is the programs' own"
torch=0
if grep -q '^DATAFEED_BUILD_TORCH:BOOL=ON' "$build/CMakeCache.txt"; then
  torch=1
  [[ -e "$prefix/$libdir/libdatafeed_torch.so" ]] || fail "libdatafeed_torch.so is not installed"
  [[ -e "$prefix/include/datafeed/torch/tensors.h" ]] || fail "datafeed/torch/tensors.h is not installed"
fi
ok "libraries, headers, tools, CMake package and datafeed.pc in place (torch: $torch)"

# The consumer project, against the prefix only.
components=""
[[ $torch == 1 ]] && components="-DDATAFEED_COMPONENTS=torch"
cmake -S "$here/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  $components >"$work/configure.log" 2>&1 || fail "configuring the consumer failed: $(tail -n 20 "$work/configure.log")"
cmake --build "$work/consumer" -j2 >"$work/build.log" 2>&1 ||
  fail "building the consumer failed: $(tail -n 30 "$work/build.log")"
if [[ $torch == 1 ]]; then
  [[ -x "$work/consumer/count_tensors" ]] || fail "datafeed::torch was not found by find_package"
fi
ok "find_package(datafeed CONFIG REQUIRED) built the consumer"

# Without COMPONENTS, find_package(datafeed) loads datafeed::torch when it
# finds Torch (configure only).
cmake -S "$here/consumer" -B "$work/consumer-default" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$work/configure-default.log" 2>&1 || fail "configuring without COMPONENTS failed: $(tail -n 20 "$work/configure-default.log")"
if [[ $torch == 1 ]]; then
  grep -q "install test: datafeed::torch is loaded" "$work/configure-default.log" ||
    fail "find_package(datafeed) without COMPONENTS did not load datafeed::torch: $(cat "$work/configure-default.log")"
fi
ok "find_package(datafeed CONFIG REQUIRED) without COMPONENTS"

# It resolves datafeed from the prefix, not from the build tree.
ldd "$work/consumer/count_batches" >"$work/ldd.out"
grep -q "libdatafeed_consumer.so.* => $prefix/" "$work/ldd.out" ||
  fail "count_batches does not load libdatafeed_consumer.so from $prefix: $(grep datafeed "$work/ldd.out")"
if grep -q "=> $build/" "$work/ldd.out"; then fail "count_batches loads from the build tree: $(cat "$work/ldd.out")"; fi

out="$("$work/consumer/make_batch")" || fail "make_batch failed"
[[ "$out" == "batches 4 samples 100" ]] || fail "make_batch: expected 'batches 4 samples 100', got '$out'"
ok "datafeed::producer in-process: $out"

# The installed tools feed the installed libraries over shared memory.
"$prefix/bin/datafeed-make-mnist" --out "$work/mnist" --count 600 --seed 2 >/dev/null
serve() {  # serve NAME: the installed producer, two epochs of batch 100
  "$prefix/bin/datafeed-producer" --mnist "$work/mnist" --endpoint "shm://$1" --batch-size 100 --epochs 2 \
    --threads 1 --quiet 2>"$work/producer-$1.log" &
}
name="install-$$"
serve "$name"
out="$("$work/consumer/count_batches" "shm://$name")" || fail "count_batches failed"
wait $! || fail "the producer failed: $(cat "$work/producer-$name.log")"
[[ "$out" == "batches 12 samples 1200" ]] || fail "count_batches: expected 'batches 12 samples 1200', got '$out'"
ok "datafeed::consumer over shm from the installed producer: $out"

if [[ $torch == 1 ]]; then
  serve "$name-t"
  out="$("$work/consumer/count_tensors" "shm://$name-t")" || fail "count_tensors failed"
  wait $! || fail "the producer failed: $(cat "$work/producer-$name-t.log")"
  [[ "$out" == "batches 12 samples 1200 image [100, 1, 28, 28]" ]] ||
    fail "count_tensors: expected 'batches 12 samples 1200 image [100, 1, 28, 28]', got '$out'"
  ok "datafeed::torch: $out"
fi

# pkg-config, with the prefix's .pc only.
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
flags="$(pkg-config --cflags --libs datafeed)" || fail "pkg-config datafeed failed"
[[ "$(pkg-config --modversion datafeed)" == "$("$prefix/bin/datafeed-producer" --version | cut -d' ' -f2)" ]] ||
  fail "datafeed.pc's version is not the tools' version"
# shellcheck disable=SC2086
c++ -std=c++17 -O1 "$here/consumer/count_batches.cc" -o "$work/count_batches_pc" $flags \
  -Wl,-rpath,"$prefix/$libdir" 2>"$work/pc.log" || fail "building with pkg-config failed: $(tail -n 20 "$work/pc.log")"
serve "$name-p"
out="$("$work/count_batches_pc" "shm://$name-p")" || fail "count_batches (pkg-config) failed"
wait $!
[[ "$out" == "batches 12 samples 1200" ]] || fail "count_batches (pkg-config): got '$out'"
ok "pkg-config --cflags --libs datafeed ($flags)"

# The Python package, and the producer it finds through its bin/.
[[ -f "$pydir/datafeed/libdatafeed_c.so" ]] || fail "the Python package is not in $pydir"
got="$(cd "$work" && PYTHONPATH="$pydir" "$python" -c '
import os, datafeed, datafeed.serving as s
print(os.path.realpath(s.producer_path()))')" || fail "import datafeed from the prefix failed"
[[ "$got" == "$(realpath "$prefix/bin/datafeed-producer")" ]] ||
  fail "the installed Python package runs $got, not the installed datafeed-producer"
ok "Python package: import datafeed, its producer is $got"

echo "$passed passed, 0 failed"
