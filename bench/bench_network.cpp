// network: the whole training step (forward, softmax cross-entropy, backward, Adam) of the
// benchmark table's networks, GFLOP/s counting the GEMMs (2·N·I·O each; no dx for layer 0).
#include "bench_util.hpp"
#include "core/network.hpp"

using namespace gradstep::cpu;

static void run(benchmark::State& state, const std::vector<int64_t>& sizes, const char* act) {
  const int64_t N = state.range(0);
  gsbench::set_threads(state, 1);
  std::vector<NetOp<float>> ops;
  std::vector<std::pair<int64_t, int64_t>> offsets;  // (weight, bias) per Dense
  int64_t P = 0;
  double flops = 0;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    offsets.push_back({P, P + sizes[i] * sizes[i + 1]});
    P += sizes[i] * sizes[i + 1] + sizes[i + 1];
    flops += 2.0 * N * sizes[i] * sizes[i + 1] * (i == 0 ? 2 : 3);
  }
  auto params = gsbench::randn<float>(P, 1, 0.05f);
  std::vector<float> grads(static_cast<size_t>(P)), m(static_cast<size_t>(P)), v(static_cast<size_t>(P));
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    OpAttrs a;
    a.values = {{"in_features", {double(sizes[i])}}, {"out_features", {double(sizes[i + 1])}}};
    NetOp<float> d;
    d.op = make_op<float>("Dense", a, Shape{{sizes[i]}});
    d.w = {params.data() + offsets[i].first, params.data() + offsets[i].second};
    d.dw = {grads.data() + offsets[i].first, grads.data() + offsets[i].second};
    ops.push_back(std::move(d));
    if (i + 2 < sizes.size()) {
      NetOp<float> f;
      f.op = make_op<float>(act, OpAttrs{}, Shape{{sizes[i + 1]}});
      ops.push_back(std::move(f));
    }
  }
  auto x = gsbench::randn<float>(N * sizes.front(), 2);
  std::vector<int64_t> labels(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) labels[static_cast<size_t>(i)] = i % sizes.back();
  Network<float> net(std::move(ops), LossKind::kSoftmaxXent, params.data(), grads.data(), P);
  OptArgs<float> o{};
  o.kind = OptKind::kAdam;
  o.adam = {1e-3, 0.9, 0.999, 1e-8, 0.0, false};
  o.state0 = m.data();
  o.state1 = v.data();
  for (auto _ : state) {
    ++o.step;
    benchmark::DoNotOptimize(net.forward_backward(x.data(), labels.data(), nullptr, N, nullptr));
    net.update(o);
  }
  gsbench::flops(state, flops);
}

static void BM_step_mnist_mlp(benchmark::State& s) { run(s, {784, 256, 128, 10}, "ReLU"); }
static void BM_step_digits_mlp(benchmark::State& s) { run(s, {64, 128, 64, 10}, "ReLU"); }
static void BM_step_deep_tanh(benchmark::State& s) {
  std::vector<int64_t> sizes(21, 128);
  sizes.push_back(10);
  run(s, sizes, "Tanh");
}
BENCHMARK(BM_step_mnist_mlp)->Args({32, 1})->Args({32, 2})->Args({128, 2})->Args({512, 1})->Args({512, 2})->UseRealTime();
BENCHMARK(BM_step_digits_mlp)->Args({32, 1})->Args({32, 2})->UseRealTime();
BENCHMARK(BM_step_deep_tanh)->Args({64, 1})->Args({64, 2})->UseRealTime();
