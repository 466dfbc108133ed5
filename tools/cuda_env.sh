# Source this to build gradstep's CUDA backend with the toolchain from the registries alone:
#   pip install "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
#               "nvidia-cuda-runtime==13.0.*" "nvidia-cublas==13.0.*" "nvidia-cuda-cccl==13.0.*"
# (nvvm and crt pinned with nvcc: a newer cicc writes PTX that nvcc 13.0's ptxas rejects.)
#   source tools/cuda_env.sh && GRADSTEP_CUDA=ON pip install --no-build-isolation .
# It points CMake at nvidia/cu13 (nvcc, cudart, cccl's headers, cuBLAS) of the active Python.
_gs_nv=$(python -c "import os, nvidia; print(next(p + '/cu13' for p in nvidia.__path__ if os.path.isfile(p + '/cu13/bin/nvcc')), end='')" 2>/dev/null)
if [[ -n $_gs_nv ]]; then
  export CUDACXX=$_gs_nv/bin/nvcc
  # FindCUDAToolkit insists on a libcudart it can name; the wheel has only the versioned one.
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DCUDAToolkit_ROOT=$_gs_nv -DCUDA_CUDART=$_gs_nv/lib/libcudart.so.13"
  # nvcc's own link step looks in lib64, the wheels ship lib/: the linker also searches LIBRARY_PATH.
  export LIBRARY_PATH="$_gs_nv/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
  echo "gradstep CUDA toolchain: $_gs_nv"
else
  echo "no nvidia-cuda-nvcc wheel in $(command -v python); using the nvcc on PATH: $(command -v nvcc)" >&2
fi
unset _gs_nv
