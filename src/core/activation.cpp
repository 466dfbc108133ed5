#include "core/activation.hpp"

#include <algorithm>
#include <cmath>

#include "core/common.hpp"

namespace gradstep::cpu {

namespace {

using vmath::select;

// float goes through vmath (vectorizable); double keeps the std:: functions.
inline float exp_t(float x) { return vmath::exp_f(x); }
inline double exp_t(double x) { return std::exp(x); }
inline float expm1_t(float x) { return vmath::expm1_f(x); }
inline double expm1_t(double x) { return std::expm1(x); }
inline float tanh_t(float x) { return vmath::tanh_f(x); }
inline double tanh_t(double x) { return std::tanh(x); }
inline float sigmoid_t(float x) { return vmath::sigmoid_f(x); }
inline double sigmoid_t(double x) {
  const double e = std::exp(x < 0.0 ? x : -x);
  return (x < 0.0 ? e : 1.0) / (1.0 + e);
}

// Runs f(i0, i1) over fixed blocks of [0, n), in parallel when n is large. Each block's inner loop
// is a plain loop gcc vectorizes; blocks are disjoint, so results do not depend on the thread count.
template <class F>
void for_blocks(int64_t n, F&& f) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  GS_PARALLEL_FOR(n)
  for (int64_t b = 0; b < blocks; ++b) f(b * kBlock, std::min(n, (b + 1) * kBlock));
}

// Σ v(i) for i in [i0, i1) in double, over 8 interleaved partial sums combined in a fixed order:
// the result depends on the data only, and the unrolled lanes vectorize (a single running sum
// would not, since gcc must keep its order).
template <class V>
double lane_sum(int64_t i0, int64_t i1, V&& v) {
  constexpr int kLanes = 8;
  double acc[kLanes] = {};
  int64_t i = i0;
  for (; i + kLanes <= i1; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += v(i + j);
  double tail = 0.0;
  for (; i < i1; ++i) tail += v(i);
  return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) + tail;
}

// max over [0, K) of a row, 8 lanes for the same reason. A NaN is skipped here, but it still
// makes the whole row NaN through its own exp (as in PyTorch).
template <class T>
T row_max(const T* x, int64_t K) {
  constexpr int kLanes = 8;
  T m[kLanes];
  for (int j = 0; j < kLanes; ++j) m[j] = -INFINITY;
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes)
    for (int j = 0; j < kLanes; ++j) m[j] = x[k + j] > m[j] ? x[k + j] : m[j];
  T r = -INFINITY;
  for (int j = 0; j < kLanes; ++j) r = m[j] > r ? m[j] : r;
  for (; k < K; ++k) r = x[k] > r ? x[k] : r;
  return r;
}

}  // namespace

// ---- sigmoid ------------------------------------------------------------------------------------
template <class T>
void sigmoid_forward(T* y, const T* x, int64_t n) {
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = sigmoid_t(x[i]);
  });
}

template <class T>
void sigmoid_backward(T* dx, const T* dy, const T* y, int64_t n) {
  // PyTorch's association: (dy·(1−y))·y.
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * (T(1) - y[i]) * y[i];
  });
}

// ---- tanh ---------------------------------------------------------------------------------------
template <class T>
void tanh_forward(T* y, const T* x, int64_t n) {
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = tanh_t(x[i]);
  });
}

template <class T>
void tanh_backward(T* dx, const T* dy, const T* y, int64_t n) {
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
  });
}

// ---- relu ---------------------------------------------------------------------------------------
template <class T>
void relu_forward(T* y, const T* x, int64_t n) {
  // x < 0 ? 0 : x keeps NaN (and −0) as PyTorch's clamp_min does.
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = select(x[i] < T(0), T(0), x[i]);
  });
}

template <class T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n) {
  // PyTorch's threshold_backward: 0 where y <= 0 (so 0 at x = 0), dy elsewhere (NaN y included).
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = select(y[i] <= T(0), T(0), dy[i]);
  });
}

// ---- leaky relu ---------------------------------------------------------------------------------
template <class T>
void leaky_relu_forward(T* y, const T* x, int64_t n, T alpha) {
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = select(x[i] > T(0), x[i], x[i] * alpha);
  });
}

template <class T>
void leaky_relu_backward(T* dx, const T* dy, const T* x, int64_t n, T alpha) {
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = select(x[i] > T(0), dy[i], dy[i] * alpha);
  });
}

// ---- elu ----------------------------------------------------------------------------------------
template <class T>
void elu_forward(T* y, const T* x, int64_t n, T alpha) {
  // expm1 (not exp − 1) keeps the relative accuracy near 0. Its argument is min(x, 0): the other
  // side is discarded, and this keeps it from overflowing. x >= 0 (−0 and NaN too) passes through.
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T v = x[i];
      y[i] = select(v < T(0), expm1_t(select(v < T(0), v, T(0))) * alpha, v);
    }
  });
}

template <class T>
void elu_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, T alpha) {
  // Only x > 0 takes the identity side: the slope at 0 is α (as in PyTorch), and a NaN x gives a
  // NaN gradient (as PyTorch's vectorized path does; its scalar tail passes dy through instead).
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = select(x[i] > T(0), dy[i], dy[i] * (y[i] + alpha));
  });
}

// ---- prelu --------------------------------------------------------------------------------------
template <class T>
void prelu_forward(T* y, const T* x, const T* alpha, int64_t N, int64_t F, int64_t C) {
  if (C == 1) {
    leaky_relu_forward<T>(y, x, N * F, alpha[0]);
    return;
  }
  GS_PARALLEL_FOR(N * F)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * F;
    T* yr = y + r * F;
    for (int64_t f = 0; f < F; ++f) yr[f] = select(xr[f] > T(0), xr[f], xr[f] * alpha[f]);
  }
}

template <class T>
void prelu_backward(T* dx, T* dalpha, const T* dy, const T* x, const T* alpha, int64_t N,
                    int64_t F, int64_t C) {
  const int64_t n = N * F;
  // x·dy where x <= 0 (NaN x included, as PyTorch), in double: the product of two floats is exact.
  auto term = [=](int64_t i) {
    return select(x[i] > T(0), 0.0, static_cast<double>(x[i]) * static_cast<double>(dy[i]));
  };
  if (C == 1) {
    // One slope: the flat range is cut into kParts parts whose bounds depend on n only; each part's
    // sum is a fixed-order lane_sum, and the parts are added serially, so the result is the same
    // for any thread count.
    constexpr int64_t kParts = 64;
    double part[kParts];
    const T a = alpha[0];
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (n >= kParallelMin)
#endif
    for (int64_t p = 0; p < kParts; ++p) {
      const int64_t i0 = n * p / kParts, i1 = n * (p + 1) / kParts;
      for (int64_t i = i0; i < i1; ++i) dx[i] = select(x[i] > T(0), dy[i], dy[i] * a);
      part[p] = lane_sum(i0, i1, term);
    }
    double s = 0.0;
    for (int64_t p = 0; p < kParts; ++p) s += part[p];
    dalpha[0] = static_cast<T>(s);
    return;
  }
  GS_PARALLEL_FOR(n)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * F;
    const T* dyr = dy + r * F;
    T* dxr = dx + r * F;
    for (int64_t f = 0; f < F; ++f) dxr[f] = select(xr[f] > T(0), dyr[f], dyr[f] * alpha[f]);
  }
  // One slope per feature: blocks of columns in parallel, each column summed over the rows in row
  // order (as dense's column_sum), with the running sums in a block of doubles on the stack.
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (F + kBlock - 1) / kBlock;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (n >= kParallelMin && blocks > 1)
#endif
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t f0 = b * kBlock, w = std::min(F, f0 + kBlock) - f0;
    double acc[kBlock];
    for (int64_t j = 0; j < w; ++j) acc[j] = 0.0;
    for (int64_t r = 0; r < N; ++r) {
      const T* xr = x + r * F + f0;
      const T* dyr = dy + r * F + f0;
      for (int64_t j = 0; j < w; ++j)
        acc[j] += select(xr[j] > T(0), 0.0, static_cast<double>(xr[j]) * static_cast<double>(dyr[j]));
    }
    for (int64_t j = 0; j < w; ++j) dalpha[f0 + j] = static_cast<T>(acc[j]);
  }
}

// ---- softmax ------------------------------------------------------------------------------------
template <class T>
void softmax_forward(T* y, const T* x, int64_t N, int64_t K) {
  GS_PARALLEL_FOR(N * K)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * K;
    T* yr = y + r * K;
    const T m = row_max(xr, K);
    for (int64_t k = 0; k < K; ++k) yr[k] = exp_t(xr[k] - m);
    const T s = static_cast<T>(lane_sum(0, K, [=](int64_t k) { return static_cast<double>(yr[k]); }));
    for (int64_t k = 0; k < K; ++k) yr[k] = yr[k] / s;
  }
}

template <class T>
void softmax_forward_ref(T* y, const T* x, int64_t N, int64_t K) {
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * K;
    T* yr = y + r * K;
    T m = -INFINITY;
    for (int64_t k = 0; k < K; ++k) m = std::max(m, xr[k]);
    double s = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      yr[k] = std::exp(xr[k] - m);
      s += yr[k];
    }
    for (int64_t k = 0; k < K; ++k) yr[k] = static_cast<T>(yr[k] / s);
  }
}

template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t N, int64_t K) {
  GS_PARALLEL_FOR(N * K)
  for (int64_t r = 0; r < N; ++r) {
    const T* yr = y + r * K;
    const T* dyr = dy + r * K;
    T* dxr = dx + r * K;
    const T dot = static_cast<T>(lane_sum(0, K, [=](int64_t k) {
      return static_cast<double>(dyr[k]) * static_cast<double>(yr[k]);
    }));
    for (int64_t k = 0; k < K; ++k) dxr[k] = yr[k] * (dyr[k] - dot);
  }
}

// ---- exp, expm1 ---------------------------------------------------------------------------------
template <class T>
void vexp(T* y, const T* x, int64_t n) {
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = exp_t(x[i]);
  });
}

template <class T>
void vexpm1(T* y, const T* x, int64_t n) {
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = expm1_t(x[i]);
  });
}

#define GS_INSTANTIATE(T)                                                                         \
  template void sigmoid_forward<T>(T*, const T*, int64_t);                                        \
  template void sigmoid_backward<T>(T*, const T*, const T*, int64_t);                             \
  template void tanh_forward<T>(T*, const T*, int64_t);                                           \
  template void tanh_backward<T>(T*, const T*, const T*, int64_t);                                \
  template void relu_forward<T>(T*, const T*, int64_t);                                           \
  template void relu_backward<T>(T*, const T*, const T*, int64_t);                                \
  template void leaky_relu_forward<T>(T*, const T*, int64_t, T);                                  \
  template void leaky_relu_backward<T>(T*, const T*, const T*, int64_t, T);                       \
  template void elu_forward<T>(T*, const T*, int64_t, T);                                         \
  template void elu_backward<T>(T*, const T*, const T*, const T*, int64_t, T);                    \
  template void prelu_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);              \
  template void prelu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t);                               \
  template void softmax_forward_ref<T>(T*, const T*, int64_t, int64_t);                           \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                    \
  template void vexp<T>(T*, const T*, int64_t);                                                   \
  template void vexpm1<T>(T*, const T*, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cpu
