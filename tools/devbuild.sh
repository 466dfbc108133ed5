#!/usr/bin/env bash
# Developer build: compiles gradstep._core in place (python/gradstep/_core*.so, gitignored) so that
# `PYTHONPATH=python python -m pytest` runs against this tree without installing it.
# Usage: tools/devbuild.sh [build-dir]   (needs pybind11, scipy-openblas32 and numpy in the active Python)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/dev}
py=$(command -v python)
if [[ ! -f $build/build.ninja ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$py" \
    -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/python/gradstep" ${GRADSTEP_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build" -- -j2 | grep -vE '^\[[0-9]+/[0-9]+\] (Building|Linking)' || true
test -n "$(ls python/gradstep/_core*.so 2>/dev/null)"
