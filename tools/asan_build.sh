#!/usr/bin/env bash
# AddressSanitizer build of gradstep for the fuzzers: an out-of-bounds read or write inside the
# kernels then stops the process with a report, instead of passing silently when it stays inside
# mapped memory (which is what a plain build does with small overruns).
#   bash tools/asan_build.sh [DIR]     # a copy of python/gradstep with an ASan _core, in DIR
#   then: PYTHONPATH=DIR LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
#         ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 python tools/fuzz_bindings.py ...
# (tools/fuzz_bindings.py --asan DIR sets those for its workers.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/asan-python}
mkdir -p "$out"
rm -rf "$out/gradstep"
cp -r python/gradstep "$out/gradstep"
rm -f "$out"/gradstep/_core*.so
py=$(command -v python)
build=build/asan
if [[ ! -f $build/build.ninja ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython_EXECUTABLE="$py" \
    -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
    -DCMAKE_CXX_FLAGS="-fsanitize=address -fno-omit-frame-pointer" \
    -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address" >/dev/null
fi
cmake --build "$build" -- -j2 | grep -vE '^\[[0-9]+/[0-9]+\] (Building|Linking)' || true
cp "$build"/_core*.so "$out/gradstep/"
echo "$out"
