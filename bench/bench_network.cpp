// network: the whole training step (forward, softmax cross-entropy, backward, Adam) of the
// benchmark table's networks, GFLOP/s counting the GEMMs (2·N·I·O each; no dx for layer 0).
#include "bench_util.hpp"
#include "core/network.hpp"

using namespace gradstep::cpu;

static void run(benchmark::State& state, const std::vector<int64_t>& sizes, LayerOp act) {
  const int64_t N = state.range(0);
  gsbench::set_threads(state, 1);
  std::vector<LayerDesc> layers;
  int64_t P = 0;
  double flops = 0;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    LayerDesc d{LayerOp::kDense, sizes[i], sizes[i + 1]};
    d.w = P;
    P += sizes[i] * sizes[i + 1];
    d.b = P;
    P += sizes[i + 1];
    layers.push_back(d);
    flops += 2.0 * N * sizes[i] * sizes[i + 1] * (i == 0 ? 2 : 3);
    if (i + 2 < sizes.size()) layers.push_back(LayerDesc{act, sizes[i + 1], sizes[i + 1]});
  }
  auto params = gsbench::randn<float>(P, 1, 0.05f);
  std::vector<float> grads(static_cast<size_t>(P)), m(static_cast<size_t>(P)), v(static_cast<size_t>(P));
  auto x = gsbench::randn<float>(N * sizes.front(), 2);
  std::vector<int64_t> labels(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) labels[static_cast<size_t>(i)] = i % sizes.back();
  Network<float> net(layers, LossOp::kSoftmaxXent, P);
  StepArgs<float> a{};
  a.params = params.data();
  a.grads = grads.data();
  a.x = x.data();
  a.labels = labels.data();
  a.N = N;
  a.opt = OptOp::kAdam;
  a.adam = {1e-3, 0.9, 0.999, 1e-8, 0.0, false};
  a.state0 = m.data();
  a.state1 = v.data();
  for (auto _ : state) {
    ++a.step;
    benchmark::DoNotOptimize(net.train_step(a));
  }
  gsbench::flops(state, flops);
}

static void BM_step_mnist_mlp(benchmark::State& s) { run(s, {784, 256, 128, 10}, LayerOp::kReLU); }
static void BM_step_digits_mlp(benchmark::State& s) { run(s, {64, 128, 64, 10}, LayerOp::kReLU); }
static void BM_step_deep_tanh(benchmark::State& s) {
  std::vector<int64_t> sizes(21, 128);
  sizes.push_back(10);
  run(s, sizes, LayerOp::kTanh);
}

BENCHMARK(BM_step_mnist_mlp)->Args({32, 1})->Args({32, 2})->Args({128, 2})->Args({512, 1})->Args({512, 2})->UseRealTime();
BENCHMARK(BM_step_digits_mlp)->Args({32, 1})->Args({32, 2})->UseRealTime();
BENCHMARK(BM_step_deep_tanh)->Args({64, 1})->Args({64, 2})->UseRealTime();
