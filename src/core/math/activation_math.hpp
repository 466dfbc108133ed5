// activation_math: the per-element arithmetic of the activations, shared by the CPU kernels
// (core/activation.cpp) and the CUDA kernels (cuda/elementwise.cu): the same functions, so a GPU's
// results equal the CPU's bit for bit in float32 (and to the last ulp of exp/tanh/expm1 in float64,
// where both call their platform's own functions). See activation.hpp for the math.
#pragma once
#include "core/math/hd.hpp"

namespace gradstep::math {

// Branch-free float32 math that gcc -O3 vectorizes (SSE2 and up) without -ffast-math, for any
// kernel's inner loop (the fused network step, softmax + cross-entropy). Largest errors against
// float64 over every float with 2^-30 <= |x| < 128 (exhaustive; outside, the results are exact
// limits): exp_f 0.99 ulp, expm1_f 1.64 ulp, tanh_f 1.33 ulp, sigmoid_f 2.40 ulp (subnormal
// results in units of the subnormal spacing). tests/test_activation.py checks these bounds on a
// grid. Overflow gives inf, underflow 0 (through the subnormals, rounded once), NaN stays NaN.
namespace vmath {

using math::bits;
using math::from_bits;
using math::select;

namespace detail {
// 2^n for -126 <= n <= 127, built in the exponent field.
GS_HD float pow2i(int32_t n) { return from_bits(static_cast<uint32_t>(n + 127) << 23); }

// x = n·ln2 + r with |r| <= ~ln2/2. n = round(x·log2 e) by the 1.5·2^23 trick (no float-to-int
// conversion, which SSE2 cannot round to nearest); r by Cody–Waite: ln2_hi has 9 significant bits,
// so n·ln2_hi and x − n·ln2_hi are exact for |n| <= 2^15, and ln2_lo carries the rest.
// Needs |x| < 2^21 (the callers clamp) and round-to-nearest.
GS_HD void reduce(float x, int32_t& n, float& r) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kMagic = 12582912.0f;  // 1.5·2^23
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  const float t = x * kLog2e + kMagic;
  n = static_cast<int32_t>(bits(t) - bits(kMagic));
  const float fn = t - kMagic;
  r = x - fn * kLn2Hi;
  r = r - fn * kLn2Lo;
}

// e^r − 1 for |r| <= ~ln2/2: r + r²·q(r) with Cephes' expf minimax coefficients, evaluated as
// r + r·(r·q) (relative error well under an ulp; the small term is added last).
GS_HD float expm1_reduced(float r) {
  float q = 1.9875691500e-4f;
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  return r + r * (r * q);
}
}  // namespace detail

GS_HD float exp_f(float x) {
  // Clamped so that n stays in [-159, 128]; e^-110 and e^89 round to 0 and inf on their own.
  float xc = select(x < -110.0f, -110.0f, x);
  xc = select(xc > 89.0f, 89.0f, xc);
  int32_t n;
  float r;
  detail::reduce(xc, n, r);
  const float p = 1.0f + detail::expm1_reduced(r);
  // 2^n in two factors that are both normal floats: p·2^n1 is exact, and the second product
  // rounds once, into the subnormals or to inf, where the true result lies.
  const int32_t n1 = n >> 1;
  return (p * detail::pow2i(n1)) * detail::pow2i(n - n1);
}

GS_HD float expm1_f(float x) {
  // Below -18, e^x − 1 rounds to −1 in float; e^89 overflows.
  float xc = select(x < -18.0f, -18.0f, x);
  xc = select(xc > 89.0f, 89.0f, xc);
  int32_t n;
  float r;
  detail::reduce(xc, n, r);
  const float u = detail::expm1_reduced(r);
  // e^x − 1 = 2^n·(u + (1 − 2^−n)): 1 − 2^−n is exact for n <= 24 and rounds to 1 from n = 25 on,
  // so n is capped at 25 to keep 2^−n normal. Near 0 (n = 0) this is u itself: no cancellation.
  const int32_t nc = n > 25 ? 25 : n;
  const float c = 1.0f - detail::pow2i(-nc);
  const int32_t n1 = n >> 1;
  const float y = ((u + c) * detail::pow2i(n1)) * detail::pow2i(n - n1);
  return select(x == 0.0f, x, y);  // keeps the sign of −0
}

GS_HD float tanh_f(float x) {
  const uint32_t sign = bits(x) & 0x80000000u;
  const float a = from_bits(bits(x) & 0x7fffffffu);
  // |x| < 0.625: Cephes' odd minimax polynomial (1 − 2/(e^2x+1) would cancel there).
  const float s = x * x;
  float p = -5.70498872745e-3f;
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  p = p * s * x + x;
  // Otherwise 1 − 2/(e^2|x|+1) with x's sign; |x| is capped at 10, where tanh already rounds to 1,
  // so e^2|x| stays finite.
  const float ac = select(a > 10.0f, 10.0f, a);
  const float z = exp_f(2.0f * ac);
  const float l = from_bits(bits(1.0f - 2.0f / (z + 1.0f)) | sign);
  return select(a < 0.625f, p, l);
}

GS_HD float sigmoid_f(float x) {
  // e = e^−|x| <= 1 never overflows: 1/(1+e) for x >= 0, e/(1+e) for x < 0 (which keeps the tiny
  // values of very negative x instead of 1/(1+inf)). Exactly 0 and 1 in the limits.
  const float e = exp_f(select(x < 0.0f, x, -x));
  return select(x < 0.0f, e, 1.0f) / (1.0f + e);
}

}  // namespace vmath

// ---- T-generic scalar versions: float through vmath (vectorizable), double through std:: -------
GS_HD float exp_t(float x) { return vmath::exp_f(x); }
GS_HD double exp_t(double x) { return std::exp(x); }
GS_HD float expm1_t(float x) { return vmath::expm1_f(x); }
GS_HD double expm1_t(double x) { return std::expm1(x); }
GS_HD float tanh_t(float x) { return vmath::tanh_f(x); }
GS_HD double tanh_t(double x) { return std::tanh(x); }
GS_HD float sigmoid_t(float x) { return vmath::sigmoid_f(x); }
GS_HD double sigmoid_t(double x) {
  const double e = std::exp(x < 0.0 ? x : -x);
  return (x < 0.0 ? e : 1.0) / (1.0 + e);
}

// ---- one element of each activation's forward and backward ----------------------------------
// sigmoid backward in PyTorch's association: (dy·(1−y))·y.
template <class T> GS_HD T sigmoid_grad(T g, T s) { return g * (T(1) - s) * s; }
template <class T> GS_HD T tanh_grad(T g, T t) { return g * (T(1) - t * t); }
// x < 0 ? 0 : x keeps NaN (and −0) as PyTorch's clamp_min does.
template <class T> GS_HD T relu(T v) { return select(v < T(0), T(0), v); }
// PyTorch's threshold_backward: 0 where y <= 0 (so 0 at x = 0), dy elsewhere (NaN y included).
template <class T> GS_HD T relu_grad(T g, T y) { return select(y <= T(0), T(0), g); }
template <class T> GS_HD T leaky_relu(T v, T alpha) { return select(v > T(0), v, v * alpha); }
template <class T> GS_HD T leaky_relu_grad(T g, T x, T alpha) {
  return select(x > T(0), g, g * alpha);
}
// expm1 (not exp − 1) keeps the relative accuracy near 0. Its argument is min(x, 0): the other
// side is discarded, and this keeps it from overflowing. x >= 0 (−0 and NaN too) passes through.
template <class T> GS_HD T elu(T v, T alpha) {
  return select(v < T(0), expm1_t(select(v < T(0), v, T(0))) * alpha, v);
}
// Only x > 0 takes the identity side: the slope at 0 is α (as in PyTorch), and a NaN x gives a
// NaN gradient; the slope α·e^x is read off the saved output as y + α.
template <class T> GS_HD T elu_grad(T g, T x, T y, T alpha) {
  return select(x > T(0), g, g * (y + alpha));
}

}  // namespace gradstep::math
