#!/usr/bin/env bash
# examples/gpu/gpu_run.sh without a GPU: packs the bundle, unpacks it into a
# temporary folder and runs the GPU machine's steps there with a scrubbed
# environment (PATH=/usr/bin:/bin, nothing else), so only the bundle can
# provide datafeed's libraries:
#
#   - the bundled binaries load their libraries from the bundle's lib/;
#   - `check --python /usr/bin/python3` builds mnist_train against that
#     Python's torch (Debian's python3-torch, CPU-only, laid out like a
#     PyTorch installation: torch/include, torch/lib) and trains 2 steps fed
#     by the bundled producer and 2 in-process, on the CPU;
#   - mnist_train, built there, loads every library the bundle has from it;
#   - `run --torch-dir ... --device cpu` prints both JSON lines, the summary
#     and the verdict (reuses the build);
#   - a libtorch with the old C++ ABI is refused, by the script and by the
#     CMakeLists, pointing at the Python route;
#   - the find_package(Torch) route (--torch-prefix) configures.
#
# Usage: gpu_run_cpp_test.sh BUILD_DIR. Exit 77 (skipped) without
# libtorch-dev, python3-torch or binutils. Takes about 2 minutes here (2
# cores), nearly all of it compiling mnist_model.cc (<torch/torch.h>).
set -euo pipefail

build="$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)"
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
syslib="/usr/lib/$multiarch"

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

command -v objdump >/dev/null || skip "needs objdump (binutils)"
command -v cmake >/dev/null || skip "needs cmake"
[[ -f /usr/include/ATen/ATen.h && -f "$syslib/libtorch.so" ]] || skip "needs Debian's libtorch-dev"
[[ -f "$build/examples/gpu/libdatafeed.so" ]] || skip "libdatafeed.so not built (target datafeed_shared)"
if [[ "$(objdump -p "$build/examples/gpu/libdatafeed.so" | awk '$1 == "NEEDED" {print $2}')" =~ san\.so ]]; then
  skip "a sanitizer build: its libdatafeed.so cannot be linked into a plain mnist_train"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
t0=$SECONDS

# --- here: pack ---------------------------------------------------------------
bash "$src/examples/gpu/gpu_run.sh" pack "$build" "$work/bundle.tar" 2>"$work/pack.log" ||
  { cat "$work/pack.log" >&2; fail "pack"; }
mkdir "$work/x"
tar -C "$work/x" -xf "$work/bundle.tar"
rm "$work/bundle.tar"
root="$work/x/datafeed-gpu-cpp"
echo "pack + unpack: $((SECONDS - t0)) s ($(cat "$work/pack.log"))"

for rel in gpu_run.sh bundle_lib.sh CMakeLists.txt MANIFEST lib/libdatafeed.so bin/datafeed-producer \
           bin/datafeed-make-mnist include/datafeed/consumer/consumer.h include/datafeed/torch/tensors.h \
           include/datafeed/transport/status.h src/consumer/torch/tensors.cc src/examples/mnist_train.cc \
           src/examples/mnist_model.cc compat/libstdc++.so.6; do
  [[ -e "$root/$rel" ]] || fail "bundle lacks $rel"
done
for name in libgrpc++ libprotobuf libopencv_core libabsl_; do
  compgen -G "$root/lib/$name*" >/dev/null || fail "bundle lacks $name*"
done
grep -qx 'cxx11_abi=1' "$root/MANIFEST" || fail "MANIFEST: $(cat "$root/MANIFEST")"
rpath="$(sed -n 's/^rpath=//p' "$root/MANIFEST")"

# The scrubbed environment of the GPU machine.
clean=(env -i PATH=/usr/bin:/bin HOME="$work" LANG=C.UTF-8 TMPDIR="$work")
[[ "$rpath" == yes ]] || clean+=(LD_LIBRARY_PATH="$root/lib")

# What the bundle leaves to the machine: the packer's own rules.
die() { fail "$*"; }
say() { :; }
source "$src/scripts/bundle_lib.sh"
is_system() { bundle_is_system_lib "$1" || bundle_is_compat_lib "$1"; }
# every_lib_from ELF ALLOWED_DIR...: each non-glibc dependency of ELF resolves
# into one of the folders.
every_lib_from() {
  local elf="$1" line name path d ok; shift
  while read -r line; do
    name="${line%% *}"
    is_system "$name" && continue
    path="$(awk '{print $3}' <<<"$line")"
    [[ "$path" != not ]] || fail "$(basename "$elf"): $line"
    path="$(realpath "$path")"
    ok=0
    for d in "$@"; do [[ "$path" == "$(realpath "$d")"/* ]] && ok=1; done
    (( ok )) || fail "$(basename "$elf") loads $name from $path, not from ${*}"
  done < <("${clean[@]}" ldd "$elf" | awk '/=>/ {print $1, "=>", $3}')
}
if [[ "$rpath" == yes ]]; then
  for elf in "$root/lib/libdatafeed.so" "$root/bin/datafeed-producer" "$root/bin/datafeed-make-mnist"; do
    every_lib_from "$elf" "$root/lib"
  done
fi

# --- there --------------------------------------------------------------------
# Debian's python3-torch has the layout of a PyTorch installation (torch/
# with include/ and lib/, symlinks into libtorch-dev): the same route as on a
# GPU machine, python3's torch, CPU-only here.
py=/usr/bin/python3
torch="$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)" ||
  skip "needs $py with torch (apt-get install python3-torch)"
[[ -f "$torch/include/ATen/ATen.h" && -e "$torch/lib/libtorch_cpu.so" ]] || skip "$torch has no include/ and lib/"

t1=$SECONDS
"${clean[@]}" bash "$root/gpu_run.sh" check --python "$py" --producer-threads 1 --count 2000 \
    >"$work/check.out" 2>"$work/check.err" ||
  { cat "$work/check.err" "$root/build/build.log" >&2 2>/dev/null; fail "gpu_run.sh check"; }
grep -q 'check passed' "$work/check.err" || { cat "$work/check.err" >&2; fail "check: no 'check passed'"; }
grep -q '"source": "feed", "transport": "shm"' "$work/check.out" || { cat "$work/check.out" >&2; fail "check: no feed run"; }
grep -q '"source": "local"' "$work/check.out" || { cat "$work/check.out" >&2; fail "check: no local run"; }
echo "check (build + tiny CPU runs): $((SECONDS - t1)) s"
cat "$work/check.out"

trainer="$root/build/mnist_train"
[[ -x "$trainer" ]] || fail "no $trainer"
# Every library the bundle has (gRPC, protobuf, OpenCV, ...) comes from the
# bundle, even where the machine has one of the same name (here it has them
# all); libtorch and its own dependencies from wherever torch finds them.
# (Debian's libtorch needs some of the bundle's libraries itself, libprotobuf
# and libblas among them; the loader keeps one per name, found first for
# torch: those are left out. PyTorch wheels carry theirs under other names.)
declare -A torch_needs=()
while read -r name; do torch_needs[$name]=1; done < <(ldd "$syslib/libtorch_cpu.so" | awk '/=>/ {print $1}')
"${clean[@]}" ldd "$trainer" >"$work/ldd.out"
grep -q "libdatafeed.so => $root/lib/libdatafeed.so" "$work/ldd.out" ||
  fail "mnist_train does not load the bundle's libdatafeed.so: $(grep datafeed "$work/ldd.out")"
grep -q "libtorch_cpu.so[.0-9]* => /" "$work/ldd.out" || fail "mnist_train: no libtorch_cpu: $(cat "$work/ldd.out")"
n=0
while read -r name path; do
  [[ -e "$root/lib/$name" && -z "${torch_needs[$name]:-}" ]] || continue
  [[ "$path" == "$root/lib/$name" ]] || fail "mnist_train loads $name from $path, not from the bundle"
  n=$((n + 1))
done < <(awk '/=>/ {print $1, $3}' "$work/ldd.out")
(( n > 20 )) || fail "mnist_train loads only $n libraries from the bundle"
for name in libgrpc++ libopencv_core libabsl_; do
  grep -q "^[[:space:]]*$name[^ ]* => $root/lib/" "$work/ldd.out" || fail "mnist_train: $name not from the bundle"
done

t2=$SECONDS
# --torch-dir (the same torch, so the build is reused; its C++ ABI read from libc10.so).
"${clean[@]}" bash "$root/gpu_run.sh" run --torch-dir "$torch" --device cpu --batch-size 64 --steps 3 \
    --ceiling-steps 1 --producer-threads 1 --count 2000 --torch-threads 1 \
    >"$work/run.out" 2>"$work/run.err" || { cat "$work/run.err" >&2; fail "gpu_run.sh run --device cpu"; }
grep -q '^source  *device  *step_s' "$work/run.out" || { cat "$work/run.out" >&2; fail "run: no summary"; }
[[ "$(grep -c '^{"source"' "$work/run.out")" == 2 ]] || { cat "$work/run.out" >&2; fail "run: not 2 JSON lines"; }
grep -q '^feed  *cpu ' "$work/run.out" || { cat "$work/run.out" >&2; fail "run: no feed row"; }
grep -q '^fed step within 5% of the ceiling' "$work/run.out" || { cat "$work/run.out" >&2; fail "run: no verdict"; }
echo "run --device cpu: $((SECONDS - t2)) s"
cat "$work/run.out"

# The old C++ ABI is refused, with the way out: by the script (a libc10.so
# without std::__cxx11 symbols; libz stands in for one) and by the CMakeLists.
old="$work/torch-old-abi"
mkdir -p "$old/lib"
ln -s "$torch/include" "$old/include"
ln -s "$(realpath "$syslib/libz.so.1")" "$old/lib/libc10.so"
if "${clean[@]}" bash "$root/gpu_run.sh" check --torch-dir "$old" >"$work/abi.out" 2>&1; then
  fail "gpu_run.sh accepted an old-ABI libtorch"
fi
grep -q 'old libstdc++ ABI.*examples/python/gpu_run.sh' "$work/abi.out" || { cat "$work/abi.out" >&2; fail "ABI message"; }
# The old C++ ABI is refused at configure time, with the way out.
if "${clean[@]}" cmake -S "$root" -B "$work/abi0" -DDATAFEED_TORCH_DIR="$torch" -DDATAFEED_TORCH_ABI=0 \
     >"$work/abi0.log" 2>&1; then
  fail "configuring with an old-ABI libtorch succeeded"
fi
grep -q 'examples/python/gpu_run.sh' "$work/abi0.log" || { cat "$work/abi0.log" >&2; fail "ABI message"; }

# find_package(Torch) instead (--torch-prefix): configures (the build is the same).
if [[ -f "$syslib/cmake/Torch/TorchConfig.cmake" ]]; then
  "${clean[@]}" cmake -S "$root" -B "$work/prefix" -DCMAKE_PREFIX_PATH="$syslib/cmake" >"$work/prefix.log" 2>&1 ||
    { cat "$work/prefix.log" >&2; fail "configuring with find_package(Torch)"; }
fi

echo "PASS ($((SECONDS - t0)) s)"
