#!/usr/bin/env bash
# The GPU check of the CUDA backend, as one script for a machine with an NVIDIA GPU, nvcc and
# PyTorch (the device machine: Python 3.12, no network). From the repository root:
#   OUT=/some/dir bash tools/gpu_check.sh
# 1. installs the carried scipy-openblas32 wheel (.whl/, if any) and builds gradstep with
#    GRADSTEP_CUDA=ON through pip, without build isolation (the real install path: RPATHs, extra);
# 2. runs tests/test_cuda.py against the installed package;
# 3. runs bench/compare_cuda.py (gradstep vs PyTorch eager and CUDA graphs).
# Logs and results go to $OUT (gpu_check.log, pytest.txt, bench_cuda.md).
set -uo pipefail
OUT=${OUT:-/tmp/gradstep-gpu-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
repo=$(pwd)
py=${PYTHON:-python3}
t0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

stamp "machine"
nvidia-smi -L || true
$py -V
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version | tail -2 || true
$py -c "import torch, nvidia, os; print('torch', torch.__version__, torch.cuda.is_available()); print([p for p in nvidia.__path__])" || true

stamp "install the carried wheels"
if ls .whl/*.whl >/dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || exit 1
fi

stamp "build and install gradstep with GRADSTEP_CUDA=ON"
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
if ! GRADSTEP_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${GS_ARCHS:-90} -DCMAKE_CUDA_COMPILER=$(command -v nvcc)" \
    $py -m pip install --no-build-isolation --no-deps --no-compile . > "$OUT/pip_install.log" 2>&1; then
  tail -60 "$OUT/pip_install.log"
  stamp "pip install FAILED: falling back to an in-place CMake build (python/ on PYTHONPATH)"
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v $py)" \
    -Dpybind11_DIR="$($py -m pybind11 --cmakedir)" -DGRADSTEP_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${GS_ARCHS:-90} \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$repo/python/gradstep" && cmake --build build/gpu || { stamp "BUILD FAILED"; exit 2; }
  export PYTHONPATH="$repo/python${PYTHONPATH:+:$PYTHONPATH}"
fi
so=$($py -c "import gradstep, glob, os; print(glob.glob(os.path.join(os.path.dirname(gradstep.__file__), '_cuda*.so'))[0])" 2>/dev/null) \
  && (cd /tmp && readelf -d "$so" | grep -E "NEEDED|RUNPATH|RPATH")

stamp "import"
(cd /tmp && $py -c "
import gradstep as gs
print('is_available', gs.cuda.is_available(), 'device_count', gs.cuda.device_count(), repr(gs.cuda.unavailable_reason()))
print(gs.cuda.get_device_name(0))
") || exit 3

stamp "tests/test_cuda.py"
# Run from /tmp with the repo's tests: the installed package is the one imported.
(cd /tmp && $py -m pytest -q -p no:cacheprovider -rs --rootdir "$repo" -c "$repo/pyproject.toml" \
   "$repo/tests/test_cuda.py" 2>&1 | tee "$OUT/pytest.txt")

stamp "bench/compare_cuda.py"
(cd /tmp && timeout ${GS_BENCH_TIMEOUT:-300} $py "$repo/bench/compare_cuda.py" --repeats ${GS_REPEATS:-7} \
   --out "$OUT/bench_cuda.md" ${GS_BENCH_ARGS:-})
stamp "done"
