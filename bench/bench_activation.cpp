// activation: elementwise forward/backward throughput (GB/s of the arrays read and written).
#include "bench_util.hpp"
#include "core/activation.hpp"

using namespace gradstep::cpu;

template <void (*F)(float*, const float*, int64_t)>
static void BM_unary(benchmark::State& state) {
  const int64_t n = state.range(0);
  gsbench::set_threads(state, 1);
  auto x = gsbench::randn<float>(n, 1);
  std::vector<float> y(static_cast<size_t>(n));
  for (auto _ : state) {
    F(y.data(), x.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  gsbench::bytes(state, 2.0 * n * sizeof(float));
}

template <void (*F)(float*, const float*, const float*, int64_t)>
static void BM_backward(benchmark::State& state) {
  const int64_t n = state.range(0);
  gsbench::set_threads(state, 1);
  auto dy = gsbench::randn<float>(n, 1), y = gsbench::randn<float>(n, 2);
  std::vector<float> dx(static_cast<size_t>(n));
  for (auto _ : state) {
    F(dx.data(), dy.data(), y.data(), n);
    benchmark::DoNotOptimize(dx.data());
  }
  gsbench::bytes(state, 3.0 * n * sizeof(float));
}

static void BM_softmax(benchmark::State& state) {
  const int64_t N = state.range(0), K = state.range(1);
  gsbench::set_threads(state, 2);
  auto x = gsbench::randn<float>(N * K, 1);
  std::vector<float> y(static_cast<size_t>(N * K));
  for (auto _ : state) {
    softmax_forward<float>(y.data(), x.data(), N, K);
    benchmark::DoNotOptimize(y.data());
  }
  gsbench::bytes(state, 2.0 * N * K * sizeof(float));
}

#define SIZES ->Args({8192, 1})->Args({1 << 20, 1})->Args({1 << 20, 2})->UseRealTime()
BENCHMARK(BM_unary<relu_forward<float>>) SIZES;
BENCHMARK(BM_unary<sigmoid_forward<float>>) SIZES;
BENCHMARK(BM_unary<tanh_forward<float>>) SIZES;
BENCHMARK(BM_backward<relu_backward<float>>) SIZES;
BENCHMARK(BM_backward<tanh_backward<float>>) SIZES;
BENCHMARK(BM_softmax)->Args({512, 10, 1})->Args({512, 1000, 2})->UseRealTime();
