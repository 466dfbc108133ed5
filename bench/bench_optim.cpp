// optim: one fused update pass over a flat buffer (GB/s of the buffers read and written).
#include "bench_util.hpp"
#include "core/optim.hpp"

using namespace gradstep::cpu;

static void BM_adam(benchmark::State& state) {
  const int64_t P = state.range(0);
  gsbench::set_threads(state, 1);
  auto w = gsbench::randn<float>(P, 1), g = gsbench::randn<float>(P, 2);
  std::vector<float> m(static_cast<size_t>(P)), v(static_cast<size_t>(P));
  AdamHyper h{1e-3, 0.9, 0.999, 1e-8, 0.0, false};
  int64_t step = 0;
  for (auto _ : state) adam_step<float>(w.data(), m.data(), v.data(), g.data(), P, h, ++step);
  gsbench::bytes(state, 7.0 * P * sizeof(float));  // read w, m, v, g; write w, m, v
}

static void BM_sgd_momentum(benchmark::State& state) {
  const int64_t P = state.range(0);
  gsbench::set_threads(state, 1);
  auto w = gsbench::randn<float>(P, 1), g = gsbench::randn<float>(P, 2);
  std::vector<float> buf(static_cast<size_t>(P));
  SGDHyper h{0.01, 0.9, 0.0, 0.0, false};
  int64_t step = 0;
  for (auto _ : state) sgd_step<float>(w.data(), buf.data(), g.data(), P, h, ++step);
  gsbench::bytes(state, 5.0 * P * sizeof(float));
}

BENCHMARK(BM_adam)->Args({235146, 1})->Args({235146, 2})->Args({1 << 22, 2})->UseRealTime();
BENCHMARK(BM_sgd_momentum)->Args({235146, 1})->Args({1 << 22, 2})->UseRealTime();
