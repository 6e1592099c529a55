#!/usr/bin/env bash
# The C++ trainer (examples/mnist_train) on an air-gapped GPU machine that has
# an NVIDIA GPU, PyTorch (or another libtorch), CMake and a C++ compiler, but
# none of datafeed's libraries (gRPC, protobuf, OpenCV, ...).
#
# Here, on the build machine (after cmake --build build --target
# datafeed_shared datafeed-producer datafeed-make-mnist):
#
#   examples/gpu/gpu_run.sh pack [BUILD_DIR] [OUT.tar.gz]
#
#     bundles libdatafeed.so (transport, producer and consumer; prebuilt, no
#     torch in it), the public headers, the torch-dependent sources
#     (consumer/torch, examples/mnist_model.*, examples/mnist_train.cc) with a
#     CMakeLists.txt to build them there, datafeed-producer,
#     datafeed-make-mnist, and every shared library those need except glibc
#     (libstdc++ and libgcc_s go to compat/, used only where the target's are
#     older). RUNPATHs point into the bundle (patchelf), so nothing needs
#     LD_LIBRARY_PATH. Default OUT: BUILD_DIR/datafeed-gpu-cpp.tar.gz (an OUT
#     ending in .tar is left uncompressed).
#
# There, on the GPU machine:
#
#   tar xzf datafeed-gpu-cpp.tar.gz && datafeed-gpu-cpp/gpu_run.sh run [options]
#
#     checks the machine (glibc, libstdc++, libtorch and its C++ ABI, CUDA,
#     /dev/shm), builds mnist_train against the machine's libtorch, makes a
#     synthetic MNIST unless --mnist DIR is given, starts datafeed-producer
#     over shared memory (4 threads, the blur pipeline) and runs
#     mnist_train --source feed, then --source local (the same pipeline in
#     the trainer's process: the baseline), printing one JSON line each and
#     a summary (ceiling, step time, ratio, data wait). Options:
#       --python PY           interpreter whose torch is used (default: $PYTHON or python3)
#       --torch-dir DIR       a torch/ folder (include/, lib/) instead of asking Python
#       --torch-prefix DIR    find_package(Torch) under DIR instead (a libtorch zip,
#                             /usr/lib/x86_64-linux-gnu/cmake for Debian's libtorch-dev)
#       --build-dir DIR       where mnist_train is built (default: <bundle>/build)
#       --cmake-arg ARG       passed to cmake's configure step (repeatable), e.g.
#                             -DCMAKE_CXX_COMPILER=g++-12, -DCMAKE_CXX_STANDARD=20
#       --steps N             training steps per run (default 50)
#       --ceiling-steps N     resident-batch steps (default 10)
#       --producer-threads N  (default 4)   --local-threads N  baseline producer threads
#                                           (default: --producer-threads)
#       --torch-threads N     libtorch intra-op threads (default: mnist_train's, all cores)
#       --batch-size N        (default 8192)  --mnist DIR  real MNIST IDX files
#       --count N             synthetic MNIST samples (default 60000)
#       --device DEV          (default cuda)  --no-blur    leave GaussianBlur out
#       --skip-local          only the fed run
#
#   datafeed-gpu-cpp/gpu_run.sh check [same options]
#     everything but the GPU training: the machine checks, the build, and a
#     tiny fed and local run on the CPU (batch 64, 2 steps; no GPU needed).
#
# The full comparison (resident ceiling, 1/2/4 producer threads, split with
# the finish on the GPU, DataLoader with 16 workers) as one bounded command
# that needs no compiler there: examples/python/gpu_run.sh all.
#
# The C++ ABI: libdatafeed.so passes std::string and friends across its
# interface and is built with the new libstdc++ ABI (_GLIBCXX_USE_CXX11_ABI=1,
# Debian's default). The machine's libtorch must use it too (PyTorch wheels
# >= 2.7 do; older ones use the old ABI); if it does not, the run stops and
# points at the Python route (examples/python/gpu_run.sh), which has no C++
# interface to match.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
blur_pipeline='to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)'
plain_pipeline='to_tensor,normalize(0.1307,0.3081)'

die() { echo "gpu_run: $*" >&2; exit 1; }
say() { echo "gpu_run: $*" >&2; }

# The bundling (library closure, RUNPATHs, MANIFEST, glibc checks) is shared
# with examples/python/gpu_run.sh; it travels in the bundle.
bundle_lib="$here/bundle_lib.sh"
[[ -f "$bundle_lib" ]] || bundle_lib="$here/../../scripts/bundle_lib.sh"
source "$bundle_lib"

# ---------------------------------------------------------------- pack (here)

pack() {
  local build="${1:-build}" out="${2:-}"
  build="$(cd "$build" && pwd)"
  [[ -n "$out" ]] || out="$build/datafeed-gpu-cpp.tar.gz"
  local src
  src="$(cd "$here/../.." && pwd)"
  local shared="$build/examples/gpu/libdatafeed.so" producer="$build/producer/datafeed-producer"
  local make_mnist="$build/producer/datafeed-make-mnist"
  for f in "$shared" "$producer" "$make_mnist"; do
    [[ -f "$f" ]] || die "$f is missing; build first: cmake --build $build --target datafeed_shared datafeed-producer datafeed-make-mnist"
  done
  command -v nm >/dev/null || die "nm is needed (apt-get install binutils)"
  if [[ "$(objdump -p "$shared" | awk '$1 == "NEEDED" {print $2}')" =~ san\.so ]]; then
    die "$shared is built with sanitizers: pack a release build (cmake -DCMAKE_BUILD_TYPE=Release)"
  fi
  # The interface's ABI, from the library itself: new-ABI std::string
  # symbols are in namespace std::__cxx11.
  local abi=0
  if [[ "$(nm -DC --defined-only "$shared" | grep -c 'std::__cxx11::basic_string')" != 0 ]]; then abi=1; fi
  [[ $abi == 1 ]] || die "$shared does not use the new libstdc++ ABI; build with _GLIBCXX_USE_CXX11_ABI=1"

  local stage_root stage
  stage_root="$(mktemp -d)"
  trap 'rm -rf "$stage_root"' RETURN
  stage="$stage_root/datafeed-gpu-cpp"
  mkdir -p "$stage/bin" "$stage/lib" "$stage/include/datafeed" "$stage/src/consumer/torch" "$stage/src/examples"
  cp "$here/gpu_run.sh" "$stage/"
  cp "$bundle_lib" "$stage/bundle_lib.sh"
  cp "$here/standalone/CMakeLists.txt" "$stage/CMakeLists.txt"
  local d
  for d in transport/include producer/include consumer/include consumer/torch/include tools/include; do
    cp -r "$src/$d/datafeed/." "$stage/include/datafeed/"
  done
  # The header-only libraries datafeed/tools/*.h include.
  local header found include_dirs="$build/examples/gpu/bundle_include_dirs.txt"
  [[ -f "$include_dirs" ]] || die "$include_dirs is missing; configure $build again (cmake -S $src -B $build)"
  for header in CLI/CLI.hpp nlohmann/json.hpp; do
    found=""
    while read -r d; do
      if [[ -n "$d" && -f "$d/$header" ]]; then
        cp -r "$d/${header%%/*}" "$stage/include/"
        found=1
        break
      fi
    done <"$include_dirs"
    [[ -n "$found" ]] || die "$header is not in any of $(tr '\n' ' ' <"$include_dirs") (apt-get install libcli11-dev nlohmann-json3-dev)"
  done
  cp "$src"/consumer/torch/src/*.cc "$stage/src/consumer/torch/"
  cp "$src/examples/mnist_model.h" "$src/examples/mnist_model.cc" "$src/examples/mnist_train.cc" \
     "$stage/src/examples/"
  cp "$shared" "$stage/lib/"
  cp "$producer" "$make_mnist" "$stage/bin/"

  local elfs=("$stage/lib/libdatafeed.so" "$stage/bin/datafeed-producer" "$stage/bin/datafeed-make-mnist")
  bundle_closure "$stage" "${elfs[@]}"
  bundle_rpath "$stage" "$stage/bin/datafeed-producer" ../lib "$stage/bin/datafeed-make-mnist" ../lib
  bundle_manifest_write "$stage" "${elfs[@]}"
  {
    echo "cxx11_abi=$abi"
    echo "source=$(git -C "$src" describe --always --dirty 2>/dev/null || echo unknown)"
  } >> "$stage/MANIFEST"
  bundle_tar "$stage_root" datafeed-gpu-cpp "$out"
  say "wrote $out ($(du -h "$out" | cut -f1); libdatafeed.so + $((BUNDLE_LIBS - 1)) libraries;" \
      "needs glibc >= $(bundle_manifest "$stage" glibc_required); rpath=$BUNDLE_RPATH)"
}

# ---------------------------------------------------------------- run (there)

manifest() { bundle_manifest "$here" "$1"; }

# Checks the machine and finds libtorch. Sets torch_args (cmake -D...),
# torch_desc, cuda_available (1, 0 or ? when no Python was asked).
setup() {
  [[ -f "$here/MANIFEST" ]] || die "run this from an unpacked bundle (gpu_run.sh pack makes one)"
  producer="$here/bin/datafeed-producer"
  make_mnist="$here/bin/datafeed-make-mnist"
  compat=0
  if [[ "$(manifest rpath)" != yes ]]; then
    export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  bundle_check_glibc "$here"
  # The C++ runtime: the machine's, unless it is older than the bundle's.
  if ! "$producer" --help >/dev/null 2>&1; then
    export LD_LIBRARY_PATH="$here/compat${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    "$producer" --help >/dev/null 2>&1 ||
      die "datafeed-producer does not start: $("$producer" --help 2>&1 | tail -n 3)"
    compat=1
    say "using the bundled libstdc++ (compat/): this machine's is older than the bundle needs" \
        "(GLIBCXX_$(manifest glibcxx_required))"
  fi
  command -v cmake >/dev/null || die "cmake is needed to build mnist_train here"
  if [[ -n "${CXX:-}" ]]; then
    command -v "$CXX" >/dev/null || die "CXX=$CXX: no such compiler"
  else
    command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null ||
      die "no C++ compiler (c++, g++, clang++); install one or set CXX"
  fi

  local abi="" torchver="?"
  cuda_available="?"
  torch_args=()
  if [[ -z "$torch_dir" && -z "$torch_prefix" ]]; then
    command -v "$python" >/dev/null ||
      die "no $python here; pass --python /path/to/python-with-torch, or --torch-dir / --torch-prefix"
    local probe='import os, torch
print(os.path.dirname(torch.__file__), torch.__version__, int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", -1)),
      int(torch.cuda.is_available()))'
    local info
    info="$("$python" -c "$probe" 2>&1)" || die "$python cannot import torch (pass --python): $(tail -n 3 <<<"$info")"
    read -r torch_dir torchver abi cuda_available <<<"$(tail -n 1 <<<"$info")"
    [[ -f "$torch_dir/include/ATen/ATen.h" ]] ||
      die "the torch of $python has no C++ headers in $torch_dir/include (a distribution's package?);" \
          "pass --torch-prefix DIR (its TorchConfig.cmake) or --torch-dir DIR"
    say "python torch $torchver in $torch_dir, CUDA available: $cuda_available"
  fi
  if [[ -n "$torch_dir" ]]; then
    torch_dir="$(cd "$torch_dir" && pwd)"
    if [[ -z "$abi" || "$abi" == -1 ]]; then
      # No Python: the ABI from libc10.so's symbols.
      [[ -f "$torch_dir/lib/libc10.so" ]] || die "$torch_dir/lib/libc10.so not found (--torch-dir: a torch/ folder)"
      abi=0
      if [[ "$(nm -DC --defined-only "$torch_dir/lib/libc10.so" 2>/dev/null |
               grep -c 'std::__cxx11::basic_string')" != 0 ]]; then
        abi=1
      fi
    fi
    if [[ "$abi" != 1 ]]; then
      die "this libtorch ($torch_dir) uses the old libstdc++ ABI (_GLIBCXX_USE_CXX11_ABI=0; PyTorch" \
          "wheels before 2.7 do) and the bundle's libdatafeed.so the new one: they cannot be linked" \
          "together. Use a PyTorch >= 2.7 (or a cxx11-abi libtorch with --torch-prefix), or the Python" \
          "route, which needs no C++ ABI match: examples/python/gpu_run.sh"
    fi
    torch_args=(-DDATAFEED_TORCH_DIR="$torch_dir" -DDATAFEED_TORCH_ABI="$abi")
    torch_desc="$torch_dir"
  else
    # find_package(Torch); the CMakeLists checks TORCH_CXX_FLAGS for the ABI.
    torch_args=(-DCMAKE_PREFIX_PATH="$(cd "$torch_prefix" && pwd)" -DDATAFEED_TORCH_DIR=)
    torch_desc="find_package(Torch) under $torch_prefix"
  fi
  # An older libstdc++ here: do not let the linker check libdatafeed.so's
  # GLIBCXX versions against it (compat/ provides them at run time).
  (( compat )) && torch_args+=(-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined)
  return 0
}

build_trainer() {
  mkdir -p "$build_dir"
  local log="$build_dir/build.log" t0=$SECONDS jobs
  jobs="$(nproc 2>/dev/null || echo 4)"
  say "building mnist_train against libtorch ($torch_desc) in $build_dir"
  if ! { cmake -S "$here" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "${torch_args[@]}" ${cmake_args[@]+"${cmake_args[@]}"} &&
         cmake --build "$build_dir" -j "$jobs"; } >"$log" 2>&1; then
    grep -A12 'CMake Error\|error:' "$log" | head -n 40 >&2 || tail -n 40 "$log" >&2
    die "building mnist_train failed (the whole log: $log)"
  fi
  trainer="$build_dir/mnist_train"
  "$trainer" --help >/dev/null 2>&1 || die "mnist_train does not start: $("$trainer" --help 2>&1 | tail -n 3)"
  say "built $trainer ($((SECONDS - t0)) s)"
}

# The value of a key in one of mnist_train's JSON lines (numbers, null).
json_num() { sed -n "s/.*\"$2\": \([-0-9.eE+]*\|null\).*/\1/p" <<<"$1"; }

summary() {
  printf '%-8s %-8s %9s %11s %8s %7s %11s\n' source device step_s ceiling_s ratio wait samples/s
  local row
  for row in "$@"; do
    [[ -n "$row" ]] || continue
    local src dev
    src="$(sed -n 's/.*"source": "\([^"]*\)".*/\1/p' <<<"$row")"
    dev="$(sed -n 's/.*"device": "\([^"]*\)".*/\1/p' <<<"$row")"
    awk -v s="$src" -v d="$dev" -v st="$(json_num "$row" step_s)" -v c="$(json_num "$row" ceiling_step_s)" \
        -v r="$(json_num "$row" ratio)" -v w="$(json_num "$row" data_wait_frac)" \
        -v n="$(json_num "$row" samples_per_s)" \
        'BEGIN { printf "%-8s %-8s %9.4f %11s %8s %6.1f%% %11.0f\n", s, d, st,
                 (c == "null" ? "-" : sprintf("%.4f", c)), (r == "null" ? "-" : sprintf("%.3f", r)),
                 100 * w, n }'
  done
}

run() {
  local steps=50 ceiling_steps=10 producer_threads=4 local_threads="" torch_threads="" batch=8192
  local mnist="" count=60000 device=cuda blur=1 skip_local=0 check_only=0
  python="${PYTHON:-python3}"
  torch_dir="" torch_prefix="" build_dir="$here/build" cmake_args=()
  local batch_given=0
  while (($#)); do
    case "$1" in
      --python) python="$2"; shift 2 ;;
      --torch-dir) torch_dir="$2"; shift 2 ;;
      --torch-prefix) torch_prefix="$2"; shift 2 ;;
      --build-dir) build_dir="$2"; shift 2 ;;
      --cmake-arg) cmake_args+=("$2"); shift 2 ;;
      --steps) steps="$2"; shift 2 ;;
      --ceiling-steps) ceiling_steps="$2"; shift 2 ;;
      --producer-threads) producer_threads="$2"; shift 2 ;;
      --local-threads) local_threads="$2"; shift 2 ;;
      --torch-threads) torch_threads="$2"; shift 2 ;;
      --batch-size) batch="$2"; batch_given=1; shift 2 ;;
      --mnist) mnist="$2"; shift 2 ;;
      --count) count="$2"; shift 2 ;;
      --device) device="$2"; shift 2 ;;
      --no-blur) blur=0; shift ;;
      --skip-local) skip_local=1; shift ;;
      --check-only) check_only=1; shift ;;
      *) die "unknown option $1 (see the top of $0)" ;;
    esac
  done
  [[ -z "$torch_dir" || -z "$torch_prefix" ]] || die "--torch-dir and --torch-prefix: one or the other"
  if (( check_only )); then
    device=cpu steps=2 ceiling_steps=1
    (( batch_given )) || batch=64
  fi
  [[ -n "$local_threads" ]] || local_threads="$producer_threads"
  setup
  if [[ "$device" == cuda* && "$cuda_available" == 0 ]]; then
    die "torch.cuda.is_available() is False under $python; pass --device cpu to run anyway (or: check)"
  fi
  build_trainer

  local pipeline="$blur_pipeline"
  [[ $blur == 1 ]] || pipeline="$plain_pipeline"
  bundle_start_producer gpu-run-cpp "$pipeline" "$count"

  local common=(--batch-size "$batch" --steps "$steps" --ceiling-steps "$ceiling_steps" --device "$device"
                --pipeline "$pipeline" --json)
  [[ -z "$torch_threads" ]] || common+=(--torch-threads "$torch_threads")
  say "feed: datafeed-producer over shared memory, $producer_threads threads, pipeline $pipeline, device $device"
  local feed_json local_json=""
  feed_json="$("$trainer" --source feed --endpoint "$endpoint" "${common[@]}")" ||
    die "mnist_train --source feed failed"
  echo "$feed_json"
  bundle_stop_producer

  if (( ! skip_local )); then
    say "local: the same pipeline inside mnist_train, $local_threads threads (the baseline)"
    local_json="$("$trainer" --source local --mnist "$mnist" --threads "$local_threads" "${common[@]}")" ||
      die "mnist_train --source local failed"
    echo "$local_json"
  fi
  summary "$feed_json" "$local_json"
  if (( check_only )); then
    say "check passed (the GPU run: $0 run)"
  else
    # The target: the fed trainer within 5% of the resident-batch ceiling.
    local ratio
    ratio="$(json_num "$feed_json" ratio)"
    if [[ -n "$ratio" && "$ratio" != null ]]; then
      awk -v r="$ratio" -v t="$producer_threads" 'BEGIN { printf "fed step within 5%% of the ceiling " \
          "(ratio >= 0.95) with %d producer threads: %s (ratio %.3f)\n", t, (r >= 0.95 ? "yes" : "no"), r }'
    fi
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  pack) pack "$@" ;;
  run) run "$@" ;;
  check) run --check-only "$@" ;;
  *) die "usage: $0 pack [BUILD_DIR] [OUT.tar.gz] | run [options] | check [options]" ;;
esac
