#include "core/dropout.hpp"

#include <cmath>

#include "core/common.hpp"
#include "core/op.hpp"

#include <algorithm>

namespace gradstep::cpu {
namespace {

// The i-th output of SplitMix64 (Steele, Lea and Flood, 2014) seeded with `seed`: the state after
// i+1 steps is seed + (i+1)·golden, so any element is computed directly from its index.
inline uint64_t splitmix64(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

template <class T>
void dropout_forward(T* y, T* mask, const T* x, int64_t n, T p, uint64_t seed) {
  const double pd = p;
  // u = (z >> 11)·2⁻⁵³ >= p  <=>  (z >> 11) >= ceil(p·2⁵³): p·2⁵³ is exact (a power-of-two
  // scale), so comparing integers keeps exactly the same elements without a conversion.
  const uint64_t threshold = static_cast<uint64_t>(std::ceil(pd * 0x1.0p53));
  // PyTorch scales its 0/1 noise by 1/(1-p) in T; the same value here.
  const T scale = static_cast<T>(1.0 / (1.0 - pd));
  GS_PARALLEL_FOR(n)
  for (int64_t i = 0; i < n; ++i) {
    // keep·scale rather than a ?: : a branch on a coin flip mispredicts half the time.
    const bool keep = (splitmix64(seed, static_cast<uint64_t>(i)) >> 11) >= threshold;
    const T m = static_cast<T>(keep) * scale;
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
