// maxout: the selection halves of the maxout op (core/maxout.hpp); its P affine pieces are GEMMs
// the network runs through cuBLAS.
//   select   y = max_k z_k, argmax = the winning k (ties to the lowest k; a NaN wins and keeps it)
//   scatter  dz_k = dy where argmax == k, else 0
// Shapes: z, dz (P,N,O); y, dy, argmax (N,O). Write rule: both overwrite their outputs.
#include "cuda/ops.cuh"

namespace gradstep::cuda {
namespace {

template <class T>
__global__ void maxout_select_kernel(T* y, int32_t* argmax, const T* z, int64_t NO, int64_t P) {
  GS_GRID_STRIDE(i, NO) {
    T best = z[i];
    int32_t arg = 0;
    for (int64_t k = 1; k < P; ++k) {
      const T v = z[k * NO + i];
      const bool win = (v > best) | ((v != v) & (best == best));
      best = win ? v : best;
      arg = win ? static_cast<int32_t>(k) : arg;
    }
    y[i] = best;
    argmax[i] = arg;
  }
}

template <class T>
__global__ void maxout_scatter_kernel(T* dz, const T* dy, const int32_t* argmax, int64_t NO,
                                      int64_t P) {
  GS_GRID_STRIDE(j, NO * P) {
    const int64_t k = j / NO, i = j % NO;
    dz[j] = argmax[i] == k ? dy[i] : T(0);
  }
}

}  // namespace

template <class T>
void maxout_select(cudaStream_t s, T* y, int32_t* argmax, const T* z, int64_t N, int64_t O,
                   int64_t P) {
  maxout_select_kernel<<<grid_for(N * O), kBlock, 0, s>>>(y, argmax, z, N * O, P);
  check_launch("maxout_forward");
}

template <class T>
void maxout_scatter(cudaStream_t s, T* dz, const T* dy, const int32_t* argmax, int64_t N,
                    int64_t O, int64_t P) {
  maxout_scatter_kernel<<<grid_for(N * O * P), kBlock, 0, s>>>(dz, dy, argmax, N * O, P);
  check_launch("maxout_backward");
}

template void maxout_select<float>(cudaStream_t, float*, int32_t*, const float*, int64_t, int64_t, int64_t);
template void maxout_select<double>(cudaStream_t, double*, int32_t*, const double*, int64_t, int64_t, int64_t);
template void maxout_scatter<float>(cudaStream_t, float*, const float*, const int32_t*, int64_t, int64_t, int64_t);
template void maxout_scatter<double>(cudaStream_t, double*, const double*, const int32_t*, int64_t, int64_t, int64_t);

}  // namespace gradstep::cuda
