#!/usr/bin/env bash
# CI job for the CUDA backend on a machine without a GPU (kept out of .ci/run, which must stay a
# few minutes: this one downloads ~1.2 GB of nvidia wheels, cuBLAS with its nvrtc dependency being
# most of it, and compiles the kernels for sm_80 and sm_90, several minutes on 2 cores).
# It builds gradstep with GRADSTEP_CUDA=ON from a clean virtual environment with the toolchain from
# the registries alone, checks that the module imports and reports the missing driver as a
# gs.CudaError, and runs tests/test_cuda.py (the GPU tests skip with the reason).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GRADSTEP_CI_VENV:-/tmp/gradstep-ci-cuda-venv}
rm -rf "$venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
pip install "scikit-build-core>=0.10" "pybind11>=2.13" "scipy-openblas32>=0.3.27" numpy \
  "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
  "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cublas==13.0.*"
GRADSTEP_CUDA=ON pip install --no-build-isolation ".[test,cuda]"
cd /tmp
python - <<'PY'
import gradstep as gs
from gradstep import _cuda  # the module must import without a driver
print("gradstep._cuda imported; is_available:", gs.cuda.is_available(), gs.cuda.unavailable_reason())
PY
python -m pytest -q -rs -p no:cacheprovider --rootdir "$OLDPWD" -c "$OLDPWD/pyproject.toml" "$OLDPWD/tests/test_cuda.py"
