#!/usr/bin/env bash
# The Python example on an air-gapped GPU machine that has an NVIDIA GPU and
# PyTorch but none of datafeed's libraries (gRPC, protobuf, OpenCV, ...).
#
# Here, on the build machine (after cmake --build build):
#
#   examples/python/gpu_run.sh pack [BUILD_DIR] [OUT.tar.gz]
#
#     bundles the built Python package (libdatafeed_c.so), datafeed-producer,
#     datafeed-make-mnist, this script, mnist_train.py, and every shared
#     library they need that is not part of the C runtime (glibc; libstdc++
#     and libgcc_s go to compat/, used only where the target's are older).
#     Each binary's RUNPATH points into the bundle ($ORIGIN, via patchelf),
#     so nothing needs LD_LIBRARY_PATH; without patchelf the run step sets
#     LD_LIBRARY_PATH instead. Default OUT: BUILD_DIR/datafeed-gpu.tar.gz
#     (an OUT ending in .tar is left uncompressed).
#
# There, on the GPU machine:
#
#   tar xzf datafeed-gpu.tar.gz && datafeed-gpu/gpu_run.sh run [options]
#
#     checks the machine (glibc, libstdc++, torch, CUDA, /dev/shm), makes a
#     synthetic MNIST unless --mnist DIR is given, starts datafeed-producer
#     over shared memory (4 threads, the blur pipeline), and runs
#     mnist_train.py --source datafeed against --source dataloader with 16
#     DataLoader workers, printing both results (one JSON line each, then a
#     summary). Options:
#       --python PY           interpreter with torch (default: $PYTHON or python3)
#       --steps N             training steps per run (default 50)
#       --ceiling-steps N     resident-batch steps (default 10)
#       --producer-threads N  (default 4)      --workers N  DataLoader workers (default 16)
#       --batch-size N        (default 8192)   --mnist DIR  real MNIST IDX files
#       --device DEV          (default cuda)   --no-blur    leave GaussianBlur out
#       --skip-dataloader     only the datafeed run
#
#   datafeed-gpu/gpu_run.sh check [--python PY] [--mnist DIR] [--batch-size N]
#     only the machine checks, and a producer smoke run (no GPU needed).
#
#   datafeed-gpu/gpu_run.sh all [--python PY] [--mnist DIR] [--row-timeout S] [--dry-run]
#     the whole comparison as one command, under 8 minutes: datafeed over
#     shared memory with 1, 2 and 4 producer threads (blur, batch 8192), a
#     split pipeline with 4 threads whose finish runs on the GPU (without the
#     blur, which cannot be split), and the DataLoader with 16 workers (blur);
#     every run also times the resident-batch ceiling, and the first one's
#     is printed as its own row. One JSON line per row on stdout, then a
#     summary table; each row is bounded (--row-timeout, default 75 s; a row
#     that runs over or fails prints an "error" line, the rest go on and the
#     exit status is 1), and rows that would start after 7 minutes are
#     skipped, said so. --dry-run: the same rows tiny on the CPU (batch 256,
#     3 steps, 2 workers), no GPU needed: what CI runs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
blur_pipeline='to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)'
plain_pipeline='to_tensor,normalize(0.1307,0.3081)'

die() { echo "gpu_run: $*" >&2; exit 1; }
say() { echo "gpu_run: $*" >&2; }

# The bundling itself (library closure, RUNPATHs, MANIFEST, glibc checks) is
# shared with examples/gpu/gpu_run.sh: scripts/bundle_lib.sh, which travels
# in the bundle next to this script.
bundle_lib="$here/bundle_lib.sh"
[[ -f "$bundle_lib" ]] || bundle_lib="$here/../../scripts/bundle_lib.sh"
source "$bundle_lib"

# ---------------------------------------------------------------- pack (here)

pack() {
  local build="${1:-build}" out="${2:-}"
  build="$(cd "$build" && pwd)"
  [[ -n "$out" ]] || out="$build/datafeed-gpu.tar.gz"
  local pkg="$build/python/datafeed"
  for f in "$pkg/libdatafeed_c.so" "$pkg/bin/datafeed-producer" "$pkg/bin/datafeed-make-mnist"; do
    [[ -f "$f" ]] || die "$f is missing; build first: cmake --build $build --target datafeed_python"
  done
  command -v objdump >/dev/null || die "objdump is needed (apt-get install binutils)"

  local stage_root stage
  stage_root="$(mktemp -d)"
  trap 'rm -rf "$stage_root"' RETURN
  stage="$stage_root/datafeed-gpu"
  mkdir -p "$stage/python"
  cp -r "$pkg" "$stage/python/"
  rm -rf "$stage/python/datafeed/__pycache__"
  cp "$here/gpu_run.sh" "$here/mnist_train.py" "$stage/"
  cp "$bundle_lib" "$stage/bundle_lib.sh"

  local elfs=("$stage/python/datafeed/libdatafeed_c.so" "$stage/python/datafeed/bin/datafeed-producer"
              "$stage/python/datafeed/bin/datafeed-make-mnist")
  bundle_closure "$stage" "${elfs[@]}"
  bundle_rpath "$stage" "$stage/python/datafeed/libdatafeed_c.so" ../../lib \
      "$stage/python/datafeed/bin/datafeed-producer" ../../../lib \
      "$stage/python/datafeed/bin/datafeed-make-mnist" ../../../lib
  bundle_manifest_write "$stage" "${elfs[@]}"
  bundle_tar "$stage_root" datafeed-gpu "$out"
  say "wrote $out ($(du -h "$out" | cut -f1); $BUNDLE_LIBS libraries; needs glibc >= $(bundle_manifest "$stage" glibc_required); rpath=$BUNDLE_RPATH)"
}

# ---------------------------------------------------------------- run (there)

manifest() { bundle_manifest "$here" "$1"; }

# Sets up the environment for the bundle's binaries and checks the machine.
setup() {
  [[ -f "$here/MANIFEST" ]] || die "run this from an unpacked bundle (gpu_run.sh pack makes one)"
  export PYTHONPATH="$here/python${PYTHONPATH:+:$PYTHONPATH}"
  export DATAFEED_PRODUCER="$here/python/datafeed/bin/datafeed-producer"
  producer="$DATAFEED_PRODUCER"
  make_mnist="$here/python/datafeed/bin/datafeed-make-mnist"
  if [[ "$(manifest rpath)" != yes ]]; then
    export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi

  bundle_check_glibc "$here"

  command -v "$python" >/dev/null || die "no $python here; pass --python /path/to/python-with-torch"
  # One interpreter start (importing torch takes seconds): versions and CUDA.
  local probe='import platform, torch, datafeed
print(platform.python_version(), torch.__version__, datafeed.library_version(), int(torch.cuda.is_available()))'
  local info
  # The C++ runtime: the machine's, unless it is older than the bundle's.
  if ! "$producer" --help >/dev/null 2>&1 || ! info="$("$python" -c "$probe" 2>/dev/null)"; then
    export LD_LIBRARY_PATH="$here/compat${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    "$producer" --help >/dev/null 2>&1 ||
      die "datafeed-producer does not start: $("$producer" --help 2>&1 | tail -n 3)"
    info="$("$python" -c "$probe" 2>&1)" ||
      die "$python cannot import torch and datafeed (pass --python): $(tail -n 3 <<<"$info")"
    say "using the bundled libstdc++ (compat/): this machine's is older than the bundle needs"
  fi
  local pyver torchver libver
  read -r pyver torchver libver cuda_available <<<"$info"
  say "python $pyver, torch $torchver, datafeed library $libver, CUDA available: $cuda_available"
}

run() {
  local steps=50 ceiling_steps=10 producer_threads=4 workers=16 batch=8192 mnist="" device=cuda
  local blur=1 skip_dataloader=0 check_only=0
  python="${PYTHON:-python3}"
  while (($#)); do
    case "$1" in
      --python) python="$2"; shift 2 ;;
      --steps) steps="$2"; shift 2 ;;
      --ceiling-steps) ceiling_steps="$2"; shift 2 ;;
      --producer-threads) producer_threads="$2"; shift 2 ;;
      --workers) workers="$2"; shift 2 ;;
      --batch-size) batch="$2"; shift 2 ;;
      --mnist) mnist="$2"; shift 2 ;;
      --device) device="$2"; shift 2 ;;
      --no-blur) blur=0; shift ;;
      --skip-dataloader) skip_dataloader=1; shift ;;
      --check-only) check_only=1; shift ;;
      *) die "unknown option $1 (see the top of $0)" ;;
    esac
  done
  setup

  local pipeline="$blur_pipeline" blur_flag=()
  [[ $blur == 1 ]] || { pipeline="$plain_pipeline"; blur_flag=(--no-blur); }
  bundle_start_producer gpu-run "$pipeline" 60000

  if (( check_only )); then
    "$python" - "$endpoint" <<'EOF'
import sys, datafeed
with datafeed.Loader(sys.argv[1], connect_timeout=60, timeout=120) as loader:
    batch = next(loader)
    print("gpu_run: check: a batch from the bundled producer:", batch, file=sys.stderr)
EOF
    say "check passed"
    return 0
  fi
  [[ "$cuda_available" == 1 || "$device" != cuda* ]] ||
    die "torch.cuda.is_available() is False under $python; pass --device cpu to run anyway"

  local common=(--batch-size "$batch" --steps "$steps" --ceiling-steps "$ceiling_steps" --device "$device"
                --json "${blur_flag[@]}")
  say "datafeed: producer over shared memory, $producer_threads threads, pipeline $pipeline"
  local df_json dl_json=""
  df_json="$("$python" "$here/mnist_train.py" --source datafeed --endpoint "$endpoint" \
             --producer-pid "$producer_pid" --producer-threads "$producer_threads" --pipeline "$pipeline" \
             "${common[@]}")"
  echo "$df_json"
  bundle_stop_producer

  if (( ! skip_dataloader )); then
    "$python" -c 'import torchvision' 2>/dev/null ||
      die "the baseline needs torchvision under $python (or pass --skip-dataloader)"
    say "dataloader: torchvision transforms in $workers DataLoader workers"
    dl_json="$("$python" "$here/mnist_train.py" --source dataloader --mnist "$mnist" --workers "$workers" \
               "${common[@]}")"
    echo "$dl_json"
  fi
  "$python" - "$df_json" "$dl_json" <<'EOF'
import json, sys
rows = [json.loads(s) for s in sys.argv[1:] if s.strip()]
print("%-10s %-10s %9s %12s %9s %7s %10s" % ("source", "device", "step_s", "ceiling_s", "ratio", "wait", "samples/s"))
for r in rows:
    print("%-10s %-10s %9.4f %12.4f %9.3f %6.1f%% %10.0f" % (r["source"], r["device"], r["step_s"],
          r["ceiling_step_s"] or float("nan"), r["ratio"] or float("nan"), 100 * r["data_wait_frac"],
          r["samples_per_s"]))
EOF
}

# ---------------------------------------------------------------- all (there)

all() {
  local dry=0 row_timeout=75 budget_s=420 steps=40 ceiling_steps=10 workers=16 device=cuda count=60000
  local torch_threads=0
  batch=8192 mnist=""
  python="${PYTHON:-python3}"
  while (($#)); do
    case "$1" in
      --python) python="$2"; shift 2 ;;
      --mnist) mnist="$2"; shift 2 ;;
      --row-timeout) row_timeout="$2"; shift 2 ;;
      --dry-run) dry=1; shift ;;
      *) die "unknown option $1 for all (see the top of $0)" ;;
    esac
  done
  if (( dry )); then
    device=cpu batch=256 steps=3 ceiling_steps=1 workers=2 count=2048 torch_threads=1 row_timeout=120
  fi
  setup
  command -v timeout >/dev/null || die "all needs timeout (coreutils) to bound each row"
  [[ "$cuda_available" == 1 || "$device" != cuda* ]] ||
    die "torch.cuda.is_available() is False under $python; all --dry-run runs the same rows tiny on the CPU"

  local started=$SECONDS
  all_work="$(mktemp -d)"
  trap 'bundle_stop_producer; rm -rf "${work:-}" "${all_work:-}"' EXIT
  if [[ -z "$mnist" ]]; then
    mnist="$all_work/mnist"
    "$make_mnist" --out "$mnist" --count "$count" >/dev/null
    say "synthetic MNIST ($count samples) in $mnist"
  fi
  local rows="$all_work/rows.jsonl"
  : >"$rows"
  local common=(--batch-size "$batch" --steps "$steps" --ceiling-steps "$ceiling_steps" --device "$device"
                --torch-threads "$torch_threads" --log-every 0 --json)

  # row NAME ARGS...: one bounded mnist_train.py run; its JSON line with the
  # row's name added, or an error line naming why there is none.
  row() {
    local name="$1" out rc=0 line
    shift
    if (( SECONDS - started > budget_s )); then
      line="{\"row\": \"$name\", \"error\": \"skipped: past the ${budget_s} s budget\"}"
    else
      say "row $name"
      out="$(timeout --kill-after=10 "$row_timeout" "$python" "$here/mnist_train.py" "$@" "${common[@]}")" || rc=$?
      line="$(grep '^{' <<<"$out" | tail -n 1 || true)"
      if (( rc != 0 )) || [[ -z "$line" ]]; then
        local why="exit $rc"
        (( rc != 124 && rc != 137 )) || why="over the ${row_timeout} s row bound"
        line="{\"row\": \"$name\", \"error\": \"$why\"}"
      else
        line="$("$python" -c 'import json, sys; print(json.dumps({"row": sys.argv[2], **json.loads(sys.argv[1])}))' \
                "$line" "$name")"
      fi
    fi
    echo "$line"
    echo "$line" >>"$rows"
  }

  local t
  for t in 1 2 4; do
    producer_threads="$t"
    bundle_start_producer "gpu-all-$t" "$blur_pipeline" "$count"
    row "datafeed-shm-${t}t" --source datafeed --endpoint "$endpoint" --producer-pid "$producer_pid" \
        --producer-threads "$t" --pipeline "$blur_pipeline"
    bundle_stop_producer
    rm -rf "$work"
  done
  # The blur runs after to_tensor, so it cannot be split: the split row
  # ships uint8 and finishes (to_tensor, normalize) on the device, no blur.
  local split_pipeline="|$plain_pipeline"
  producer_threads=4
  bundle_start_producer gpu-all-split "$split_pipeline" "$count"
  row "datafeed-shm-split-4t-noblur" --source datafeed --endpoint "$endpoint" --producer-pid "$producer_pid" \
      --producer-threads 4 --pipeline "$split_pipeline"
  bundle_stop_producer
  rm -rf "$work"
  if "$python" -c 'import torchvision' 2>/dev/null; then
    row "dataloader-${workers}w" --source dataloader --mnist "$mnist" --workers "$workers"
  else
    echo "{\"row\": \"dataloader-${workers}w\", \"error\": \"no torchvision under $python\"}" | tee -a "$rows"
  fi

  "$python" - "$rows" "$batch" "$((SECONDS - started))" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
batch, took = int(sys.argv[2]), int(sys.argv[3])
failed = sum("error" in r for r in rows)
first = next((r for r in rows if "error" not in r and (r.get("ceiling_step_s") or 0) > 0), None)
if first:
    c = {"row": "ceiling (resident batch, timed in %s)" % first["row"], "device": first["device"],
         "step_s": first["ceiling_step_s"], "samples_per_s": batch / first["ceiling_step_s"]}
    print(json.dumps(c))
    rows.insert(0, c)
def num(v):
    return v if isinstance(v, (int, float)) else float("nan")
print("%-52s %-6s %9s %8s %7s %11s" % ("row", "device", "step_s", "ratio", "wait", "samples/s"))
for r in rows:
    if "error" in r:
        print("%-52s %s" % (r["row"], r["error"]))
        continue
    wait = r.get("data_wait_frac")
    print("%-52s %-6s %9.4f %8.3f %7s %11.0f" % (r["row"], r["device"], num(r["step_s"]), num(r.get("ratio", 1.0)),
          "-" if wait is None else "%.1f%%" % (100 * wait), num(r["samples_per_s"])))
print("gpu_run all: %d rows, %d failed, %d s" % (len(rows) - failed, failed, took))
sys.exit(1 if failed else 0)
PY
}

cmd="${1:-}"
shift || true
case "$cmd" in
  pack) pack "$@" ;;
  run) run "$@" ;;
  check) run --check-only "$@" ;;
  all) all "$@" ;;
  *) die "usage: $0 pack [BUILD_DIR] [OUT.tar.gz] | run [options] | check [--python PY] | all [--dry-run]" ;;
esac
