// loss: the fused softmax cross-entropy and MSE, forward + backward (GB/s of the logits).
#include "bench_util.hpp"
#include "core/loss.hpp"

using namespace gradstep::cpu;

static void BM_softmax_xent(benchmark::State& state) {
  const int64_t N = state.range(0), K = state.range(1);
  gsbench::set_threads(state, 2);
  auto logits = gsbench::randn<float>(N * K, 1);
  std::vector<int64_t> labels(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) labels[static_cast<size_t>(i)] = i % K;
  std::vector<float> probs(static_cast<size_t>(N * K));
  for (auto _ : state) {
    double v = softmax_xent_forward<float>(probs.data(), logits.data(), labels.data(), N, K);
    softmax_xent_backward<float>(probs.data(), probs.data(), labels.data(), N, K);
    benchmark::DoNotOptimize(v);
  }
  gsbench::bytes(state, 3.0 * N * K * sizeof(float));
}

static void BM_mse(benchmark::State& state) {
  const int64_t n = state.range(0);
  gsbench::set_threads(state, 1);
  auto p = gsbench::randn<float>(n, 1), t = gsbench::randn<float>(n, 2);
  std::vector<float> d(static_cast<size_t>(n));
  for (auto _ : state) {
    double v = mse_forward<float>(p.data(), t.data(), n);
    mse_backward<float>(d.data(), p.data(), t.data(), n);
    benchmark::DoNotOptimize(v);
  }
  gsbench::bytes(state, 5.0 * n * sizeof(float));
}

BENCHMARK(BM_softmax_xent)->Args({32, 10, 1})->Args({512, 10, 1})->Args({512, 1000, 2})->UseRealTime();
BENCHMARK(BM_mse)->Args({1 << 16, 1})->Args({1 << 20, 2})->UseRealTime();
