#include "core/maxout.hpp"

#include <algorithm>

#include "core/common.hpp"
#include "core/dense.hpp"
#include "core/gemm.hpp"
#include "core/op.hpp"

namespace gradstep::cpu {

template <class T>
void maxout_forward(T* y, int32_t* argmax, T* z, const T* x, const T* W, const T* b, int64_t N,
                    int64_t I, int64_t O, int64_t P) {
  const int64_t NO = N * O;
  // Each piece as dense_forward computes it: bias rows first, then gemm accumulates onto them
  // (beta = 1), the association PyTorch's addmm uses.
  for (int64_t k = 0; k < P; ++k) {
    T* zk = z + k * NO;
    if (b) {
      const T* bk = b + k * O;
      parallel_for(N, NO >= kParallelMin, [&](int64_t n) { std::copy(bk, bk + O, zk + n * O); });
    }
    gemm<T>(false, false, N, O, I, T(1), x, I, W + k * I * O, O, b ? T(1) : T(0), zk, O);
  }
  // Pieces in the inner position would stride by N·O; looping k outside the columns keeps every
  // access contiguous and the comparisons vectorize as blends.
  parallel_for(N, NO * P >= kParallelMin, [&](int64_t n) {
    T* yr = y + n * O;
    int32_t* ar = argmax + n * O;
    const T* z0 = z + n * O;
    for (int64_t o = 0; o < O; ++o) {
      yr[o] = z0[o];
      ar[o] = 0;
    }
    for (int64_t k = 1; k < P; ++k) {
      const T* zr = z + k * NO + n * O;
      const int32_t kk = static_cast<int32_t>(k);
      for (int64_t o = 0; o < O; ++o) {
        const T v = zr[o], best = yr[o];
        // Strict >: ties keep the lowest k. The NaN term lets a NaN win once and then keep it.
        const bool win = (v > best) | ((v != v) & (best == best));  // no branches: vectorizes
        yr[o] = win ? v : best;
        ar[o] = win ? kk : ar[o];
      }
    }
  });
}

template <class T>
void maxout_backward(T* dx, T* dW, T* db, T* dz, const T* dy, const int32_t* argmax, const T* x,
                     const T* W, int64_t N, int64_t I, int64_t O, int64_t P) {
  const int64_t NO = N * O;
  parallel_for(N, NO * P >= kParallelMin, [&](int64_t n) {
    const T* dyr = dy + n * O;
    const int32_t* ar = argmax + n * O;
    for (int64_t k = 0; k < P; ++k) {
      T* dzr = dz + k * NO + n * O;
      const int32_t kk = static_cast<int32_t>(k);
      // dy is loaded unconditionally so the select needs no branch and the loop vectorizes.
      for (int64_t o = 0; o < O; ++o) {
        const T d = dyr[o];
        dzr[o] = ar[o] == kk ? d : T(0);
      }
    }
  });
  for (int64_t k = 0; k < P; ++k) {
    const T* dzk = dz + k * NO;
    // dx sums the pieces' contributions in k order: the first gemm overwrites, the rest add.
    if (dx) gemm<T>(false, true, N, I, O, T(1), dzk, O, W + k * I * O, O, k ? T(1) : T(0), dx, I);
    gemm<T>(true, false, I, O, N, T(1), x, I, dzk, O, T(0), dW + k * I * O, O);  // (I,N)·(N,O)
    if (db) column_sum<T>(db + k * O, dzk, N, O);
  }
}

#define GS_INSTANTIATE(T)                                                                     \
  template void maxout_forward<T>(T*, int32_t*, T*, const T*, const T*, const T*, int64_t,     \
                                  int64_t, int64_t, int64_t);                                  \
  template void maxout_backward<T>(T*, T*, T*, T*, const T*, const int32_t*, const T*, const T*, \
                                   int64_t, int64_t, int64_t, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

// ---- the Maxout op: (I) -> (O); slots weight (P,I,O), bias (P,O) -------------------------------
// Workspace: the pieces' outputs z (P,N,O), reused as dz in backward, and argmax (N,O).
namespace {

template <class T>
class MaxoutOp : public Op<T> {
 public:
  MaxoutOp(const OpAttrs& a, const Shape& in) {
    I_ = a.integer("in_features", 1);
    O_ = a.integer("out_features", 1);
    P_ = a.integer("pieces", 1);
    require_rank("Maxout", in, 1, "(features,)");
    if (in.dims[0] != I_)
      throw std::invalid_argument("Maxout: expects " + std::to_string(I_) +
                                  " input features, got " + std::to_string(in.dims[0]));
    this->in_ = in;
    this->out_ = Shape{{O_}};
    this->params_.push_back({"weight", {P_, I_, O_}});
    this->params_.push_back({"bias", {P_, O_}});
  }
  int64_t workspace(int64_t N) const override { return P_ * N * O_; }
  int64_t int_workspace(int64_t N) const override { return N * O_; }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    maxout_forward<T>(y, a.iws, a.ws, x, a.w[0], a.w[1], a.N, I_, O_, P_);
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T* x, const T*) override {
    maxout_backward<T>(dx, a.dw[0], a.dw[1], a.ws, dy, a.iws, x, a.w[0], a.N, I_, O_, P_);
  }

 private:
  int64_t I_, O_, P_;
};

}  // namespace

GS_REGISTER_OP("Maxout", MaxoutOp);

}  // namespace gradstep::cpu
