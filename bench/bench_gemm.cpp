// Single-threaded float32 and float64 GEMM: OpenBLAS against gradstep's own kernels (gemm_kernels.hpp) on the
// products of a Dense training step. Args: case (0 nn, 1 nt, 2 tn), M, N, K.
//   ./bench_gemm --benchmark_filter=... (build with -DGRADSTEP_BENCH=ON)
#include <cblas.h>

#include <type_traits>

#include "bench_util.hpp"
#include "core/gemm_kernels.hpp"

namespace {

using gradstep::cpu::GemmIsa;

template <class T>
void run(benchmark::State& state, int impl) {
  const bool ta = state.range(0) == 2, tb = state.range(0) == 1;
  const int64_t M = state.range(1), N = state.range(2), K = state.range(3);
  auto A = gsbench::randn<T>(M * K, 1), B = gsbench::randn<T>(K * N, 2);
  std::vector<T> C(static_cast<size_t>(M * N));
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  const GemmIsa isa = impl == 1 ? GemmIsa::kAvx512 : GemmIsa::kAvx2;
  if (impl > 0 && static_cast<int>(isa) > static_cast<int>(gradstep::cpu::small_gemm_isa())) {
    state.SkipWithError("this CPU lacks the instruction set");
    return;
  }
  scipy_openblas_set_num_threads(1);
  for (auto _ : state) {
    if (impl == 0 && std::is_same_v<T, float>)
      scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                        int(M), int(N), int(K), 1.0f, (const float*)A.data(), int(lda),
                        (const float*)B.data(), int(ldb), 0.0f, (float*)C.data(), int(N));
    else if (impl == 0)
      scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                        int(M), int(N), int(K), 1.0, (const double*)A.data(), int(lda),
                        (const double*)B.data(), int(ldb), 0.0, (double*)C.data(), int(N));
    else
      gradstep::cpu::small_gemm<T>(isa, ta, tb, M, N, K, T(1), A.data(), lda, B.data(), ldb, T(0),
                                   C.data(), N);
    benchmark::DoNotOptimize(C.data());
  }
  gsbench::flops(state, 2.0 * double(M) * double(N) * double(K));
}

void BM_gemm_openblas(benchmark::State& s) { run<float>(s, 0); }
void BM_gemm_avx512(benchmark::State& s) { run<float>(s, 1); }
void BM_gemm_avx2(benchmark::State& s) { run<float>(s, 2); }
void BM_dgemm_openblas(benchmark::State& s) { run<double>(s, 0); }
void BM_dgemm_avx512(benchmark::State& s) { run<double>(s, 1); }
void BM_dgemm_avx2(benchmark::State& s) { run<double>(s, 2); }

// The products of one training step of 784-256-128-10 at batch b, 64-128-64-10 at 32, 128x128 at 64.
void step_shapes(benchmark::internal::Benchmark* bm) {
  for (int64_t b : {32, 128, 512}) {
    bm->Args({0, b, 256, 784})->Args({0, b, 128, 256})->Args({0, b, 10, 128});
    bm->Args({1, b, 256, 128})->Args({1, b, 128, 10});
    bm->Args({2, 784, 256, b})->Args({2, 256, 128, b})->Args({2, 128, 10, b});
  }
  bm->Args({0, 32, 128, 64})->Args({0, 32, 64, 128})->Args({1, 32, 128, 64})->Args({2, 64, 128, 32})->Args({2, 128, 64, 32});
  bm->Args({0, 64, 128, 128})->Args({1, 64, 128, 128})->Args({2, 128, 128, 64});
  // Larger products, for the rule that chooses between the kernels and OpenBLAS.
  bm->Args({0, 1024, 1024, 1024})->Args({1, 1024, 1024, 1024})->Args({2, 1024, 1024, 1024});
  bm->Args({0, 2048, 2048, 2048})->Args({0, 64, 1024, 8192})->Args({0, 4096, 64, 64});
  bm->ArgNames({"case", "M", "N", "K"});
}
BENCHMARK(BM_gemm_openblas)->Apply(step_shapes);
BENCHMARK(BM_gemm_avx512)->Apply(step_shapes);
BENCHMARK(BM_gemm_avx2)->Apply(step_shapes);
BENCHMARK(BM_dgemm_openblas)->Apply(step_shapes);
BENCHMARK(BM_dgemm_avx512)->Apply(step_shapes);
BENCHMARK(BM_dgemm_avx2)->Apply(step_shapes);

}  // namespace
