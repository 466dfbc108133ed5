#include "core/optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <type_traits>

#include "core/common.hpp"
#include "core/math/optim_math.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GS_OPTIM_X86 1
#include <immintrin.h>
#endif

// Every product below must be rounded on its own, as torch's separate ops round it: no contraction
// of a*b + c into an FMA except where std::fma / _mm256_fmadd say so. Clang honours this pragma;
// GCC contracts by default in C++ (-ffp-contract=fast, even across statements, wherever the target
// has FMA), so each product that feeds an addition also goes through math::rounded (core/math/hd.hpp).
#ifdef __clang__
#pragma clang fp contract(off)
#endif

namespace gradstep::cpu {
namespace {

// Elements per parallel work item: a multiple of every SIMD width, large enough that the per-block
// call costs nothing, small enough that two threads share a 32k-element buffer.
constexpr int64_t kBlock = 4096;

// Runs f(i0, i1) over [0, P) in blocks; each element's result depends only on its own inputs, so
// the split (and the thread count) never changes a bit.
template <class F>
void run_blocks(int64_t P, const F& f) {
  const int64_t blocks = (P + kBlock - 1) / kBlock;
  parallel_for(blocks, P >= kParallelMin, [&](int64_t b) { f(b * kBlock, std::min(P, (b + 1) * kBlock)); });
}

// Calls f(std::integral_constant<bool, b>), turning a run-time flag into a template argument so the
// inner loops carry no branches.
template <class F>
void with_flag(bool b, const F& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

// ---- the reference arithmetic, element by element (also the SIMD loops' tails) ---------------
// One element's update is core/math/optim_math.hpp's, shared with the CUDA kernel.
using math::AdamK;
using math::RmsK;
using math::SgdK;
using math::adam_consts;
using math::rmsprop_consts;
using math::sgd_consts;

template <class T>
void sgd_range(T* w, T* buf, const T* g, int64_t i0, int64_t i1, const SgdK<T>& k) {
  for (int64_t i = i0; i < i1; ++i) math::sgd_element(w, buf, g, i, k);
}

template <class T>
void rmsprop_range(T* w, T* sq, T* buf, const T* g, int64_t i0, int64_t i1, const RmsK<T>& k) {
  for (int64_t i = i0; i < i1; ++i) math::rmsprop_element(w, sq, buf, g, i, k);
}

template <class T>
void adam_range(T* w, T* m, T* v, const T* g, int64_t i0, int64_t i1, const AdamK<T>& k) {
  for (int64_t i = i0; i < i1; ++i) math::adam_element(w, m, v, g, i, k);
}

// ---- SIMD versions: the same operations on a vector of floats / doubles at a time --------------
// The loops (core/optim_simd.inc) are compiled twice, for AVX + FMA (8 floats) and for AVX-512 (16
// floats), and chosen at run time. Every operation rounds the same way at any width (IEEE add,
// mul, div, sqrt, and fma exactly where the element code has one), so both give the reference's
// bits. AVX-512 halves the divisions and square roots that bound Adam and RMSprop: Adam over the
// 235,146 weights of 784-256-128-10, one thread, 75-76 µs with AVX and 42 µs with AVX-512
// (`GRADSTEP_NO_AVX512=1|0 build/bench/bench/bench_optim --benchmark_filter=BM_adam/235146/1`).
#ifdef GS_OPTIM_X86
namespace avx2 {
#define GS_SIMD __attribute__((target("avx,fma")))
#define GS_SIMD_INLINE __attribute__((target("avx,fma"), always_inline)) inline
template <class T>
struct Simd;

template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int64_t W = 8;
  static GS_SIMD_INLINE V load(const float* p) { return _mm256_loadu_ps(p); }
  static GS_SIMD_INLINE void store(float* p, V a) { _mm256_storeu_ps(p, a); }
  static GS_SIMD_INLINE V set1(float x) { return _mm256_set1_ps(x); }
  static GS_SIMD_INLINE V add(V a, V b) { return _mm256_add_ps(a, b); }
  static GS_SIMD_INLINE V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static GS_SIMD_INLINE V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static GS_SIMD_INLINE V div(V a, V b) { return _mm256_div_ps(a, b); }
  static GS_SIMD_INLINE V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static GS_SIMD_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }  // a*b + c
  static GS_SIMD_INLINE V rounded(V a) { __asm__("" : "+x"(a)); return a; }  // see rounded()
};

template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int64_t W = 4;
  static GS_SIMD_INLINE V load(const double* p) { return _mm256_loadu_pd(p); }
  static GS_SIMD_INLINE void store(double* p, V a) { _mm256_storeu_pd(p, a); }
  static GS_SIMD_INLINE V set1(double x) { return _mm256_set1_pd(x); }
  static GS_SIMD_INLINE V add(V a, V b) { return _mm256_add_pd(a, b); }
  static GS_SIMD_INLINE V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static GS_SIMD_INLINE V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static GS_SIMD_INLINE V div(V a, V b) { return _mm256_div_pd(a, b); }
  static GS_SIMD_INLINE V sqrt(V a) { return _mm256_sqrt_pd(a); }
  static GS_SIMD_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static GS_SIMD_INLINE V rounded(V a) { __asm__("" : "+x"(a)); return a; }
};

#include "core/optim_simd.inc"
#undef GS_SIMD
#undef GS_SIMD_INLINE
}  // namespace avx2

// GCC 12's _mm512_set1_* read an "undefined" vector and warn about it (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace avx512 {
#define GS_SIMD __attribute__((target("avx512f")))
#define GS_SIMD_INLINE __attribute__((target("avx512f"), always_inline)) inline
template <class T>
struct Simd;

template <>
struct Simd<float> {
  using V = __m512;
  static constexpr int64_t W = 16;
  static GS_SIMD_INLINE V load(const float* p) { return _mm512_loadu_ps(p); }
  static GS_SIMD_INLINE void store(float* p, V a) { _mm512_storeu_ps(p, a); }
  static GS_SIMD_INLINE V set1(float x) { return _mm512_set1_ps(x); }
  static GS_SIMD_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }
  static GS_SIMD_INLINE V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static GS_SIMD_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static GS_SIMD_INLINE V div(V a, V b) { return _mm512_div_ps(a, b); }
  static GS_SIMD_INLINE V sqrt(V a) { return _mm512_sqrt_ps(a); }
  static GS_SIMD_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }  // a*b + c
  static GS_SIMD_INLINE V rounded(V a) { __asm__("" : "+v"(a)); return a; }  // see rounded()
};

template <>
struct Simd<double> {
  using V = __m512d;
  static constexpr int64_t W = 8;
  static GS_SIMD_INLINE V load(const double* p) { return _mm512_loadu_pd(p); }
  static GS_SIMD_INLINE void store(double* p, V a) { _mm512_storeu_pd(p, a); }
  static GS_SIMD_INLINE V set1(double x) { return _mm512_set1_pd(x); }
  static GS_SIMD_INLINE V add(V a, V b) { return _mm512_add_pd(a, b); }
  static GS_SIMD_INLINE V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static GS_SIMD_INLINE V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static GS_SIMD_INLINE V div(V a, V b) { return _mm512_div_pd(a, b); }
  static GS_SIMD_INLINE V sqrt(V a) { return _mm512_sqrt_pd(a); }
  static GS_SIMD_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static GS_SIMD_INLINE V rounded(V a) { __asm__("" : "+v"(a)); return a; }
};

#include "core/optim_simd.inc"
#undef GS_SIMD
#undef GS_SIMD_INLINE
}  // namespace avx512
#pragma GCC diagnostic pop
#endif  // GS_OPTIM_X86

}  // namespace

bool optim_has_simd() {
#ifdef GS_OPTIM_X86
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("fma");
  }();
  return ok;
#else
  return false;
#endif
}

namespace {
// GRADSTEP_NO_AVX512=1 keeps the AVX loops on a CPU that has AVX-512 (tests compare the two).
bool has_avx512() {
#ifdef GS_OPTIM_X86
  static const bool ok = [] {
    __builtin_cpu_init();
    const char* off = std::getenv("GRADSTEP_NO_AVX512");
    return __builtin_cpu_supports("avx512f") && !(off && off[0] == '1');
  }();
  return ok;
#else
  return false;
#endif
}
}  // namespace

template <class T>
void sgd_step(T* w, T* momentum_buf, const T* g, int64_t P, const SGDHyper& h, int64_t step) {
  if (h.momentum != 0 && !momentum_buf) return;
  const SgdK<T> k = sgd_consts<T>(h, step);
#ifdef GS_OPTIM_X86
  if (optim_has_simd()) {
    with_flag(k.has_wd, [&](auto wd) {
      with_flag(k.has_mom, [&](auto mom) {
        with_flag(k.first, [&](auto first) {
          with_flag(k.nesterov, [&](auto nest) {
            run_blocks(P, [&](int64_t i0, int64_t i1) {
              constexpr bool a = decltype(wd)::value, b = decltype(mom)::value,
                             c = decltype(first)::value, d = decltype(nest)::value;
              if (has_avx512()) avx512::sgd_simd<T, a, b, c, d>(w, momentum_buf, g, i0, i1, k);
              else avx2::sgd_simd<T, a, b, c, d>(w, momentum_buf, g, i0, i1, k);
            });
          });
        });
      });
    });
    return;
  }
#endif
  run_blocks(P, [&](int64_t i0, int64_t i1) { sgd_range(w, momentum_buf, g, i0, i1, k); });
}

template <class T>
void rmsprop_step(T* w, T* square_avg, T* momentum_buf, const T* g, int64_t P,
                  const RMSpropHyper& h, int64_t /*step*/) {
  if (h.momentum > 0 && !momentum_buf) return;
  const RmsK<T> k = rmsprop_consts<T>(h);
#ifdef GS_OPTIM_X86
  if (optim_has_simd()) {
    with_flag(k.has_wd, [&](auto wd) {
      with_flag(k.has_mom, [&](auto mom) {
        run_blocks(P, [&](int64_t i0, int64_t i1) {
          constexpr bool a = decltype(wd)::value, b = decltype(mom)::value;
          if (has_avx512())
            avx512::rmsprop_simd<T, a, b>(w, square_avg, momentum_buf, g, i0, i1, k);
          else avx2::rmsprop_simd<T, a, b>(w, square_avg, momentum_buf, g, i0, i1, k);
        });
      });
    });
    return;
  }
#endif
  run_blocks(P, [&](int64_t i0, int64_t i1) {
    rmsprop_range(w, square_avg, momentum_buf, g, i0, i1, k);
  });
}

template <class T>
void adam_step(T* w, T* m, T* v, const T* g, int64_t P, const AdamHyper& h, int64_t step) {
  if (step < 1) return;
  const AdamK<T> k = adam_consts<T>(h, step);
#ifdef GS_OPTIM_X86
  if (optim_has_simd()) {
    with_flag(k.has_wd, [&](auto wd) {
      with_flag(k.decoupled, [&](auto dec) {
        with_flag(k.small, [&](auto small) {
          run_blocks(P, [&](int64_t i0, int64_t i1) {
            constexpr bool a = decltype(wd)::value, b = decltype(dec)::value,
                           c = decltype(small)::value;
            if (has_avx512()) avx512::adam_simd<T, a, b, c>(w, m, v, g, i0, i1, k);
            else avx2::adam_simd<T, a, b, c>(w, m, v, g, i0, i1, k);
          });
        });
      });
    });
    return;
  }
#endif
  run_blocks(P, [&](int64_t i0, int64_t i1) { adam_range(w, m, v, g, i0, i1, k); });
}

template <class T>
void sgd_step_ref(T* w, T* momentum_buf, const T* g, int64_t P, const SGDHyper& h, int64_t step) {
  if (h.momentum != 0 && !momentum_buf) return;
  sgd_range(w, momentum_buf, g, 0, P, sgd_consts<T>(h, step));
}

template <class T>
void rmsprop_step_ref(T* w, T* square_avg, T* momentum_buf, const T* g, int64_t P,
                      const RMSpropHyper& h, int64_t /*step*/) {
  if (h.momentum > 0 && !momentum_buf) return;
  rmsprop_range(w, square_avg, momentum_buf, g, 0, P, rmsprop_consts<T>(h));
}

template <class T>
void adam_step_ref(T* w, T* m, T* v, const T* g, int64_t P, const AdamHyper& h, int64_t step) {
  if (step < 1) return;
  adam_range(w, m, v, g, 0, P, adam_consts<T>(h, step));
}

#define GS_INSTANTIATE(T)                                                                      \
  template void sgd_step<T>(T*, T*, const T*, int64_t, const SGDHyper&, int64_t);            \
  template void rmsprop_step<T>(T*, T*, T*, const T*, int64_t, const RMSpropHyper&, int64_t); \
  template void adam_step<T>(T*, T*, T*, const T*, int64_t, const AdamHyper&, int64_t);       \
  template void sgd_step_ref<T>(T*, T*, const T*, int64_t, const SGDHyper&, int64_t);        \
  template void rmsprop_step_ref<T>(T*, T*, T*, const T*, int64_t, const RMSpropHyper&,       \
                                    int64_t);                                                 \
  template void adam_step_ref<T>(T*, T*, T*, const T*, int64_t, const AdamHyper&, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cpu
