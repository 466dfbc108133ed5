#!/usr/bin/env bash
# Developer build of both modules with the CUDA backend (python/gradstep/_core*.so and _cuda*.so,
# gitignored), the toolchain from the nvidia wheels of the active Python (see tools/cuda_env.sh).
# Usage: tools/devbuild_cuda.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/dev-cuda}
py=$(command -v python)
source tools/cuda_env.sh
if [[ ! -f $build/build.ninja ]]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$py" \
    -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" -DGRADSTEP_CUDA=ON \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/python/gradstep" ${CMAKE_ARGS:-} ${GRADSTEP_CMAKE_ARGS:-}
fi
cmake --build "$build" -- -j"${GRADSTEP_JOBS:-2}"
test -n "$(ls python/gradstep/_cuda*.so 2>/dev/null)"
