# Bundling datafeed's binaries for a machine that has none of our libraries:
# sourced by examples/python/gpu_run.sh and examples/gpu/gpu_run.sh, and
# copied into each bundle (the run step there sources it too).
#
# Here (pack):  bundle_closure, bundle_rpath, bundle_manifest_write, bundle_tar
# There (run):  bundle_manifest, bundle_check_glibc, bundle_version_lt, bundle_shm_slots,
#               bundle_start_producer, bundle_stop_producer
#
# The caller defines die and say. Bash, set -euo pipefail friendly.

# Libraries every Linux machine has (glibc and the loader) are never bundled.
bundle_is_system_lib() {
  case "$1" in
    linux-vdso.so.*|ld-linux*.so.*|libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|\
    libutil.so.*|libresolv.so.*|libnsl.so.*|libanl.so.*|libmvec.so.*|libBrokenLocale.so.*) return 0 ;;
  esac
  return 1
}
# The C++ runtime: bundled to compat/, used only where the target's is older.
bundle_is_compat_lib() {
  case "$1" in libstdc++.so.*|libgcc_s.so.*) return 0 ;; esac
  return 1
}

# Highest symbol version of a family (GLIBC_, GLIBCXX_) that files require.
bundle_max_version_needed() {
  local prefix="$1"; shift
  objdump -p "$@" 2>/dev/null | awk -v p="$prefix" '$NF ~ "^"p"[0-9]" {sub(p, "", $NF); print $NF}' |
    sort -V | tail -n 1
}

# bundle_closure STAGE ELF...: copies the shared-library closure of the ELFs
# (ldd lists it whole, transitive dependencies included) into STAGE/lib, the
# C++ runtime into STAGE/compat, glibc nowhere. Sets BUNDLE_LIBS (how many
# went to lib/).
bundle_closure() {
  local stage="$1"; shift
  command -v objdump >/dev/null || die "objdump is needed (apt-get install binutils)"
  mkdir -p "$stage/lib" "$stage/compat"
  local line name path
  BUNDLE_LIBS=0
  while read -r line; do
    name="${line%% *}"
    path="$(awk '{print $3}' <<<"$line")"
    [[ "$path" == "not" ]] && die "a dependency is not found on this machine: $line"
    if bundle_is_system_lib "$name"; then continue; fi
    if bundle_is_compat_lib "$name"; then cp -L "$path" "$stage/compat/$name"; continue; fi
    if [[ ! -e "$stage/lib/$name" ]]; then cp -L "$path" "$stage/lib/$name"; BUNDLE_LIBS=$((BUNDLE_LIBS + 1)); fi
  done < <(ldd "$@" | awk '/=>/ && $3 != "" {print $1, "=>", $3}' | sort -u)
  chmod u+w "$stage"/lib/* "$stage"/compat/* 2>/dev/null || true
}

# bundle_rpath STAGE [ELF RELDIR]...: RUNPATH $ORIGIN for everything in
# STAGE/lib, $ORIGIN/RELDIR for each ELF (RELDIR: from the ELF's folder to
# lib/), so nothing needs LD_LIBRARY_PATH. Sets BUNDLE_RPATH=yes, or no
# without patchelf (the run step then sets LD_LIBRARY_PATH).
bundle_rpath() {
  local stage="$1" f; shift
  BUNDLE_RPATH=no
  if ! command -v patchelf >/dev/null; then
    say "patchelf not found (apt-get install patchelf): the run step will set LD_LIBRARY_PATH instead"
    return 0
  fi
  for f in "$stage"/lib/*; do patchelf --set-rpath '$ORIGIN' "$f"; done
  while (($#)); do
    patchelf --set-rpath "\$ORIGIN/$2" "$1"
    shift 2
  done
  BUNDLE_RPATH=yes
}

# bundle_manifest_write STAGE ELF...: STAGE/MANIFEST, key=value lines: the
# glibc and libstdc++ symbol versions the ELFs and lib/ need, rpath, the
# number of libraries. The caller may append its own keys.
bundle_manifest_write() {
  local stage="$1"; shift
  local glibc glibcxx
  glibc="$(bundle_max_version_needed GLIBC_ "$@" "$stage"/lib/*)"
  glibcxx="$(bundle_max_version_needed GLIBCXX_ "$@" "$stage"/lib/*)"
  {
    echo "built_on=$(hostname) $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "glibc_required=${glibc}"
    echo "glibcxx_required=${glibcxx}"
    echo "rpath=${BUNDLE_RPATH:-no}"
    echo "libraries=${BUNDLE_LIBS:-0}"
  } > "$stage/MANIFEST"
}

# bundle_tar STAGE_ROOT NAME OUT: OUT ending in .tar is left uncompressed
# (quick, for tests); anything else is gzip'ed.
bundle_tar() {
  local root="$1" name="$2" out="$3"
  case "$out" in
    *.tar) tar -C "$root" -cf "$out" "$name" ;;
    *) tar -C "$root" -czf "$out" "$name" ;;
  esac
}

# ---------------------------------------------------------------- there

# bundle_manifest ROOT KEY: a value from ROOT/MANIFEST.
bundle_manifest() { sed -n "s/^$2=//p" "$1/MANIFEST"; }

# bundle_version_lt A B: true when version A < B.
bundle_version_lt() {
  [[ "$1" != "$2" && "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$1" ]]
}

# bundle_check_glibc ROOT: dies when this machine's glibc is older than the
# bundle needs (nothing can be done about that here: rebuild on an older
# distribution).
bundle_check_glibc() {
  local need have
  need="$(bundle_manifest "$1" glibc_required)"
  have="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
  if [[ -n "$need" && -n "$have" ]] && bundle_version_lt "$have" "$need"; then
    die "this machine has glibc $have; the bundle needs >= $need (build it on an older distribution)"
  fi
}

# bundle_shm_slots BATCH: shared-memory slots (one MNIST batch each, float32
# images) that fit /dev/shm, at most 4.
bundle_shm_slots() {
  local batch_bytes=$(( $1 * (784 * 4 + 8) + 8192 )) free
  free="$(df -B1 --output=avail /dev/shm 2>/dev/null | tail -n 1 | tr -d ' ')"
  [[ -n "$free" ]] || { echo 4; return; }
  local slots=$(( free / batch_bytes ))
  (( slots > 4 )) && slots=4
  echo "$slots"
}

# Starts the bundled producer over shared memory for a run, in the background:
#   bundle_start_producer NAME PIPELINE COUNT
# Uses the caller's globals producer, make_mnist, batch, producer_threads and
# mnist (empty: COUNT synthetic samples are written to a temporary folder).
# Sets the globals work (a temporary folder), mnist, endpoint (shm://NAME-PID)
# and producer_pid; an EXIT trap stops the producer and removes $work.
bundle_start_producer() {
  local name="$1" pipeline="$2" count="$3"
  work="$(mktemp -d)"
  producer_pid=""
  trap 'bundle_stop_producer; rm -rf "${work:-}"' EXIT
  if [[ -z "$mnist" ]]; then
    mnist="$work/mnist"
    "$make_mnist" --out "$mnist" --count "$count" >/dev/null
    say "synthetic MNIST ($count samples) in $mnist"
  fi
  local slots
  slots="$(bundle_shm_slots "$batch")"
  (( slots >= 2 )) || die "/dev/shm has room for $slots batches of $batch; it needs 2 (in docker: --shm-size=1g)"
  endpoint="shm://$name-$$"
  "$producer" --mnist "$mnist" --endpoint "$endpoint" --pipeline "$pipeline" --batch-size "$batch" \
      --threads "$producer_threads" --epochs 0 --shuffle --drop-last --slots "$slots" --quiet \
      --linger-ms 0 &
  producer_pid=$!
}

bundle_stop_producer() {
  if [[ -n "${producer_pid:-}" ]]; then
    kill "$producer_pid" 2>/dev/null || true
    wait "$producer_pid" 2>/dev/null || true
  fi
  producer_pid=""
}
