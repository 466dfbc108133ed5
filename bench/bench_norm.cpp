// norm, dropout and maxout: batch normalization forward/backward, inverted dropout, maxout.
#include "bench_util.hpp"
#include "core/batchnorm.hpp"
#include "core/dropout.hpp"
#include "core/maxout.hpp"

using namespace gradstep::cpu;

static void BM_batchnorm_train(benchmark::State& state) {
  const int64_t N = state.range(0), F = state.range(1);
  gsbench::set_threads(state, 2);
  auto x = gsbench::randn<float>(N * F, 1), dy = gsbench::randn<float>(N * F, 2);
  std::vector<float> y(x.size()), xhat(x.size()), dx(x.size()), mean(F), invstd(F), rm(F), rv(F, 1.f),
      gamma(F, 1.f), beta(F), dg(F), dbt(F);
  for (auto _ : state) {
    batchnorm_forward_train<float>(y.data(), xhat.data(), mean.data(), invstd.data(), rm.data(), rv.data(), x.data(),
                                   gamma.data(), beta.data(), N, F, 0.1f, 1e-5f);
    batchnorm_backward<float>(dx.data(), dg.data(), dbt.data(), dy.data(), xhat.data(), invstd.data(), gamma.data(), N, F);
    benchmark::DoNotOptimize(dx.data());
  }
  gsbench::bytes(state, 7.0 * N * F * sizeof(float));
}

static void BM_dropout(benchmark::State& state) {
  const int64_t n = state.range(0);
  gsbench::set_threads(state, 1);
  auto x = gsbench::randn<float>(n, 1);
  std::vector<float> y(x.size()), mask(x.size());
  uint64_t seed = 0;
  for (auto _ : state) {
    dropout_forward<float>(y.data(), mask.data(), x.data(), n, 0.5f, ++seed);
    benchmark::DoNotOptimize(y.data());
  }
  gsbench::bytes(state, 3.0 * n * sizeof(float));
}

static void BM_maxout_forward(benchmark::State& state) {
  const int64_t N = state.range(0), I = state.range(1), O = state.range(2), P = 2;
  gsbench::set_threads(state, 3);
  auto x = gsbench::randn<float>(N * I, 1), W = gsbench::randn<float>(P * I * O, 2), b = gsbench::randn<float>(P * O, 3);
  std::vector<float> y(static_cast<size_t>(N * O)), z(static_cast<size_t>(P * N * O));
  std::vector<int32_t> arg(static_cast<size_t>(N * O));
  for (auto _ : state) {
    maxout_forward<float>(y.data(), arg.data(), z.data(), x.data(), W.data(), b.data(), N, I, O, P);
    benchmark::DoNotOptimize(y.data());
  }
  gsbench::flops(state, 2.0 * N * I * O * P);
}

BENCHMARK(BM_batchnorm_train)->Args({512, 256, 1})->Args({512, 256, 2})->Args({64, 128, 1})->UseRealTime();
BENCHMARK(BM_dropout)->Args({1 << 16, 1})->Args({1 << 20, 2})->UseRealTime();
BENCHMARK(BM_maxout_forward)->Args({512, 256, 256, 2})->UseRealTime();
