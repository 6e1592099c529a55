#!/usr/bin/env bash
# ctest install.deb: builds the Debian package from BUILD_DIR (cpack -G DEB,
# into a temporary folder) and checks it as a user would before and after
# installing it, without installing it on this shared machine:
#   - dpkg-deb -c: the libraries, headers, CMake package, datafeed.pc, the
#     tools, their man pages and the Python package are in it, under /usr;
#   - dpkg-deb -f: Depends names the runtime libraries (from dpkg-shlibdeps)
#     and python3, each a Debian package this machine has;
#   - unpacked (dpkg-deb -x): the tools run, the man pages render, the
#     libraries are stripped and find each other through $ORIGIN, and the
#     Python package imports and finds the packaged producer.
# Usage: deb_test.sh BUILD_DIR [PYTHON]
set -euo pipefail
build="$(cd "$1" && pwd)"
python="${2:-/usr/bin/python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
for tool in cpack dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install cmake dpkg-dev)"
done

cpack -G DEB -B "$work/out" --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1 ||
  fail "cpack -G DEB failed: $(tail -n 30 "$work/cpack.log")"
debs=("$work"/out/*.deb)
[[ ${#debs[@]} == 1 && -f "${debs[0]}" ]] || fail "expected one .deb in $work/out: $(ls "$work/out")"
deb="${debs[0]}"
version="$(grep -m1 '^CMAKE_PROJECT_VERSION:' "$build/CMakeCache.txt" | cut -d= -f2)"
[[ "$(basename "$deb")" == "datafeed_${version}_$(dpkg --print-architecture).deb" ]] ||
  fail "unexpected file name $(basename "$deb")"
ok "cpack made $(basename "$deb") ($(du -h "$deb" | cut -f1))"

dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/contents"
cache() { grep -m1 "^$1:" "$build/CMakeCache.txt" | cut -d= -f2; }
lib="/usr/$(cache CMAKE_INSTALL_LIBDIR)"                  # lib, or lib/<triplet> for a /usr build
py="/usr/$(cache DATAFEED_PYTHON_INSTALL_DIR)/datafeed"   # lib/python3/dist-packages
[[ "$lib" != /usr/ && "$py" != /usr//datafeed ]] || fail "CMAKE_INSTALL_LIBDIR or DATAFEED_PYTHON_INSTALL_DIR missing from $build/CMakeCache.txt"
torch=0
grep -q '^DATAFEED_BUILD_TORCH:BOOL=ON' "$build/CMakeCache.txt" && torch=1
want=(
  /usr/bin/datafeed-producer /usr/bin/datafeed-consume /usr/bin/datafeed-make-mnist /usr/bin/datafeed-gc
  /usr/share/man/man1/datafeed-producer.1.gz /usr/share/man/man1/datafeed-consume.1.gz
  /usr/share/man/man1/datafeed-make-mnist.1.gz /usr/share/man/man1/datafeed-gc.1.gz
  /usr/include/datafeed/transport/transport.h /usr/include/datafeed/transport/status.h
  /usr/include/datafeed/producer/producer.h /usr/include/datafeed/consumer/consumer.h
  "$lib/cmake/datafeed/datafeedConfig.cmake" "$lib/cmake/datafeed/datafeedConfigVersion.cmake"
  "$lib/cmake/datafeed/datafeedTargets.cmake" "$lib/pkgconfig/datafeed.pc"
  "$py/__init__.py" "$py/serving.py" "$py/libdatafeed_c.so" "$py/bin/datafeed-producer" "$py/bin/datafeed-make-mnist"
)
for name in transport producer consumer; do
  want+=("$lib/libdatafeed_$name.so" "$lib/libdatafeed_$name.so.$version")
done
if [[ $torch == 1 ]]; then
  want+=("$lib/libdatafeed_torch.so" "$lib/libdatafeed_torch.so.$version"
         /usr/include/datafeed/torch/tensors.h "$lib/cmake/datafeed/datafeedTorchTargets.cmake")
fi
for f in "${want[@]}"; do
  grep -qxF "$f" "$work/contents" || fail "$f is not in the package; it has: $(tr '\n' ' ' <"$work/contents")"
done
if grep -q '^/usr/include/datafeed/tools/' "$work/contents"; then fail "the package ships datafeed/tools headers"; fi
if grep -q '\.a$' "$work/contents"; then fail "the package ships static archives: $(grep '\.a$' "$work/contents")"; fi
ok "${#want[@]} expected files: libraries, headers, CMake package, datafeed.pc, tools, man pages, Python package"

depends="$(dpkg-deb -f "$deb" Depends)"
for p in 'libgrpc++' libprotobuf libopencv-core libturbojpeg libarchive 'python3 (>= 3.8)'; do
  [[ "$depends" == *"$p"* ]] || fail "Depends lacks $p: $depends"
done
if [[ $torch == 1 && "$depends" != *libtorch* ]]; then fail "Depends lacks libtorch: $depends"; fi
# Every dependency is a package this machine (where the ELF files were
# linked) has installed, or one an installed package provides (spdlog's
# shlibs name libspdlog1.10-fmt9, which libspdlog1.10 provides).
provided="$(dpkg-query -W -f='${db:Status-Abbrev} ${Provides}\n' 2>/dev/null | sed -n 's/^ii *//p' |
            sed 's/([^)]*)//g' | tr ',' '\n' | tr -d ' ')"
for p in $(sed 's/([^)]*)//g; s/|/,/g' <<<"$depends" | tr ',' '\n'); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    grep -qxF "$p" <<<"$provided" ||
    fail "Depends names $p, which is not an installed package here: $depends"
done
ok "Depends: $depends"

root="$work/root"
dpkg-deb -x "$deb" "$root"
[[ "$("$root/usr/bin/datafeed-producer" --version)" == "datafeed-producer $version" ]] ||
  fail "the packaged datafeed-producer --version says '$("$root/usr/bin/datafeed-producer" --version)'"
"$root/usr/bin/datafeed-consume" --help >/dev/null || fail "the packaged datafeed-consume --help failed"
page="$(man -l "$root/usr/share/man/man1/datafeed-producer.1.gz" 2>/dev/null | col -b)"
for s in NAME datafeed-producer --batch-size --config DATAFEED_ENDPOINT; do
  [[ "$page" == *"$s"* ]] || fail "the datafeed-producer man page lacks '$s'"
done
ok "unpacked: the tools run, the man pages render"

for so in "$root$lib"/libdatafeed_*.so."$version"; do
  file -L "$so" | grep -q ", stripped" || fail "$(basename "$so") is not stripped: $(file -L "$so")"
done
# libdatafeed_consumer needs libdatafeed_transport: found next to it.
LD_LIBRARY_PATH= ldd "$root$lib/libdatafeed_consumer.so.$version" >"$work/ldd.out"
grep -q "libdatafeed_transport.so.* => $root$lib/" "$work/ldd.out" ||
  fail "libdatafeed_consumer does not find libdatafeed_transport next to it: $(grep datafeed "$work/ldd.out")"
if grep -q "not found" "$work/ldd.out"; then fail "unresolved libraries: $(grep 'not found' "$work/ldd.out")"; fi
ok "libraries stripped, resolved through \$ORIGIN"

got="$(cd "$work" && PYTHONPATH="$(dirname "$root$py")" "$python" -c '
import os, datafeed, datafeed.serving as s
print(datafeed.__version__, os.path.realpath(s.producer_path()))')" || fail "import datafeed from the package failed"
[[ "$got" == "$version $(realpath "$root/usr/bin/datafeed-producer")" ]] ||
  fail "the packaged Python package: expected '$version $root/usr/bin/datafeed-producer', got '$got'"
ok "Python package: datafeed $version, producer $root/usr/bin/datafeed-producer"

echo "$passed passed, 0 failed"
