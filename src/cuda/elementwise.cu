// elementwise: the activations, dropout, PReLU, row softmax, and the small helpers the network
// step needs around its GEMMs (bias rows, scaling, column sums, squares, row gathers).
// The per-element arithmetic is core/math's, the very functions the CPU kernels run, so float32
// activations and dropout masks equal the CPU's bit for bit.
#include "core/math/activation_math.hpp"
#include "core/math/random.hpp"
#include "cuda/ops.cuh"
#include "cuda/reduce.cuh"

namespace gradstep::cuda {
namespace {

template <class T>
__global__ void activation_forward_kernel(Act a, T* y, const T* x, int64_t n, T alpha) {
  GS_GRID_STRIDE(i, n) {
    const T v = x[i];
    switch (a) {
      case Act::kSigmoid: y[i] = math::sigmoid_t(v); break;
      case Act::kTanh: y[i] = math::tanh_t(v); break;
      case Act::kReLU: y[i] = math::relu(v); break;
      case Act::kLeakyReLU: y[i] = math::leaky_relu(v, alpha); break;
      case Act::kELU: y[i] = math::elu(v, alpha); break;
    }
  }
}

template <class T>
__global__ void activation_backward_kernel(Act a, T* dx, const T* dy, const T* x, const T* y,
                                           int64_t n, T alpha) {
  GS_GRID_STRIDE(i, n) {
    const T g = dy[i];
    switch (a) {
      case Act::kSigmoid: dx[i] = math::sigmoid_grad(g, y[i]); break;
      case Act::kTanh: dx[i] = math::tanh_grad(g, y[i]); break;
      case Act::kReLU: dx[i] = math::relu_grad(g, y[i]); break;
      case Act::kLeakyReLU: dx[i] = math::leaky_relu_grad(g, x[i], alpha); break;
      case Act::kELU: dx[i] = math::elu_grad(g, x[i], y[i], alpha); break;
    }
  }
}

template <class T>
__global__ void dropout_forward_kernel(T* y, T* mask, const T* x, int64_t n, uint64_t threshold,
                                       T scale, const uint64_t* seed) {
  const uint64_t sd = *seed;
  GS_GRID_STRIDE(i, n) {
    const T m = math::dropout_mask<T>(sd, static_cast<uint64_t>(i), threshold, scale);
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

template <class T>
__global__ void mul_kernel(T* y, const T* a, const T* b, int64_t n) {
  GS_GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}

template <class T>
__global__ void prelu_forward_kernel(T* y, const T* x, const T* alpha, int64_t n, int64_t F,
                                     int64_t C) {
  GS_GRID_STRIDE(i, n) y[i] = math::leaky_relu(x[i], alpha[C == 1 ? 0 : i % F]);
}

template <class T>
__global__ void prelu_backward_kernel(T* dx, const T* dy, const T* x, const T* alpha, int64_t n,
                                      int64_t F, int64_t C) {
  GS_GRID_STRIDE(i, n) dx[i] = math::leaky_relu_grad(dy[i], x[i], alpha[C == 1 ? 0 : i % F]);
}

// One warp per row: max, Σ e^(x−max) in double, then y = e/Σ, as the CPU's softmax_rows.
template <class T>
__global__ void softmax_forward_kernel(T* y, const T* x, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (r >= N) return;
  const T* xr = x + r * K;
  T* yr = y + r * K;
  T m = -INFINITY;
  for (int64_t k = lane; k < K; k += 32) m = xr[k] > m ? xr[k] : m;
  m = warp_max(m);
  double s = 0.0;
  for (int64_t k = lane; k < K; k += 32) {
    const T e = math::exp_t(static_cast<T>(xr[k] - m));
    yr[k] = e;
    s += static_cast<double>(e);
  }
  const T st = static_cast<T>(warp_sum(s));
  __syncwarp();
  for (int64_t k = lane; k < K; k += 32) yr[k] = yr[k] / st;
}

template <class T>
__global__ void softmax_backward_kernel(T* dx, const T* dy, const T* y, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (r >= N) return;
  double d = 0.0;
  for (int64_t k = lane; k < K; k += 32)
    d += static_cast<double>(dy[r * K + k]) * static_cast<double>(y[r * K + k]);
  const T dot = static_cast<T>(warp_sum(d));
  for (int64_t k = lane; k < K; k += 32) dx[r * K + k] = y[r * K + k] * (dy[r * K + k] - dot);
}

template <class T>
__global__ void fill_rows_kernel(T* y, const T* b, int64_t N, int64_t O) {
  GS_GRID_STRIDE(i, N * O) y[i] = b[i % O];
}

template <class T>
__global__ void scale_kernel(T* y, const T* x, T c, int64_t n) {
  GS_GRID_STRIDE(i, n) y[i] = c * x[i];
}

template <class T>
__global__ void gather_rows_kernel(T* y, const T* x, const int64_t* idx, int64_t N, int64_t F) {
  GS_GRID_STRIDE(i, N * F) y[i] = x[idx[i / F] * F + i % F];
}

__global__ void gather_labels_kernel(int64_t* y, const int64_t* x, const int64_t* idx, int64_t N) {
  GS_GRID_STRIDE(i, N) y[i] = x[idx[i]];
}

}  // namespace

template <class T>
void activation_forward(cudaStream_t s, Act a, T* y, const T* x, int64_t n, T alpha) {
  activation_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(a, y, x, n, alpha);
  check_launch("activation_forward");
}

template <class T>
void activation_backward(cudaStream_t s, Act a, T* dx, const T* dy, const T* x, const T* y,
                         int64_t n, T alpha) {
  activation_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(a, dx, dy, x, y, n, alpha);
  check_launch("activation_backward");
}

template <class T>
void dropout_forward(cudaStream_t s, T* y, T* mask, const T* x, int64_t n, double p,
                     const uint64_t* seed) {
  dropout_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(
      y, mask, x, n, math::dropout_threshold(p), static_cast<T>(1.0 / (1.0 - p)), seed);
  check_launch("dropout_forward");
}

template <class T>
void mul_forward(cudaStream_t s, T* y, const T* a, const T* b, int64_t n) {
  mul_kernel<<<grid_for(n), kBlock, 0, s>>>(y, a, b, n);
  check_launch("mul");
}

template <class T>
void prelu_forward(cudaStream_t s, T* y, const T* x, const T* alpha, int64_t N, int64_t F,
                   int64_t C) {
  prelu_forward_kernel<<<grid_for(N * F), kBlock, 0, s>>>(y, x, alpha, N * F, F, C);
  check_launch("prelu_forward");
}

int64_t prelu_scratch(int64_t N, int64_t F, int64_t C) {
  return C == 1 ? 0 : column_scratch(N, F);
}

template <class T>
void prelu_backward(cudaStream_t s, T* dx, T* dalpha, double* scratch, const T* dy, const T* x,
                    const T* alpha, int64_t N, int64_t F, int64_t C) {
  if (dx) {
    prelu_backward_kernel<<<grid_for(N * F), kBlock, 0, s>>>(dx, dy, x, alpha, N * F, F, C);
    check_launch("prelu_backward");
  }
  // Σ x·dy where x <= 0 (NaN x included, as PyTorch), in double: the product of two floats is exact.
  auto term = [=] __device__(int64_t i) {
    const double v = static_cast<double>(x[i]) * static_cast<double>(dy[i]);
    return x[i] > T(0) ? 0.0 : v;
  };
  if (C == 1) {
    block_reduce(s, N * F, term, [=] __device__(double v) { dalpha[0] = static_cast<T>(v); },
                 "prelu_backward");
  } else {
    column_reduce(s, scratch, N, F, [=] __device__(int64_t r, int64_t c) { return term(r * F + c); },
                  [=] __device__(int64_t c, double v) { dalpha[c] = static_cast<T>(v); },
                  "prelu_backward");
  }
}

template <class T>
void softmax_forward(cudaStream_t s, T* y, const T* x, int64_t N, int64_t K) {
  softmax_forward_kernel<<<grid_for(N * 32), kBlock, 0, s>>>(y, x, N, K);
  check_launch("softmax_forward");
}

template <class T>
void softmax_backward(cudaStream_t s, T* dx, const T* dy, const T* y, int64_t N, int64_t K) {
  softmax_backward_kernel<<<grid_for(N * 32), kBlock, 0, s>>>(dx, dy, y, N, K);
  check_launch("softmax_backward");
}

template <class T>
void fill_rows(cudaStream_t s, T* y, const T* b, int64_t N, int64_t O) {
  fill_rows_kernel<<<grid_for(N * O), kBlock, 0, s>>>(y, b, N, O);
  check_launch("fill_rows");
}

template <class T>
void scale(cudaStream_t s, T* y, const T* x, T c, int64_t n) {
  scale_kernel<<<grid_for(n), kBlock, 0, s>>>(y, x, c, n);
  check_launch("scale");
}

int64_t column_scratch(int64_t N, int64_t O) { return row_chunks(N) * O; }

template <class T>
void column_sum(cudaStream_t s, T* out, double* scratch, const T* a, int64_t N, int64_t O) {
  column_reduce(s, scratch, N, O,
                [=] __device__(int64_t r, int64_t c) { return static_cast<double>(a[r * O + c]); },
                [=] __device__(int64_t c, double v) { out[c] = static_cast<T>(v); }, "column_sum");
}

template <class T>
void sum_squares(cudaStream_t s, double* out, const T* a, int64_t n, double factor) {
  block_reduce(s, n,
               [=] __device__(int64_t i) {
                 const double v = static_cast<double>(a[i]);
                 return v * v;
               },
               [=] __device__(double v) { *out = factor * v; }, "sum_squares");
}

template <class T>
void gather_rows(cudaStream_t s, T* y, const T* x, const int64_t* idx, int64_t N, int64_t F) {
  gather_rows_kernel<<<grid_for(N * F), kBlock, 0, s>>>(y, x, idx, N, F);
  check_launch("gather_rows");
}

void gather_labels(cudaStream_t s, int64_t* y, const int64_t* x, const int64_t* idx, int64_t N) {
  gather_labels_kernel<<<grid_for(N), kBlock, 0, s>>>(y, x, idx, N);
  check_launch("gather_labels");
}

#define GS_INSTANTIATE(T)                                                                       \
  template void activation_forward<T>(cudaStream_t, Act, T*, const T*, int64_t, T);             \
  template void activation_backward<T>(cudaStream_t, Act, T*, const T*, const T*, const T*,     \
                                       int64_t, T);                                             \
  template void dropout_forward<T>(cudaStream_t, T*, T*, const T*, int64_t, double,             \
                                   const uint64_t*);                                            \
  template void mul_forward<T>(cudaStream_t, T*, const T*, const T*, int64_t);                  \
  template void prelu_forward<T>(cudaStream_t, T*, const T*, const T*, int64_t, int64_t,        \
                                 int64_t);                                                      \
  template void prelu_backward<T>(cudaStream_t, T*, T*, double*, const T*, const T*, const T*,  \
                                  int64_t, int64_t, int64_t);                                   \
  template void softmax_forward<T>(cudaStream_t, T*, const T*, int64_t, int64_t);               \
  template void softmax_backward<T>(cudaStream_t, T*, const T*, const T*, int64_t, int64_t);    \
  template void fill_rows<T>(cudaStream_t, T*, const T*, int64_t, int64_t);                     \
  template void scale<T>(cudaStream_t, T*, const T*, T, int64_t);                               \
  template void column_sum<T>(cudaStream_t, T*, double*, const T*, int64_t, int64_t);           \
  template void sum_squares<T>(cudaStream_t, double*, const T*, int64_t, double);                       \
  template void gather_rows<T>(cudaStream_t, T*, const T*, const int64_t*, int64_t, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cuda
