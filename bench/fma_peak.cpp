// The core's FMA ceiling: 12 independent chains of vector FMAs (more than latency x pipes), ymm and
// zmm, float32. A standalone program, not part of the module, so it may be compiled for AVX-512:
//   g++ -O2 -mavx512f -mfma bench/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak
// (on a CPU without AVX-512 drop -mavx512f and the zmm line is skipped).
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstring>

template <class V, class F>
double gflops(F fma, V init, int lanes) {
  V acc[12];
  for (auto& a : acc) a = init;
  const V b = init, c = init;
  const long iters = 200000000L / lanes;
  const auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (auto& a : acc) a = fma(a, b, c);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  V sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = fma(sum, b, acc[i]);
  float first;
  std::memcpy(&first, &sum, sizeof first);
  if (first == 12345.0f) std::puts("");  // keeps the chains alive
  return 2.0 * lanes * 12 * double(iters) / s * 1e-9;
}

int main() {
  for (int run = 0; run < 3; ++run) {
    std::printf("ymm float32: %6.1f GFLOP/s\n",
                gflops<__m256>([](__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); },
                               _mm256_set1_ps(0.999f), 8));
#ifdef __AVX512F__
    std::printf("zmm float32: %6.1f GFLOP/s\n",
                gflops<__m512>([](__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); },
                               _mm512_set1_ps(0.999f), 16));
#endif
  }
}
