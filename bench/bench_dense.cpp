// dense: forward and backward at the shapes of the benchmark table (2·N·I·O flops per GEMM),
// next to the raw gemm wrapper on the same shapes (what the whole step is measured against).
#include "bench_util.hpp"
#include "core/dense.hpp"
#include "core/gemm.hpp"

using namespace gradstep::cpu;

static void BM_dense_forward(benchmark::State& state) {
  const int64_t N = state.range(0), I = state.range(1), O = state.range(2);
  gsbench::set_threads(state, 3);
  auto x = gsbench::randn<float>(N * I, 1), W = gsbench::randn<float>(I * O, 2), b = gsbench::randn<float>(O, 3);
  std::vector<float> y(static_cast<size_t>(N * O));
  for (auto _ : state) {
    dense_forward<float>(y.data(), x.data(), W.data(), b.data(), N, I, O);
    benchmark::DoNotOptimize(y.data());
  }
  gsbench::flops(state, 2.0 * N * I * O);
}

static void BM_dense_backward(benchmark::State& state) {
  const int64_t N = state.range(0), I = state.range(1), O = state.range(2);
  gsbench::set_threads(state, 3);
  auto x = gsbench::randn<float>(N * I, 1), W = gsbench::randn<float>(I * O, 2), dy = gsbench::randn<float>(N * O, 3);
  std::vector<float> dx(static_cast<size_t>(N * I)), dW(static_cast<size_t>(I * O)), db(static_cast<size_t>(O));
  for (auto _ : state) {
    dense_backward<float>(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), N, I, O);
    benchmark::DoNotOptimize(dW.data());
  }
  gsbench::flops(state, 4.0 * N * I * O);
}

static void BM_gemm(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  gsbench::set_threads(state, 3);
  auto A = gsbench::randn<float>(M * K, 1), B = gsbench::randn<float>(K * N, 2);
  std::vector<float> C(static_cast<size_t>(M * N));
  for (auto _ : state) {
    gemm<float>(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
  }
  gsbench::flops(state, 2.0 * M * N * K);
}

#define SHAPES(BM)                                                                         \
  BENCHMARK(BM)->Args({32, 784, 256, 1})->Args({32, 784, 256, 2})->Args({512, 784, 256, 1}) \
      ->Args({512, 784, 256, 2})->Args({512, 256, 128, 2})->Args({64, 128, 128, 2})        \
      ->Args({32, 64, 128, 1})->UseRealTime()
SHAPES(BM_dense_forward);
SHAPES(BM_dense_backward);
SHAPES(BM_gemm);
