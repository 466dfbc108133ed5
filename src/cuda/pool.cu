// pool: the pooling ops (core/pool.hpp) on the GPU, one thread per output (forward) or per input
// value (backward). The backward passes gather instead of scatter (no atomics): each input value
// sums the windows that hold it in increasing window order, the order the CPU kernels add them,
// so results match the CPU bit for bit.
//   max     y = the window's max (ties keep the first in row-major order; a NaN wins), argmax the
//           winner's index in the plane, -1 for a window wholly in the padding (y = -inf)
//   avg     y = window sum / (KH·KW) (count_include_pad), summed in double
//   global  y = plane mean, summed in double
// Shapes: x, dx (N,C,H,W); y, dy, argmax (N,C,OH,OW); the global pool's y (N,C), x (N,C,S).
// Write rule: every function overwrites its outputs.
#include "cuda/ops.cuh"

namespace gradstep::cuda {
namespace {

struct Window {
  int64_t h0, h1, w0, w1;
};

__device__ inline Window window(const PoolShape& g, int64_t i, int64_t j) {
  const int64_t hs = i * g.SH - g.PT, ws = j * g.SW - g.PL;
  return {hs > 0 ? hs : 0, hs + g.KH < g.H ? hs + g.KH : g.H, ws > 0 ? ws : 0,
          ws + g.KW < g.W ? ws + g.KW : g.W};
}

// The output rows [i0, i1) whose windows (along one axis: stride S, kernel K, padding P) hold
// input position h, clipped to [0, O).
__device__ inline void covering(int64_t h, int64_t S, int64_t K, int64_t P, int64_t O, int64_t& i0,
                                int64_t& i1) {
  // window i holds h when i·S - P <= h < i·S - P + K.
  const int64_t hp = h + P;
  i0 = hp - K + 1 <= 0 ? 0 : (hp - K + 1 + S - 1) / S;
  i1 = hp / S + 1;
  if (i1 > O) i1 = O;
}

template <class T>
__global__ void maxpool_forward_kernel(T* y, int32_t* argmax, const T* x, int64_t total,
                                       PoolShape g, int64_t OH, int64_t OW) {
  GS_GRID_STRIDE(o, total) {
    const int64_t pl = o / (OH * OW), r = o % (OH * OW), i = r / OW, j = r % OW;
    const T* xp = x + pl * g.H * g.W;
    const Window w = window(g, i, j);
    T m = -INFINITY;
    int64_t a = (w.h0 < w.h1 && w.w0 < w.w1) ? w.h0 * g.W + w.w0 : -1;
    for (int64_t h = w.h0; h < w.h1; ++h)
      for (int64_t v = w.w0; v < w.w1; ++v) {
        const T val = xp[h * g.W + v];
        const bool take = (val > m) | (val != val);  // as core/pool.cpp
        m = take ? val : m;
        a = take ? h * g.W + v : a;
      }
    y[o] = m;
    argmax[o] = static_cast<int32_t>(a);
  }
}

template <class T>
__global__ void maxpool_backward_kernel(T* dx, const T* dy, const int32_t* argmax, int64_t total,
                                        PoolShape g, int64_t OH, int64_t OW) {
  GS_GRID_STRIDE(e, total) {
    const int64_t in = g.H * g.W, pl = e / in, p = e % in, h = p / g.W, v = p % g.W;
    int64_t i0, i1, j0, j1;
    covering(h, g.SH, g.KH, g.PT, OH, i0, i1);
    covering(v, g.SW, g.KW, g.PL, OW, j0, j1);
    const T* dyp = dy + pl * OH * OW;
    const int32_t* ap = argmax + pl * OH * OW;
    T acc = T(0);
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = j0; j < j1; ++j)
        if (ap[i * OW + j] == p) acc += dyp[i * OW + j];
    dx[e] = acc;
  }
}

template <class T>
__global__ void avgpool_forward_kernel(T* y, const T* x, int64_t total, PoolShape g, int64_t OH,
                                       int64_t OW, double inv) {
  GS_GRID_STRIDE(o, total) {
    const int64_t pl = o / (OH * OW), r = o % (OH * OW), i = r / OW, j = r % OW;
    const T* xp = x + pl * g.H * g.W;
    const Window w = window(g, i, j);
    double s = 0.0;
    for (int64_t h = w.h0; h < w.h1; ++h)
      for (int64_t v = w.w0; v < w.w1; ++v) s += xp[h * g.W + v];
    y[o] = static_cast<T>(s * inv);
  }
}

template <class T>
__global__ void avgpool_backward_kernel(T* dx, const T* dy, int64_t total, PoolShape g, int64_t OH,
                                        int64_t OW, T inv) {
  GS_GRID_STRIDE(e, total) {
    const int64_t in = g.H * g.W, pl = e / in, p = e % in, h = p / g.W, v = p % g.W;
    int64_t i0, i1, j0, j1;
    covering(h, g.SH, g.KH, g.PT, OH, i0, i1);
    covering(v, g.SW, g.KW, g.PL, OW, j0, j1);
    const T* dyp = dy + pl * OH * OW;
    T acc = T(0);
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = j0; j < j1; ++j) acc += dyp[i * OW + j] * inv;
    dx[e] = acc;
  }
}

template <class T>
__global__ void global_avgpool_forward_kernel(T* y, const T* x, int64_t planes, int64_t S,
                                              double inv) {
  GS_GRID_STRIDE(pl, planes) {
    const T* xp = x + pl * S;
    double s = 0.0;
    for (int64_t k = 0; k < S; ++k) s += xp[k];
    y[pl] = static_cast<T>(s * inv);
  }
}

template <class T>
__global__ void global_avgpool_backward_kernel(T* dx, const T* dy, int64_t total, int64_t S,
                                               double inv) {
  GS_GRID_STRIDE(e, total) { dx[e] = static_cast<T>(dy[e / S] * inv); }
}

}  // namespace

template <class T>
void maxpool_forward(cudaStream_t s, T* y, int32_t* argmax, const T* x, int64_t N, const PoolShape& g) {
  const int64_t OH = g.OH(), OW = g.OW(), total = N * g.C * OH * OW;
  if (total == 0) return;
  maxpool_forward_kernel<<<grid_for(total), kBlock, 0, s>>>(y, argmax, x, total, g, OH, OW);
  check_launch("maxpool_forward");
}

template <class T>
void maxpool_backward(cudaStream_t s, T* dx, const T* dy, const int32_t* argmax, int64_t N,
                      const PoolShape& g) {
  const int64_t total = N * g.C * g.H * g.W;
  if (total == 0) return;
  maxpool_backward_kernel<<<grid_for(total), kBlock, 0, s>>>(dx, dy, argmax, total, g, g.OH(), g.OW());
  check_launch("maxpool_backward");
}

template <class T>
void avgpool_forward(cudaStream_t s, T* y, const T* x, int64_t N, const PoolShape& g) {
  const int64_t OH = g.OH(), OW = g.OW(), total = N * g.C * OH * OW;
  if (total == 0) return;
  const double inv = 1.0 / static_cast<double>(g.KH * g.KW);
  avgpool_forward_kernel<<<grid_for(total), kBlock, 0, s>>>(y, x, total, g, OH, OW, inv);
  check_launch("avgpool_forward");
}

template <class T>
void avgpool_backward(cudaStream_t s, T* dx, const T* dy, int64_t N, const PoolShape& g) {
  const int64_t total = N * g.C * g.H * g.W;
  if (total == 0) return;
  const T inv = static_cast<T>(1.0 / static_cast<double>(g.KH * g.KW));
  avgpool_backward_kernel<<<grid_for(total), kBlock, 0, s>>>(dx, dy, total, g, g.OH(), g.OW(), inv);
  check_launch("avgpool_backward");
}

template <class T>
void global_avgpool_forward(cudaStream_t s, T* y, const T* x, int64_t N, int64_t C, int64_t S) {
  if (N * C == 0 || S <= 0) return;
  global_avgpool_forward_kernel<<<grid_for(N * C), kBlock, 0, s>>>(y, x, N * C, S, 1.0 / static_cast<double>(S));
  check_launch("global_avgpool_forward");
}

template <class T>
void global_avgpool_backward(cudaStream_t s, T* dx, const T* dy, int64_t N, int64_t C, int64_t S) {
  if (N * C * S <= 0) return;
  global_avgpool_backward_kernel<<<grid_for(N * C * S), kBlock, 0, s>>>(dx, dy, N * C * S, S,
                                                                        1.0 / static_cast<double>(S));
  check_launch("global_avgpool_backward");
}

#define GS_INSTANTIATE(T)                                                                              \
  template void maxpool_forward<T>(cudaStream_t, T*, int32_t*, const T*, int64_t, const PoolShape&);   \
  template void maxpool_backward<T>(cudaStream_t, T*, const T*, const int32_t*, int64_t, const PoolShape&); \
  template void avgpool_forward<T>(cudaStream_t, T*, const T*, int64_t, const PoolShape&);             \
  template void avgpool_backward<T>(cudaStream_t, T*, const T*, int64_t, const PoolShape&);            \
  template void global_avgpool_forward<T>(cudaStream_t, T*, const T*, int64_t, int64_t, int64_t);      \
  template void global_avgpool_backward<T>(cudaStream_t, T*, const T*, int64_t, int64_t, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cuda
