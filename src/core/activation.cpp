#include "core/activation.hpp"

#include <algorithm>
#include <cmath>

#include "core/common.hpp"
#include "core/op.hpp"

// The inner loops are compiled twice, for baseline x86-64 (SSE2) and for AVX2, and the loader
// picks one per machine (GCC/Clang function multiversioning through an ifunc): twice the vector
// width for the float32 math, in portable wheels without -march=native. AVX2 alone, not FMA, and
// no -ffp-contract: both versions do the same IEEE operations lane by lane, so they give
// bit-identical results. Elsewhere the macro is empty and the baseline loops run.
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define GS_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef GS_CLONES
#define GS_CLONES
#endif

namespace gradstep::cpu {

namespace {

using math::select;
// The per-element math (float through vmath, double through std::) is shared with the CUDA
// kernels: core/math/activation_math.hpp.
using math::exp_t;
using math::expm1_t;

// ---- multiversioned loops (op is a small lambda, inlined into each version) ------------------
template <class T, class Op>
GS_CLONES void map1(T* y, const T* a, int64_t n, Op op) {
  for (int64_t i = 0; i < n; ++i) y[i] = op(a[i]);
}

template <class T, class Op>
GS_CLONES void map2(T* y, const T* a, const T* b, int64_t n, Op op) {
  for (int64_t i = 0; i < n; ++i) y[i] = op(a[i], b[i]);
}

template <class T, class Op>
GS_CLONES void map3(T* y, const T* a, const T* b, const T* c, int64_t n, Op op) {
  for (int64_t i = 0; i < n; ++i) y[i] = op(a[i], b[i], c[i]);
}

// Σ v(i) for i in [i0, i1) in double, over 8 interleaved partial sums combined in a fixed order:
// the result depends on the data only, and the unrolled lanes vectorize (a single running sum
// would not, since gcc must keep its order).
template <class V>
inline double lane_sum(int64_t i0, int64_t i1, V v) {
  constexpr int kLanes = 8;
  double acc[kLanes] = {};
  int64_t i = i0;
  for (; i + kLanes <= i1; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += v(i + j);
  double tail = 0.0;
  for (; i < i1; ++i) tail += v(i);
  return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) +
         tail;
}

// max of a row, in 8 lanes for the same reason. A NaN is skipped here, but it still makes the
// whole row NaN through its own exp (as in PyTorch).
template <class T>
inline T row_max(const T* x, int64_t K) {
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

// Softmax over R rows of K, one row at a time.
template <class T>
GS_CLONES void softmax_rows(T* y, const T* x, int64_t R, int64_t K) {
  for (int64_t r = 0; r < R; ++r, x += K, y += K) {
    const T m = row_max(x, K);
    for (int64_t k = 0; k < K; ++k) y[k] = exp_t(x[k] - m);
    const T s =
        static_cast<T>(lane_sum(0, K, [=](int64_t k) { return static_cast<double>(y[k]); }));
    for (int64_t k = 0; k < K; ++k) y[k] = y[k] / s;
  }
}

template <class T>
GS_CLONES void softmax_backward_rows(T* dx, const T* dy, const T* y, int64_t R, int64_t K) {
  for (int64_t r = 0; r < R; ++r, dx += K, dy += K, y += K) {
    const T dot = static_cast<T>(lane_sum(0, K, [=](int64_t k) {
      return static_cast<double>(dy[k]) * static_cast<double>(y[k]);
    }));
    for (int64_t k = 0; k < K; ++k) dx[k] = y[k] * (dy[k] - dot);
  }
}

// y[r, f] = op(a[r, f], b[f]) over R rows of F: a row-broadcast second operand (PReLU's slopes).
template <class T, class Op>
GS_CLONES void map2_rows(T* y, const T* a, const T* b, int64_t R, int64_t F, Op op) {
  for (int64_t r = 0; r < R; ++r, y += F, a += F)
    for (int64_t f = 0; f < F; ++f) y[f] = op(a[f], b[f]);
}

template <class T, class Op>
GS_CLONES void map3_rows(T* y, const T* a, const T* b, const T* c, int64_t R, int64_t F, Op op) {
  for (int64_t r = 0; r < R; ++r, y += F, a += F, b += F)
    for (int64_t f = 0; f < F; ++f) y[f] = op(a[f], b[f], c[f]);
}

// acc[j] += x·dy where x <= 0 (NaN x included, as PyTorch), over N rows of w columns with row
// stride F, rows in order. In double: the product of two floats is exact.
template <class T>
GS_CLONES void prelu_dalpha_columns(double* acc, const T* x, const T* dy, int64_t N, int64_t F,
                                    int64_t w) {
  for (int64_t j = 0; j < w; ++j) acc[j] = 0.0;
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * F;
    const T* dyr = dy + r * F;
    for (int64_t j = 0; j < w; ++j)
      acc[j] += select(xr[j] > T(0), 0.0, static_cast<double>(xr[j]) * static_cast<double>(dyr[j]));
  }
}

template <class T>
GS_CLONES double prelu_dalpha_sum(const T* x, const T* dy, int64_t n) {
  return lane_sum(0, n, [=](int64_t i) {
    return select(x[i] > T(0), 0.0, static_cast<double>(x[i]) * static_cast<double>(dy[i]));
  });
}

// Runs f(i0, i1) over fixed blocks of [0, n), in parallel when n is large. The blocks are
// disjoint, so results do not depend on the thread count.
template <class F>
void for_blocks(int64_t n, F f, int64_t cost = 1) {
  // `cost` weighs an element against a plain memory pass when deciding on threads (an exp costs
  // about 8); blocks are fixed, and elements independent, so threads never change the results.
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(blocks, n * cost >= kParallelMin, [&](int64_t b) { f(b * kBlock, std::min(n, (b + 1) * kBlock)); });
}

// Runs f(r0, r1) over blocks of about kBlock elements' worth of whole rows (N rows of K), in
// parallel when N·K is large. Rows are independent, so results do not depend on the thread count.
template <class F>
void for_row_blocks(int64_t N, int64_t K, F f) {
  if (N <= 0 || K <= 0) return;  // nothing to compute (and no loop over empty rows)
  constexpr int64_t kBlock = 4096;
  const int64_t rows = std::max<int64_t>(1, kBlock / std::max<int64_t>(K, 1));
  const int64_t blocks = (N + rows - 1) / rows;
  parallel_for(blocks, N * K >= kParallelMin, [&](int64_t b) { f(b * rows, std::min(N, (b + 1) * rows)); });
}

// y = op(a) elementwise, in parallel blocks.
template <class T, class Op>
void parallel_map1(T* y, const T* a, int64_t n, Op op, int64_t cost = 1) {
  for_blocks(n, [=](int64_t i0, int64_t i1) { map1(y + i0, a + i0, i1 - i0, op); }, cost);
}

constexpr int64_t kExpCost = 8;  // sigmoid, tanh, ELU: an exp (and a division) per element

template <class T, class Op>
void parallel_map2(T* y, const T* a, const T* b, int64_t n, Op op) {
  for_blocks(n, [=](int64_t i0, int64_t i1) { map2(y + i0, a + i0, b + i0, i1 - i0, op); });
}

template <class T, class Op>
void parallel_map3(T* y, const T* a, const T* b, const T* c, int64_t n, Op op) {
  for_blocks(n, [=](int64_t i0, int64_t i1) {
    map3(y + i0, a + i0, b + i0, c + i0, i1 - i0, op);
  });
}

}  // namespace

// ---- sigmoid ------------------------------------------------------------------------------------
template <class T>
void sigmoid_forward(T* y, const T* x, int64_t n) {
  parallel_map1(y, x, n, [](T v) { return math::sigmoid_t(v); }, kExpCost);
}

template <class T>
void sigmoid_backward(T* dx, const T* dy, const T* y, int64_t n) {
  parallel_map2(dx, dy, y, n, [](T g, T s) { return math::sigmoid_grad(g, s); });
}

// ---- tanh ---------------------------------------------------------------------------------------
template <class T>
void tanh_forward(T* y, const T* x, int64_t n) {
  parallel_map1(y, x, n, [](T v) { return math::tanh_t(v); }, kExpCost);
}

template <class T>
void tanh_backward(T* dx, const T* dy, const T* y, int64_t n) {
  parallel_map2(dx, dy, y, n, [](T g, T t) { return math::tanh_grad(g, t); });
}

// ---- relu ---------------------------------------------------------------------------------------
template <class T>
void relu_forward(T* y, const T* x, int64_t n) {
  parallel_map1(y, x, n, [](T v) { return math::relu(v); });
}

template <class T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n) {
  parallel_map2(dx, dy, y, n, [](T g, T v) { return math::relu_grad(g, v); });
}

// ---- leaky relu ---------------------------------------------------------------------------------
template <class T>
void leaky_relu_forward(T* y, const T* x, int64_t n, T alpha) {
  parallel_map1(y, x, n, [alpha](T v) { return math::leaky_relu(v, alpha); });
}

template <class T>
void leaky_relu_backward(T* dx, const T* dy, const T* x, int64_t n, T alpha) {
  parallel_map2(dx, dy, x, n, [alpha](T g, T v) { return math::leaky_relu_grad(g, v, alpha); });
}

// ---- elu ----------------------------------------------------------------------------------------
template <class T>
void elu_forward(T* y, const T* x, int64_t n, T alpha) {
  parallel_map1(y, x, n, [alpha](T v) { return math::elu(v, alpha); }, kExpCost);
}

template <class T>
void elu_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, T alpha) {
  parallel_map3(dx, dy, x, y, n, [alpha](T g, T v, T out) {
    return math::elu_grad(g, v, out, alpha);
  });
}

// ---- prelu --------------------------------------------------------------------------------------
template <class T>
void prelu_forward(T* y, const T* x, const T* alpha, int64_t N, int64_t F, int64_t C) {
  if (C == 1) {
    leaky_relu_forward<T>(y, x, N * F, alpha[0]);
    return;
  }
  // One slope per feature: the slopes are a second input row, the same for every row of x.
  for_row_blocks(N, F, [=](int64_t r0, int64_t r1) {
    map2_rows(y + r0 * F, x + r0 * F, alpha, r1 - r0, F,
              [](T v, T a) { return select(v > T(0), v, v * a); });
  });
}

template <class T>
void prelu_backward(T* dx, T* dalpha, const T* dy, const T* x, const T* alpha, int64_t N,
                    int64_t F, int64_t C) {
  const int64_t n = N * F;
  if (C == 1) {
    leaky_relu_backward<T>(dx, dy, x, n, alpha[0]);
    // One slope: the flat range is cut into kParts parts whose bounds depend on n only; each
    // part's sum is a fixed-order lane_sum and the parts are added serially, so the result is the
    // same for any thread count.
    constexpr int64_t kParts = 64;
    double part[kParts];
    parallel_for(kParts, n >= kParallelMin, [&](int64_t p) {
      const int64_t i0 = n * p / kParts, i1 = n * (p + 1) / kParts;
      part[p] = prelu_dalpha_sum(x + i0, dy + i0, i1 - i0);
    });
    double s = 0.0;
    for (int64_t p = 0; p < kParts; ++p) s += part[p];
    dalpha[0] = static_cast<T>(s);
    return;
  }
  for_row_blocks(N, F, [=](int64_t r0, int64_t r1) {
    map3_rows(dx + r0 * F, dy + r0 * F, x + r0 * F, alpha, r1 - r0, F,
              [](T g, T v, T a) { return select(v > T(0), g, g * a); });
  });
  // One slope per feature: blocks of columns in parallel, each column summed over the rows in
  // row order (as dense's column_sum), with the running sums in a block of doubles on the stack.
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (F + kBlock - 1) / kBlock;
  parallel_for(blocks, n >= kParallelMin && blocks > 1, [&](int64_t b) {
    const int64_t f0 = b * kBlock, w = std::min(F, f0 + kBlock) - f0;
    double acc[kBlock];
    prelu_dalpha_columns(acc, x + f0, dy + f0, N, F, w);
    for (int64_t j = 0; j < w; ++j) dalpha[f0 + j] = static_cast<T>(acc[j]);
  });
}

// ---- softmax ------------------------------------------------------------------------------------
template <class T>
void softmax_forward(T* y, const T* x, int64_t N, int64_t K) {
  for_row_blocks(N, K, [=](int64_t r0, int64_t r1) {
    softmax_rows(y + r0 * K, x + r0 * K, r1 - r0, K);
  });
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
  for_row_blocks(N, K, [=](int64_t r0, int64_t r1) {
    softmax_backward_rows(dx + r0 * K, dy + r0 * K, y + r0 * K, r1 - r0, K);
  });
}

// ---- exp, expm1 ---------------------------------------------------------------------------------
template <class T>
void vexp(T* y, const T* x, int64_t n) {
  parallel_map1(y, x, n, [](T v) { return exp_t(v); });
}

template <class T>
void vexpm1(T* y, const T* x, int64_t n) {
  parallel_map1(y, x, n, [](T v) { return expm1_t(v); });
}

#define GS_INSTANTIATE(T)                                                                      \
  template void sigmoid_forward<T>(T*, const T*, int64_t);                                     \
  template void sigmoid_backward<T>(T*, const T*, const T*, int64_t);                          \
  template void tanh_forward<T>(T*, const T*, int64_t);                                        \
  template void tanh_backward<T>(T*, const T*, const T*, int64_t);                             \
  template void relu_forward<T>(T*, const T*, int64_t);                                        \
  template void relu_backward<T>(T*, const T*, const T*, int64_t);                             \
  template void leaky_relu_forward<T>(T*, const T*, int64_t, T);                               \
  template void leaky_relu_backward<T>(T*, const T*, const T*, int64_t, T);                    \
  template void elu_forward<T>(T*, const T*, int64_t, T);                                      \
  template void elu_backward<T>(T*, const T*, const T*, const T*, int64_t, T);                 \
  template void prelu_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);           \
  template void prelu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t,      \
                                  int64_t);                                                    \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t);                            \
  template void softmax_forward_ref<T>(T*, const T*, int64_t, int64_t);                        \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                 \
  template void vexp<T>(T*, const T*, int64_t);                                                \
  template void vexpm1<T>(T*, const T*, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

// ---- the activation ops ------------------------------------------------------------------------
// The elementwise ones take any per-sample shape and keep it; PReLU and Softmax take (F).
// A null dx (the network's first op) skips the input gradient, except for PReLU, whose slope
// gradient comes out of the same pass (it then writes dx into its workspace).
namespace {

template <class T>
class ElementwiseOp : public Op<T> {
 public:
  explicit ElementwiseOp(const Shape& in) {
    this->in_ = in;
    this->out_ = in;
  }
  // Each element from its own input: any block of rows gives the same bits.
  bool rows_exact(int64_t, int64_t) const override { return true; }

 protected:
  int64_t n(const OpArgs<T>& a) const { return a.N * this->in_.size(); }
};

template <class T>
class SigmoidOp : public ElementwiseOp<T> {
 public:
  SigmoidOp(const OpAttrs&, const Shape& in) : ElementwiseOp<T>(in) {}
  void forward(const OpArgs<T>& a, T* y, const T* x) override { sigmoid_forward<T>(y, x, this->n(a)); }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T* y) override {
    if (dx) sigmoid_backward<T>(dx, dy, y, this->n(a));
  }
};

template <class T>
class TanhOp : public ElementwiseOp<T> {
 public:
  TanhOp(const OpAttrs&, const Shape& in) : ElementwiseOp<T>(in) {}
  void forward(const OpArgs<T>& a, T* y, const T* x) override { tanh_forward<T>(y, x, this->n(a)); }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T* y) override {
    if (dx) tanh_backward<T>(dx, dy, y, this->n(a));
  }
};

template <class T>
class ReLUOp : public ElementwiseOp<T> {
 public:
  ReLUOp(const OpAttrs&, const Shape& in) : ElementwiseOp<T>(in) {}
  void forward(const OpArgs<T>& a, T* y, const T* x) override { relu_forward<T>(y, x, this->n(a)); }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T* y) override {
    if (dx) relu_backward<T>(dx, dy, y, this->n(a));
  }
};

template <class T>
class IdentityOp : public ElementwiseOp<T> {
 public:
  IdentityOp(const OpAttrs&, const Shape& in) : ElementwiseOp<T>(in) {}
  void forward(const OpArgs<T>& a, T* y, const T* x) override { std::copy(x, x + this->n(a), y); }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T*) override {
    if (dx) std::copy(dy, dy + this->n(a), dx);
  }
};

template <class T>
class LeakyReLUOp : public ElementwiseOp<T> {
 public:
  LeakyReLUOp(const OpAttrs& a, const Shape& in) : ElementwiseOp<T>(in), alpha_(a.real("alpha")) {}
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    leaky_relu_forward<T>(y, x, this->n(a), static_cast<T>(alpha_));
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T* x, const T*) override {
    if (dx) leaky_relu_backward<T>(dx, dy, x, this->n(a), static_cast<T>(alpha_));
  }

 private:
  double alpha_;
};

template <class T>
class ELUOp : public ElementwiseOp<T> {
 public:
  ELUOp(const OpAttrs& a, const Shape& in) : ElementwiseOp<T>(in), alpha_(a.real("alpha")) {
    if (alpha_ < 0) throw std::invalid_argument("ELU: alpha must be >= 0");
  }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    elu_forward<T>(y, x, this->n(a), static_cast<T>(alpha_));
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T* x, const T* y) override {
    if (dx) elu_backward<T>(dx, dy, x, y, this->n(a), static_cast<T>(alpha_));
  }

 private:
  double alpha_;
};

template <class T>
class PReLUOp : public Op<T> {
 public:
  PReLUOp(const OpAttrs& a, const Shape& in) {
    C_ = a.integer("num_parameters", 1);
    require_rank("PReLU", in, 1, "(features,)");
    if (C_ > 1 && in.dims[0] != C_)
      throw std::invalid_argument("PReLU: expects " + std::to_string(C_) +
                                  " input features (one slope each), got " +
                                  std::to_string(in.dims[0]));
    this->in_ = in;
    this->out_ = in;
    this->params_.push_back({"alpha", {C_}});
  }
  int64_t workspace(int64_t N) const override { return N * this->in_.dims[0]; }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    prelu_forward<T>(y, x, a.w[0], a.N, this->in_.dims[0], C_);
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T* x, const T*) override {
    prelu_backward<T>(dx ? dx : a.ws, a.dw[0], dy, x, a.w[0], a.N, this->in_.dims[0], C_);
  }

 private:
  int64_t C_;
};

template <class T>
class SoftmaxOp : public Op<T> {
 public:
  SoftmaxOp(const OpAttrs&, const Shape& in) {
    require_rank("Softmax", in, 1, "(features,)");
    this->in_ = in;
    this->out_ = in;
  }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    softmax_forward<T>(y, x, a.N, this->in_.dims[0]);
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T* y) override {
    if (dx) softmax_backward<T>(dx, dy, y, a.N, this->in_.dims[0]);
  }
};

}  // namespace

GS_REGISTER_OP("Sigmoid", SigmoidOp);
GS_REGISTER_OP("Tanh", TanhOp);
GS_REGISTER_OP("ReLU", ReLUOp);
GS_REGISTER_OP("Identity", IdentityOp);
GS_REGISTER_OP("LeakyReLU", LeakyReLUOp);
GS_REGISTER_OP("ELU", ELUOp);
GS_REGISTER_OP("PReLU", PReLUOp);
GS_REGISTER_OP("Softmax", SoftmaxOp);

}  // namespace gradstep::cpu
