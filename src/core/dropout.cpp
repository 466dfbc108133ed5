#include "core/dropout.hpp"

#include <cmath>

#include "core/common.hpp"
#include "core/math/random.hpp"

namespace gradstep::cpu {

template <class T>
void dropout_forward(T* y, T* mask, const T* x, int64_t n, T p, uint64_t seed) {
  const double pd = p;
  // The generator and the keep rule are core/math/random.hpp's, shared with the CUDA kernel.
  const uint64_t threshold = math::dropout_threshold(pd);
  const T scale = static_cast<T>(1.0 / (1.0 - pd));
  GS_PARALLEL_FOR(n)
  for (int64_t i = 0; i < n; ++i) {
    const T m = math::dropout_mask<T>(seed, static_cast<uint64_t>(i), threshold, scale);
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

template <class T>
void dropout_backward(T* dx, const T* dy, const T* mask, int64_t n) {
  GS_PARALLEL_FOR(n)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * mask[i];
}

#define GS_INSTANTIATE(T)                                                          \
  template void dropout_forward<T>(T*, T*, const T*, int64_t, T, uint64_t);        \
  template void dropout_backward<T>(T*, const T*, const T*, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cpu
