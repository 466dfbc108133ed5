#include "core/dropout.hpp"

#include <cmath>

#include "core/common.hpp"
#include "core/math/random.hpp"
#include "core/op.hpp"

#include <algorithm>

namespace gradstep::cpu {

template <class T>
void dropout_forward(T* y, T* mask, const T* x, int64_t n, T p, uint64_t seed) {
  const double pd = p;
  // The generator and the keep rule are core/math/random.hpp's, shared with the CUDA kernel.
  const uint64_t threshold = math::dropout_threshold(pd);
  const T scale = static_cast<T>(1.0 / (1.0 - pd));
  parallel_for(n, n >= kParallelMin, [&](int64_t i) {
    const T m = math::dropout_mask<T>(seed, static_cast<uint64_t>(i), threshold, scale);
    mask[i] = m;
    y[i] = x[i] * m;
  });
}

template <class T>
void dropout_backward(T* dx, const T* dy, const T* mask, int64_t n) {
  parallel_for(n, n >= kParallelMin, [&](int64_t i) { dx[i] = dy[i] * mask[i]; });
}

#define GS_INSTANTIATE(T)                                                          \
  template void dropout_forward<T>(T*, T*, const T*, int64_t, T, uint64_t);        \
  template void dropout_backward<T>(T*, const T*, const T*, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

// ---- the Dropout op: any shape, kept; workspace: the mask. The identity when not training. -----
namespace {

template <class T>
class DropoutOp : public Op<T> {
 public:
  DropoutOp(const OpAttrs& a, const Shape& in) : p_(a.real("p")) {
    if (!(p_ >= 0.0 && p_ < 1.0)) throw std::invalid_argument("Dropout: p must be in [0, 1)");
    this->in_ = in;
    this->out_ = in;
  }
  int64_t workspace(int64_t N) const override { return N * this->in_.size(); }
  bool needs_seed() const override { return true; }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    const int64_t n = a.N * this->in_.size();
    if (a.training) dropout_forward<T>(y, a.ws, x, n, static_cast<T>(p_), a.seed);
    else std::copy(x, x + n, y);
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T*) override {
    if (!dx) return;
    const int64_t n = a.N * this->in_.size();
    if (a.training) dropout_backward<T>(dx, dy, a.ws, n);
    else std::copy(dy, dy + n, dx);
  }

 private:
  double p_;
};

}  // namespace

GS_REGISTER_OP("Dropout", DropoutOp);

}  // namespace gradstep::cpu
