// Small-matrix GEMM kernels: see gemm_kernels.hpp. The micro-kernel and its driver are in
// gemm_kernels_tile.inc, compiled here twice: for AVX-512 (zmm vectors: tiles of 6x64 .. 24x16
// floats, 6x32 .. 24x8 doubles) and for AVX2 + FMA (ymm: 6x16 or 12x8 floats, 6x8 or 12x4
// doubles), each inside its own `#pragma GCC target` region so the rest of the module stays
// portable (never -mavx512f on a whole file: its inline functions could leak AVX-512 code into
// the rest of the program).
#include "core/gemm_kernels.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GS_GEMM_X86 1
#include <immintrin.h>
#endif

namespace gradstep::cpu {

#ifdef GS_GEMM_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
namespace gemm_avx512 {
// 24 accumulators (6 rows x 4 vectors .. 24 rows x 1) + up to 4 B vectors + 1 broadcast of the
// 32 zmm registers.
struct Floats {
  using T = float;
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int kWidth = 16, kAcc = 24, kNV = 4;
  static V zero() { return _mm512_setzero_ps(); }
  static V bcast(const T* p) { return _mm512_set1_ps(*p); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V load_masked(const T* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_masked(T* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static Mask mask_first(int n) { return static_cast<Mask>((1u << n) - 1u); }  // n in 1..16
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
};
struct Doubles {
  using T = double;
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr int kWidth = 8, kAcc = 24, kNV = 4;
  static V zero() { return _mm512_setzero_pd(); }
  static V bcast(const T* p) { return _mm512_set1_pd(*p); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V load_masked(const T* p, Mask m) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static void store_masked(T* p, Mask m, V v) { _mm512_mask_storeu_pd(p, m, v); }
  static Mask mask_first(int n) { return static_cast<Mask>((1u << n) - 1u); }  // n in 1..8
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
};
#include "core/gemm_kernels_tile.inc"
}  // namespace gemm_avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace gemm_avx2 {
// 12 accumulators (6 rows x 2 vectors or 12 x 1) + 2 B vectors + 1 broadcast of the 16 ymm
// registers.
struct Floats {
  using T = float;
  using V = __m256;
  using Mask = __m256i;
  static constexpr int kWidth = 8, kAcc = 12, kNV = 2;
  static V zero() { return _mm256_setzero_ps(); }
  static V bcast(const T* p) { return _mm256_broadcast_ss(p); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V load_masked(const T* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_masked(T* p, Mask m, V v) { _mm256_maskstore_ps(p, m, v); }
  static Mask mask_first(int n) {  // n in 1..8: lanes below n set
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};
struct Doubles {
  using T = double;
  using V = __m256d;
  using Mask = __m256i;
  static constexpr int kWidth = 4, kAcc = 12, kNV = 2;
  static V zero() { return _mm256_setzero_pd(); }
  static V bcast(const T* p) { return _mm256_broadcast_sd(p); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static V load_masked(const T* p, Mask m) { return _mm256_maskload_pd(p, m); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static void store_masked(T* p, Mask m, V v) { _mm256_maskstore_pd(p, m, v); }
  static Mask mask_first(int n) {  // n in 1..4: lanes below n set
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
};
#include "core/gemm_kernels_tile.inc"
}  // namespace gemm_avx2
#pragma GCC pop_options
#endif  // GS_GEMM_X86

GemmIsa small_gemm_isa() {
#ifdef GS_GEMM_X86
  static const GemmIsa isa = [] {
    __builtin_cpu_init();
    GemmIsa best = GemmIsa::kNone;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma"))
      best = GemmIsa::kAvx512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      best = GemmIsa::kAvx2;
    // GRADSTEP_GEMM=avx2 or =blas caps the choice (to run what a CPU without AVX-512, or with no
    // kernel at all, runs; the tests do). Any other value, "blas" included, means OpenBLAS only:
    // the portable path is the safe reading of a misspelt setting.
    const char* env = std::getenv("GRADSTEP_GEMM");
    if (env && *env) {
      const std::string want(env);
      const GemmIsa cap = want == "avx512" ? GemmIsa::kAvx512
                          : want == "avx2" ? GemmIsa::kAvx2 : GemmIsa::kNone;
      if (static_cast<int>(cap) < static_cast<int>(best)) best = cap;
    }
    return best;
  }();
  return isa;
#else
  return GemmIsa::kNone;
#endif
}

bool small_gemm_wins(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K) {
  // Measured with bench/bench_gemm (one thread, AMD EPYC Zen 5 class with full-width AVX-512,
  // whose FMA ceiling is 263 GFLOP/s float32 with zmm and 131 with ymm, bench/README.md; OpenBLAS
  // runs its ymm kernels there, at 100-123 GFLOP/s float32 and 40-60 float64):
  // - AVX-512 kernels: 237-250 GFLOP/s float32 (107-130 float64) on every product of the
  //   784-256-128-10 step at batch 32-512 and of the digits and 128-wide nets (100-110 where N = 10:
  //   10 of 16 lanes), 143-250 on 1024^3 (float64: 60-121 vs 59-60); they lose at 2048^3 (103 vs
  //   122; float64 49 vs 61: B's rows 8-16 KiB apart, unpacked) and at K = 8192 (73 vs 101: a
  //   (K, 64) panel of B no longer stays in L2). So: K <= 2048 and at most 2^31 multiply-adds.
  // - AVX2 kernels (forced on the same machine): 105-116 GFLOP/s float32 against OpenBLAS's 93-110
  //   (float64: 50-58 vs 40-57) on products up to the (32,784)x(784,256) of batch 32 (6.4M
  //   multiply-adds), 4-8% behind on the 25M-100M ones of batch 128-512, 2-3x behind on 1024^3
  //   and K = 8192. So: at most 2^23 multiply-adds.
  if ((trans_a && trans_b) || K > 2048 || M > (1 << 21) || N > (1 << 21)) return false;
  const int64_t macs = M * N * K;  // < 2^53: no overflow
  switch (small_gemm_isa()) {
    case GemmIsa::kAvx512: return macs <= (int64_t(1) << 31);
    case GemmIsa::kAvx2: return macs <= (int64_t(1) << 23);
    default: return false;
  }
}

template <class T>
bool small_gemm(GemmIsa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  // alpha = 0 must give beta·C even where A or B hold NaN or inf (cblas reads neither).
  if ((trans_a && trans_b) || alpha == T(0) || K < 0) return false;
  if (isa == GemmIsa::kNone || static_cast<int>(isa) > static_cast<int>(small_gemm_isa())) return false;
  if (M <= 0 || N <= 0) return true;
#ifdef GS_GEMM_X86
  using F = std::conditional_t<std::is_same_v<T, float>, gemm_avx512::Floats, gemm_avx512::Doubles>;
  using G = std::conditional_t<std::is_same_v<T, float>, gemm_avx2::Floats, gemm_avx2::Doubles>;
  if (isa == GemmIsa::kAvx512)
    gemm_avx512::product<F>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    gemm_avx2::product<G>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  return true;
#else
  (void)alpha; (void)A; (void)lda; (void)B; (void)ldb; (void)beta; (void)C; (void)ldc;
  return false;
#endif
}

template bool small_gemm<float>(GemmIsa, bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                int64_t, const float*, int64_t, float, float*, int64_t);
template bool small_gemm<double>(GemmIsa, bool, bool, int64_t, int64_t, int64_t, double,
                                 const double*, int64_t, const double*, int64_t, double, double*,
                                 int64_t);

}  // namespace gradstep::cpu
