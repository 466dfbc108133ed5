// reduce: the deterministic reductions the families share (internal to src/cuda).
//   column_reduce  out(c, Σ_r f(r, c)) over N rows of O columns, in double: blocks of 32 columns
//                  by 256-row chunks write partial sums, then each column adds its chunks in order.
//   block_reduce   Σ_i f(i) over n items in one block of kReduceThreads, a fixed tree.
//   warp_sum/max   butterfly over the 32 lanes (every lane gets the same, fixed-order result).
// No atomics: the shapes alone fix the order of every addition, so results repeat bit for bit.
#pragma once
#include "cuda/common.cuh"

namespace gradstep::cuda {

constexpr int kColTile = 32;      // columns per block (one warp wide)
constexpr int kRowThreads = 8;    // thread rows per block
constexpr int64_t kRowChunk = 256;  // rows per block
constexpr int kReduceThreads = 1024;

inline int64_t row_chunks(int64_t N) { return (N + kRowChunk - 1) / kRowChunk; }

template <class F>
__global__ void column_partial_kernel(double* part, int64_t N, int64_t O, F f) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kRowChunk;
  const int64_t r1 = r0 + kRowChunk < N ? r0 + kRowChunk : N;
  double acc = 0.0;
  if (c < O)
    for (int64_t r = r0 + ty; r < r1; r += kRowThreads) acc += f(r, c);
  __shared__ double sh[kRowThreads][kColTile];
  sh[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < O) {
    double s = 0.0;
    for (int j = 0; j < kRowThreads; ++j) s += sh[j][tx];
    part[blockIdx.y * O + c] = s;
  }
}

template <class Out>
__global__ void column_final_kernel(const double* part, int64_t R, int64_t O, Out out) {
  GS_GRID_STRIDE(c, O) {
    double s = 0.0;
    for (int64_t r = 0; r < R; ++r) s += part[r * O + c];
    out(c, s);
  }
}

// scratch: row_chunks(N)·O doubles.
template <class F, class Out>
void column_reduce(cudaStream_t s, double* scratch, int64_t N, int64_t O, F f, Out out,
                   const char* where) {
  const dim3 block(kColTile, kRowThreads);
  const dim3 grid(static_cast<unsigned>((O + kColTile - 1) / kColTile),
                  static_cast<unsigned>(row_chunks(N)));
  column_partial_kernel<<<grid, block, 0, s>>>(scratch, N, O, f);
  check_launch(where);
  column_final_kernel<<<grid_for(O), kBlock, 0, s>>>(scratch, row_chunks(N), O, out);
  check_launch(where);
}

template <class F, class Out>
__global__ void block_reduce_kernel(int64_t n, F f, Out out) {
  __shared__ double sh[kReduceThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) acc += f(i);
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int w = kReduceThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out(sh[0]);
}

template <class F, class Out>
void block_reduce(cudaStream_t s, int64_t n, F f, Out out, const char* where) {
  block_reduce_kernel<<<1, kReduceThreads, 0, s>>>(n, f, out);
  check_launch(where);
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <class T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u > v ? u : v;
  }
  return v;
}

}  // namespace gradstep::cuda
