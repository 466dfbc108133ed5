// hd: what lets one inline function serve both the CPU kernels and the CUDA kernels.
// GS_HD marks a function __host__ __device__ under nvcc and is empty for the host compiler, so the
// per-element math in core/math/*.hpp is compiled (and unit-tested) on every machine, and a GPU
// runs the very same arithmetic. Nothing here allocates, throws or touches global state.
// Exactness: the CPU core is built with -ffp-contract=off and the CUDA kernels with -fmad=false,
// so an a*b + c below rounds twice on both, and only the explicit fma() calls fuse.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define GS_HD __host__ __device__ __forceinline__
#else
#define GS_HD inline
#endif

namespace gradstep::math {

GS_HD uint32_t bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
GS_HD float from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}
GS_HD uint64_t bits(double f) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(f));
#else
  uint64_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
GS_HD double from_bits(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// c ? a : b through a bit mask. Both sides are always computed, so gcc if-converts and vectorizes
// it; a plain ?: over expressions that may raise FP exceptions (a division, an overflowing product)
// stays a branch under the default -ftrapping-math, and so does a clamp whose constant side gcc
// threads into a copy of the code that follows.
GS_HD float select(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return from_bits((bits(a) & m) | (bits(b) & ~m));
}
GS_HD double select(bool c, double a, double b) {
  const uint64_t m = uint64_t(0) - static_cast<uint64_t>(c);
  return from_bits((bits(a) & m) | (bits(b) & ~m));
}

// x as a value already rounded to its type. On the host an empty asm hides where it came from, so
// GCC cannot fuse the product that made it into the addition that uses it (it contracts across
// statements where the target has FMA); nvcc with -fmad=false never fuses, so it is x itself there.
template <class V>
GS_HD V rounded(V x) {
#if defined(__CUDA_ARCH__)
  return x;
#elif defined(__x86_64__) || defined(__i386__)
  __asm__("" : "+x"(x));
  return x;
#elif defined(__aarch64__)
  __asm__("" : "+w"(x));
  return x;
#else
  __asm__("" : "+m"(x));
  return x;
#endif
}

}  // namespace gradstep::math
