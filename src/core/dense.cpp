#include "core/dense.hpp"

#include <algorithm>

#include "core/common.hpp"
#include "core/gemm.hpp"
#include "core/gemm_kernels.hpp"
#include "core/op.hpp"

namespace gradstep::cpu {

// Backward products below this many multiply-adds each run one after the other on one thread: on
// gradstep's kernels a 2^18 product takes ~1-2 µs (at 240 GFLOP/s, bench/bench_gemm.cpp), about
// what a parallel region costs
// (50-128-64-10 at batch 32 ran no faster with the pair on a quiet machine, and a retry under
// contention cost more). The same threshold as gemm's blocks.
constexpr int64_t kPairMinMacs = int64_t(1) << 19;

template <class T>
void dense_forward(T* y, const T* x, const T* W, const T* b, int64_t N, int64_t I, int64_t O) {
  // Fill y with the bias rows and let gemm accumulate onto them (beta = 1): one pass less over y,
  // and the same association PyTorch's addmm uses.
  if (b) {
    parallel_for(N, N * O >= kParallelMin, [&](int64_t n) { std::copy(b, b + O, y + n * O); });
  }
  gemm<T>(false, false, N, O, I, T(1), x, I, W, O, b ? T(1) : T(0), y, O);
}

template <class T>
void column_sum(T* out, const T* a, int64_t N, int64_t O) {
  // Parallel over blocks of columns; each column is summed over rows in row order, so the result
  // does not depend on the thread count. The inner loop over columns vectorizes.
  constexpr int64_t kBlock = 64;  // 4 blocks for 256 features, so 2 threads share them
  const int64_t blocks = (O + kBlock - 1) / kBlock;
  parallel_for(blocks, N * O >= kParallelMin && blocks > 1, [&](int64_t blk) {
    const int64_t o0 = blk * kBlock, o1 = std::min(O, o0 + kBlock);
    T* dst = out + o0;
    std::fill(dst, dst + (o1 - o0), T(0));
    for (int64_t n = 0; n < N; ++n) {
      const T* row = a + n * O + o0;
      for (int64_t j = 0; j < o1 - o0; ++j) dst[j] += row[j];
    }
  });
}

template <class T>
void dense_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t N,
                    int64_t I, int64_t O, T l2) {
  if (l2 != T(0)) {
    // Seed dW with l2·W and let the gemm accumulate xᵀ·dy onto it: no second pass over dW.
    const int64_t P = I * O;
    parallel_for(P, P >= kParallelMin, [&](int64_t i) { dW[i] = l2 * W[i]; });
  }
  const T beta_dW = l2 != T(0) ? T(1) : T(0);
  if (dx) {
    // dx = dy·Wᵀ (N,O)·(O,I) and dW = xᵀ·dy (I,N)·(N,O) are independent products of the same
    // size, so where gemm would cut each in at most two, two threads take one each, whole: no
    // operand is packed twice, as it is when one product is split, and there is one parallel
    // region instead of two. Wider products are split over all threads, one after the other.
    // Each product is computed the same way whatever the thread count, so the bits do not depend
    // on it.
    const bool pair = N * I * O >= kPairMinMacs;
    if (gemm_blocks(false, true, N, I, O) > 2 || gemm_blocks(true, false, I, O, N) > 2) {
      gemm<T>(false, true, N, I, O, T(1), dy, O, W, O, T(0), dx, I);
      gemm<T>(true, false, I, O, N, T(1), x, I, dy, O, beta_dW, dW, O);
    } else {
      parallel_for(2, pair, [&](int64_t task) {
        if (task == 0) gemm_whole<T>(false, true, N, I, O, T(1), dy, O, W, O, T(0), dx, I);
        else gemm_whole<T>(true, false, I, O, N, T(1), x, I, dy, O, beta_dW, dW, O);
      });
    }
  } else {
    gemm<T>(true, false, I, O, N, T(1), x, I, dy, O, beta_dW, dW, O);  // (I,N)·(N,O), split
  }
  if (db) column_sum<T>(db, dy, N, O);
}

template <class T>
double sum_squares(const T* a, int64_t n) {
  // Eight interleaved accumulators, added in a fixed order at the end: a vectorizable loop
  // (a single running sum may not be reordered, so it runs one element per add latency) whose
  // result does not depend on anything but n.
  constexpr int kLanes = 8;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double v = static_cast<double>(a[i + j]);
      acc[j] += v * v;
    }
  for (; i < n; ++i) {
    const double v = static_cast<double>(a[i]);
    acc[0] += v * v;
  }
  double s = 0.0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

#define GS_INSTANTIATE(T)                                                                   \
  template void dense_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void dense_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                  int64_t, T);                                                \
  template double sum_squares<T>(const T*, int64_t);                                          \
  template void column_sum<T>(T*, const T*, int64_t, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

// ---- the Dense op: (I) -> (O); slots weight (I,O) and bias (O) when `bias` ----------------------
namespace {

template <class T>
class DenseOp : public Op<T> {
 public:
  DenseOp(const OpAttrs& a, const Shape& in) {
    I_ = a.integer("in_features", 1);
    O_ = a.integer("out_features", 1);
    bias_ = a.flag_or("bias", true);
    l2_ = a.real_or("l2", 0.0);
    if (l2_ < 0) throw std::invalid_argument("Dense: l2 must be >= 0");
    if (in.rank() != 1)
      throw std::invalid_argument("Dense: input must be (features,) per sample, got shape " +
                                  in.str() + " (" + std::to_string(in.size()) +
                                  " values; put a Flatten before the Dense)");
    if (in.dims[0] != I_)
      throw std::invalid_argument("Dense: expects " + std::to_string(I_) +
                                  " input features, got " + std::to_string(in.dims[0]) +
                                  " (Dense(" + std::to_string(in.dims[0]) + ", " +
                                  std::to_string(O_) + ") or Dense(" + std::to_string(O_) +
                                  ") would take them)");
    this->in_ = in;
    this->out_ = Shape{{O_}};
    this->params_.push_back({"weight", {I_, O_}});
    if (bias_) this->params_.push_back({"bias", {O_}});
  }
  double penalty(const OpArgs<T>& a) const override {
    return l2_ != 0.0 ? 0.5 * l2_ * sum_squares<T>(a.w[0], I_ * O_) : 0.0;
  }
  // gradstep's own kernels give every row the same bits in any block; OpenBLAS's do not.
  bool rows_exact(int64_t N, int64_t rows) const override {
    return small_gemm_wins(false, false, N, O_, I_) && small_gemm_wins(false, false, rows, O_, I_);
  }
  int64_t forward_work(int64_t N) const override { return N * I_ * O_; }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    dense_forward<T>(y, x, a.w[0], bias_ ? a.w[1] : nullptr, a.N, I_, O_);
  }
  // A null dx (the network's first op) skips the dx GEMM.
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T* x, const T*) override {
    dense_backward<T>(dx, a.dw[0], bias_ ? a.dw[1] : nullptr, dy, x, a.w[0], a.N, I_, O_,
                      static_cast<T>(l2_));
  }

 private:
  int64_t I_, O_;
  bool bias_;
  double l2_;
};

}  // namespace

GS_REGISTER_OP("Dense", DenseOp);

}  // namespace gradstep::cpu
