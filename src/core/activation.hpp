// activation: the elementwise nonlinearities, PReLU and softmax.
//   sigmoid     y = 1/(1+e^-x)                  dx = dy·(1−y)·y
//   tanh        y = tanh x                      dx = dy·(1−y²)
//   relu        y = max(x, 0)                   dx = dy where y > 0, else 0
//   leaky_relu  y = x if x > 0 else α·x         dx = dy if x > 0 else α·dy
//   elu         y = x if x > 0 else α·(e^x−1)   dx = dy if x > 0 else dy·(y+α)
//   prelu       y = x if x > 0 else a_c·x       dx = dy if x > 0 else a_c·dy,  da_c = Σ_{x≤0} x·dy
//   softmax     y_k = e^(x_k−max x)/Σ_j e^(x_j−max x) per row      dx = y·(dy − Σ_k dy_k·y_k)
// At the kinks (x = 0) the slopes are PyTorch's: 0 for relu, α for leaky_relu, elu and prelu.
// Shapes: n elements (any shape, flattened) for the elementwise ops; x, y, dy, dx (N,F) and alpha
// (C) with C = 1 (one shared slope) or C = F (one per feature) for prelu; x, y, dy, dx (N,K) for
// softmax (over the last axis).
// Write rule: every backward overwrites (=) dx and dalpha; nothing accumulates across calls.
// Aliasing: the elementwise ops allow y == x and dx == dy (in place); prelu and softmax do not.
//
// float32 transcendentals use the vectorizable functions in `vmath` below (gcc without
// -ffast-math never vectorizes a call to std::exp); float64 uses the std:: functions.
#pragma once
#include <cstdint>
#include <cstring>

namespace gradstep::cpu {

template <class T>
void sigmoid_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);
// Uses the saved output y.
template <class T>
void sigmoid_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* y /*(n)*/, int64_t n);

template <class T>
void tanh_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);
// Uses the saved output y.
template <class T>
void tanh_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* y /*(n)*/, int64_t n);

template <class T>
void relu_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);
// Uses the saved output y: dx = y <= 0 ? 0 : dy (a select, so an infinite dy where y <= 0 gives 0).
template <class T>
void relu_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* y /*(n)*/, int64_t n);

template <class T>
void leaky_relu_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n, T alpha);
template <class T>
void leaky_relu_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* x /*(n)*/, int64_t n,
                         T alpha);

template <class T>
void elu_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n, T alpha);
// Uses x for the branch and the saved output y for the slope α·e^x = y + α (no second exp, as
// PyTorch's in-place ELU does); its absolute error is at most about one ulp of α.
template <class T>
void elu_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* x /*(n)*/, const T* y /*(n)*/,
                  int64_t n, T alpha);

// C = 1 (alpha[0] for every element) or C = F (alpha[f] for column f).
template <class T>
void prelu_forward(T* y /*(N,F)*/, const T* x /*(N,F)*/, const T* alpha /*(C)*/, int64_t N,
                   int64_t F, int64_t C);
// dalpha is summed in double in a fixed order (independent of the thread count).
template <class T>
void prelu_backward(T* dx /*(N,F)*/, T* dalpha /*(C)*/, const T* dy /*(N,F)*/,
                    const T* x /*(N,F)*/, const T* alpha /*(C)*/, int64_t N, int64_t F, int64_t C);

// Max-subtracted, so logits of any finite size are safe; the row sum is accumulated in double.
template <class T>
void softmax_forward(T* y /*(N,K)*/, const T* x /*(N,K)*/, int64_t N, int64_t K);
// The plain version softmax_forward is checked against (serial loops, std::exp).
template <class T>
void softmax_forward_ref(T* y /*(N,K)*/, const T* x /*(N,K)*/, int64_t N, int64_t K);
template <class T>
void softmax_backward(T* dx /*(N,K)*/, const T* dy /*(N,K)*/, const T* y /*(N,K)*/, int64_t N,
                      int64_t K);

// Elementwise e^x and e^x − 1 (float: vmath::exp_f / expm1_f; double: std::), exposed so the tests
// can measure the float functions' accuracy. y == x allowed.
template <class T>
void vexp(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);
template <class T>
void vexpm1(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);

// Branch-free float32 math that gcc -O3 vectorizes (SSE2 and up) without -ffast-math, for any
// kernel's inner loop (the fused network step, softmax + cross-entropy). Largest errors against
// float64 over every float with 2^-30 <= |x| < 128 (exhaustive; outside, the results are exact
// limits): exp_f 0.99 ulp, expm1_f 1.64 ulp, tanh_f 1.33 ulp, sigmoid_f 2.40 ulp (subnormal
// results in units of the subnormal spacing). tests/test_activation.py checks these bounds on a
// grid. Overflow gives inf, underflow 0 (through the subnormals, rounded once), NaN stays NaN.
namespace vmath {

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint64_t bits(double f) {
  uint64_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline double from_bits(uint64_t u) {
  double f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// c ? a : b through a bit mask. Both sides are always computed, so gcc if-converts and vectorizes
// it; a plain ?: over expressions that may raise FP exceptions (a division, an overflowing product)
// stays a branch under the default -ftrapping-math, and so does a clamp whose constant side gcc
// threads into a copy of the code that follows.
inline float select(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return from_bits((bits(a) & m) | (bits(b) & ~m));
}
inline double select(bool c, double a, double b) {
  const uint64_t m = uint64_t(0) - static_cast<uint64_t>(c);
  return from_bits((bits(a) & m) | (bits(b) & ~m));
}

namespace detail {
// 2^n for -126 <= n <= 127, built in the exponent field.
inline float pow2i(int32_t n) { return from_bits(static_cast<uint32_t>(n + 127) << 23); }

// x = n·ln2 + r with |r| <= ~ln2/2. n = round(x·log2 e) by the 1.5·2^23 trick (no float-to-int
// conversion, which SSE2 cannot round to nearest); r by Cody–Waite: ln2_hi has 9 significant bits,
// so n·ln2_hi and x − n·ln2_hi are exact for |n| <= 2^15, and ln2_lo carries the rest.
// Needs |x| < 2^21 (the callers clamp) and round-to-nearest.
inline void reduce(float x, int32_t& n, float& r) {
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
inline float expm1_reduced(float r) {
  float q = 1.9875691500e-4f;
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  return r + r * (r * q);
}
}  // namespace detail

inline float exp_f(float x) {
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

inline float expm1_f(float x) {
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

inline float tanh_f(float x) {
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

inline float sigmoid_f(float x) {
  // e = e^−|x| <= 1 never overflows: 1/(1+e) for x >= 0, e/(1+e) for x < 0 (which keeps the tiny
  // values of very negative x instead of 1/(1+inf)). Exactly 0 and 1 in the limits.
  const float e = exp_f(select(x < 0.0f, x, -x));
  return select(x < 0.0f, e, 1.0f) / (1.0f + e);
}

}  // namespace vmath
}  // namespace gradstep::cpu
