#include "core/pool.hpp"

#include <algorithm>
#include <cmath>

#include "core/common.hpp"

namespace gradstep::cpu {
namespace {

// The window of output (i, j) clipped to the image: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
};

inline Window window(const PoolGeometry& g, int64_t i, int64_t j) {
  const int64_t hs = i * g.SH - g.PT, ws = j * g.SW - g.PL;
  return {std::max<int64_t>(hs, 0), std::min(hs + g.KH, g.H), std::max<int64_t>(ws, 0),
          std::min(ws + g.KW, g.W)};
}

// body(plane) for the N·C planes, split across threads when the work is large enough.
template <class Body>
void for_planes(int64_t planes, int64_t work, Body&& body) {
  (void)work;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (work >= kParallelMin)
#endif
  for (int64_t pl = 0; pl < planes; ++pl) body(pl);
}

}  // namespace

template <class T>
void maxpool_forward(T* y, int32_t* argmax, const T* x, int64_t N, const PoolGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW(), in = g.H * g.W, out = OH * OW;
  for_planes(N * g.C, N * g.C * out * g.KH * g.KW, [&](int64_t pl) {
    const T* xp = x + pl * in;
    T* yp = y + pl * out;
    int32_t* ap = argmax + pl * out;
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        const Window w = window(g, i, j);
        T m = -INFINITY;
        // PyTorch starts from the window's first position, so an all -inf window still has one.
        int64_t a = (w.h0 < w.h1 && w.w0 < w.w1) ? w.h0 * g.W + w.w0 : -1;
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t v = w.w0; v < w.w1; ++v) {
            const T val = xp[h * g.W + v];
            if (val > m || std::isnan(val)) {  // strict: ties keep the first; NaN propagates
              m = val;
              a = h * g.W + v;
            }
          }
        yp[i * OW + j] = m;
        ap[i * OW + j] = static_cast<int32_t>(a);
      }
  });
}

template <class T>
void maxpool_backward(T* dx, const T* dy, const int32_t* argmax, int64_t N, const PoolGeometry& g) {
  const int64_t in = g.H * g.W, out = g.OH() * g.OW();
  for_planes(N * g.C, N * g.C * (in + out), [&](int64_t pl) {
    T* dxp = dx + pl * in;
    const T* dyp = dy + pl * out;
    const int32_t* ap = argmax + pl * out;
    std::fill(dxp, dxp + in, T(0));
    for (int64_t k = 0; k < out; ++k)
      if (ap[k] >= 0 && ap[k] < in) dxp[ap[k]] += dyp[k];
  });
}

template <class T>
void avgpool_forward(T* y, const T* x, int64_t N, const PoolGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW(), in = g.H * g.W, out = OH * OW;
  const double inv = 1.0 / static_cast<double>(g.KH * g.KW);
  for_planes(N * g.C, N * g.C * out * g.KH * g.KW, [&](int64_t pl) {
    const T* xp = x + pl * in;
    T* yp = y + pl * out;
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        const Window w = window(g, i, j);
        double s = 0.0;
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t v = w.w0; v < w.w1; ++v) s += xp[h * g.W + v];
        yp[i * OW + j] = static_cast<T>(s * inv);
      }
  });
}

template <class T>
void avgpool_backward(T* dx, const T* dy, int64_t N, const PoolGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW(), in = g.H * g.W, out = OH * OW;
  const T inv = static_cast<T>(1.0 / static_cast<double>(g.KH * g.KW));
  for_planes(N * g.C, N * g.C * out * g.KH * g.KW, [&](int64_t pl) {
    T* dxp = dx + pl * in;
    const T* dyp = dy + pl * out;
    std::fill(dxp, dxp + in, T(0));
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        const Window w = window(g, i, j);
        const T d = dyp[i * OW + j] * inv;
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t v = w.w0; v < w.w1; ++v) dxp[h * g.W + v] += d;
      }
  });
}

template <class T>
void global_avgpool_forward(T* y, const T* x, int64_t N, int64_t C, int64_t S) {
  const double inv = 1.0 / static_cast<double>(S);
  for_planes(N * C, N * C * S, [&](int64_t pl) {
    const T* xp = x + pl * S;
    double s = 0.0;
    for (int64_t k = 0; k < S; ++k) s += xp[k];
    y[pl] = static_cast<T>(s * inv);
  });
}

template <class T>
void global_avgpool_backward(T* dx, const T* dy, int64_t N, int64_t C, int64_t S) {
  const double inv = 1.0 / static_cast<double>(S);
  for_planes(N * C, N * C * S, [&](int64_t pl) {
    const T d = static_cast<T>(dy[pl] * inv);
    std::fill(dx + pl * S, dx + (pl + 1) * S, d);
  });
}

#define GS_INSTANTIATE(T)                                                                      \
  template void maxpool_forward<T>(T*, int32_t*, const T*, int64_t, const PoolGeometry&);      \
  template void maxpool_backward<T>(T*, const T*, const int32_t*, int64_t, const PoolGeometry&); \
  template void avgpool_forward<T>(T*, const T*, int64_t, const PoolGeometry&);                \
  template void avgpool_backward<T>(T*, const T*, int64_t, const PoolGeometry&);               \
  template void global_avgpool_forward<T>(T*, const T*, int64_t, int64_t, int64_t);            \
  template void global_avgpool_backward<T>(T*, const T*, int64_t, int64_t, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cpu
