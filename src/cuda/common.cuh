// common: what every CUDA family file shares: the error type, the launch checks, the block size
// and the grid helper. Compiled only when GRADSTEP_CUDA=ON.
// Errors never exit or abort: every CUDA and cuBLAS status is turned into a CudaError (a
// std::runtime_error the bindings register as gradstep.CudaError) naming the call and the code.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace gradstep::cuda {

class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

// Throws CudaError for a failed CUDA call: "<where>: cudaErrorX (message)". The sticky error
// state is cleared first where CUDA allows it (cudaGetLastError), so the process can go on.
void check(cudaError_t status, const char* where);
// After a kernel launch: the launch's own error, if any.
void check_launch(const char* where);

constexpr int kBlock = 256;  // threads per block of the elementwise kernels

// Blocks for n elements at kBlock threads, capped: the kernels stride over the rest.
inline unsigned grid_for(int64_t n) {
  const int64_t b = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

#define GS_GRID_STRIDE(i, n)                                                             \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

}  // namespace gradstep::cuda
