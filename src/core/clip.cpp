#include "core/clip.hpp"

#include <algorithm>
#include <cmath>

#include "core/common.hpp"

namespace gradstep::cpu {
namespace {

constexpr int64_t kMaxChunks = 256;   // partial sums on the stack: never allocates
constexpr int64_t kChunkElems = 4096;  // smallest chunk worth a thread
constexpr int kLanes = 8;              // interleaved accumulators: a fixed order gcc can vectorize

// Σ over [i0, i1) of double(g)², kLanes running sums added at the end (a fixed order).
template <class T>
double lane_sq_sum(const T* g, int64_t i0, int64_t i1) {
  double acc[kLanes] = {};
  int64_t i = i0;
  for (; i + kLanes <= i1; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double v = static_cast<double>(g[i + j]);
      acc[j] += v * v;
    }
  for (int j = 0; i < i1; ++i, ++j) {
    const double v = static_cast<double>(g[i]);
    acc[j] += v * v;
  }
  double s = 0.0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

}  // namespace

template <class T>
double grad_sq_sum(const T* g, int64_t P) {
  if (P <= 0) return 0.0;
  // Chunk bounds from P alone, chunk sums added in chunk order: thread-count independent (no
  // reduction(+:)).
  const int64_t want = std::min(kMaxChunks, (P + kChunkElems - 1) / kChunkElems);
  const int64_t len = (P + want - 1) / want;
  const int64_t chunks = (P + len - 1) / len;
  double part[kMaxChunks];
  parallel_for(chunks, P >= kParallelMin, [&](int64_t c) { part[c] = lane_sq_sum(g, c * len, std::min(P, (c + 1) * len)); });
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += part[c];
  return s;
}

template <class T>
T clip_coef(double sq_sum, double max_norm) {
  const T norm = static_cast<T>(std::sqrt(sq_sum));
  const T denom = norm + static_cast<T>(1e-6);
  const T c = (T(1) / denom) * static_cast<T>(max_norm);
  return c > T(1) ? T(1) : c;  // torch.clamp(max=1): a NaN coefficient stays NaN
}

template <class T>
void scale_grads(T* g, int64_t P, T c) {
  if (c == T(1)) return;
  parallel_for(P, P >= kParallelMin, [&](int64_t i) { g[i] *= c; });
}

template <class T>
void clip_grad_value(T* g, int64_t P, double v) {
  const T hi = static_cast<T>(v), lo = -hi;
  parallel_for(P, P >= kParallelMin, [&](int64_t i) {
    const T x = g[i];
    g[i] = x < lo ? lo : (x > hi ? hi : x);
  });
}

template <class T>
double clip_grad_norm(T* g, int64_t P, double max_norm) {
  const double s = grad_sq_sum<T>(g, P);
  scale_grads<T>(g, P, clip_coef<T>(s, max_norm));
  return std::sqrt(s);
}

template <class T>
void clip_grads(T* g, int64_t P, const ClipArgs& c) {
  if (c.clipvalue > 0) clip_grad_value<T>(g, P, c.clipvalue);
  if (c.clipnorm > 0) clip_grad_norm<T>(g, P, c.clipnorm);
}

#define GS_INSTANTIATE(T)                                        \
  template double grad_sq_sum<T>(const T*, int64_t);             \
  template T clip_coef<T>(double, double);                       \
  template void scale_grads<T>(T*, int64_t, T);                  \
  template void clip_grad_value<T>(T*, int64_t, double);         \
  template double clip_grad_norm<T>(T*, int64_t, double);        \
  template void clip_grads<T>(T*, int64_t, const ClipArgs&);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cpu
