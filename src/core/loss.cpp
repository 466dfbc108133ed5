#include "core/loss.hpp"

#include <algorithm>
#include <cmath>

#include "core/common.hpp"
#include "core/math/loss_math.hpp"

namespace gradstep::cpu {
namespace {

constexpr int64_t kMaxChunks = 256;   // partial sums live on the stack: the kernels never allocate
constexpr int64_t kExpCost = 16;       // an exp + log in double, in plain memory passes
constexpr int64_t kChunkElems = 4096;  // a chunk is worth a thread's time from about this size
constexpr int kLanes = 8;
constexpr int64_t kRowBuf = 512;  // softmax rows up to this wide keep their exps on the stack

// Σ over items [0, n) of chunk_sum(i0, i1), the items cut into chunks of at least min_len whose
// bounds depend on n only; the chunk sums are added in chunk order. So the result is the same for
// any thread count, unlike reduction(+:). `work` (elements touched) decides whether threads help.
template <class F>
double chunked_sum(int64_t n, int64_t min_len, int64_t work, const F& chunk_sum) {
  if (n <= 0) return 0.0;
  const int64_t want = std::min(kMaxChunks, (n + min_len - 1) / min_len);
  const int64_t len = (n + want - 1) / want;
  const int64_t chunks = (n + len - 1) / len;
  double part[kMaxChunks];
  parallel_for(chunks, work >= kParallelMin, [&](int64_t c) { part[c] = chunk_sum(c * len, std::min(n, (c + 1) * len)); });
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += part[c];
  return s;
}

// Σ term(i) for i in [i0, i1) in kLanes interleaved accumulators: a fixed order that gcc can
// vectorize without reassociating (it may not reorder a single running sum).
template <class F>
double lane_sum(int64_t i0, int64_t i1, const F& term) {
  double acc[kLanes] = {};
  int64_t i = i0;
  for (; i + kLanes <= i1; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += term(i + j);
  for (int j = 0; i < i1; ++i, ++j) acc[j] += term(i);
  double s = 0.0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// Sum over elements [0, n) of term(i).
template <class F>
double elementwise_sum(int64_t n, const F& term) {
  return chunked_sum(n, kChunkElems, n,
                     [&](int64_t i0, int64_t i1) { return lane_sum(i0, i1, term); });
}

// Sum over rows [0, N) of row_term(r) (each row touches K elements), rows in order. `cost` weighs
// an element against a plain memory pass when deciding on threads (an exp and a log in double cost
// about 16); it never changes the chunks, so never the result.
template <class F>
double row_sum(int64_t N, int64_t K, const F& row_term, int64_t cost = 1) {
  const int64_t min_rows = std::max<int64_t>(1, kChunkElems / std::max<int64_t>(K, 1));
  return chunked_sum(N, min_rows, N * K * cost, [&](int64_t r0, int64_t r1) {
    double s = 0.0;
    for (int64_t r = r0; r < r1; ++r) s += row_term(r);
    return s;
  });
}

// Writes softmax(x) (K) into p (K, must not alias x) and sets m = max x and log_s = log Σ e^(x-m):
// subtracting the max keeps every exp in (0, 1], so logits of any finite size are safe. A NaN
// anywhere makes the sum NaN (max skips it unless first, but its exp does not).
template <class T>
void softmax_row(T* p, const T* x, int64_t K, double& m, double& log_s) {
  T mx = x[0];
  for (int64_t k = 1; k < K; ++k) mx = x[k] > mx ? x[k] : mx;
  m = static_cast<double>(mx);
  double s = 0.0;
  if (K <= kRowBuf) {
    // Keep the exps in double on the stack: one exp per element, and p rounded only once.
    double e[kRowBuf];
    for (int64_t k = 0; k < K; ++k) {
      e[k] = std::exp(static_cast<double>(x[k]) - m);
      s += e[k];
    }
    for (int64_t k = 0; k < K; ++k) p[k] = static_cast<T>(e[k] / s);
  } else {
    // Wide rows: recompute the exp rather than keep it in p (a float copy would round twice).
    for (int64_t k = 0; k < K; ++k) s += std::exp(static_cast<double>(x[k]) - m);
    for (int64_t k = 0; k < K; ++k)
      p[k] = static_cast<T>(std::exp(static_cast<double>(x[k]) - m) / s);
  }
  log_s = std::log(s);
}

// Σ over elements of w[sample]·term(i) (row elements per sample), or of term(i) when w is null:
// the branch is taken once, outside the loop, so the unweighted sum keeps its vectorized loop
// (and its bits: multiplying by 1.0 would be exact too, but costs the vectorization).
template <class F>
double weighted_elementwise_sum(int64_t n, const double* w, int64_t row, const F& term) {
  if (!w) return elementwise_sum(n, term);
  return elementwise_sum(n, [&](int64_t i) { return w[i / row] * term(i); });
}

// dst[i] = T(w[sample]·grad(i)), or T(grad(i)) when w is null (branch outside the loop).
template <class T, class F>
void weighted_elementwise_grad(T* dst, int64_t n, const double* w, int64_t row, const F& grad) {
  if (!w) {
    parallel_for(n, n >= kParallelMin, [&](int64_t i) { dst[i] = static_cast<T>(grad(i)); });
  } else {
    parallel_for(n, n >= kParallelMin, [&](int64_t i) { dst[i] = static_cast<T>(w[i / row] * grad(i)); });
  }
}

// The weight of row r, or 1 (a per-row multiply: exact for 1.0, so no weights = unweighted bits).
inline double row_weight(const double* w, int64_t r) { return w ? w[r] : 1.0; }

}  // namespace

// ---- mse ---------------------------------------------------------------------------------------

template <class T>
double mse_forward(const T* pred, const T* target, int64_t n, const double* w, int64_t row) {
  const double s = weighted_elementwise_sum(n, w, row, [&](int64_t i) {
    return math::mse_term(static_cast<double>(pred[i]), static_cast<double>(target[i]));
  });
  return s / static_cast<double>(n);
}

template <class T>
void mse_backward(T* dpred, const T* pred, const T* target, int64_t n, const double* w,
                  int64_t row) {
  const double scale = 2.0 / static_cast<double>(n);
  weighted_elementwise_grad(dpred, n, w, row, [&](int64_t i) {
    return math::mse_grad(static_cast<double>(pred[i]), static_cast<double>(target[i]), scale);
  });
}

// ---- bce on probabilities ----------------------------------------------------------------------

template <class T>
double bce_forward(const T* prob, const T* target, int64_t n, const double* w, int64_t row) {
  const double s = weighted_elementwise_sum(n, w, row, [&](int64_t i) {
    return math::bce_term(static_cast<double>(prob[i]), static_cast<double>(target[i]));
  });
  return s / static_cast<double>(n);
}

template <class T>
void bce_backward(T* dprob, const T* prob, const T* target, int64_t n, const double* w,
                  int64_t row) {
  // torch's epsilon is a scalar_t, so float32 clamps at float(1e-12).
  const double eps = static_cast<double>(static_cast<T>(1e-12));
  const double nd = static_cast<double>(n);
  weighted_elementwise_grad(dprob, n, w, row, [&](int64_t i) {
    return math::bce_grad(static_cast<double>(prob[i]), static_cast<double>(target[i]), eps, nd);
  });
}

// ---- bce on logits -----------------------------------------------------------------------------

template <class T>
double bce_logits_forward(const T* logits, const T* target, int64_t n, const double* w,
                          int64_t row) {
  const double s = weighted_elementwise_sum(n, w, row, [&](int64_t i) {
    return math::bce_logits_term(static_cast<double>(logits[i]), static_cast<double>(target[i]));
  });
  return s / static_cast<double>(n);
}

template <class T>
void bce_logits_backward(T* dlogits, const T* logits, const T* target, int64_t n,
                         const double* w, int64_t row) {
  const double nd = static_cast<double>(n);
  weighted_elementwise_grad(dlogits, n, w, row, [&](int64_t i) {
    return math::bce_logits_grad(static_cast<double>(logits[i]), static_cast<double>(target[i]), nd);
  });
}

// ---- softmax cross-entropy, integer labels ---------------------------------------------------

template <class T>
double softmax_xent_forward(T* probs, const T* logits, const int64_t* labels, int64_t N,
                            int64_t K, const double* w) {
  const double s = row_sum(N, K, [&](int64_t r) {
    const T* x = logits + r * K;
    double m, log_s;
    softmax_row(probs + r * K, x, K, m, log_s);
    // lse - x_y = log_s - (x_y - m): no term can overflow, whatever the logits' size.
    return row_weight(w, r) * (log_s - (static_cast<double>(x[labels[r]]) - m));
  }, kExpCost);
  return s / static_cast<double>(N);
}

template <class T>
void softmax_xent_backward(T* dlogits, const T* probs, const int64_t* labels, int64_t N,
                           int64_t K, const double* w) {
  const double nd = static_cast<double>(N);
  parallel_for(N, N * K >= kParallelMin, [&](int64_t r) {
    const T* p = probs + r * K;
    T* d = dlogits + r * K;
    const int64_t y = labels[r];
    const double py = p[y];  // read before the row is overwritten (dlogits may alias probs)
    const double wr = row_weight(w, r);
    for (int64_t k = 0; k < K; ++k) d[k] = static_cast<T>(wr * (static_cast<double>(p[k]) / nd));
    d[y] = static_cast<T>(wr * ((py - 1.0) / nd));
  });
}

// ---- softmax cross-entropy, class probabilities ------------------------------------------------

template <class T>
double softmax_xent_soft_forward(T* probs, const T* logits, const T* target, int64_t N, int64_t K,
                                 const double* w) {
  const double s = row_sum(N, K, [&](int64_t r) {
    const T* x = logits + r * K;
    const T* t = target + r * K;
    double m, log_s;
    softmax_row(probs + r * K, x, K, m, log_s);
    double acc = 0.0;
    for (int64_t k = 0; k < K; ++k)
      acc += static_cast<double>(t[k]) * ((static_cast<double>(x[k]) - m) - log_s);
    return row_weight(w, r) * -acc;
  }, kExpCost);
  return s / static_cast<double>(N);
}

template <class T>
void softmax_xent_soft_backward(T* dlogits, const T* probs, const T* target, int64_t N, int64_t K,
                                const double* w) {
  const double nd = static_cast<double>(N);
  parallel_for(N, N * K >= kParallelMin, [&](int64_t r) {
    const T* p = probs + r * K;
    const T* t = target + r * K;
    T* d = dlogits + r * K;
    double tsum = 0.0;
    for (int64_t k = 0; k < K; ++k) tsum += static_cast<double>(t[k]);
    // Elementwise in k, so writing d over p (in place) is safe.
    const double wr = row_weight(w, r);
    for (int64_t k = 0; k < K; ++k)
      d[k] = static_cast<T>(
          wr * ((static_cast<double>(p[k]) * tsum - static_cast<double>(t[k])) / nd));
  });
}

// ---- nll on probabilities ----------------------------------------------------------------------

template <class T>
double nll_forward(const T* prob, const int64_t* labels, int64_t N, int64_t K, const double* w) {
  const double s = row_sum(N, 1, [&](int64_t r) {
    return row_weight(w, r) * math::nll_term(static_cast<double>(prob[r * K + labels[r]]));
  });
  return -s / static_cast<double>(N);
}

template <class T>
void nll_backward(T* dprob, const T* prob, const int64_t* labels, int64_t N, int64_t K,
                  const double* w) {
  const double nd = static_cast<double>(N);
  parallel_for(N, N * K >= kParallelMin, [&](int64_t r) {
    T* d = dprob + r * K;
    std::fill(d, d + K, T(0));
    d[labels[r]] = static_cast<T>(
        row_weight(w, r) * math::nll_grad(static_cast<double>(prob[r * K + labels[r]]), nd));
  });
}

#define GS_INSTANTIATE(T)                                                                       \
  template double mse_forward<T>(const T*, const T*, int64_t, const double*, int64_t);          \
  template void mse_backward<T>(T*, const T*, const T*, int64_t, const double*, int64_t);       \
  template double bce_forward<T>(const T*, const T*, int64_t, const double*, int64_t);          \
  template void bce_backward<T>(T*, const T*, const T*, int64_t, const double*, int64_t);       \
  template double bce_logits_forward<T>(const T*, const T*, int64_t, const double*, int64_t);   \
  template void bce_logits_backward<T>(T*, const T*, const T*, int64_t, const double*, int64_t);\
  template double softmax_xent_forward<T>(T*, const T*, const int64_t*, int64_t, int64_t,       \
                                          const double*);                                       \
  template void softmax_xent_backward<T>(T*, const T*, const int64_t*, int64_t, int64_t,        \
                                         const double*);                                        \
  template double softmax_xent_soft_forward<T>(T*, const T*, const T*, int64_t, int64_t,        \
                                               const double*);                                  \
  template void softmax_xent_soft_backward<T>(T*, const T*, const T*, int64_t, int64_t,         \
                                              const double*);                                   \
  template double nll_forward<T>(const T*, const int64_t*, int64_t, int64_t, const double*);    \
  template void nll_backward<T>(T*, const T*, const int64_t*, int64_t, int64_t, const double*);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cpu
